"""Declarative state-dict mapping that runs both ways.

A *table* is a list of rules written in the import direction (reference checkpoint ->
vlp); :func:`convert_state_dict` applies it as written (``reverse=False``, import) or
backwards (``reverse=True``, export). Keys are *templates*: literal text with
placeholders ``{name}`` or ``{name:regex}``; ``{i}``/``{j}`` match digits, ``{p}``
``weight|bias``, ``{m}`` the momentum suffix (``''`` or ``'_m'``), any other name one
dotted component unless given a regex. Example (open_clip's ViT block -> timm's)::

    Rename('visual.transformer.resblocks.{i}.ln_1.{p}', 'vision.model.blocks.{i}.norm1.{p}')
    Fuse('vision_model.encoder.layers.{i}.self_attn.{s}_proj.{p}',
         'vision.model.blocks.{i}.attn.qkv.{p}', s=('q', 'k', 'v'))
    Rename('visual.proj', 'vision_proj.proj.weight', TRANSPOSE)

Rules:

- :class:`Rename` one key to one key (optionally through a reversible :class:`Fn`, and
  ``maps`` translating placeholder values: BEiT-3's experts ``A``/``B`` -> ``v``/``l``);
- :class:`Fuse` several keys into one (concatenated rows: q/k/v) and :class:`Split` one
  into several (rows in proportions ``parts``), each the other's reverse;
- :class:`Merge` any N -> 1 function with an optional inverse;
- :class:`Drop` source keys on purpose (buffers, duplicates, parts the target lacks);
- :class:`Tied` a source key that must equal another one (dropped; restored on export);
- :class:`Add` target keys no source key feeds (fresh-model values, zeros, copies of
  other target keys: momentum twins, tied matrices); reversed, it drops them.

The check is strict, in both directions: every source key is consumed by a rule or
dropped on purpose (by a rule or the caller's ``drop`` regexes), and, given the target
model's ``expected`` state dict, every target key is produced with its shape; a mismatch
raises listing the first keys. Where a table holds alternatives (open_clip's fused
``in_proj_weight`` or separate ``q/k/v_proj_weight``), ``expected`` picks the one the
target model has.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import torch

__all__ = ['Fn', 'TRANSPOSE', 'UNSQUEEZE0', 'SCALAR', 'reshape', 'Rename', 'Fuse', 'Split',
           'Merge', 'Drop', 'Tied', 'Add', 'Copy', 'nest', 'reverse_table',
           'ConversionReport', 'convert_state_dict', 'check_keys']

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]
_TYPES = {'i': r'\d+', 'j': r'\d+', 'p': r'weight|bias', 'm': r'|_m'}
_PLACEHOLDER = re.compile(r'\{(\w+)(?::([^{}]*))?\}')
_SHOW = 20  # keys listed in an error message


# -- value transforms -------------------------------------------------------------------
@dataclass(frozen=True)
class Fn:
    """A tensor transform and its inverse (``None``: the rule is import-only)."""
    name: str
    fwd: Callable[[Tensor], Tensor]
    bwd: Optional[Callable[[Tensor], Tensor]] = None

    def reversed(self) -> 'Fn':
        if self.bwd is None:
            raise ValueError(f'{self.name} has no inverse')
        return Fn(f'inverse of {self.name}', self.bwd, self.fwd)


def reshape(fwd_shape: Sequence[int], bwd_shape: Sequence[int]) -> Fn:
    """``t.reshape(fwd_shape)`` on import, ``t.reshape(bwd_shape)`` on export."""
    return Fn(f'reshape{tuple(fwd_shape)}', lambda t: t.reshape(*fwd_shape),
              lambda t: t.reshape(*bwd_shape))


TRANSPOSE = Fn('transpose', lambda t: t.t(), lambda t: t.t())  # [C, D] <-> [D, C]
UNSQUEEZE0 = Fn('unsqueeze(0)', lambda t: t.unsqueeze(0), lambda t: t.squeeze(0))
SCALAR = Fn('0-dim', lambda t: t.reshape(()), lambda t: t.reshape(()))  # [1] or [] -> []


# -- templates ----------------------------------------------------------------------------
class _Template:
    """A key template compiled with the placeholder regexes of its rule."""

    def __init__(self, text: str, types: Mapping[str, str]):
        self.text = text
        pattern, seen, pos = [], set(), 0
        for m in _PLACEHOLDER.finditer(text):
            pattern.append(re.escape(text[pos:m.start()]))
            name = m.group(1)
            if name in seen:
                pattern.append(f'(?P={name})')
            else:
                pattern.append(f'(?P<{name}>{types[name]})')
                seen.add(name)
            pos = m.end()
        pattern.append(re.escape(text[pos:]))
        self.names = seen
        self.regex = re.compile(''.join(pattern))
        self.fmt = _PLACEHOLDER.sub(lambda m: '{' + m.group(1) + '}', text)

    def match(self, key: str) -> Optional[Dict[str, str]]:
        m = self.regex.fullmatch(key)
        return None if m is None else m.groupdict()

    def format(self, values: Mapping[str, str]) -> str:
        return self.fmt.format(**values)


def _types_of(texts: Iterable[str]) -> Dict[str, str]:
    types = {}
    for text in texts:
        for m in _PLACEHOLDER.finditer(text):
            if m.group(2) is not None:
                types[m.group(1)] = m.group(2)
            else:
                types.setdefault(m.group(1), _TYPES.get(m.group(1), r'[^.]+'))
    return types


def _expand_slots(template: str, slots: Mapping[str, Sequence[str]]) -> List[str]:
    """``'a.{s}_proj'`` with ``s=('q', 'k')`` -> ``['a.q_proj', 'a.k_proj']``."""
    if not slots:
        return [template]
    if len(slots) != 1:
        raise ValueError('one slot placeholder per rule')
    (name, values), = slots.items()
    if '{' + name + '}' not in template:
        raise ValueError(f'slot {{{name}}} not in {template!r}')
    return [template.replace('{' + name + '}', v) for v in values]


# -- rules ----------------------------------------------------------------------------------
@dataclass
class _Map:
    """N source keys -> M target keys through ``fwd`` (``bwd`` the inverse)."""
    srcs: Tuple[str, ...]
    dsts: Tuple[str, ...]
    fwd: Callable[[List[Tensor]], List[Tensor]]
    bwd: Optional[Callable[[List[Tensor]], List[Tensor]]] = None
    maps: Dict[str, Dict[str, str]] = field(default_factory=dict)
    slot_names: Optional[Tuple[str, ...]] = None  # names of the sources, for errors
    fallback: bool = False  # only for targets no other rule produced
    describe: str = ''

    def __post_init__(self):
        types = _types_of(self.srcs + self.dsts)
        src_types, dst_types = dict(types), dict(types)
        for name, table in self.maps.items():
            src_types[name] = '|'.join(re.escape(k) for k in sorted(table, key=len,
                                                                          reverse=True))
            dst_types[name] = '|'.join(re.escape(v) for v in sorted(
                set(table.values()), key=len, reverse=True))
        self._src = [_Template(t, src_types) for t in self.srcs]
        self._dst = [_Template(t, dst_types) for t in self.dsts]
        names = set().union(*(t.names for t in self._src))
        for t in self._dst:
            if not t.names <= names:
                raise ValueError(f'{t.text!r}: placeholders {sorted(t.names - names)} do not '
                                 f'appear in the source {self.srcs}')

    @property
    def reversible(self) -> bool:
        return self.bwd is not None

    def reversed(self) -> '_Map':
        inv = {k: {v: s for s, v in table.items()} for k, table in self.maps.items()}
        return _Map(self.dsts, self.srcs, self.bwd, self.fwd, inv, None, False,
                    self.describe)

    def prefixed(self, src: str, dst: str, maps: Mapping[str, Mapping[str, str]]) -> '_Map':
        return _Map(tuple(src + s for s in self.srcs), tuple(dst + d for d in self.dsts),
                    self.fwd, self.bwd, {**self.maps, **maps}, self.slot_names,
                    self.fallback, self.describe)

    def targets(self, values: Mapping[str, str]) -> List[str]:
        mapped = {k: self.maps[k][v] if k in self.maps else v for k, v in values.items()}
        return [t.format(mapped) for t in self._dst]


def Rename(src: str, dst: str, fn: Optional[Fn] = None,
           maps: Optional[Mapping[str, Mapping[str, str]]] = None,
           fallback: bool = False) -> _Map:
    """One key to one key, optionally through ``fn``. ``fallback``: only when no other rule
    produced the target (the source key is otherwise reported as ignored)."""
    fwd = (lambda ts: [ts[0]]) if fn is None else (lambda ts: [fn.fwd(ts[0])])
    bwd = (lambda ts: [ts[0]]) if fn is None else (
        None if fn.bwd is None else (lambda ts: [fn.bwd(ts[0])]))
    return _Map((src, ), (dst, ), fwd, bwd, {k: dict(v) for k, v in (maps or {}).items()},
                None, fallback, fn.name if fn else '')


def _split(t: Tensor, parts: Sequence[int]) -> List[Tensor]:
    unit, rest = divmod(t.shape[0], sum(parts))
    if rest:
        raise ValueError(f'{t.shape[0]} rows do not split in proportions {tuple(parts)}')
    return list(torch.split(t, [unit * p for p in parts], dim=0))


def Fuse(src: Union[str, Sequence[str]], dst: str, parts: Optional[Sequence[int]] = None,
         maps: Optional[Mapping[str, Mapping[str, str]]] = None,
         **slots: Sequence[str]) -> _Map:
    """Several keys -> one, rows concatenated in order (reverse: split in proportions
    ``parts``, equal by default). ``src`` is a list of templates, or one template with a
    slot placeholder given as a keyword: ``Fuse('a.{s}_proj.{p}', 'a.qkv.{p}',
    s=('q', 'k', 'v'))``."""
    srcs = _expand_slots(src, slots) if isinstance(src, str) else list(src)
    parts = tuple(parts or (1, ) * len(srcs))
    names = tuple(next(iter(slots.values()))) if slots else None
    return _Map(tuple(srcs), (dst, ), lambda ts: [torch.cat(ts, dim=0)],
                lambda ts: _split(ts[0], parts),
                {k: dict(v) for k, v in (maps or {}).items()}, names, describe='concatenate')


def Split(src: str, dst: Union[str, Sequence[str]], parts: Optional[Sequence[int]] = None,
          **slots: Sequence[str]) -> _Map:
    """One key -> several (rows in proportions ``parts``); the reverse of :func:`Fuse`."""
    dsts = _expand_slots(dst, slots) if isinstance(dst, str) else list(dst)
    return Fuse(dsts, src, parts).reversed()  # (no maps: they would run backwards)


def Merge(srcs: Sequence[str], dst: str, fwd: Callable[..., Tensor],
          bwd: Optional[Callable[[Tensor], Sequence[Tensor]]] = None,
          describe: str = '') -> _Map:
    """``fwd(*tensors) -> tensor``; ``bwd(tensor) -> tensors`` (``None``: import only)."""
    return _Map(tuple(srcs), (dst, ), lambda ts: [fwd(*ts)],
                None if bwd is None else (lambda ts: list(bwd(ts[0]))), describe=describe)


@dataclass
class Copy:
    """Fill a target key with another *target* key (``template`` with the placeholders of
    the filled key): momentum twins, tied matrices. When that key is not produced either,
    its value in ``expected`` (the fresh model) is used."""
    template: str


Fill = Union[str, Copy, Callable[[StateDict, Tensor], Tensor]]


@dataclass
class Drop:
    """Source keys dropped on purpose (buffers, parts the target lacks), reported under
    ``bucket``; import only."""
    pattern: str
    reason: str = ''
    bucket: str = 'ignored'

    def prefixed(self, src: str, dst: str, maps) -> 'Drop':
        return Drop(src + self.pattern, self.reason, self.bucket)

    def reversed(self) -> None:
        return None


@dataclass
class Tied:
    """A source key that must equal ``same_as`` (another source key): dropped on import
    (``ValueError`` when they differ), written as a copy on export."""
    pattern: str
    same_as: str

    def prefixed(self, src: str, dst: str, maps) -> 'Tied':
        return Tied(src + self.pattern, src + self.same_as)

    def reversed(self) -> 'Add':
        return Add(self.pattern, Copy(self.same_as), 'tied copies')


@dataclass
class Add:
    """Target keys no source key feeds, filled by ``fill``: ``'init'`` (the value in
    ``expected``, the fresh target model), ``'zeros'``, a :class:`Copy`, or
    ``callable(out, expected_value) -> tensor``. Reported under ``bucket``; reversed,
    these keys are dropped (``'not exported'``)."""
    pattern: str
    fill: Fill = 'init'
    bucket: str = 'added'

    def prefixed(self, src: str, dst: str, maps) -> 'Add':
        fill = Copy(dst + self.fill.template) if isinstance(self.fill, Copy) else self.fill
        return Add(dst + self.pattern, fill, self.bucket)

    def reversed(self) -> Drop:
        return Drop(self.pattern, 'not in the reference format', 'not_exported')


Rule = Union[_Map, Drop, Tied, Add]


def nest(rules: Sequence[Rule], src: str, dst: str,
         maps: Optional[Mapping[str, Mapping[str, str]]] = None) -> List[Rule]:
    """``rules`` applied below the prefixes ``src`` / ``dst`` (templates too); ``maps``
    translates placeholder values of the prefixes (ALBEF: BERT layer ``{i}`` ->
    fusion block ``{i} - 6``)."""
    maps = {k: {str(a): str(b) for a, b in v.items()} for k, v in (maps or {}).items()}
    return [r.prefixed(src, dst, maps) for r in rules]


def reverse_table(rules: Sequence[Rule]) -> List[Rule]:
    """The export table: every rule turned around (import-only rules left out)."""
    out = []
    for r in rules:
        if isinstance(r, _Map):
            if r.reversible:
                out.append(r.reversed())
        else:
            rev = r.reversed()
            if rev is not None:
                out.append(rev)
    return out


# -- the report ---------------------------------------------------------------------------------
@dataclass
class ConversionReport:
    """What a conversion did besides mapping keys.

    Attributes:
        ignored: source keys consumed without output (buffers, tied duplicates, sources
            superseded by another rule).
        dropped: source keys dropped by the caller's patterns (and rules reporting there).
        skipped: source keys outside the converted model (e.g. task heads).
        not_exported: vlp keys the reference format has no place for (export).
        filled: target keys no source key fed, by bucket (``left_at_init``,
            ``momentum_copies``, ``tied copies``, ``added``...).
        info: format facts (model kind, special token ids, ...). Buckets of ``filled``
            and entries of ``info`` read as attributes: ``report.left_at_init``,
            ``report.kind``.
    """
    ignored: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    not_exported: List[str] = field(default_factory=list)
    filled: Dict[str, List[str]] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        filled, info = self.__dict__.get('filled', {}), self.__dict__.get('info', {})
        if name in info:
            return info[name]
        if name in filled or name in ('left_at_init', 'momentum_copies', 'added'):
            return filled.get(name, [])
        raise AttributeError(f'ConversionReport has no {name!r}')

    def __getitem__(self, name: str):  # also read as a dict: report['dropped']
        return getattr(self, name)

    def bucket(self, name: str) -> List[str]:
        if name in ('ignored', 'dropped', 'skipped', 'not_exported'):
            return getattr(self, name)
        return self.filled.setdefault(name, [])

    def lines(self) -> List[str]:
        """Human-readable summary lines (groups of keys by top-level module)."""
        out = []
        for name in ('ignored', 'dropped', 'skipped', 'not_exported'):
            if getattr(self, name):
                out.append(f'{name.replace("_", " ")}: {summarize(getattr(self, name))}')
        for name, keys in self.filled.items():
            if keys:
                out.append(f'{name.replace("_", " ")}: {summarize(keys)}')
        return out


def summarize(keys: Sequence[str]) -> str:
    """``'text.* (41), itc.logit_scale'``: keys grouped by their top-level module."""
    groups: Dict[str, List[str]] = OrderedDict()
    for k in keys:
        groups.setdefault(k.split('.', 1)[0], []).append(k)
    return ', '.join(v[0] if len(v) == 1 else f'{g}.* ({len(v)})' for g, v in groups.items())


def _first(keys: Sequence[str]) -> str:
    keys = list(keys)
    more = f' ... and {len(keys) - _SHOW} more' if len(keys) > _SHOW else ''
    return f'{keys[:_SHOW]}{more}'


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal tensors (meta tensors, which hold no values, count as equal)."""
    if a.is_meta or b.is_meta:
        return a.shape == b.shape
    return a.shape == b.shape and torch.equal(a, b)


# -- the engine ----------------------------------------------------------------------------------
def _fill(rule: Add, key: str, values: Dict[str, str], out: StateDict,
          expected: Mapping[str, Tensor]) -> Tensor:
    like = expected[key]
    if rule.fill == 'init':
        if like.is_meta and any(not v.is_meta for v in out.values()):
            raise ValueError(f'{key} is filled from the fresh model, but expected holds meta '
                             'tensors: pass a fresh model built on a real device')
        return like
    if rule.fill == 'zeros':
        return torch.zeros(like.shape, dtype=like.dtype)
    if isinstance(rule.fill, Copy):
        other = _Template(rule.fill.template, _types_of([rule.fill.template])).format(values)
        if other in out:
            return out[other]
        if other in expected:
            return expected[other]
        raise KeyError(f'{key}: the key it copies, {other}, is not produced')
    if callable(rule.fill):
        return rule.fill(out, like)
    raise ValueError(f'unknown fill {rule.fill!r}')


def check_keys(state: Mapping[str, Tensor], expected: Mapping[str, Any],
               what: str = 'the target model') -> None:
    """Names and shapes of ``state`` against ``expected`` (tensors or shapes).

    Raises:
        KeyError: missing or unexpected keys (the first ones listed).
        ValueError: shape mismatches.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise KeyError(f'converted state dict does not match {what}: missing '
                       f'{_first(missing)}, unexpected {_first(unexpected)}')

    def shape(v):
        return tuple(v.shape) if hasattr(v, 'shape') else tuple(v)
    bad = [f'{k}: {shape(v)} != {shape(expected[k])}' for k, v in state.items()
           if shape(v) != shape(expected[k])]
    if bad:
        raise ValueError('shape mismatch: ' + '; '.join(bad[:_SHOW]))


def convert_state_dict(state_dict: Mapping[str, Tensor], table: Sequence[Rule], *,
                       reverse: bool = False,
                       expected: Optional[Mapping[str, Tensor]] = None,
                       drop: Iterable[str] = (),
                       report: Optional[ConversionReport] = None,
                       what: str = 'the target model'
                       ) -> Tuple[StateDict, ConversionReport]:
    """Apply ``table`` (``reverse``: backwards) to ``state_dict``.

    Args:
        state_dict: the source tensors.
        table: rules in the import direction.
        reverse: export (run the table backwards).
        expected: the target model's state dict (values on any device, ``meta`` too):
            picks among alternatives, feeds :class:`Add` rules and enables the strict
            target check (every key produced, with its shape, in this order).
        drop: full-match regexes of source keys to drop on purpose.
        report: a report to add to (a new one by default).

    Raises:
        KeyError: a source key no rule consumes, an incomplete group (``only ['q', 'v']
            of ['q', 'k', 'v']``), two sources for one target, a missing / unexpected
            target key.
        ValueError: a tied pair that differs, shape mismatches.
    """
    rules = reverse_table(table) if reverse else list(table)
    rep = report if report is not None else ConversionReport()
    drop = list(drop)
    src: StateDict = OrderedDict()
    for k, v in state_dict.items():
        if any(re.fullmatch(p, k) for p in drop):
            rep.dropped.append(k)
        else:
            src[k] = v
    out: StateDict = OrderedDict()
    consumed, unplaced, incomplete = set(), {}, []
    maps = [r for r in rules if isinstance(r, _Map)]
    for rule in [r for r in maps if not r.fallback] + [r for r in maps if r.fallback]:
        groups: Dict[Tuple, Dict[int, str]] = OrderedDict()
        for key in src:
            for slot, tmpl in enumerate(rule._src):
                values = tmpl.match(key)
                if values is not None:
                    groups.setdefault(tuple(sorted(values.items())), {})[slot] = key
        for values, slots in groups.items():
            targets = rule.targets(dict(values))
            keys = [slots[s] for s in sorted(slots)]
            if expected is not None and any(t not in expected for t in targets):
                for k in keys:
                    unplaced.setdefault(k, targets)
                continue
            if len(slots) < len(rule._src):
                names = rule.slot_names or tuple(rule.srcs)
                incomplete.append(f'{targets[0]}: only {sorted(names[s] for s in slots)} of '
                                  f'{list(names)} present')
                consumed.update(keys)
                continue
            if any(t in out for t in targets):
                if rule.fallback:
                    rep.ignored.extend(k for k in keys if k not in consumed)
                    consumed.update(keys)
                    continue
                raise KeyError(f'two source keys map to {[t for t in targets if t in out]}')
            for t, v in zip(targets, rule.fwd([src[k] for k in keys])):
                out[t] = v
            consumed.update(keys)
    if incomplete:
        raise KeyError('incomplete groups: ' + '; '.join(incomplete[:_SHOW]))

    others = [r for r in rules if isinstance(r, (Drop, Tied))]
    compiled = [(r, _Template(r.pattern, _types_of([r.pattern]))) for r in others]
    unexpected = []
    for key in src:
        if key in consumed:
            continue
        for rule, tmpl in compiled:
            values = tmpl.match(key)
            if values is None:
                continue
            if isinstance(rule, Tied):
                other = _Template(rule.same_as, _types_of([rule.same_as])).format(values)
                if other not in src or not _same(src[key], src[other]):
                    raise ValueError(f'{key} differs from {other} (they must be the same '
                                     'tensor: the target model ties them)')
                rep.ignored.append(key)
            else:
                rep.bucket(rule.bucket).append(key)
            break
        else:
            unexpected.append(key)
    if unexpected:
        lacking = [f'{k} -> {unplaced[k]}' for k in unexpected if k in unplaced]
        msg = (f'unexpected keys in the source checkpoint (no rule maps them; pass drop '
               f'patterns to discard them on purpose): {_first(unexpected)}')
        if lacking:
            msg += f'; mapped to keys {what} does not have: {lacking[:_SHOW]}'
        raise KeyError(msg)
    if expected is None:
        return out, rep

    adds = [(r, _Template(r.pattern, _types_of([r.pattern]))) for r in rules
            if isinstance(r, Add)]
    for key in expected:
        if key in out:
            continue
        for rule, tmpl in adds:
            values = tmpl.match(key)
            if values is not None:
                out[key] = _fill(rule, key, values, out, expected)
                rep.bucket(rule.bucket).append(key)
                break
    check_keys(out, expected, what)
    return OrderedDict((k, out[k]) for k in expected), rep
