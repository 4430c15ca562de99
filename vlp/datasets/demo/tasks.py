"""Downstream-task variants of the embedded demo data, built on the same rendered scenes as
:class:`~vlp.datasets.demo.DemoImageText` (see :mod:`vlp.datasets.demo.scenes`):

- :class:`DemoVQA`: visual question answering (VQAv2-style: ten human-style answers,
  ``answer_type`` in ``'yes/no'``, ``'number'``, ``'other'``);
- :class:`DemoNLVR2`: a statement about a pair of images, true or false (NLVR2-style);
- :class:`DemoSNLIVE`: visual entailment, an image premise and a text hypothesis labelled
  ``contradiction`` / ``neutral`` / ``entailment`` (0 / 1 / 2, ALBEF's mapping).

Scenes: image ``image_id`` of a task split is scene ``image_id`` of ``demo_scenes(split)``
and is rendered with the same per-index generator as ``DemoImageText`` (so it has the same
pixels at the same ``image_size``/``seed``/``noise``); the splits are disjoint as scenes, so
no test scene occurs in any training split, pre-training included.

Determinism: every question / statement / hypothesis comes from a generator seeded by
``(seed, split, index, task)``, plus, for VQA, a running yes/no counter over the split (exact
yes/no balance); the whole list is made when the dataset loads, so every process and rank
sees the same samples. The words of every text are in ``demo_task_corpus()`` and hence in
``DemoTokenizer(vocabulary='tasks')``; the default (``'captions'``) vocabulary is unchanged.

Default sizes (samples): VQA 5100 / 510 / 510 (1700 / 170 / 170 images, three questions
each); NLVR2 5000 / 500 / 500 pairs; SNLI-VE 5100 / 510 / 510 (1700 / 170 / 170 images,
one hypothesis of each label per image).
"""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from vlp.registry import DATASETS
from .scenes import (COLOURS, POSITIONS, SHAPES, _POS_WORDS, _split_id, Obj, demo_scenes,
                   render_scene)
from ..image_text import BaseImageTextDataset
from ..transforms.processing import ToTensor

DEMO_TASKS_VERSION = 'tasks-v2'  # bump when task texts or the vocabulary layout change

DEFAULT_NUM_TASK_IMAGES = {'train': 1700, 'val': 170, 'test': 170}
DEFAULT_NUM_PAIRS = {'train': 5000, 'val': 500, 'test': 500}

COLOUR_NAMES: Tuple[str, ...] = tuple(COLOURS)
POSITION_NAMES: Tuple[str, ...] = tuple(POSITIONS)
PLURALS: Dict[str, str] = {'circle': 'circles', 'square': 'squares',
                           'triangle': 'triangles', 'star': 'stars', 'cross': 'crosses'}
NUMBER_WORDS: Dict[int, str] = {0: 'zero', 1: 'one', 2: 'two', 3: 'three', 4: 'four'}

# ------------------------------------------------------------------------ templates
# Every task text is one of these templates with its {slots} filled from the slot domains
# below; demo_task_corpus() lists both, so the 'tasks' vocabulary covers every text.
VQA_TEMPLATES: Dict[str, Tuple[str, ...]] = {
    'colour': ('what colour is the {shape}?', 'what colour is the shape {pos}?'),
    'shape': ('what shape is {pos}?', 'what shape is the {colour} object?'),
    'count': ('how many shapes are there?', 'how many {colour} shapes are there?',
              'how many {shapes} are there?'),
    'position': ('where is the {colour} {shape}?', 'where is the {shape}?',
                 'where is the {colour} shape?'),
    'size': ('what size is the {shape}?', 'what size is the shape {pos}?',
             'what size is the {colour} {shape}?'),
    'yes/no': ('is there {a} {desc}?', 'is the {shape} {pos}?'),
}
VQA_FAMILIES: Tuple[str, ...] = tuple(VQA_TEMPLATES)
VQA_ANSWER_TYPES = {'colour': 'other', 'shape': 'other', 'count': 'number',
                    'position': 'other', 'size': 'other', 'yes/no': 'yes/no'}
# variants some annotators give (VQA's normalisation maps number words to digits)
ANSWER_VARIANTS: Dict[str, Tuple[str, ...]] = {
    '0': ('zero', 'none'), '1': ('one',), '2': ('two',), 'centre': ('middle', 'center'),
    'yes': ('yeah',), 'no': ('nope',), 'large': ('big',), 'small': ('little',)}
VQA_ANSWERS: Tuple[str, ...] = tuple(sorted(
    list(COLOURS) + list(SHAPES) + ['0', '1', '2'] + list(POSITIONS)
    + ['small', 'large', 'yes', 'no']))

NLVR2_TEMPLATES: Dict[str, str] = {
    'left_contains': 'the left image contains {a} {desc}',
    'right_contains': 'the right image contains {a} {desc}',
    'both_contain': 'both images contain {a} {desc}',
    'exactly_one': 'exactly one image contains {a} {desc}',
    'neither': 'neither image contains {a} {desc}',
    'total': 'there are {num} shapes in total',
    'left_more': 'the left image has more shapes than the right image',
    'right_more': 'the right image has more shapes than the left image',
    'same_number': 'both images have the same number of shapes',
}
NLVR2_FAMILIES: Tuple[str, ...] = tuple(NLVR2_TEMPLATES)

SNLIVE_CLASSES: Tuple[str, ...] = ('contradiction', 'neutral', 'entailment')
SNLIVE_FACT_TEMPLATES: Dict[str, str] = {
    'exists': 'there is {a} {desc}',
    'position': '{a} {colour} {shape} is {pos}',
    'count_one': 'the picture shows one shape',
    'count': 'the picture shows {num} shapes',
}
SNLIVE_NEUTRAL_TEMPLATES: Tuple[str, ...] = (
    'the {desc} is made of {material}', 'the {desc} is {prop}',
    'the {desc} was drawn by a child', 'the {desc} was painted by an artist')
MATERIALS: Tuple[str, ...] = ('wood', 'metal', 'paper', 'glass', 'plastic')
PROPERTIES: Tuple[str, ...] = ('heavy', 'expensive', 'old', 'wet', 'warm')

_SLOT_DOMAINS: Dict[str, Sequence[str]] = {
    'shape': SHAPES, 'shapes': tuple(PLURALS.values()), 'colour': COLOUR_NAMES,
    'pos': tuple(p for ps in _POS_WORDS.values() for p in ps), 'a': ('a', 'an'),
    'desc': ('small', 'large', 'shape') + COLOUR_NAMES + SHAPES,
    'num': tuple(NUMBER_WORDS.values()), 'material': MATERIALS, 'prop': PROPERTIES,
}


def demo_task_corpus() -> Iterator[str]:
    """Every template (slots blanked), every slot value, every answer and answer variant
    of the demo tasks: the extra text of ``DemoTokenizer(vocabulary='tasks')``."""
    templates = [t for ts in VQA_TEMPLATES.values() for t in ts]
    templates += list(NLVR2_TEMPLATES.values()) + list(SNLIVE_FACT_TEMPLATES.values())
    templates += list(SNLIVE_NEUTRAL_TEMPLATES)
    for t in templates:
        yield t.format(**{k: '' for k in _SLOT_DOMAINS})
    for values in _SLOT_DOMAINS.values():
        yield from values
    yield from VQA_ANSWERS
    for vs in ANSWER_VARIANTS.values():
        yield from vs
    yield from ('true', 'false') + SNLIVE_CLASSES


# ------------------------------------------------------------------------ helpers
Desc = Tuple[Optional[str], Optional[str], Optional[str]]  # (size, colour, shape)


def article(phrase: str) -> str:
    return 'an' if phrase[:1] in 'aeiou' else 'a'


def desc_text(desc: Desc) -> str:
    """``('large', 'red', None)`` -> ``'large red shape'``."""
    size, colour, shape = desc
    return ' '.join(w for w in (size, colour, shape or 'shape') if w)


def matches(obj: Obj, desc: Desc) -> bool:
    return all(d is None or d == v for d, v in zip(desc, obj[:3]))


def contains(objects: Sequence[Obj], desc: Desc) -> bool:
    return any(matches(o, desc) for o in objects)


def _desc_of(obj: Obj, kind: str) -> Desc:
    size, colour, shape, _ = obj
    return {'colour_shape': (None, colour, shape), 'size_colour_shape': (size, colour, shape),
            'shape': (None, None, shape), 'colour': (None, colour, None)}[kind]


def _random_desc(rng: np.random.Generator, kind: str) -> Desc:
    obj = (('small', 'large')[rng.integers(2)], COLOUR_NAMES[rng.integers(len(COLOURS))],
           SHAPES[rng.integers(len(SHAPES))], 'centre')
    return _desc_of(obj, kind)


def _absent_desc(objects: Sequence[Obj], rng: np.random.Generator, kind: str) -> Desc:
    """A description matching no object: mostly a present object with one attribute
    changed (a hard negative), else a random one."""
    for _ in range(100):
        if rng.random() < 0.7:
            d = list(_desc_of(objects[rng.integers(len(objects))], kind))
            slots = [k for k in range(3) if d[k] is not None]
            k = slots[rng.integers(len(slots))]
            domain = (('small', 'large'), COLOUR_NAMES, SHAPES)[k]
            d[k] = domain[rng.integers(len(domain))]
            desc = tuple(d)
        else:
            desc = _random_desc(rng, kind)
        if not contains(objects, desc):
            return desc
    raise RuntimeError('no absent description found')


def _pos_phrase(pos: str, rng: np.random.Generator) -> str:
    words = _POS_WORDS[pos]
    return words[rng.integers(len(words))]


def _unique(objects: Sequence[Obj], obj: Obj, kind: str) -> bool:
    return sum(matches(o, _desc_of(obj, kind)) for o in objects) == 1


def _render(split: str, seed: int, image_id: int, objects: Sequence[Obj], image_size: int,
            noise: float) -> Image.Image:
    """The pixels DemoImageText(split, seed=seed) gives image ``image_id``."""
    rng = np.random.default_rng([seed, _split_id(split), image_id, 2])
    return render_scene(objects, image_size, rng, noise)


def _tokenize_pipeline(key: str, max_length: int = 24) -> dict:
    return dict(type='Tokenize', key=key, max_length=max_length,
                tokenizer=dict(type='DemoTokenizer', style='bert', vocabulary='tasks'))


class _DemoTaskDataset(BaseImageTextDataset):
    """Shared arguments of the demo task datasets (see :class:`DemoVQA`)."""

    _TASK_CODE = 0

    def __init__(self, split: str, num_images: Optional[int], image_size: int, seed: int,
                 pipeline: Optional[list], default_pipeline: list, noise: float,
                 p_single: float, metainfo: Optional[dict] = None, **kwargs):
        _split_id(split)
        self.split = split
        self.num_images = DEFAULT_NUM_TASK_IMAGES[split] if num_images is None else num_images
        self.image_size = image_size
        self.seed = seed
        self.noise = noise
        self.p_single = p_single
        kwargs.setdefault('serialize_data', False)
        super().__init__(pipeline=default_pipeline if pipeline is None else pipeline,
                         mode='train' if split == 'train' else 'eval', metainfo=metainfo,
                         **kwargs)

    @property
    def scenes(self):
        return demo_scenes(self.split, self.num_images, self.seed, self.p_single)

    def get_scene(self, image_id: int) -> Tuple[Obj, ...]:
        """The objects ``(size, colour, shape, position)`` of image ``image_id``."""
        return self.scenes[image_id][0]

    def render(self, image_id: int) -> Image.Image:
        return _render(self.split, self.seed, image_id, self.get_scene(image_id),
                       self.image_size, self.noise)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _split_id(self.split), index,
                                      100 + self._TASK_CODE])

    def load_data_list(self) -> List[dict]:
        return [dict(r) for r in self.load_records()]

    def get_data_info(self, idx: int) -> dict:
        """The record of sample ``idx`` (without the generator's ``program`` of a
        statement, which is not sample data); :class:`BaseImageTextDataset` then loads the
        image and runs the pipeline."""
        info = super().get_data_info(idx)
        info.pop('program', None)
        return info

    def get_item_info(self, idx: int) -> dict:
        """Sample ``idx`` before the pipeline, with its scene objects and ground truth."""
        raise NotImplementedError


# ------------------------------------------------------------------------------ VQA


def make_vqa_question(objects: Sequence[Obj], family: str, rng: np.random.Generator,
                      yes: bool = True) -> Optional[Tuple[str, str]]:
    """``(question, canonical answer)`` of ``family`` about ``objects``, or ``None`` when
    the family has no question with a unique answer here. ``yes`` sets a yes/no answer."""
    objs = list(objects)
    templates = VQA_TEMPLATES[family]
    if family == 'colour':
        opts = [(0, o) for o in objs if _unique(objs, o, 'shape')] + [(1, o) for o in objs]
        t, o = opts[rng.integers(len(opts))]
        q = templates[t].format(shape=o[2], pos=_pos_phrase(o[3], rng))
        return q, o[1]
    if family == 'shape':
        opts = [(0, o) for o in objs] + [(1, o) for o in objs if _unique(objs, o, 'colour')]
        t, o = opts[rng.integers(len(opts))]
        return templates[t].format(pos=_pos_phrase(o[3], rng), colour=o[1]), o[2]
    if family == 'count':
        t = int(rng.integers(3))
        if t == 0:
            return templates[0], str(len(objs))
        if t == 1:
            present = sorted({o[1] for o in objs})
            pool = present if rng.random() < 0.6 else [c for c in COLOURS if c not in present]
            c = pool[rng.integers(len(pool))]
            return templates[1].format(colour=c), str(sum(o[1] == c for o in objs))
        present = sorted({o[2] for o in objs})
        pool = present if rng.random() < 0.6 else [s for s in SHAPES if s not in present]
        s = pool[rng.integers(len(pool))]
        return templates[2].format(shapes=PLURALS[s]), str(sum(o[2] == s for o in objs))
    if family == 'position':
        opts = [(t, o) for t, kind in enumerate(('colour_shape', 'shape', 'colour'))
                for o in objs if _unique(objs, o, kind)]
        if not opts:
            return None
        t, o = opts[rng.integers(len(opts))]
        return templates[t].format(colour=o[1], shape=o[2]), o[3]
    if family == 'size':
        opts = ([(0, o) for o in objs if _unique(objs, o, 'shape')] + [(1, o) for o in objs]
                + [(2, o) for o in objs if _unique(objs, o, 'colour_shape')])
        t, o = opts[rng.integers(len(opts))]
        return templates[t].format(shape=o[2], colour=o[1], pos=_pos_phrase(o[3], rng)), o[0]
    if family == 'yes/no':
        shape_refs = [o for o in objs if _unique(objs, o, 'shape')]
        if shape_refs and rng.random() < 0.5:
            o = shape_refs[rng.integers(len(shape_refs))]
            others = [p for p in POSITIONS if p != o[3]]
            pos = o[3] if yes else others[rng.integers(len(others))]
            return templates[1].format(shape=o[2], pos=_pos_phrase(pos, rng)), \
                ('yes' if yes else 'no')
        kind = ('colour_shape', 'size_colour_shape', 'shape', 'colour')[rng.integers(4)]
        if yes:
            desc = _desc_of(objs[rng.integers(len(objs))], kind)
        else:
            desc = _absent_desc(objs, rng, kind)
        text = desc_text(desc)
        return templates[0].format(a=article(text), desc=text), ('yes' if yes else 'no')
    raise ValueError(f'unknown question family {family!r}')


def annotator_answers(answer: str, rng: np.random.Generator, num: int = 10,
                      p_variant: float = 0.08, max_variants: int = 3) -> List[str]:
    """``num`` human-style answers: the canonical one, except that with probability
    ``p_variant`` (at most ``max_variants`` times) an annotator gives a variant."""
    variants = ANSWER_VARIANTS.get(answer, ())
    out, n_var = [], 0
    for _ in range(num):
        if variants and n_var < max_variants and rng.random() < p_variant:
            out.append(variants[rng.integers(len(variants))])
            n_var += 1
        else:
            out.append(answer)
    return out


@DATASETS.register_module()
class DemoVQA(_DemoTaskDataset):
    """Visual question answering on the demo scenes (VQAv2-style).

    Question families (``question_type``): ``colour`` ("what colour is the circle?",
    "what colour is the shape on the left?"), ``shape`` ("what shape is on the left?",
    "what shape is the red object?"), ``count`` ("how many shapes are there?", "how many
    red shapes are there?" -- ``'0'`` when absent --, "how many stars are there?"),
    ``position`` ("where is the red circle?" -> left/right/top/bottom/centre), ``size``
    ("what size is the star?" -> small/large) and ``yes/no`` ("is there a blue star?",
    "is the circle on the left?"; yes and no alternate over the split, so exactly
    balanced). A question says "the X" only when exactly one object is an X.

    Args:
        split: ``'train'``, ``'val'`` or ``'test'`` (disjoint scenes).
        num_images: images (defaults 1700 / 170 / 170, so 5100 / 510 / 510 questions).
        questions_per_image: questions of distinct families per image (at most 6).
        image_size, seed, noise, p_single: as :class:`~vlp.datasets.demo.DemoImageText`
            (image ``image_id`` has the same pixels as there).
        pipeline: applied to ``dict(img=PIL image, question=..., ...)``; ``None``:
            ``[ToTensor, Tokenize(DemoTokenizer(style='bert', vocabulary='tasks'),
            key='question', max_length=24)]``.

    A sample: ``image`` (uint8 ``[3, H, W]``), ``question``, ``input_ids``,
    ``attention_mask`` (``[L]``), ``question_id`` (unique int), ``image_id``, ``answers``
    (ten str), ``answer`` (the canonical answer), ``answer_type`` (``'yes/no'``,
    ``'number'`` or ``'other'``) and ``question_type``. ``metainfo``: ``answer_list`` (every
    canonical answer, sorted) and ``dataset_name``.
    """

    METAINFO = dict(dataset_name='demo_vqa', answer_list=list(VQA_ANSWERS))
    _TASK_CODE = 1

    def __init__(self, split: str = 'train', num_images: Optional[int] = None,
                 questions_per_image: int = 3, image_size: int = 64, seed: int = 0,
                 pipeline: Optional[list] = None, noise: float = 6.0, p_single: float = 0.3,
                 max_length: int = 24, **kwargs):
        if not 1 <= questions_per_image <= len(VQA_FAMILIES):
            raise ValueError(f'questions_per_image must be in 1..{len(VQA_FAMILIES)}')
        self.questions_per_image = questions_per_image
        default = [dict(type='ToTensor'), _tokenize_pipeline('question', max_length)]
        super().__init__(split, num_images, image_size, seed, pipeline, default, noise,
                         p_single, **kwargs)

    def load_records(self) -> List[dict]:
        records, n_yesno = [], 0
        for image_id, (objs, _) in enumerate(self.scenes):
            rng = self._rng(image_id)
            k = 0
            for f in rng.permutation(len(VQA_FAMILIES)):
                if k == self.questions_per_image:
                    break
                family = VQA_FAMILIES[f]
                yes = n_yesno % 2 == 0
                qa = make_vqa_question(objs, family, rng, yes=yes)
                if qa is None:
                    continue
                n_yesno += family == 'yes/no'
                question, answer = qa
                records.append(dict(
                    question_id=image_id * len(VQA_FAMILIES) + k, image_id=image_id,
                    question=question, answer=answer,
                    answers=annotator_answers(answer, rng),
                    answer_type=VQA_ANSWER_TYPES[family], question_type=family))
                k += 1
        return records

    def load_image(self, data_info: dict) -> dict:
        data_info['img'] = self.render(data_info['image_id'])
        return data_info

    def get_item_info(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        info['objects'] = self.get_scene(info['image_id'])
        return info


# ---------------------------------------------------------------------------- NLVR2


def nlvr2_truth(program: dict, left: Sequence[Obj], right: Sequence[Obj]) -> bool:
    """Truth of a statement ``program`` (``family`` and ``desc`` / ``num``) for a pair."""
    f = program['family']
    if f in ('left_contains', 'right_contains', 'both_contain', 'exactly_one', 'neither'):
        d = tuple(program['desc'])
        hits = contains(left, d) + contains(right, d)
        return {'left_contains': contains(left, d), 'right_contains': contains(right, d),
                'both_contain': hits == 2, 'exactly_one': hits == 1, 'neither': hits == 0}[f]
    if f == 'total':
        return len(left) + len(right) == program['num']
    if f == 'left_more':
        return len(left) > len(right)
    if f == 'right_more':
        return len(right) > len(left)
    if f == 'same_number':
        return len(left) == len(right)
    raise ValueError(f'unknown statement family {f!r}')


def _nlvr2_pair_options(program: dict, label: bool, with_: List[int], without: List[int],
                        by_count: Dict[int, List[int]]) -> List[Tuple[List[int], List[int]]]:
    """(left pool, right pool) combinations where every pair has truth ``label``."""
    f = program['family']
    W, O = with_, without
    every = W + O
    if f == 'left_contains':
        return [(W, every)] if label else [(O, every)]
    if f == 'right_contains':
        return [(every, W)] if label else [(every, O)]
    if f == 'both_contain':
        return [(W, W)] if label else [(W, O), (O, W), (O, O)]
    if f == 'exactly_one':
        return [(W, O), (O, W)] if label else [(W, W), (O, O)]
    if f == 'neither':
        return [(O, O)] if label else [(W, O), (O, W), (W, W)]
    sizes = [(a, b) for a in (1, 2) for b in (1, 2)]
    truth = {(a, b): nlvr2_truth(program, [None] * a, [None] * b) for a, b in sizes}
    return [(by_count[a], by_count[b]) for a, b in sizes if truth[(a, b)] == label]


@DATASETS.register_module()
class DemoNLVR2(_DemoTaskDataset):
    """Pairs of demo scenes with a statement that is true or false of the pair
    (NLVR2-style: the statement needs both images).

    Statement families: "the left/right image contains a red circle", "both images contain
    a square", "exactly one image contains a blue shape", "neither image contains a star",
    "there are three shapes in total", "the left image has more shapes than the right image"
    (and the mirror), "both images have the same number of shapes". The statement is drawn
    before (and independently of) the label, then a pair of two different scenes of the
    split making it true / false, so the text alone says nothing about the label; labels
    are an exact 50/50 permutation per split.

    Args:
        split: ``'train'``, ``'val'`` or ``'test'``.
        num_pairs: samples (defaults 5000 / 500 / 500).
        num_images: the scene pool the pairs come from (defaults 5000 / 500 / 500).
        image_size, seed, noise, p_single: as :class:`~vlp.datasets.demo.DemoImageText`.
        families: the statement families drawn (default: all of ``NLVR2_FAMILIES``);
            ``desc_kinds``: what a described object names, among ``'colour_shape'`` ("a red
            circle"), ``'shape'`` and ``'colour'`` ("a blue shape") (default: all three).
        pipeline: applied after both images are rendered and stacked into ``image``;
            ``None``: ``[Tokenize(DemoTokenizer(style='bert', vocabulary='tasks'),
            key='text', max_length=24)]``.

    A sample: ``image`` (uint8 ``[2, 3, H, W]``: left, right), ``text``, ``input_ids``,
    ``attention_mask`` (``[L]``), ``label`` (1 true, 0 false), ``identifier``
    (``'demo-<split>-<index>-0'``) and ``image_ids`` (the two scene indices).
    """

    METAINFO = dict(dataset_name='demo_nlvr2', classes=('False', 'True'))
    _TASK_CODE = 2

    def __init__(self, split: str = 'train', num_pairs: Optional[int] = None,
                 num_images: Optional[int] = None, image_size: int = 64, seed: int = 0,
                 pipeline: Optional[list] = None, noise: float = 6.0, p_single: float = 0.3,
                 max_length: int = 24, families: Optional[Sequence[str]] = None,
                 desc_kinds: Sequence[str] = ('colour_shape', 'shape', 'colour'), **kwargs):
        _split_id(split)
        self.families = tuple(NLVR2_FAMILIES if families is None else families)
        bad = [f for f in self.families if f not in NLVR2_FAMILIES]
        if bad or not self.families:
            raise ValueError(f'families must be a non-empty subset of {NLVR2_FAMILIES}, '
                             f'got {families}')
        self.desc_kinds = tuple(desc_kinds)
        bad = [k for k in self.desc_kinds if k not in ('colour_shape', 'shape', 'colour')]
        if bad or not self.desc_kinds:
            raise ValueError("desc_kinds must be a non-empty subset of ('colour_shape', "
                             f"'shape', 'colour'), got {desc_kinds}")
        self.num_pairs = DEFAULT_NUM_PAIRS[split] if num_pairs is None else num_pairs
        num_images = DEFAULT_NUM_PAIRS[split] if num_images is None else num_images
        default = [_tokenize_pipeline('text', max_length)]
        super().__init__(split, num_images, image_size, seed, pipeline, default, noise,
                         p_single, **kwargs)

    def _statement(self, rng: np.random.Generator) -> Tuple[dict, str]:
        family = self.families[rng.integers(len(self.families))]
        program = dict(family=family)
        template = NLVR2_TEMPLATES[family]
        if '{desc}' in template:
            kind = self.desc_kinds[rng.integers(len(self.desc_kinds))]
            program['desc'] = _random_desc(rng, kind)
            text = desc_text(program['desc'])
            return program, template.format(a=article(text), desc=text)
        if family == 'total':
            program['num'] = int(rng.integers(2, 5))
            return program, template.format(num=NUMBER_WORDS[program['num']])
        return program, template

    def load_records(self) -> List[dict]:
        scenes = [objs for objs, _ in self.scenes]
        if len(scenes) < 4:
            raise ValueError('DemoNLVR2 needs at least 4 scenes')
        by_count = {n: [i for i, s in enumerate(scenes) if len(s) == n] for n in (1, 2)}
        label_rng = np.random.default_rng([self.seed, _split_id(self.split), 0, 202])
        half = self.num_pairs // 2
        labels = [1] * half + [0] * half + ([int(label_rng.integers(2))]
                                            if self.num_pairs % 2 else [])
        labels = [int(x) for x in label_rng.permutation(labels)]
        records, pools = [], {}
        for idx, label in enumerate(labels):
            rng = self._rng(idx)
            for _ in range(200):
                program, text = self._statement(rng)
                if 'desc' in program:
                    d = program['desc']
                    if d not in pools:
                        hit = [contains(s, d) for s in scenes]
                        pools[d] = ([i for i, h in enumerate(hit) if h],
                                    [i for i, h in enumerate(hit) if not h])
                    with_, without = pools[d]
                else:
                    with_ = without = []
                opts = [(a, b) for a, b in _nlvr2_pair_options(program, bool(label), with_,
                                                               without, by_count)
                        if a and b and not (a is b and len(a) < 2)]
                if opts:
                    break
            else:
                raise RuntimeError(f'no scene pair for NLVR2 sample {idx}; add scenes')
            pool_l, pool_r = opts[rng.integers(len(opts))]
            left = pool_l[rng.integers(len(pool_l))]
            right = left
            while right == left:
                right = pool_r[rng.integers(len(pool_r))]
            assert nlvr2_truth(program, scenes[left], scenes[right]) == bool(label)
            records.append(dict(identifier=f'demo-{self.split}-{idx}-0', text=text,
                                label=label, image_ids=(left, right), program=program))
        return records

    def load_image(self, data_info: dict) -> dict:
        to_tensor = ToTensor()
        data_info['image'] = torch.stack(
            [to_tensor(dict(img=self.render(i)))['image'] for i in data_info['image_ids']])
        return data_info

    def get_item_info(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        info['objects'] = tuple(self.get_scene(i) for i in info['image_ids'])
        return info


# -------------------------------------------------------------------------- SNLI-VE


def _neutral_text(desc: Desc, rng: np.random.Generator) -> str:
    t = SNLIVE_NEUTRAL_TEMPLATES[rng.integers(len(SNLIVE_NEUTRAL_TEMPLATES))]
    return t.format(desc=desc_text(desc), material=MATERIALS[rng.integers(len(MATERIALS))],
                    prop=PROPERTIES[rng.integers(len(PROPERTIES))])


def make_snlive_hypothesis(objects: Sequence[Obj], label: int,
                           rng: np.random.Generator) -> Tuple[str, dict]:
    """``(hypothesis, program)`` with ``label`` (0 contradiction, 1 neutral, 2 entailment)
    for the scene ``objects``. Contradictions are half false facts (an absent object, a
    wrong position, a wrong count), half neutral-style claims about an absent object."""
    objs = list(objects)
    if label == 1 or (label == 0 and rng.random() < 0.5):  # neutral-style claim
        kind = ('colour_shape', 'size_colour_shape', 'shape')[rng.integers(3)]
        if label == 1:  # "the X" about a present object, named uniquely where possible
            o = objs[rng.integers(len(objs))]
            if not _unique(objs, o, kind):
                kind = 'size_colour_shape' if _unique(objs, o, 'size_colour_shape') else kind
            desc = _desc_of(o, kind)
        else:
            desc = _absent_desc(objs, rng, kind)
        return _neutral_text(desc, rng), dict(family='neutral', desc=desc)
    family = ('exists', 'position', 'count')[rng.integers(3)]
    true = label == 2
    if family == 'exists':
        kind = ('colour_shape', 'size_colour_shape', 'shape', 'colour')[rng.integers(4)]
        desc = (_desc_of(objs[rng.integers(len(objs))], kind) if true
                else _absent_desc(objs, rng, kind))
        text = desc_text(desc)
        return (SNLIVE_FACT_TEMPLATES['exists'].format(a=article(text), desc=text),
                dict(family='exists', desc=desc))
    if family == 'position':
        o = objs[rng.integers(len(objs))]
        if true:
            pos = o[3]
        else:
            wrong = [p for p in POSITIONS
                     if not any(q[1:] == (o[1], o[2], p) for q in objs)]
            pos = wrong[rng.integers(len(wrong))]
        return (SNLIVE_FACT_TEMPLATES['position'].format(
            a=article(o[1]), colour=o[1], shape=o[2], pos=_pos_phrase(pos, rng)),
            dict(family='position', desc=(None, o[1], o[2]), position=pos))
    n = len(objs)
    if not true:
        others = [k for k in (1, 2, 3) if k != n]
        n = others[rng.integers(len(others))]
    text = (SNLIVE_FACT_TEMPLATES['count_one'] if n == 1
            else SNLIVE_FACT_TEMPLATES['count'].format(num=NUMBER_WORDS[n]))
    return text, dict(family='count', num=n)


@DATASETS.register_module()
class DemoSNLIVE(_DemoTaskDataset):
    """Visual entailment on the demo scenes (SNLI-VE-style): image premise, text
    hypothesis, ``label`` 0 ``contradiction`` / 1 ``neutral`` / 2 ``entailment``.

    Entailment: a true statement ("there is a red circle", "a red circle is on the left",
    "the picture shows two shapes"); contradiction: a false one (an absent object, a wrong
    position or count) or, half the time, a claim the picture cannot decide about an
    object that is *absent* ("the blue square is heavy" with no blue square); neutral: such
    a claim about an object that is present ("the red circle is made of wood"). Every image
    gets one hypothesis of each label (in a random order), so labels are exact thirds.

    Args:
        split: ``'train'``, ``'val'`` or ``'test'``.
        num_images: images (defaults 1700 / 170 / 170: 5100 / 510 / 510 samples).
        image_size, seed, noise, p_single: as :class:`~vlp.datasets.demo.DemoImageText`.
        pipeline: ``None``: ``[ToTensor, Tokenize(DemoTokenizer(style='bert',
            vocabulary='tasks'), key='text', max_length=24)]``.

    A sample: ``image`` (uint8 ``[3, H, W]``), ``text``, ``input_ids``, ``attention_mask``,
    ``label``, ``pair_id`` (unique int) and ``image_id``. ``metainfo``: ``classes``.
    """

    METAINFO = dict(dataset_name='demo_snli_ve', classes=SNLIVE_CLASSES)
    _TASK_CODE = 3

    def __init__(self, split: str = 'train', num_images: Optional[int] = None,
                 image_size: int = 64, seed: int = 0, pipeline: Optional[list] = None,
                 noise: float = 6.0, p_single: float = 0.3, max_length: int = 24, **kwargs):
        default = [dict(type='ToTensor'), _tokenize_pipeline('text', max_length)]
        super().__init__(split, num_images, image_size, seed, pipeline, default, noise,
                         p_single, **kwargs)

    def load_records(self) -> List[dict]:
        records = []
        for image_id, (objs, _) in enumerate(self.scenes):
            rng = self._rng(image_id)
            for k, label in enumerate(rng.permutation(3)):
                text, program = make_snlive_hypothesis(objs, int(label), rng)
                records.append(dict(pair_id=3 * image_id + k, image_id=image_id, text=text,
                                    label=int(label), program=program))
        return records

    def load_image(self, data_info: dict) -> dict:
        data_info['img'] = self.render(data_info['image_id'])
        return data_info

    def get_item_info(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        info['objects'] = self.get_scene(info['image_id'])
        return info
