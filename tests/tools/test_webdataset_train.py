"""tools/train.py on webdataset shards: the CLIP demo model trains from shards written by
tools/data/json_to_shards.py (``sampler=None``, an iteration-based loop), on 1 and on 2
ranks (each rank reading its own shards)."""
import sys
from pathlib import Path

import pytest

import vlp_toy
from conftest import ROOT, load_tool

sys.path.insert(0, str(ROOT / 'tests' / 'datasets'))
from test_webdataset import make_json  # noqa: E402

CONFIG = str(ROOT / 'configs' / 'clip' / 'clip_tiny_demo.py')


@pytest.mark.parametrize('nproc', [1, 2])
def test_train_from_shards(tmp_path, nproc):
    shards = load_tool('data/json_to_shards').main(
        [make_json(tmp_path, n=32, size=64), str(tmp_path / 'shards'),
         '--img-root', str(tmp_path / 'img'), '--samples-per-shard', '8'])
    tok = dict(type='DemoTokenizer', style='clip', max_length=32)
    cfg = vlp_toy.prepare_config(
        CONFIG, str(tmp_path / 'cfg.py'), max_iters=4, ckpt_interval=4, batch_size=4,
        options={'train_dataloader': dict(
            batch_size=4, num_workers=2, persistent_workers=False, sampler=None,
            collate_fn=dict(type='vlp_collate'),
            dataset=dict(_delete_=True, type='WebDatasetImageText', urls=shards['pattern'],
                         resampled=True, epoch_size=16, shuffle_buffer=8,
                         pipeline=[dict(type='ToTensor'),
                                   dict(type='Tokenize', tokenizer=tok)])),
            'test_after_train': False})
    work = str(tmp_path / 'work')
    vlp_toy.cli_train(cfg, work, nproc=nproc)
    losses = vlp_toy.read_losses(work)
    assert sorted(losses) == [0, 1, 2, 3]
    assert Path(work, 'iter_4.pth').exists()
