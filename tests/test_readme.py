"""The README's cheap snippets run as written: every code block after a
``<!-- readme-test: run -->`` line is extracted and run (Python blocks with this
interpreter, bash blocks with bash) in a scratch directory that looks like a fresh clone
after the README's earlier steps: ``configs``, ``tools`` and ``.venv`` are the
repository's, ``work_dirs/clip_tiny_demo/epoch_15.pth`` is a checkpoint of the demo
config (random weights standing in for the training run the README shows, minutes of CPU)
and ``my_photos/`` holds two pictures (the user's own images)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MARK = '<!-- readme-test: run -->'


def snippets(text: str):
    """``(language, code)`` of each fenced block right after a :data:`MARK` line."""
    out = []
    for m in re.finditer(re.escape(MARK) + r'\s*\n```(\w+)\n(.*?)\n```', text, re.S):
        out.append((m.group(1), m.group(2)))
    return out


README = (ROOT / 'README.md').read_text()
SNIPPETS = snippets(README)


def test_every_mark_is_followed_by_a_block():
    assert README.count(MARK) == len(SNIPPETS) >= 2
    assert {lang for lang, _ in SNIPPETS} == {'python', 'bash'}


@pytest.fixture(scope='module')
def clone(tmp_path_factory):
    from mmengine.config import Config
    from PIL import Image

    from vlp import apis
    from vlp.models.algorithms.base import without_weights
    tmp = tmp_path_factory.mktemp('clone')
    for name in ('configs', 'tools', '.venv'):
        if (ROOT / name).exists():
            os.symlink(ROOT / name, tmp / name)
    cfg = Config.fromfile(str(ROOT / 'configs/clip/clip_tiny_demo.py'))
    cfg.model = without_weights(cfg.model.to_dict())
    torch.manual_seed(0)
    ckpt = tmp / 'work_dirs' / 'clip_tiny_demo' / 'epoch_15.pth'
    ckpt.parent.mkdir(parents=True)
    torch.save({'state_dict': apis.init_model(cfg).state_dict()}, ckpt)
    photos = tmp / 'my_photos'
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate([(48, 64), (80, 60)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            photos / f'photo{i}.png')
    return tmp


@pytest.mark.parametrize('index', range(len(SNIPPETS)))
def test_snippet_runs_as_written(clone, index):
    lang, code = SNIPPETS[index]
    if lang == 'bash':
        if not (ROOT / '.venv').exists():
            code = code.replace('.venv/bin/python', sys.executable)
        cmd = ['bash', '-e', '-c', code]
    else:
        cmd = [sys.executable, '-c', code]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run(cmd, cwd=str(clone), capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, f'README snippet {index} ({lang}) failed:\n{code}\n' \
        f'{res.stdout[-3000:]}\n{res.stderr[-3000:]}'
    if lang == 'python':
        assert 'torch.Size([4, 3])' in res.stdout
    if 'tools/infer.py' in code:
        written = sorted(p.name for p in (clone / 'work_dirs' / 'infer').glob('*.png'))
        assert written == ['match.png', 'match_itc.png', 'match_itc_probs.png'], written
