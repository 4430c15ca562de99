"""The configs are layers (``_base_/models``, ``datasets``, ``schedules``,
``default_runtime.py``) and every config resolves to what it resolved to before they were
(issue 18).

``tests/data/resolved_configs.json`` holds, for every config under configs/ (not the
``_base_`` files: they are parts, not configs), ``Config.fromfile(path).to_dict()`` in a
canonical JSON form (keys sorted, tuples as lists), generated from the configs before
the split. Each config must still resolve to it, with two rules and the deliberate
differences ``DELIBERATE`` lists (the three zero-shot test configs lost the unused training
parts they carried):

- Top-level variables that nothing reads (``max_epochs = 15``, ``bert = dict(...)``,
  ``train_pipeline``: names outside :func:`vlp.engine.config_check.top_level_keys`,
  ``image_size``, which tools/benchmark.py reads, and the tiny demos' ``width`` and
  ``vocab_size``, which tests read) may appear or disappear: their values
  were substituted where the file used them, and every place that reads them is compared.
  ``check_cfg_options`` refuses ``--cfg-options`` on them, so they are no interface. Where
  a variable is there before and after, its value must not change, unless it was stale
  (no key that is read held its value: a demo's ``train_pipeline`` inherited from a dataset
  base whose loaders the demo had given other pipelines).
- A key that is there on one side only is the same value when it equals the default of
  that argument of the class its dict builds (``type``, looked up in vlp's registries as
  the builders do; ``UNTYPED_DEFAULTS`` for the few untyped dicts mmengine reads with a
  default; for top-level keys, mmengine's ``Runner``, which registers no custom hooks for
  ``None`` or ``[]`` alike): a tiny demo that inherits the paper model states
  ``pretrained=False`` or ``grad_checkpointing=False`` where it used to leave them out.

Deliberate value changes made after the snapshot was taken are written into it: the
retrieval fine-tuning configs' ``save_best='auto'`` (mmengine cannot infer a rule for
``retrieval/txt_r1``: every run crashed at its first validation) became
``save_best='retrieval/r_mean', rule='greater'``; the CLIP and CoCa tokenizers read the
BPE merges shipped with vlp (``bpe_path='bundled'``) instead of ``data/clip/tokenizer.json``,
which nothing made (the ids are the same); ``blip_caption_coco.py``'s model became
``type='BLIPCaption'`` (the captioning model got its own class; same parts, same weights).
``align_tiny_demo.py`` trains with AdamW (lr 1e-3, weight decay 0.1) and an initial
temperature of 0.07 instead of ALIGN's LAMB and 1.0, which stay near chance at demo scale
(docs/demos.md).

Regenerate the file only for a deliberate change of config values:
``.venv/bin/python tests/test_config_layers.py --write``.
"""
import inspect
import json
import re
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from vlp.engine.config_check import resolve_type, top_level_keys

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / 'tests' / 'data' / 'resolved_configs.json'
CONFIG_FILES = sorted(p for p in (ROOT / 'configs').rglob('*.py'))
CONFIGS = [p for p in CONFIG_FILES if '_base_' not in p.parts]

# config -> (dotted paths whose values differ on purpose, why)
_TEST_ONLY = ('test only (tools/test.py): a model base, the test set and the runtime; the '
               'training set, validation split and schedule it carried unused from the '
               'pre-training config are gone (everything tools/test.py reads is unchanged)')
_TRAINING = ('train_dataloader', 'val_dataloader', 'val_evaluator', 'val_cfg',
             'optim_wrapper', 'param_scheduler', 'train_cfg', 'auto_scale_lr')
# ALIGN's and CoCa's pre-training runs save and log by iteration
_BY_ITER = ('default_hooks.checkpoint', 'log_processor')
DELIBERATE = {
    'configs/clip/clip_zeroshot_imagefolder.py': (_TRAINING, _TEST_ONLY),
    'configs/align/align_zeroshot_imagefolder.py': (_TRAINING + _BY_ITER, _TEST_ONLY),
    'configs/coca/coca_zeroshot_imagefolder.py': (_TRAINING + _BY_ITER, _TEST_ONLY),
}


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def canonical(x):
    if isinstance(x, dict):
        return {str(k): canonical(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [canonical(v) for v in x]
    return x


def resolve(path: Path) -> dict:
    return canonical(Config.fromfile(str(path)).to_dict())


def write_snapshot():
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(_rel(p)) + ': ' + json.dumps(resolve(p), sort_keys=True,
                                                     separators=(',', ':'))
             for p in CONFIGS]
    SNAPSHOT.write_text('{\n' + ',\n'.join(lines) + '\n}\n')


_NONE = object()


def _default(type_, key):
    """The default of argument ``key`` of what ``type=type_`` builds (``_NONE`` when it has
    none, takes it through ``**kwargs``, or ``type_`` is not registered)."""
    defaults = set()
    classes = resolve_type(type_)
    for cls in classes:
        found = _NONE
        for klass in (cls.__mro__ if inspect.isclass(cls) else [cls]):
            init = vars(klass).get('__init__') if inspect.isclass(cls) else klass
            if init is None or klass is object:
                continue
            params = inspect.signature(init).parameters
            if key in params:
                found = params[key].default
                break
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                break  # the class does not take ``key``
        if found is _NONE or found is inspect.Parameter.empty:
            return _NONE
        defaults.add(json.dumps(canonical(found), sort_keys=True))
    return json.loads(defaults.pop()) if len(defaults) == 1 else _NONE


# defaults of keys in dicts without a ``type`` that mmengine reads with ``.get(key, default)``
UNTYPED_DEFAULTS = {
    # DefaultOptimWrapperConstructor: paramwise_cfg.get('bypass_duplicate', False)
    'optim_wrapper.paramwise_cfg.bypass_duplicate': False,
}


def _runner_default(key):
    """The default of a top-level key: mmengine's Runner (FlexibleRunner: ``strategy``)
    takes them as arguments."""
    from mmengine.runner import FlexibleRunner, Runner
    for runner in (Runner, FlexibleRunner):
        param = inspect.signature(runner.__init__).parameters.get(key)
        if param is not None and param.default is not param.empty:
            return param.default
    return _NONE


def differences(old, new, path=''):
    """Dotted paths where ``new`` does not resolve to the same values as ``old``."""
    if not path:  # the whole config: the Runner's arguments (no hooks: None or [])
        old, new = ({k: (None if k == 'custom_hooks' and v == [] else v)
                     for k, v in cfg.items()} for cfg in (old, new))
        return [key for key in sorted(old.keys() ^ new.keys())
                if _runner_default(key) != old.get(key, new.get(key))] + \
            [d for key in sorted(old.keys() & new.keys())
             for d in differences(old[key], new[key], key)]
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        type_ = new.get('type') if old.get('type') == new.get('type') else None
        for key in sorted(old.keys() | new.keys()):
            where = f'{path}.{key}' if path else key
            value = old.get(key, new.get(key))
            if key in old and key in new:
                out += differences(old[key], new[key], where)
            elif where in UNTYPED_DEFAULTS and 'type' not in old | new:
                if UNTYPED_DEFAULTS[where] != value:
                    out.append(where)
            elif type_ is None or _default(type_, key) != value:
                out.append(where)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new))
                for d in differences(a, b, f'{path}[{i}]')]
    return [] if old == new else [path]


READ = top_level_keys() | {'image_size'}  # tools/benchmark.py reads image_size
# the tiny demos' sizes that tests read: tests/test_task_demos.py (vocab_size) and
# tests/models/test_downstream.py (width, image_size)
READ_DEMO = READ | {'vocab_size', 'width'}
# what tools/capfilt.py reads of a CapFilt config (configs/capfilt/)
READ_CAPFILT = READ | {'input', 'output', 'stages', 'runtime', 'custom_imports'}


@pytest.fixture(scope='module')
def snapshot():
    return json.loads(SNAPSHOT.read_text())


def test_every_config_is_in_the_snapshot(snapshot):
    """The set of config paths is the one users and docs know."""
    assert sorted(snapshot) == [_rel(p) for p in CONFIGS]


def _contains(tree, value) -> bool:
    return tree == value or any(
        _contains(v, value) for v in (tree.values() if isinstance(tree, dict) else
                                      tree if isinstance(tree, list) else ()))


@pytest.mark.parametrize('path', CONFIGS, ids=_rel)
def test_config_resolves_as_before(path, snapshot):
    old, new = snapshot[_rel(path)], resolve(path)
    reads = READ_DEMO if path.name.endswith('_tiny_demo.py') else \
        READ_CAPFILT if 'capfilt' in path.parts else READ
    read = {k: v for k, v in old.items() if k in reads}
    for key in {k for k in old.keys() | new.keys() if k not in reads}:
        # a helper variable may come or go; one that stays keeps its value, unless it was
        # stale (nothing that is read held it: e.g. a dataset base's pipeline that the
        # config's own loaders replaced)
        if key not in old or key not in new or not _contains(read, old[key]):
            old.pop(key, None)
            new.pop(key, None)
    prefixes = DELIBERATE.get(_rel(path), ((), ''))[0]
    found = differences(old, new)
    listed = [d for d in found if any(d == p or d.startswith((p + '.', p + '['))
                                      for p in prefixes)]
    assert not set(found) - set(listed), \
        f'{_rel(path)} resolves differently at: {sorted(set(found) - set(listed))}'
    assert listed or not prefixes, f'{_rel(path)}: DELIBERATE lists differences it lacks'


def test_the_comparison_sees_changes():
    """``differences`` flags a changed value and a new key that is not the default; it
    accepts a new key with the default value of the class its dict builds."""
    model = dict(type='ALBEF', queue_size=65536)
    assert differences(dict(model=model), dict(model=dict(model, queue_size=1024))) == \
        ['model.queue_size']
    assert differences(dict(model=model), dict(model=dict(model, grad_checkpointing=True))) \
        == ['model.grad_checkpointing']
    assert differences(dict(model=model),
                       dict(model=dict(model, grad_checkpointing=False))) == []
    assert differences(dict(model=model), dict(model=model, compile=True)) == ['compile']
    assert differences(dict(custom_hooks=[]), dict()) == []


@pytest.mark.parametrize('path', CONFIG_FILES, ids=_rel)
def test_no_config_reads_another_file_by_hand(path):
    """Configs are layers of ``_base_`` files: no ``Config.fromfile`` and no
    ``{{ fileDirname }}`` inside a config."""
    text = path.read_text()
    assert 'Config.fromfile' not in text and 'fileDirname' not in text
    assert not re.search(r'^\s*(from|import)\s+mmengine', text, re.M)


def _named_configs(text: str, bare: bool = False):
    """``configs/...`` paths in a markdown text (and with ``bare``, every backquoted
    ``*.py`` name: the README's table names some configs without their folder), brace
    lists expanded (``blip2_stage2_{opt,flant5}.py``)."""
    names = set(re.findall(r'(?<![\w/])configs/[\w./{},-]*', text))
    if bare:
        names |= set(re.findall(r'`([\w.-]+\.py)`', text))
    out = set()
    for name in names:
        name = name.rstrip('.,')
        m = re.search(r'\{([^}]*)\}', name)
        parts = [name[:m.start()] + p + name[m.end():] for p in m.group(1).split(',')] \
            if m else [name]
        out |= {p for p in parts if not p.endswith('...')}
    return out


DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]


@pytest.mark.parametrize('doc', DOCS, ids=_rel)
def test_configs_named_in_readme_and_docs_exist(doc):
    missing = [name for name in sorted(_named_configs(doc.read_text()))
               if not (ROOT / name).exists()]
    assert not missing, f'{_rel(doc)} names configs that do not exist: {missing}'


def test_readme_configs_table_names_configs():
    """The README's "Configs" table (paper and demo config of every family)."""
    text = (ROOT / 'README.md').read_text()
    table = text.split('## Configs', 1)[1].split('\n\n', 2)[1]
    names = _named_configs(table, bare=True)
    assert len(names) >= 20
    for name in names:
        assert (ROOT / name).exists() if name.startswith('configs/') else \
            any(p.name == name for p in CONFIGS), name


if __name__ == '__main__':
    if sys.argv[1:] != ['--write']:
        sys.exit('usage: python tests/test_config_layers.py --write  (regenerates '
                 f'{_rel(SNAPSHOT)} from the configs as they are now)')
    write_snapshot()
