"""The models of CapFilt's stages: built once per (config, checkpoint, options) and shared
by the stages that name the same one, each with the image transform of its own test
pipeline and its caption cleaning.

A stage's ``model`` is a built ``nn.Module`` (in-process use) or
``dict(config=PATH, checkpoint=PATH or None, cfg_options=None, strict=True)``, built with
:func:`vlp.apis.init_model` (weights-only loading)."""
import hashlib
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ['ModelSpec', 'ModelPool', 'image_transform_for', 'text_transform_for',
           'image_size_of', 'model_fingerprint']

# pipeline steps that do not touch the image (dropped from the image pipeline)
_NON_IMAGE_STEPS = ('LoadImage', 'Tokenize', 'CleanCaption')
# steps that set the image size (when a pipeline has none, a Resize is added)
_SIZE_STEPS = ('Resize', 'CenterCrop', 'RandomResizedCrop')


class ModelSpec:
    """A stage's ``model`` argument, normalised."""

    def __init__(self, spec):
        self.module: Optional[nn.Module] = None
        if isinstance(spec, nn.Module):
            self.module = spec
            self.config = self.checkpoint = None
            self.cfg_options, self.strict = None, True
            return
        if isinstance(spec, str):
            spec = dict(config=spec)
        if not isinstance(spec, dict) or 'config' not in spec:
            raise ValueError('a CapFilt stage model is an nn.Module or dict(config=PATH, '
                             f'checkpoint=PATH, cfg_options=None), got {spec!r}')
        unknown = set(spec) - {'config', 'checkpoint', 'cfg_options', 'strict'}
        if unknown:
            raise ValueError(f'unknown keys {sorted(unknown)} in a CapFilt model {spec!r} '
                             '(expected config, checkpoint, cfg_options, strict)')
        self.config = str(spec['config'])
        self.checkpoint = None if spec.get('checkpoint') in (None, '') else \
            str(spec['checkpoint'])
        self.cfg_options = dict(spec.get('cfg_options') or {}) or None
        self.strict = bool(spec.get('strict', True))

    @property
    def key(self) -> str:
        if self.module is not None:
            return f'module:{id(self.module)}'
        return json.dumps([osp.abspath(self.config),
                           osp.abspath(self.checkpoint) if self.checkpoint else None,
                           self.cfg_options], sort_keys=True, default=str)

    def describe(self) -> dict:
        """What the run's fingerprint and summary record of this model."""
        if self.module is not None:
            return dict(module=type(self.module).__name__,
                        fingerprint=model_fingerprint(self.module))
        out = dict(config=self.config, checkpoint=self.checkpoint,
                   cfg_options=self.cfg_options)
        if self.checkpoint and osp.exists(self.checkpoint):
            st = os.stat(self.checkpoint)
            out['checkpoint_stat'] = [st.st_size, int(st.st_mtime)]
        return out

    def missing_files(self) -> List[str]:
        if self.module is not None:
            return []
        return [p for p in (self.config, self.checkpoint) if p and not osp.exists(p)]


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of a module's parameters (names, shapes and values)."""
    h = hashlib.sha1()
    with torch.no_grad():
        for name, p in model.state_dict().items():
            h.update(name.encode())
            h.update(str(tuple(p.shape)).encode())
            if p.numel():
                h.update(repr(float(p.detach().double().sum())).encode())
    return h.hexdigest()[:16]


class ModelPool:
    """Builds each distinct model once, on ``device``, in eval mode."""

    def __init__(self, device: str = 'cpu'):
        self.device = device
        self._models: Dict[str, nn.Module] = {}

    def get(self, spec: ModelSpec) -> nn.Module:
        if spec.key not in self._models:
            if spec.module is not None:
                model = spec.module.to(self.device)
            else:
                from vlp.apis import init_model
                model = init_model(spec.config, spec.checkpoint, device=self.device,
                                   cfg_options=spec.cfg_options, strict=spec.strict)
            model.eval()
            self._models[spec.key] = model
        return self._models[spec.key]


# ------------------------------------------------------------------------- transforms
def image_size_of(model: nn.Module) -> Optional[Tuple[int, int]]:
    """Input size of the image encoder (timm: ``patch_embed.img_size``; used only when the
    model's config gives no resizing step)."""
    tower = getattr(model, 'vision', None)
    timm_model = getattr(tower, 'model', tower)
    size = getattr(getattr(timm_model, 'patch_embed', None), 'img_size', None)
    if size is None:
        input_size = (getattr(timm_model, 'pretrained_cfg', None) or {}).get('input_size')
        size = tuple(input_size[1:]) if input_size else None
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _pipeline_of(model: nn.Module) -> List[dict]:
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        return []
    try:
        return [dict(s) for s in cfg.test_dataloader.dataset.pipeline]
    except (AttributeError, KeyError, TypeError):
        return []


def image_steps_for(model: nn.Module) -> List[dict]:
    """The model's test pipeline (``model.cfg``, as :func:`vlp.apis.init_model` sets it)
    without loading and text steps, with a ``Resize`` to the encoder's input size if it
    has no resizing step, ending with ``ToTensor``."""
    steps = [s for s in _pipeline_of(model) if s.get('type') not in _NON_IMAGE_STEPS]
    if not any(s.get('type') in _SIZE_STEPS for s in steps):
        size = image_size_of(model)
        if size is not None:
            steps.insert(0, dict(type='Resize', size=size, interpolation='bicubic'))
    steps = [s for s in steps if s.get('type') != 'ToTensor'] + [dict(type='ToTensor')]
    return steps


def image_transform_for(model: nn.Module) -> Callable[[object], torch.Tensor]:
    """A callable ``PIL image -> uint8 [3, H, W]`` (:func:`image_steps_for`); its
    ``key`` names the steps (models with the same steps share one transform)."""
    from vlp.registry import TRANSFORMS
    steps = image_steps_for(model)
    transforms = [TRANSFORMS.build(dict(s)) for s in steps]

    def transform(img) -> torch.Tensor:
        results = dict(img=img)
        for t in transforms:
            results = t(results)
        return results['image']

    transform.steps = transforms
    transform.key = json.dumps(steps, sort_keys=True, default=str)
    return transform


def text_transform_for(model: nn.Module) -> Callable[[str], str]:
    """The caption cleaning of the model's test pipeline (``CleanCaption``), else the
    identity: a scorer scores the text as its model was trained to read it."""
    from vlp.datasets.transforms.text import pre_caption
    for s in _pipeline_of(model):
        if s.get('type') == 'CleanCaption':
            max_words, style = s.get('max_words', 30), s.get('style', 'blip')
            return lambda text: pre_caption(text, max_words=max_words, style=style)
    return lambda text: text
