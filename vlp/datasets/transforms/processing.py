"""Image transforms on ``results['img']`` (a PIL image, ``HWC`` uint8 array or ``[3, H, W]``
tensor) through ``torchvision.transforms.v2``; ``ToTensor`` ends every image pipeline with
``results['image']``, a ``uint8`` ``[3, H, W]`` tensor (normalisation happens on the device,
in ``VLPDataPreprocessor``).

The demo pipelines add no horizontal flip: their captions say left and right.
"""
from typing import Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from vlp.registry import TRANSFORMS

_INTERP = {'nearest': InterpolationMode.NEAREST, 'bilinear': InterpolationMode.BILINEAR,
           'bicubic': InterpolationMode.BICUBIC, 'lanczos': InterpolationMode.LANCZOS}


def _interp(name: str) -> InterpolationMode:
    if name not in _INTERP:
        raise ValueError(f'interpolation must be one of {list(_INTERP)}, got {name!r}')
    return _INTERP[name]


def _as_image(img):
    """PIL and tensors go to torchvision as they are; arrays become PIL."""
    if isinstance(img, np.ndarray):
        return Image.fromarray(img)
    return img


def _size(size: Union[int, Sequence[int]]) -> Union[int, Tuple[int, int]]:
    return size if isinstance(size, int) else (int(size[0]), int(size[1]))


@TRANSFORMS.register_module()
class Resize:
    """Resize ``img``: an int ``size`` sets the shorter side (keeps the aspect ratio, as
    CLIP's eval transform); ``(h, w)`` resizes exactly (BLIP's eval transform)."""

    def __init__(self, size: Union[int, Sequence[int]], interpolation: str = 'bicubic'):
        self.size = _size(size)
        self.interpolation = interpolation

    def __call__(self, results: dict) -> dict:
        size = [self.size] if isinstance(self.size, int) else list(self.size)
        results['img'] = F.resize(_as_image(results['img']), size,
                                  interpolation=_interp(self.interpolation), antialias=True)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(size={self.size}, interpolation={self.interpolation})'


@TRANSFORMS.register_module()
class CenterCrop:
    """Crop the centre ``size`` (int: square)."""

    def __init__(self, size: Union[int, Sequence[int]]):
        self.size = _size(size)

    def __call__(self, results: dict) -> dict:
        size = [self.size, self.size] if isinstance(self.size, int) else list(self.size)
        results['img'] = F.center_crop(_as_image(results['img']), size)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(size={self.size})'


@TRANSFORMS.register_module()
class RandomResizedCrop:
    """Inception-style random crop of ``scale`` of the area and ``ratio`` aspect, resized to
    ``size`` (open_clip trains with ``scale=(0.9, 1.0)``, ALBEF/BLIP with ``(0.5, 1.0)``)."""

    def __init__(self, size: Union[int, Sequence[int]],
                 scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), interpolation: str = 'bicubic'):
        self.size = _size(size)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.interpolation = interpolation
        self._t = v2.RandomResizedCrop(self.size, scale=self.scale, ratio=self.ratio,
                                       interpolation=_interp(interpolation), antialias=True)

    def __call__(self, results: dict) -> dict:
        results['img'] = self._t(_as_image(results['img']))
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, scale={self.scale}, '
                f'ratio={self.ratio}, interpolation={self.interpolation})')


@TRANSFORMS.register_module()
class RandomHorizontalFlip:
    """Flip ``img`` left-right with probability ``prob`` (ALBEF/BLIP training). Captions
    are not changed, so never use it with the demo data (its captions say left/right)."""

    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def __call__(self, results: dict) -> dict:
        if torch.rand(()) < self.prob:
            results['img'] = F.horizontal_flip(_as_image(results['img']))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob})'


@TRANSFORMS.register_module()
class RandAugment:
    """RandAugment (Cubuk et al. 2020) with torchvision's operation set: ``num_ops`` random
    operations of strength ``magnitude`` (of ``num_magnitude_bins - 1``). ALBEF/BLIP use
    ``N=2, M=7`` on their own, smaller op list (no colour, posterise, solarise ops): this
    is the closest standard implementation, not a copy of theirs."""

    def __init__(self, num_ops: int = 2, magnitude: int = 7, num_magnitude_bins: int = 31,
                 interpolation: str = 'nearest'):
        self.num_ops, self.magnitude = num_ops, magnitude
        self._t = v2.RandAugment(num_ops=num_ops, magnitude=magnitude,
                                 num_magnitude_bins=num_magnitude_bins,
                                 interpolation=_interp(interpolation))

    def __call__(self, results: dict) -> dict:
        results['img'] = self._t(_as_image(results['img']))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude})'


@TRANSFORMS.register_module()
class ToTensor:
    """``results['img']`` (PIL / ``HWC`` array / ``[3, H, W]`` tensor) -> ``results['image']``,
    a contiguous ``uint8`` ``[3, H, W]`` tensor; ``img`` is removed. Grey images get three
    channels."""

    def __call__(self, results: dict) -> dict:
        img = results.pop('img')
        if isinstance(img, Image.Image):
            img = np.array(img.convert('RGB'))  # a writable copy
        if isinstance(img, np.ndarray):
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=-1)
            tensor = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)  # (3, H, W)
        elif isinstance(img, torch.Tensor):
            tensor = img if img.ndim == 3 else img[None]
            if tensor.shape[0] == 1:
                tensor = tensor.expand(3, -1, -1)
        else:
            raise TypeError(f'ToTensor: unsupported image type {type(img)}')
        if tensor.dtype != torch.uint8:
            tensor = tensor.round().clamp(0, 255).to(torch.uint8) if tensor.is_floating_point() \
                else tensor.clamp(0, 255).to(torch.uint8)
        results['image'] = tensor.contiguous()
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'
