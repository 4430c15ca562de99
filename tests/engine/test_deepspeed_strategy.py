"""vlp's device-aware DeepSpeedStrategy in one process (world size 1, CPU/gloo here):
ZeRO 0-3 x fp32/bf16 train and resume, weights-only DeepSpeed checkpoints, fp16 refusal on
CPU, gradient clipping and accumulation, activation checkpointing, evaluation from
DeepSpeed directories and weight files. Multi-rank runs: tests/tools/test_dist_deepspeed.py.
"""
import os.path as osp
import pickle

import pytest
import torch
from deepspeed.accelerator import get_accelerator
from mmengine.registry import init_default_scope

import vlp_toy
from vlp.engine.checkpoint import safe_load
from vlp.engine.strategies import DeepSpeedStrategy
from vlp.engine.strategies.deepspeed import WeightsOnlyCheckpointEngine
from vlp.registry import STRATEGIES


@pytest.fixture(scope='module', autouse=True)
def one_process_group():
    yield
    vlp_toy.reset_process_group()


@pytest.fixture(scope='module')
def toy_base(tmp_path_factory):
    return vlp_toy.write_toy_config(str(tmp_path_factory.mktemp('base') / 'toy.py'))


class _Evil:
    def __reduce__(self):
        return (print, ('arbitrary code ran',))


def _hook(runner, cls_name):
    return next(h for h in runner.hooks if type(h).__name__ == cls_name)


def test_registry_gives_vlp_strategy(tmp_path):
    init_default_scope('vlp')
    assert STRATEGIES.get('DeepSpeedStrategy') is DeepSpeedStrategy


@pytest.mark.parametrize('bf16', [False, True], ids=['fp32', 'bf16'])
@pytest.mark.parametrize('stage', [0, 1, 2, 3])
def test_zero_stages_train_and_resume(tmp_path, toy_base, stage, bf16):
    cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / 'run.py'), max_iters=4,
                                 ckpt_interval=2, deepspeed_stage=stage, bf16=bf16,
                                 options={'custom_hooks': [dict(type='LossRecorderHook'),
                                                           dict(type='ParamDeltaHook')]})
    runner = vlp_toy.train_in_process(cfg, str(tmp_path / 'full'))
    assert isinstance(runner.strategy, DeepSpeedStrategy)
    engine = runner.model.model
    assert engine.zero_optimization_stage() == stage
    assert engine.gradient_clipping() == 1.0  # from optim_wrapper.clip_grad
    assert isinstance(engine.checkpoint_engine, WeightsOnlyCheckpointEngine)
    delta = _hook(runner, 'ParamDeltaHook')
    assert delta.delta_norm > 0
    assert delta.dtypes == ({torch.bfloat16} if bf16 else {torch.float32})
    full = vlp_toy.read_losses(str(tmp_path / 'full'))
    assert all(torch.isfinite(torch.tensor(v)) for v in full.values())

    vlp_toy.copy_checkpoint(str(tmp_path / 'full' / 'iter_2.pth'), str(tmp_path / 'resumed'))
    vlp_toy.train_in_process(cfg, str(tmp_path / 'resumed'), resume='auto')
    resumed = vlp_toy.read_losses(str(tmp_path / 'resumed'))
    assert sorted(resumed) == [2, 3]
    for i in resumed:
        assert resumed[i] == pytest.approx(full[i], abs=1e-6), (full, resumed)


def test_deepspeed_checkpoints_are_read_weights_only(tmp_path, toy_base):
    cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / 'run.py'), max_iters=2,
                                 ckpt_interval=2, deepspeed_stage=2)
    vlp_toy.train_in_process(cfg, str(tmp_path / 'full'))
    ckpt_dir = tmp_path / 'full' / 'iter_2.pth'
    states = ckpt_dir / 'mp_rank_00_model_states.pt'
    # DeepSpeed's files hold mmengine and DeepSpeed objects: the allow-list is needed
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(states), weights_only=True)
    state = safe_load(str(states),
                      extra_safe_globals=WeightsOnlyCheckpointEngine().extra_safe_globals)
    state['message_hub'] = _Evil()
    torch.save(state, str(states))  # a tampered checkpoint
    vlp_toy.copy_checkpoint(str(ckpt_dir), str(tmp_path / 'resumed'))
    with pytest.raises(pickle.UnpicklingError):
        vlp_toy.train_in_process(cfg, str(tmp_path / 'resumed'), resume='auto')


@pytest.mark.skipif(get_accelerator().is_fp16_supported(), reason='device supports fp16')
def test_fp16_unsupported_device_raises(tmp_path, toy_base):
    cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / 'run.py'), deepspeed_stage=2,
                                 options={'strategy.fp16': dict(enabled=True)})
    with pytest.raises(ValueError, match='fp16 is not supported'):
        vlp_toy.train_in_process(cfg, str(tmp_path / 'work'))


@pytest.mark.skipif(not get_accelerator().is_fp16_supported(), reason='no fp16 here')
def test_fp16_trains_where_supported(tmp_path, toy_base):
    cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / 'run.py'), max_iters=3,
                                 ckpt_interval=3, deepspeed_stage=2,
                                 options={'strategy.fp16': dict(enabled=True),
                                          'custom_hooks': [dict(type='LossRecorderHook'),
                                                           dict(type='ParamDeltaHook')]})
    runner = vlp_toy.train_in_process(cfg, str(tmp_path / 'work'))
    assert _hook(runner, 'ParamDeltaHook').dtypes == {torch.float16}
    assert all(torch.isfinite(torch.tensor(v))
               for v in vlp_toy.read_losses(str(tmp_path / 'work')).values())


@pytest.mark.parametrize('stage', [0, 2])
def test_gradient_clipping_bounds_the_update(tmp_path, toy_base, stage):
    """SGD with lr=1 moves the weights by exactly the (clipped) gradient."""
    options = {
        'optim_wrapper': dict(optimizer=dict(type='SGD', lr=1.0, weight_decay=0.0),
                              clip_grad=dict(max_norm=1e-3)),
        'param_scheduler': None,
        'strategy.config': dict(zero_allow_untested_optimizer=True),
        'custom_hooks': [dict(type='ParamDeltaHook')],
    }
    cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / 'run.py'), max_iters=1,
                                 deepspeed_stage=stage, options=options)
    runner = vlp_toy.train_in_process(cfg, str(tmp_path / 'work'))
    delta = _hook(runner, 'ParamDeltaHook').delta_norm
    assert 0 < delta <= 1e-3 * 1.001
    if stage > 0:  # DeepSpeed reports no norm for fp32 stage 0
        assert runner.message_hub.get_scalar('train/grad_norm').current() > 1e-2  # clipped


@pytest.mark.parametrize('how', ['strategy', 'optim_wrapper'])
def test_gradient_accumulation_steps(tmp_path, toy_base, how):
    options = ({'strategy.gradient_accumulation_steps': 2} if how == 'strategy' else
               {'optim_wrapper.accumulative_counts': 2})
    cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / 'run.py'), max_iters=6,
                                 ckpt_interval=6, deepspeed_stage=2, options=options)
    runner = vlp_toy.train_in_process(cfg, str(tmp_path / 'work'))
    engine = runner.model.model
    assert engine.gradient_accumulation_steps() == 2
    assert engine.micro_steps == 6 and engine.global_steps == 3  # one step per 2 batches
    assert engine.train_batch_size() == 16  # micro batch 8 x 2 x 1 rank


def test_activation_checkpointing_needs_no_deepspeed_config(tmp_path, toy_base):
    losses = {}
    for flag in (False, True):
        cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / f'run{flag}.py'), max_iters=3,
                                     ckpt_interval=3, deepspeed_stage=3,
                                     options={'model.grad_checkpointing': flag})
        runner = vlp_toy.train_in_process(cfg, str(tmp_path / f'work{flag}'))
        assert 'activation_checkpointing' not in runner.strategy.config
        losses[flag] = vlp_toy.read_losses(str(tmp_path / f'work{flag}'))
    assert losses[True] == pytest.approx(losses[False], abs=1e-6)


def test_evaluate_deepspeed_dirs_and_weight_file(tmp_path, toy_base):
    """tools/test.py: DeepSpeed checkpoint directories of ZeRO-2 (evaluated at stage 0) and
    ZeRO-3 runs (the two runs train the same weights), the same weights as a .pth under
    mmengine's Runner and under a ZeRO-3 engine all give the same metrics; untrained
    weights do not."""
    metrics, dirs = {}, {}
    for stage in (2, 3):
        cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / f'z{stage}.py'), max_iters=4,
                                     ckpt_interval=4, deepspeed_stage=stage)
        vlp_toy.train_in_process(cfg, str(tmp_path / f'train{stage}'))
        dirs[stage] = str(tmp_path / f'train{stage}' / 'iter_4.pth')
        metrics[f'dir{stage}'] = vlp_toy.test_in_process(cfg, dirs[stage],
                                                         str(tmp_path / f'test_dir{stage}'))

    states = safe_load(osp.join(dirs[2], 'mp_rank_00_model_states.pt'),
                       extra_safe_globals=WeightsOnlyCheckpointEngine().extra_safe_globals)
    weights = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict=states['module']), weights)
    plain_cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / 'plain.py'))
    metrics['file'] = vlp_toy.test_in_process(plain_cfg, weights, str(tmp_path / 'test_file'))
    metrics['file_z3'] = vlp_toy.test_in_process(str(tmp_path / 'z3.py'), weights,
                                                 str(tmp_path / 'test_z3'))
    torch.manual_seed(123)
    untrained_weights = str(tmp_path / 'untrained.pth')
    torch.save(dict(state_dict=vlp_toy.ToyContrastive().state_dict()), untrained_weights)
    untrained = vlp_toy.test_in_process(plain_cfg, untrained_weights, str(tmp_path / 'test_0'))

    reference = metrics['file']['toy/pos_sim']
    for name, value in metrics.items():
        assert value['toy/pos_sim'] == pytest.approx(reference, abs=1e-5), (name, metrics)
    assert abs(untrained['toy/pos_sim'] - reference) > 1e-3


@pytest.mark.parametrize('stage', [None, 2])
def test_fused_adamw_trains(tmp_path, toy_base, stage):
    """The paper configs ask for torch's fused AdamW: it trains under mmengine's Runner
    and under ZeRO-2 (DeepSpeed wraps the torch optimizer) on a CPU."""
    cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / 'run.py'), max_iters=3,
                                 ckpt_interval=3, deepspeed_stage=stage,
                                 options={'optim_wrapper.optimizer.fused': True,
                                          'custom_hooks': [dict(type='LossRecorderHook'),
                                                           dict(type='ParamDeltaHook')]})
    runner = vlp_toy.train_in_process(cfg, str(tmp_path / 'work'))
    opt = runner.optim_wrapper.optimizer
    inner = getattr(opt, 'optimizer', opt)  # ZeRO wraps the torch optimizer
    assert inner.defaults['fused'] is True
    assert _hook(runner, 'ParamDeltaHook').delta_norm > 0
    assert all(torch.isfinite(torch.tensor(v))
               for v in vlp_toy.read_losses(str(tmp_path / 'work')).values())


def test_compat_patches_check_what_they_patch(monkeypatch):
    """deepspeed_compat patches private DeepSpeed methods: with the checked versions there is
    no problem; a method that is gone or takes other arguments is named; other versions warn."""
    import deepspeed
    from deepspeed.runtime.engine import DeepSpeedEngine

    from vlp.engine.strategies import deepspeed_compat as compat
    assert compat.check_versions() == []
    monkeypatch.setattr(deepspeed, '__version__', '0.99.0')
    with pytest.warns(UserWarning, match="installed {'deepspeed': '0.99.0'}"):
        assert compat.check_versions() == []
    monkeypatch.delattr(DeepSpeedEngine, 'clip_fp32_gradients')
    problems = compat.check_versions()
    assert problems and 'DeepSpeedEngine.clip_fp32_gradients no longer exists' in problems[0]
    with pytest.raises(RuntimeError, match='cannot patch this DeepSpeed'):
        compat.apply()
