"""The inference API: one set of functions for every family (LAVIS's
``load_model_and_preprocess`` and open_clip's ``create_model_and_transforms`` in one call).

>>> from vlp import apis
>>> model = apis.init_model('configs/blip/blip_tiny_demo.py')       # random weights
>>> model = apis.init_model('converted/blip', device='cuda')        # config.py + model.pth
>>> apis.caption(model, ['cat.jpg', 'dog.png'], num_beams=3)        # ['a cat on ...', ...]
>>> apis.match(model, 'cat.jpg', ['a cat', 'a dog'])['itc_probs']    # [1, 2]
>>> apis.zero_shot_classify(model, images, ['cat', 'dog'])           # [B, 2] probabilities

**Images.** Every image argument takes a file path (``str`` / ``Path``), a PIL image, a
numpy array (``HWC`` or ``HW``; ``uint8`` 0-255 or float 0-1) or a tensor (``[3, H, W]`` or
``[B, 3, H, W]``; ``uint8`` 0-255 or float 0-1, torchvision's convention), of any size, one
or a list / batch; videos (families that read them, CLIP4Clip) as video files, ``[T, 3, H,
W]`` items of a list or ``[B, T, 3, H, W]`` tensors. They are brought to the model's input
the way the config's test pipeline does it (its ``Resize`` / ``CenterCrop``, then the
model's normalisation; :class:`ImagePreprocessor`): a batch tensor is resized in one call,
and every task runs the model once on the whole batch.

**Tasks.** :data:`TASKS` maps each function to the capabilities it needs
(:mod:`vlp.models.algorithms.base`); a family without them raises ``NotImplementedError``
naming the family, the task and what it supports (:func:`supported_tasks` lists them).

Checkpoints are read by :func:`vlp.engine.checkpoint.read_state_dict`, weights-only: a
``torch.save`` file (tensors and plain containers, plus exactly the classes mmengine and
DeepSpeed write), a ``.safetensors`` file or a DeepSpeed checkpoint directory of any ZeRO
stage. A file holding any other object is refused (``UnsafeCheckpointError``), never run.
"""
import logging
import os.path as osp
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

from vlp.evaluation.metrics.zero_shot import Template, get_templates, zero_shot_classifier
from vlp.models.algorithms.base import supports
from vlp.registry import MODELS, TRANSFORMS

__all__ = ['init_model', 'load_weights', 'ImagePreprocessor', 'preprocess', 'encode_image',
           'encode_text', 'match', 'caption', 'answer', 'zero_shot_classify',
           'query_features', 'supported_tasks', 'TASKS', 'load_images',
           'CheckpointMismatchError']

VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')
#: task -> alternatives, each the capabilities that together serve it
TASKS: Dict[str, Tuple[Tuple[str, ...], ...]] = {
    'encode_image': (('encode_image',),),
    'encode_text': (('encode_text',),),
    'match': (('encode_image', 'encode_text'), ('itm_score',)),
    'caption': (('generate',),),
    'answer': (('answer',),),
    'zero_shot_classify': (('encode_image', 'encode_text'),),
    'query_features': (('query_features',),),
}
#: the spatial transforms of a test pipeline the preprocessor applies (the others load files,
#: tokenise or clean captions)
SPATIAL = ('Resize', 'CenterCrop')
Images = Union[str, Path, 'PIL.Image.Image', np.ndarray, torch.Tensor, Sequence]


# -- loading ------------------------------------------------------------------------------
class CheckpointMismatchError(RuntimeError):
    """The checkpoint's keys or shapes differ from the model's."""


def state_dict_mismatch(model: nn.Module, state: Dict[str, torch.Tensor],
                        source: str, limit: int = 10) -> Optional[str]:
    """``None`` when ``state`` has exactly the keys and shapes of ``model.state_dict()``,
    else a message listing the first ``limit`` missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f'{k}: checkpoint {tuple(v.shape)} != model {tuple(own[k].shape)}'
              for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    for what, keys in (('missing', missing), ('unexpected', unexpected),
                       ('with another shape', shapes)):
        if keys:
            more = f' (and {len(keys) - limit} more)' if len(keys) > limit else ''
            parts.append(f'{len(keys)} {what}: ' + ', '.join(keys[:limit]) + more)
    return (f'{source} does not fit the {type(model).__name__} of the config: '
            + '; '.join(parts))


def load_weights(model: nn.Module, checkpoint: str, strict: bool = True) -> nn.Module:
    """Load ``checkpoint`` (weights-only) into ``model``; a leading ``module.`` is stripped.

    ``checkpoint``: a ``torch.save`` file (an mmengine checkpoint's ``state_dict``, a
    DeepSpeed ``module`` entry or a bare state dict), a ``.safetensors`` file or a
    DeepSpeed checkpoint directory (see :func:`vlp.engine.checkpoint.read_state_dict`).
    With ``strict`` any missing, unexpected or mis-shaped key is a
    :class:`CheckpointMismatchError` listing the first ones; otherwise they are logged and
    the matching tensors loaded.

    Raises:
        FileNotFoundError: no such file or directory.
        vlp.engine.checkpoint.UnsafeCheckpointError: the file holds objects other than
            weights (nothing in it ran).
    """
    if not osp.exists(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} not found')
    from vlp.engine.checkpoint import read_state_dict
    state = read_state_dict(checkpoint)
    problem = state_dict_mismatch(model, state, f'checkpoint {checkpoint}')
    if problem:
        if strict:
            raise CheckpointMismatchError(
                f'{problem}. Use the config the weights were trained or converted with, or '
                'pass strict=False to load the matching tensors anyway')
        print_log(problem, logger='current', level=logging.WARNING)
        own = model.state_dict()
        state = {k: v for k, v in state.items()
                 if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(state, strict=False)
    return model


def _resolve(config, checkpoint):
    """A directory written by a converter (``config.py`` + ``model.pth``) stands for both."""
    if isinstance(config, (str, Path)) and osp.isdir(str(config)):
        folder = str(config)
        config = osp.join(folder, 'config.py')
        if not osp.isfile(config):
            raise FileNotFoundError(f'{folder} holds no config.py (a converter writes '
                                    'config.py and model.pth)')
        if checkpoint is None and osp.isfile(osp.join(folder, 'model.pth')):
            checkpoint = osp.join(folder, 'model.pth')
    return config, checkpoint


def init_model(config: Union[str, Path, Config], checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu', cfg_options: Optional[dict] = None,
               strict: bool = True) -> nn.Module:
    """Build ``cfg.model``, load its weights, attach its test preprocessing.

    Args:
        config: a config file, an mmengine ``Config``, or a converter's output directory
            (its ``config.py``, and its ``model.pth`` unless ``checkpoint`` is given).
        checkpoint: weights (any layout :func:`load_weights` reads); ``None`` keeps the
            constructor's weights (random, or the parts' ``pretrained`` files).
        device: where the model is put.
        cfg_options: overrides merged into the config (``{'model.text.layers': 2}``).
        strict: a key or shape mismatch is an error (``False``: a warning).

    Returns:
        the model in eval mode on ``device``, with ``model.cfg`` (the config) and
        ``model.preprocess`` (an :class:`ImagePreprocessor`: any images -> the batch the
        model reads, as the config's test pipeline makes it).
    """
    config, checkpoint = _resolve(config, checkpoint)
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
    model.preprocess = ImagePreprocessor.from_config(cfg, model)
    return model.to(device).eval()


# -- images -------------------------------------------------------------------------------
def _pair(size) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def model_image_size(model: nn.Module) -> Optional[Tuple[int, int]]:
    """The input size of the model's patch embedding (timm ViTs, vlp's multiway / BEiT-3 /
    ViLT backbones); ``None`` for a tower without one (a CNN takes any size)."""
    for module in model.modules():
        pe = getattr(module, 'patch_embed', None)
        if pe is None:
            continue
        size = getattr(pe, 'img_size', None)
        if size:
            return _pair(size)
        if isinstance(pe, nn.Conv2d):
            grid = getattr(module, 'grid', None)
            if grid is None and getattr(module, 'num_patches', None):
                grid = int(round(module.num_patches ** 0.5))
            if grid:
                return grid * pe.kernel_size[0], grid * pe.kernel_size[1]
    return None


def _pipeline_of(cfg) -> list:
    """The config's test-time transforms: the test dataset's pipeline (what
    ``tools/test.py`` runs), else ``test_pipeline``, ``image_pipeline`` or the validation
    dataset's pipeline, whichever it has first."""
    if cfg is None:
        return []
    candidates = [((cfg.get('test_dataloader') or {}).get('dataset') or {}).get('pipeline'),
                  cfg.get('test_pipeline'), cfg.get('image_pipeline'),
                  ((cfg.get('val_dataloader') or {}).get('dataset') or {}).get('pipeline')]
    for pipeline in candidates:
        if isinstance(pipeline, (list, tuple)):
            return list(pipeline)
    return []


class ImagePreprocessor:
    """Any images -> the float batch ``[B, 3, H, W]`` (0-255, not yet normalised; videos
    ``[B, T, 3, H, W]``) that the model's data preprocessor normalises.

    Args:
        transforms: the spatial transforms of the config's test pipeline (``Resize`` /
            ``CenterCrop`` dicts, :data:`SPATIAL`), applied in order.
        size: the model's input ``(H, W)``: a last ``Resize`` to it is added when the
            transforms do not end at a fixed size (the demo configs' pipelines only
            convert); ``None``: images must then already share one size.
        video: ``LoadVideoFrames`` arguments for video files (the config's, else 8 frames
            at the segment centres).
    """

    def __init__(self, transforms: Sequence[dict] = (), size: Optional[Tuple[int, int]] = None,
                 video: Optional[dict] = None):
        import vlp.datasets  # noqa: F401  (registers the transforms)
        self.transform_cfgs = [dict(t) for t in transforms]
        fixed = self._fixed_size(self.transform_cfgs)
        if size is not None and fixed is not None and fixed != _pair(size):
            print_log(f'the test pipeline ends at {fixed}, the model reads {_pair(size)}: '
                      'a last Resize to the model\'s size is added', logger='current',
                      level=logging.WARNING)
            fixed = None
        if fixed is None and size is not None:
            self.transform_cfgs.append(dict(type='Resize', size=list(_pair(size)),
                                            interpolation='bicubic'))
            fixed = _pair(size)
        self.size = fixed
        self.transforms = [TRANSFORMS.build(dict(t)) for t in self.transform_cfgs]
        self.video = {**dict(num_frames=8, sampling='uniform'), **(video or {})}

    @staticmethod
    def _fixed_size(cfgs) -> Optional[Tuple[int, int]]:
        size = None
        for t in cfgs:
            if t['type'] == 'CenterCrop' or (t['type'] == 'Resize' and
                                             not isinstance(t['size'], int)):
                size = _pair(t['size'])
            elif t['type'] == 'Resize':  # shorter side: the size depends on the image
                size = None
        return size

    @classmethod
    def from_config(cls, cfg, model: Optional[nn.Module] = None) -> 'ImagePreprocessor':
        """From the config's test pipeline (see :func:`_pipeline_of`) and the model's
        input size."""
        pipeline = _pipeline_of(cfg)
        spatial = [t for t in pipeline if t.get('type') in SPATIAL]
        video = next((t for t in pipeline if t.get('type') == 'LoadVideoFrames'), None)
        video = None if video is None else {k: v for k, v in video.items()
                                            if k in ('num_frames', 'size')}
        size = model_image_size(model) if model is not None else None
        if size is None and cfg is not None and isinstance(cfg.get('image_size'), int):
            size = _pair(cfg.get('image_size'))
        return cls(spatial, size, video)

    def __repr__(self) -> str:
        return (f'ImagePreprocessor(transforms={self.transforms}, size={self.size}, '
                f'video={self.video})')

    # -- decoding ---------------------------------------------------------------------------
    def load(self, images: Images) -> List[Union['PIL.Image.Image', torch.Tensor]]:
        """Decode ``images`` into a list: PIL images, ``[3, H, W]`` float tensors (0-255) and
        videos ``[T, 3, H, W]``; a batch tensor stays one ``[B, 3, H, W]`` /
        ``[B, T, 3, H, W]`` tensor (the list's only item)."""
        if isinstance(images, torch.Tensor) and images.dim() in (4, 5):
            return [_float255(images, 'the image batch')]
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return [_float255(_array_chw(images), 'the image batch')]
        if isinstance(images, (str, Path, np.ndarray, torch.Tensor)) or _is_pil(images):
            images = [images]
        if not isinstance(images, (list, tuple)) or not images:
            raise TypeError('images: a path, PIL image, numpy array or tensor, or a '
                            f'non-empty list of them; got {type(images).__name__}')
        return [self._load_one(x, i) for i, x in enumerate(images)]

    def _load_one(self, x, i: int):
        from PIL import Image
        if isinstance(x, (str, Path)):
            path = str(x)
            if path.lower().endswith(VIDEO_EXTS):
                return self._load_video(path)
            if not osp.isfile(path):
                raise FileNotFoundError(f'image {path} not found')
            with Image.open(path) as img:
                return img.convert('RGB')
        if _is_pil(x):
            return x.convert('RGB')
        if isinstance(x, np.ndarray):
            if x.ndim == 4:  # frames of a video, THWC
                return _float255(_array_chw(x), f'video {i}')
            x = torch.from_numpy(_array_chw(x))
        if isinstance(x, torch.Tensor):
            if x.dim() == 2:
                x = x[None]
            if x.dim() == 3 and x.shape[0] == 1:
                x = x.expand(3, -1, -1)
            if x.dim() not in (3, 4) or x.shape[-3] != 3:
                raise ValueError(f'image {i}: a tensor [3, H, W] (or a video [T, 3, H, W]) is '
                                 f'expected, got shape {tuple(x.shape)}')
            return _float255(x, f'image {i}')
        if isinstance(x, Image.Image):
            return x.convert('RGB')
        raise TypeError(f'image {i}: a path, PIL image, numpy array or tensor is expected, '
                        f'got {type(x).__name__}')

    def _load_video(self, path: str) -> torch.Tensor:
        from vlp.datasets.video_text import LoadVideoFrames
        out = LoadVideoFrames(**self.video)(dict(video_path=path))
        if out is None:
            raise OSError(f'cannot read the video {path} (see the warning above)')
        return out['image'].float()  # (T, 3, H, W)

    # -- transforms --------------------------------------------------------------------------
    def _apply(self, x):
        """The spatial transforms on a PIL image or a tensor ``[..., 3, H, W]``."""
        results = dict(img=x)
        for t in self.transforms:
            results = t(results)
        out = results['img']
        if _is_pil(out):
            out = torch.from_numpy(np.asarray(out, dtype=np.float32).copy()).permute(2, 0, 1)
        return out.float().clamp_(0, 255) if out.is_floating_point() else out.float()

    def __call__(self, images: Images) -> torch.Tensor:
        """``images`` (see the module docstring) -> float ``[B, 3, H, W]`` (0-255) or
        ``[B, T, 3, H, W]`` for videos."""
        items = self.load(images)
        if len(items) == 1 and isinstance(items[0], torch.Tensor) and items[0].dim() >= 4 \
                and not (isinstance(images, (list, tuple))):
            batch = items[0]  # a batch tensor: one call for all its images
            if batch.dim() == 5:
                B, T = batch.shape[:2]
                out = self._apply(batch.flatten(0, 1))
                return out.view(B, T, *out.shape[1:])
            return self._apply(batch)
        done = [self._apply(x) for x in items]  # each its own size
        shapes = {tuple(t.shape) for t in done}
        if len(shapes) > 1:
            raise ValueError(f'images of different sizes {sorted(shapes)} after the test '
                             'transforms: the config names no fixed input size (add a Resize '
                             'to its test_pipeline), or give images of one size')
        return torch.stack(done)  # (B, 3, H, W), or videos (B, T, 3, H, W)


def _is_pil(x) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, Image.Image)


def _array_chw(a: np.ndarray) -> np.ndarray:
    """A numpy image ``HW`` / ``HWC`` / ``CHW`` or a stack ``NHWC`` / ``NCHW`` -> channels
    first with 3 channels (channels last, numpy's convention, when both could be meant)."""
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 3:
        if not (a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4)):
            a = a.transpose(2, 0, 1)
    elif a.ndim == 4:
        if not (a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3, 4)):
            a = a.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f'a numpy image has 2, 3 or 4 dims, got shape {a.shape}')
    c = a.shape[-3]
    if c == 4:
        a = a[..., :3, :, :]  # RGBA: drop alpha
    elif c == 1:
        a = np.repeat(a, 3, axis=-3)
    elif c != 3:
        raise ValueError(f'a numpy image with {c} channels (expected 1, 3 or 4)')
    return np.ascontiguousarray(a)


def _float255(x, what: str):
    """uint8 (0-255) or float (0-1) pixels -> float32 0-255 (tensor or array in)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if x.dtype == torch.uint8:
        return x.float()
    if x.is_floating_point():
        if x.numel() and (float(x.min()) < -1e-3 or float(x.max()) > 1 + 1e-3):
            raise ValueError(
                f'{what}: float pixels must lie in [0, 1] (torchvision\'s convention), found '
                f'[{float(x.min()):.3g}, {float(x.max()):.3g}]: pass uint8 0-255 pixels, '
                'floats in [0, 1], or an already normalised batch to the model\'s own '
                'encode_image / generate')
        return x.float() * 255.0
    raise TypeError(f'{what}: pixels must be uint8 or float, got {x.dtype}')


def load_images(images: Images) -> list:
    """The images as PIL images at their own size (videos: their middle frame), for
    display (:mod:`vlp.visualization`)."""
    from PIL import Image
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim in (4, 5):
        items = list(ImagePreprocessor().load(images)[0])  # a batch: its images / videos
    else:
        items = ImagePreprocessor().load(images)
    out = []
    for x in items:
        if not _is_pil(x):
            if x.dim() == 4:  # a video: its middle frame
                x = x[x.shape[0] // 2]
            x = Image.fromarray(x.clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy())
        out.append(x)
    return out


def _preprocessor(model: nn.Module) -> ImagePreprocessor:
    pre = getattr(model, 'preprocess', None)
    if not isinstance(pre, ImagePreprocessor):
        pre = ImagePreprocessor.from_config(getattr(model, 'cfg', None), model)
        model.preprocess = pre
    return pre


def preprocess(model: nn.Module, images: Images) -> torch.Tensor:
    """``images`` -> the normalised float batch the model's own methods take
    (``model.encode_image``, ``model.generate``, ...), on the model's device."""
    batch = _preprocessor(model)(images)
    device = next(model.parameters()).device
    batch = batch.to(device)
    normalize = getattr(getattr(model, 'data_preprocessor', None), 'normalize', None)
    return normalize(batch) if callable(normalize) else batch


# -- tasks --------------------------------------------------------------------------------
def supported_tasks(model: nn.Module) -> List[str]:
    """The functions of this module ``model`` serves (:data:`TASKS`)."""
    return [t for t, alts in TASKS.items()
            if any(all(supports(model, c) for c in alt) for alt in alts)]


def _require(model: nn.Module, task: str) -> Tuple[str, ...]:
    """The first alternative of :data:`TASKS` ``[task]`` that ``model`` serves; else
    ``NotImplementedError`` naming the family, the task, what it needs and what the family
    supports."""
    for alt in TASKS[task]:
        if all(supports(model, c) for c in alt):
            return alt
    family = type(model).__name__
    alt = TASKS[task][0]
    missing = next(c for c in alt if not supports(model, c))
    reason = (getattr(model, '__dict__', {}).get('_dropped_reasons', {}).get(missing)
              or getattr(model, 'unsupported_reasons', {}).get(missing))
    needs = ' or '.join(' + '.join(f'{c}()' for c in a) for a in TASKS[task])
    raise NotImplementedError(
        f'{family} does not support {task}(): it needs {needs}'
        + (f' ({missing}: {reason})' if reason else '')
        + f'. The tasks of {family}: {", ".join(supported_tasks(model)) or "none"}')


def _texts(texts: Union[str, Sequence[str]], what: str = 'texts') -> List[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError(f'{what}: a string or a non-empty list of strings')
    return texts


@torch.no_grad()
def encode_image(model: nn.Module, images: Images) -> torch.Tensor:
    """Images (any form, see the module docstring) -> the family's L2-normalised image
    features ``[B, D]`` (BLIP-2: one per query, ``[B, Q, D]``; videos: frame-averaged)."""
    _require(model, 'encode_image')
    return model.encode_image(preprocess(model, images))


@torch.no_grad()
def encode_text(model: nn.Module, texts: Union[str, Sequence[str], torch.Tensor]
                ) -> torch.Tensor:
    """Strings (tokenised with the model's tokenizer) or token ids ``[B, L]`` ->
    L2-normalised text features ``[B, D]``."""
    _require(model, 'encode_text')
    return model.encode_text(texts if isinstance(texts, torch.Tensor) else _texts(texts))


def get_logit_scale(model: nn.Module) -> torch.Tensor:
    """The model's learned logit scale (CLIP-style families), else 100 (CLIP's trained
    value) for turning cosine similarities into probabilities."""
    get = getattr(model, 'get_logit_scale', None)
    if callable(get):
        return get().float().cpu()
    return torch.tensor(100.0)


def _similarity(image_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``[N_img, N_txt]``; query features ``[N_img, Q, D]``: the maximum
    over the queries (BLIP-2's ITC)."""
    image_feat, text_feat = image_feat.float(), text_feat.float().to(image_feat.device)
    if image_feat.dim() == 3:
        return torch.einsum('iqd,td->itq', image_feat, text_feat).amax(-1)
    return image_feat @ text_feat.t()


@torch.no_grad()
def match(model: nn.Module, images: Images,
          texts: Union[str, Sequence[str], torch.Tensor], itm: bool = True,
          batch_size: int = 256) -> Dict[str, torch.Tensor]:
    """How well each image matches each text, every pair ``[N_img, N_txt]``; ``texts``:
    strings (the model's tokenizer) or token ids ``[N_txt, L]`` (families converted without
    a tokenizer, BEiT-3), as :func:`encode_text` takes them:

    - ``itc``: cosine similarity of the image and text features (families with both
      encoders; BLIP-2: the maximum over the queries);
    - ``itc_probs``: ``softmax(logit_scale * itc)`` over the texts (CLIP's "which caption");
    - ``itm``: the image-text matching head's probability that the pair matches (families
      with one: ALBEF, BLIP, BLIP-2, VLMo, ViLT), when ``itm``.

    The images are preprocessed and encoded once; the ITM head runs on the
    ``N_img * N_txt`` pairs in chunks of ``batch_size``.
    """
    alt = _require(model, 'match')
    if isinstance(texts, torch.Tensor):
        texts = texts if texts.dim() == 2 else texts.unsqueeze(0)
    else:
        texts = _texts(texts)
    pixels = preprocess(model, images)
    out = {}
    if alt == ('encode_image', 'encode_text'):
        sim = _similarity(model.encode_image(pixels), model.encode_text(texts))
        out['itc'] = sim.cpu()
        out['itc_probs'] = (get_logit_scale(model) * out['itc']).softmax(dim=-1)
    if itm and supports(model, 'itm_score'):
        tok = model.tokenize(texts)
        ids, mask = tok['input_ids'], tok.get('attention_mask')
        Ni, Nt = pixels.shape[0], ids.shape[0]
        rows = torch.arange(Ni, device=pixels.device).repeat_interleave(Nt)
        cols = torch.arange(Nt, device=ids.device).repeat(Ni)
        probs = []
        for s in range(0, Ni * Nt, batch_size):
            r, c = rows[s:s + batch_size], cols[s:s + batch_size]
            probs.append(model.itm_score(pixels[r], ids[c],
                                         None if mask is None else mask[c]).float().cpu())
        out['itm'] = torch.cat(probs).view(Ni, Nt)
    return out


@torch.no_grad()
def caption(model: nn.Module, images: Images, prompt: Optional[str] = None,
            **generation) -> List[str]:
    """A caption per image (one batched ``generate``); ``prompt`` starts every caption
    (not returned); ``generation``: decoding options (``num_beams``, ``max_length``,
    ``min_length``, ``do_sample``, ``top_p``, ``repetition_penalty``, ...) over the
    config's ``generation_cfg``."""
    _require(model, 'caption')
    if prompt is not None:
        generation['prompt'] = prompt
    return list(model.generate(preprocess(model, images), **generation))


@torch.no_grad()
def answer(model: nn.Module, images: Images, questions: Union[str, Sequence[str]],
           **kwargs) -> List[str]:
    """An answer per question: one question per image, one question for every image, or
    several questions about one image. ``kwargs`` go to the family's ``answer``
    (BLIP VQA: ``inference='rank' | 'generate'``, decoding options)."""
    _require(model, 'answer')
    questions = _texts(questions, 'questions')
    pixels = preprocess(model, images)
    n = pixels.shape[0]
    if len(questions) == 1 and n > 1:
        questions = questions * n
    elif n == 1 and len(questions) > 1:
        pixels = pixels.expand(len(questions), *pixels.shape[1:])
    elif len(questions) != n:
        raise ValueError(f'{len(questions)} questions for {n} images: give one question per '
                         'image, one for all, or one image')
    return list(model.answer(pixels, questions, **_accepted(model.answer, kwargs, 'answer')))


#: decoding options: dropped (with a log line) for a family whose method does not decode
GENERATION_OPTIONS = frozenset({
    'num_beams', 'max_length', 'min_length', 'max_new_tokens', 'do_sample', 'top_p', 'top_k',
    'temperature', 'repetition_penalty', 'length_penalty', 'num_return_sequences', 'prompt'})


def _accepted(method, kwargs: dict, task: str) -> dict:
    """``kwargs`` that ``method`` takes. Decoding options (:data:`GENERATION_OPTIONS`)
    given to a family that does not decode (VQAClassifier picks an answer from a list) are
    dropped with an info line; any other unknown option is a ``TypeError`` naming the family
    and the options it takes."""
    import inspect
    params = inspect.signature(method).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    family = type(getattr(method, '__self__', method)).__name__
    unknown = [k for k in kwargs if k not in params and k not in GENERATION_OPTIONS]
    if unknown:
        takes = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY
                 or (p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty)]
        raise TypeError(f'{task}(): {family} takes no option {", ".join(unknown)} (its '
                        f'options: {", ".join(takes) or "none"})')
    dropped = [k for k in kwargs if k not in params]
    if dropped:
        print_log(f'{task}(): {family} does not decode; ignoring {", ".join(dropped)}',
                  logger='current', level=logging.INFO)
    return {k: v for k, v in kwargs.items() if k in params}


def _open_clip_metadata(name: str):
    try:
        from open_clip import zero_shot_metadata
    except ImportError as err:
        raise ImportError(f"zero_shot_classify: {name} come from open_clip "
                          "(open_clip.zero_shot_metadata), which is not installed: pip install "
                          "open_clip_torch, or pass your own class names and templates") from err
    return zero_shot_metadata


@torch.no_grad()
def zero_shot_classify(model: nn.Module, images: Images,
                       class_names: Union[str, Sequence[str]],
                       templates: Union[None, str, Sequence[Template]] = None,
                       batch_size: int = 256) -> torch.Tensor:
    """Class probabilities ``[B, num_classes]`` by CLIP's zero-shot recipe (Radford et al.
    2021, Sec. 3.1): each class name in every template, the L2-normalised text embeddings
    averaged per class and renormalised (the prompt ensemble), then
    ``softmax(logit_scale * cos(image, class))`` (the model's learned scale; 100 when it has
    none).

    Args:
        class_names: the class names, or ``'imagenet'`` for open_clip's ImageNet-1k names
            (``open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES``; needs open_clip).
        templates: ``'{}'`` format strings or callables; a preset name of
            :data:`vlp.evaluation.metrics.zero_shot.TEMPLATE_PRESETS`; ``None``: open_clip's
            80 OpenAI ImageNet templates for ``'imagenet'``, else CLIP's single prompt
            ``'a photo of a {}.'``.
    """
    _require(model, 'zero_shot_classify')
    if isinstance(class_names, str):
        if class_names.lower() != 'imagenet':
            raise ValueError(f"class_names: a list of names or 'imagenet', got {class_names!r}")
        meta = _open_clip_metadata('the ImageNet class names')
        class_names = list(meta.IMAGENET_CLASSNAMES)
        if templates is None:
            templates = list(meta.OPENAI_IMAGENET_TEMPLATES)
    templates = get_templates('single' if templates is None else templates)
    weights = zero_shot_classifier(model, list(class_names), templates, batch_size)  # (C, D)
    image_feat = model.encode_image(preprocess(model, images))
    logits = get_logit_scale(model) * _similarity(image_feat, weights).cpu()
    return logits.softmax(dim=-1)


@torch.no_grad()
def query_features(model: nn.Module, images: Images) -> torch.Tensor:
    """BLIP-2: the Q-Former's query outputs ``[B, Q, C]`` (before any projection; HF's
    ``Blip2Model.get_qformer_features``, LAVIS's ``extract_features(mode='image')``)."""
    _require(model, 'query_features')
    return model.query_features(preprocess(model, images))

