"""Validation / test loops that hand the model to metrics that need it.

ITM re-ranked retrieval (:class:`~vlp.evaluation.ITMRetrievalMetric`) runs the model's
fusion encoder on the top-k candidates after all features are collected, so its metric
needs the model. ``RetrievalValLoop`` / ``RetrievalTestLoop`` are mmengine's ``ValLoop`` /
``TestLoop`` that first call ``metric.bind_model(runner.model)`` on every metric that has
``bind_model`` (as mmpretrain's retrieval loops feed the model to ITM re-ranking).
"""
from mmengine.runner import TestLoop, ValLoop

from vlp.registry import LOOPS


def _bind(loop) -> None:
    for metric in getattr(loop.evaluator, 'metrics', []):
        if callable(getattr(metric, 'bind_model', None)):
            metric.bind_model(loop.runner.model)


@LOOPS.register_module()
class RetrievalValLoop(ValLoop):
    """``ValLoop`` that binds the model to metrics needing it (ITM re-ranking)."""

    def run(self) -> dict:
        _bind(self)
        return super().run()


@LOOPS.register_module()
class RetrievalTestLoop(TestLoop):
    """``TestLoop`` that binds the model to metrics needing it (ITM re-ranking)."""

    def run(self) -> dict:
        _bind(self)
        return super().run()
