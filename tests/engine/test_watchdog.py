"""A stalled or dead rank ends the job (vlp/engine/watchdog.py, vlp/engine/launch.py).

Real 2-process runs on CPU (gloo), through ``prepare_launch`` / ``finish_launch`` as
tools/train.py calls them, with a collective timeout (``env_cfg.dist_cfg.timeout=300``)
far longer than the watchdog's (``watchdog.timeout=5``): without the watchdog these jobs
hang (``test_without_watchdog_the_job_hangs`` shows it), so the watchdog is what ends them.

- torchrun, rank 1 SIGSTOPped in a loop of all-reduces: rank 0 ends with exit code 75 and
  a message naming rank 1 within 5 s + margin; torchrun then tears the job down (the test
  SIGKILLs the stopped rank instead of waiting torchrun's 30 s SIGTERM grace);
- one process per rank started by the test (the slurm/mpi layout: rank 0 hosts the store),
  rank 0 SIGSTOPped: rank 1 cannot reach the store and ends, naming rank 0;
- the same layout, rank 1 SIGKILLed while rank 0 validates, and the launcher not reacting
  (as when the rank lives on another node): rank 0 ends, naming rank 1;
- a run that ends normally, with a "validation" of 2.5 x the watchdog's timeout on one rank
  while the other waits in the final barrier: exit 0 on both, no watchdog message.

All jobs start together (module fixture) so the file takes about the time of the slowest.
Every process a job started is SIGKILLed at the end (SIGKILL ends stopped processes too).

This file is also the worker: ``python tests/engine/test_watchdog.py worker ...``.
"""
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
WATCHDOG_TIMEOUT = 5.0
DIST_TIMEOUT = 300  # the collective timeout: far beyond the test, so it never fires
MARGIN = 6.0  # detection: <= timeout + 2 intervals + a store round-trip; CI load on top
START_LIMIT = 120.0  # 2-rank start-up (imports) on a loaded 2-core machine


# -- the worker (one rank) ----------------------------------------------------------------
def worker(argv) -> None:
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument('--watchdog-timeout', type=float, default=WATCHDOG_TIMEOUT)  # 0: off
    parser.add_argument('--stop-rank', type=int, default=-1)
    parser.add_argument('--signal', default='SIGSTOP')
    parser.add_argument('--stop-at', type=int, default=20)  # -1: after the loop
    parser.add_argument('--iters', type=int, default=100000)
    parser.add_argument('--slow-rank', type=int, default=-1)
    parser.add_argument('--slow-seconds', type=float, default=0.0)
    args = parser.parse_args(argv)

    import torch
    import torch.distributed as dist
    from mmengine.config import Config

    from vlp.engine.launch import finish_launch, prepare_launch
    cfg = Config(dict(
        launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=DIST_TIMEOUT)),
        watchdog=dict(timeout=args.watchdog_timeout) if args.watchdog_timeout else None))
    prepare_launch(cfg)
    rank = dist.get_rank()

    def timeout_of(group):
        return int(group._get_backend(torch.device('cpu')).options._timeout.total_seconds())

    # groups made later without a timeout (as DeepSpeed makes its data-parallel group)
    # get env_cfg.dist_cfg.timeout, not torch's 30-minute default
    print(f'WD rank {rank} pid {os.getpid()} ready; timeouts: world '
          f'{timeout_of(dist.group.WORLD)} s, new group {timeout_of(dist.new_group())} s',
          flush=True)
    def stop():
        print(f'WD rank {rank} {args.signal}', flush=True)
        os.kill(os.getpid(), getattr(signal, args.signal))

    tensor = torch.ones(8)
    for i in range(args.iters):
        if rank == args.stop_rank and i == args.stop_at:
            stop()
        dist.all_reduce(tensor)
        time.sleep(0.02)
    if rank == args.stop_rank and args.stop_at == -1:
        stop()
    if rank == args.slow_rank:
        time.sleep(args.slow_seconds)  # a long validation: no collective, no progress
    finish_launch(cfg)
    print(f'WD rank {rank} finished', flush=True)


# -- jobs ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _descendants(roots) -> set:
    """Pids of the live descendants of ``roots`` (Linux: read from /proc)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class Job:
    """Two ranks, started by torchrun (``torchrun=True``) or one process per rank (the
    test is the launcher); every output line is kept with its arrival time."""

    def __init__(self, name: str, worker_args, torchrun: bool):
        self.name, self.torchrun = name, torchrun
        self.lines = []  # (arrival time, text)
        self.lock = threading.Lock()
        port = str(_free_port())
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [REPO, os.environ.get('PYTHONPATH', '')]), PYTHONUNBUFFERED='1',
            OMP_NUM_THREADS='1')
        script = [osp.abspath(__file__), 'worker', *worker_args]
        cmd = [sys.executable, '-u'] + script
        if torchrun:
            cmds = [([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                      '--master_addr', '127.0.0.1', '--master_port', port] + script, env)]
        else:
            cmds = [(cmd, dict(env, MASTER_ADDR='127.0.0.1', MASTER_PORT=port, RANK=str(r),
                               LOCAL_RANK=str(r), WORLD_SIZE='2')) for r in range(2)]
        self.procs = []
        for c, e in cmds:
            proc = subprocess.Popen(c, env=e, cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        self.exit_times = {}  # proc index -> monotonic time it ended
        for i, proc in enumerate(self.procs):
            threading.Thread(target=self._wait, args=(i, proc), daemon=True).start()

    def _wait(self, i: int, proc) -> None:
        proc.wait()
        self.exit_times[i] = time.monotonic()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            with self.lock:
                self.lines.append((time.monotonic(), line.rstrip('\n')))

    def output(self) -> str:
        with self.lock:
            return '\n'.join(text for _, text in self.lines)

    def wait_line(self, pattern: str, timeout: float) -> float:
        """Arrival time of the first line matching ``pattern``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                for t, text in self.lines:
                    if re.search(pattern, text):
                        return t
            if all(p.poll() is not None for p in self.procs):
                time.sleep(0.2)  # let the readers drain
                with self.lock:
                    if not any(re.search(pattern, text) for _, text in self.lines):
                        break
            time.sleep(0.05)
        raise AssertionError(f'{self.name}: no line matching {pattern!r} in {timeout:.0f} s;'
                             f' output:\n{self.output()[-6000:]}')

    def pids(self):
        with self.lock:
            found = [int(m.group(1)) for _, text in self.lines
                     for m in [re.search(r'WD rank \d+ pid (\d+) ready', text)] if m]
        return found

    def pid_of(self, rank: int) -> int:
        self.wait_line(rf'WD rank {rank} pid \d+ ready', START_LIMIT)
        with self.lock:
            for _, text in self.lines:
                m = re.search(rf'WD rank {rank} pid (\d+) ready', text)
                if m:
                    return int(m.group(1))

    def wait_exit(self, i: int, until: float):
        """(monotonic time process ``i`` ended, its return code), or None if it still runs
        at monotonic time ``until``."""
        while time.monotonic() < until:
            if i in self.exit_times:
                return self.exit_times[i], self.procs[i].returncode
            time.sleep(0.05)
        return None

    def kill(self) -> None:
        """SIGKILL every process of the job: the descendants of the processes it started
        (torchrun's workers run in sessions of their own), the pids the workers printed
        (in case torchrun is gone), then the started processes."""
        pids = set(self.pids()) | _descendants({p.pid for p in self.procs})
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


@pytest.fixture(scope='module')
def jobs():
    started = {}
    try:
        started['torchrun_stop'] = Job('torchrun_stop', ['--stop-rank', '1'], torchrun=True)
        started['store_host_stop'] = Job('store_host_stop', ['--stop-rank', '0'],
                                         torchrun=False)
        started['dead_rank'] = Job(
            'dead_rank', ['--iters', '30', '--stop-rank', '1', '--stop-at', '-1',
                          '--signal', 'SIGKILL', '--slow-rank', '0', '--slow-seconds', '120'],
            torchrun=False)
        started['normal'] = Job(
            'normal', ['--iters', '30', '--slow-rank', '1',
                       '--slow-seconds', str(2.5 * WATCHDOG_TIMEOUT)], torchrun=True)
        started['no_watchdog'] = Job('no_watchdog', ['--stop-rank', '1',
                                                     '--watchdog-timeout', '0'],
                                     torchrun=False)
        yield started
    finally:
        for job in started.values():
            job.kill()


def test_torchrun_stopped_rank_ends_job(jobs):
    job = jobs['torchrun_stop']
    stopped_pid = job.pid_of(1)
    t_stop = job.wait_line(r'WD rank 1 SIGSTOP', START_LIMIT)
    t_msg = job.wait_line(r'vlp watchdog \(rank 0 of 2.*\): rank 1 stalled or dead',
                          WATCHDOG_TIMEOUT + MARGIN + 10)
    # torchrun sees rank 0 fail and starts the teardown
    t_down = job.wait_line(r'closing signal SIGTERM', 30)
    detect, down = t_msg - t_stop, t_down - t_stop
    print(f'\ntorchrun, rank 1 SIGSTOP: message after {detect:.1f} s, teardown after '
          f'{down:.1f} s (watchdog timeout {WATCHDOG_TIMEOUT:g} s)')
    assert WATCHDOG_TIMEOUT * 0.8 <= detect <= WATCHDOG_TIMEOUT + MARGIN, job.output()
    assert down <= WATCHDOG_TIMEOUT + MARGIN + 2, job.output()
    # torchrun would SIGKILL the stopped rank 30 s after its SIGTERM: do it now
    os.kill(stopped_pid, signal.SIGKILL)
    ended = job.wait_exit(0, time.monotonic() + 60)
    out = job.output()
    assert ended is not None and ended[1] != 0, out
    assert re.search(r'exitcode\s*:\s*75', out), out  # rank 0: the watchdog's exit code
    assert re.search(r'rank 1 \(host \S+, pid \d+, iteration|rank 1 \(host \S+, pid \d+\)',
                     out), out
    assert 'restart the job with --resume' in out


def test_store_host_stopped_ends_job(jobs):
    """Rank 0 hosts the store (no torchrun agent): its peer cannot reach it and ends."""
    job = jobs['store_host_stop']
    t_stop = job.wait_line(r'WD rank 0 SIGSTOP', START_LIMIT)
    exited = job.wait_exit(1, t_stop + WATCHDOG_TIMEOUT + MARGIN + 10)
    out = job.output()
    assert exited is not None, 'rank 1 still waits:\n' + out
    print(f'\nrank 0 (store host) SIGSTOP: rank 1 ended after {exited[0] - t_stop:.1f} s')
    assert exited[1] == 75, out
    assert WATCHDOG_TIMEOUT * 0.8 <= exited[0] - t_stop <= WATCHDOG_TIMEOUT + MARGIN, out
    assert re.search(r'\(rank 1 of 2.*\): rank 0 stalled or dead', out), out
    assert re.search(r'the c10d store at 127\.0\.0\.1:\d+ has not answered', out), out


def test_dead_rank_ends_job(jobs):
    """Rank 1 SIGKILLed and nobody reacts (its launcher is on another node) while rank 0
    validates (no collective in flight, so gloo cannot notice): rank 0 ends. (A rank that
    dies while its peers wait in a gloo collective fails them at once: 'Connection reset
    by peer'; a node that vanishes without closing its sockets does not.)"""
    job = jobs['dead_rank']
    t_stop = job.wait_line(r'WD rank 1 SIGKILL', START_LIMIT)
    exited = job.wait_exit(0, t_stop + WATCHDOG_TIMEOUT + MARGIN + 10)
    out = job.output()
    assert exited is not None, 'rank 0 still waits:\n' + out
    print(f'\nrank 1 SIGKILL: rank 0 ended after {exited[0] - t_stop:.1f} s')
    assert exited[1] == 75, out
    assert WATCHDOG_TIMEOUT * 0.8 <= exited[0] - t_stop <= WATCHDOG_TIMEOUT + MARGIN, out
    assert re.search(r'\(rank 0 of 2.*\): rank 1 stalled or dead', out), out


def test_normal_run_no_false_alarm(jobs):
    job = jobs['normal']
    exited = job.wait_exit(0, time.monotonic() + START_LIMIT + 3 * WATCHDOG_TIMEOUT + 30)
    out = job.output()
    assert exited is not None and exited[1] == 0, out
    assert 'WD rank 0 finished' in out and 'WD rank 1 finished' in out, out
    assert 'vlp watchdog' not in out, out
    # env_cfg.dist_cfg.timeout reaches the default group and groups made later
    assert f'timeouts: world {DIST_TIMEOUT} s, new group {DIST_TIMEOUT} s' in out, out


def test_without_watchdog_the_job_hangs(jobs):
    """The control: with ``watchdog=None`` the same stop leaves rank 0 waiting (for the
    300 s collective timeout), so the tests above measure the watchdog."""
    job = jobs['no_watchdog']
    t_stop = job.wait_line(r'WD rank 1 SIGSTOP', START_LIMIT)
    assert job.wait_exit(0, t_stop + WATCHDOG_TIMEOUT + MARGIN) is None, job.output()
    assert 'vlp watchdog' not in job.output()


# -- the parts, in this process ------------------------------------------------------------
def test_settings():
    from vlp.engine.watchdog import DEFAULT_TIMEOUT, resolve_watchdog_cfg
    assert resolve_watchdog_cfg({}) == dict(timeout=DEFAULT_TIMEOUT, interval=30.0, watch=2)
    # below the collectives' timeout (its latest alarm too), so it fires first
    dist = dict(env_cfg=dict(dist_cfg=dict(timeout=60)))
    assert resolve_watchdog_cfg(dist) == dict(timeout=48.0, interval=4.8, watch=2)
    assert resolve_watchdog_cfg(dict(dist, watchdog=dict(timeout=5)))['timeout'] == 5.0
    assert resolve_watchdog_cfg(dict(watchdog=dict(timeout=1)))['interval'] == 0.1
    for off in (None, False, dict(enable=False)):
        assert resolve_watchdog_cfg(dict(watchdog=off)) is None
    for bad, words in ((dict(timeout=-1), 'watchdog.timeout must be a positive'),
                       (dict(timeout=5, interval=5), 'must be shorter than'),
                       (dict(tiemout=5), "unknown keys ['tiemout']"),
                       (dict(watch=0), 'watchdog.watch must be')):
        with pytest.raises(ValueError, match=re.escape(words)):
            resolve_watchdog_cfg(dict(watchdog=bad))


def test_watchdog_logic_in_process():
    """Three ranks on one in-memory store: a rank that stops beating is named by the rank
    watching it; a rank that stops with ``done`` is not."""
    import torch.distributed as dist

    from vlp.engine.watchdog import RankWatchdog
    store = dist.HashStore()
    alarms = []
    dogs = [RankWatchdog(store, r, 3, timeout=0.6, interval=0.05,
                         on_stale=lambda m, r=r: alarms.append((r, m)),
                         progress=lambda: 'iteration 7') for r in range(3)]
    try:
        for d in dogs:
            d.start()
        assert dogs[0].watched == [1, 2] and dogs[2].watched == [0, 1]
        dogs[2].stop(done=True)  # finished: no alarm
        dogs[1].stop(done=False)  # silent: an alarm from rank 0 (rank 2 stopped watching)
        t0 = time.monotonic()
        while not alarms and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        assert len(alarms) == 1 and alarms[0][0] == 0, alarms
        assert 0.5 <= time.monotonic() - t0 <= 2.0
        message = alarms[0][1]
        assert 'rank 1 stalled or dead' in message and 'iteration 7' in message, message
        assert 'rank 2' not in message.split('\n')[0], message
    finally:
        for d in dogs:
            d.stop(done=False)


if __name__ == '__main__' and sys.argv[1:2] == ['worker']:
    sys.path.insert(0, REPO)
    worker(sys.argv[2:])
