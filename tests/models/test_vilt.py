"""ViLT: the single-stream transformer's shapes, whole-word masking, ITM's image
replacement, WPA (IPOT) and the losses' gradients; retrieval through ITMRetrievalMetric."""
import pytest
import torch

import vlp.models  # noqa: F401
from vlp.models.losses.wpa import ipot
from vlp.models.utils.masking import mask_whole_words
from vlp.registry import MODELS

V, PAD, CLS, SEP, MASK = 53, 0, 2, 3, 4


def tiny_vilt(wpa=True, **kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='ViLT',
        backbone=dict(type='SingleStreamTransformer', img_size=16, patch_size=8,
                      vocab_size=V, max_text_len=12, embed_dim=32, depth=2, num_heads=2),
        itm_head=dict(type='ITMHead', hidden_size=32),
        mlm_head=dict(type='MLMHead', hidden_size=32, vocab_size=V),
        wpa=dict(type='WordPatchAlignmentLoss') if wpa else None,
        mask_token_id=MASK, special_token_ids=[PAD, CLS, SEP], **kwargs))


def batch(B=4, L=10):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.long)
    ids[:, 0] = CLS
    ids[:, L - 1] = SEP
    ids[0, 6], ids[0, 7:], mask[0, 7:] = SEP, PAD, 0
    return dict(images=torch.randn(B, 3, 16, 16, generator=g), input_ids=ids,
                attention_mask=mask)


def test_single_stream_shapes_and_pooler():
    model = tiny_vilt()
    b = batch()
    out = model.fuse(b['images'], b['input_ids'], b['attention_mask'])
    assert out['text_embeds'].shape == (4, 10, 32)
    assert out['image_embeds'].shape == (4, 1 + 4, 32)  # [class] + 2 x 2 patches
    assert out['pooled'].shape == (4, 32) and out['pooled'].abs().max() <= 1
    # a larger image: position embeddings resampled to the 3 x 3 grid
    big = model.fuse(torch.randn(4, 3, 24, 24), b['input_ids'], b['attention_mask'])
    assert big['image_embeds'].shape == (4, 10, 32)
    # padded text tokens do not change the real ones
    ids2 = b['input_ids'].clone()
    ids2[0, 7:] = 9
    again = model.fuse(b['images'], ids2, b['attention_mask'])
    torch.testing.assert_close(again['text_embeds'][0, :7], out['text_embeds'][0, :7])
    torch.testing.assert_close(again['pooled'], out['pooled'])


def test_patch_sampling_only_in_training():
    model = MODELS.build(dict(type='SingleStreamTransformer', img_size=32, patch_size=8,
                              vocab_size=V, max_text_len=12, embed_dim=16, depth=1,
                              num_heads=2, max_image_len=5))
    ids = torch.full((2, 4), 7)
    model.train()
    assert model(torch.randn(2, 3, 32, 32), ids)['image_embeds'].shape[1] == 1 + 5
    model.eval()
    assert model(torch.randn(2, 3, 32, 32), ids)['image_embeds'].shape[1] == 1 + 16


def test_whole_word_masking_groups_subwords():
    # [CLS] w0 w1 w1 w1 w2 w3 w3 [SEP] [PAD] [PAD]
    ids = torch.tensor([[CLS, 10, 11, 12, 13, 14, 15, 16, SEP, PAD, PAD]]).repeat(400, 1)
    words = torch.tensor([[-1, 0, 1, 1, 1, 2, 3, 3, -1, -1, -1]]).repeat(400, 1)
    mask = (ids != PAD).long()
    g = torch.Generator().manual_seed(0)
    masked, labels = mask_whole_words(ids, words, MASK, V, 0.15, [PAD, CLS, SEP], mask,
                                      generator=g)
    chosen = labels != -100
    # every word is all in or all out
    assert torch.equal(chosen[:, 2], chosen[:, 3]) and torch.equal(chosen[:, 2], chosen[:, 4])
    assert torch.equal(chosen[:, 6], chosen[:, 7])
    # special tokens and padding never chosen; labels are the original ids
    assert not chosen[:, [0, 8, 9, 10]].any()
    assert torch.equal(labels[chosen], ids[chosen])
    # about 15% of the words chosen, 80% of the chosen tokens become [MASK]
    word_rate = chosen[:, [1, 2, 5, 6]].float().mean().item()
    assert 0.1 < word_rate < 0.2
    assert 0.7 < (masked[chosen] == MASK).float().mean().item() < 0.9
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_mlm_uses_word_ids_when_given_else_token_masking():
    model = tiny_vilt(wpa=False, mlm_probability=1.0)
    model.train()
    b = batch()
    words = torch.full_like(b['input_ids'], -1)
    words[:, 1:4] = 0  # one three-token word; the other tokens belong to no word
    seen = {}
    orig = model.backbone.forward

    def spy(images, input_ids, attention_mask=None, **kw):
        seen['ids'] = input_ids
        return orig(images, input_ids, attention_mask, **kw)

    model.backbone.forward = spy
    model.loss(b, dict(word_ids=words))
    changed = seen['ids'] != b['input_ids']
    assert not changed[:, 4:].any()  # only the word's tokens could change
    model.loss(b)  # no word ids: token-level masking of every real non-special token
    changed = seen['ids'] != b['input_ids']
    assert changed[:, 4:8].any()


def test_itm_replaces_half_the_images_with_other_ones():
    model = tiny_vilt()
    images = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 2, 2)
    negatives = 0
    for _ in range(50):
        swapped, matched = model.itm_pairs(images)
        assert int((~matched).sum()) == 4  # ViLT: B - B // 2
        same = (swapped[:, 0, 0, 0] == images[:, 0, 0, 0])
        assert torch.equal(same, matched)  # a replaced image is never the row's own
        negatives += int((~matched).sum())
    assert negatives == 200
    _, matched = tiny_vilt(itm_neg_prob=0.25).itm_pairs(images)
    assert int((~matched).sum()) == 2
    _, matched = model.itm_pairs(images[:7])
    assert int((~matched).sum()) == 4  # ceil(7 / 2)


def test_ipot_plan_marginals_and_wpa_distance():
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(2, 5, 7, generator=g)
    xm = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    ym = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1] * 7]).bool()
    plan = ipot(cost, xm, ym, iterations=200)
    assert (plan >= 0).all() and plan[0, 3:].abs().sum() == 0 and plan[0, :, 4:].sum() == 0
    torch.testing.assert_close(plan.sum(dim=(1, 2)), torch.ones(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(plan[0].sum(1)[:3], torch.full((3,), 1 / 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(plan[1].sum(0), torch.full((7,), 1 / 7), atol=1e-4, rtol=0)

    loss = MODELS.build(dict(type='WordPatchAlignmentLoss'))
    t, v = torch.randn(3, 6, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    tm, vm = torch.ones(3, 6, dtype=torch.long), torch.ones(3, 5, dtype=torch.long)
    tm[0, 4:] = 0
    d = loss.distance(t, tm, v, vm)
    assert torch.isfinite(d).all() and (d >= 0).all() and (d <= 2).all()
    # identical text and image states are (nearly) at distance 0
    same = loss.distance(v, torch.ones(3, 5), v, vm)
    assert (same < d).all()
    out = loss(t, tm, v, vm, torch.ones(3, dtype=torch.bool))['loss_wpa']
    assert torch.isfinite(out) and out >= 0  # matched pairs only: the mean distance
    torch.testing.assert_close(out, d.mean())
    mixed = loss(t, tm, v, vm, torch.tensor([True, False, True]))['loss_wpa']
    torch.testing.assert_close(mixed, (d[0] - d[1] + d[2]) / 3)


def test_losses_backprop_everywhere():
    model = tiny_vilt()
    model.train()
    out = model.loss(batch(), dict(word_ids=torch.arange(10).repeat(4, 1) - 1))
    assert {'loss_itm', 'itm_acc', 'loss_wpa', 'loss_mlm', 'mlm_acc'} <= set(out)
    assert all(torch.isfinite(v) for v in out.values())
    total = sum(v for k, v in out.items() if 'loss' in k)
    total.backward()
    bb = model.backbone
    for p in (bb.patch_embed.weight, bb.word_embeddings.weight, bb.pooler.weight,
              bb.blocks[0].attn.qkv.weight, model.itm_head.fc.weight, model.mlm_head.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.mlm_head.decoder.weight is bb.word_embeddings.weight
    assert not any('loss' in k for k in ('itm_acc', 'mlm_acc'))


def test_retrieval_scores_every_pair():
    from vlp.evaluation.metrics.itm_retrieval import ITMRetrievalMetric
    model = tiny_vilt().eval()
    b = batch()
    res = model.predict(dict(images=b['images'], input_ids=b['input_ids'][:, None],
                             attention_mask=b['attention_mask'][:, None]),
                        dict(image_id=[0, 1, 2, 3]))
    assert res[0]['text_embeds'].dtype == torch.long
    metric = ITMRetrievalMetric(k=10 ** 6, batch_size=8)
    metric.bind_model(model)
    metric.process(None, res)
    scores_i2t, _ = metric.rerank(*[torch.stack([r[k] for r in metric.results])
                                    if k.startswith('image') else
                                    torch.cat([r[k] for r in metric.results])
                                    for k in ('image_feat', 'text_feat', 'image_embeds',
                                              'text_embeds', 'text_mask')])
    assert torch.isfinite(scores_i2t).all()  # all 4 x 4 pairs scored
    with torch.no_grad():
        direct = model.rerank_scores(b['images'][1:2], b['input_ids'][2:3],
                                     b['attention_mask'][2:3])
    torch.testing.assert_close(scores_i2t[1, 2], direct[0], atol=1e-5, rtol=0)
    out = metric.compute_metrics(metric.results)
    assert 'txt_r1' in out and out['itc_txt_r1'] == 0.0


def test_bad_probability_is_refused():
    with pytest.raises(ValueError):
        tiny_vilt(itm_neg_prob=1.5)
