"""vlp's AmpOptimWrapper: mmengine's on accelerators, bfloat16 autocast on CPU."""
import pytest
import torch
import torch.nn as nn
from mmengine.optim import AmpOptimWrapper as MMAmpOptimWrapper
from mmengine.registry import init_default_scope

from vlp.engine.optim import AmpOptimWrapper
from vlp.engine.optim.amp import accelerator_available
from vlp.registry import OPTIM_WRAPPERS

cpu_only = pytest.mark.skipif(accelerator_available(), reason='CPU behaviour')


def _build(**kwargs):
    model = nn.Linear(4, 3)
    init_default_scope('vlp')
    wrapper = OPTIM_WRAPPERS.build(dict(type='AmpOptimWrapper',
                                        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                        **kwargs))
    return model, wrapper


def test_registered_under_mmengine_name():
    assert OPTIM_WRAPPERS.get('AmpOptimWrapper') is AmpOptimWrapper
    assert issubclass(AmpOptimWrapper, MMAmpOptimWrapper)


@cpu_only
@pytest.mark.parametrize('dtype', [None, 'bfloat16', torch.bfloat16])
def test_cpu_bf16_autocast_step(dtype):
    model, wrapper = _build(dtype=dtype, clip_grad=dict(max_norm=1.0))
    assert wrapper.cast_dtype is torch.bfloat16
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        out = model(torch.randn(5, 4))
        assert out.dtype is torch.bfloat16  # the matmul ran in bf16
    assert not torch.is_autocast_enabled('cpu')
    wrapper.update_params(out.float().pow(2).mean())
    assert model.weight.dtype is torch.float32  # fp32 master weights
    assert not torch.equal(model.weight, before)
    state = wrapper.state_dict()
    wrapper.load_state_dict(state)  # loss scaler state round-trips


@cpu_only
def test_cpu_float16_is_refused():
    with pytest.raises(ValueError, match='bfloat16 only'):
        _build(dtype='float16')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_is_mmengine_amp():
    """On CUDA the wrapper is mmengine's: float16 autocast with a live loss scaler."""
    model = nn.Linear(4, 3).cuda()
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert wrapper.loss_scaler.is_enabled()
    with wrapper.optim_context(model):
        out = model(torch.randn(5, 4, device='cuda'))
    assert out.dtype is torch.float16
    wrapper.update_params(out.float().pow(2).mean())
