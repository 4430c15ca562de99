"""Inference entry points: build a model from a config and checkpoint, encode images and
texts, classify images zero-shot (CLIP, Radford et al. 2021, Sec. 3.1).

>>> model = init_model('configs/clip/<config>.py', 'work_dirs/<run>/epoch_32.pth',
...                    device='cuda')
>>> image_feat = encode_image(model, images)          # uint8 [B, 3, H, W] -> [B, D]
>>> text_feat = encode_text(model, ['a dog', 'a cat'])  # -> [B, D]
>>> probs = zero_shot_classify(model, images, ['dog', 'cat'], templates='simple')

Checkpoints are read by :func:`vlp.engine.checkpoint.read_state_dict`: a ``torch.save``
file with ``torch.load(weights_only=True)`` (tensors and plain containers only, plus
exactly the classes mmengine writes into its training checkpoints: the scoped allow-list
of :mod:`vlp.engine.checkpoint`), a ``.safetensors`` file, or a DeepSpeed checkpoint
directory of any ZeRO stage (consolidated weights-only). A file holding any other object
is refused (``UnsafeCheckpointError``), never executed.
"""
import logging
import os.path as osp
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

from vlp.evaluation.metrics.zero_shot import Template, zero_shot_classifier
from vlp.registry import MODELS

__all__ = ['init_model', 'load_weights', 'encode_image', 'encode_text',
           'zero_shot_classify']


def load_weights(model: nn.Module, checkpoint: str, strict: bool = True) -> nn.Module:
    """Load ``checkpoint`` (weights-only) into ``model``; a leading ``module.`` is stripped.

    ``checkpoint``: a ``torch.save`` file (an mmengine checkpoint's ``state_dict``, a
    DeepSpeed ``module`` entry or a bare state dict), a ``.safetensors`` file or a
    DeepSpeed checkpoint directory (see :func:`vlp.engine.checkpoint.read_state_dict`).
    Missing and unexpected keys are logged; with ``strict`` any of them is an error.

    Raises:
        FileNotFoundError: no such file or directory.
        vlp.engine.checkpoint.UnsafeCheckpointError: the file holds objects other than
            weights (nothing in it ran).
    """
    if not osp.exists(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} not found')
    from vlp.engine.checkpoint import read_state_dict
    state = read_state_dict(checkpoint)
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        msg = (f'checkpoint {checkpoint}: {len(missing)} missing keys {missing[:10]}, '
               f'{len(unexpected)} unexpected keys {unexpected[:10]}')
        if strict:
            raise RuntimeError(f'{msg} (pass strict=False to load anyway)')
        print_log(msg, logger='current', level=logging.WARNING)
    return model


def init_model(config: Union[str, Path, Config], checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu', cfg_options: Optional[dict] = None,
               strict: bool = True) -> nn.Module:
    """Build ``cfg.model`` and load its weights, ready for inference.

    Args:
        config: a config file path or an mmengine ``Config``.
        checkpoint: weights file (an mmengine checkpoint's ``state_dict``, a DeepSpeed
            ``module`` entry, a bare state dict, ``.safetensors``) or a DeepSpeed
            checkpoint directory of any ZeRO stage, read weights-only (:func:`load_weights`);
            ``None`` keeps the constructor's weights.
        device: where the model is put.
        cfg_options: overrides merged into the config (``{'model.text.layers': 2}``).
        strict: missing or unexpected keys are an error (``False``: a warning).

    Returns:
        the model in eval mode on ``device``, with ``model.cfg`` set to the config.
    """
    if isinstance(config, (str, Path)):
        cfg = Config.fromfile(str(config))
    elif isinstance(config, Config):
        cfg = config.copy()
    else:
        raise TypeError(f'config must be a path or a Config, got {type(config).__name__}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('custom_imports'):  # plugins registering their own parts
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'vlp'))
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_weights(model, str(checkpoint), strict=strict)
    model.cfg = cfg
    return model.to(device).eval()


def _stack(images: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
    return images if isinstance(images, torch.Tensor) else torch.stack(list(images))


@torch.no_grad()
def encode_image(model: nn.Module, images: Union[torch.Tensor, Sequence[torch.Tensor]]
                 ) -> torch.Tensor:
    """``uint8`` images (0-255) or normalised float images ``[B, 3, H, W]`` (or a list of
    ``[3, H, W]``) -> L2-normalised ``image_feat [B, D]``."""
    return model.encode_image(_stack(images))


@torch.no_grad()
def encode_text(model: nn.Module, texts: Union[str, List[str], torch.Tensor]
                ) -> torch.Tensor:
    """Strings (tokenised with ``model.tokenizer``) or token ids ``[B, L]`` ->
    L2-normalised ``text_feat [B, D]``."""
    return model.encode_text(texts)


@torch.no_grad()
def zero_shot_classify(model: nn.Module, images: Union[torch.Tensor, Sequence[torch.Tensor]],
                       classnames: Sequence[str],
                       templates: Union[str, Sequence[Template]] = 'openai_imagenet',
                       batch_size: int = 256) -> torch.Tensor:
    """Class probabilities ``[B, num_classes]`` of ``images`` by CLIP's zero-shot recipe:
    softmax over ``logit_scale * cos(image, prompt-ensembled class embedding)`` (the
    model's learned scale; 100, CLIP's trained value, when the model has none)."""
    weights = zero_shot_classifier(model, classnames, templates, batch_size)  # (C, D)
    image_feat = encode_image(model, images).float()  # (B, D)
    get_scale = getattr(model, 'get_logit_scale', None)
    scale = get_scale().float() if callable(get_scale) else torch.tensor(100.0)
    logits = scale.to(image_feat.device) * image_feat @ weights.to(image_feat.device).t()
    return logits.softmax(dim=-1)  # (B, C)
