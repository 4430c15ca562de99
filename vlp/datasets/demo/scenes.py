"""Embedded demo data: procedurally rendered scenes of coloured shapes with compositional
captions, so every demo config runs with no files and no downloads.

A scene holds one or two objects; an object is a (size, colour, shape, position) with

- colours: red, green, blue, yellow, purple, orange, cyan, white;
- shapes: circle, square, triangle, star, cross;
- positions: left, right, top, bottom, centre (two objects never share one);
- sizes: small, large;

drawn on a dark, lightly noisy background with a little jitter of position, size and colour.
A caption names every object's size, colour, shape and position ("a small red circle on the
left and a large blue square at the bottom"), so matching needs all four. Each image has
five different captions (paraphrase templates, synonyms, both object orders), as COCO.

Determinism: the scene list of a split comes from one seeded generator (the first ``n``
scenes do not depend on ``num_images``); an image is rendered on demand from a per-index
generator, so the same index gives the same pixels in every process and rank. The three
splits are disjoint *as scenes*: a scene's bucket (train/val/test) is a fixed hash of its
content, so no test scene (the same objects at the same places) occurs in training.
"""
import hashlib
import math
from functools import lru_cache
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from vlp.registry import DATASETS
from ..image_text import BaseImageTextDataset

DEMO_VERSION = 'shapes-v1'  # bump when scenes/captions change (keys the tokenizer cache)

COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (220, 40, 40), 'green': (40, 175, 60), 'blue': (45, 90, 235),
    'yellow': (235, 215, 40), 'purple': (150, 60, 205), 'orange': (245, 140, 30),
    'cyan': (40, 210, 220), 'white': (240, 240, 240)}
SHAPES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'star', 'cross')
# object centre as a fraction of the image side (x, y)
POSITIONS: Dict[str, Tuple[float, float]] = {
    'left': (0.2, 0.5), 'right': (0.8, 0.5), 'top': (0.5, 0.2), 'bottom': (0.5, 0.8),
    'centre': (0.5, 0.5)}
SIZES: Dict[str, float] = {'small': 0.085, 'large': 0.15}  # radius / image side

SPLITS = ('train', 'val', 'test')
DEFAULT_NUM_IMAGES = {'train': 5000, 'val': 500, 'test': 500}
DEFAULT_NUM_CLS_IMAGES = {'train': 2000, 'val': 400, 'test': 400}
# share of the scene space (by content hash) given to each split
_BUCKETS = {'test': range(0, 10), 'val': range(10, 20), 'train': range(20, 100)}

# caption vocabulary: synonyms for sizes and positions
_SIZE_WORDS = {'small': ('small', 'little'), 'large': ('large', 'big')}
_POS_WORDS = {
    'left': ('on the left', 'on the left side', 'to the left'),
    'right': ('on the right', 'on the right side', 'to the right'),
    'top': ('at the top', 'near the top'),
    'bottom': ('at the bottom', 'near the bottom'),
    'centre': ('in the centre', 'in the middle')}
# zero-shot prompts for DemoClassification (every word is in the demo vocabulary)
DEMO_TEMPLATES: Tuple[str, ...] = ('a {}', 'a picture of a {}', 'there is a {}',
                                   'an image with a {}')

Obj = Tuple[str, str, str, str]  # (size, colour, shape, position)


def _split_id(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    return SPLITS.index(split)


def scene_key(objects: Sequence[Obj]) -> str:
    """Canonical text of a scene's content (object order does not matter)."""
    return '|'.join(sorted(','.join(o) for o in objects))


def scene_bucket(objects: Sequence[Obj]) -> str:
    """The split a scene belongs to: a fixed (process-independent) hash of its content."""
    h = int(hashlib.md5(scene_key(objects).encode()).hexdigest()[:8], 16) % 100
    return next(s for s, r in _BUCKETS.items() if h in r)


def _sample_object(rng: np.random.Generator, position: str) -> Obj:
    return (('small', 'large')[rng.integers(2)], list(COLOURS)[rng.integers(len(COLOURS))],
            SHAPES[rng.integers(len(SHAPES))], position)


def _sample_scene(rng: np.random.Generator, p_single: float) -> List[Obj]:
    n = 1 if rng.random() < p_single else 2
    positions = rng.choice(len(POSITIONS), size=n, replace=False)
    objs = [_sample_object(rng, list(POSITIONS)[p]) for p in positions]
    return sorted(objs, key=lambda o: o[0] == 'small')  # large first: drawn underneath


def _phrase(obj: Obj, rng: np.random.Generator) -> Tuple[str, str]:
    """(noun phrase without article, position phrase) with random synonyms."""
    size, colour, shape, pos = obj
    words = _SIZE_WORDS[size]
    size_w = words[rng.integers(len(words))]
    pos_w = _POS_WORDS[pos][rng.integers(len(_POS_WORDS[pos]))]
    return f'{size_w} {colour} {shape}', pos_w


def _one_object_templates() -> List[Callable]:
    return [
        lambda a: f'a {a[0]} {a[1]}',
        lambda a: f'there is a {a[0]} {a[1]}',
        lambda a: f'a picture of a {a[0]} {a[1]}',
        lambda a: f'an image with a {a[0]} {a[1]}',
        lambda a: f'a single {a[0]} {a[1]}',
        lambda a: f'{a[1]}, a {a[0]}',
        lambda a: f'one shape: a {a[0]} {a[1]}',
    ]


def _two_object_templates() -> List[Callable]:
    return [
        lambda a, b: f'a {a[0]} {a[1]} and a {b[0]} {b[1]}',
        lambda a, b: f'there is a {a[0]} {a[1]} and a {b[0]} {b[1]}',
        lambda a, b: f'a picture of a {a[0]} {a[1]} and a {b[0]} {b[1]}',
        lambda a, b: f'two shapes: a {a[0]} {a[1]} and a {b[0]} {b[1]}',
        lambda a, b: f'{a[1]}, a {a[0]}, and {b[1]}, a {b[0]}',
        lambda a, b: f'a {a[0]} {a[1]} together with a {b[0]} {b[1]}',
        lambda a, b: f'an image with a {a[0]} {a[1]}, plus a {b[0]} {b[1]}',
    ]


_T1 = _one_object_templates()
_T2 = _two_object_templates()


def make_captions(objects: Sequence[Obj], rng: np.random.Generator, num: int = 5) -> List[str]:
    """``num`` different captions of a scene: distinct templates, random synonyms and
    object order."""
    templates = _T1 if len(objects) == 1 else _T2
    chosen = rng.choice(len(templates), size=num, replace=False)
    caps = []
    for t in chosen:
        order = rng.permutation(len(objects))
        phrases = [_phrase(objects[i], rng) for i in order]
        caps.append(templates[t](*phrases))
    return caps


def demo_scenes(split: str, num_images: Optional[int] = None, seed: int = 0,
                p_single: float = 0.3) -> Tuple[Tuple[Tuple[Obj, ...], Tuple[str, ...]], ...]:
    """The first ``num_images`` distinct scenes of ``split`` and their five captions:
    a tuple of ``(objects, captions)``. Cached per process."""
    n = DEFAULT_NUM_IMAGES[split] if num_images is None else num_images
    return _demo_scenes(split, int(n), int(seed), float(p_single))


@lru_cache(maxsize=32)
def _demo_scenes(split: str, n: int, seed: int, p_single: float):
    split_id = _split_id(split)
    rng = np.random.default_rng([seed, split_id, 0])
    seen, out = set(), []
    draws = 0
    while len(out) < n:
        draws += 1
        if draws > 200 * n + 10000:
            raise ValueError(f'cannot find {n} distinct {split} scenes; ask for fewer')
        objs = _sample_scene(rng, p_single)
        key = scene_key(objs)
        if key in seen or scene_bucket(objs) != split:
            continue
        seen.add(key)
        out.append(objs)
    scenes = []
    for i, objs in enumerate(out):
        crng = np.random.default_rng([seed, split_id, i, 1])
        scenes.append((tuple(objs), tuple(make_captions(objs, crng))))
    return tuple(scenes)


# ----------------------------------------------------------------------------- render


def _polygon(shape: str, cx: float, cy: float, r: float) -> List[Tuple[float, float]]:
    if shape == 'triangle':
        return [(cx + r * math.cos(a), cy + r * math.sin(a))
                for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == 'star':
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else 0.45 * r
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    if shape == 'cross':
        t = 0.34 * r  # half arm thickness
        return [(cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t),
                (cx + r, cy + t), (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r),
                (cx - t, cy + t), (cx - r, cy + t), (cx - r, cy - t), (cx - t, cy - t)]
    raise ValueError(shape)


def render_scene(objects: Sequence[Obj], image_size: int, rng: np.random.Generator,
                 noise: float = 6.0, supersample: int = 4) -> Image.Image:
    """Draw ``objects`` on a dark noisy background (antialiased by supersampling)."""
    S = image_size * supersample
    bg = int(rng.integers(15, 75))
    tint = rng.integers(-8, 9, size=3)
    canvas = Image.new('RGB', (S, S), tuple(int(np.clip(bg + t, 0, 255)) for t in tint))
    draw = ImageDraw.Draw(canvas)
    for size, colour, shape, pos in objects:
        fx, fy = POSITIONS[pos]
        cx = (fx + rng.uniform(-0.03, 0.03)) * S
        cy = (fy + rng.uniform(-0.03, 0.03)) * S
        r = SIZES[size] * rng.uniform(0.9, 1.1) * S
        fill = tuple(int(np.clip(c + d, 0, 255))
                     for c, d in zip(COLOURS[colour], rng.integers(-15, 16, size=3)))
        if shape == 'circle':
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif shape == 'square':
            h = 0.85 * r
            draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
        else:
            draw.polygon(_polygon(shape, cx, cy, r), fill=fill)
    img = canvas.resize((image_size, image_size), Image.BOX)
    if noise > 0:
        arr = np.asarray(img, dtype=np.float32)
        arr = arr + rng.normal(0.0, noise, size=arr.shape)
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))
    return img


def demo_corpus(num_images: Optional[int] = None, seed: int = 0) -> Iterator[str]:
    """Every caption of the demo training split, then the classification class names
    and the zero-shot prompts filled with them (the tokenizer's training text)."""
    for _, caps in demo_scenes('train', num_images, seed):
        yield from caps
    for name in demo_class_names('colour_shape'):
        yield name
        for t in DEMO_TEMPLATES:
            yield t.format(name)


def demo_class_names(label: str = 'colour_shape') -> List[str]:
    if label == 'colour_shape':
        return [f'{c} {s}' for c in COLOURS for s in SHAPES]
    if label == 'shape':
        return list(SHAPES)
    if label == 'colour':
        return list(COLOURS)
    raise ValueError(f"label must be 'colour_shape', 'shape' or 'colour', got {label!r}")


def _default_pipeline(style: str = 'clip') -> List[dict]:
    return [dict(type='ToTensor'),
            dict(type='Tokenize', tokenizer=dict(type='DemoTokenizer', style=style),
                 max_length=32)]


@DATASETS.register_module()
class DemoImageText(BaseImageTextDataset):
    """Image-text pairs of rendered shape scenes (see the module docstring).

    Args:
        split: ``'train'``, ``'val'`` or ``'test'`` (disjoint scenes, disjoint seeds).
        num_images: images in the split (defaults 5000 / 500 / 500).
        image_size: rendered side in pixels (64 by default; small shapes are about 11 px
            wide at 64 px, so at 32 px stars and crosses get hard to tell apart).
        seed: generator seed (the split partition of the scene space does not depend on it).
        pipeline: transforms applied to ``dict(img=PIL image, text=..., image_id=...)``;
            ``None``: ``[ToTensor, Tokenize(DemoTokenizer(style='clip'), max_length=32)]``.
        mode: ``'train'``: one sample per image with one of its five captions drawn at random
            each time the image is fetched (so an epoch sees every image once, with a fresh
            caption, and no image twice in a batch); ``train_sampling='pairs'`` gives one
            sample per (image, caption) instead. ``'eval'``: one sample per image with all
            five captions (``text`` a list, ``input_ids`` ``[5, L]``). ``None``: ``'train'``
            for the train split, ``'eval'`` otherwise.
        noise: std of the Gaussian pixel noise (0-255 scale).
        p_single: probability that a scene has one object (before de-duplication).

    A sample: ``image``, ``input_ids``, ``attention_mask``, ``text`` and ``image_id`` (the
    image index); :meth:`get_scene` gives the objects drawn in an image.
    """

    METAINFO = dict(dataset_name='demo_shapes')

    def __init__(self, split: str = 'train', num_images: Optional[int] = None,
                 image_size: int = 64, seed: int = 0, pipeline: Optional[list] = None,
                 mode: Optional[str] = None, train_sampling: str = 'random',
                 noise: float = 6.0, p_single: float = 0.3, **kwargs):
        _split_id(split)
        self.split = split
        self.num_images = DEFAULT_NUM_IMAGES[split] if num_images is None else num_images
        self.image_size = image_size
        self.seed = seed
        self.noise = noise
        self.p_single = p_single
        kwargs.setdefault('serialize_data', False)  # a small list; skips mmengine's gc pass
        super().__init__(pipeline=_default_pipeline() if pipeline is None else pipeline,
                         mode=mode or ('train' if split == 'train' else 'eval'),
                         train_sampling=train_sampling, **kwargs)

    def load_records(self) -> List[dict]:
        scenes = demo_scenes(self.split, self.num_images, self.seed, self.p_single)
        return [dict(image_id=i, captions=list(caps)) for i, (_, caps) in enumerate(scenes)]

    def get_scene(self, image_id: int) -> Tuple[Obj, ...]:
        """The objects ``(size, colour, shape, position)`` of image ``image_id``."""
        return demo_scenes(self.split, self.num_images, self.seed, self.p_single)[image_id][0]

    def render(self, image_id: int) -> Image.Image:
        rng = np.random.default_rng([self.seed, _split_id(self.split), image_id, 2])
        return render_scene(self.get_scene(image_id), self.image_size, rng, self.noise)

    def load_image(self, data_info: dict) -> dict:
        data_info['img'] = self.render(data_info['image_id'])
        return data_info


@DATASETS.register_module()
class DemoClassification(BaseImageTextDataset):
    """Single-object shape scenes labelled by class, for zero-shot classification.

    Args:
        split: ``'train'``, ``'val'`` or ``'test'`` (disjoint seeds).
        num_images: images (defaults 2000 / 400 / 400); labels cycle through the classes,
            so every class has the same number of images (give a multiple of the class
            count); size, position and jitter are random.
        label: ``'colour_shape'`` (40 classes, ``'red circle'``...), ``'shape'`` (5) or
            ``'colour'`` (8).
        pipeline: ``None``: ``[ToTensor]``.

    ``metainfo``: ``classes`` (human-readable names) and ``templates`` (zero-shot prompts whose
    words are all in the demo vocabulary). A sample: ``image``, ``label`` (int), ``image_id``.
    """

    METAINFO = dict(dataset_name='demo_shapes_cls')

    def __init__(self, split: str = 'test', num_images: Optional[int] = None,
                 image_size: int = 64, seed: int = 0, label: str = 'colour_shape',
                 pipeline: Optional[list] = None, noise: float = 6.0, **kwargs):
        self.split_id = _split_id(split) + 10  # seeds apart from DemoImageText
        self.split = split
        self.num_images = DEFAULT_NUM_CLS_IMAGES[split] if num_images is None else num_images
        self.image_size = image_size
        self.seed = seed
        self.label_type = label
        self.noise = noise
        classes = demo_class_names(label)
        metainfo = dict(classes=classes, templates=list(DEMO_TEMPLATES))
        metainfo.update(kwargs.pop('metainfo', None) or {})
        kwargs.setdefault('serialize_data', False)
        super().__init__(pipeline=[dict(type='ToTensor')] if pipeline is None else pipeline,
                         mode='eval', metainfo=metainfo, **kwargs)

    def load_records(self) -> List[dict]:
        n_cls = len(self.metainfo['classes'])
        return [dict(image_id=i, label=i % n_cls) for i in range(self.num_images)]

    def get_object(self, image_id: int) -> Obj:
        rng = np.random.default_rng([self.seed, self.split_id, image_id, 0])
        label = image_id % len(self.metainfo['classes'])
        size = ('small', 'large')[rng.integers(2)]
        position = list(POSITIONS)[rng.integers(len(POSITIONS))]
        if self.label_type == 'colour_shape':
            colour, shape = list(COLOURS)[label // len(SHAPES)], SHAPES[label % len(SHAPES)]
        elif self.label_type == 'shape':
            colour, shape = list(COLOURS)[rng.integers(len(COLOURS))], SHAPES[label]
        else:
            colour, shape = list(COLOURS)[label], SHAPES[rng.integers(len(SHAPES))]
        return (size, colour, shape, position)

    def parse_record(self, record: dict) -> List[dict]:
        return [dict(image_id=record['image_id'], label=record['label'])]

    def load_image(self, data_info: dict) -> dict:
        i = data_info['image_id']
        rng = np.random.default_rng([self.seed, self.split_id, i, 1])
        data_info['img'] = render_scene([self.get_object(i)], self.image_size, rng, self.noise)
        return data_info
