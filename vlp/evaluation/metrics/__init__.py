"""Evaluation metrics; importing this package registers them in ``vlp.registry.METRICS``."""
from .classification import ClassificationAccuracy
from .vqa import (VQAAccuracy, answer_scores, build_answer_list, load_answer_list,
                  normalize_answer, save_answer_list, vqa_accuracy)
from .caption import CaptionMetric, caption_scores, ptb_tokenize
from .itm_retrieval import ITMRetrievalMetric
from .retrieval import (RetrievalMetric, itc_ranks, positive_ranks, ranks_from_scores,
                        recall_at_k, retrieval_metrics, retrieval_recalls, topk_candidates)
from .zero_shot import (OPENAI_IMAGENET_SELECTED_TEMPLATES, OPENAI_IMAGENET_TEMPLATES,
                        SIMPLE_TEMPLATES, TEMPLATE_PRESETS, ZeroShotAccuracy, get_templates,
                        zero_shot_classifier)

__all__ = ['CaptionMetric', 'caption_scores', 'ptb_tokenize',
           'RetrievalMetric', 'ITMRetrievalMetric', 'itc_ranks', 'positive_ranks', 'ranks_from_scores',
           'recall_at_k', 'retrieval_metrics', 'retrieval_recalls', 'topk_candidates',
           'ZeroShotAccuracy', 'zero_shot_classifier', 'get_templates', 'TEMPLATE_PRESETS',
           'OPENAI_IMAGENET_TEMPLATES', 'OPENAI_IMAGENET_SELECTED_TEMPLATES',
           'SIMPLE_TEMPLATES',
           'ClassificationAccuracy', 'VQAAccuracy', 'vqa_accuracy', 'normalize_answer',
           'answer_scores', 'build_answer_list', 'load_answer_list', 'save_answer_list']
