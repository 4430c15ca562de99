"""tools/data/demo_task_baselines.py: the text-only prior against hand-made splits, and the
demo tasks' figures on small splits."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    'demo_task_baselines', ROOT / 'tools' / 'data' / 'demo_task_baselines.py')
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def test_text_prior_by_hand():
    train = [dict(t='a', y=1), dict(t='a', y=1), dict(t='a', y=0), dict(t='b', y=0),
             dict(t='c', y=0)]
    test = [dict(t='a', y=1), dict(t='b', y=1), dict(t='z', y=0), dict(t='a', y=0)]
    r = tool.text_prior(train, test, 't', 'y', lambda p, d: float(p == d['y']))
    # 'a' -> 1 (right, wrong), 'b' -> 0 (wrong), unseen 'z' -> majority 0 (right)
    assert r['text_prior'] == pytest.approx(50.0)
    assert r['majority'] == pytest.approx(50.0)  # always 0: right on 2 of 4


def test_demo_baselines_small_splits():
    r = tool.demo_baselines(dict(train=60, test=30))
    assert set(r) == {'vqa', 'nlvr2', 'snli_ve'}
    for v in r.values():
        assert 0.0 <= v['majority'] <= 100.0 and 0.0 <= v['text_prior'] <= 100.0
    assert r['nlvr2']['majority'] == pytest.approx(50.0)  # balanced by construction
