"""Evaluation: importing this package registers the metrics (``vlp.registry.METRICS``).

- :class:`RetrievalMetric`: image-text retrieval recall@K (COCO/Flickr protocol);
- :class:`ZeroShotAccuracy` and :func:`zero_shot_classifier`: zero-shot classification
  (the classifier is set before evaluation by ``vlp.engine.hooks.ZeroShotClassifierHook``).
"""
from .metrics import (ITMRetrievalMetric, RetrievalMetric, ZeroShotAccuracy, get_templates, retrieval_recalls,
                      zero_shot_classifier)

__all__ = ['RetrievalMetric', 'ITMRetrievalMetric', 'ZeroShotAccuracy', 'zero_shot_classifier', 'get_templates',
           'retrieval_recalls']
