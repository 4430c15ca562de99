"""ZeroShotClassifierHook: build the zero-shot classifier (CLIP, Radford et al. 2021,
Sec. 3.1) from the evaluation dataset's class names before each val / test epoch.

The text tower changes during training, so the class embeddings are recomputed at every
evaluation: every (class, template) prompt is encoded with ``model.encode_text``, averaged
per class over the templates (the prompt ensemble) and handed to
``model.set_zero_shot_classifier``; the model's ``predict`` then returns ``logits`` that
:class:`~vlp.evaluation.ZeroShotAccuracy` scores. Every rank computes the same
classifier from the same prompts (no communication; under ZeRO-3 every rank runs the same
forwards, which keeps the parameter gathers in step).
"""
import logging
from typing import Optional, Sequence, Union

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log

from vlp.evaluation.metrics.zero_shot import Template, get_templates, zero_shot_classifier
from vlp.registry import HOOKS


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / mmengine / DeepSpeed wrappers (``.module`` chains)."""
    while isinstance(getattr(model, 'module', None), nn.Module):
        model = model.module
    return model


@HOOKS.register_module()
class ZeroShotClassifierHook(Hook):
    """Set the zero-shot classifier of the model before each val and/or test epoch.

    Args:
        templates: prompt templates: a preset (``'openai_imagenet'``: the 80 prompts of
            OpenAI's ImageNet ensemble, ``'openai_imagenet_selected'``: its 7-prompt subset,
            ``'simple'``, ``'single'``) or a list of ``'{}'`` strings. ``None``: the
            dataset's ``metainfo['templates']`` if it has them, else ``'openai_imagenet'``.
        classnames: class names; ``None``: the dataset's ``metainfo['classes']``.
        batch_size: prompts per ``encode_text`` call.
        on_val / on_test: which evaluations to prepare.

    A dataset without class names (e.g. a retrieval set) clears the classifier, so no
    stale ``logits`` from another dataset are predicted.
    """
    priority = 'NORMAL'

    def __init__(self, templates: Union[str, Sequence[Template], None] = None,
                 classnames: Optional[Sequence[str]] = None, batch_size: int = 256,
                 on_val: bool = True, on_test: bool = True):
        if templates is not None:
            get_templates(templates)  # fail at build time on a bad preset / template
        self.templates = templates
        self.classnames = list(classnames) if classnames is not None else None
        self.batch_size = batch_size
        self.on_val = on_val
        self.on_test = on_test

    def before_val_epoch(self, runner) -> None:
        if self.on_val:
            self._set_classifier(runner, runner.val_loop.dataloader.dataset)

    def before_test_epoch(self, runner) -> None:
        if self.on_test:
            self._set_classifier(runner, runner.test_loop.dataloader.dataset)

    def _set_classifier(self, runner, dataset) -> None:
        model = unwrap_model(runner.model)
        if not hasattr(model, 'set_zero_shot_classifier'):
            raise TypeError(f'{type(model).__name__} has no set_zero_shot_classifier: '
                            'ZeroShotClassifierHook needs a dual-encoder model')
        metainfo = getattr(dataset, 'metainfo', None) or {}
        classnames = self.classnames or metainfo.get('classes')
        if not classnames:
            print_log(f'{type(self).__name__}: {type(dataset).__name__} has no '
                      "metainfo['classes'] and no classnames were given: no zero-shot "
                      'classifier for this evaluation', logger='current',
                      level=logging.WARNING)
            model.set_zero_shot_classifier(None)
            return
        templates = self.templates
        if templates is None:
            templates = metainfo.get('templates') or 'openai_imagenet'
        num_templates = len(get_templates(templates))
        print_log(f'{type(self).__name__}: encoding {len(classnames)} classes x '
                  f'{num_templates} templates', logger='current')
        weights = zero_shot_classifier(model, list(classnames), templates, self.batch_size)
        model.set_zero_shot_classifier(weights)
