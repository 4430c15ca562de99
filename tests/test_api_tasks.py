"""Every task of ``vlp.apis`` on every registered family, driven by the registry: each
family's demo config is built with tiny random weights through ``init_model``; each task
it declares (``vlp.apis.TASKS`` over the capabilities) is called with every input kind
(file path, PIL image, numpy array, uint8 and float tensors of other sizes, a batch tensor,
videos for CLIP4Clip), and every other task raises ``NotImplementedError`` naming the
family and the task. Images at the model's size give the same features whatever their
form; a batch of 32 runs at the model's own speed (no per-image loop)."""
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from vlp import apis
from vlp.models.algorithms.base import VLPModel, without_weights
from vlp.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
DEMOS = sorted((ROOT / 'configs').rglob('*_tiny_demo.py'))
TEXTS = ['a small red circle on the left', 'a large blue square']


def _families():
    import vlp.models  # noqa: F401
    return sorted(n for n, c in MODELS.module_dict.items()
                  if isinstance(c, type) and issubclass(c, VLPModel)
                  and c.__module__.startswith('vlp.'))


def _demo_of():
    """The first demo config of each family (by the model type it builds)."""
    out = {}
    for path in DEMOS:
        family = Config.fromfile(str(path)).model['type']
        out.setdefault(family, path)
    return out


DEMO_OF = _demo_of()
_MODELS = {}


def model_of(family):
    if family not in _MODELS:
        cfg = Config.fromfile(str(DEMO_OF[family]))
        cfg.model = without_weights(cfg.model.to_dict())  # no pre-training run needed
        torch.manual_seed(0)
        _MODELS[family] = apis.init_model(cfg)
    return _MODELS[family]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Images of other sizes in every form, plus a PNG file."""
    tmp = tmp_path_factory.mktemp('api_images')
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    path = tmp / 'img.png'
    Image.fromarray(arr).save(path)
    return dict(path=str(path), pil=Image.fromarray(rng.integers(0, 256, (90, 60, 3),
                                                                 dtype=np.uint8)),
                array=rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
                uint8=torch.randint(0, 256, (3, 33, 47), dtype=torch.uint8),
                float=torch.rand(3, 80, 64),
                grey=rng.integers(0, 256, (30, 30), dtype=np.uint8))


def inputs_of(files):
    """One image / a list of every kind / a batch tensor of another size."""
    mixed = [files['path'], files['pil'], files['array'], files['uint8'], files['float'],
             files['grey']]
    batch = torch.randint(0, 256, (2, 3, 45, 52), dtype=torch.uint8)
    return [('path', files['path'], 1), ('list', mixed, len(mixed)), ('batch', batch, 2)]


def test_every_family_has_a_demo():
    missing = [f for f in _families() if f not in DEMO_OF]
    assert not missing, f'families without a demo config: {missing}'


def _call(model, task, images):
    if task == 'encode_image':
        return apis.encode_image(model, images)
    if task == 'encode_text':
        return apis.encode_text(model, TEXTS)
    if task == 'match':
        return apis.match(model, images, TEXTS)
    if task == 'caption':
        return apis.caption(model, images, max_length=6, num_beams=1)
    if task == 'answer':
        return apis.answer(model, images, 'what shape is it?', max_length=5)
    if task == 'zero_shot_classify':
        return apis.zero_shot_classify(model, images, ['red circle', 'blue square', 'star'],
                                       ['a photo of a {}.', 'a {}'])
    if task == 'query_features':
        return apis.query_features(model, images)
    raise AssertionError(task)


def _check(task, out, n):
    if task in ('encode_image', 'query_features'):
        assert out.shape[0] == n and torch.isfinite(out).all()
    elif task == 'encode_text':
        assert out.shape[0] == len(TEXTS)
    elif task == 'match':
        assert out and all(v.shape == (n, len(TEXTS)) for v in out.values()), out
        if 'itc_probs' in out:
            torch.testing.assert_close(out['itc_probs'].sum(-1), torch.ones(n))
        if 'itm' in out:
            assert ((out['itm'] >= 0) & (out['itm'] <= 1)).all()
    elif task in ('caption', 'answer'):
        assert isinstance(out, list) and len(out) == n and all(isinstance(s, str) for s in out)
    elif task == 'zero_shot_classify':
        assert out.shape == (n, 3)
        torch.testing.assert_close(out.sum(-1), torch.ones(n))


@pytest.mark.parametrize('family', sorted(DEMO_OF), ids=str)
def test_every_task_on_every_family(family, files):
    model = model_of(family)
    supported = set(apis.supported_tasks(model))
    for task in apis.TASKS:
        if task not in supported:
            with pytest.raises(NotImplementedError) as err:
                _call(model, task, files['path'])
            msg = str(err.value)
            assert family in msg and f'{task}()' in msg, msg
            continue
        for kind, images, n in inputs_of(files):
            if task == 'encode_text' and kind != 'path':
                continue
            out = _call(model, task, images)
            _check(task, out, n if task != 'encode_text' else len(TEXTS))


def test_the_tasks_each_family_serves():
    """The table of docs/model_zoo.md / the report, checked."""
    want = {
        'CLIP': {'encode_image', 'encode_text', 'match', 'zero_shot_classify'},
        'BLIP': {'encode_image', 'encode_text', 'match', 'zero_shot_classify', 'caption'},
        'CoCa': {'encode_image', 'encode_text', 'match', 'zero_shot_classify', 'caption'},
        'BLIP2': {'encode_image', 'encode_text', 'match', 'zero_shot_classify',
                  'query_features'},
        'BLIP2LM': {'caption', 'answer', 'query_features'},
        'BLIPVQA': {'answer'}, 'VQAClassifier': {'answer'}, 'ViLT': {'match'},
    }
    for family, tasks in want.items():
        assert set(apis.supported_tasks(model_of(family))) == tasks, family


def test_same_pixels_same_features_in_every_form(files):
    """Images already at the model's size: path, PIL, numpy, uint8 and float tensors, one
    by one or as a batch, give the same features (no resize, one normalisation)."""
    model = model_of('CLIP')
    size = model.preprocess.size
    arr = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    path = str(Path(files['path']).with_name('exact.png'))
    Image.fromarray(arr).save(path)
    t = torch.from_numpy(arr).permute(2, 0, 1)
    ref = apis.encode_image(model, t)
    for form in (path, Image.fromarray(arr), arr, t.float() / 255, t[None], [t, t]):
        out = apis.encode_image(model, form)
        torch.testing.assert_close(out, ref.expand_as(out), rtol=0, atol=1e-6)
    # the model's own method on the normalised batch: the same
    torch.testing.assert_close(model.encode_image(apis.preprocess(model, t)), ref)
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        apis.encode_image(model, t.float())  # 0-255 floats: ambiguous, refused


def test_preprocessing_follows_the_config(tmp_path):
    """The config's test pipeline: resize the shorter side + centre crop (CLIP), a square
    resize (BLIP); the demo configs (no resize) resize to the model's size."""
    pre = apis.ImagePreprocessor.from_config(Config(dict(test_pipeline=[
        dict(type='LoadImage'), dict(type='Resize', size=32, interpolation='bicubic'),
        dict(type='CenterCrop', size=32), dict(type='ToTensor')])))
    out = pre(torch.randint(0, 256, (3, 40, 80), dtype=torch.uint8))
    assert out.shape == (1, 3, 32, 32) and out.dtype == torch.float32
    pre = apis.ImagePreprocessor.from_config(Config(dict(test_pipeline=[
        dict(type='Resize', size=[24, 24])])))
    assert pre([Image.new('RGB', (100, 20)), np.zeros((5, 9, 3), np.uint8)]).shape == \
        (2, 3, 24, 24)
    assert model_of('BLIP').preprocess.size == (64, 64)


def test_videos_for_clip4clip(tmp_path):
    """CLIP4Clip reads videos: a [B, T, 3, H, W] tensor, [T, 3, H, W] items, a video file
    (decoded as the config's LoadVideoFrames)."""
    cv2 = pytest.importorskip('cv2')
    cfg = Config.fromfile(str(ROOT / 'configs/clip/clip4clip_tiny_demo.py'))
    torch.manual_seed(0)
    model = apis.init_model(cfg)
    assert model.preprocess.video['num_frames'] == 4
    path = str(tmp_path / 'clip.mp4')  # 96 wide: decord 0.6 misreads some odd widths (48)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 8, (96, 64))
    for i in range(8):
        writer.write(np.full((64, 96, 3), 30 * i, np.uint8))
    writer.release()
    videos = torch.randint(0, 256, (2, 4, 3, 50, 50), dtype=torch.uint8)
    assert apis.encode_image(model, videos).shape == (2, 64)
    assert apis.encode_image(model, list(videos)).shape == (2, 64)
    assert apis.match(model, [path, videos[0]], TEXTS)['itc'].shape == (2, 2)


def test_a_batch_of_32_runs_at_the_model_speed():
    """match / caption on 32 images cost about what the model's own batched calls on the
    preprocessed batch cost (preprocessing batched, one model call). The two are timed in
    turns and the best of each kept: the machine may be shared."""
    images = torch.randint(0, 256, (32, 3, 80, 96), dtype=torch.uint8)

    def best_of_turns(direct, api, n=3):
        times = {'direct': [], 'api': []}
        for _ in range(n):
            for name, fn in (('direct', direct), ('api', api)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        return min(times['api']), min(times['direct'])

    clip = model_of('CLIP')
    with torch.no_grad():
        x = apis.preprocess(clip, images)
        api, direct = best_of_turns(lambda: (clip.encode_image(x), clip.encode_text(TEXTS)),
                                    lambda: apis.match(clip, images, TEXTS))
    assert api < 2.0 * direct + 0.05, (api, direct)
    blip = model_of('BLIP')
    with torch.no_grad():
        x = apis.preprocess(blip, images)
        api, direct = best_of_turns(
            lambda: blip.generate(x, max_length=6, num_beams=1),
            lambda: apis.caption(blip, images, max_length=6, num_beams=1))
    assert api < 1.5 * direct + 0.1, (api, direct)


def test_zero_shot_imagenet_reuses_open_clip_names_and_templates(monkeypatch, files):
    """``class_names='imagenet'``: open_clip's ImageNet-1k names and, without templates,
    its 80 OpenAI templates, by import (the very objects, not a copy)."""
    zsm = pytest.importorskip('open_clip.zero_shot_metadata')
    model = model_of('CLIP')
    seen = {}

    def classifier(m, names, templates, batch_size):
        seen.update(names=names, templates=templates)
        return torch.nn.functional.normalize(torch.randn(len(names), 64), dim=-1)

    monkeypatch.setattr(apis, 'zero_shot_classifier', classifier)
    probs = apis.zero_shot_classify(model, files['path'], 'imagenet')
    assert probs.shape == (1, 1000)
    assert seen['names'] == list(zsm.IMAGENET_CLASSNAMES)
    assert all(a is b for a, b in zip(seen['names'], zsm.IMAGENET_CLASSNAMES))
    assert [t('x') for t in seen['templates']] == [t('x') for t in
                                                   zsm.OPENAI_IMAGENET_TEMPLATES]
    apis.zero_shot_classify(model, files['path'], 'imagenet', ['a photo of a {}.'])
    assert [t('dog') if callable(t) else t.format('dog') for t in seen['templates']] == \
        ['a photo of a dog.']
    with pytest.raises(ValueError, match="'imagenet'"):
        apis.zero_shot_classify(model, files['path'], 'cifar')


def test_answer_options_reach_only_the_families_that_take_them(files):
    """Decoding options are dropped for a family that picks answers from a list
    (VQAClassifier); an option no family knows is an error naming the family."""
    model = model_of('VQAClassifier')
    assert apis.answer(model, files['path'], 'what?', max_length=5, num_beams=2) == \
        apis.answer(model, files['path'], 'what?')
    with pytest.raises(TypeError, match=r'VQAClassifier takes no option temprature'):
        apis.answer(model, files['path'], 'what?', temprature=0.5)
