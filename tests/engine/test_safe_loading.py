"""No code runs on load, in any route.

A hostile pickle (an object whose ``__reduce__`` creates a marker directory) is planted in a
plain ``.pth`` state dict, an mmengine-style checkpoint, real DeepSpeed ZeRO-2 (fp32) and
ZeRO-3 (bf16) checkpoint directories -- in their model-states files and in the
``*_optim_states.pt`` partitions DeepSpeed's ``zero_to_fp32`` reads -- a HF
``save_pretrained`` directory and a TorchScript archive whose ``__setstate__`` creates a
file. Every route that reads checkpoints is tried: ``tools/test.py``, ``init_model``,
``load_weights``, ``--resume`` and ``load_from`` through ``tools/train.py``, the parts'
``pretrained`` / ``checkpoint`` arguments and every converter with default options. Each
must refuse the file (``UnsafeCheckpointError``, naming it and the opt-out where there is
one) and the marker must not exist afterwards. The clean directories load, through the
same weights-only reader, to the weights the runs trained.
"""
import importlib.util
import json
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys
import uuid

import pytest
import torch

import vlp_toy
from vlp.apis import init_model, load_weights
from vlp.engine import checkpoint as ckpt_mod
from vlp.engine.checkpoint import UnsafeCheckpointError, deepspeed_safe_globals, safe_load

REPO = vlp_toy.REPO
REFUSED = 'objects other than weights'
OPT_OUT = '--no-weights-only'


class Payload:
    """Unpickling this creates the directory ``marker`` (``os.mkdir``)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(
        'vlp_safe_tools_' + name.replace('/', '_'), osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module', autouse=True)
def one_process_group():
    yield
    vlp_toy.reset_process_group()


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Configs (plain Runner, ZeRO-2 fp32, ZeRO-3 bf16), one clean DeepSpeed checkpoint
    directory per stage (1 iteration) and the weights each run ended with."""
    tmp = tmp_path_factory.mktemp('runs')
    base = vlp_toy.write_toy_config(str(tmp / 'toy.py'))
    record = {'custom_hooks': [dict(type='ModelStateRecorderHook')]}
    out = dict(plain=vlp_toy.prepare_config(base, str(tmp / 'plain.py'), max_iters=1,
                                            ckpt_interval=1))
    linear = torch.nn.functional.linear  # ZeRO-3 may leave its own in place
    for name, stage, bf16 in (('zero2', 2, False), ('zero3', 3, True)):
        cfg = vlp_toy.prepare_config(base, str(tmp / f'{name}.py'), max_iters=1,
                                     ckpt_interval=1, deepspeed_stage=stage, bf16=bf16,
                                     options=record)
        try:
            vlp_toy.train_in_process(cfg, str(tmp / name))
        finally:
            torch.nn.functional.linear = linear
        out[name] = cfg
        out[f'{name}_dir'] = str(tmp / name / 'iter_1.pth')
        out[f'{name}_state'] = torch.load(str(tmp / name / 'model_state_rank0.pt'),
                                          weights_only=True)
    return out


@pytest.fixture
def marker(tmp_path):
    path = str(tmp_path / 'code_ran')
    yield path
    assert not osp.exists(path), 'unpickling ran code from the checkpoint'


def _toy_state():
    torch.manual_seed(0)
    return vlp_toy.ToyContrastive().state_dict()


def _plant(path: str, marker: str, key: str = 'evil') -> str:
    """Add a hostile entry to the (trusted) checkpoint file ``path``."""
    state = safe_load(path, map_location='cpu', extra_safe_globals=deepspeed_safe_globals())
    state[key] = Payload(marker)
    torch.save(state, path)
    return path


def _hostile_copy(runs, tmp_path, stage: str, which: str, marker: str):
    """A copy of the run's DeepSpeed directory with one of its files made hostile:
    ``which`` = 'model' (rank-0 model states) or 'optim' (the optimizer partition)."""
    dst = str(tmp_path / f'{stage}_{which}' / 'iter_1.pth')
    shutil.copytree(runs[f'{stage}_dir'], dst)
    suffix = '_model_states.pt' if which == 'model' else '_optim_states.pt'
    files = sorted(f for f in os.listdir(dst) if f.endswith(suffix))
    assert files, os.listdir(dst)
    return dst, _plant(osp.join(dst, files[0]), marker)


def _bare_pth(tmp_path, marker):
    path = str(tmp_path / 'bare.pth')
    torch.save({**_toy_state(), 'evil': Payload(marker)}, path)
    return path


def _mmengine_pth(tmp_path, marker):
    path = str(tmp_path / 'iter_1.pth')
    torch.save(dict(meta=dict(epoch=0, iter=1), state_dict=_toy_state(),
                    message_hub=dict(runtime_info=dict(iter=1), evil=Payload(marker))), path)
    return path


def _assert_refused(excinfo, path: str, opt_out: bool = False):
    err = excinfo.value
    assert isinstance(err, UnsafeCheckpointError), repr(err)
    msg = str(err)
    assert path in msg and REFUSED in msg, msg
    assert (OPT_OUT in msg) == opt_out, msg


def _run_test_tool(config, checkpoint, work_dir):
    return vlp_toy.test_in_process(config, checkpoint, work_dir)


def _run_train_tool(config, work_dir, *args):
    tool = _load_tool('train')
    tool.main([config, '--work-dir', work_dir, *args, '--cfg-options',
               f'experiment_name=safe_{uuid.uuid4().hex[:8]}'])


# -- tools/test.py --------------------------------------------------------------------
def test_tools_test_refuses_a_hostile_pth(runs, tmp_path, marker):
    path = _mmengine_pth(tmp_path, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        _run_test_tool(runs['plain'], path, str(tmp_path / 'work'))
    _assert_refused(e, path)


@pytest.mark.parametrize('stage,which', [('zero3', 'optim'), ('zero3', 'model'),
                                         ('zero2', 'model')])
def test_tools_test_refuses_a_hostile_deepspeed_dir(runs, tmp_path, marker, stage, which):
    """ZeRO-3: the weights are consolidated from the partitions (zero_to_fp32); ZeRO-2:
    the engine reads the full model-states file."""
    ckpt, planted = _hostile_copy(runs, tmp_path, stage, which, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        _run_test_tool(runs[stage], ckpt, str(tmp_path / 'work'))
    _assert_refused(e, planted)


def test_tools_test_plain_runner_reads_a_deepspeed_dir_weights_only(runs, tmp_path, marker):
    """A config without a strategy given a DeepSpeed directory: load_from_local
    consolidates it weights-only."""
    ckpt, planted = _hostile_copy(runs, tmp_path, 'zero2', 'optim', marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        _run_test_tool(runs['plain'], ckpt, str(tmp_path / 'work'))
    _assert_refused(e, planted)


# -- init_model / load_weights ------------------------------------------------------------
@pytest.mark.parametrize('kind', ['bare', 'mmengine', 'zero2-optim', 'zero2-model',
                                  'zero3-optim', 'zero3-model'])
def test_init_model_refuses(runs, tmp_path, marker, kind):
    if kind == 'bare':
        ckpt = planted = _bare_pth(tmp_path, marker)
    elif kind == 'mmengine':
        ckpt = planted = _mmengine_pth(tmp_path, marker)
    else:
        stage, which = kind.split('-')
        ckpt, planted = _hostile_copy(runs, tmp_path, stage, which, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        init_model(runs['plain'], ckpt)
    _assert_refused(e, planted)


def test_load_weights_refuses(runs, tmp_path, marker):
    model = vlp_toy.ToyContrastive()
    path = _mmengine_pth(tmp_path, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        load_weights(model, path)
    _assert_refused(e, path)
    ckpt, planted = _hostile_copy(runs, tmp_path, 'zero3', 'optim', marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        load_weights(model, ckpt)
    _assert_refused(e, planted)


@pytest.mark.parametrize('stage,atol', [('zero2', 0.0), ('zero3', 1e-2)])
def test_deepspeed_dirs_load_through_the_same_reader(runs, stage, atol):
    """init_model takes a clean DeepSpeed directory: the fp32 master weights of the run
    (ZeRO-3 bf16: the run's bf16 weights are their rounding)."""
    before = set(torch.serialization.get_safe_globals())
    model = init_model(runs['plain'], runs[f'{stage}_dir'])
    assert set(torch.serialization.get_safe_globals()) == before  # scoped allow-list
    from deepspeed.utils import zero_to_fp32
    assert zero_to_fp32.torch is torch  # the stand-in is gone again
    want = runs[f'{stage}_state']
    got = model.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        torch.testing.assert_close(got[k].float(), v.float(), rtol=0, atol=atol)


def test_allow_list_covers_what_deepspeed_writes(runs):
    """Every global in the ZeRO-2 (fp32) and ZeRO-3 (bf16) files is allow-listed."""
    allowed = set()
    for entry in ckpt_mod.MMENGINE_SAFE_GLOBALS + deepspeed_safe_globals():
        obj, name = entry if isinstance(entry, tuple) else (entry, None)
        allowed.add(name or f'{obj.__module__}.{obj.__qualname__}')
    for stage in ('zero2', 'zero3'):
        files = [osp.join(runs[f'{stage}_dir'], f) for f in os.listdir(runs[f'{stage}_dir'])]
        assert any(f.endswith('_optim_states.pt') for f in files)
        for f in files:
            unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(f))
            assert unsafe <= allowed, (f, unsafe - allowed)


# -- tools/train.py: --resume and load_from ------------------------------------------------
def test_resume_refuses_a_hostile_pth(runs, tmp_path, marker):
    path = _mmengine_pth(tmp_path, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        _run_train_tool(runs['plain'], str(tmp_path / 'work'), '--resume', path)
    _assert_refused(e, path)


@pytest.mark.parametrize('stage', ['zero2', 'zero3'])
def test_resume_refuses_a_hostile_optimizer_partition(runs, tmp_path, marker, stage):
    ckpt, planted = _hostile_copy(runs, tmp_path, stage, 'optim', marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        _run_train_tool(runs[stage], str(tmp_path / 'work'), '--resume', ckpt)
    _assert_refused(e, planted)


@pytest.mark.parametrize('config,kind', [('plain', 'pth'), ('zero3', 'zero3-optim'),
                                         ('zero2', 'zero3-model')])
def test_load_from_refuses(runs, tmp_path, marker, config, kind):
    if kind == 'pth':
        ckpt = planted = _mmengine_pth(tmp_path, marker)
    else:
        stage, which = kind.split('-')
        ckpt, planted = _hostile_copy(runs, tmp_path, stage, which, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        _run_train_tool(runs[config], str(tmp_path / 'work'), '--cfg-options',
                        f'load_from={ckpt}')
    _assert_refused(e, planted)


# -- parts' pretrained / checkpoint arguments --------------------------------------------------
VIT = dict(type='TimmTower', model_name='vit_tiny_patch16_224', img_size=32, patch_size=16,
           embed_dim=16, depth=1, num_heads=2)


def _hostile_weights(tmp_path, marker, name='weights.pth', state=None):
    path = str(tmp_path / name)
    torch.save({**(state or {'w': torch.zeros(2)}), 'evil': Payload(marker)}, path)
    return path


def test_timm_tower_checkpoint_refuses(tmp_path, marker):
    from vlp.registry import MODELS
    path = _hostile_weights(tmp_path, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        MODELS.build(dict(VIT, checkpoint=path))
    _assert_refused(e, path)


def test_timm_pretrained_file_refuses(tmp_path, marker):
    """timm's own loader (``pretrained=True`` with a local ``file``) reads weights-only."""
    from vlp.registry import MODELS
    path = _hostile_weights(tmp_path, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        MODELS.build(dict(VIT, pretrained=True, pretrained_cfg_overlay=dict(file=path)))
    _assert_refused(e, path)


def test_bert_pretrained_refuses(tmp_path, marker):
    from vlp.registry import MODELS
    path = _hostile_weights(tmp_path, marker, 'pytorch_model.bin')
    for cfg in (dict(type='BertEncoder', vocab_size=16, hidden_size=8, num_layers=1,
                     num_heads=2, intermediate_size=16, pretrained=path),
                dict(type='BertEncoder', vocab_size=16, hidden_size=8, num_layers=1,
                     num_heads=2, intermediate_size=16, pretrained=str(tmp_path))):
        with pytest.raises(pickle.UnpicklingError) as e:
            MODELS.build(cfg)
        _assert_refused(e, path)


def test_downstream_pretrained_refuses(runs, tmp_path, marker):
    from vlp.models.algorithms.downstream import load_pretrained_weights
    path = _mmengine_pth(tmp_path, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        load_pretrained_weights(vlp_toy.ToyContrastive(), path)
    _assert_refused(e, path)
    ckpt, planted = _hostile_copy(runs, tmp_path, 'zero3', 'optim', marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        load_pretrained_weights(vlp_toy.ToyContrastive(), ckpt)
    _assert_refused(e, planted)


def test_visual_tokenizer_checkpoint_refuses(tmp_path, marker):
    from vlp.registry import MODELS
    path = _hostile_weights(tmp_path, marker)
    with pytest.raises(pickle.UnpicklingError) as e:
        MODELS.build(dict(type='RandomProjectionTokenizer', patch_size=4, num_classes=8,
                          code_dim=4, checkpoint=path))
    _assert_refused(e, path)


def _hf_dir(tmp_path, marker, config: dict) -> str:
    src = tmp_path / 'hf'
    src.mkdir()
    (src / 'config.json').write_text(json.dumps(config))
    _hostile_weights(src, marker, 'pytorch_model.bin')
    return str(src)


def test_hf_language_model_pretrained_refuses(tmp_path, marker):
    from vlp.registry import MODELS
    src = _hf_dir(tmp_path, marker, dict(model_type='gpt2', n_layer=1, n_head=2, n_embd=8,
                                         vocab_size=16, n_positions=8))
    with pytest.raises(pickle.UnpicklingError) as e:
        MODELS.build(dict(type='HFLanguageModel', pretrained=src))
    assert isinstance(e.value, UnsafeCheckpointError) and src in str(e.value)
    assert REFUSED in str(e.value) and 'weights_only=False' in str(e.value)


# -- converters, default options ----------------------------------------------------------------
def _evil_torchscript(path: str, marker: str) -> None:
    """A TorchScript archive whose ``__setstate__`` creates ``marker`` when loaded."""
    src = osp.join(osp.dirname(path), 'make_evil_ts.py')
    with open(src, 'w') as f:
        f.write(f'''
import torch
from typing import Tuple


class Evil(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
        t = torch.from_file({marker!r}, True, 4, dtype=torch.uint8)
        self.w = state[0] + t[:2].float() * 0
        self.training = state[1]

    def forward(self, x):
        return x * self.w


torch.jit.save(torch.jit.script(Evil()), {path!r})
''')
    subprocess.run([sys.executable, src], check=True, capture_output=True)


_OC_CFG = dict(embed_dim=8, quick_gelu=True,
               vision_cfg=dict(image_size=16, patch_size=8, width=16, layers=1, head_width=8,
                               mlp_ratio=2.0),
               text_cfg=dict(context_length=8, vocab_size=100, width=16, heads=2, layers=1,
                             mlp_ratio=2.0))


@pytest.mark.filterwarnings('ignore::FutureWarning')  # torch.jit deprecation
@pytest.mark.parametrize('tool', ['albef_to_vlp', 'torchscale_beit3_to_vlp', 'vlmo_to_vlp',
                                  'open_clip_to_vlp', 'open_clip_to_vlp:torchscript',
                                  'open_clip_coca_to_vlp', 'hf_clip_to_vlp', 'hf_blip_to_vlp',
                                  'hf_blip2_to_vlp', 'hf_vilt_to_vlp'])
def test_converters_refuse_by_default(tmp_path, marker, tool):
    tool, _, fmt = tool.partition(':')
    module = _load_tool(f'convert/{tool}')
    out = str(tmp_path / 'out')
    path = str(tmp_path / 'model.pt')
    if fmt == 'torchscript':
        _evil_torchscript(path, marker)
    else:
        _hostile_weights(tmp_path, marker, 'model.pt')
    opt_out = tool in ('albef_to_vlp', 'torchscale_beit3_to_vlp', 'open_clip_to_vlp',
                       'open_clip_coca_to_vlp')
    if tool.startswith('hf_'):
        config = {}
        if tool == 'hf_clip_to_vlp':
            from transformers import CLIPConfig
            config = CLIPConfig().to_dict()
        path = osp.join(_hf_dir(tmp_path, marker, config), 'pytorch_model.bin')
        argv = [osp.dirname(path), out]
    elif tool == 'open_clip_to_vlp':
        cfg = str(tmp_path / 'oc.json')
        with open(cfg, 'w') as f:
            json.dump(_OC_CFG, f)
        # --no-tokenizer: the tiny text tower's 100 tokens do not fit open_clip's BPE (the
        # converter refuses that before reading anything); this test is about the weights
        argv = ['--model-config', cfg, '--checkpoint', path, '--no-tokenizer', out]
    elif tool == 'open_clip_coca_to_vlp':
        argv = ['--model-name', 'coca_ViT-B-32', '--checkpoint', path, out]
    else:
        argv = [path, out]
    with pytest.raises(pickle.UnpicklingError) as e:
        module.main(argv)
    _assert_refused(e, path, opt_out=opt_out)
    assert not osp.exists(out) or not os.listdir(out)


def test_torchscript_weights_match_jit_load(tmp_path):
    """The TorchScript reader gives torch.jit.load's state dict (parameters and buffers,
    nested modules, a bias-free Linear)."""
    sys.path.insert(0, osp.join(REPO, 'tools', 'convert'))
    from _torchscript import read_torchscript_state_dict
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3),
                                torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False)))
    model[1].running_mean.fill_(0.5)
    path = str(tmp_path / 'ts.pt')
    torch.jit.save(torch.jit.script(model), path)
    want = torch.jit.load(path).state_dict()
    got = read_torchscript_state_dict(path)
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype, k


# -- the zero_to_fp32 assumption and the torch floor ---------------------------------------------
def test_changed_zero_to_fp32_is_detected(tmp_path):
    src = tmp_path / 'fake_zero_to_fp32.py'
    src.write_text('import pickle\nimport torch\n\n\ndef parse(f):\n'
                   '    return pickle.load(open(f, "rb"))\n')
    spec = importlib.util.spec_from_file_location('fake_zero_to_fp32', str(src))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    problems = ckpt_mod._zero_to_fp32_problems(module)
    assert any('pickle.load' in p for p in problems), problems
    with pytest.raises(RuntimeError, match=r'DeepSpeed 9\.9\.9.*pickle\.load'):
        ckpt_mod._check_zero_to_fp32(module, '9.9.9')
    from deepspeed.utils import zero_to_fp32
    assert ckpt_mod._zero_to_fp32_problems(zero_to_fp32) == []


def test_torch_below_2_6_is_refused_at_import():
    code = ('import torch; torch.__version__ = "2.5.1"\n'
            'try:\n    import vlp.engine.checkpoint\n'
            'except ImportError as e:\n    print("IMPORT-ERROR", e)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert 'IMPORT-ERROR' in out and 'torch >= 2.6' in out, out

