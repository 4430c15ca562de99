"""tools/infer.py on tiny random models (a converter-style directory: config.py +
model.pth): images given as files, a folder and a glob; the table on the terminal; the PNG
pictures (captions and answers under their images, the top-k texts of retrieval, the
zero-shot classes, the heat maps of match) at the sizes the drawing functions promise."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from conftest import ROOT, load_tool  # noqa: E402
from vlp import apis
from vlp.models.algorithms.base import without_weights
from vlp.visualization import grid_size, heatmap_size

infer = load_tool('infer')
TEXTS = ['a large red circle', 'a small blue square', 'a green star']


def _model_dir(tmp, config: str) -> str:
    """A directory like a converter's output: the config (no weight files named) and
    random weights."""
    cfg = Config.fromfile(str(ROOT / config))
    cfg.model = without_weights(cfg.model.to_dict())
    folder = tmp / osp.splitext(osp.basename(config))[0]
    folder.mkdir()
    cfg.dump(str(folder / 'config.py'))
    torch.manual_seed(0)
    torch.save(apis.init_model(cfg).state_dict(), folder / 'model.pth')
    return str(folder)


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp('photos')
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 60), (64, 64), (90, 50)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folder / f'img{i}.png')
    (folder / 'notes.txt').write_text('not an image')
    return folder


@pytest.fixture(scope='module')
def clip_dir(tmp_path_factory):
    return _model_dir(tmp_path_factory.mktemp('clip'), 'configs/clip/clip_tiny_demo.py')


def _png(path):
    assert osp.isfile(path), path
    with Image.open(path) as img:
        assert img.format == 'PNG'
        arr = np.asarray(img.convert('L'), dtype=np.float32)
        assert arr.std() > 5, f'{path} is blank'
        return img.size


def test_images_from_files_folders_and_globs(images):
    got = infer.expand_images([str(images), str(images / 'img1.png'),
                               str(images / 'img*.png')])
    names = [osp.basename(p) for p in got]
    assert names == ['img0.png', 'img1.png', 'img2.png', 'img1.png', 'img0.png', 'img1.png',
                     'img2.png']
    with pytest.raises(FileNotFoundError, match='no image found'):
        infer.expand_images([str(images / '*.jpg')])
    with pytest.raises(FileNotFoundError, match='missing.png'):
        infer.expand_images([str(images / 'missing.png')])


def test_match_retrieve_and_zero_shot_pictures(clip_dir, images, tmp_path, capsys):
    out = tmp_path / 'out'
    res = infer.main([clip_dir, '--images', str(images), '--texts', *TEXTS,
                      '--out-dir', str(out), '--topk', '2'])
    assert res['task'] == 'match'
    table = capsys.readouterr().out
    assert 'img0.png' in table and 'img2.png' in table
    # the scores are vlp.apis.match's
    want = apis.match(apis.init_model(clip_dir), res['paths'], TEXTS)
    torch.testing.assert_close(res['scores']['itc'], want['itc'])
    # top-2 texts under each image, best first
    for row, lines in zip(want['itc'], res['lines']):
        best = row.argsort(descending=True)[:2].tolist()
        assert [line.split('  ', 1)[1] for line in lines] == [TEXTS[j] for j in best]
    assert _png(out / 'match.png') == grid_size(3, lines=len(res['lines'][0]))
    for key in ('itc', 'itc_probs'):  # CLIP: no ITM head, no ITM map
        assert _png(out / f'match_{key}.png') == heatmap_size(3, len(TEXTS))
    assert not (out / 'match_itm.png').exists()
    res = infer.main([clip_dir, '--images', str(images / 'img*.png'), '--task', 'retrieve',
                      '--texts', *TEXTS, '--out-dir', str(out)])
    assert [osp.basename(p) for p in res['pictures']] == ['retrieve.png']
    res = infer.main([clip_dir, '--images', str(images / 'img0.png'), '--classes', 'circle',
                      'square', 'star', '--templates', 'a photo of a {}.', '--out-dir',
                      str(out)])
    assert res['task'] == 'zero-shot' and len(res['lines'][0]) == 3
    _png(out / 'zero_shot.png')


def test_captions_and_answers_under_their_images(images, tmp_path, capsys):
    blip = _model_dir(tmp_path, 'configs/blip/blip_tiny_demo.py')
    out = tmp_path / 'out'
    res = infer.main([blip, '--images', str(images), '--max-length', '6', '--out-dir',
                      str(out)])
    assert res['task'] == 'caption' and len(res['lines']) == 3
    model = apis.init_model(blip)
    assert [x[0] for x in res['lines']] == apis.caption(model, res['paths'], max_length=6)
    _png(out / 'caption.png')
    # match on BLIP also draws the ITM probabilities
    res = infer.main([blip, '--images', str(images / 'img0.png'), '--texts', *TEXTS[:2],
                      '--out-dir', str(out)])
    assert _png(out / 'match_itm.png') == heatmap_size(1, 2)
    vqa = _model_dir(tmp_path, 'configs/blip/blip_vqa_tiny_demo.py')
    res = infer.main([vqa, '--images', str(images), '--questions', 'what shape is it?',
                      '--out-dir', str(out)])
    assert res['task'] == 'answer'
    assert all(lines[0] == 'Q: what shape is it?' and lines[1].startswith('A: ')
               for lines in res['lines'])
    _png(out / 'answer.png')
    assert 'A: ' in capsys.readouterr().out
    # a task the family lacks: its name and the tasks it has
    with pytest.raises(SystemExit, match='BLIPVQA does not support caption'):
        infer.main([vqa, '--images', str(images / 'img0.png'), '--task', 'caption',
                    '--out-dir', str(out)])
