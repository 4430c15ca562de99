"""tools/train.py and tools/test.py command lines (in this process, no launcher)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import vlp_toy
from vlp.engine.launch import prepare_launch
from conftest import load_tool  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


train_tool = load_tool('train')


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cfg')
    base = vlp_toy.write_toy_config(str(tmp / 'toy.py'))
    plain = vlp_toy.prepare_config(base, str(tmp / 'plain.py'), max_iters=2, ckpt_interval=2)
    ds = vlp_toy.prepare_config(base, str(tmp / 'ds.py'), max_iters=2, deepspeed_stage=2)
    return plain, ds


def _cfg(argv):
    args = train_tool.parse_args(argv)
    return train_tool.merge_args(Config.fromfile(args.config), args)


def test_work_dir_and_resume_arguments(configs, tmp_path):
    plain, _ = configs
    cfg = _cfg([plain])
    assert cfg.work_dir == osp.join('./work_dirs', 'plain') and cfg.launcher == 'none'
    assert not cfg.resume and cfg.load_from is None
    # --resume alone: the newest complete checkpoint of the work dir, none -> from the start
    work = tmp_path / 'w'
    cfg = _cfg([plain, '--resume', '--work-dir', str(work)])
    assert cfg.resume is False and cfg.load_from is None and cfg.work_dir == str(work)
    work.mkdir()
    torch.save({'state_dict': {}}, work / 'iter_4.pth')
    (work / 'last_checkpoint').write_text(str(work / 'iter_4.pth'))
    cfg = _cfg([plain, '--resume', '--work-dir', str(work)])
    assert cfg.resume is True and cfg.load_from == str(work / 'iter_4.pth')
    cfg = _cfg([plain, '--resume', str(work / 'iter_4.pth')])
    assert cfg.resume is True and cfg.load_from == str(work / 'iter_4.pth')
    with pytest.raises(FileNotFoundError, match='cannot resume from it'):
        _cfg([plain, '--resume', 'some/iter_4.pth'])
    cfg = _cfg([plain, '--cfg-options', 'train_cfg.max_iters=5', 'model.drop=0.5'])
    assert cfg.train_cfg.max_iters == 5 and cfg.model.drop == 0.5


def test_amp_switches(configs):
    plain, ds = configs
    assert _cfg([plain, '--amp']).optim_wrapper.type == 'AmpOptimWrapper'
    assert _cfg([ds, '--amp']).strategy.bf16 == dict(enabled=True)
    fp16 = _cfg([ds, '--amp', '--cfg-options', 'strategy.fp16.enabled=True'])
    assert 'bf16' not in fp16.strategy


def test_device_aware_backend_and_hook_switch(configs):
    plain, _ = configs
    cfg = _cfg([plain, '--cfg-options', 'default_hooks.rng_state=None'])
    prepare_launch(cfg)
    expected = 'nccl' if torch.cuda.is_available() else 'gloo'
    assert cfg.env_cfg.dist_cfg.backend == expected
    assert 'rng_state' not in cfg.default_hooks


def test_train_with_amp_then_test(configs, tmp_path):
    plain, _ = configs
    work = str(tmp_path / 'work')
    runner = train_tool.main([plain, '--amp', '--work-dir', work, '--cfg-options',
                              'experiment_name=amp_run'])
    assert type(runner.optim_wrapper).__name__ == 'AmpOptimWrapper'
    if not torch.cuda.is_available():
        assert runner.optim_wrapper.cast_dtype is torch.bfloat16
    losses = vlp_toy.read_losses(work)
    assert sorted(losses) == [0, 1] and all(torch.isfinite(torch.tensor(v))
                                           for v in losses.values())
    metrics = vlp_toy.test_in_process(plain, osp.join(work, 'iter_2.pth'),
                                      str(tmp_path / 'test'))
    assert set(metrics) >= {'toy/i2t_r1', 'toy/pos_sim'}


def test_compile_compiles_the_forward_not_the_train_step(configs, tmp_path):
    """``compile=...`` in a config becomes vlp's CompileHook (mmengine's compile of the
    whole train_step fails in the optimizer step); the eager backend keeps this fast."""
    plain, _ = configs
    cfg = _cfg([plain, '--cfg-options', 'compile.backend=eager'])
    prepare_launch(cfg)
    assert not cfg.compile
    assert [h for h in cfg.custom_hooks if h['type'] == 'CompileHook'] == [
        dict(type='CompileHook', options=dict(backend='eager'))]
    work = str(tmp_path / 'work')
    runner = train_tool.main([plain, '--work-dir', work, '--cfg-options',
                              'compile.backend=eager'])
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    assert model._vlp_compiled and 'forward' in vars(model)  # the instance's forward
    losses = vlp_toy.read_losses(work)
    assert sorted(losses) == [0, 1] and all(torch.isfinite(torch.tensor(v))
                                           for v in losses.values())


def test_test_metrics_are_dumped_by_the_main_process_only(configs, tmp_path, monkeypatch):
    """mmengine's LoggerHook dumps the test metrics on every rank into one file (two ranks
    of dist_test.sh corrupted it); vlp's LoggerHook, which vlp configs resolve to, lets
    the main process alone write it."""
    import vlp.engine.hooks.logger as logger_mod
    plain, _ = configs
    work = str(tmp_path / 'work')
    runner = train_tool.main([plain, '--work-dir', work])
    hook = [h for h in runner.hooks if type(h).__name__ == 'LoggerHook']
    assert len(hook) == 1 and type(hook[0]) is logger_mod.LoggerHook
    calls = []
    monkeypatch.setattr(logger_mod.MMLoggerHook, 'after_test_epoch',
                        lambda self, runner, metrics=None: calls.append(metrics))
    monkeypatch.setattr(logger_mod, 'is_main_process', lambda: False)
    hook[0].after_test_epoch(runner, {'m': 1.0})
    assert calls == []
    monkeypatch.setattr(logger_mod, 'is_main_process', lambda: True)
    hook[0].after_test_epoch(runner, {'m': 1.0})
    assert calls == [{'m': 1.0}]
