"""Checks of ``--cfg-options`` and of a config's values, before anything is built.

mmengine merges ``--cfg-options`` blindly: ``max_epochs=2`` on a config whose epochs are
``train_cfg.max_epochs`` sets a top-level variable nobody reads, a typo adds a key nobody
reads, and ``max_epochs=-1`` trains nothing. ``tools/train.py`` and ``tools/test.py``
therefore call

- :func:`check_cfg_options` (before ``cfg.merge_from_dict``): every key must exist in the
  config, or be one a reader takes (see below); the error lists every bad key with the
  nearest existing keys ("did you mean train_cfg.max_epochs?");
- :func:`check_cfg_values` (after merging, before the runner builds the model): epochs /
  iterations / intervals, batch sizes, worker counts and learning rates must be possible;

and parse the option with :class:`CfgOptionsAction`, which refuses items without ``=``.

A key the config lacks is accepted when something reads it:

(a) its parent dict is built from a registry (``type=...``, resolved in vlp's registries,
    which fall back to mmengine's) and the class takes it: the ``__init__`` signatures
    along the MRO, following ``**kwargs`` passed on to a parent ``__init__`` (kwargs used
    any other way accept anything). Untyped dicts mmengine builds anyway are checked
    against the class it uses (``train_cfg`` -> Epoch/IterBasedTrainLoop, dataloaders ->
    ``torch.utils.data.DataLoader``, ``env_cfg.dist_cfg`` -> ``init_process_group``...);
(b) it is a top-level key that mmengine's Runner / FlexibleRunner or vlp's tools read;
(c) it lies inside a dict that the options themselves create (``strategy.*`` when the
    config has no ``strategy``), unless a ``type`` given with it or a known schema says
    otherwise.

Untyped dicts elsewhere (``model.head=dict(...)``) take only the keys they have. A
top-level key the config has but no reader takes (a variable such as ``max_epochs = 15``,
already substituted where the file uses it) is refused too.
"""
import argparse
import difflib
import inspect
import math
import re
from fnmatch import fnmatch
from typing import Any, Dict, List, Optional, Set

from mmengine.config import DictAction

ANY = None  # "any key" (kwargs we cannot follow, free-form sections)

# top-level keys read besides Runner/FlexibleRunner's __init__ arguments
_READ_TOP_LEVEL = {
    # mmengine's runners, from the config itself (runner.cfg.get)
    'model_wrapper_cfg', 'find_unused_parameters', 'sync_bn', 'activation_checkpointing',
    'efficient_conv_bn_eval', 'compile', 'init_weights_for_test_or_val',
    # tools/train.py, tools/test.py, vlp/engine/launch.py, mmengine's Config
    'test_after_train', 'runner_type', 'custom_imports', 'default_scope', 'launcher',
    'work_dir', 'resume', 'load_from',
    # vlp/engine/watchdog.py (read by vlp/engine/launch.py)
    'watchdog',
}

# untyped dicts mmengine builds anyway: path pattern -> the keys they take. A string names
# the class (or function) whose signature gives them; ANY: free-form
_PLAIN = {
    'val_cfg': 'mmengine.runner.ValLoop',
    'test_cfg': 'mmengine.runner.TestLoop',
    'log_processor': 'mmengine.runner.LogProcessor',
    'optim_wrapper': 'vlp.engine.optim.OptimWrapper',  # mmengine's + nonfinite
    'visualizer': 'mmengine.visualization.Visualizer',
    '*_dataloader': 'torch.utils.data.DataLoader',
    'compile': 'torch.compile',
    'randomness': 'mmengine.runner.Runner.set_randomness',
    'env_cfg': {'cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit'},
    'env_cfg.mp_cfg': {'mp_start_method', 'opencv_num_threads'},
    # vlp.engine.dist.init_dist: timeout in seconds, port for slurm, the rest to torch
    'env_cfg.dist_cfg': 'torch.distributed.init_process_group',
    'auto_scale_lr': {'enable', 'base_batch_size'},
    'watchdog': {'enable', 'timeout', 'interval', 'watch'},
    'custom_imports': {'imports', 'allow_failed_imports'},
    'optim_wrapper.paramwise_cfg': {  # DefaultOptimWrapperConstructor (vlp has no other)
        'custom_keys', 'bias_lr_mult', 'bias_decay_mult', 'norm_decay_mult',
        'dwconv_decay_mult', 'flat_decay_mult', 'bypass_duplicate', 'dcn_offset_lr_mult'},
    'optim_wrapper.paramwise_cfg.custom_keys*': ANY,  # parameter-name patterns
    'default_hooks': ANY,  # hook names; a new one needs a type
    'strategy.*': ANY,  # DeepSpeed's config sections (zero_optimization, bf16...)
}
# keys consumed on the way, besides the built class's arguments
_EXTRA = {
    'optim_wrapper': {'optimizer', 'paramwise_cfg', 'constructor'},
    '*_dataloader': {'num_batch_per_epoch', 'disable_subprocess_warning'},
    'env_cfg.dist_cfg': {'backend', 'timeout', 'port'},
    'param_scheduler*': {'convert_to_iter_based'},
    'default_hooks.*': {'priority'},
    'custom_hooks*': {'priority'},
}
# untyped dicts that may be given a ``type`` (mmengine builds them from a registry then)
_TYPED_PLAIN = {'train_cfg', 'val_cfg', 'test_cfg', 'log_processor', 'optim_wrapper',
                'visualizer'}
# a new dict here is built from a registry: the options must give its type (e.g. ...)
_NEEDS_TYPE = {'strategy': 'DeepSpeedStrategy', 'default_hooks.*': 'EMAHook'}


class ConfigError(ValueError):
    """A config or its ``--cfg-options`` cannot run; the message lists every problem."""


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` that refuses items without ``=`` (or with an empty key)
    with the form it expects, instead of ``not enough values to unpack``."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values or []:
            key = item.split('=', 1)[0]
            if '=' not in item or not key or '' in key.split('.'):
                raise argparse.ArgumentError(
                    self, f'{option_string or "--cfg-options"} expects key=value pairs '
                    f'(e.g. train_cfg.max_epochs=2), got {item!r}')
        super().__call__(parser, namespace, values, option_string)


# -- what reads a key ------------------------------------------------------------------

def _import(dotted: str):
    module, _, name = dotted.rpartition('.')
    try:
        obj = __import__(module, fromlist=[name])
    except ImportError:  # Class.method
        module, _, owner = module.rpartition('.')
        obj = getattr(__import__(module, fromlist=[owner]), owner)
    return getattr(obj, name)


def _kwargs_passed_on(func, name: str) -> bool:
    """Whether ``func`` hands ``**name`` to another ``__init__`` (a parent's)."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return False
    return re.search(r'\.__init__\((?:[^()]|\([^()]*\))*\*\*' + name + r'\b', source) \
        is not None


def accepted_arguments(obj) -> Optional[Set[str]]:
    """Keyword arguments a class (walking its MRO's ``__init__``) or function takes;
    ``None`` when it takes any."""
    if not inspect.isclass(obj):
        try:
            params = inspect.signature(obj).parameters.values()
        except (TypeError, ValueError):
            return ANY
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return ANY
        return {p.name for p in params if p.kind is not p.VAR_POSITIONAL} - {'self'}
    names: Set[str] = set()
    for klass in obj.__mro__:
        init = vars(klass).get('__init__')
        if init is None:
            continue
        if klass is object:
            break
        try:
            params = list(inspect.signature(init).parameters.values())[1:]  # self
        except (TypeError, ValueError):
            return ANY
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        kwargs = [p.name for p in params if p.kind is p.VAR_KEYWORD]
        if not kwargs:
            break
        if not _kwargs_passed_on(init, kwargs[0]):
            return ANY
    return names


def _registries():
    import vlp.registry
    from mmengine.registry import Registry
    return [r for r in vars(vlp.registry).values()
            if isinstance(r, Registry) and r.scope == 'vlp']


def resolve_type(type_) -> list:
    """The classes / functions ``type=type_`` names in vlp's registries (scope ``vlp``,
    falling back to mmengine's); a class given as such is itself."""
    if not isinstance(type_, str):
        return [type_] if callable(type_) else []
    found = []
    for registry in _registries():
        obj = registry.get(type_)
        if obj is not None and obj not in found:
            found.append(obj)
    return found


def _registered_names() -> Set[str]:
    names = set()
    for registry in _registries():
        registry.import_from_location()
        while registry is not None:
            names |= set(registry.module_dict)
            registry = registry.parent
    return names


def top_level_keys() -> Set[str]:
    """Top-level keys a runner or vlp's tools read."""
    from mmengine.runner import FlexibleRunner, Runner
    keys = set(_READ_TOP_LEVEL)
    for runner in (Runner, FlexibleRunner):
        keys |= set(inspect.signature(runner.__init__).parameters) - {'self', 'cfg'}
    return keys


def _match(table: dict, path: str):
    return [value for pattern, value in table.items() if fnmatch(path, pattern)]


def _free(path: str) -> bool:
    return ANY in _match(_PLAIN, path)


def _allowed_keys(path: str, node: dict, is_new: bool, options: dict) -> Optional[Set[str]]:
    """Keys ``node`` (the dict at ``path``) may gain; ``None``: any."""
    extras = set().union(*_match(_EXTRA, path))
    type_ = options.get(f'{path}.type', node.get('type'))
    if type_ is not None:
        classes = resolve_type(type_)
        if not classes:
            return ANY  # an unknown type is reported on its own
        keys = {'type', '_scope_'} | extras
        for cls in classes:
            args = accepted_arguments(cls)
            if args is ANY:
                return ANY
            keys |= args
        return keys
    plain = _match(_PLAIN, path)
    if ANY in plain:
        return ANY
    if path == 'train_cfg':
        by_epoch = options.get('train_cfg.by_epoch', node.get('by_epoch', True))
        plain = ['mmengine.runner.' + ('EpochBasedTrainLoop' if by_epoch
                                       else 'IterBasedTrainLoop')]
        extras |= {'by_epoch'}
    if not plain:
        return ANY if is_new else set()  # rule (c) / must exist
    keys = extras | ({'type'} if path in _TYPED_PLAIN else set())
    for entry in plain:
        args = accepted_arguments(_import(entry)) if isinstance(entry, str) else entry
        if args is ANY:
            return ANY
        keys |= args
    return keys - {'runner', 'dataloader', 'evaluator'}  # the runner passes these


# -- suggestions -------------------------------------------------------------------------

def _flatten(node, prefix: str = '') -> Dict[str, Any]:
    out = {}
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, (list, tuple)) else ()
    for k, v in items:
        path = f'{prefix}{k}'
        out[path] = v
        out.update(_flatten(v, path + '.'))
    return out


def suggest(key: str, candidates, n: int = 3) -> List[str]:
    """The nearest of ``candidates`` to ``key``: those ending in the same last component
    first (``max_epochs`` -> ``train_cfg.max_epochs``), then longer names beside it, then
    difflib's close matches of the whole path and of its last component."""
    last = key.rsplit('.', 1)[-1]
    candidates = sorted(c for c in set(candidates) - {key}
                        if last == 'type' or c.rsplit('.', 1)[-1] != 'type')
    ratio = {c: difflib.SequenceMatcher(None, key, c).ratio() for c in candidates}
    same_last = sorted((c for c in candidates if c.rsplit('.', 1)[-1] == last),
                       key=lambda c: -ratio[c])
    parent = key.rpartition('.')[0]
    longer = [c for c in candidates  # a name cut short: cudnn -> cudnn_benchmark
              if c.rpartition('.')[0] == parent and c.rpartition('.')[2].startswith(last)]
    close = difflib.get_close_matches(key, candidates, n=n, cutoff=0.75)
    by_last = {}
    for c in candidates:
        by_last.setdefault(c.rsplit('.', 1)[-1], []).append(c)
    close_last = [c for name in difflib.get_close_matches(last, list(by_last), n=n,
                                                            cutoff=0.85)
                  for c in sorted(by_last[name], key=lambda c: -ratio[c])]
    out = []
    for c in same_last + longer + close + close_last:
        if c not in out:
            out.append(c)
    return out[:n]


def _did_you_mean(key: str, candidates) -> str:
    near = suggest(key, candidates)
    return f'; did you mean {" or ".join(near)}?' if near else ''


# -- the checks --------------------------------------------------------------------------

def _as_dict(cfg) -> dict:
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def _source(cfg) -> str:
    return getattr(cfg, 'filename', None) or 'the config'


def check_cfg_options(cfg, options: Dict[str, Any]) -> None:
    """Raise :class:`ConfigError` listing every key of ``options`` (``--cfg-options``,
    dotted keys) that nothing would read in ``cfg``, each with the nearest keys."""
    if not options:
        return
    tree = _as_dict(cfg)
    readers = top_level_keys()
    unread = {k for k in tree if k not in readers}
    existing = {p: v for p, v in _flatten(tree).items() if p.split('.', 1)[0] not in unread}
    candidates = set(existing) | readers
    errors = []
    for key, value in options.items():
        problem = _check_key(key, value, tree, readers, options, candidates, existing)
        if problem:
            errors.append(f'  {key}: {problem}')
    if errors:
        raise ConfigError(
            f'--cfg-options: {len(errors)} bad key(s) for {_source(cfg)}:\n'
            + '\n'.join(errors))


def _check_key(key, value, tree, readers, options, candidates, existing) -> Optional[str]:
    parts = key.split('.')
    if '' in parts:
        return 'empty key component (expected dotted names such as train_cfg.max_epochs)'
    top = parts[0]
    if top in tree and top not in readers:
        return (f'{top!r} is a variable of the config file, already substituted where the '
                f'file uses it{_held_at(tree[top], existing)}: setting it changes nothing'
                + _did_you_mean(key, candidates))
    if top not in readers:
        return ('neither a key of the config nor one that the runner or the tools read'
                + _did_you_mean(key, candidates))
    is_new = top not in tree
    node, path = ({} if is_new else tree[top]), top
    for i, part in enumerate(parts[1:], start=1):
        path = '.'.join(parts[:i])
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                return (f'{path} is a list of {len(node)} item(s): index it with 0..'
                        f'{len(node) - 1}' + _did_you_mean(key, candidates))
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            return f'{path} is {node!r} in the config, not a dict: {key} cannot be set in it'
        example = _match(_NEEDS_TYPE, path)
        if is_new and example and f'{path}.type' not in options:
            return (f'the config has no {path}: a new one needs its type too (e.g. '
                    f'{path}.type={example[0]})'
                    + (_did_you_mean(key, candidates) if '.' in path else ''))
        if part == '_delete_':
            return None
        if part in node:
            node = node[part]
            continue
        allowed = _allowed_keys(path, node, is_new, options)
        if allowed is not ANY and part not in allowed:
            type_ = options.get(f'{path}.type', node.get('type'))
            where = (f'{type_!r} ({path}.type) takes no argument {part!r}' if type_
                     else f'{path} has no key {part!r}')
            near = {f'{path}.{k}' for k in allowed if k != '_scope_'}
            return where + _did_you_mean(key, candidates | near)
        node, is_new = {}, True
    if parts[-1] == 'type' and isinstance(value, str) and not _free(path) and \
            not resolve_type(value):
        near = difflib.get_close_matches(value, sorted(_registered_names()), n=3)
        return (f"no {value!r} in vlp's registries (nor mmengine's)"
                + (f'; did you mean {" or ".join(near)}?' if near else ''))
    return None


def _held_at(value, existing: Dict[str, Any]) -> str:
    """Where a top-level variable's value ended up, e.g. ' (its value 15 is at
    train_cfg.max_epochs, ...)'."""
    if value is None or isinstance(value, bool):
        return ''
    paths = [p for p, v in existing.items() if type(v) is type(value) and v == value][:6]
    if not paths:
        return ''
    shown = '' if isinstance(value, (dict, list)) else f' {value!r}'
    return f' (its value{shown} is at {", ".join(paths)})'


def _whole(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and v == int(v)


def check_cfg_values(cfg, options: Optional[Dict[str, Any]] = None) -> None:
    """Raise :class:`ConfigError` listing every impossible value of ``cfg``: train
    epochs / iterations / validation interval <= 0, dataloader batch sizes <= 0 or
    ``num_workers`` < 0, optimizer learning rates < 0 or not finite. ``options`` (the
    ``--cfg-options`` merged into ``cfg``) only tell where a value came from."""
    options = options or {}
    errors = []

    def bad(key, value, what):
        origin = 'set by --cfg-options' if key in options else f'in {_source(cfg)}'
        errors.append(f'  {key}={value!r} ({origin}): {what}')

    train_cfg = cfg.get('train_cfg') or {}
    for key, what in (('max_epochs', 'the number of epochs to train'),
                      ('max_iters', 'the number of iterations to train'),
                      ('val_interval', 'validate every N epochs / iterations')):
        value = train_cfg.get(key)
        if value is not None and not (_whole(value) and value > 0):
            bad(f'train_cfg.{key}', value, f'must be a whole number > 0 ({what})')
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name) or {}
        if 'batch_size' in loader and not (_whole(loader['batch_size'])
                                           and loader['batch_size'] > 0):
            bad(f'{name}.batch_size', loader['batch_size'], 'must be a whole number > 0')
        if 'num_workers' in loader and not (_whole(loader['num_workers'])
                                            and loader['num_workers'] >= 0):
            bad(f'{name}.num_workers', loader['num_workers'],
                'must be a whole number >= 0 (0: load in the main process)')
    for path, value in _flatten(_as_dict(cfg).get('optim_wrapper') or {},
                                'optim_wrapper.').items():
        if path.rsplit('.', 1)[-1] == 'lr' and not _is_lr(value):
            bad(path, value, 'a learning rate must be a finite number >= 0')
    if errors:
        raise ConfigError(f'{len(errors)} impossible value(s):\n' + '\n'.join(errors))


def _is_lr(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and v >= 0


def check_options_and_merge(cfg, options: Optional[Dict[str, Any]]):
    """:func:`check_cfg_options`, then ``cfg.merge_from_dict(options)``; a changed
    ``custom_imports`` is imported (mmengine imports it only when reading the file)."""
    if not options:
        return cfg
    check_cfg_options(cfg, options)
    cfg.merge_from_dict(options)
    if any(k.split('.')[0] == 'custom_imports' for k in options) and cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    return cfg
