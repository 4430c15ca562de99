"""``DataSkipReportHook``: the samples the data pipeline skipped, reported and capped.

Datasets that skip unreadable samples (broken or missing images and videos, truncated
shard members, samples a transform drops) count them in ``num_skipped`` (shared with their
DataLoader workers; vlp's image-text, video-text, webdataset and single-modality
datasets). At the end of every training epoch (every ``interval`` iterations in an
iteration-based loop), of the training run, and of every validation / test pass the hook
logs how many were skipped since the last report and in total. With
``max_skip_fraction`` the run stops with an error when more than that share of a training
epoch's samples (its dataset's length) was skipped.
"""
from typing import Optional

from mmengine.hooks import Hook

from vlp.registry import HOOKS


def _count(dataloader) -> Optional[int]:
    ds = getattr(dataloader, 'dataset', None)
    n = getattr(ds, 'num_skipped', None)
    return int(n) if n is not None else None


@HOOKS.register_module()
class DataSkipReportHook(Hook):
    """Report (and cap) the skipped samples of the train / val / test datasets.

    Args:
        max_skip_fraction: stop when a training epoch skipped more than this fraction of
            its dataset (``None``: never stop).
        interval: report period in iterations for iteration-based loops.
    """
    priority = 'BELOW_NORMAL'

    def __init__(self, max_skip_fraction: Optional[float] = None, interval: int = 1000):
        self.max_skip_fraction = max_skip_fraction
        self.interval = interval
        self._last = {}

    def _report(self, runner, split: str, dataloader, where: str,
                check: bool = False) -> None:
        total = _count(dataloader)
        if total is None:
            return
        new = total - self._last.get(split, 0)
        self._last[split] = total
        msg = (f'{split} data, {where}: {new} samples skipped (unreadable or dropped), '
               f'{total} in total')
        runner.logger.info(msg) if new == 0 else runner.logger.warning(msg)
        if check and self.max_skip_fraction is not None:
            try:
                size = len(dataloader.dataset)
            except TypeError:
                return
            if size and new > self.max_skip_fraction * size:
                raise RuntimeError(
                    f'{new} of {size} {split} samples were skipped in {where} '
                    f'({new / size:.1%} > max_skip_fraction {self.max_skip_fraction:.1%}): '
                    'check the data paths and files (the skipped paths are in the log)')

    def after_train_epoch(self, runner) -> None:
        if runner.train_loop.__class__.__name__ != 'IterBasedTrainLoop':
            self._report(runner, 'train', runner.train_dataloader,
                         f'epoch {runner.epoch}', check=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if runner.train_loop.__class__.__name__ == 'IterBasedTrainLoop' and \
                self.every_n_train_iters(runner, self.interval):
            self._report(runner, 'train', runner.train_dataloader,
                         f'iteration {runner.iter + 1}')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'val', runner.val_dataloader, 'validation')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'test', runner.test_dataloader, 'test')
