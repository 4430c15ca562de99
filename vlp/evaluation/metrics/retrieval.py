"""Image-text retrieval recall (COCO / Flickr30k protocol, as ALBEF's and BLIP's ``itm_eval``).

Every evaluation image has K captions (K may vary). Scores of all images against all
captions give

- image-to-text (text retrieval, ``txt_r{k}``): an image is correct at K when ANY of its
  captions is among its top-K texts (the rank of its best-ranked caption is < K);
- text-to-image (image retrieval, ``img_r{k}``): a caption is correct at K when the image
  it came from is among its top-K images;

``txt_r_mean`` / ``img_r_mean`` average each side over ``topk``; ``r_mean`` averages the
two. Values are percentages.

Ranks are computed in row chunks, so the full ``[N_img, N_txt]`` matrix never has to be
held (5k x 25k COCO scores are 500 MB in fp32). Ties with a negative count against the
positive (a candidate scoring exactly the positive's score ranks before it), so collapsed
or NaN features score 0 rather than 100; with real-valued features ties do not occur and
the result equals ALBEF's ``argsort`` ranking.

The seam for re-ranking (ALBEF/BLIP: ITC top-k candidates re-scored by the ITM head):
:func:`ranks_from_scores` takes ANY pair of score matrices (e.g. ``-100`` everywhere and
ITM scores on the top-k candidates from :func:`topk_candidates`, as ALBEF fills them),
and :class:`RetrievalMetric` computes its ranks in one overridable method,
:meth:`RetrievalMetric.compute_ranks`.
"""
import logging
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from vlp.registry import METRICS

__all__ = ['positive_ranks', 'itc_ranks', 'ranks_from_scores', 'topk_candidates',
           'recall_at_k', 'retrieval_metrics', 'retrieval_recalls', 'RetrievalMetric']


# -- maths (usable on their own) ----------------------------------------------------------
def positive_ranks(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """0-based rank of the best-scored positive of each row.

    Args:
        scores: ``[R, C]`` scores of R queries against C candidates (higher = better).
        positives: ``[R, C]`` bool, the correct candidates of each query (one or more).

    Returns:
        ``[R]`` long: how many negatives score at least as high as the row's best positive
        (ties against the positive; NaN is the lowest score). A row without any positive
        gets ``C`` (never correct), as in ALBEF.
    """
    neg_inf = torch.finfo(scores.dtype).min
    scores = torch.nan_to_num(scores, nan=neg_inf, neginf=neg_inf)
    best = scores.masked_fill(~positives, float('-inf')).amax(dim=1, keepdim=True)  # (R, 1)
    ranks = ((scores >= best) & ~positives).sum(dim=1)  # (R,)
    return torch.where(positives.any(dim=1), ranks, torch.full_like(ranks, scores.shape[1]))


def _chunked_ranks(num_rows: int, score_fn: Callable[[slice], torch.Tensor],
                   positive_fn: Callable[[slice], torch.Tensor], chunk_size: int
                   ) -> torch.Tensor:
    out = []
    for start in range(0, num_rows, chunk_size):
        rows = slice(start, min(start + chunk_size, num_rows))
        scores = score_fn(rows)  # (R, C)
        out.append(positive_ranks(scores, positive_fn(rows).to(scores.device)).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _owner_masks(txt2img: torch.Tensor, num_images: int
                 ) -> Tuple[Callable[[slice], torch.Tensor], Callable[[slice], torch.Tensor]]:
    """Positive masks for image rows (``[R, N_txt]``) and text rows (``[R, N_img]``)."""
    txt2img = txt2img.long()
    images = torch.arange(num_images, device=txt2img.device)

    def i2t(rows: slice) -> torch.Tensor:
        return images[rows, None] == txt2img[None, :]  # (R, N_txt)

    def t2i(rows: slice) -> torch.Tensor:
        return txt2img[rows, None] == images[None, :]  # (R, N_img)

    return i2t, t2i


def cosine_scores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` similarities of L2-normalised features ``a [n, D]`` and ``b [m, D]``;
    either side may hold several features per item (``[n, Q, D]``: BLIP-2's query
    features), then the score is the maximum over them (BLIP-2's ITC)."""
    if a.dim() == 2 and b.dim() == 2:
        return a @ b.t()
    a3 = a if a.dim() == 3 else a[:, None]
    b3 = b if b.dim() == 3 else b[:, None]
    return torch.einsum('iqd,jpd->ijqp', a3, b3).flatten(2).amax(dim=2)


def itc_ranks(image_feat: torch.Tensor, text_feat: torch.Tensor, txt2img: torch.Tensor,
              chunk_size: int = 1024, device: Union[str, torch.device, None] = None
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Ranks under ITC (cosine) similarity, computed in chunks of rows.

    Args:
        image_feat: ``[N_img, D]`` image features (L2-normalised here), or ``[N_img, Q, D]``
            (several per image, scored by their maximum: BLIP-2).
        text_feat: ``[N_txt, D]`` caption features (L2-normalised here).
        txt2img: ``[N_txt]`` row in ``image_feat`` of each caption's image.
        chunk_size: rows of the similarity matrix held at once.
        device: where to compute (default: the features' device).

    Returns:
        ``ranks_i2t [N_img]`` (best caption of each image), ``ranks_t2i [N_txt]``.
    """
    device = image_feat.device if device is None else torch.device(device)
    img = F.normalize(image_feat.to(device, torch.float32), dim=-1)  # (N_img, [Q,] D)
    txt = F.normalize(text_feat.to(device, torch.float32), dim=-1)  # (N_txt, D)
    pos_i2t, pos_t2i = _owner_masks(txt2img.to(device), img.shape[0])
    ranks_i2t = _chunked_ranks(img.shape[0], lambda r: cosine_scores(img[r], txt), pos_i2t,
                               chunk_size)
    ranks_t2i = _chunked_ranks(txt.shape[0], lambda r: cosine_scores(txt[r], img), pos_t2i,
                               chunk_size)
    return ranks_i2t, ranks_t2i


def ranks_from_scores(scores_i2t: torch.Tensor, scores_t2i: torch.Tensor,
                      txt2img: torch.Tensor, chunk_size: int = 1024
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Ranks from any score matrices (ITC, ITM re-ranked, ensembles...).

    Args:
        scores_i2t: ``[N_img, N_txt]`` score of each caption for each image query.
        scores_t2i: ``[N_txt, N_img]`` score of each image for each caption query (the
            transpose of ``scores_i2t`` for a symmetric score; re-ranking makes them differ).
        txt2img: ``[N_txt]`` index of each caption's image.
    """
    n_img, n_txt = scores_i2t.shape
    if scores_t2i.shape != (n_txt, n_img) or txt2img.shape != (n_txt,):
        raise ValueError(f'shapes disagree: scores_i2t {tuple(scores_i2t.shape)}, scores_t2i '
                         f'{tuple(scores_t2i.shape)}, txt2img {tuple(txt2img.shape)}')
    pos_i2t, pos_t2i = _owner_masks(txt2img.to(scores_i2t.device), n_img)
    ranks_i2t = _chunked_ranks(n_img, lambda r: scores_i2t[r].float(), pos_i2t, chunk_size)
    ranks_t2i = _chunked_ranks(n_txt, lambda r: scores_t2i[r].float(), pos_t2i, chunk_size)
    return ranks_i2t, ranks_t2i


@torch.no_grad()
def topk_candidates(query_feat: torch.Tensor, gallery_feat: torch.Tensor, k: int,
                    chunk_size: int = 1024) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` gallery items of each query by cosine similarity (chunked): the candidate
    lists that ALBEF/BLIP re-score with the ITM head. Either side may be ``[N, Q, D]``
    (:func:`cosine_scores`). Returns ``(scores, indices)``, both ``[N_query, k]`` (``k``
    clipped to the gallery size), best first."""
    q = F.normalize(query_feat.float(), dim=-1)
    g = F.normalize(gallery_feat.float(), dim=-1)
    k = min(k, g.shape[0])
    scores, indices = [], []
    for start in range(0, q.shape[0], chunk_size):
        s, i = cosine_scores(q[start:start + chunk_size], g).topk(k, dim=1)  # (R, k)
        scores.append(s)
        indices.append(i)
    return torch.cat(scores), torch.cat(indices)


def recall_at_k(ranks: torch.Tensor, k: int) -> float:
    """Percentage of queries whose positive rank is below ``k``."""
    if ranks.numel() == 0:
        return float('nan')
    return 100.0 * (ranks < k).double().mean().item()


def retrieval_metrics(ranks_i2t: torch.Tensor, ranks_t2i: torch.Tensor,
                      topk: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
    """ALBEF's result names: ``txt_r{k}`` (image->text), ``txt_r_mean``, ``img_r{k}``
    (text->image), ``img_r_mean``, ``r_mean``."""
    out: Dict[str, float] = OrderedDict()
    for side, ranks in (('txt', ranks_i2t), ('img', ranks_t2i)):
        recalls = [recall_at_k(ranks, k) for k in topk]
        for k, r in zip(topk, recalls):
            out[f'{side}_r{k}'] = r
        out[f'{side}_r_mean'] = sum(recalls) / len(recalls)
    out['r_mean'] = (out['txt_r_mean'] + out['img_r_mean']) / 2
    return out


def retrieval_recalls(scores_i2t: torch.Tensor, scores_t2i: torch.Tensor,
                      txt2img: torch.Tensor, topk: Sequence[int] = (1, 5, 10)
                      ) -> Dict[str, float]:
    """:func:`retrieval_metrics` of :func:`ranks_from_scores` (ALBEF's ``itm_eval``)."""
    return retrieval_metrics(*ranks_from_scores(scores_i2t, scores_t2i, txt2img), topk=topk)


# -- the mmengine metric ------------------------------------------------------------------
def _as_key(value):
    """A hashable id from an int / str / 0-dim tensor."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else tuple(value.tolist())
    return value


@METRICS.register_module()
class RetrievalMetric(BaseMetric):
    """Image-text retrieval recall@K over the whole evaluation set (ITC similarity).

    Consumes the model's ``predict`` output, one dict per image with ``image_feat [D]``,
    ``text_feat [K, D]`` (all captions of that image; ``[D]`` is read as K = 1) and
    ``image_id``. Results from every rank are collected by mmengine (``collect_results``)
    before :meth:`compute_metrics` runs on rank 0.

    Args:
        topk: the K of recall@K (ALBEF/BLIP: 1, 5, 10).
        chunk_size: similarity rows held at once when ranking.
        device: where the similarity is computed (``'cpu'``; ``'cuda'`` is faster on
            large sets).
        dedup_key: images repeated under this key (a padded last batch of a sampler, or a
            dataset that refetches the next image) are counted once (the first occurrence);
            ``None`` keeps every result.
        collect_device, prefix, collect_dir: see mmengine's ``BaseMetric``; metric names
            are ``{prefix}/txt_r1``... (default prefix ``'retrieval'``).

    Subclasses change how candidates are scored (e.g. ITM re-ranking) by overriding
    :meth:`compute_ranks`.
    """
    default_prefix = 'retrieval'

    def __init__(self, topk: Sequence[int] = (1, 5, 10), chunk_size: int = 1024,
                 device: str = 'cpu', dedup_key: Optional[str] = 'image_id',
                 collect_device: str = 'cpu', prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        if not topk or any(int(k) < 1 for k in topk):
            raise ValueError(f'topk must be positive integers, got {topk}')
        self.topk = tuple(int(k) for k in topk)
        self.chunk_size = int(chunk_size)
        self.device = device
        self.dedup_key = dedup_key

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            missing = [k for k in ('image_feat', 'text_feat') if k not in sample]
            if self.dedup_key is not None and self.dedup_key not in sample:
                missing.append(self.dedup_key)
            if missing:
                raise KeyError(f'{type(self).__name__} needs {missing} in each prediction '
                               f'(got keys {sorted(sample)}); retrieval evaluation data '
                               'gives every caption of an image (input_ids [K, L])')
            text_feat = sample['text_feat'].detach().cpu()
            image_feat = sample['image_feat'].detach().cpu()
            # [D], or [Q, D] for models with several features per image (BLIP-2)
            image_feat = image_feat.reshape(-1) if image_feat.dim() != 2 or \
                image_feat.shape[0] == 1 else image_feat
            result = dict(image_feat=image_feat,
                          text_feat=text_feat.reshape(-1, text_feat.shape[-1]))  # (K, D)
            if self.dedup_key is not None:
                result['key'] = _as_key(sample[self.dedup_key])
            self.results.append(result)

    def deduplicate(self, results: List[dict]) -> List[dict]:
        """First occurrence of each ``dedup_key`` value, in order."""
        if self.dedup_key is None:
            return list(results)
        seen, kept = set(), []
        for r in results:
            if r['key'] not in seen:
                seen.add(r['key'])
                kept.append(r)
        if len(kept) < len(results):
            print_log(f'{type(self).__name__}: {len(results) - len(kept)} repeated images '
                      f'(same {self.dedup_key}) counted once', logger='current')
        return kept

    def compute_ranks(self, image_feat: torch.Tensor, text_feat: torch.Tensor,
                      txt2img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(ranks_i2t [N_img], ranks_t2i [N_txt])``; ITC here, override to re-rank."""
        return itc_ranks(image_feat, text_feat, txt2img, self.chunk_size, self.device)

    def stack_results(self, results: List[dict]):
        """De-duplicated results -> ``(results, image_feat [N_img, D], text_feat [N_txt, D],
        txt2img [N_txt])``."""
        results = self.deduplicate(results)
        if not results:
            raise ValueError(f'{type(self).__name__}: no results to evaluate')
        image_feat = torch.stack([r['image_feat'] for r in results])  # (N_img, D)
        text_feat = torch.cat([r['text_feat'] for r in results])  # (N_txt, D)
        counts = torch.tensor([r['text_feat'].shape[0] for r in results])
        txt2img = torch.repeat_interleave(torch.arange(len(results)), counts)  # (N_txt,)
        return results, image_feat, text_feat, txt2img

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        _, image_feat, text_feat, txt2img = self.stack_results(results)
        if not (torch.isfinite(image_feat).all() and torch.isfinite(text_feat).all()):
            print_log(f'{type(self).__name__}: non-finite features (they rank last)',
                      logger='current', level=logging.WARNING)
        ranks_i2t, ranks_t2i = self.compute_ranks(image_feat, text_feat, txt2img)
        return dict(retrieval_metrics(ranks_i2t, ranks_t2i, self.topk))
