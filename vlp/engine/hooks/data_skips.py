"""``DataSkipReportHook``: the samples the data pipeline skipped, reported and capped.

Datasets that skip bad samples (missing, empty or corrupt images and videos, truncated
shards, bad captions, annotation entries without a key, exceptions inside a transform)
count them in ``num_skipped`` (shared with their DataLoader workers), and vlp's datasets
also keep a skip report (``skip_report()``, vlp/datasets/skips.py): counts per reason, at
load time and at fetch time, and the first examples of each reason with the file, entry and
index. At the end of every training epoch (every ``interval`` iterations in an
iteration-based loop), of the training run, and of every validation / test pass the hook
logs how many were skipped since the last report and in total, the counts per reason, and
examples of each reason the first time it appears ("skip report"). After a validation or
test pass it says how many annotated samples the metrics lacked. The full report (up to 20
examples per reason) is written as JSON to the work dir (``data_skips.json``) at the end of
training and of every validation / test pass.

With ``max_skip_fraction`` the run stops with an error when more than that share of the
samples a training epoch (or report interval) tried to read was skipped, or of the
annotations was dropped when they were read: a run whose data are mostly broken, or whose
pipeline raises on most samples, stops instead of training on what is left.
"""
import json
import os.path as osp
from typing import Dict, List, Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook

from vlp.registry import HOOKS


def _datasets(ds, depth: int = 0) -> List:
    """The datasets that count skips, looking into mmengine's wrappers
    (``ConcatDataset.datasets``, ``RepeatDataset.dataset`` ...)."""
    if ds is None or depth > 4:
        return []
    if getattr(ds, 'num_skipped', None) is not None:
        return [ds]
    out = []
    for sub in getattr(ds, 'datasets', None) or []:
        out += _datasets(sub, depth + 1)
    if not out and getattr(ds, 'dataset', None) is not None:
        out += _datasets(ds.dataset, depth + 1)
    return out


def _merge(reports: List[dict]) -> dict:
    out = dict(total=0, delivered=0, at_load={}, at_fetch={}, counts={}, examples={},
               datasets=[])
    for r in reports:
        out['total'] += r.get('total', 0)
        out['delivered'] += r.get('delivered', 0)
        out['datasets'].append(r.get('dataset'))
        for k in ('at_load', 'at_fetch', 'counts'):
            for reason, n in r.get(k, {}).items():
                out[k][reason] = out[k].get(reason, 0) + n
        for reason, ex in r.get('examples', {}).items():
            out['examples'].setdefault(reason, []).extend(ex)
    return out


def _report(dataloader) -> Optional[dict]:
    dss = _datasets(getattr(dataloader, 'dataset', None))
    if not dss:
        return None
    reports = []
    for ds in dss:
        if callable(getattr(ds, 'skip_report', None)):
            reports.append(ds.skip_report())
        else:  # a dataset with a plain count
            n = int(ds.num_skipped)
            reports.append(dict(dataset=type(ds).__name__, total=n, at_fetch={'other': n},
                                counts={'other': n}, delivered=None))
    merged = _merge(reports)
    if any(r.get('delivered') is None for r in reports):
        merged['delivered'] = None
    return merged


def _counts(d: Dict[str, int]) -> str:
    return ', '.join(f'{r} {n}' for r, n in sorted(d.items(), key=lambda x: -x[1]))


def _example(e: dict) -> str:
    file, message = e.get('file'), str(e.get('message', ''))
    where = ', '.join(str(p) for p in (
        file, None if e.get('entry') is None else f'entry {e["entry"]}',
        None if e.get('index') is None else f'index {e["index"]}') if p is not None)
    if file and len(str(file)) > 20:  # the path once
        message = message.replace(str(file), osp.basename(str(file)))
    return f'{where or "?"}: {message}'


@HOOKS.register_module()
class DataSkipReportHook(Hook):
    """Report (and cap) the skipped samples of the train / val / test datasets.

    Args:
        max_skip_fraction: stop when more than this fraction of the samples a training
            epoch (iteration-based loops: a report interval) tried to fetch was skipped, or
            of the training annotations was dropped when read (``None``: never stop). The
            default, 0.5, stops a run whose data are mostly broken; production configs
            usually set 0.01.
        interval: report period in iterations for iteration-based loops.
        examples_in_log: examples logged per reason, the first time the reason appears.
        save_report: write the full report as JSON to ``work_dir/data_skips.json`` (rank
            r > 0: ``data_skips.rank{r}.json``) after training and each validation / test.
    """
    priority = 'BELOW_NORMAL'

    def __init__(self, max_skip_fraction: Optional[float] = 0.5, interval: int = 1000,
                 examples_in_log: int = 3, save_report: bool = True):
        self.max_skip_fraction = max_skip_fraction
        self.interval = interval
        self.examples_in_log = examples_in_log
        self.save_report = save_report
        self._last: Dict[str, int] = {}
        self._last_fetch: Dict[str, int] = {}
        self._last_delivered: Dict[str, int] = {}
        self._shown: Dict[str, set] = {}
        self._saved: Dict[str, dict] = {}

    # ------------------------------------------------------------------ reporting
    def _report(self, runner, split: str, dataloader, where: str,
                check: bool = False) -> Optional[dict]:
        rep = _report(dataloader)
        if rep is None:
            return None
        total = rep['total']
        first = split not in self._last
        new = total - self._last.get(split, 0)
        self._last[split] = total
        msg = (f'{split} data, {where}: {new} samples skipped (unreadable or dropped), '
               f'{total} in total')
        if rep['at_load']:
            msg += f'; dropped when reading the annotations: {_counts(rep["at_load"])}'
        if rep['at_fetch']:
            msg += f'; skipped when fetched: {_counts(rep["at_fetch"])}'
        shown = self._shown.setdefault(split, set())
        lines = []
        for reason, examples in rep.get('examples', {}).items():
            if reason in shown or not examples:
                continue
            shown.add(reason)
            n = rep['counts'].get(reason, len(examples))
            lines.append(f'  {reason} ({n}): ' + '; '.join(
                _example(e) for e in examples[:self.examples_in_log]))
        if lines:
            msg += '\nskip report, first examples of each reason:\n' + '\n'.join(lines)
        runner.logger.info(msg) if new == 0 else runner.logger.warning(msg)
        self._saved[split] = rep
        if check and self.max_skip_fraction is not None:
            self._check(split, dataloader, rep, where, first)
        return rep

    def _check(self, split: str, dataloader, rep: dict, where: str, first: bool) -> None:
        frac = self.max_skip_fraction
        load = sum(rep['at_load'].values())
        fetch = sum(rep['at_fetch'].values())
        new_fetch = fetch - self._last_fetch.get(split, 0)
        self._last_fetch[split] = fetch
        try:
            size = len(dataloader.dataset)
        except TypeError:
            size = None
        hint = ('check the data paths and files (the skip report above lists the reasons and '
                'the first files; the first error of each kind is logged with its traceback)')
        if first and load and size is not None and load > frac * (load + size):
            raise RuntimeError(
                f'{load} of {load + size} {split} annotations were dropped when read '
                f'({load / (load + size):.1%} > max_skip_fraction {frac:.1%}; '
                f'{_counts(rep["at_load"])}): {hint}')
        if rep.get('delivered') is not None:
            new_ok = rep['delivered'] - self._last_delivered.get(split, 0)
            self._last_delivered[split] = rep['delivered']
            tried = new_ok + new_fetch
        else:
            tried = size
        if tried and new_fetch > frac * tried:
            raise RuntimeError(
                f'{new_fetch} of {tried} {split} samples tried in {where} were skipped '
                f'({new_fetch / tried:.1%} > max_skip_fraction {frac:.1%}; '
                f'{_counts(rep["at_fetch"])}): {hint}')

    def _lacking(self, runner, split: str, rep: Optional[dict], fetch_before: int) -> None:
        """Say how many annotated samples the metrics of this pass lacked."""
        if rep is None:
            return
        load = sum(rep['at_load'].values())
        fetch = sum(rep['at_fetch'].values()) - fetch_before
        if load == 0 and fetch == 0:
            return
        runner.logger.warning(
            f'{split} metrics lack {load + fetch} annotated samples: {load} dropped when the '
            f'annotations were read ({_counts(rep["at_load"]) or "none"}), {fetch} skipped '
            'when fetched in this pass (the next sample stood in; metrics that deduplicate '
            'image_id count it once); see the skip report')

    def _save(self, runner) -> None:
        work_dir = getattr(runner, 'work_dir', None)
        if not self.save_report or not work_dir or not self._saved:
            return
        rank = get_rank()
        name = 'data_skips.json' if rank == 0 else f'data_skips.rank{rank}.json'
        try:
            with open(osp.join(work_dir, name), 'w', encoding='utf-8') as f:
                json.dump(self._saved, f, indent=1, default=str)
        except OSError as e:
            runner.logger.warning(f'DataSkipReportHook: cannot write {name}: {e}')

    # ------------------------------------------------------------------ hooks
    def after_train_epoch(self, runner) -> None:
        if runner.train_loop.__class__.__name__ != 'IterBasedTrainLoop':
            self._report(runner, 'train', runner.train_dataloader,
                         f'epoch {runner.epoch + 1}', check=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if runner.train_loop.__class__.__name__ == 'IterBasedTrainLoop' and \
                self.every_n_train_iters(runner, self.interval):
            self._report(runner, 'train', runner.train_dataloader,
                         f'iteration {runner.iter + 1}', check=True)

    def after_train(self, runner) -> None:
        rep = _report(runner.train_dataloader)
        if rep is not None and rep['total'] != self._last.get('train', 0):
            self._report(runner, 'train', runner.train_dataloader, 'end of training')
        self._save(runner)

    def _eval(self, runner, split: str, dataloader, where: str) -> None:
        before = sum(self._saved.get(split, {}).get('at_fetch', {}).values())
        rep = self._report(runner, split, dataloader, where)
        self._lacking(runner, split, rep, before)
        self._save(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._eval(runner, 'val', runner.val_dataloader, 'validation')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._eval(runner, 'test', runner.test_dataloader, 'test')
