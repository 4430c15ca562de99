"""RetrievalMetric and the recall maths on cases whose answer is known."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlp.evaluation.metrics.retrieval import (RetrievalMetric, itc_ranks, positive_ranks,
                                              ranks_from_scores, retrieval_metrics,
                                              retrieval_recalls, topk_candidates)
from vlp.registry import METRICS


def _predictions(image_feat, text_feats, image_ids=None):
    """What CLIP.predict returns: one dict per image."""
    ids = range(len(image_feat)) if image_ids is None else image_ids
    return [dict(image_id=i, image_feat=f, text_feat=t, text=['...'] * len(t))
            for i, f, t in zip(ids, image_feat, text_feats)]


def _evaluate(preds, batch=3, **kwargs):
    metric = RetrievalMetric(**kwargs)
    for s in range(0, len(preds), batch):
        metric.process(None, preds[s:s + batch])
    return metric.evaluate(len(preds))


def albef_itm_eval(scores_i2t, scores_t2i, txt2img, img2txt):
    """ALBEF's ``itm_eval`` (argsort ranking), transcribed as a reference."""
    ranks = np.zeros(scores_i2t.shape[0])
    for index, score in enumerate(scores_i2t):
        inds = np.argsort(score)[::-1]
        ranks[index] = min(np.where(inds == i)[0][0] for i in img2txt[index])
    tr = [100.0 * np.mean(ranks < k) for k in (1, 5, 10)]
    ranks = np.zeros(scores_t2i.shape[0])
    for index, score in enumerate(scores_t2i):
        inds = np.argsort(score)[::-1]
        ranks[index] = np.where(inds == txt2img[index])[0][0]
    ir = [100.0 * np.mean(ranks < k) for k in (1, 5, 10)]
    return dict(txt_r1=tr[0], txt_r5=tr[1], txt_r10=tr[2], txt_r_mean=sum(tr) / 3,
                img_r1=ir[0], img_r5=ir[1], img_r10=ir[2], img_r_mean=sum(ir) / 3,
                r_mean=(sum(tr) / 3 + sum(ir) / 3) / 2)


def test_registered():
    assert METRICS.get('RetrievalMetric') is RetrievalMetric


def test_positive_ranks_known():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3],
                           [0.2, 0.8, 0.6, 0.4, 0.95],
                           [0.1, 0.2, 0.3, 0.4, 0.5]])
    pos = torch.tensor([[0, 0, 1, 1, 0],   # best positive 0.7: one negative (0.9) above
                        [0, 1, 0, 0, 0],   # 0.8: one negative (0.95) above
                        [0, 0, 0, 0, 0]], dtype=torch.bool)  # no positive: never correct
    assert positive_ranks(scores, pos).tolist() == [1, 1, 5]
    # ties with a negative count against the positive; NaN is the lowest score
    tied = torch.tensor([[0.5, 0.5, 0.1]])
    assert positive_ranks(tied, torch.tensor([[False, True, False]])).tolist() == [1]
    nan = torch.tensor([[float('nan'), 0.1, 0.2]])
    assert positive_ranks(nan, torch.tensor([[True, False, False]])).tolist() == [2]


def test_perfect_features_give_100():
    g = torch.Generator().manual_seed(0)
    image_feat = F.normalize(torch.randn(12, 32, generator=g), dim=-1)
    text_feats = [f + 0.01 * torch.randn(5, 32, generator=g) for f in image_feat]
    m = _evaluate(_predictions(image_feat, text_feats))
    assert set(m) == {f'retrieval/{k}' for k in (
        'txt_r1', 'txt_r5', 'txt_r10', 'txt_r_mean', 'img_r1', 'img_r5', 'img_r10',
        'img_r_mean', 'r_mean')}
    assert all(v == 100.0 for v in m.values()), m


def test_r1_fails_r5_succeeds():
    """12 images, one caption each; image 0's caption is 4th, image 1's 8th, image 2's
    12th; text->image is perfect."""
    n = 12
    s_i2t = torch.eye(n)
    s_i2t[0, 1:4] = 2.0   # 3 negatives above: rank 3
    s_i2t[1, 2:9] = 2.0   # 7 negatives above: rank 7
    s_i2t[2, 3:] = 2.0    # 9 negatives above ...
    s_i2t[2, :2] = 2.0    # ... and 2 more: rank 11
    m = retrieval_recalls(s_i2t, torch.eye(n), torch.arange(n))
    assert m['txt_r1'] == pytest.approx(100 * 9 / 12)
    assert m['txt_r5'] == pytest.approx(100 * 10 / 12)
    assert m['txt_r10'] == pytest.approx(100 * 11 / 12)
    assert m['txt_r_mean'] == pytest.approx(100 * 30 / 36)
    assert m['img_r1'] == m['img_r5'] == m['img_r10'] == m['img_r_mean'] == 100.0
    assert m['r_mean'] == pytest.approx((100 * 30 / 36 + 100) / 2)


def test_any_caption_for_i2t_owner_for_t2i():
    """K = 5 captions an image, only the first matches it; the other four point away from
    their image. i2t needs ANY caption -> 100; t2i asks each caption for its own image ->
    only 1 of 5 captions is right (20 %)."""
    n, k, d = 20, 5, 128
    eye = torch.eye(d)
    image_feat = eye[:n]
    text_feats = []
    for i in range(n):
        good = eye[i:i + 1]
        # unrelated directions, slightly anti-aligned with their own image
        bad = eye[n + 4 * i:n + 4 * i + 4] - 0.1 * eye[i]
        text_feats.append(torch.cat([good, bad]))
    m = _evaluate(_predictions(image_feat, text_feats), prefix='coco')
    for kk in (1, 5, 10):
        assert m[f'coco/txt_r{kk}'] == 100.0
        assert m[f'coco/img_r{kk}'] == pytest.approx(100.0 / k)
    # the same captions in another order: the good one last
    text_feats = [t.flip(0) for t in text_feats]
    m2 = _evaluate(_predictions(image_feat, text_feats), prefix='coco')
    assert m2 == m


def test_i2t_uses_best_of_captions_and_t2i_owner():
    """Two images, three captions each (rows: images; columns: captions 0-2 of image 0,
    0-2 of image 1)."""
    s = torch.tensor([[0.1, 0.2, 0.9, 0.95, 0.0, 0.0],   # best own caption 2nd -> rank 1
                      [0.5, 0.6, 0.7, 0.1, 0.2, 0.3]])   # own captions below 3 -> rank 3
    txt2img = torch.tensor([0, 0, 0, 1, 1, 1])
    ranks_i2t, ranks_t2i = ranks_from_scores(s, s.t(), txt2img)
    assert ranks_i2t.tolist() == [1, 3]
    # caption 0: own 0.1 < 0.5 -> 1; 1: 0.2<0.6 -> 1; 2: 0.9>0.7 -> 0;
    # 3: own 0.1 < 0.95 -> 1; 4: 0.2>0 -> 0; 5: 0.3>0 -> 0
    assert ranks_t2i.tolist() == [1, 1, 0, 1, 0, 0]
    m = retrieval_metrics(ranks_i2t, ranks_t2i, topk=(1, 2, 4))
    assert m['txt_r1'] == 0.0 and m['txt_r2'] == 50.0 and m['txt_r4'] == 100.0
    assert m['img_r1'] == pytest.approx(50.0) and m['img_r2'] == 100.0


@pytest.mark.parametrize('seed', [0, 1])
def test_matches_albef_itm_eval(seed):
    """Random continuous scores, 1-4 captions an image, asymmetric t2i scores (as after
    ITM re-ranking): identical to ALBEF's argsort-based itm_eval."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, size=40)
    txt2img = np.repeat(np.arange(40), counts)
    img2txt = [np.where(txt2img == i)[0] for i in range(40)]
    # bias the positives up so every recall level is exercised
    s_i2t = rng.normal(size=(40, len(txt2img))) + 2.0 * (txt2img[None] == np.arange(40)[:, None])
    s_t2i = rng.normal(size=(len(txt2img), 40)) + 2.0 * (txt2img[:, None] == np.arange(40)[None])
    want = albef_itm_eval(s_i2t, s_t2i, txt2img, img2txt)
    got = retrieval_recalls(torch.from_numpy(s_i2t), torch.from_numpy(s_t2i),
                            torch.from_numpy(txt2img))
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key]), key
    assert 0 < want['txt_r1'] < 100 and 0 < want['img_r1'] < 100


def test_random_features_about_chance():
    n, k, d = 1000, 5, 64
    g = torch.Generator().manual_seed(0)
    image_feat = torch.randn(n, d, generator=g)
    text_feat = torch.randn(n * k, d, generator=g)
    txt2img = torch.arange(n).repeat_interleave(k)
    ranks = itc_ranks(image_feat, text_feat, txt2img, chunk_size=300)
    m = retrieval_metrics(*ranks)
    for kk in (1, 5, 10):
        want_t2i = 100.0 * kk / n
        want_i2t = 100.0 * (1 - math.comb(n * k - k, kk) / math.comb(n * k, kk))
        # 3-4 binomial standard deviations around chance
        assert abs(m[f'img_r{kk}'] - want_t2i) < 0.8, (kk, m)
        assert abs(m[f'txt_r{kk}'] - want_i2t) < 1.0, (kk, m)
    # chunking does not change anything
    whole = itc_ranks(image_feat, text_feat, txt2img, chunk_size=10 ** 6)
    assert all(torch.equal(a, b) for a, b in zip(ranks, whole))


def test_chunked_equals_full_matrix_and_normalises():
    g = torch.Generator().manual_seed(3)
    image_feat = torch.randn(30, 16, generator=g)
    text_feat = image_feat.repeat_interleave(2, 0) + 1.5 * torch.randn(60, 16, generator=g)
    txt2img = torch.arange(30).repeat_interleave(2)
    s = F.normalize(image_feat, dim=-1) @ F.normalize(text_feat, dim=-1).t()
    want = ranks_from_scores(s, s.t(), txt2img)
    # unnormalised inputs of very different norms: the metric uses cosine similarity
    got = itc_ranks(image_feat * torch.rand(30, 1, generator=g) * 10, text_feat, txt2img,
                    chunk_size=7)
    assert all(torch.equal(a, b) for a, b in zip(want, got))
    assert 0 < (want[0] == 0).float().mean() < 1


def test_variable_caption_counts_and_1d_text_feat():
    eye = torch.eye(8)
    image_feat = eye[:3]
    text_feats = [eye[0:1].repeat(3, 1), eye[1], eye[2:3].repeat(2, 1)]  # K = 3, 1 ([D]), 2
    m = _evaluate(_predictions(image_feat, text_feats), topk=(1,))
    assert m['retrieval/txt_r1'] == 100.0 and m['retrieval/img_r1'] == 100.0


def test_padded_duplicates_counted_once():
    """A sampler padding the last batch repeats images: without de-duplication the
    repeated image ties with itself for its captions; with it the result is exact."""
    g = torch.Generator().manual_seed(0)
    image_feat = F.normalize(torch.randn(6, 16, generator=g), dim=-1)
    text_feats = [f + 0.01 * torch.randn(5, 16, generator=g) for f in image_feat]
    preds = _predictions(image_feat, text_feats)
    padded = preds + preds[:2]  # e.g. 8 slots for 6 images
    clean = _evaluate(preds)
    assert _evaluate(padded) == clean
    assert all(v == 100.0 for v in clean.values())
    no_dedup = RetrievalMetric(dedup_key=None)
    no_dedup.process(None, padded)
    m = no_dedup.evaluate(len(padded))
    assert m['retrieval/img_r1'] < 100.0  # the duplicates tie with their originals
    # tensor ids work as keys too
    tensor_ids = _predictions(image_feat, text_feats,
                              image_ids=[torch.tensor(i) for i in range(6)])
    assert _evaluate(tensor_ids + tensor_ids[:1]) == clean


def test_nan_features_score_zero():
    image_feat = torch.full((20, 8), float('nan'))  # more than 10 images: R@10 can fail
    text_feats = [torch.full((2, 8), float('nan')) for _ in range(20)]
    m = _evaluate(_predictions(image_feat, text_feats))
    assert all(v == 0.0 for v in m.values()), m


def test_missing_keys_raise():
    metric = RetrievalMetric()
    with pytest.raises(KeyError, match='text_feat'):
        metric.process(None, [dict(image_id=0, image_feat=torch.ones(4))])
    with pytest.raises(KeyError, match='image_id'):
        metric.process(None, [dict(image_feat=torch.ones(4), text_feat=torch.ones(2, 4))])


def test_compute_ranks_is_the_rerank_seam():
    """A subclass that re-scores candidates (as ITM re-ranking would) changes the result
    through compute_ranks alone."""

    class Reversed(RetrievalMetric):
        def compute_ranks(self, image_feat, text_feat, txt2img):
            s = -(image_feat @ text_feat.t())
            return ranks_from_scores(s, s.t(), txt2img)

    eye = torch.eye(32)
    preds = _predictions(eye[:20], [eye[i:i + 1].repeat(2, 1) for i in range(20)])
    assert _evaluate(preds)['retrieval/r_mean'] == 100.0
    metric = Reversed()
    metric.process(None, preds)
    assert metric.evaluate(20)['retrieval/r_mean'] == 0.0


def test_topk_candidates():
    g = torch.Generator().manual_seed(0)
    q, gal = torch.randn(9, 8, generator=g), torch.randn(20, 8, generator=g)
    scores, idx = topk_candidates(q, gal, k=4, chunk_size=4)
    full = F.normalize(q, dim=-1) @ F.normalize(gal, dim=-1).t()
    want_s, want_i = full.topk(4, dim=1)
    assert torch.equal(idx, want_i) and torch.allclose(scores, want_s)
    assert topk_candidates(q, gal[:3], k=10)[1].shape == (9, 3)
