"""A stalled or dead rank ends the job: a heartbeat watchdog for multi-process runs.

A collective waits for every rank. When one rank is stopped (SIGSTOP, a frozen node), dead
on a node that vanished, or cut off from the network, its peers wait in their next
collective until the backend's timeout, and only if every group has one: DeepSpeed's
data-parallel group had torch's 30-minute default whatever ``env_cfg.dist_cfg.timeout``
said (fixed in :func:`vlp.engine.dist.set_default_group_timeout`). Nor does a timeout
error of gloo or nccl say which rank is missing.

:class:`RankWatchdog` is what trusted trainers add. Per rank, two daemon threads:

- the *store* thread publishes a heartbeat into the job's c10d store every ``interval``
  seconds (the rendezvous TCPStore, through a connection of its own: ``Store.clone()``):
  a sequence number, the wall time, host, pid and training progress (mmengine's
  ``iter``/``epoch``), and reads the heartbeats of the next ``watch`` ranks on a ring
  (default 2: while any rank is live, a stalled one is seen by a live one, and the store's
  load grows with the number of ranks, not with its square);
- the *judge* thread never touches the store (a TCPStore call can block for good when the
  store's host is stopped, whatever its timeout: measured with torch 2.14) and decides:
  a watched rank whose heartbeat has not changed for ``timeout`` seconds, measured on this
  host's monotonic clock (host clocks need not agree), or a store that has not answered
  for ``timeout`` seconds (it lives in rank 0's process, or in the torchrun agent of the
  first node), is stalled. It then writes an error naming the rank(s) and what to do to
  stderr and the log, and ends this process with :data:`EXIT_CODE` (``os._exit``: the
  main thread may be blocked in a collective). The launcher (torchrun) sees a failed rank
  and ends the job.

The heartbeat says the *process* is alive, not that it makes progress: the threads beat
while the main thread validates, saves a checkpoint or waits, so long phases raise no
alarm. A rank that is alive but stuck (a deadlock, an endless loop, a collective that never
completes) is left to the backend's collective timeout, ``env_cfg.dist_cfg.timeout`` on
every group (gloo raises in the waiting rank; torch's NCCL watchdog aborts the process);
torch's defaults when it is not set: 30 min (gloo, and nccl through DeepSpeed), 10 min
(nccl). A rank that finishes says so in its last heartbeat (:meth:`RankWatchdog.stop`,
called by ``finish_launch`` after its barrier), so ranks that end earlier than others
raise no alarm either.

Settings (a top-level config key, all optional)::

    watchdog = dict(timeout=None, interval=None, watch=2)   # watchdog = None: off

``timeout`` defaults to 0.8 x ``env_cfg.dist_cfg.timeout`` when that is set (so the
watchdog, which names the rank, fires before the collectives' timeout), else
:data:`DEFAULT_TIMEOUT`; ``interval`` to ``timeout / 10`` (within [0.1, 30] s). A rank is
reported between ``timeout - interval`` and ``timeout + 2 * interval`` after its last
heartbeat; the launcher's teardown comes on top (torchrun 2.14 gives a stopped process
30 s to answer its SIGTERM before SIGKILL; a dead one is reaped at once).
"""
import datetime
import os
import socket
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

import torch.distributed as torch_dist

# Without ``watchdog.timeout`` the watchdog fires before the collectives' timeout (it names
# the rank; gloo's and nccl's timeout errors do not): at this fraction of
# ``env_cfg.dist_cfg.timeout``, whose latest alarm (timeout + 2 intervals = 0.96 x) still
# comes first, or at DEFAULT_TIMEOUT = 0.8 x torch's nccl default (10 min; gloo's: 30 min)
DIST_TIMEOUT_FRACTION = 0.8
DEFAULT_TIMEOUT = 480.0  # seconds
EXIT_CODE = 75  # EX_TEMPFAIL: the job may be restarted (--resume) once the rank is fixed
MIN_INTERVAL, MAX_INTERVAL = 0.1, 30.0
_PREFIX = 'vlp_watchdog'
_MSG = 'vlp watchdog'

_active: Optional['RankWatchdog'] = None
_generation = 0  # per process: all ranks start the same number of watchdogs


def _now_utc(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime(
        '%Y-%m-%d %H:%M:%S UTC')


def mmengine_progress() -> str:
    """``'iteration 57, epoch 2'`` from mmengine's message hub ('' before a runner)."""
    try:
        from mmengine.logging import MessageHub
        if not MessageHub._instance_dict:  # do not create one from this thread
            return ''
        hub = MessageHub.get_current_instance()
        parts = [f'{name} {hub.get_info(key)}' for key, name in
                 (('iter', 'iteration'), ('epoch', 'epoch')) if hub.get_info(key) is not None]
        return ', '.join(parts)
    except Exception:  # progress is decoration: never let it stop the heartbeat
        return ''


def end_process(message: str) -> None:
    """Write ``message`` (stderr first: no lock can block it; then the log file) and end
    this process with :data:`EXIT_CODE`."""
    try:
        os.write(2, ('\n' + message + '\n').encode('utf-8', 'replace'))
    except OSError:
        pass

    def log():
        try:
            from mmengine.logging import MMLogger
            if MMLogger._instance_dict:
                MMLogger.get_current_instance().error(message)
        except Exception:
            pass

    # the logger takes locks the blocked main thread may hold: give it 2 s at most
    thread = threading.Thread(target=log, daemon=True)
    thread.start()
    thread.join(2.0)
    os._exit(EXIT_CODE)


class RankWatchdog:
    """Heartbeat publisher and checker of one rank (see the module docstring).

    Args:
        store: a c10d ``Store`` shared by the ranks, used by this object only (give it a
            prefix; :func:`start_watchdog` passes a clone of the default group's store).
        rank, world_size: this rank and the number of ranks.
        timeout: seconds without a heartbeat (or without reaching the store) after which
            a rank counts as stalled.
        interval: seconds between heartbeats/checks (default ``timeout / 10``, clamped
            to [0.1, 30]).
        watch: how many following ranks on the ring this rank checks (at most
            ``world_size - 1``).
        store_desc: how to name the store in messages (``'127.0.0.1:29500'``).
        on_stale: called with the error message when a rank is stalled; the default ends
            the process (:func:`end_process`). A callback that returns lets the watchdog
            stop.
        progress: returns a short progress text for the heartbeat (default: mmengine's
            iteration/epoch).
    """

    def __init__(self, store, rank: int, world_size: int, timeout: float,
                 interval: Optional[float] = None, watch: int = 2, store_desc: str = '',
                 on_stale: Optional[Callable[[str], None]] = None,
                 progress: Optional[Callable[[], str]] = None):
        if world_size < 2:
            raise ValueError('RankWatchdog needs at least 2 ranks')
        self.store, self.rank, self.world_size = store, rank, world_size
        self.timeout = float(timeout)
        self.interval = float(interval) if interval else default_interval(self.timeout)
        self.watched = [(rank + k) % world_size
                        for k in range(1, min(max(int(watch), 1), world_size - 1) + 1)]
        self.store_desc = store_desc or 'the c10d store'
        self.on_stale = on_stale or end_process
        self.progress = progress or mmengine_progress
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._seq = 0
        self._lock = threading.Lock()
        self._seen: Dict[int, str] = {}  # rank -> last heartbeat value read
        self._changed: Dict[int, float] = {}  # rank -> monotonic time it last changed
        self._done: set = set()  # ranks whose last heartbeat says they finished
        self._last_store_ok = time.monotonic()
        self._last_error: Optional[Exception] = None
        self._publish_done = False
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> 'RankWatchdog':
        now = time.monotonic()
        self._last_store_ok = now
        for r in self.watched:  # a rank that never beats is stale `timeout` after start
            self._changed[r] = now
        self._beat()  # synchronously: a store that fails now fails the start, loudly
        self._threads = [
            threading.Thread(target=self._exchange_loop, name='vlp-watchdog-store',
                             daemon=True),
            threading.Thread(target=self._judge_loop, name='vlp-watchdog', daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, done: bool = True) -> None:
        """Stop the threads; with ``done`` the last heartbeat tells the other ranks this
        one finished (they stop watching it). Never blocks for long: a store that does not
        answer is left to the (daemon) thread."""
        self._publish_done = done
        self._stop.set()
        for thread in self._threads:  # both wake at once; the store thread then publishes
            if thread is not threading.current_thread():
                thread.join(5.0)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    # -- thread 1: the store (its calls may block for good when the store's host stops) ----
    def _beat(self, done: bool = False) -> None:
        self._seq += 1
        state = 'done' if done else 'alive'
        value = (f'{self._seq} {time.time():.3f} {state} {self.host} {self.pid} '
                 f'{self.progress()}')
        self.store.set(self._key(self.rank), value)

    @staticmethod
    def _key(rank: int) -> str:
        return f'beat/{rank}'

    def exchange(self) -> None:
        """One round with the store: publish this rank's heartbeat, read the watched ones."""
        self._beat()
        for r in self.watched:
            key = self._key(r)
            # get() of a missing key would wait for it: check() does not
            value = self.store.get(key).decode() if self.store.check([key]) else ''
            with self._lock:
                if value != self._seen.get(r):
                    self._seen[r], self._changed[r] = value, time.monotonic()
                if value.split(' ')[2:3] == ['done']:
                    self._done.add(r)
        with self._lock:
            self._last_store_ok = time.monotonic()

    def _exchange_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.exchange()
            except Exception as exc:  # noqa: BLE001  (DistStoreError, DistNetworkError...)
                self._last_error = exc
            if self._stop.wait(self.interval):
                break
        if self._publish_done:
            try:
                self._beat(done=True)
            except Exception as exc:  # noqa: BLE001
                print(f'{_MSG}: rank {self.rank} could not mark itself done ({exc})',
                      file=sys.stderr, flush=True)

    # -- thread 2: the verdict (never touches the store, so it cannot block) --------------
    def _judge_loop(self) -> None:
        while not self._stop.wait(self.interval):
            message = self.verdict()
            if message and not self._stop.is_set():
                self.on_stale(message)
                return

    def verdict(self) -> Optional[str]:
        """The error message when a watched rank or the store has been silent for more than
        ``timeout`` seconds, else ``None``."""
        now = time.monotonic()
        with self._lock:
            store_silent = now - self._last_store_ok
            stale = [r for r in self.watched
                     if r not in self._done and now - self._changed[r] > self.timeout]
        if store_silent > self.timeout and not stale:
            return self._store_message(store_silent)
        return self._stale_message(stale, store_silent) if stale else None

    # -- messages ----------------------------------------------------------------------------
    def _whoami(self) -> str:
        return (f'{_MSG} (rank {self.rank} of {self.world_size}, host {self.host}, '
                f'pid {self.pid})')

    def _describe(self, r: int) -> str:
        silent = time.monotonic() - self._changed[r]
        value = self._seen.get(r) or ''
        if not value:
            return (f'rank {r}: no heartbeat at all in {silent:.1f} s (it never started '
                    'its watchdog, or died or stopped before)')
        seq, wall, state, host, pid, *progress = value.split(' ')
        where = ', '.join(p for p in [f'host {host}', f'pid {pid}', ' '.join(progress)] if p)
        return (f'rank {r} ({where}): no heartbeat for {silent:.1f} s, last one at '
                f'{_now_utc(float(wall))}')

    def _ending(self) -> str:
        return (f'Ending this process (exit code {EXIT_CODE}) so that the launcher '
                f'(torchrun) ends the job. Limit: {self.timeout:g} s (config '
                '`watchdog.timeout`; default 0.8 x `env_cfg.dist_cfg.timeout`, else '
                f'{DEFAULT_TIMEOUT:g} s; `watchdog=None` switches the watchdog off).')

    def _stale_message(self, stale: List[int], store_silent: float) -> str:
        names = ', '.join(str(r) for r in stale)
        lines = [f'{self._whoami()}: rank {names} stalled or dead.']
        lines += ['  ' + self._describe(r) for r in stale]
        if store_silent > 3 * self.interval:
            lines.append(f'  {self.store_desc} has not answered for {store_silent:.1f} s '
                         'either (it lives in rank 0\'s process, or in the torchrun agent '
                         'of the first node).')
        lines.append(
            f'A rank that sends no heartbeat is stopped (SIGSTOP, a frozen node), killed '
            f'(OOM killer, a lost node) or cut off from {self.store_desc}. What to do: '
            f'look at rank {names} on its host (process state, `dmesg` for the OOM killer, '
            'the node\'s health), then restart the job with --resume.')
        lines.append(self._ending())
        return '\n'.join(lines)

    def _store_message(self, silent: float) -> str:
        exc = self._last_error
        error = ''
        if exc is not None:
            text = str(exc).strip()
            error = f'; last error: {type(exc).__name__}: {text.splitlines()[0] if text else ""}'
        return '\n'.join([
            f'{self._whoami()}: rank 0 stalled or dead: {self.store_desc} has not answered '
            f'for {silent:.1f} s{error}.',
            'The store lives in rank 0\'s process (or, under torchrun, in the agent of '
            'the first node): it is stopped, dead or unreachable from this host. What to '
            'do: look at rank 0 and the first node (process state, `dmesg`, network), then '
            'restart the job with --resume.',
            self._ending()])


# -- the job's watchdog -------------------------------------------------------------------
def default_interval(timeout: float) -> float:
    return min(max(timeout / 10.0, MIN_INTERVAL), MAX_INTERVAL)


def resolve_watchdog_cfg(cfg) -> Optional[dict]:
    """The watchdog settings of a config: ``dict(timeout, interval, watch)`` in seconds,
    or ``None`` when ``watchdog=None`` (or ``False``, or ``enable=False``) turns it off."""
    if 'watchdog' in cfg and not cfg['watchdog']:
        return None
    wd = dict(cfg.get('watchdog') or {})
    unknown = set(wd) - {'enable', 'timeout', 'interval', 'watch'}
    if unknown:
        raise ValueError(f'watchdog: unknown keys {sorted(unknown)}; it takes enable, '
                         'timeout, interval and watch')
    if not wd.pop('enable', True):
        return None
    timeout = wd.get('timeout')
    if timeout is None:
        dist_timeout = ((cfg.get('env_cfg') or {}).get('dist_cfg') or {}).get('timeout')
        if isinstance(dist_timeout, datetime.timedelta):
            dist_timeout = dist_timeout.total_seconds()
        timeout = DEFAULT_TIMEOUT if dist_timeout is None else \
            DIST_TIMEOUT_FRACTION * dist_timeout
    for key, value in (('timeout', timeout), ('interval', wd.get('interval'))):
        if value is not None and (isinstance(value, bool) or
                                  not isinstance(value, (int, float)) or value <= 0):
            raise ValueError(f'watchdog.{key} must be a positive number of seconds, '
                             f'got {value!r}')
    interval = wd.get('interval') or default_interval(float(timeout))
    if interval >= timeout:
        raise ValueError(f'watchdog.interval ({interval} s) must be shorter than '
                         f'watchdog.timeout ({timeout} s)')
    watch = wd.get('watch', 2)
    if isinstance(watch, bool) or not isinstance(watch, int) or watch < 1:
        raise ValueError(f'watchdog.watch must be a positive integer, got {watch!r}')
    return dict(timeout=float(timeout), interval=float(interval), watch=watch)


def _job_store(op_timeout: float):
    """A connection of this thread's own to the default group's store (a clone: the
    group's connection and its timeout stay untouched), under a per-attempt prefix."""
    from torch.distributed.distributed_c10d import _get_default_store
    base = _get_default_store()
    try:
        store = base.clone()
        store.set_timeout(datetime.timedelta(seconds=op_timeout))
    except (RuntimeError, NotImplementedError):  # a store without clone (File/HashStore):
        store = base  # no server process that could stop, so sharing it is harmless
    inner = base
    while isinstance(inner, torch_dist.PrefixStore):
        inner = inner.underlying_store
    desc = (f'the c10d store at {inner.host}:{inner.port}'
            if isinstance(inner, torch_dist.TCPStore) else f'the c10d {type(inner).__name__}')
    attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
    return torch_dist.PrefixStore(f'{_PREFIX}/{attempt}/{_generation}/', store), desc


def start_watchdog(cfg) -> Optional[RankWatchdog]:
    """Start the watchdog of this rank for a multi-process run (after the process group
    exists; a no-op for one process, when it is off, or when one is running)."""
    global _active, _generation
    if _active is not None and _active.running:
        return _active
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return None
    world_size = torch_dist.get_world_size()
    settings = resolve_watchdog_cfg(cfg)
    if settings is None or world_size < 2:
        return None
    _generation += 1
    # bounds the store calls that honour it (a call to a stopped store's host may not:
    # the judge thread does not wait for them)
    op_timeout = max(min(settings['timeout'] / 4.0, 60.0), 0.5)
    store, desc = _job_store(op_timeout)
    _active = RankWatchdog(store, torch_dist.get_rank(), world_size, settings['timeout'],
                           settings['interval'], settings['watch'], store_desc=desc).start()
    return _active


def stop_watchdog(done: bool = True) -> None:
    """Stop this rank's watchdog (see :meth:`RankWatchdog.stop`); a no-op without one."""
    global _active
    if _active is not None:
        _active.stop(done=done)
        _active = None
