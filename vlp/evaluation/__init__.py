"""Evaluation: importing this package registers the metrics (``vlp.registry.METRICS``).

- :class:`RetrievalMetric`: image-text retrieval recall@K (COCO/Flickr protocol);
- :class:`ZeroShotAccuracy` and :func:`zero_shot_classifier`: zero-shot classification
  (the classifier is set before evaluation by ``vlp.engine.hooks.ZeroShotClassifierHook``);
- :class:`VQAAccuracy`: the official VQA accuracy; :class:`ClassificationAccuracy`: NLVR2,
  SNLI-VE and image classification accuracy.
"""
from .metrics import (ClassificationAccuracy, VQAAccuracy, vqa_accuracy,
                      ITMRetrievalMetric, RetrievalMetric, ZeroShotAccuracy, get_templates, retrieval_recalls,
                      zero_shot_classifier)

__all__ = ['ClassificationAccuracy', 'VQAAccuracy', 'vqa_accuracy', 'RetrievalMetric', 'ITMRetrievalMetric', 'ZeroShotAccuracy', 'zero_shot_classifier', 'get_templates',
           'retrieval_recalls']
