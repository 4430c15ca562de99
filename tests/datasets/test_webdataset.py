"""Webdataset shards: every sample exactly once per epoch over 2 ranks x 2 workers, a
truncated shard skipped and counted, resampled epochs, json_to_shards round trip."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from vlp.datasets import WebDatasetImageText, vlp_collate

import importlib.util
_spec = importlib.util.spec_from_file_location(
    'json_to_shards', osp.join(osp.dirname(__file__), '..', '..', 'tools', 'data',
                               'json_to_shards.py'))
json_to_shards = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(json_to_shards)

TOK = dict(type='DemoTokenizer', style='bert', max_length=16)
PIPE = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=TOK)]


def make_json(tmp_path, n=24, broken=(), size=8):
    rng = np.random.default_rng(0)
    os.makedirs(tmp_path / 'img', exist_ok=True)
    entries = []
    for i in range(n):
        p = tmp_path / 'img' / f'{i}.png'
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        if i in broken:
            p.write_bytes(b'not an image')
        entries.append(dict(image=f'{i}.png', caption=[f'a red circle {i}', 'other']))
    entries.append(dict(image='missing.png', caption='gone'))
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(entries))
    return str(ann)


@pytest.fixture
def shards(tmp_path):
    out = json_to_shards.main([make_json(tmp_path, broken=(5,)), str(tmp_path / 'shards'),
                               '--img-root', str(tmp_path / 'img'),
                               '--samples-per-shard', '5'])
    return out


def test_json_to_shards_round_trip(shards):
    assert shards['samples'] == 23 and shards['shards'] == 5  # 25 entries - broken - missing
    assert len(shards['skipped']) == 2 and any('missing.png' in s for s in shards['skipped'])
    ds = WebDatasetImageText(shards['pattern'], pipeline=PIPE)
    samples = list(ds)
    assert len(samples) == 23 and ds.num_skipped == 0
    s = samples[0]
    assert s['image'].shape == (3, 8, 8) and s['input_ids'].shape == (16,)
    assert s['text'] == 'a red circle 0' and s['image_id'] == 0


def _keys(pattern, rank, world, workers):
    ds = WebDatasetImageText(pattern, pipeline=PIPE, rank=rank, world_size=world)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers,
                                         collate_fn=vlp_collate)
    return [k for batch in loader for k in batch['key']]


def test_every_sample_once_per_epoch_over_ranks_and_workers(shards):
    keys = _keys(shards['pattern'], 0, 2, 2) + _keys(shards['pattern'], 1, 2, 2)
    assert len(keys) == 23 and len(set(keys)) == 23


def test_truncated_shard_is_skipped_and_counted(shards):
    first = shards['pattern'].replace('{000000..000004}', '000000')
    data = open(first, 'rb').read()
    with open(first, 'wb') as f:
        f.write(data[:len(data) // 2 + 100])  # cut inside a member
    ds = WebDatasetImageText(shards['pattern'], pipeline=PIPE)
    keys = [s['key'] for s in ds]
    assert ds.num_skipped >= 1
    assert 18 <= len(keys) < 23 and len(set(keys)) == len(keys)


def test_resampled_epochs(shards):
    with pytest.raises(ValueError):
        WebDatasetImageText(shards['pattern'], resampled=True)
    ds = WebDatasetImageText(shards['pattern'], pipeline=PIPE, resampled=True, epoch_size=40)
    assert len(ds) == 40
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2,
                                         collate_fn=vlp_collate)
    assert sum(len(b['key']) for b in loader) == 40
    with pytest.raises(FileNotFoundError):
        WebDatasetImageText(str(shards['pattern']).replace('shard-', 'nope-'))


def test_too_many_broken_members_stop_the_run(tmp_path):
    import webdataset as wds
    path = str(tmp_path / 'bad.tar')
    good = (tmp_path / 'good.png')
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(good)
    with wds.TarWriter(path) as sink:
        for i in range(20):
            img = good.read_bytes() if i % 2 else b'\xff\xd8 corrupt'
            sink.write({'__key__': f'{i:04d}', 'png': img, 'txt': f'caption {i}'})
    ds = WebDatasetImageText(path, pipeline=PIPE)
    assert len(list(ds)) == 10 and ds.num_skipped == 10  # counted, nothing crashes
    ds = WebDatasetImageText(path, pipeline=PIPE, max_skip_fraction=0.3, skip_check_after=6)
    with pytest.raises(RuntimeError, match='max_skip_fraction'):
        list(ds)
