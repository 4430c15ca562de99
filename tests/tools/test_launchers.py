"""The launch scripts as a user types them: tools/dist_train.sh / dist_test.sh find the repo's
venv python without PYTHON=..., and tools/slurm_train.sh / slurm_test.sh build the
OpenMMLab-style srun command (checked with a stand-in srun that records its arguments)."""
import json
import os
import os.path as osp
import stat
import subprocess
import sys

import pytest

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def _env_without_python(tmp_path):
    """A PATH with the shell tools the scripts use and no python: as in a fresh shell where
    the venv is not activated, the scripts must find the interpreter themselves."""
    import shutil
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'VIRTUAL_ENV')}
    bin_dir = tmp_path / 'shell_bin'
    bin_dir.mkdir()
    for tool in ('bash', 'dirname'):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env['PATH'] = str(bin_dir)
    env['HF_HUB_OFFLINE'] = '1'
    return env


@pytest.mark.skipif(not osp.exists(osp.join(ROOT, '.venv', 'bin', 'python')),
                    reason="the README's install makes .venv/ in the repo; this checkout has none")
def test_dist_train_finds_the_repo_venv(tmp_path):
    env = _env_without_python(tmp_path)
    env['MASTER_PORT'] = str(29600 + os.getpid() % 300)
    out = subprocess.run([str(tmp_path / 'shell_bin' / 'bash'), osp.join(ROOT, 'tools/dist_train.sh'),
                          'configs/clip/clip_tiny_demo.py', '1', '--dry-run'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "type='CLIP'" in out.stdout and 'preflight: every file' in out.stdout


@pytest.fixture
def fake_srun(tmp_path):
    """An ``srun`` that writes its arguments (and PYTHONPATH) to srun_args.json."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    record = tmp_path / 'srun_args.json'
    script = bin_dir / 'srun'
    script.write_text(f'''#!{sys.executable}
import json, os, sys
json.dump(dict(argv=sys.argv[1:], pythonpath=os.environ.get("PYTHONPATH")),
          open({str(record)!r}, "w"))
''')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}')
    env.pop('PYTHON', None)
    return env, record


def _run(script, args, env, **extra):
    env = dict(env, **extra)
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    return out


def test_slurm_train_builds_the_srun_command(fake_srun):
    env, record = fake_srun
    out = _run('slurm_train.sh', ['gpu', 'clip32', 'configs/clip/clip_vit-b16_base.py',
                                  'work_dirs/clip32', '--resume', '--amp'],
               env, GPUS='16', CPUS_PER_TASK='6', SRUN_ARGS='--time=72:00:00 --quotatype=auto')
    assert out.returncode == 0, out.stderr
    rec = json.loads(record.read_text())
    argv = rec['argv']
    assert argv[:2] == ['-p', 'gpu']
    for opt in ('--job-name=clip32', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
                '--cpus-per-task=6', '--kill-on-bad-exit=1', '--time=72:00:00',
                '--quotatype=auto'):
        assert opt in argv, (opt, argv)
    python = argv[argv.index('--quotatype=auto') + 1]
    expected_python = osp.join(ROOT, '.venv', 'bin', 'python')
    if osp.exists(expected_python):
        assert python == expected_python
    tail = argv[argv.index(python) + 1:]
    assert tail == ['-u', osp.join(ROOT, 'tools/train.py'), 'configs/clip/clip_vit-b16_base.py',
                    '--launcher', 'slurm', '--work-dir', 'work_dirs/clip32', '--resume', '--amp']
    assert rec['pythonpath'].split(':')[0] == ROOT


def test_slurm_small_jobs_and_test_script(fake_srun):
    env, record = fake_srun
    out = _run('slurm_train.sh', ['dev', 'j', 'configs/clip/clip_tiny_demo.py'], env, GPUS='2',
               PYTHON='/opt/py/bin/python')
    assert out.returncode == 0, out.stderr
    argv = json.loads(record.read_text())['argv']
    assert '--gres=gpu:2' in argv and '--ntasks-per-node=2' in argv and '--ntasks=2' in argv
    assert argv[argv.index('/opt/py/bin/python') + 2:] == [
        osp.join(ROOT, 'tools/train.py'), 'configs/clip/clip_tiny_demo.py', '--launcher', 'slurm']
    out = _run('slurm_test.sh', ['gpu', 'eval', 'configs/clip/clip_tiny_demo.py', 'w/epoch_1.pth',
                                 '--work-dir', 'w'], env, GPUS='4')
    assert out.returncode == 0, out.stderr
    argv = json.loads(record.read_text())['argv']
    assert argv[-7:] == [osp.join(ROOT, 'tools/test.py'), 'configs/clip/clip_tiny_demo.py',
                         'w/epoch_1.pth', '--launcher', 'slurm', '--work-dir', 'w']
    assert '--ntasks=4' in argv and '--gres=gpu:4' in argv
    # too few arguments: the usage, exit 2
    out = _run('slurm_train.sh', ['gpu'], env)
    assert out.returncode == 2 and 'usage: tools/slurm_train.sh' in out.stderr


def test_tracking_backends_of_the_docs_resolve(tmp_path):
    """The experiment-tracking snippet of docs/get_started.md names backends that exist in
    vlp's scope (the clients themselves are optional installs)."""
    import re

    from mmengine.config import Config

    from vlp.registry import VISBACKENDS
    text = open(osp.join(ROOT, 'docs', 'get_started.md')).read()
    block = re.search(r'```python\n(vis_backends = .*?)```', text, re.S).group(1)
    (tmp_path / 'cfg.py').write_text(block)
    cfg = Config.fromfile(str(tmp_path / 'cfg.py'))
    names = [b['type'] for b in cfg.visualizer['vis_backends']]
    assert 'WandbVisBackend' in names
    for name in names + ['MLflowVisBackend']:
        assert VISBACKENDS.get(name) is not None, name
