"""benchmarks/gpu_suite.py --dry-run: every section of the GPU suite (bf16 train steps of
each config, MFU, ZeRO 0-3 on one device, the --compare rows, cached decoding, ITM
re-ranking) runs on the CPU with tiny sizes through the code the GPU run takes, and
writes its JSON and markdown. A smoke test of the script: it asserts no timing."""
import importlib.util
import json

import pytest

from conftest import ROOT


def _suite():
    spec = importlib.util.spec_from_file_location('gpu_suite',
                                                  str(ROOT / 'benchmarks' / 'gpu_suite.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_suite_dry_run(tmp_path):
    pytest.importorskip('deepspeed')
    suite = _suite()
    res = suite.main(['--out', str(tmp_path), '--dry-run', '--budget-s', '100000'])
    items = res['items']
    bad = [(i['section'], i['name'], i.get('error'), i.get('traceback')) for i in items
           if i['status'] != 'ok']
    assert not bad, bad
    sections = [i['section'] for i in items]
    assert sections.count('train') == len(suite.BASE)
    assert sections.count('zero') == 4 and sections.count('compare') == len(suite.COMPARE)
    assert {'mfu', 'decoding', 'rerank'} <= set(sections)
    zero = [i['result'] for i in items if i['section'] == 'zero']
    assert [z['stage'] for z in zero] == [0, 1, 2, 3]
    assert all(z['samples_per_s'] > 0 for z in zero)
    dec = next(i['result'] for i in items if i['section'] == 'decoding')
    assert all(r['results']['vlp uncached']['same_ids_as_cached'] for r in dec)
    rr = next(i['result'] for i in items if i['section'] == 'rerank')
    assert all(r['recalls_identical'] for r in rr)
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert [i['status'] for i in saved['items']] == ['ok'] * len(items)
    md = (tmp_path / 'results.md').read_text()
    for title in ('Train step', 'MFU', 'ZeRO', '--compare', 'Captioning', 're-ranking'):
        assert title in md


def test_gpu_suite_refuses_to_run_without_cuda(tmp_path):
    torch = pytest.importorskip('torch')
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is present')
    with pytest.raises(SystemExit, match='dry-run'):
        _suite().main(['--out', str(tmp_path)])
