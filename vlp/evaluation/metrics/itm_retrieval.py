"""Retrieval by ITC ranking then ITM re-ranking (ALBEF, Li et al. 2021, Sec. 5 and its
``evaluation``; BLIP's ``evaluation`` adds the ITC score to the ITM score).

For every image query the ``k`` texts of highest ITC similarity, and for every text query
the ``k`` most similar images, are re-scored by the model's fusion encoder + ITM head
(``model.rerank_scores``); candidates outside the top-k keep ``-inf``. Recall@K is reported
both for the ITC ranking (``itc_txt_r1``...) and the re-ranked one (``txt_r1``...).

The two directions' candidate sets overlap (a close pair is in both), so each unique
(image, text) pair of their union is scored once (``pairs='union'``, the default) and read
back into both rankings: identical results to scoring the directions separately
(``pairs='per_direction'``, the reference, as ALBEF's and BLIP's code do), up to float
rounding of batches of another shape. The unique pairs are sorted by text length, then
image, and cut into batches of ``batch_size``: each batch is padded only to its own
longest text, and when the model's ``rerank_scores`` takes ``image_index``, a batch passes
each distinct image once (its cross-attention keys/values computed once per batch, not
once per pair: ALBEF's loop repeats the image ``k`` times). A pair's ITC score is the one
of the image->text direction where it is a candidate there (else text->image's).
The passes are split across ranks (each rank scores a contiguous block of pairs or
queries, with a progress bar on rank 0) and the scores are all-gathered, so every rank
ends with the same result. Every rank runs the same number of forward passes (short
blocks are padded), as ZeRO-3 requires. The metric needs the model: run it under
``RetrievalValLoop`` / ``RetrievalTestLoop`` (``val_cfg`` / ``test_cfg``), which hand
it over.
"""
import inspect
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from mmengine.dist import broadcast_object_list, collect_results, get_rank, get_world_size
from mmengine.logging import print_log

from vlp.registry import METRICS
from .retrieval import (RetrievalMetric, itc_ranks, ranks_from_scores, retrieval_metrics,
                        topk_candidates)


def _unwrap(model):
    while isinstance(getattr(model, 'module', None), torch.nn.Module):
        model = model.module
    return model


@METRICS.register_module()
class ITMRetrievalMetric(RetrievalMetric):
    """Recall@K of ITC retrieval and of ITM re-ranking of its top-``k`` candidates.

    Consumes, per image, ``image_feat [D]``, ``image_embeds [N, C]``, ``text_feat [K, D]``,
    ``text_embeds [K, L, C]`` (or ``[K, L]`` token ids), ``text_mask [K, L]`` and
    ``image_id`` (ALBEF / BLIP ``predict``): ``text_embeds`` rows go to
    ``model.rerank_scores`` as they are.

    Args:
        k: candidates re-ranked per query (ALBEF/BLIP on COCO: 256; Flickr30k: 128).
        batch_size: image-text pairs per fusion forward pass.
        rerank_device: where the fusion passes run (default: the model's device).
        pairs: ``'union'`` (each unique pair of both directions scored once, batches
            sorted by text length) or ``'per_direction'`` (each query's ``k`` candidates
            in turn, the reference code's order).
        topk, chunk_size, device, dedup_key, collect_device, prefix, collect_dir: see
            :class:`RetrievalMetric`.
    """

    def __init__(self, k: int = 256, batch_size: int = 128,
                 rerank_device: Optional[str] = None, pairs: str = 'union', **kwargs):
        super().__init__(**kwargs)
        if k < 1:
            raise ValueError(f'k must be >= 1, got {k}')
        if pairs not in ('union', 'per_direction'):
            raise ValueError(f"pairs must be 'union' or 'per_direction', got {pairs!r}")
        self.pairs = pairs
        self.k = int(k)
        self.batch_size = int(batch_size)
        self.rerank_device = rerank_device
        self.model = None

    def bind_model(self, model) -> None:
        """Give the metric the (possibly wrapped) model whose ``rerank_scores`` it calls."""
        self.model = model

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            missing = [k for k in ('image_feat', 'text_feat', 'image_embeds', 'text_embeds',
                                   'text_mask') if k not in sample]
            if missing:
                raise KeyError(f'{type(self).__name__} needs {missing} in each prediction '
                               f'(got {sorted(sample)}): use a model with ITM re-ranking '
                               '(ALBEF, BLIP...)')
        before = len(self.results)
        super().process(data_batch, data_samples)
        for result, sample in zip(self.results[before:], data_samples):
            text_embeds = sample['text_embeds'].detach().cpu()
            text_mask = sample['text_mask'].detach().cpu()
            L = text_mask.shape[-1]
            # text_embeds: the mask's shape plus any trailing dims ([K, L, C] states, or
            # [K, L] token ids for models that re-encode the text, as BLIP)
            trailing = text_embeds.shape[text_mask.dim():]
            result['image_embeds'] = sample['image_embeds'].detach().cpu()
            result['text_embeds'] = text_embeds.reshape(-1, L, *trailing)
            result['text_mask'] = text_mask.reshape(-1, L)

    # -- distributed evaluation ---------------------------------------------------------
    def evaluate(self, size: int) -> dict:
        """Collect the results of every rank on every rank, re-rank jointly, and return
        the same metrics on every rank."""
        if self.model is None:
            raise RuntimeError(
                f'{type(self).__name__} needs the model to re-rank: set '
                "val_cfg=dict(type='RetrievalValLoop') / test_cfg=dict(type='RetrievalTestLoop')")
        if len(self.results) == 0:
            print_log(f'{type(self).__name__} got empty `self.results`.', logger='current',
                      level=logging.WARNING)
        results = collect_results(self.results, size, self.collect_device)
        if get_world_size() > 1:
            holder = [results]
            broadcast_object_list(holder)
            results = holder[0]
        metrics = self.compute_metrics(results)
        if self.prefix:
            metrics = {f'{self.prefix}/{k}': v for k, v in metrics.items()}
        self.results.clear()
        return metrics

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        results, image_feat, text_feat, txt2img = self.stack_results(results)
        out = {}
        itc = retrieval_metrics(*itc_ranks(image_feat, text_feat, txt2img, self.chunk_size,
                                           self.device), self.topk)
        image_embeds = torch.stack([r['image_embeds'] for r in results])  # (N_img, N, C)
        L = max(r['text_mask'].shape[-1] for r in results)
        text_embeds = torch.cat([_pad_len(r['text_embeds'], L) for r in results])
        text_mask = torch.cat([_pad_len(r['text_mask'], L) for r in results])
        scores_i2t, scores_t2i = self.rerank(image_feat, text_feat, image_embeds, text_embeds,
                                             text_mask)
        out.update(retrieval_metrics(*ranks_from_scores(scores_i2t, scores_t2i, txt2img,
                                                        self.chunk_size), self.topk))
        out.update({f'itc_{k}': v for k, v in itc.items()})
        return out

    @torch.no_grad()
    def rerank(self, image_feat, text_feat, image_embeds, text_embeds, text_mask
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(scores_i2t [N_img, N_txt], scores_t2i [N_txt, N_img])``: ``-inf`` except the
        top-``k`` ITC candidates of each query, which hold ``model.rerank_scores``."""
        model = _unwrap(self.model)
        was_training = model.training
        model.eval()
        device = torch.device(self.rerank_device) if self.rerank_device else model.device
        sim_i2t, top_i2t = topk_candidates(image_feat, text_feat, self.k, self.chunk_size)
        sim_t2i, top_t2i = topk_candidates(text_feat, image_feat, self.k, self.chunk_size)
        n_img, n_txt = image_feat.shape[0], text_feat.shape[0]
        if self.pairs == 'union':
            out = self._rerank_union(model, device, sim_i2t, top_i2t, sim_t2i, top_t2i,
                                     image_embeds, text_embeds, text_mask)
            model.train(was_training)
            return out
        total = (n_img * top_i2t.shape[1] + n_txt * top_t2i.shape[1])
        progress = _Progress(total, enabled=get_rank() == 0)

        def score_rows(query_is_image: bool, sims, tops) -> torch.Tensor:
            n_query, k = tops.shape
            world, rank = get_world_size(), get_rank()
            per_rank = -(-n_query // world)
            start, stop = min(rank * per_rank, n_query), min((rank + 1) * per_rank, n_query)
            q_idx = torch.arange(start, stop).repeat_interleave(k)  # (R k,)
            c_idx = tops[start:stop].reshape(-1)
            itc_s = sims[start:stop].reshape(-1)
            # every rank runs the same number of batches (ZeRO-3 gathers collectively)
            n_batches = -(-per_rank * k // self.batch_size)
            scores = []
            for b in range(n_batches):
                sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                qi, ci = q_idx[sl], c_idx[sl]
                pad = qi.numel() == 0
                if pad:  # a dummy pair keeps this rank in step with the others
                    qi = ci = torch.zeros(1, dtype=torch.long)
                img_i, txt_i = (qi, ci) if query_is_image else (ci, qi)
                s = model.rerank_scores(image_embeds[img_i].to(device),
                                        text_embeds[txt_i].to(device),
                                        text_mask[txt_i].to(device),
                                        itc_s[sl].to(device) if not pad else None)
                if not pad:
                    scores.append(s.float().cpu())
                progress.update(qi.numel() * world if not pad else 0)
            local = torch.full((per_rank, k), float('-inf'))
            if scores:
                local[:stop - start] = torch.cat(scores).view(stop - start, k)
            rows = _all_gather_rows(local, device)[:n_query]  # (n_query, k)
            n_cand = n_txt if query_is_image else n_img
            full = torch.full((n_query, n_cand), float('-inf'))
            full.scatter_(1, tops, rows)
            return full

        scores_i2t = score_rows(True, sim_i2t, top_i2t)
        scores_t2i = score_rows(False, sim_t2i, top_t2i)
        progress.close()
        model.train(was_training)
        return scores_i2t, scores_t2i


    def _rerank_union(self, model, device, sim_i2t, top_i2t, sim_t2i, top_t2i,
                      image_embeds, text_embeds, text_mask):
        """Both directions' candidates as one set of unique pairs, scored once each."""
        n_img, n_txt = image_embeds.shape[0], text_embeds.shape[0]
        k_i2t, k_t2i = top_i2t.shape[1], top_t2i.shape[1]
        # pair key: image * n_txt + text; i2t's pairs first (their ITC score is used)
        keys = torch.cat([(torch.arange(n_img)[:, None] * n_txt + top_i2t).reshape(-1),
                          (top_t2i * n_txt + torch.arange(n_txt)[:, None]).reshape(-1)])
        itc = torch.cat([sim_i2t.reshape(-1), sim_t2i.reshape(-1)]).float()
        uniq, inverse = torch.unique(keys, return_inverse=True)  # sorted: by image, text
        U = uniq.numel()
        first = torch.full((U,), keys.numel(), dtype=torch.long).scatter_reduce(
            0, inverse, torch.arange(keys.numel()), 'amin')
        pair_itc = itc[first]
        img_u, txt_u = uniq // n_txt, uniq % n_txt
        # text length = last attended position + 1 (positions after it are padding)
        L = text_mask.shape[1]
        pos = torch.arange(1, L + 1)
        lengths = (text_mask.bool() * pos).amax(dim=1).clamp(min=1)  # (N_txt,)
        order = torch.sort(lengths[txt_u], stable=True).indices  # by length, image, text
        shared = 'image_index' in inspect.signature(model.rerank_scores).parameters

        world, rank = get_world_size(), get_rank()
        per_rank = -(-U // world)
        start, stop = min(rank * per_rank, U), min((rank + 1) * per_rank, U)
        mine = order[start:stop]
        n_batches = -(-per_rank // self.batch_size)  # the same on every rank (ZeRO-3)
        progress = _Progress(U, enabled=rank == 0)
        scores = []
        for b in range(n_batches):
            sel = mine[b * self.batch_size:(b + 1) * self.batch_size]
            pad = sel.numel() == 0
            if pad:  # a dummy pair keeps this rank in step with the others
                sel = order[:1]
            img_i, txt_i = img_u[sel], txt_u[sel]
            Lb = int(lengths[txt_i].max())
            kw = {}
            if shared:
                imgs, idx = torch.unique(img_i, return_inverse=True)
                kw['image_index'] = idx.to(device)
            else:
                imgs = img_i
            s = model.rerank_scores(image_embeds[imgs].to(device),
                                    text_embeds[txt_i][:, :Lb].to(device),
                                    text_mask[txt_i][:, :Lb].to(device),
                                    pair_itc[sel].to(device), **kw)
            if not pad:
                scores.append(s.float().cpu())
            progress.update(sel.numel() * world if not pad else 0)
        progress.close()
        local = torch.full((per_rank,), float('-inf'))
        if scores:
            local[:stop - start] = torch.cat(scores)
        sorted_scores = _all_gather_rows(local[:, None], device)[:U, 0]
        pair_scores = torch.empty(U)
        pair_scores[order] = sorted_scores
        n1 = n_img * k_i2t
        rows_i2t = pair_scores[inverse[:n1]].view(n_img, k_i2t)
        rows_t2i = pair_scores[inverse[n1:]].view(n_txt, k_t2i)
        scores_i2t = torch.full((n_img, n_txt), float('-inf')).scatter_(1, top_i2t, rows_i2t)
        scores_t2i = torch.full((n_txt, n_img), float('-inf')).scatter_(1, top_t2i, rows_t2i)
        return scores_i2t, scores_t2i


def _pad_len(x: torch.Tensor, L: int) -> torch.Tensor:
    """Pad dim 1 of ``[K, L', ...]`` with zeros to ``L``."""
    if x.shape[1] == L:
        return x
    pad = torch.zeros(x.shape[0], L - x.shape[1], *x.shape[2:], dtype=x.dtype)
    return torch.cat([x, pad], dim=1)


def _all_gather_rows(x: torch.Tensor, device) -> torch.Tensor:
    """Concatenate the equally-shaped ``x`` of every rank (on the backend's device)."""
    if get_world_size() == 1:
        return x
    backend_device = device if dist.get_backend() == 'nccl' else torch.device('cpu')
    x = x.to(backend_device)
    out = [torch.empty_like(x) for _ in range(get_world_size())]
    dist.all_gather(out, x)
    return torch.cat(out).cpu()


class _Progress:
    """A progress bar of the re-ranking pairs on rank 0 (mmengine's ``ProgressBar``)."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.done = 0
        self.total = total
        if enabled and total > 0:
            from mmengine.utils import ProgressBar
            print_log(f'ITM re-ranking: {total} image-text pairs', logger='current')
            self.bar = ProgressBar(total)

        self.total = total

    def update(self, n: int) -> None:
        n = min(n, self.total - self.done)
        if self.bar is not None and n > 0:
            self.bar.update(n)
        self.done += max(n, 0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.file.write('\n')
            self.bar.file.flush()
