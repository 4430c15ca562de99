"""Answer vocabularies and answer targets of the VQA models (VQAClassifier, BLIPVQA)."""
from collections import Counter
from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from vlp.evaluation.metrics.vqa import load_answer_list, normalize_answer
from vlp.registry import DATASETS


def resolve_answer_list(answer_list) -> List[str]:
    """An answer vocabulary from a list of str, a file (JSON list, JSON dict answer -> index,
    or one answer per line: :func:`~vlp.evaluation.metrics.vqa.load_answer_list`) or a
    dataset config whose ``metainfo['answer_list']`` holds it (``dict(type='DemoVQA')``:
    read from the class's ``METAINFO`` when there, else from the built dataset)."""
    if isinstance(answer_list, str):
        return list(load_answer_list(answer_list))
    if isinstance(answer_list, dict):
        cls = DATASETS.get(answer_list['type'])
        if cls is None:
            raise KeyError(f"answer_list: unknown dataset {answer_list['type']!r}")
        meta = dict(getattr(cls, 'METAINFO', None) or {})
        if 'answer_list' not in meta:
            meta = DATASETS.build(answer_list).metainfo
        if 'answer_list' not in meta:
            raise KeyError(f"answer_list: {answer_list['type']} has no metainfo['answer_list']")
        return list(meta['answer_list'])
    return [str(a) for a in answer_list]


def answers_of(data_samples, family: str) -> List[List[str]]:
    """The human answers of each question (``data_samples['answers']``: a dict of batched
    values or per-sample dicts)."""
    if isinstance(data_samples, dict):
        answers = data_samples.get('answers')
    elif isinstance(data_samples, (list, tuple)):
        answers = [d.get('answers') for d in data_samples]
    else:
        answers = None
    if answers is None or any(a is None for a in answers):
        raise ValueError(f"{family}.loss needs data_samples['answers'] (a list of answer "
                         'lists, one per question)')
    return [[a] if isinstance(a, str) else list(a) for a in answers]


def answer_weights(answers: Sequence[str]) -> Tuple[List[str], List[float]]:
    """Unique normalised answers of one question (first-seen order) and their weights
    ``count / len(answers)`` (BLIP / ALBEF's VQA targets)."""
    norm = [normalize_answer(a) for a in answers]
    counts = Counter(norm)
    uniq = list(dict.fromkeys(norm))
    return uniq, [counts[a] / len(norm) for a in uniq]


def weighted_answers(answers: Sequence[Sequence[str]]):
    """``(texts, weights, counts)``: every question's unique answers and weights
    (:func:`answer_weights`) in one flat list, and how many each question has."""
    texts, weights, counts = [], [], []
    for ans in answers:
        uniq, w = answer_weights(ans) if len(ans) else ([], [])
        texts += uniq
        weights += w
        counts.append(len(uniq))
    return texts, weights, counts


def sequence_nll(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-sequence negative log-likelihood ``[N]`` of ``input_ids [N, T]`` under next-token
    ``logits [N, T, V]``: the sum over the tokens after the first (padding excluded) of the
    (label-smoothed) cross-entropy."""
    logits = logits[:, :-1].float()
    labels = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                          ignore_index=-100, reduction='none', label_smoothing=label_smoothing)
    return tok.view(labels.shape).sum(1)


def rank_candidates(first_logits: torch.Tensor, cand_ids: torch.Tensor,
                    cand_mask: torch.Tensor, k: int,
                    loglik: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                    ) -> torch.Tensor:
    """BLIP / ALBEF's answer ranking: per question, the ``k`` candidates (``cand_ids [A,
    T]``, first token a start token) whose second token is most probable under
    ``first_logits [Q, V]``, re-scored by ``loglik(ids, mask, rows) -> [Q * k]`` (their full
    log-likelihood given question ``rows``); returns the best candidate's index ``[Q]``."""
    Q, A = first_logits.shape[0], cand_ids.shape[0]
    k = min(k, A)
    first_prob = first_logits.float().softmax(-1).index_select(1, cand_ids[:, 1])  # (Q, A)
    _, topk = first_prob.topk(k, dim=1)  # (Q, k)
    flat = topk.reshape(-1)
    rows = torch.arange(Q, device=topk.device).repeat_interleave(k)
    scores = loglik(cand_ids[flat], cand_mask[flat], rows).view(Q, k)
    return topk.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)
