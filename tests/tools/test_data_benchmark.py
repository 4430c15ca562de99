"""benchmarks/data_throughput.py runs end to end on tiny data (a smoke test: it measures,
it asserts no timing)."""
import importlib.util
import json

from conftest import ROOT


def test_data_benchmark_runs(tmp_path):
    spec = importlib.util.spec_from_file_location(
        'data_throughput', str(ROOT / 'benchmarks' / 'data_throughput.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / 'r.json'
    rows = mod.main(['--workers', '0', '--samples', '16', '--image-size', '32',
                     '--videos', '8', '--frames', '2', '--batch-size', '4',
                     '--out', str(out)])
    assert [r['data'] for r in rows] == ['json', 'shards', 'video']
    assert [r['samples'] for r in rows] == [16, 16, 8]
    assert json.loads(out.read_text())['rows'] == rows
