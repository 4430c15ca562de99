"""Preflight: every file a config needs is reported at once, before anything is built.

Over every config, in an empty folder with the hub offline: the tiny demos need nothing (or
only the work dir of the demo they fine-tune), every paper config lists what it misses with
the config key that names it and where the docs say how to get it. The command line exits 2
in seconds, before building anything; ``--dry-run`` prints the resolved config and the report.
"""
import glob
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
from mmengine.config import Config

from vlp.engine.preflight import TEST_PARTS, TRAIN_PARTS, format_report, preflight

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
# training / test configs (configs/capfilt/ configures tools/capfilt.py, which reads its
# stages' model configs and checkpoints itself, naming a missing one)
CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p and f'{osp.sep}capfilt{osp.sep}' not in p)


@pytest.fixture
def clean_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))  # an empty hub cache
    return tmp_path


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_every_config_reports_what_it_misses(clean_dir, path):
    cfg = Config.fromfile(path)
    start = time.time()
    needs = preflight(cfg, parts=TRAIN_PARTS + TEST_PARTS)
    assert time.time() - start < 5
    for n in needs:
        assert n.key and n.what and 'docs/own_data.md#' in n.how, n
    if 'tiny_demo' in osp.basename(path):
        # demos need nothing, or the work dir of the demo they start from
        assert all(n.path.startswith('work_dirs/') for n in needs), needs
    else:
        assert needs, f'{path} names no file? (paper configs need data)'
        report = format_report(path, needs)
        assert 'missing' in report and all(n.path in report for n in needs)


def test_paths_resolve_like_the_datasets(clean_dir):
    """Relative annotation files and image folders are joined to their data_root; a present
    file is not reported; shard patterns are brace-expanded; hub weights are reported offline."""
    os.makedirs('d/images')
    open('d/train.json', 'w').close()
    cfg = Config(dict(
        model=dict(type='CLIP', vision=dict(type='TimmTower', model_name='vit_base_patch16_224',
                                            pretrained=True)),
        train_dataloader=dict(dataset=dict(
            type='ImageTextJsonDataset', data_root='d', ann_file=['train.json', 'extra.json'],
            img_prefix='images', pipeline=[dict(type='Tokenize', tokenizer=dict(
                type='CLIPTokenizer', bpe_path='bundled'))])),
        val_dataloader=dict(dataset=dict(type='WebDatasetImageText',
                                         urls='s/{000..002}.tar'))))
    needs = {(n.path, n.key) for n in preflight(cfg)}
    assert ('d/extra.json', 'train_dataloader.dataset.ann_file.1') in needs
    assert not any(p == 'd/train.json' or p.endswith('images') for p, _ in needs)
    assert ('s/000.tar', 'val_dataloader.dataset.urls') in needs
    hub = [p for p, k in needs if k == 'model.vision.pretrained']
    assert hub and 'vit_base_patch16_224' in hub[0]
    # a local weights file instead of the hub: nothing to download
    cfg.model.vision.pretrained_cfg_overlay = dict(file='w.pth')
    assert not [n for n in preflight(cfg) if n.key == 'model.vision.pretrained']


def _cli(args, cwd, timeout=120):
    env = dict(os.environ, HF_HUB_OFFLINE='1', PYTHONPATH=ROOT)
    start = time.time()
    out = subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=timeout)
    return out, time.time() - start


def test_cli_reports_everything_and_builds_nothing(tmp_path):
    out, seconds = _cli([osp.join(ROOT, 'tools/train.py'), osp.join(ROOT, 'configs/blip/blip_base.py')],
                        tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    err = out.stderr
    for expected in ('data/bert-base-uncased', 'data/bert-base-uncased/vocab.txt',
                     'data/blip/coco_karpathy_train.json', 'model.text.pretrained',
                     "timm model 'vit_base_patch16_224", 'HF_HUB_OFFLINE'):
        assert expected in err, (expected, err[-3000:])
    assert 'Loads checkpoint' not in out.stdout and 'Config:' not in out.stdout  # nothing built
    assert seconds < 60
    # --dry-run: the resolved config and the report
    out, _ = _cli([osp.join(ROOT, 'tools/train.py'), osp.join(ROOT, 'configs/blip/blip_base.py'),
                   '--dry-run'], tmp_path)
    assert out.returncode == 2 and "type='BLIP'" in out.stdout and 'preflight:' in out.stdout
    out, _ = _cli([osp.join(ROOT, 'tools/train.py'), osp.join(ROOT, 'configs/clip/clip_tiny_demo.py'),
                   '--dry-run'], tmp_path)
    assert out.returncode == 0 and 'every file' in out.stdout
    # tools/test.py: the checkpoint to evaluate is checked too
    out, _ = _cli([osp.join(ROOT, 'tools/test.py'), osp.join(ROOT, 'configs/clip/clip_tiny_demo.py'),
                   'work_dirs/none/epoch_1.pth'], tmp_path)
    assert out.returncode == 2 and 'work_dirs/none/epoch_1.pth' in out.stderr
