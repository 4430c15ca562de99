"""Zero-shot image classification (CLIP, Radford et al. 2021, Sec. 3.1): prompt templates,
the prompt-ensembled text classifier and the top-k accuracy metric.

A class is represented by the text embedding of its name put into prompt templates ("a
photo of a {}."). With several templates, CLIP's prompt ensemble (Sec. 3.1.4) averages the
L2-normalised embeddings of every template and renormalises the mean. Images are then
classified by cosine similarity to these class embeddings
(``model.set_zero_shot_classifier``; the model's ``predict`` returns ``logits``).
"""
import sys
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank
from mmengine.evaluator import BaseMetric
from mmengine.utils import ProgressBar

from vlp.registry import METRICS

__all__ = ['OPENAI_IMAGENET_TEMPLATES', 'OPENAI_IMAGENET_SELECTED_TEMPLATES',
           'SIMPLE_TEMPLATES', 'TEMPLATE_PRESETS', 'get_templates', 'zero_shot_classifier',
           'ZeroShotAccuracy']

# The 80 prompts of OpenAI's ImageNet prompt ensemble (CLIP repository, notebook
# "Prompt_Engineering_for_ImageNet"), in their order.
OPENAI_IMAGENET_TEMPLATES = (
    'a bad photo of a {}.', 'a photo of many {}.', 'a sculpture of a {}.',
    'a photo of the hard to see {}.', 'a low resolution photo of the {}.',
    'a rendering of a {}.', 'graffiti of a {}.', 'a bad photo of the {}.',
    'a cropped photo of the {}.', 'a tattoo of a {}.', 'the embroidered {}.',
    'a photo of a hard to see {}.', 'a bright photo of a {}.', 'a photo of a clean {}.',
    'a photo of a dirty {}.', 'a dark photo of the {}.', 'a drawing of a {}.',
    'a photo of my {}.', 'the plastic {}.', 'a photo of the cool {}.',
    'a close-up photo of a {}.', 'a black and white photo of the {}.',
    'a painting of the {}.', 'a painting of a {}.', 'a pixelated photo of the {}.',
    'a sculpture of the {}.', 'a bright photo of the {}.', 'a cropped photo of a {}.',
    'a plastic {}.', 'a photo of the dirty {}.', 'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.', 'a photo of the {}.', 'a good photo of the {}.',
    'a rendering of the {}.', 'a {} in a video game.', 'a photo of one {}.',
    'a doodle of a {}.', 'a close-up photo of the {}.', 'a photo of a {}.',
    'the origami {}.', 'the {} in a video game.', 'a sketch of a {}.',
    'a doodle of the {}.', 'a origami {}.', 'a low resolution photo of a {}.',
    'the toy {}.', 'a rendition of the {}.', 'a photo of the clean {}.',
    'a photo of a large {}.', 'a rendition of a {}.', 'a photo of a nice {}.',
    'a photo of a weird {}.', 'a blurry photo of a {}.', 'a cartoon {}.', 'art of a {}.',
    'a sketch of the {}.', 'a embroidered {}.', 'a pixelated photo of a {}.',
    'itap of the {}.', 'a jpeg corrupted photo of the {}.', 'a good photo of a {}.',
    'a plushie {}.', 'a photo of the nice {}.', 'a photo of the small {}.',
    'a photo of the weird {}.', 'the cartoon {}.', 'art of the {}.',
    'a drawing of the {}.', 'a photo of the large {}.', 'a black and white photo of a {}.',
    'the plushie {}.', 'a dark photo of a {}.', 'itap of a {}.', 'graffiti of the {}.',
    'a toy {}.', 'itap of my {}.', 'a photo of a cool {}.', 'a photo of a small {}.',
    'a tattoo of the {}.')

# The 7-prompt subset OpenAI selected on ImageNet (same notebook; open_clip's
# SIMPLE_IMAGENET_TEMPLATES).
OPENAI_IMAGENET_SELECTED_TEMPLATES = (
    'itap of a {}.', 'a bad photo of the {}.', 'a origami {}.', 'a photo of the large {}.',
    'a {} in a video game.', 'art of the {}.', 'a photo of the small {}.')

# A short generic ensemble for datasets that are not photos of ImageNet-like objects.
SIMPLE_TEMPLATES = ('a photo of a {}.', 'a picture of a {}.', 'an image of a {}.',
                    'a photo of the {}.', 'a {}.')

TEMPLATE_PRESETS: Dict[str, Sequence[str]] = {
    'openai_imagenet': OPENAI_IMAGENET_TEMPLATES,
    'openai_imagenet_selected': OPENAI_IMAGENET_SELECTED_TEMPLATES,
    'simple': SIMPLE_TEMPLATES,
    'single': ('a photo of a {}.',),  # CLIP's default prompt (Sec. 3.1.4)
}

Template = Union[str, Callable[[str], str]]


def get_templates(templates: Union[str, Sequence[Template]]) -> List[Template]:
    """A preset name (:data:`TEMPLATE_PRESETS`) or a list of ``'{}'`` format strings /
    callables ``classname -> prompt``."""
    if isinstance(templates, str):
        if templates not in TEMPLATE_PRESETS:
            raise KeyError(f'unknown template preset {templates!r}: choose one of '
                           f'{sorted(TEMPLATE_PRESETS)} or pass a list of "{{}}" strings')
        return list(TEMPLATE_PRESETS[templates])
    templates = list(templates)
    if not templates:
        raise ValueError('templates is empty')
    for t in templates:
        if isinstance(t, str) and '{}' not in t:
            raise ValueError(f'template {t!r} has no "{{}}" for the class name')
        if not isinstance(t, str) and not callable(t):
            raise TypeError(f'a template is a "{{}}" string or a callable, got {type(t)}')
    return templates


def _fill(template: Template, classname: str) -> str:
    return template.replace('{}', classname) if isinstance(template, str) else template(classname)


@torch.no_grad()
def zero_shot_classifier(model: nn.Module, classnames: Sequence[str],
                         templates: Union[str, Sequence[Template]] = 'openai_imagenet',
                         batch_size: int = 256, progress: Optional[bool] = None
                         ) -> torch.Tensor:
    """Class embeddings ``[num_classes, D]`` by CLIP's prompt ensemble.

    Every (class, template) prompt is encoded with ``model.encode_text`` (in batches of
    ``batch_size`` prompts, with the model in eval mode); each class's L2-normalised
    embeddings are averaged over the templates and the mean is renormalised.

    Args:
        model: a dual encoder with ``encode_text(list_of_str) -> [B, D]`` (it tokenises
            with ``model.tokenizer``); unwrap DDP/DeepSpeed wrappers first.
        classnames: human-readable class names.
        templates: a preset name (``'openai_imagenet'``, ``'openai_imagenet_selected'``,
            ``'simple'``, ``'single'``) or a list of ``'{}'`` strings / callables.
        batch_size: prompts per ``encode_text`` call.
        progress: show a progress bar (default: on rank 0 when there are 10+ batches).

    Returns:
        float32 ``[num_classes, D]``, rows L2-normalised, on the model's device.
    """
    templates = get_templates(templates)
    classnames = list(classnames)
    if not classnames:
        raise ValueError('classnames is empty')
    prompts = [_fill(t, c) for c in classnames for t in templates]  # class-major
    num_batches = (len(prompts) + batch_size - 1) // batch_size
    if progress is None:
        progress = get_rank() == 0 and num_batches >= 10
    bar = ProgressBar(num_batches, file=sys.stdout) if progress else None
    was_training = model.training
    model.eval()
    try:
        feats = []
        for start in range(0, len(prompts), batch_size):
            feat = model.encode_text(prompts[start:start + batch_size])  # (b, D)
            feats.append(F.normalize(feat.float(), dim=-1))
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.file.write('\n')  # mmengine's bar leaves the line open
    finally:
        model.train(was_training)
    feats = torch.cat(feats).view(len(classnames), len(templates), -1)  # (C, T, D)
    return F.normalize(feats.mean(dim=1), dim=-1)  # (C, D)


@METRICS.register_module()
class ZeroShotAccuracy(BaseMetric):
    """Top-k accuracy (%) of the zero-shot ``logits [num_classes]`` against ``label``.

    Args:
        topk: the k of top-k accuracy; k above the number of classes is clipped (every
            prediction is then correct).
        collect_device, prefix, collect_dir: see mmengine's ``BaseMetric``; names are
            ``{prefix}/top1``... (default prefix ``'zero_shot'``).

    ``logits`` come from the model's ``predict`` once a classifier is set
    (:class:`~vlp.engine.hooks.ZeroShotClassifierHook` or
    ``model.set_zero_shot_classifier``).
    """
    default_prefix = 'zero_shot'

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = 'cpu',
                 prefix: Optional[str] = None, collect_dir: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        if not topk or any(int(k) < 1 for k in topk):
            raise ValueError(f'topk must be positive integers, got {topk}')
        self.topk = tuple(int(k) for k in topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'logits' not in sample:
                raise KeyError(
                    f"{type(self).__name__}: no 'logits' in the prediction (keys "
                    f'{sorted(sample)}): add ZeroShotClassifierHook to custom_hooks or call '
                    'model.set_zero_shot_classifier(...) before evaluating')
            if 'label' not in sample:
                raise KeyError(f"{type(self).__name__}: no 'label' in the prediction")
            logits = sample['logits'].detach().float().reshape(-1)  # (num_classes,)
            k = min(max(self.topk), logits.numel())
            # keep only the top-k class indices, not every logit
            self.results.append(dict(pred=logits.topk(k).indices.cpu(),
                                     label=int(sample['label'])))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        if not results:
            raise ValueError(f'{type(self).__name__}: no results to evaluate')
        preds = torch.stack([r['pred'] for r in results])  # (N, kmax)
        labels = torch.tensor([r['label'] for r in results])  # (N,)
        hits = preds == labels[:, None]  # (N, kmax)
        return {f'top{k}': 100.0 * hits[:, :k].any(dim=1).double().mean().item()
                for k in self.topk}
