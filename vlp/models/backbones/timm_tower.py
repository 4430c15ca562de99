"""A vision tower wrapping any timm model (Wightman, "PyTorch Image Models").

Every image tower of the papers vlp reproduces is a timm model: the ViTs of CLIP
(Radford et al. 2021), ALBEF, BLIP, BLIP-2, VLMo; the EfficientNet of ALIGN (Jia et al.
2021); ConvNeXt / ResNet variants of open_clip. ``TimmTower`` builds one by name with
``timm.create_model(..., num_classes=0)`` and returns vlp's tower contract:
``image_embeds`` = ``forward_features`` (all tokens after the final norm, or the last
feature map flattened to tokens) and ``image_pooled`` = ``forward_head(pre_logits=True)``
(timm's own pooling: class token, average, attention pool...).
"""
import logging
import os
import re
import sys
from typing import Dict, List, Optional, Tuple, Union

import timm
import torch
import torch.nn as nn
from mmengine.logging import print_log

from vlp.registry import MODELS


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Tensors of a local ``.safetensors`` file, a weights-only ``torch.save`` file (an
    mmengine training checkpoint's message-hub classes are allowed) or a DeepSpeed
    checkpoint directory: :func:`vlp.engine.checkpoint.read_state_dict`.

    A dict holding the weights under ``'state_dict'``, ``'module'`` or ``'model'``
    (mmengine, DeepSpeed, timm training checkpoints) is unwrapped; a ``module.`` prefix on
    every key (DDP) is dropped. A file holding objects other than weights is refused
    (``UnsafeCheckpointError``), nothing in it runs.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    from vlp.engine.checkpoint import read_state_dict as read_weights
    return dict(read_weights(path))


def _prefix_regex(pattern: str, prefix: str) -> str:
    """Anchor a timm group-matcher regex (applied with ``re.match`` to names relative to
    the timm model) below ``prefix``: ``'^a|b'`` -> ``'^model\\.(?:a|b)'``."""
    body = re.sub(r'(^|\|)\^', r'\1', pattern)  # drop the start anchors of each alternative
    return '^' + re.escape(prefix) + '(?:' + body + ')'


@MODELS.register_module()
class TimmTower(nn.Module):
    """Any timm image model as a vlp vision tower.

    Args:
        model_name: a timm model name (``timm.list_models()``), e.g.
            ``'vit_base_patch16_clip_224'``, ``'efficientnet_b7'``.
        pretrained: let timm load its pretrained weights (needs the hub or timm's
            ``pretrained_cfg_overlay=dict(file=...)`` passed through ``kwargs``).
        checkpoint: a local ``.safetensors`` / ``.pth`` file loaded after construction
            (weights-only; see :meth:`load_checkpoint`).
        checkpoint_prefix: keep only the checkpoint keys under this prefix and strip it
            (e.g. ``'visual.trunk.'`` for an open_clip timm tower, ``'vision.model.'`` for a
            vlp model checkpoint).
        strict: raise when keys are missing or unexpected (after dropping the classifier
            keys of the checkpoint, which a ``num_classes=0`` tower does not have);
            otherwise log them as a warning.
        adapt_checkpoint: pass the checkpoint through timm's ``checkpoint_filter_fn`` of
            the model's module when it has one (ViT: resamples position / patch
            embeddings to this ``img_size`` and converts OpenAI / open_clip CLIP formats),
            as timm does for its own pretrained weights.
        img_size, drop_path_rate, global_pool: passed to ``timm.create_model`` when set.
        head_conv: ``False`` removes the 1x1 head convolution (and its norm) of a
            convolutional model that has one (timm's EfficientNet / MobileNet family:
            ``conv_head``, ``bn2``), so ``image_pooled`` is the globally pooled last stage:
            ALIGN's image embedding ("EfficientNet with global pooling, without the 1x1
            conv layer in the classification head"; 640-d for EfficientNet-B7).
        **kwargs: any other ``timm.create_model`` argument (``patch_size``, ``embed_dim``,
            ``depth``, ``num_heads``, ``pre_norm``, ``act_layer``...). ``num_classes`` is
            always 0: the tower has no classifier.

    Attributes:
        model: the timm model (parameter names ``model.<timm name>``).
        out_dim: width ``C`` of ``image_pooled`` (timm's ``head_hidden_size``).
        embed_dim: width of ``image_embeds`` (timm's ``num_features``); equal to
            ``out_dim`` except for models with a pre-logits layer (MobileNetV3...).

    ``forward(images [B, 3, H, W])`` returns ``dict(image_embeds [B, N, C],
    image_pooled [B, C])``.

    The tower is a plain ``nn.Module`` without ``init_weights``, so mmengine's
    ``BaseModule.init_weights`` never re-initialises (timm's ViT defines an
    ``init_weights`` that would) weights loaded here at construction.
    """

    def __init__(self, model_name: str, pretrained: bool = False,
                 checkpoint: Optional[str] = None, checkpoint_prefix: Optional[str] = None,
                 strict: bool = True, adapt_checkpoint: bool = True,
                 img_size: Optional[Union[int, Tuple[int, int]]] = None,
                 drop_path_rate: Optional[float] = None, global_pool: Optional[str] = None,
                 head_conv: bool = True, **kwargs):
        super().__init__()
        if kwargs.pop('num_classes', 0) != 0:
            raise ValueError('TimmTower builds timm models without a classifier '
                             '(num_classes=0)')
        for name, value in (('img_size', img_size), ('drop_path_rate', drop_path_rate),
                            ('global_pool', global_pool)):
            if value is not None:
                kwargs[name] = value
        self.model_name = model_name
        try:
            self.model = timm.create_model(model_name, pretrained=pretrained, num_classes=0,
                                           **kwargs)
        except RuntimeError as e:
            # timm reads its pretrained files weights-only and says so without the file name
            from vlp.engine.checkpoint import unsafe_checkpoint_error
            source = (kwargs.get('pretrained_cfg_overlay') or {}).get('file') or \
                f'timm pretrained weights of {model_name}'
            refused = unsafe_checkpoint_error(e.__cause__, source) if pretrained else None
            if refused is None:
                raise
            raise refused from e
        if not head_conv:
            self._remove_head_conv()
        self.embed_dim = self.model.num_features
        self.out_dim = getattr(self.model, 'head_hidden_size', self.embed_dim)
        self.output_fmt = str(getattr(self.model, 'output_fmt', 'NCHW'))
        self.grad_checkpointing = False
        if checkpoint is not None:
            self.load_checkpoint(checkpoint, prefix=checkpoint_prefix, strict=strict,
                                 adapt=adapt_checkpoint)

    def _remove_head_conv(self) -> None:
        conv = getattr(self.model, 'conv_head', None)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f'head_conv=False: {self.model_name} has no 1x1 conv_head to '
                             'remove')
        self.model.conv_head = nn.Identity()
        if hasattr(self.model, 'bn2'):
            self.model.bn2 = nn.Identity()
        self.model.num_features = conv.in_channels
        if hasattr(self.model, 'head_hidden_size'):
            self.model.head_hidden_size = conv.in_channels

    # -- weights ------------------------------------------------------------------------
    def load_checkpoint(self, path: str, prefix: Optional[str] = None, strict: bool = True,
                        adapt: bool = True) -> Tuple[List[str], List[str]]:
        """Load a local checkpoint into ``self.model``.

        Returns:
            ``(missing, unexpected)`` keys (relative to the timm model).

        Raises:
            KeyError: with ``strict``, listing the missing and unexpected keys; also when
                ``prefix`` matches no key.
        """
        sd = read_state_dict(path)
        if prefix:
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            if not sd:
                raise KeyError(f'no key of {path!r} starts with {prefix!r}')
        filter_fn = getattr(sys.modules.get(type(self.model).__module__),
                            'checkpoint_filter_fn', None)
        if adapt and filter_fn is not None:
            sd = filter_fn(sd, self.model)
        own = self.model.state_dict()
        # the classifier of a pretrained checkpoint has no place in a num_classes=0 tower
        heads = self.model.pretrained_cfg.get('classifier') or ()
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        dropped = [k for k in sd if k not in own and any(k.startswith(h + '.') for h in heads)]
        sd = {k: v for k, v in sd.items() if k not in dropped}
        missing, unexpected = self.model.load_state_dict(sd, strict=False)
        msg = (f'TimmTower({self.model_name}) <- {path}: {len(sd) - len(unexpected)} tensors '
               f'loaded; missing keys: {list(missing)}; unexpected keys: {list(unexpected)}')
        if dropped:
            msg += f'; classifier keys skipped: {dropped}'
        if strict and (missing or unexpected):
            raise KeyError(msg)
        print_log(msg, logger='current',
                  level=logging.WARNING if (missing or unexpected) else logging.INFO)
        return list(missing), list(unexpected)

    # -- timm API passthrough -------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing of the timm blocks (timm's ``set_grad_checkpointing``,
        non-reentrant by timm's default), applied only in training forwards with grad."""
        self.grad_checkpointing = enable
        self.model.set_grad_checkpointing(enable)

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer-grouping regexes (for layer-wise lr decay), anchored at this
        tower's parameter names (``model.<timm name>``): use with
        ``timm.models.group_parameters(tower, tower.group_matcher())``."""
        out = {}
        for group, spec in self.model.group_matcher(coarse=coarse).items():
            if isinstance(spec, str):
                out[group] = _prefix_regex(spec, 'model.')
            elif isinstance(spec, (list, tuple)):
                out[group] = [(_prefix_regex(p, 'model.'), suffix) for p, suffix in spec]
            else:
                out[group] = spec
        return out

    def no_weight_decay(self) -> set:
        """Names (relative to this tower) that timm excludes from weight decay
        (position embeddings, class / register tokens...)."""
        fn = getattr(self.model, 'no_weight_decay', None)
        names = fn() if callable(fn) else set()
        own = {n for n, _ in self.named_parameters()}
        return {f'model.{n}' for n in names if f'model.{n}' in own}

    # -- forward -------------------------------------------------------------------------
    def _sync_checkpointing(self) -> None:
        want = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        if getattr(self.model, 'grad_checkpointing', None) != want:
            self.model.set_grad_checkpointing(want)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            images: ``[B, 3, H, W]`` normalised images.

        Returns:
            ``image_embeds [B, N, C]``: the ``forward_features`` tokens (class / prefix
            tokens included) or a ``[B, C, H', W']`` (``NHWC`` for Swin-like models)
            feature map flattened to ``N = H' W'`` tokens; ``image_pooled [B, C]``:
            ``forward_head(pre_logits=True)``.
        """
        self._sync_checkpointing()
        feats = self.model.forward_features(images)
        pooled = self.model.forward_head(feats, pre_logits=True)  # (B, C)
        if feats.dim() == 4:
            if self.output_fmt == 'NHWC':
                tokens = feats.flatten(1, 2)  # (B, H'W', C)
            else:
                tokens = feats.flatten(2).transpose(1, 2)  # (B, H'W', C)
        elif feats.dim() == 3:
            tokens = feats  # (B, N, C)
        else:
            raise RuntimeError(f'{self.model_name}.forward_features returned shape '
                               f'{tuple(feats.shape)}; expected [B, N, C] or a feature map')
        return dict(image_embeds=tokens, image_pooled=pooled)
