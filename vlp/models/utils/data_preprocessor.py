"""Batch preprocessing on the model's device: move, normalise images, cast.

The data contract (every vlp dataset follows it) is a dict per sample:

- ``image``: ``uint8`` tensor ``[3, H, W]`` (or float already in [0, 255]);
  video datasets give ``[T, 3, H, W]``;
- ``input_ids`` / ``attention_mask``: ``int64`` ``[L]`` for one caption (training) or
  ``[K, L]`` for all captions of an image (retrieval evaluation);
- anything else (``image_id``, ``text``, ``label``...) is metadata.

After :func:`vlp.datasets.collate.vlp_collate` the batch is a dict of stacked tensors
(or lists where shapes differ). This preprocessor returns
``dict(inputs=dict(images=..., input_ids=..., attention_mask=...), data_samples=meta)``
which mmengine passes to ``model.forward(inputs, data_samples, mode)``.
"""
from typing import Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from vlp.registry import MODELS

INPUT_KEYS = ('images', 'input_ids', 'attention_mask')


@MODELS.register_module()
class VLPDataPreprocessor(BaseDataPreprocessor):
    """Normalise ``image`` with ``mean``/``std`` (0-255 scale) and split inputs from meta.

    Args:
        mean, std: per-channel statistics on the 0-255 scale (CLIP's by default).
    """

    def __init__(self,
                 mean: Sequence[float] = (122.771, 116.746, 104.094),
                 std: Sequence[float] = (68.501, 66.632, 70.323),
                 non_blocking: bool = False):
        super().__init__(non_blocking=non_blocking)
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1),
                             persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) / self.std

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(dict(data))
        inputs, meta = {}, {}
        for key, value in data.items():
            if key == 'image':
                if isinstance(value, (list, tuple)):
                    raise ValueError('images of different sizes in one batch: resize them '
                                     'in the pipeline')
                inputs['images'] = self.normalize(value)
            elif key in INPUT_KEYS:
                inputs[key] = value
            else:
                meta[key] = value
        return dict(inputs=inputs, data_samples=meta)
