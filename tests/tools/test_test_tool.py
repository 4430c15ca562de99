"""tools/test.py on a vlp demo config, in this process: strict checkpoint loading (a
mismatch is an error listing the keys; ``--non-strict`` opts out), DeepSpeed checkpoint
directories (tools/test.py and a task model's ``pretrained=``), ``--out`` predictions
with the sample ids, ``--show-dir`` pictures, the test metrics in TensorBoard, and the
validation metrics of a training run logged at its training iteration.

The test split is cut to a dozen demo images so that each run takes seconds."""
import glob
import json
import os.path as osp
import uuid

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

import vlp_toy
from conftest import ROOT, load_tool  # noqa: E402
from vlp import apis
from vlp.models.algorithms.base import without_weights

test_tool = load_tool('test')
CLIP = str(ROOT / 'configs/clip/clip_tiny_demo.py')
SMALL = ['test_dataloader.dataset.num_images=12', 'test_dataloader.batch_size=6',
         'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


@pytest.fixture(scope='module')
def clip_state():
    cfg = Config.fromfile(CLIP)
    cfg.model = without_weights(cfg.model.to_dict())
    torch.manual_seed(0)
    return apis.init_model(cfg).state_dict()


def _deepspeed_dir(root, state) -> str:
    """DeepSpeed's layout of a ZeRO stage 0-2 checkpoint: ``latest`` naming the tag
    directory, the full weights in ``mp_rank_00_model_states.pt`` under ``module``."""
    tag = root / 'global_step2'
    tag.mkdir(parents=True)
    torch.save({'module': dict(state),
                'global_steps': 2}, tag / 'mp_rank_00_model_states.pt')
    (root / 'latest').write_text('global_step2')
    return str(root)


def _run(checkpoint, work, *extra):
    # a visualizer of its own: mmengine keeps one instance per name in the process
    return test_tool.main([CLIP, checkpoint, '--work-dir', str(work), *extra,
                           '--cfg-options', *SMALL,
                           f'visualizer.name=vis_{uuid.uuid4().hex[:8]}'])


def test_a_mismatched_checkpoint_is_an_error_listing_the_keys(clip_state, tmp_path):
    bad = dict(clip_state)
    first = next(k for k, v in bad.items() if v.dim() == 2)
    bad[first] = torch.zeros(3, 3)
    dropped = sorted(bad)[-1]
    del bad[dropped]
    bad['head.extra.weight'] = torch.zeros(2)
    path = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': bad}, path)
    with pytest.raises(apis.CheckpointMismatchError) as err:
        _run(path, tmp_path / 'w')
    msg = str(err.value)
    for needle in (path, first, dropped, 'head.extra.weight', '1 missing', '1 unexpected',
                   '--non-strict', 'checkpoint (3, 3)'):
        assert needle in msg, (needle, msg)
    assert not glob.glob(str(tmp_path / 'w' / '*' / '*.json'))  # stopped before testing
    # the same checkpoint, in a DeepSpeed directory: the same check
    ds = _deepspeed_dir(tmp_path / 'ds_bad', bad)
    with pytest.raises(apis.CheckpointMismatchError, match='head.extra.weight'):
        _run(ds, tmp_path / 'w2')
    # --non-strict: the matching tensors load, the run reports its metrics
    metrics = _run(path, tmp_path / 'w3', '--non-strict')
    assert 'retrieval/r_mean' in metrics


def test_deepspeed_dir_out_show_dir_and_tensorboard(clip_state, tmp_path):
    ds = _deepspeed_dir(tmp_path / 'ds', clip_state)
    out, show = tmp_path / 'pred.json', tmp_path / 'show'
    metrics = _run(ds, tmp_path / 'work', '--out', str(out), '--show-dir', str(show),
                   '--show-num', '4')
    # the weights of the directory were tested: the same metrics as the weights themselves
    model = apis.init_model(CLIP, ds)
    for k, v in clip_state.items():
        torch.testing.assert_close(model.state_dict()[k], v)
    payload = json.loads(out.read_text())
    assert payload['checkpoint'] == osp.abspath(ds)
    assert payload['metrics']['retrieval/r_mean'] == pytest.approx(metrics['retrieval/r_mean'])
    preds = payload['predictions']
    assert [p['image_id'] for p in preds] == list(range(12))  # one per sample, its id
    assert len(payload['texts']) == 12 * 5  # every caption, in order
    for p in preds:
        assert len(p['top_texts']) == 5 and len(p['text_indices']) == 5
        assert all(0 <= j < 60 for j, _ in p['top_texts'])
        assert len(p['top_images_of_texts']) == 5
    pictures = sorted(glob.glob(str(show / '*.png')))
    assert len(pictures) == 1
    with Image.open(pictures[0]) as img:
        assert img.format == 'PNG' and img.width == 4 * 256
        pixels = np.asarray(img.convert('L'), dtype=np.float32)
    assert pixels.std() > 10  # images and text drawn, not a blank canvas
    # the test metrics in TensorBoard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' / 'events.out.tfevents.*'))
    assert len(events) == 1
    acc = EventAccumulator(events[0])
    acc.Reload()
    tags = set(acc.Tags()['scalars'])
    assert {'test/retrieval/r_mean', 'test/retrieval/txt_r1'} <= tags, tags
    value = acc.Scalars('test/retrieval/r_mean')[0].value
    assert value == pytest.approx(metrics['retrieval/r_mean'], rel=1e-5)


def test_pretrained_takes_a_deepspeed_dir(tmp_path):
    """A task model's ``pretrained=`` (a family checkpoint) reads a DeepSpeed directory."""
    cfg = Config.fromfile(str(ROOT / 'configs/vlmo/vlmo_vqa_tiny_demo.py'))
    cfg.model = without_weights(cfg.model.to_dict())
    model = apis.init_model(cfg)
    family = {k: v + 1 if v.is_floating_point() else v
              for k, v in model.model.state_dict().items()}
    ds = _deepspeed_dir(tmp_path / 'ds', family)
    model.load_pretrained(ds)
    got = model.model.state_dict()
    for k, v in family.items():
        if k in got:
            torch.testing.assert_close(got[k], v)


def test_validation_metrics_are_logged_at_the_training_iteration(tmp_path):
    """mmengine logs validation at step = epoch (0 for an iteration-based loop); vlp's
    LoggerHook at the iteration it follows, beside the training scalars."""
    base = vlp_toy.write_toy_config(str(tmp_path / 'toy.py'))
    cfg = vlp_toy.prepare_config(base, str(tmp_path / 'val.py'), max_iters=4,
                                 ckpt_interval=2, val=True)
    work = str(tmp_path / 'work')
    vlp_toy.train_in_process(cfg, work)
    scalars = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    assert len(scalars) == 1
    with open(scalars[0]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    val_steps = [r['step'] for r in rows if any(k.startswith('toy/') for k in r)]
    train_steps = [r['step'] for r in rows if 'loss' in r]
    assert val_steps == [2, 4], rows
    assert train_steps == [1, 2, 3, 4]
