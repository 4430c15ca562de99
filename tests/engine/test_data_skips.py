"""DataSkipReportHook: per-epoch reports of the samples a dataset skipped, and the stop
above max_skip_fraction (a JSON dataset with missing images, read through a DataLoader)."""
import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from vlp.datasets import ImageTextJsonDataset, vlp_collate
from vlp.engine.hooks import DataSkipReportHook


def _loader(tmp_path, n_missing):
    entries = []
    for i in range(10):
        if i >= n_missing:
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / f'{i}.png')
        entries.append(dict(image=f'{i}.png', caption=f'caption {i}'))
    (tmp_path / 'ann.json').write_text(json.dumps(entries))
    ds = ImageTextJsonDataset(str(tmp_path / 'ann.json'), img_prefix=str(tmp_path),
                              pipeline=[dict(type='LoadImage'), dict(type='ToTensor')])
    return torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2,
                                       collate_fn=vlp_collate)


def _runner(loader):
    logger = logging.getLogger('test_data_skips')
    loop = type('EpochBasedTrainLoop', (), {})()
    return SimpleNamespace(logger=logger, train_dataloader=loader, train_loop=loop, epoch=1)


def test_reports_and_stops(tmp_path, caplog):
    loader = _loader(tmp_path, n_missing=2)
    runner = _runner(loader)
    hook = DataSkipReportHook(max_skip_fraction=0.5)
    list(loader)  # an epoch in worker processes
    with caplog.at_level(logging.INFO, logger='test_data_skips'):
        hook.after_train_epoch(runner)
    skipped = loader.dataset.num_skipped
    assert skipped >= 2  # counted across the workers
    assert f'{skipped} samples skipped' in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger='test_data_skips'):
        hook.after_train_epoch(runner)  # nothing new since the last report
    assert f'0 samples skipped (unreadable or dropped), {skipped} in total' in caplog.text

    (tmp_path / 'x').mkdir()
    bad = _loader(tmp_path / 'x', n_missing=8)
    list(bad)
    with pytest.raises(RuntimeError, match='max_skip_fraction'):
        DataSkipReportHook(max_skip_fraction=0.5).after_train_epoch(_runner(bad))
