"""vlp_collate: stack equal shapes, keep ragged tensors and strings as lists."""
import numpy as np
import pytest
import torch
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS

from vlp.datasets.collate import vlp_collate
from vlp.registry import FUNCTIONS


def _sample(k, i):
    return dict(image=torch.full((3, 4, 4), i, dtype=torch.uint8),
                input_ids=torch.full((k, 6), i, dtype=torch.long),
                attention_mask=torch.ones(k, 6, dtype=torch.long),
                image_id=i, score=0.5 * i, flag=bool(i % 2), text=[f'c{i}'] * k,
                name=f's{i}', arr=np.arange(3) + i, extra=None)


def test_ragged_k_kept_as_list_equal_shapes_stacked():
    batch = vlp_collate([_sample(5, 0), _sample(3, 1), _sample(5, 2)])
    assert batch['image'].shape == (3, 3, 4, 4) and batch['image'].dtype == torch.uint8
    assert isinstance(batch['input_ids'], list)
    assert [t.shape for t in batch['input_ids']] == [(5, 6), (3, 6), (5, 6)]
    assert batch['image_id'].dtype == torch.long and batch['image_id'].tolist() == [0, 1, 2]
    assert batch['score'].dtype == torch.float32 and batch['score'].tolist() == [0, 0.5, 1]
    assert batch['flag'].dtype == torch.bool and batch['flag'].tolist() == [False, True, False]
    assert batch['text'] == [['c0'] * 5, ['c1'] * 3, ['c2'] * 5]
    assert batch['name'] == ['s0', 's1', 's2']
    assert batch['arr'].shape == (3, 3)
    assert batch['extra'] == [None, None, None]


def test_equal_k_stacked():
    batch = vlp_collate([_sample(2, 0), _sample(2, 1)])
    assert batch['input_ids'].shape == (2, 2, 6)
    assert torch.equal(batch['input_ids'][1], torch.ones(2, 6, dtype=torch.long))


def test_errors_and_registry():
    with pytest.raises(KeyError):
        vlp_collate([dict(a=1), dict(b=2)])
    assert vlp_collate([]) == {}
    assert FUNCTIONS.get('vlp_collate') is vlp_collate
    # mmengine's runners look collate functions up in mmengine's own registry
    assert MMENGINE_FUNCTIONS.get('vlp_collate') is vlp_collate


def test_with_mmengine_runner_dataloader():
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope('vlp')  # as the runner does for a vlp config
    loader = Runner.build_dataloader(dict(
        batch_size=4, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='vlp_collate'),
        dataset=dict(type='DemoImageText', split='val', num_images=8, image_size=32)))
    batch = next(iter(loader))
    assert batch['image'].shape == (4, 3, 32, 32)
    assert batch['input_ids'].shape == (4, 5, 32)
