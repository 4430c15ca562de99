"""mmengine's ``LoggerHook`` with the test metrics written by one process.

mmengine's ``LoggerHook.after_test_epoch`` dumps the test metrics to
``<log_dir>/<timestamp>.json`` on every rank: under ``tools/dist_test.sh`` the ranks write
the same file at once and a shorter write over a longer one leaves a corrupted line (seen
as ``...}}``). Registered in vlp's scope under mmengine's name, so ``type='LoggerHook'`` in
a vlp config resolves here; everything else is mmengine's.
"""
from mmengine.dist import is_main_process
from mmengine.hooks import LoggerHook as MMLoggerHook

from vlp.registry import HOOKS


@HOOKS.register_module()
class LoggerHook(MMLoggerHook):
    """:class:`mmengine.hooks.LoggerHook`; the test metrics are logged and dumped by the
    main process only (the metrics are already gathered: every rank holds the same)."""

    def after_test_epoch(self, runner, metrics=None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)
