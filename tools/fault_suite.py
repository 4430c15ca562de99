"""The fault suite: inject the faults of docs/reliability.md into real training runs and
measure what survives. The fast cases are in the test suite (tests/engine/test_reliability.py,
test_exact_resume.py, test_safe_loading.py, test_watchdog.py, tests/datasets/test_bad_data.py);
this script runs the slow ones end to end and writes the table docs/reliability.md quotes.

    python tools/fault_suite.py                       # every scenario
    python tools/fault_suite.py --only kill nan --kills 12 --out work_dirs/fault_suite

Scenarios (each on a small CLIP demo: the shipped config with tiny sizes, 2 DataLoader
workers, persistent, random captions and crops; 6 epochs of 6 iterations):

- ``kill``: ``--kills`` SIGKILLs at random moments of a run that saves every iteration with
  ``max_keep_ckpts=1`` (some land inside a save); after each, ``--resume``. The run must finish
  with every iteration's loss equal to an uninterrupted run's, and the same test metrics.
- ``disk_full``: the work dir on a tmpfs too small for the checkpoints (Linux, root: skipped
  otherwise); the run must stop with an error naming the file and the bytes needed, keep the
  previous checkpoint, and, once space is freed, resume to the uninterrupted result.
- ``nan``: ``optim_wrapper.optimizer.lr=1e4``: the run must exit non-zero, name the iteration,
  and leave no checkpoint with NaN/inf weights.
- ``stall``: two ranks, one SIGSTOPped mid-training: the job must end within the watchdog
  timeout plus a margin, naming the rank.

Writes ``<out>/fault_suite.json`` and prints a markdown table.
"""
import argparse
import glob
import json
import os
import os.path as osp
import random
import shutil
import signal
import subprocess
import sys
import time

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, ROOT)

BASE = osp.join(ROOT, 'configs/clip/clip_tiny_demo.py')
SMALL_CONFIG = """
_base_ = [{base!r}]
tok = dict(type='DemoTokenizer', style='clip', max_length=32)
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    dataset=dict(num_images=48, image_size=32, pipeline=[
        dict(type='RandomResizedCrop', size=32, scale=(0.5, 1.0)),
        dict(type='RandomHorizontalFlip', prob=0.5), dict(type='ToTensor'),
        dict(type='Tokenize', tokenizer=tok)]))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(num_images=40, image_size=32))
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(num_images=40, image_size=32))
model = dict(vision=dict(img_size=32, embed_dim=32, depth=1, num_heads=2),
             text=dict(width=32, layers=1, heads=2),
             vision_proj=dict(in_dim=32), text_proj=dict(in_dim=32))
train_cfg = dict(max_epochs=6, val_interval=6)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
                   dict(type='CosineAnnealingLR', by_epoch=False, begin=4, end=36)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, by_epoch=False, max_keep_ckpts=1))
log_processor = dict(window_size=1)
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
"""
CONFIG = None  # written into the output folder by main()
ITERS = 36


def _env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))


def _train_cmd(work_dir, *extra, options=()):
    cmd = [sys.executable, osp.join(ROOT, 'tools/train.py'), CONFIG, '--work-dir', work_dir,
           *extra]
    return cmd + (['--cfg-options', *options] if options else [])


def _losses(work_dir):
    """Per-iteration loss, the last value written for each iteration (runs in time order)."""
    out = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')),
                       key=lambda p: osp.getmtime(p)):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'loss' in rec and 'step' in rec:
                    out[int(rec['step'])] = rec['loss']
    return out


def _test_metrics(work_dir):
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)
    logs = [p for p in logs if osp.basename(osp.dirname(p)) + '.json' == osp.basename(p)]
    if not logs:
        return None
    with open(logs[-1]) as f:
        lines = f.read().strip().splitlines()
    if not lines:
        return None
    # the metrics, not the timings of the test loop
    return {k: v for k, v in json.loads(lines[-1]).items() if k not in ('time', 'data_time')}


def _run(cmd, log, timeout=1800):
    with open(log, 'a') as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT,
                              timeout=timeout).returncode


def uninterrupted(out):
    work = osp.join(out, 'uninterrupted')
    if not osp.exists(osp.join(work, 'done')):
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        rc = _run(_train_cmd(work), osp.join(work, 'log.txt'))
        if rc != 0:
            raise RuntimeError(f'the uninterrupted run failed: {work}/log.txt')
        open(osp.join(work, 'done'), 'w').close()
    return _losses(work), _test_metrics(work)


def scenario_kill(out, kills, seed=0):
    from vlp.engine.hooks.checkpoint import find_resumable_checkpoint
    ref_losses, ref_metrics = uninterrupted(out)
    work = osp.join(out, 'kill')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log = osp.join(work, 'log.txt')
    rng = random.Random(seed)
    hit_save, resumed_from, n = 0, [], 0
    while n < kills:
        args = ['--resume'] if n else []
        with open(log, 'a') as f:
            proc = subprocess.Popen(_train_cmd(work, *args), stdout=f, stderr=subprocess.STDOUT,
                                    env=_env(), cwd=ROOT, start_new_session=True)
        # kill after a random number (1-4) of new checkpoints, at a random moment after the
        # last one (an iteration takes ~0.1-0.3 s here, a save a few ms)
        wait_for = rng.randint(1, 4)
        seen = set(glob.glob(osp.join(work, 'iter_*.pth')))
        deadline = time.time() + 600
        while proc.poll() is None and wait_for > 0 and time.time() < deadline:
            now = set(glob.glob(osp.join(work, 'iter_*.pth')))
            if now - seen:
                wait_for -= 1
                seen = now
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break  # finished before the kill
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        n += 1
        if any('.partial' in p for p in os.listdir(work)):
            hit_save += 1
        ckpt = find_resumable_checkpoint(work)
        resumed_from.append(osp.basename(ckpt) if ckpt else None)
    rc = _run(_train_cmd(work, '--resume'), log)
    losses, metrics = _losses(work), _test_metrics(work)
    differ = [i for i in ref_losses if losses.get(i) != ref_losses[i]]
    return dict(scenario='kill -9 at random moments (checkpoint every iteration, '
                'max_keep_ckpts=1)', injected=n, landed_in_a_save=hit_save,
                resumed_from=resumed_from, final_exit_code=rc,
                iterations=len(ref_losses), iterations_differing=len(differ),
                test_metrics_equal=metrics == ref_metrics,
                survived=n if rc == 0 and not differ and metrics == ref_metrics else 0)


def scenario_disk_full(out):
    """The work dir on a tmpfs; once the first checkpoint exists, a filler file leaves half
    a checkpoint of free space, so the next save fails; then the filler goes and --resume."""
    ref_losses, ref_metrics = uninterrupted(out)
    work = osp.join(out, 'disk_full')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    ckpt_bytes = os.path.getsize(glob.glob(osp.join(out, 'uninterrupted', 'iter_*.pth'))[0])
    size_kb = (ckpt_bytes * 20 + (8 << 20)) // 1024
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size_kb}k', 'tmpfs', work],
                      capture_output=True).returncode != 0:
        return dict(scenario='disk full (tmpfs)', skipped='cannot mount a tmpfs here (needs root)')
    try:
        log = osp.join(out, 'disk_full_log.txt')
        with open(log, 'w') as f:
            proc = subprocess.Popen(_train_cmd(work), stdout=f, stderr=subprocess.STDOUT,
                                    env=_env(), cwd=ROOT)
        while proc.poll() is None and not glob.glob(osp.join(work, 'iter_*.pth')):
            time.sleep(0.01)
        filler = osp.join(work, 'filler.bin')
        free = shutil.disk_usage(work).free
        with open(filler, 'wb') as f:  # leave half a checkpoint free
            f.truncate(0)
            f.write(b'\0' * max(0, free - ckpt_bytes // 2))
        rc = proc.wait()
        with open(log) as f:
            text = f.read()
        named = [ln for ln in text.splitlines() if 'bytes needed' in ln]
        kept = [p for p in os.listdir(work) if p.startswith('iter_')]
        partial = [p for p in os.listdir(work) if '.partial' in p]
        os.remove(filler)  # space freed
        rc2 = _run(_train_cmd(work, '--resume'), log)
        losses, metrics = _losses(work), _test_metrics(work)
        differ = [i for i in ref_losses if losses.get(i) != ref_losses[i]]
        return dict(scenario='disk full during a save (tmpfs, max_keep_ckpts=1)', injected=1,
                    first_exit_code=rc, message=named[-1][-300:] if named else None,
                    checkpoints_left=kept, temporaries_left=partial, resumed_exit_code=rc2,
                    iterations_differing=len(differ), test_metrics_equal=metrics == ref_metrics,
                    survived=int(rc != 0 and bool(named) and len(kept) == 1 and not partial
                                 and rc2 == 0 and not differ and metrics == ref_metrics))
    finally:
        subprocess.run(['umount', work], capture_output=True)


def scenario_nan(out):
    import torch
    work = osp.join(out, 'nan')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log = osp.join(work, 'log.txt')
    cmd = _train_cmd(work, options=['optim_wrapper.optimizer.lr=1e4',
                                    'optim_wrapper.clip_grad=None'])
    rc = _run(cmd, log)
    with open(log) as f:
        text = f.read()
    bad = 0
    ckpts = glob.glob(osp.join(work, 'iter_*.pth'))
    for c in ckpts:
        state = torch.load(c, map_location='cpu', weights_only=False)['state_dict']
        bad += sum(not torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    stop = [ln for ln in text.splitlines() if 'NonFiniteError' in ln]
    return dict(scenario='lr=1e4 (NaN losses)', injected=1, exit_code=rc,
                message=stop[-1][-300:] if stop else None, checkpoints=len(ckpts),
                non_finite_tensors_in_checkpoints=bad, survived=int(rc != 0 and bad == 0))


def scenario_stall(out, timeout=20):
    work = osp.join(out, 'stall')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log = osp.join(work, 'log.txt')
    cmd = ['bash', osp.join(ROOT, 'tools/dist_train.sh'), CONFIG, '2', '--work-dir', work,
           '--cfg-options', 'train_cfg.max_epochs=50', 'train_dataloader.batch_size=4',
           f'watchdog.timeout={timeout}']
    env = dict(_env(), PYTHON=sys.executable, MASTER_PORT=str(29500 + random.randint(1, 999)))
    with open(log, 'w') as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
    deadline = time.time() + 600
    while not glob.glob(osp.join(work, 'iter_*.pth')) and time.time() < deadline:
        time.sleep(0.2)
    # the rank processes are torchrun's children running train.py (their DataLoader workers
    # are the ranks' children: a stopped worker would be a hung-but-alive rank instead)
    torchrun = subprocess.run(['pgrep', '-f', 'torch.distributed.run'], capture_output=True,
                              text=True).stdout.split()
    pids = []
    for parent in torchrun:
        pids += [int(p) for p in subprocess.run(['pgrep', '-P', parent], capture_output=True,
                                                text=True).stdout.split()]
    victim = max(pids) if pids else None
    stopped_at = time.time()
    if victim:
        os.kill(victim, signal.SIGSTOP)
    try:
        proc.wait(timeout=timeout + 300)
        ended = time.time() - stopped_at
    except subprocess.TimeoutExpired:
        ended = None
    finally:
        if victim:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with open(log) as f:
        text = f.read()
    named = [ln for ln in text.splitlines() if 'rank' in ln and ('stall' in ln or 'silent' in ln)]
    return dict(scenario=f'one of 2 ranks SIGSTOPped (timeout {timeout} s)', injected=1,
                exit_code=proc.returncode, seconds_to_end=None if ended is None else round(ended, 1),
                message=named[-1][-300:] if named else None,
                survived=int(ended is not None and proc.returncode != 0 and bool(named)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--only', nargs='+', choices=['kill', 'disk_full', 'nan', 'stall'],
                   default=['kill', 'disk_full', 'nan', 'stall'])
    p.add_argument('--kills', type=int, default=8)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='work_dirs/fault_suite')
    args = p.parse_args(argv)
    out = osp.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    global CONFIG
    CONFIG = osp.join(out, 'clip_small.py')
    with open(CONFIG, 'w') as f:
        f.write(SMALL_CONFIG.format(base=BASE))
    results = []
    for name in args.only:
        t0 = time.time()
        res = dict(kill=lambda: scenario_kill(out, args.kills, args.seed),
                   disk_full=lambda: scenario_disk_full(out),
                   nan=lambda: scenario_nan(out),
                   stall=lambda: scenario_stall(out))[name]()
        res['seconds'] = round(time.time() - t0, 1)
        results.append(res)
        print(json.dumps(res), flush=True)
    with open(osp.join(out, 'fault_suite.json'), 'w') as f:
        json.dump(results, f, indent=1)
    print('\n| scenario | injected | survived | details |\n|---|---|---|---|')
    for r in results:
        details = {k: v for k, v in r.items() if k not in ('scenario', 'injected', 'survived')}
        print(f"| {r['scenario']} | {r.get('injected', '-')} | {r.get('survived', '-')} | "
              f"{json.dumps(details)} |")
    return results


if __name__ == '__main__':
    main()
