"""mmengine's ``LoggerHook`` with the test metrics written by one process, also sent to
the visualizer backends (TensorBoard), and the validation metrics logged at the training
iteration they belong to.

- mmengine's ``LoggerHook.after_test_epoch`` dumps the test metrics to
  ``<log_dir>/<timestamp>.json`` on every rank: under ``tools/dist_test.sh`` the ranks write
  the same file at once and a shorter write over a longer one leaves a corrupted line (seen
  as ``...}}``). Here the main process alone writes them, and also gives the scalar ones
  to the visualizer (``vis_backends``: TensorBoard), which mmengine does not.
- With ``log_metric_by_epoch`` (mmengine's default) mmengine logs the validation metrics
  at step = epoch, while the training scalars of the same run use step = iteration: in
  TensorBoard the validation curve sat at x = 1, 2, ... beside training steps in the
  thousands. Here every validation during training is logged at the training iteration it
  follows (its epoch stays in the terminal and JSON log).

Registered in vlp's scope under mmengine's name, so ``type='LoggerHook'`` in a vlp config
resolves here; everything else is mmengine's.
"""
from numbers import Number

from mmengine.dist import is_main_process
from mmengine.hooks import LoggerHook as MMLoggerHook

from vlp.registry import HOOKS


def _train_iter(runner) -> int:
    """The training iteration of the run (0 without a train loop, e.g. tools/test.py)."""
    loop = runner._train_loop
    if isinstance(loop, dict) or loop is None:
        return 0
    return runner.iter


@HOOKS.register_module()
class LoggerHook(MMLoggerHook):
    """:class:`mmengine.hooks.LoggerHook`; the test metrics are logged and dumped by the
    main process only (the metrics are already gathered: every rank holds the same) and
    also go to the visualizer; validation metrics are logged at the training iteration."""

    def after_val_epoch(self, runner, metrics=None) -> None:
        tag, log_str = runner.log_processor.get_log_after_epoch(
            runner, len(runner.val_dataloader), 'val')
        runner.logger.info(log_str)
        runner.visualizer.add_scalars(tag, step=_train_iter(runner),
                                      file_path=self.json_log_path)

    def after_test_epoch(self, runner, metrics=None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)
            scalars = {f'test/{k}': v for k, v in (metrics or {}).items()
                       if isinstance(v, Number) and not isinstance(v, bool)}
            if scalars:
                runner.visualizer.add_scalars(scalars, step=_train_iter(runner))
