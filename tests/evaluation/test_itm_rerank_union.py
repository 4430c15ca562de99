"""ITM re-ranking scores each unique (image, text) pair of the two directions' top-k union
once (issue 21), in batches sorted by text length with each image's cross-attention
keys/values computed once per batch: the same rankings and recalls as scoring each
direction's candidates separately (the reference code's loop), on tiny ALBEF and BLIP
models, with texts of different lengths and overlapping candidate sets."""
import pytest
import torch
import torch.nn.functional as F

from vlp.evaluation import ITMRetrievalMetric
from vlp.evaluation.metrics.retrieval import ranks_from_scores, retrieval_metrics

N_IMG, CAPS, L = 7, 3, 10


def _inputs(model, family, seed=0):
    """Rerank inputs as ``predict`` gives them: image tokens, text states (ALBEF) or ids
    (BLIP) with masks of different lengths, ITC features near the matching image."""
    g = torch.Generator().manual_seed(seed)
    n_txt = N_IMG * CAPS
    width = 32
    image_embeds = torch.randn(N_IMG, 17, width, generator=g)
    lengths = torch.randint(3, L + 1, (n_txt,), generator=g)
    mask = (torch.arange(L)[None] < lengths[:, None]).long()
    if family == 'albef':
        text = torch.randn(n_txt, L, width, generator=g)
    else:
        text = torch.randint(5, 40, (n_txt, L), generator=g) * mask
        text[:, 0] = 2
    image_feat = F.normalize(torch.randn(N_IMG, 8, generator=g), dim=-1)
    txt2img = torch.arange(N_IMG).repeat_interleave(CAPS)
    text_feat = image_feat[txt2img] + 0.9 * torch.randn(n_txt, 8, generator=g)
    return image_feat, text_feat, image_embeds, text, mask, txt2img


def _model(family):
    if family == 'albef':
        from test_albef import tiny_albef
        return tiny_albef().eval()
    from test_blip import tiny_blip
    return tiny_blip().eval()


@pytest.mark.parametrize('family', ['albef', 'blip'])
def test_union_scores_each_pair_once_and_equals_per_direction(family, monkeypatch):
    import sys
    import os.path as osp
    sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'models'))
    model = _model(family)
    image_feat, text_feat, image_embeds, text, mask, txt2img = _inputs(model, family)
    calls = []
    score = model.rerank_scores

    def spy(image_embeds, text_embeds, text_mask, itc_scores=None, image_index=None):
        calls.append((image_embeds.shape[0], text_embeds.shape[0], text_mask.shape[1],
                      image_index is not None))
        return score(image_embeds, text_embeds, text_mask, itc_scores, image_index=image_index)

    monkeypatch.setattr(model, 'rerank_scores', spy)
    k = 4
    out = {}
    for pairs in ('per_direction', 'union'):
        metric = ITMRetrievalMetric(k=k, batch_size=8, pairs=pairs)
        metric.bind_model(model)
        calls.clear()
        with torch.no_grad():
            s_i2t, s_t2i = metric.rerank(image_feat, text_feat, image_embeds, text, mask)
        out[pairs] = (s_i2t, s_t2i, list(calls))
    (a_i2t, a_t2i, per_dir), (b_i2t, b_t2i, union) = out['per_direction'], out['union']
    # the same candidates hold scores, the same values up to float rounding
    assert torch.equal(torch.isinf(a_i2t), torch.isinf(b_i2t))
    assert torch.equal(torch.isinf(a_t2i), torch.isinf(b_t2i))
    fin = torch.isfinite(a_i2t)
    torch.testing.assert_close(b_i2t[fin], a_i2t[fin], atol=1e-5, rtol=1e-5)
    fin = torch.isfinite(a_t2i)
    torch.testing.assert_close(b_t2i[fin], a_t2i[fin], atol=1e-5, rtol=1e-5)
    # identical rankings, hence recalls
    assert torch.equal(a_i2t.argsort(dim=1, descending=True)[:, :k],
                       b_i2t.argsort(dim=1, descending=True)[:, :k])
    assert torch.equal(a_t2i.argsort(dim=1, descending=True)[:, :k],
                       b_t2i.argsort(dim=1, descending=True)[:, :k])
    ra = retrieval_metrics(*ranks_from_scores(a_i2t, a_t2i, txt2img, 64), (1, 5))
    rb = retrieval_metrics(*ranks_from_scores(b_i2t, b_t2i, txt2img, 64), (1, 5))
    assert ra == rb
    # each unique pair scored once: fewer pairs than both directions' k each
    n_pairs_dir = sum(c[1] for c in per_dir)
    assert n_pairs_dir == k * (N_IMG + N_IMG * CAPS)
    unique = int(torch.isfinite(a_i2t).sum() + torch.isfinite(a_t2i).sum()
                 - (torch.isfinite(a_i2t) & torch.isfinite(a_t2i.T)).sum())
    assert sum(c[1] for c in union) == unique < n_pairs_dir
    # batches sorted by length: padded to their own longest text, images passed once
    assert all(c[3] for c in union) and any(c[2] < L for c in union)
    assert sum(c[0] for c in union) < unique
    assert all(c[0] == c[1] and c[2] == L for c in per_dir)


def test_union_is_the_default_and_pairs_is_checked():
    assert ITMRetrievalMetric(k=2).pairs == 'union'
    with pytest.raises(ValueError, match='pairs'):
        ITMRetrievalMetric(k=2, pairs='both')
