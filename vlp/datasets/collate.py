"""``vlp_collate``: batch a list of sample dicts (the vlp data contract).

Per key: tensors (and numeric arrays) of one shape are stacked; of different shapes (e.g.
``input_ids`` ``[K_i, L]`` with a different number of captions per image) they stay a list;
numbers become a tensor (bool, int64 or float32); strings, lists and anything else stay a list.
"""
import numbers
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS

from vlp.registry import FUNCTIONS


def _collate_values(values: List[Any]) -> Any:
    if all(isinstance(v, np.ndarray) and v.dtype.kind in 'biuf' for v in values):
        values = [torch.from_numpy(v) for v in values]
    if all(isinstance(v, torch.Tensor) for v in values):
        if all(v.shape == values[0].shape for v in values):
            return torch.stack(values)
        return values
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return torch.tensor([bool(v) for v in values])
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        return torch.tensor([int(v) for v in values], dtype=torch.long)
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return torch.tensor([float(v) for v in values], dtype=torch.float32)
    return list(values)


def vlp_collate(batch: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Collate sample dicts into one batch dict (see the module docstring)."""
    if len(batch) == 0:
        return {}
    if not all(isinstance(s, dict) for s in batch):
        raise TypeError(f'vlp_collate expects dict samples, got {type(batch[0])}')
    keys = list(batch[0].keys())
    for i, sample in enumerate(batch):
        if set(sample.keys()) != set(keys):
            raise KeyError(f'vlp_collate: sample {i} has keys {sorted(sample)}, '
                           f'sample 0 has {sorted(keys)}')
    return {k: _collate_values([s[k] for s in batch]) for k in keys}


FUNCTIONS.register_module(name='vlp_collate', module=vlp_collate)
# mmengine's runners look the collate function up in mmengine's own FUNCTIONS registry,
# which does not search its children: register it there too so that
# ``collate_fn=dict(type='vlp_collate')`` works in a config.
if 'vlp_collate' not in MMENGINE_FUNCTIONS.module_dict:
    MMENGINE_FUNCTIONS.register_module(name='vlp_collate', module=vlp_collate)
