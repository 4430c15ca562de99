"""``--cfg-options`` and config values are checked before anything is built
(vlp/engine/config_check.py, wired into tools/train.py and tools/test.py)."""
import argparse
import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from vlp.engine.config_check import (CfgOptionsAction, ConfigError, accepted_arguments,
                                     check_cfg_options, check_cfg_values,
                                     check_options_and_merge, resolve_type, suggest)

ROOT = Path(__file__).resolve().parents[2]


def load_tool(name: str):
    """``tools/<name>.py`` as a module (as tests/tools/conftest.py's ``load_tool``)."""
    spec = importlib.util.spec_from_file_location(f'vlp_tools_{name}_cfg_check',
                                                  str(ROOT / 'tools' / f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)
CLIP_DEMO = str(ROOT / 'configs/clip/clip_tiny_demo.py')

train_tool = load_tool('train')
test_tool = load_tool('test')


@pytest.fixture(scope='module')
def clip_demo():
    return Config.fromfile(CLIP_DEMO)


def _options(*items):
    """``--cfg-options ITEMS`` as tools/train.py parses them."""
    return train_tool.parse_args([CLIP_DEMO, '--cfg-options', *items]).cfg_options


def _error(cfg, *items) -> str:
    with pytest.raises(ConfigError) as info:
        check_cfg_options(cfg, _options(*items))
    return str(info.value)


# -- the command line's form ---------------------------------------------------------------

@pytest.mark.parametrize('item', ['max_epochs', '=2', 'train_cfg..max_epochs=2'])
def test_option_without_key_value_form_is_a_usage_error(item, capsys):
    with pytest.raises(SystemExit) as info:
        train_tool.parse_args([CLIP_DEMO, '--cfg-options', 'train_cfg.max_epochs=2', item])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert ('--cfg-options expects key=value pairs (e.g. train_cfg.max_epochs=2), '
            f'got {item!r}') in err
    assert 'unpack' not in err


def test_action_parses_like_mmengine():
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    args = parser.parse_args(['--cfg-options', 'a.b=1', 'c=[1,2]', 'd=x=y', 'e=None'])
    assert args.cfg_options == {'a.b': 1, 'c': [1, 2], 'd': 'x=y', 'e': None}
    with pytest.raises(argparse.ArgumentError, match="got 'a.b'"):
        parser.parse_args(['--cfg-options', 'a.b'])


# -- keys nothing reads ----------------------------------------------------------------------

def test_top_level_variable_is_refused_with_the_key_that_holds_it(clip_demo):
    # the config's ``max_epochs = 15`` was substituted when the file was read
    err = _error(clip_demo, 'max_epochs=2')
    assert 'clip_tiny_demo.py' in err
    assert "max_epochs: 'max_epochs' is a variable of the config file" in err
    assert 'setting it changes nothing' in err
    assert 'did you mean train_cfg.max_epochs?' in err
    assert 'its value 15 is at' in err and 'param_scheduler.1.end' in err


def test_unknown_keys_are_all_listed_with_suggestions(clip_demo):
    err = _error(clip_demo, 'test_after_trian=False', 'train_cfg.max_epoch=3',
                 'model.grad_checkpoint=True', 'lr=0.1', 'train_cfg.max_epochs=2')
    assert err.startswith('--cfg-options: 4 bad key(s) for ')
    lines = err.splitlines()[1:]
    assert lines[0] == ('  test_after_trian: neither a key of the config nor one that the '
                        'runner or the tools read; did you mean test_after_train?')
    assert lines[1] == ("  train_cfg.max_epoch: 'EpochBasedTrainLoop' (train_cfg.type) "
                        "takes no argument 'max_epoch'; did you mean train_cfg.max_epochs?")
    assert lines[2].startswith("  model.grad_checkpoint: 'CLIP' (model.type) takes no "
                               "argument 'grad_checkpoint'; did you mean "
                               'model.grad_checkpointing')
    assert lines[3].endswith('did you mean optim_wrapper.optimizer.lr?')


def test_untyped_dicts_take_only_their_keys_or_their_readers(clip_demo):
    err = _error(clip_demo, 'env_cfg.dist_cfg.timeot=60', 'env_cfg.cudnn=True',
                 'model.itc.temprature=0.1', 'compile.mdoe=max-autotune')
    assert "env_cfg.dist_cfg has no key 'timeot'; did you mean env_cfg.dist_cfg.timeout" in err
    assert "env_cfg has no key 'cudnn'; did you mean env_cfg.cudnn_benchmark" in err
    assert "'ContrastiveLoss' (model.itc.type) takes no argument 'temprature'; did you mean " \
        'model.itc.temperature' in err
    assert "compile has no key 'mdoe'; did you mean compile.mode" in err


def test_new_registry_dicts_need_a_type_and_types_must_exist(clip_demo):
    err = _error(clip_demo, 'strategy.zero_optimization.stage=2')
    assert 'the config has no strategy: a new one needs its type too ' \
        '(e.g. strategy.type=DeepSpeedStrategy)' in err
    err = _error(clip_demo, 'default_hooks.checkpointt.interval=2')
    assert 'did you mean default_hooks.checkpoint.interval' in err
    err = _error(clip_demo, 'optim_wrapper.type=AmpOptimWrapperr')
    assert "no 'AmpOptimWrapperr' in vlp's registries" in err
    assert 'did you mean AmpOptimWrapper' in err
    # a type given with the option decides what the dict takes
    err = _error(clip_demo, 'optim_wrapper.loss_scale=dynamic')
    assert "'OptimWrapper' (optim_wrapper.type) takes no argument 'loss_scale'" in err
    check_cfg_options(clip_demo, _options('optim_wrapper.type=AmpOptimWrapper',
                                          'optim_wrapper.loss_scale=dynamic'))
    err = _error(clip_demo, 'strategy.type=DeepSpeedStrategy', 'strategy.zero_optimisation=2')
    assert "'DeepSpeedStrategy' (strategy.type) takes no argument 'zero_optimisation'; " \
        'did you mean strategy.zero_optimization' in err


def test_lists_and_non_dicts(clip_demo):
    err = _error(clip_demo, 'param_scheduler.5.end=3')
    assert 'param_scheduler is a list of 2 item(s): index it with 0..1' in err
    err = _error(clip_demo, 'optim_wrapper.optimizer.lr.value=1')
    assert 'optim_wrapper.optimizer.lr is 0.001 in the config, not a dict' in err
    check_cfg_options(clip_demo, _options('param_scheduler.0.end=5'))


def test_keys_something_reads_are_accepted(clip_demo):
    check_cfg_options(clip_demo, _options(
        'model.grad_checkpointing=True',  # CLIP's argument, not in the config
        'strategy.type=DeepSpeedStrategy', 'strategy.zero_optimization.stage=2',
        'optim_wrapper.optimizer.lr=1e-4',
        'env_cfg.dist_cfg.timeout=60',  # init_process_group's
        'train_dataloader.prefetch_factor=4',  # torch's DataLoader's
        'train_dataloader.dataset.noise=0.1',
        'default_hooks.rng_state=None', 'default_hooks.ema.type=EMAHook',
        'experiment_name=x', 'find_unused_parameters=True', 'compile.backend=eager',
        'custom_imports.imports=[json]'))


def test_options_of_the_engine_tests_are_accepted(tmp_path):
    """The options tests/tools and tests/engine pass to tools/train.py and tools/test.py
    on the toy experiment (tests/engine/vlp_toy.py)."""
    import vlp_toy
    base = vlp_toy.write_toy_config(str(tmp_path / 'toy.py'))
    ds = vlp_toy.prepare_config(base, str(tmp_path / 'ds.py'), max_iters=2, deepspeed_stage=2)
    args = train_tool.parse_args([ds, '--amp', '--cfg-options', 'train_cfg.max_iters=5',
                                  'model.drop=0.5', 'strategy.fp16.enabled=True',
                                  'strategy.zero_optimization.stage=3',
                                  'train_dataloader.batch_size=4', 'default_hooks.rng_state=None',
                                  'compile.backend=eager', 'experiment_name=x',
                                  'train_dataloader.dataset.augment=True',
                                  'train_dataloader.dataset.num=32'])
    cfg = train_tool.merge_args(Config.fromfile(ds), args)
    check_cfg_values(cfg, args.cfg_options)
    assert cfg.model.drop == 0.5 and cfg.strategy.zero_optimization.stage == 3


def test_registry_walk_follows_kwargs_to_the_parent_init():
    amp = accepted_arguments(resolve_type('AmpOptimWrapper')[0])
    # vlp's AmpOptimWrapper -> mmengine's AmpOptimWrapper -> OptimWrapper, via **kwargs
    assert {'loss_scale', 'dtype', 'optimizer', 'clip_grad', 'accumulative_counts'} <= amp
    assert 'lr' not in amp

    class Keeps:
        def __init__(self, a, **kwargs):
            self.extra = kwargs

    class Passes(Keeps):
        def __init__(self, b=1, **kw):
            super().__init__(
                a=0, **kw)

    assert accepted_arguments(Keeps) is None  # kwargs used some other way: anything goes
    assert accepted_arguments(Passes) is None

    class Plain:
        def __init__(self, a, b=2):
            pass

    class Child(Plain):
        def __init__(self, c, **kwargs):
            super().__init__(**kwargs)

    assert accepted_arguments(Child) == {'a', 'b', 'c'}


def test_suggestions_prefer_the_same_last_component():
    paths = ['train_cfg.max_epochs', 'train_cfg.val_interval', 'max_iters', 'model.type']
    assert suggest('max_epochs', paths)[0] == 'train_cfg.max_epochs'
    assert suggest('train_cfg.max_epoch', paths) == ['train_cfg.max_epochs']
    assert suggest('zzz', paths) == []


def test_custom_imports_given_as_option_are_imported(clip_demo, tmp_path, monkeypatch):
    (tmp_path / 'vlp_cfg_check_plugin.py').write_text('LOADED = True\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = clip_demo.copy()
    check_options_and_merge(cfg, {'custom_imports.imports': ['vlp_cfg_check_plugin']})
    assert sys.modules['vlp_cfg_check_plugin'].LOADED


# -- documented examples ---------------------------------------------------------------------

# (doc, the example as written there, the config it is written for, the options it means)
DOCUMENTED = [
    ('README.md', 'strategy.type=DeepSpeedStrategy strategy.zero_optimization.stage=2',
     'clip/clip_tiny_demo.py', None),
    ('README.md', 'model.grad_checkpointing=True', 'clip/clip_tiny_demo.py', None),
    ('docs/get_started.md',
     'strategy.type=DeepSpeedStrategy strategy.zero_optimization.stage=3',
     'clip/clip_tiny_demo.py', None),
    ('docs/configs.md', 'compile=True train_cfg.max_epochs=1', 'clip/clip_tiny_demo.py',
     None),
    # a config that has a strategy (on one without, strategy.type is needed too)
    ('docs/configs.md', 'train_dataloader.batch_size=64 strategy.zero_optimization.stage=3',
     'clip/clip_vit-b16_base.py', None),
    ('docs/benchmarks.md', 'model.stage=image_text', 'vlmo/vlmo_tiny_demo.py', None),
    ('docs/benchmarks.md', 'model.tokenizer.vocab_file=<vocab>', 'blip/blip_base.py',
     'model.tokenizer.vocab_file=vocab.txt'),
    ('docs/benchmarks.md', 'model.tokenizer.vocab_file=<vocab> [model.stage=image_text]',
     'vlmo/vlmo_base.py', 'model.tokenizer.vocab_file=vocab.txt model.stage=image_text'),
    ('docs/benchmarks.md', 'model.tokenizer.vocab_file=<any', 'albef/albef_base.py',
     'model.tokenizer.vocab_file=vocab.txt'),
    ('docs/models.md', 'model.stage1.checkpoint=...', 'blip2/blip2_stage2_tiny_demo.py',
     'model.stage1.checkpoint=stage1.pth'),
    ('docs/models.md', 'model.predict_mode=retrieval test_evaluator.type=RetrievalMetric',
     'coca/coca_tiny_demo.py', None),
    ('docs/demos.md', 'randomness.seed=S randomness.deterministic=True',
     'clip/clip_tiny_demo.py', 'randomness.seed=1 randomness.deterministic=True'),
    ('docs/demos.md', 'test_evaluator.k=2', 'vlmo/vlmo_tiny_demo.py', None),
    ('docs/demos.md', 'model.rerank_itc=True', 'vlmo/vlmo_tiny_demo.py', None),
    ('docs/demos.md', 'train_cfg.max_iters=3040 train_cfg.val_interval=3040 param_scheduler.2.end=3040',
     'vlmo/vlmo_tiny_demo.py', None),
    # the VLMo micro run of docs/demos.md (its lines joined by the backslashes)
    ('docs/demos.md', 'train_cfg.max_iters=8 train_cfg.val_interval=8 custom_hooks.0.stages.1.begin=2 \\ custom_hooks.0.stages.2.begin=4 custom_hooks.1.iters=6 default_hooks.checkpoint.interval=8 \\ train_dataloader.dataset.num_images=64 train_dataloader.batch_size=8 \\ train_dataloader.num_workers=0 train_dataloader.persistent_workers=False \\ val_dataloader.dataset.num_images=20 val_dataloader.num_workers=0 val_dataloader.persistent_workers=False \\ test_dataloader.dataset.num_images=20 test_dataloader.num_workers=0 test_dataloader.persistent_workers=False',
     'vlmo/vlmo_tiny_demo.py', 'train_cfg.max_iters=8 train_cfg.val_interval=8 custom_hooks.0.stages.1.begin=2 custom_hooks.0.stages.2.begin=4 custom_hooks.1.iters=6 default_hooks.checkpoint.interval=8 train_dataloader.dataset.num_images=64 train_dataloader.batch_size=8 train_dataloader.num_workers=0 train_dataloader.persistent_workers=False val_dataloader.dataset.num_images=20 val_dataloader.num_workers=0 val_dataloader.persistent_workers=False test_dataloader.dataset.num_images=20 test_dataloader.num_workers=0 test_dataloader.persistent_workers=False'),
]


def _squash(text):
    return re.sub(r'\s+', ' ', text)


@pytest.mark.parametrize('doc,example,config,meant', DOCUMENTED, ids=lambda x: str(x)[:40])
def test_documented_options_are_accepted(doc, example, config, meant):
    assert example in _squash((ROOT / doc).read_text()), f'{doc} no longer shows {example}'
    cfg = Config.fromfile(str(ROOT / 'configs' / config))
    args = train_tool.parse_args([str(ROOT / 'configs' / config), '--cfg-options',
                                  *(meant or example).split()])
    check_cfg_options(cfg, args.cfg_options)
    cfg.merge_from_dict(args.cfg_options)
    check_cfg_values(cfg, args.cfg_options)


# tools/capfilt.py's options (its configs hold stages, not a runner; checked by the tool's
# own check_capfilt_options, tests/tools/test_capfilt.py)
CAPFILT_DOCUMENTED = [('docs/capfilt.md', 'stages.1.threshold=0.6',
                       'capfilt/capfilt_blip_rule.py')]


def test_capfilt_documented_options_are_checked():
    import importlib.util
    spec = importlib.util.spec_from_file_location('capfilt_tool', ROOT / 'tools' / 'capfilt.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for doc, example, config in CAPFILT_DOCUMENTED:
        assert f'--cfg-options {example}' in (ROOT / doc).read_text(), (doc, example)
        path = str(ROOT / 'configs' / config)
        options = dict(kv.split('=', 1) for kv in example.split())
        tool.check_capfilt_options(Config.fromfile(path), path, options)
        with pytest.raises(ValueError, match='did you mean stages.1.threshold'):
            tool.check_capfilt_options(Config.fromfile(path), path,
                                       {'stage.1.threshold': '0.6'})


def test_every_documented_option_is_in_the_table():
    covered = {}
    for doc, example, *_ in DOCUMENTED + CAPFILT_DOCUMENTED:
        covered.setdefault(doc, set()).update(
            re.findall(r'([a-z_][\w.]*)=', example))
    for doc in ['README.md'] + sorted(str(p.relative_to(ROOT)) for p in
                                      (ROOT / 'docs').glob('*.md')):
        text = (ROOT / doc).read_text()
        for m in re.finditer(r'--cfg-options((?:\s*\\?\s*\[?[a-z_][\w.]*=[^\s`|]+)+)', text):
            keys = set(re.findall(r'([a-z_][\w.]*)=', m.group(1))) - {'k', 'key'}
            assert keys <= covered.get(doc, set()), (doc, m.group(0))


# -- values ------------------------------------------------------------------------------------

@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_config_values_pass_and_types_resolve(path):
    cfg = Config.fromfile(str(path))
    check_cfg_values(cfg)

    def types(x, where=''):
        if isinstance(x, dict):
            if isinstance(x.get('type'), str):
                yield where, x['type']
            for k, v in x.items():
                yield from types(v, f'{where}.{k}')
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                yield from types(v, f'{where}.{i}')
    # every type= resolves in the registries, so its arguments can be checked
    unresolved = [(w, t) for w, t in types(cfg.to_dict()) if not resolve_type(t)]
    assert not unresolved


def test_impossible_values_are_all_listed(clip_demo):
    cfg = clip_demo.copy()
    options = _options('train_cfg.max_epochs=-1', 'train_cfg.val_interval=0',
                       'train_dataloader.batch_size=0', 'val_dataloader.num_workers=-2',
                       'optim_wrapper.optimizer.lr=nan', 'test_dataloader.batch_size=2.5')
    check_cfg_options(cfg, options)
    cfg.merge_from_dict(options)
    with pytest.raises(ConfigError) as info:
        check_cfg_values(cfg, options)
    lines = str(info.value).splitlines()
    assert lines[0] == '6 impossible value(s):'
    assert lines[1] == ('  train_cfg.max_epochs=-1 (set by --cfg-options): must be a whole '
                        'number > 0 (the number of epochs to train)')
    assert lines[2].startswith('  train_cfg.val_interval=0 (set by --cfg-options)')
    assert lines[3].startswith('  train_dataloader.batch_size=0 (set by --cfg-options)')
    assert lines[4].startswith('  val_dataloader.num_workers=-2 (set by --cfg-options): '
                               'must be a whole number >= 0')
    assert lines[5].startswith('  test_dataloader.batch_size=2.5')
    assert lines[6].startswith('  optim_wrapper.optimizer.lr=nan (set by --cfg-options): '
                               'a learning rate must be a finite number >= 0')
    assert math.isnan(cfg.optim_wrapper.optimizer.lr)


def test_bad_value_in_the_file_names_the_file(tmp_path):
    path = tmp_path / 'bad.py'
    path.write_text(f"_base_ = [{CLIP_DEMO!r}]\ntrain_cfg = dict(max_epochs=0)\n"
                    "optim_wrapper = dict(optimizer=dict(lr=-1e-3))\n")
    with pytest.raises(ConfigError) as info:
        check_cfg_values(Config.fromfile(str(path)))
    assert f'train_cfg.max_epochs=0 (in {path})' in str(info.value)
    assert f'optim_wrapper.optimizer.lr=-0.001 (in {path})' in str(info.value)


# -- end to end: tools/train.py and tools/test.py stop before building anything ----------------

@pytest.fixture
def nothing_built(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError('the runner / model was built despite a bad option')
    for tool in (train_tool, test_tool):
        monkeypatch.setattr(tool, 'prepare_launch', fail)
        monkeypatch.setattr(tool, 'build_runner', fail)


@pytest.mark.parametrize('option,message', [
    ('max_epochs=2', 'did you mean train_cfg.max_epochs?'),
    ('test_after_trian=False', 'did you mean test_after_train?'),
    ('train_cfg.max_epochs=-1', 'train_cfg.max_epochs=-1 (set by --cfg-options)'),
    ('train_dataloader.batch_size=0', 'train_dataloader.batch_size=0 (set by --cfg-options)'),
])
def test_train_tool_exits_before_building(option, message, nothing_built, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        train_tool.main([CLIP_DEMO, '--work-dir', str(tmp_path), '--cfg-options', option])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('train.py: error: ') and message in err
    assert 'Traceback' not in err


def test_test_tool_exits_before_building(nothing_built, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        test_tool.main([CLIP_DEMO, str(tmp_path / 'x.pth'), '--cfg-options',
                        'test_dataloader.batch_size=0', 'test_evaluator.topkk=5'])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('test.py: error: --cfg-options: 1 bad key(s)')
    assert "'RetrievalMetric' (test_evaluator.type) takes no argument 'topkk'" in err
