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
