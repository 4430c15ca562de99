"""Rerun the tiny demos, tabulate their figures over seeds, and check the documented ones.

    python tools/run_demos.py [--only NAME ...] [--seeds 0 1 2] [--out DIR]
        [--threads N] [--cfg-options key=value ...] [--table FILE] [--check]
        [--tolerance 2.0] [--range-slack 0.0] [--write-docs] [--reuse]
    python tools/run_demos.py --from-table FILE.json [--check] [--write-docs]
    python tools/run_demos.py --check-docs          # the docs' tables equal the figures file

Every demo config (``configs/**/*_tiny_demo.py``) is trained by ``tools/train.py`` in a
subprocess from a clean work dir ``<out>/seed<S>/<demo>``, with ``randomness.seed=S`` and
``randomness.deterministic=True``. A demo that starts from another demo's work dir (a task
demo's ``model.pretrained='work_dirs/albef_tiny_demo'``, BLIP-2 stage 2's stage-1
checkpoint) is pointed at that demo's run of the same seed, and ``--only`` adds the demos
it needs. Per run it records the test metrics (the JSON that mmengine's ``LoggerHook``
writes to ``<work_dir>/<timestamp>/<timestamp>.json`` after ``test_after_train``; a demo
without a test split, the BEiT-3 MIM demo, gives its last logged training accuracies),
the wall-clock time, the peak RSS of its largest process (``os.wait4``'s ``ru_maxrss``:
the training process or one of its DataLoader workers) and a digest of the final weights
(equal digests for equal seeds: the run was bitwise reproducible).

Writes ``<table>.json`` (every run and, per demo and metric, mean / min / max over the
seeds) and ``<table>.md`` (the same, beside the documented figures), and prints the
comparison. ``--check`` exits 1 when a rerun figure (its mean over the seeds run) is outside
the documented range: ``[min - slack, max + slack]`` for figures measured over several seeds
(``--range-slack``, default 0), ``documented +- tolerance`` for single-run figures
(``--tolerance``, default the figures file's ``tolerance_points``, 2 points). A point is 1
for percentages (R@K, accuracies) and 0.01 for figures on a 0-1 scale (BLEU, CIDEr, the
MIM/MLM accuracies), see ``point_of``.

The documented figures live in ONE file, ``docs/demo_figures.json``. README.md,
docs/models.md and docs/demos.md quote it between ``<!-- demo-table:begin -->`` and
``<!-- demo-table:end -->``; ``--write-docs`` replaces the figures of the demos just run
(or those of ``--from-table``) with the measured mean and range and regenerates those
blocks; ``--check-docs`` (and tests/tools/test_run_demos.py) fails when a block differs
from what the file renders to. A figure quoted in prose is an inline marker,
``<!-- fig DEMO METRIC -->51.6<!-- /fig -->`` (``METRIC``: a metric of the figures file,
``wall`` or ``rss``), which ``--write-docs`` rewrites and ``--check-docs`` checks in
README.md and docs/*.md alike. docs/demos.md explains the table.
"""
import argparse
import datetime
import glob
import hashlib
import json
import math
import os
import os.path as osp
import platform
import re
import shutil
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
DEFAULT_FIGURES = osp.join(ROOT, 'docs', 'demo_figures.json')
DOC_FILES = ('README.md', 'docs/models.md', 'docs/demos.md')
BEGIN = '<!-- demo-table:begin -->'
END = '<!-- demo-table:end -->'
#: a figure quoted in prose: <!-- fig DEMO METRIC -->TEXT<!-- /fig -->
INLINE = re.compile(r'<!-- fig (\S+) (\S+) -->(.*?)<!-- /fig -->')
INLINE_DOCS = ('README.md', 'docs/*.md')  # where the default --docs look for inline figures
MARKER = '.run_demos'  # in every work dir this tool made (it only ever deletes those)
TABLE_FORMAT = 'vlp-demo-table/1'
FIGURES_FORMAT = 'vlp-demo-figures/1'
DEFAULT_TOLERANCE = 2.0

# Short names of the metrics the docs quote. A metric not listed is still measured and
# stored; the docs quote the HEADLINE ones (below) in this order.
LABELS = {
    'retrieval/itc_txt_r1': 'ITC image->text R@1',
    'retrieval/itc_img_r1': 'ITC text->image R@1',
    'retrieval/txt_r1': 'image->text R@1',
    'retrieval/img_r1': 'text->image R@1',
    'caption/BLEU_4': 'BLEU-4',
    'caption/CIDEr': 'CIDEr',
    'vqa/accuracy': 'VQA accuracy',
    'classification/accuracy': 'accuracy',
    'train/acc_mim': 'final acc_mim',
    'train/acc_mlm': 'final acc_mlm',
    'train/acc_pair_mlm': 'final acc_pair_mlm',
}
HEADLINE = tuple(LABELS)
RERANKED_LABELS = {'retrieval/txt_r1': 'ITM re-ranked image->text R@1',
                   'retrieval/img_r1': 'ITM re-ranked text->image R@1'}
TIMING_KEYS = ('data_time', 'time')


# -- small helpers ------------------------------------------------------------------------
def point_of(metric: str) -> float:
    """One "point" of a metric: 0.01 for the 0-1 figures (BLEU, CIDEr, training
    accuracies), 1 for the percentages (recall, accuracy)."""
    if metric.startswith('caption/') or metric.startswith('train/'):
        return 0.01
    return 1.0


def fmt_value(metric: str, value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:.3f}' if point_of(metric) < 1 else f'{value:.1f}'


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return '-'
    s = int(round(seconds))
    return f'{s // 60} min {s % 60:02d} s' if s >= 60 else f'{s} s'


def fmt_mb(mb: Optional[float]) -> str:
    if mb is None:
        return '-'
    return f'{mb / 1024:.1f} GB' if mb >= 1024 else f'{mb:.0f} MB'


def stats(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    return dict(mean=sum(values) / len(values), min=min(values), max=max(values),
                values=values)


_RECALL = re.compile(r'^retrieval/(itc_)?(txt|img)_r(\d+)$')


def label_of(metric: str, metrics: Iterable[str]) -> str:
    """A reader's name for a metric key (``retrieval/txt_r1`` -> ``image->text R@1``;
    with ITC figures beside it, the re-ranked one is named so)."""
    if metric in RERANKED_LABELS and any(m.startswith('retrieval/itc_') for m in metrics):
        return RERANKED_LABELS[metric]
    if metric in LABELS:
        return LABELS[metric]
    m = _RECALL.match(metric)
    if m:
        direction = 'image->text' if m.group(2) == 'txt' else 'text->image'
        reranked = 'ITM re-ranked ' if not m.group(1) and any(
            k.startswith('retrieval/itc_') for k in metrics) else ''
        return f'{"ITC " if m.group(1) else reranked}{direction} R@{m.group(3)}'
    return metric


def ordered(metrics: Iterable[str]) -> List[str]:
    """The headline metrics first (in ``HEADLINE`` order), then the others sorted."""
    metrics = list(metrics)
    return [m for m in HEADLINE if m in metrics] + sorted(m for m in metrics if m not in HEADLINE)


def headline_metrics(metrics: dict) -> List[str]:
    return [m for m in HEADLINE if m in metrics]


def rel(path: str) -> str:
    path = osp.abspath(path)
    return osp.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


# -- the demos and their order ------------------------------------------------------------
def discover(root: str = ROOT) -> Dict[str, str]:
    """``{demo name: config path relative to root}`` for every ``*_tiny_demo.py``."""
    paths = sorted(glob.glob(osp.join(root, 'configs', '**', '*_tiny_demo.py'), recursive=True))
    return {osp.splitext(osp.basename(p))[0]: osp.relpath(p, root) for p in paths}


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, path + (str(k),))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, path + (str(i),))
    else:
        yield path, node


_WORK_DIR_REF = re.compile(r'^(?:\./)?work_dirs/([^/]+)(/.*)?$')


def dependencies(config: str, demos: Dict[str, str]) -> List[Tuple[str, str, str]]:
    """``[(config key, demo name, rest of the path)]``: the settings of ``config`` that read
    another demo's work dir (``work_dirs/<demo>...``). A top-level variable of the file
    (``stage1_checkpoint = 'work_dirs/...'``) is not one: its value is already substituted
    where the file uses it, and ``--cfg-options`` refuses to set it."""
    from mmengine.config import Config
    from vlp.engine.config_check import top_level_keys
    cfg = Config.fromfile(osp.join(ROOT, config))
    found, read = [], top_level_keys()
    for path, value in _walk(cfg.to_dict()):
        if isinstance(value, str) and path[0] in read:
            m = _WORK_DIR_REF.match(value)
            if m and m.group(1) in demos:
                if any(p.isdigit() for p in path):
                    raise ValueError(f'{config}: {".".join(path)} reads {value} inside a list; '
                                     'run_demos.py can only redirect dict keys')
                found.append(('.'.join(path), m.group(1), m.group(2) or ''))
    return found


def plan(demos: Dict[str, str], only: Optional[Sequence[str]]) -> Tuple[List[str], dict]:
    """The demos to run (``only`` and what they need), each after the demos it reads, and
    ``{demo: dependencies(...)}``."""
    if only:
        wanted = []
        for name in only:
            key = osp.splitext(osp.basename(name))[0]
            if key not in demos and key + '_tiny_demo' in demos:
                key += '_tiny_demo'
            if key not in demos:
                raise SystemExit(f'run_demos.py: error: no demo {name!r}; demos: '
                                 + ', '.join(demos))
            wanted.append(key)
    else:
        wanted = list(demos)
    deps: Dict[str, list] = {}
    order: List[str] = []

    def visit(name, stack=()):
        if name in order:
            return
        if name in stack:
            raise SystemExit(f'run_demos.py: error: demos read each other: {stack + (name,)}')
        if name not in deps:
            deps[name] = dependencies(demos[name], demos)
        for _, dep, _ in deps[name]:
            visit(dep, stack + (name,))
        order.append(name)

    for name in wanted:
        visit(name)
    return order, deps


# -- one run ------------------------------------------------------------------------------
def find_test_json(work_dir: str) -> Optional[str]:
    """``<work_dir>/<timestamp>/<timestamp>.json`` of the newest run (the test metrics)."""
    found = []
    for d in glob.glob(osp.join(work_dir, '*')):
        ts = osp.basename(d)
        if re.fullmatch(r'\d{8}_\d{6}', ts) and osp.isfile(osp.join(d, ts + '.json')):
            found.append(osp.join(d, ts + '.json'))
    return max(found) if found else None


def read_metrics(work_dir: str) -> Tuple[dict, str]:
    """``(metrics, where)``: the test metrics, or, for a demo without a test split, the
    training accuracies of the last logged iteration (``train/acc_*``)."""
    path = find_test_json(work_dir)
    if path is not None:
        with open(path) as f:
            text = f.read().strip()
        # one JSON object per test run (a rerun of tools/test.py appends another)
        record = json.loads(text.splitlines()[-1])
        metrics = {k: float(v) for k, v in record.items()
                   if k not in TIMING_KEYS and isinstance(v, (int, float))
                   and not isinstance(v, bool)}
        if metrics:
            return metrics, rel(path)
    scalars = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if scalars:
        last = {}
        with open(scalars[-1]) as f:
            for line in f:
                line = line.strip()
                if line:
                    rec = json.loads(line)
                    if any(k.startswith('acc') for k in rec):
                        last = rec
        metrics = {f'train/{k}': float(v) for k, v in last.items() if k.startswith('acc')}
        if metrics:
            return metrics, rel(scalars[-1]) + ' (last training log)'
    return {}, ''


def weights_digest(checkpoint: str) -> Optional[str]:
    """sha256 over the checkpoint's state dict (sorted keys, dtype, shape, bytes)."""
    sys.path.insert(0, ROOT)
    import torch
    from vlp.engine.checkpoint import safe_load
    state = safe_load(checkpoint, map_location='cpu')
    state = state.get('state_dict', state)
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key]
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f'{key}|{t.dtype}|{tuple(t.shape)}|'.encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def final_checkpoint(work_dir: str) -> Optional[str]:
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            path = f.read().strip()
        if not osp.isabs(path):
            path = osp.join(work_dir, osp.basename(path))
        if osp.exists(path):
            return path
    pths = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime)
    return pths[-1] if pths else None


def threads_label(threads: Optional[int]) -> str:
    if threads:
        return str(threads)
    env = os.environ.get('OMP_NUM_THREADS')
    return env if env else f'torch default ({os.cpu_count()} cores)'


def run_tag(seeds: Sequence[int], i: int) -> str:
    """``seed<S>``, or ``seed<S>_rep<k>`` for the k-th repeat of a seed in ``seeds`` (a
    repeated seed checks that the run is bitwise reproducible)."""
    k = list(seeds[:i]).count(seeds[i])
    return f'seed{seeds[i]}' + (f'_rep{k}' if k else '')


def run_one(name: str, config: str, seed: int, out: str, deps: list, cfg_options: Sequence[str],
            threads: Optional[int], reuse: bool, tag: Optional[str] = None,
            python: str = sys.executable) -> dict:
    tag = tag or f'seed{seed}'
    work = osp.join(out, tag, name)
    result_path = osp.join(work, 'run_result.json')
    if reuse and osp.isfile(result_path):
        with open(result_path) as f:
            record = json.load(f)
        if record.get('status') == 'ok':
            print(f'[run_demos] {name} {tag}: reusing {rel(result_path)}', flush=True)
            return record
    if osp.exists(work):
        if not osp.isfile(osp.join(work, MARKER)):
            raise SystemExit(f'run_demos.py: error: {work} exists and was not made by '
                             'run_demos.py; choose another --out')
        shutil.rmtree(work)
    os.makedirs(work)
    open(osp.join(work, MARKER), 'w').close()
    options = [f'randomness.seed={seed}', 'randomness.deterministic=True']
    for key, dep, rest in deps:
        options.append(f'{key}={osp.abspath(osp.join(out, tag, dep))}{rest}')
    options += list(cfg_options)
    cmd = [python, osp.join(ROOT, 'tools', 'train.py'), osp.join(ROOT, config),
           '--work-dir', work, '--cfg-options', *options]
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log_path = osp.join(work, 'run_demos.log')
    print(f'[run_demos] {name} {tag}: training ({rel(log_path)})', flush=True)
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    with open(log_path, 'w') as log:
        log.write(' '.join(cmd) + '\n\n')
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    record = dict(demo=name, config=config, seed=seed, tag=tag, work_dir=rel(work),
                  command=cmd[1:], rc=proc.returncode, wall_s=round(wall, 1),
                  peak_rss_mb=round(usage.ru_maxrss / 1024, 1),  # Linux: kilobytes
                  threads=threads_label(threads),
                  load_avg_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)])
    if proc.returncode == 0:
        metrics, source = read_metrics(work)
        ckpt = final_checkpoint(work)
        record.update(status='ok' if metrics else 'no-metrics', metrics=metrics,
                      metrics_file=source, checkpoint=rel(ckpt) if ckpt else None,
                      weights_sha256=weights_digest(ckpt) if ckpt else None)
    else:
        with open(log_path) as f:
            tail = f.read().splitlines()[-15:]
        record.update(status='failed', metrics={}, log_tail=tail)
    with open(result_path, 'w') as f:
        json.dump(record, f, indent=1)
    shown = ', '.join(f'{label_of(m, record["metrics"])} {fmt_value(m, record["metrics"][m])}'
                      for m in headline_metrics(record['metrics']))
    print(f'[run_demos] {name} {tag}: {record["status"]} in {fmt_duration(wall)}, '
          f'peak RSS {fmt_mb(record["peak_rss_mb"])}' + (f'; {shown}' if shown else ''),
          flush=True)
    return record


# -- tables ---------------------------------------------------------------------------------
def aggregate(runs: Sequence[dict], demos: Dict[str, str]) -> Dict[str, dict]:
    """Per demo: the seeds, status, wall time and peak RSS, and per metric the mean, min
    and max over the seeds that succeeded (and whether equal seeds gave equal weights)."""
    out: Dict[str, dict] = {}
    for name in dict.fromkeys(r['demo'] for r in runs):
        mine = [r for r in runs if r['demo'] == name]
        every_ok = [r for r in mine if r['status'] == 'ok']
        ok = list({r['seed']: r for r in reversed(every_ok)}.values())[::-1]  # first per seed
        entry = dict(config=demos.get(name, mine[0]['config']),
                     seeds=[r['seed'] for r in ok], n=len(ok),
                     failed_seeds=[r['seed'] for r in mine if r['status'] != 'ok'],
                     threads=sorted({r['threads'] for r in mine}),
                     wall_s=stats([r['wall_s'] for r in ok]) if ok else None,
                     peak_rss_mb=max(r['peak_rss_mb'] for r in ok) if ok else None,
                     metrics={})
        keys = sorted(set().union(*(r['metrics'] for r in ok))) if ok else []
        for key in keys:
            vals = [r['metrics'][key] for r in ok if key in r['metrics']]
            entry['metrics'][key] = {k: v for k, v in stats(vals).items()}
        digests: Dict[int, set] = {}
        for r in every_ok:
            digests.setdefault(r['seed'], set()).add(r.get('weights_sha256'))
        repeated = {s: d for s, d in digests.items()
                    if len([r for r in every_ok if r['seed'] == s]) > 1}
        if repeated:
            entry['bitwise_reproducible'] = all(len(d) == 1 for d in repeated.values())
        out[name] = entry
    return out


def git_commit() -> Optional[str]:
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ('+local-changes' if dirty else '')
    except (OSError, subprocess.CalledProcessError):
        return None


def machine() -> dict:
    info = dict(cpus=os.cpu_count(), platform=platform.platform(),
                python=platform.python_version())
    try:
        import torch
        info['torch'] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def compare(demos: Dict[str, dict], figures: dict, tolerance: Optional[float] = None,
            range_slack: float = 0.0) -> List[dict]:
    """One row per documented figure of a demo in ``demos``: documented value / range, the
    rerun's mean, the allowed interval and whether the rerun is inside it. A documented
    figure the rerun did not produce fails."""
    tol = figures.get('tolerance_points', DEFAULT_TOLERANCE) if tolerance is None else tolerance
    rows = []
    for name, run in demos.items():
        doc = figures.get('demos', {}).get(name)
        if not doc:
            continue
        for metric, d in doc.get('metrics', {}).items():
            point = point_of(metric)
            if doc.get('n', 1) >= 2:
                lo, hi = d['min'] - range_slack * point, d['max'] + range_slack * point
                rule = f'documented range +- {range_slack:g} pt'
            else:
                lo, hi = d['mean'] - tol * point, d['mean'] + tol * point
                rule = f'single run +- {tol:g} pt'
            got = run['metrics'].get(metric)
            rerun = None if got is None else got['mean']
            # rounding in the documented figure (e.g. 51.6 for 51.56) is not a regression
            eps = 1e-9 + 0.5 * 10 ** -(3 if point < 1 else 1)
            ok = rerun is not None and lo - eps <= rerun <= hi + eps
            rows.append(dict(demo=name, metric=metric, label=label_of(metric, doc['metrics']),
                             documented=d, documented_n=doc.get('n', 1), rerun=got,
                             allowed=[lo, hi], rule=rule, ok=ok))
    return rows


def render_comparison(rows: List[dict]) -> str:
    lines = ['| demo | figure | documented | rerun mean (min-max) | allowed | result |',
             '|---|---|---|---|---|---|']
    for r in rows:
        m, d, got = r['metric'], r['documented'], r['rerun']
        doc = fmt_value(m, d['mean']) + (
            f' ({fmt_value(m, d["min"])}-{fmt_value(m, d["max"])}, {r["documented_n"]} seeds)'
            if r['documented_n'] >= 2 else ' (single run)')
        rerun = '-' if got is None else (
            f'{fmt_value(m, got["mean"])} ({fmt_value(m, got["min"])}-{fmt_value(m, got["max"])})')
        lo, hi = r['allowed']
        lines.append(f'| `{r["demo"]}` | {r["label"]} | {doc} | {rerun} | '
                     f'{fmt_value(m, lo)} to {fmt_value(m, hi)} ({r["rule"]}) | '
                     f'{"ok" if r["ok"] else "**OUTSIDE**"} |')
    return '\n'.join(lines)


def render_run_table(table: dict) -> str:
    lines = [f'# Demo rerun {table["created"]}', '',
             f'commit `{table["commit"]}`, seeds {table["seeds"]}, machine '
             f'{json.dumps(table["machine"])}' + (
                 f', cfg-options `{" ".join(table["cfg_options"])}`'
                 if table.get('cfg_options') else ''), '',
             '| demo | metric | mean | min | max | seeds | wall clock (mean, min-max) | '
             'peak RSS | bitwise equal reruns |', '|---|---|---|---|---|---|---|---|---|']
    for name, d in table['demos'].items():
        wall = d['wall_s']
        wall_s = '-' if wall is None else (
            f'{fmt_duration(wall["mean"])} ({fmt_duration(wall["min"])}-'
            f'{fmt_duration(wall["max"])})')
        bitwise = {True: 'yes', False: '**no**'}.get(d.get('bitwise_reproducible'), '-')
        metrics = {m: d['metrics'][m] for m in ordered(d['metrics'])} or {'-': None}
        for i, (m, s) in enumerate(metrics.items()):
            cells = ['-'] * 3 if s is None else [fmt_value(m, s[k]) for k in ('mean', 'min', 'max')]
            head = [f'`{name}`' if i == 0 else '', label_of(m, d['metrics'])]
            tail = ([f'{d["n"]}' + (f' (failed: {d["failed_seeds"]})' if d['failed_seeds'] else ''),
                     wall_s, fmt_mb(d['peak_rss_mb']), bitwise] if i == 0 else [''] * 4)
            lines.append('| ' + ' | '.join(head + cells + tail) + ' |')
    if table.get('comparison'):
        lines += ['', '## Against the documented figures (docs/demo_figures.json)', '',
                  render_comparison(table['comparison'])]
    return '\n'.join(lines) + '\n'


# -- the documented figures and the docs --------------------------------------------------
def load_figures(path: str) -> dict:
    with open(path) as f:
        figures = json.load(f)
    if figures.get('format') != FIGURES_FORMAT:
        raise SystemExit(f'run_demos.py: error: {path} is not a {FIGURES_FORMAT} file')
    return figures


def figures_from_run(table: dict, figures: dict, note: Optional[str] = None) -> dict:
    """``figures`` with the demos of ``table`` replaced by its measured figures; ``note``
    (how the runs were made, e.g. on shared cores) is stored with each and shown with its
    source wherever the table is quoted."""
    new = json.loads(json.dumps(figures))
    date = table['created'][:10]
    for name, d in table['demos'].items():
        if d['n'] == 0:
            continue
        seeds = d['seeds']
        source = (f'single run (seed {seeds[0]}), measured {date} by tools/run_demos.py'
                  if d['n'] == 1 else f'{d["n"]} seeds ({", ".join(map(str, seeds))}), '
                  f'measured {date} by tools/run_demos.py')
        if table.get('cfg_options'):  # a trimmed or altered run says so wherever it is quoted
            source += f' with --cfg-options {" ".join(table["cfg_options"])}'
        new['demos'][name] = dict(
            config=d['config'], source=source, n=d['n'], seeds=seeds,
            commit=table['commit'], date=date, threads=d['threads'],
            machine=f'{table["machine"].get("cpus")} CPU cores, torch '
                    f'{table["machine"].get("torch")}',
            wall_s=round(d['wall_s']['mean'], 1), peak_rss_mb=d['peak_rss_mb'],
            metrics={m: {k: round(v, 4) for k, v in s.items() if k in ('mean', 'min', 'max')}
                     for m, s in d['metrics'].items()})
        if 'bitwise_reproducible' in d:
            new['demos'][name]['bitwise_reproducible'] = d['bitwise_reproducible']
        if note:
            new['demos'][name]['note'] = note
    return new


def render_docs_table(figures: dict) -> str:
    """The block between the markers: the headline figures of every demo in the figures
    file, with their spread and where they come from."""
    lines = [
        '<!-- generated by tools/run_demos.py --write-docs from docs/demo_figures.json; '
        'do not edit by hand (tests/tools/test_run_demos.py compares) -->',
        '| demo | test figures: mean (min-max over seeds) | seeds | wall clock | peak RSS | '
        'source |',
        '|---|---|---|---|---|---|']
    for name, d in sorted(figures['demos'].items()):
        metrics = d.get('metrics', {})
        shown = []
        for m in headline_metrics(metrics):
            s = metrics[m]
            value = fmt_value(m, s['mean'])
            if d.get('n', 1) >= 2:
                value += f' ({fmt_value(m, s["min"])}-{fmt_value(m, s["max"])})'
            shown.append(f'{label_of(m, metrics)} {value}')
        lines.append(f'| `{name}` | {"; ".join(shown) if shown else "not documented yet"} | '
                     f'{d.get("n", 1) if shown else "-"} | {fmt_duration(d.get("wall_s"))} | '
                     f'{fmt_mb(d.get("peak_rss_mb"))} | {d.get("source", "-")}'
                     + (f'; {d["note"]}' if d.get('note') else '') + ' |')
    return '\n'.join(lines)


def _split_block(text: str, path: str) -> Tuple[str, str, str]:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f'{path}: needs exactly one {BEGIN} ... {END} block')
    head, rest = text.split(BEGIN)
    body, tail = rest.split(END)
    return head, body, tail


def docs_block(path: str) -> str:
    with open(path) as f:
        return _split_block(f.read(), path)[1].strip('\n')


def inline_value(figures: dict, demo: str, metric: str) -> str:
    """The text of an inline figure: the mean of ``metric`` (``wall``: the wall clock,
    ``rss``: the peak RSS) of ``demo`` in ``figures``, as the table writes it."""
    d = figures['demos'].get(demo)
    if d is None:
        raise ValueError(f'no demo {demo!r} in the figures file')
    if metric == 'wall':
        return fmt_duration(d.get('wall_s'))
    if metric == 'rss':
        return fmt_mb(d.get('peak_rss_mb'))
    if metric not in d['metrics']:
        raise ValueError(f'{demo} has no figure {metric!r} (it has: '
                         f'{", ".join(d["metrics"]) or "none"}, wall, rss)')
    return fmt_value(metric, d['metrics'][metric]['mean'])


def render_doc(text: str, path: str, figures: dict, with_block: bool) -> str:
    """``text`` with its table block (``with_block``, or when it has one) and its inline
    figures rendered from ``figures``."""
    if with_block or BEGIN in text:
        head, _, tail = _split_block(text, path)
        text = f'{head}{BEGIN}\n{render_docs_table(figures)}\n{END}{tail}'

    def inline(m):
        try:
            value = inline_value(figures, m.group(1), m.group(2))
        except ValueError as err:
            raise ValueError(f'{path}: inline figure {m.group(0)!r}: {err}') from None
        return f'<!-- fig {m.group(1)} {m.group(2)} -->{value}<!-- /fig -->'
    return INLINE.sub(inline, text)


def default_docs() -> Tuple[List[str], List[str]]:
    """``(files, files that must hold a table block)``: DOC_FILES and every README.md /
    docs/*.md with an inline figure."""
    tables = [osp.join(ROOT, f) for f in DOC_FILES]
    found = set()
    for pattern in INLINE_DOCS:
        for path in glob.glob(osp.join(ROOT, pattern)):
            with open(path) as f:
                if INLINE.search(f.read()):
                    found.add(path)
    return sorted(set(tables) | found), tables


def write_docs(figures: dict, files: Sequence[str],
               with_block: Optional[Iterable[str]] = None) -> None:
    """Render the table blocks and inline figures of ``files`` (``with_block``: the files
    that must hold a block; default all)."""
    need = set(files if with_block is None else with_block)
    for path in files:
        with open(path) as f:
            text = f.read()
        new = render_doc(text, path, figures, path in need)
        if new != text:
            with open(path, 'w') as f:
                f.write(new)


def stale_docs(figures: dict, files: Sequence[str],
               with_block: Optional[Iterable[str]] = None) -> List[str]:
    """The files whose block or inline figures differ from what ``figures`` renders to (or
    that lack a block they must hold, or name a figure that does not exist)."""
    need = set(files if with_block is None else with_block)
    stale = []
    for path in files:
        with open(path) as f:
            text = f.read()
        try:
            if render_doc(text, path, figures, path in need) != text:
                stale.append(path)
        except ValueError as err:  # no block, several, or an unknown inline figure
            print(f'run_demos.py: {err}')
            stale.append(path)
    return stale


# -- command line ---------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--only', nargs='+', metavar='NAME',
                   help='demo names (clip_tiny_demo, or clip) or config paths; the demos '
                   'they start from are added')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2],
                   help='one run per seed (a repeated seed reruns it: bitwise check)')
    p.add_argument('--out', help='runs go to OUT/seed<S>/<demo> '
                   '(default work_dirs/run_demos/<timestamp>)')
    p.add_argument('--threads', type=int,
                   help='OMP_NUM_THREADS / MKL_NUM_THREADS of every run (bitwise '
                   'reproducibility holds for a fixed thread count)')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='passed to every tools/train.py run (after the seed settings)')
    p.add_argument('--table', help='write TABLE.json and TABLE.md (default OUT/demo_table)')
    p.add_argument('--from-table', metavar='JSON',
                   help='read a table written before instead of running')
    p.add_argument('--figures', default=DEFAULT_FIGURES,
                   help='the documented figures (default docs/demo_figures.json)')
    p.add_argument('--check', action='store_true',
                   help='exit 1 when a rerun figure is outside its documented range')
    p.add_argument('--tolerance', type=float,
                   help="single-run figures: allowed distance in points (default: the "
                   "figures file's tolerance_points)")
    p.add_argument('--range-slack', type=float, default=0.0,
                   help='multi-seed figures: points allowed outside the documented min-max')
    p.add_argument('--write-docs', action='store_true',
                   help='store the measured figures in --figures and regenerate the tables '
                   'in --docs')
    p.add_argument('--note',
                   help='with --write-docs: a remark stored with every written figure and '
                   'shown with its source (e.g. "wall clocks on shared cores")')
    p.add_argument('--docs', nargs='+',
                   help='files with a demo-table block or inline figures (default: '
                   + ', '.join(DOC_FILES) + ', and every README.md / docs/*.md with an inline '
                   'figure)')
    p.add_argument('--check-docs', action='store_true',
                   help='only check that the --docs blocks equal the --figures rendering')
    p.add_argument('--reuse', action='store_true',
                   help='keep the runs of OUT that finished (continue an interrupted rerun)')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    figures = load_figures(args.figures)
    args.docs, with_block = default_docs() if not args.docs else (args.docs, args.docs)
    if args.check_docs:
        stale = stale_docs(figures, args.docs, with_block)
        for path in stale:
            print(f'run_demos.py: {rel(path)}: a demo table or inline figure differs from '
                  f'{rel(args.figures)}; run tools/run_demos.py --write-docs --from-table ... '
                  'or restore it')
        return 1 if stale else 0

    if args.from_table:
        with open(args.from_table) as f:
            table = json.load(f)
        if table.get('format') != TABLE_FORMAT:
            raise SystemExit(f'run_demos.py: error: {args.from_table} is not a {TABLE_FORMAT} file')
        base = osp.splitext(args.table)[0] if args.table else None
    else:
        demos = discover()
        order, deps = plan(demos, args.only)
        stamp = datetime.datetime.now().strftime('%Y%m%d_%H%M%S')
        out = osp.abspath(args.out or osp.join(ROOT, 'work_dirs', 'run_demos', stamp))
        os.makedirs(out, exist_ok=True)
        print(f'[run_demos] {len(order)} demo(s) x seeds {args.seeds} -> {out}: '
              + ', '.join(order), flush=True)
        runs = []
        for i, seed in enumerate(args.seeds):
            tag = run_tag(args.seeds, i)
            for name in order:
                failed = [d for _, d, _ in deps[name]
                          if any(r['demo'] == d and r.get('tag') == tag and r['status'] != 'ok'
                                 for r in runs)]
                if failed:
                    runs.append(dict(demo=name, config=demos[name], seed=seed, tag=tag,
                                     status='skipped', metrics={}, wall_s=None,
                                     peak_rss_mb=None, threads=threads_label(args.threads),
                                     reason=f'{failed} failed'))
                    continue
                runs.append(run_one(name, demos[name], seed, out, deps[name],
                                    args.cfg_options, args.threads, args.reuse, tag))
        table = dict(format=TABLE_FORMAT,
                     created=datetime.datetime.now().isoformat(timespec='seconds'),
                     commit=git_commit(), machine=machine(), seeds=list(args.seeds),
                     threads=threads_label(args.threads), cfg_options=list(args.cfg_options),
                     out=out, runs=runs, demos=aggregate(runs, demos))
        base = osp.splitext(args.table)[0] if args.table else osp.join(out, 'demo_table')

    table['comparison'] = compare(table['demos'], figures, args.tolerance, args.range_slack)
    if base:
        os.makedirs(osp.dirname(osp.abspath(base)), exist_ok=True)
        with open(base + '.json', 'w') as f:
            json.dump(table, f, indent=1)
        with open(base + '.md', 'w') as f:
            f.write(render_run_table(table))
        print(f'[run_demos] wrote {base}.json and {base}.md')
    if table['comparison']:
        print(render_comparison(table['comparison']))
    else:
        print('[run_demos] no documented figures for these demos')

    status = 0
    failed = [r for r in table['runs'] if r['status'] != 'ok']
    for r in failed:
        print(f'[run_demos] {r["demo"]} seed {r["seed"]}: {r["status"]} '
              f'({r.get("reason") or r.get("work_dir")})')
        status = 1
    if args.write_docs:
        new = figures_from_run(table, figures, args.note)
        with open(args.figures, 'w') as f:
            json.dump(new, f, indent=1)
            f.write('\n')
        write_docs(new, args.docs, with_block)
        print(f'[run_demos] wrote {rel(args.figures)} and the tables in '
              + ', '.join(rel(p) for p in args.docs))
    if args.check:
        outside = [r for r in table['comparison'] if not r['ok']]
        print(f'[run_demos] check: {len(table["comparison"]) - len(outside)} of '
              f'{len(table["comparison"])} documented figures inside their range')
        if outside:
            status = 1
    return status


if __name__ == '__main__':
    sys.exit(main())
