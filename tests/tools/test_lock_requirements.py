"""The version lock: tools/lock_requirements.py, and the install command that uses it.

The lock is what keeps the two README commands green on a fresh machine (issue: transformers
5.24 changed beam sampling and a range resolved to it); these tests check that every
requirement is locked, that the installed environment is the locked one, and that the README,
.ci/run and docs/get_started.md install the same way.
"""
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import ROOT, load_tool

lock_tool = load_tool('lock_requirements')
REQ = ROOT / 'requirements'
# tools/check_latest.sh runs the suite on newer versions than the lock before rewriting it
unlocked = pytest.mark.skipif(bool(os.environ.get('VLP_UNLOCKED')),
                              reason='VLP_UNLOCKED: the suite runs on newer versions than the lock')


def _requirement_names(path):
    names = []
    for line in path.read_text().splitlines():
        line = line.split('#')[0].strip()
        if line:
            names.append(lock_tool.canonical(re.match(r'[A-Za-z0-9][A-Za-z0-9._-]*', line).group(0)))
    return names


def _lock():
    return lock_tool.parse_freeze(lock_tool.LOCK.read_text())


def test_every_requirement_is_locked_and_bounded():
    lock = _lock()
    for fname in lock_tool.BOUNDED:
        for line in (REQ / fname).read_text().splitlines():
            code = line.split('#')[0].strip()
            if not code:
                continue
            name = lock_tool.canonical(re.match(r'[A-Za-z0-9][A-Za-z0-9._-]*', code).group(0))
            assert name in lock, f'{fname}: {name} is not in requirements/constraints.txt'
            version = lock[name][1]
            if '==' in code:
                assert code.endswith(f'=={version}'), f'{fname}: {code} disagrees with the lock ({version})'
            else:  # the upper bound is the newest version tested, i.e. the locked one
                assert f'<={version}' in code, f'{fname}: {code} has no upper bound <={version}'


@unlocked
def test_installed_environment_is_the_locked_one():
    """The suite runs in the environment the lock describes: a package at another version
    means the install did not use the lock (or the lock was edited without a rerun)."""
    mismatches = []
    for key, (name, version) in _lock().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # platform-specific packages (e.g. nvidia-* on aarch64) may be absent
        if installed != version:
            mismatches.append(f'{name}: locked {version}, installed {installed}')
    assert not mismatches, mismatches
    for must in ('torch', 'transformers', 'deepspeed', 'mmengine', 'timm', 'open-clip-torch'):
        assert must in _lock()


def _install_command(text):
    cmds = [l.strip() for l in text.splitlines() if l.strip().startswith('python3 -m venv .venv')]
    assert len(cmds) == 1, cmds
    return cmds[0]


def test_readme_ci_and_get_started_install_with_the_lock():
    readme = _install_command((ROOT / 'README.md').read_text())
    ci = _install_command((ROOT / '.ci' / 'run').read_text())
    started = _install_command((ROOT / 'docs' / 'get_started.md').read_text())
    assert readme == ci == started
    # every pip install of the command is constrained by the lock
    installs = [part for part in readme.split('&&') if ' install ' in part]
    assert len(installs) == 2
    for part in installs:
        assert '-c requirements/constraints.txt' in part, part
    assert '.venv/bin/python -m pytest tests -q' in (ROOT / '.ci' / 'run').read_text()
    assert '.venv/bin/python -m pytest tests -q' in (ROOT / 'README.md').read_text()


def test_parse_freeze_and_render_roundtrip():
    text = 'Foo_Bar==1.2\n-e git+https://x#egg=vlp\nvlp @ file:///x\nbaz==0.1.post1\n'
    pins = lock_tool.parse_freeze(text)
    assert pins == {'foo-bar': ('Foo_Bar', '1.2'), 'baz': ('baz', '0.1.post1')}
    rendered = lock_tool.render_lock(pins, '3.11.7', 'linux-x86_64')
    assert rendered.endswith('baz==0.1.post1\nFoo_Bar==1.2\n')
    assert lock_tool.parse_freeze(rendered) == pins
    with pytest.raises(ValueError, match='name==version'):
        lock_tool.parse_freeze('foo>=1\n')


def test_bound_and_unbound_lines():
    pins = {'torch': ('torch', '2.14.1'), 'open-clip-torch': ('open_clip_torch', '3.3.0'),
            'numpy': ('numpy', '2.4.6'), 'mmengine': ('mmengine', '0.10.7')}
    assert lock_tool.bound_line('torch>=2.6\n', pins) == 'torch>=2.6,<=2.14.1\n'
    assert lock_tool.bound_line('torch>=2.6,<=2.13.0\n', pins) == 'torch>=2.6,<=2.14.1\n'
    assert lock_tool.bound_line('numpy\n', pins) == 'numpy<=2.4.6\n'
    assert lock_tool.bound_line('open_clip_torch>=2.24  # ref\n', pins) == 'open_clip_torch>=2.24,<=3.3.0  # ref\n'
    assert lock_tool.bound_line('mmengine==0.10.7\n', pins) == 'mmengine==0.10.7\n'  # pins stay
    assert lock_tool.bound_line('# comment\n', pins) == '# comment\n'
    with pytest.raises(KeyError, match='not installed'):
        lock_tool.bound_line('decord>=0.6\n', pins)
    assert lock_tool.unbounded_line('torch>=2.6,<=2.14.1\n') == 'torch>=2.6\n'
    assert lock_tool.unbounded_line('numpy<=2.4.6\n') == 'numpy\n'
    assert lock_tool.unbounded_line('mmengine==0.10.7\n') == 'mmengine==0.10.7\n'


@unlocked
def test_freeze_writes_lock_and_bounds(tmp_path):
    """``freeze`` on this very environment, into a scratch copy of requirements/."""
    req = tmp_path / 'requirements'
    req.mkdir()
    for fname in lock_tool.BOUNDED:
        text = (REQ / fname).read_text()
        (req / fname).write_text(''.join(lock_tool.unbounded_line(l) for l in text.splitlines(keepends=True)))
    lock = req / 'constraints.txt'
    venv = Path(sys.prefix)
    result = lock_tool.freeze(venv, req_dir=req, lock=lock)
    assert result['old'] == {}
    # the same environment gives the same lock and the same bounded files as the committed ones
    assert _lock() == lock_tool.parse_freeze(lock.read_text())
    for fname in lock_tool.BOUNDED:
        assert (req / fname).read_text() == (REQ / fname).read_text(), fname
    assert lock_tool.diff({'a': ('a', '1')}, {'a': ('a', '2'), 'b': ('b', '3')}) == [
        'a: 1 -> 2', 'b: (absent) -> 3']


def test_check_latest_script_is_valid_bash():
    subprocess.run(['bash', '-n', str(ROOT / 'tools' / 'check_latest.sh')], check=True)
