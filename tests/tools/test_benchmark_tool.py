"""tools/benchmark.py runs (a smoke test: no timing is asserted) and its open_clip twin of
the CLIP demo has exactly vlp's parameter count."""
import json

import pytest
import torch
from conftest import ROOT, load_tool


def test_benchmark_clip_against_open_clip(tmp_path):
    bench = load_tool('benchmark')
    out = bench.main([str(ROOT / 'configs' / 'clip' / 'clip_tiny_demo.py'), '--steps', '1',
                      '--warmup', '0', '--batch-size', '4', '--compare', 'open_clip',
                      '--json', str(tmp_path / 'r.json')])
    assert out['params_agree']
    assert set(out['rows']) == {'vlp', 'open_clip'}
    assert out['rows']['vlp']['flops_per_sample'] > 0 and 0 < out['rows']['vlp']['mfu']
    assert (tmp_path / 'r.json').exists()


def test_step_tensors_follow_allocations_and_frees():
    """The per-implementation tensor memory: a known activation, a known peak."""
    bench = load_tool('benchmark')
    lin = torch.nn.Linear(256, 256, bias=False)
    x = torch.randn(1024, 256)
    step = bench.make_step(lin, lambda: lin(x).square().sum(), 'cpu', None)
    step()  # the optimizer state exists from here
    mem = bench.tensor_memory(step, extra=[x])
    mib = 2 ** 20
    assert mem['state'] == pytest.approx(3 * 256 * 256 * 4 / mib, abs=0.06)  # w + 2 moments
    # at least y = x W^T [1024, 256] (1 MiB) and y^2 (1 MiB) alive at once, plus the
    # backward's gradients of them and of W (0.25 MiB); all freed by the end
    assert 2.0 <= mem['step_peak'] <= 5.0
    assert mem['left'] == 0.0
    x2 = torch.randn(4096, 256)  # 4x the rows: the activations grow 4x, the rest does not
    step2 = bench.make_step(lin, lambda: lin(x2).square().sum(), 'cpu', None)
    step2()
    assert bench.tensor_memory(step2, extra=[x2])['step_peak'] >= 3.5 * mem['step_peak']


@pytest.mark.parametrize('groups', [1, 4, 64])
def test_flops_of_a_convolution_step_are_three_forwards(groups):
    """Forward + the two backward products (input and weight gradients) of a convolution
    are three forwards, grouped or depthwise too (torch's formula overcounts the latter)."""
    bench = load_tool('benchmark')
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 64, 16, 16, requires_grad=True)
    forward = 2 * 2 * 16 * 16 * 64 * (64 // groups) * 9  # 2 x B x H x W x C_out x C_in/g x k^2
    assert bench.count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_benchmark_a_fusion_config():
    bench = load_tool('benchmark')
    out = bench.main([str(ROOT / 'configs' / 'vlmo' / 'vlmo_tiny_demo.py'), '--steps', '1',
                      '--warmup', '0', '--batch-size', '4',
                      '--cfg-options', 'model.stage=image_text'])
    assert out['rows']['vlp']['samples_per_s'] > 0


# -- --compare anchors (issue 8): open_clip CoCa, HF CLIP / BLIP / BLIP-2 Q-Former / ViLT -----

def _compare(config, kind, tmp_path, *extra):
    bench = load_tool('benchmark')
    out_json = tmp_path / 'r.json'
    out = bench.main([str(config), '--steps', '1', '--warmup', '0', '--batch-size', '2',
                      '--device', 'cpu', '--compare', kind, '--json', str(out_json), *extra])
    saved = json.loads(out_json.read_text())
    assert set(saved['rows']) == {'vlp', kind}
    for side in ('vlp', kind):
        row = saved['rows'][side]
        assert row['samples_per_s'] > 0 and row['step_s'] > 0 and row['objectives']
    params = saved['compare']['params']
    assert saved['params_agree'] and params['compared']['vlp'] == params['compared']['anchor']
    assert saved['rows']['vlp']['compared_params'] == saved['rows'][kind]['compared_params']
    assert saved['speed_ratio'] == pytest.approx(
        saved['rows']['vlp']['samples_per_s'] / saved['rows'][kind]['samples_per_s'], rel=1e-2)
    # tensor memory per side: AdamW's two moments of the trainable parameters are state,
    # the step's own tensors (gradients of those parameters at least) come above it and
    # are freed by its end
    for side in ('vlp', kind):
        mem = saved['rows'][side]['tensor_mib']
        trainable = saved['rows'][side]['compared_params'] * 4 / 2 ** 20
        assert mem['state'] >= 3 * trainable - 0.2  # weights + two moments
        assert mem['step_peak'] >= trainable - 0.1  # the gradients
        assert mem['total'] == pytest.approx(mem['state'] + mem['step_peak'], abs=0.11)
        assert mem['left'] <= 0.1
    assert saved['tensor_peak_ratio'] == pytest.approx(
        saved['rows']['vlp']['tensor_mib']['total'] / saved['rows'][kind]['tensor_mib']['total'],
        rel=1e-2)
    return out


@pytest.mark.parametrize('config', ['clip/clip_tiny_demo.py', 'blip/blip_tiny_demo.py',
                                    'blip2/blip2_stage1_tiny_demo.py',
                                    'vilt/vilt_tiny_demo.py'])
def test_benchmark_against_hf(tmp_path, config):
    pytest.importorskip('transformers')
    out = _compare(ROOT / 'configs' / config, 'hf', tmp_path)
    params = out['compare']['params']
    if 'blip2' in config:  # ITG has no HF counterpart: vlp's lm_head is not compared
        assert params['excluded']['vlp'] == ['lm_head']
        assert params['total']['vlp'] != params['total']['anchor']
        assert any('ITG' in n for n in out['compare']['notes'])
    else:  # everything matches, totals included (BLIP: momentum twins, shared decoder)
        assert params['total']['vlp'] == params['total']['anchor']
    if 'vilt' in config:
        assert any('WPA' in n for n in out['compare']['notes'])


def _coca_open_clip_layout(tmp_path):
    """A CoCa config in open_clip's layout (shared pooler, pre-norm CLIP ViT, projections),
    as tools/convert/open_clip_coca_to_vlp.py writes it, at the demo's sizes."""
    coca = load_tool('convert/open_clip_coca_to_vlp')
    model = coca.open_clip_coca_config_to_vlp(dict(
        embed_dim=96,
        vision_cfg=dict(image_size=64, patch_size=8, width=96, layers=3, head_width=24,
                        attentional_pool=True, attn_pooler_heads=4, attn_pooler_queries=17,
                        output_tokens=True),
        text_cfg=dict(context_length=32, vocab_size=52, width=96, heads=4, layers=2,
                      embed_cls=True, output_tokens=True),
        multimodal_cfg=dict(context_length=32, vocab_size=52, width=96, heads=4, layers=2)))
    path = tmp_path / 'coca_open_clip_layout.py'
    demo = ROOT / 'configs' / 'coca' / 'coca_tiny_demo.py'
    path.write_text(f"_base_ = ['{demo}']\nmodel = dict(_delete_=True, **{model!r})\n"
                    "model['tokenizer'] = {{_base_.model.tokenizer}}\n")
    return path


def test_benchmark_coca_against_open_clip(tmp_path):
    pytest.importorskip('open_clip')
    out = _compare(_coca_open_clip_layout(tmp_path), 'open_clip', tmp_path)
    assert out['compare']['params']['total']['vlp'] == \
        out['compare']['params']['total']['anchor']
    assert 'caption' in out['rows']['open_clip']['objectives']


def test_benchmark_compare_refuses_different_architectures():
    """The CoCa demo (paper layout: parallel poolers, one fused decoder block per layer) is
    not open_clip's CoCa: the tool refuses instead of timing different models."""
    pytest.importorskip('open_clip')
    bench = load_tool('benchmark')
    with pytest.raises(SystemExit, match='compared parameters differ'):
        bench.main([str(ROOT / 'configs' / 'coca' / 'coca_tiny_demo.py'), '--steps', '1',
                    '--warmup', '0', '--batch-size', '2', '--device', 'cpu',
                    '--compare', 'open_clip'])
    with pytest.raises(SystemExit, match='no anchor for CoCa'):
        bench.main([str(ROOT / 'configs' / 'coca' / 'coca_tiny_demo.py'), '--steps', '1',
                    '--warmup', '0', '--batch-size', '2', '--device', 'cpu',
                    '--compare', 'hf'])
