"""tools/benchmark.py runs (a smoke test: no timing is asserted) and its open_clip twin of
the CLIP demo has exactly vlp's parameter count."""
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


def test_benchmark_a_fusion_config():
    bench = load_tool('benchmark')
    out = bench.main([str(ROOT / 'configs' / 'vlmo' / 'vlmo_tiny_demo.py'), '--steps', '1',
                      '--warmup', '0', '--batch-size', '4',
                      '--cfg-options', 'model.stage=image_text'])
    assert out['rows']['vlp']['samples_per_s'] > 0


# -- --compare anchors (issue 8): open_clip CoCa, HF CLIP / BLIP / BLIP-2 Q-Former / ViLT -----
import json  # noqa: E402

import pytest  # noqa: E402


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
