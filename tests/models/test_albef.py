"""ALBEF's parts and maths: feature queue, EMA, hard negatives, MLM masking, momentum
distillation targets, the model's losses, and ITM re-ranked retrieval."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import vlp.models  # noqa: F401  (registers the parts)
from vlp.models.losses.contrastive import ContrastiveLoss as ITC
from vlp.models.losses.matching import hard_negative_weights, sample_hard_negatives
from vlp.models.utils.feature_queue import FeatureQueue
from vlp.models.utils.masking import mask_tokens
from vlp.models.utils.momentum import copy_params, ema_update, make_momentum_twins
from vlp.registry import MODELS

V = 53  # the demo BERT tokenizer's vocabulary


def tiny_albef(**kw):
    width = 32
    bert = dict(type='BertEncoder', vocab_size=V, hidden_size=width, num_heads=2,
                intermediate_size=64, max_position_embeddings=32)
    cfg = dict(
        type='ALBEF',
        vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=32,
                    patch_size=8, embed_dim=width, depth=1, num_heads=2),
        text=dict(bert, num_layers=1),
        fusion=dict(bert, num_layers=1, with_embeddings=False, cross_attention_layers='all'),
        vision_proj=dict(type='Projection', in_dim=width, out_dim=16, bias=True),
        text_proj=dict(type='Projection', in_dim=width, out_dim=16, bias=True),
        itm_head=dict(type='ITMHead', hidden_size=width),
        mlm_head=dict(type='MLMHead', hidden_size=width, vocab_size=V),
        queue_size=24, mask_token_id=4, special_token_ids=[0, 2])
    cfg.update(kw)
    return MODELS.build(cfg)


def batch(B=6, L=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, L), generator=g)
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, 7:] = 0
    ids[0, 7:] = 0
    return dict(images=torch.randn(B, 3, 32, 32, generator=g), input_ids=ids,
                attention_mask=mask)


# -- feature queue ---------------------------------------------------------------------------
def test_queue_ring_buffer_wraps_and_tracks_pointer():
    q = FeatureQueue(5, dict(f=2), id_names=('idx',))
    rows = lambda a, b: dict(f=torch.arange(a, b).float().repeat(2, 1).t(),  # noqa: E731
                             idx=torch.arange(a, b))
    q.enqueue(**rows(0, 3))
    assert int(q.ptr) == 3 and int(q.filled) == 3
    q.enqueue(**rows(3, 6))  # 3, 4 at the end; 5 wraps to slot 0
    assert int(q.ptr) == 1 and int(q.filled) == 5
    assert q.idx_queue.tolist() == [5, 1, 2, 3, 4]
    assert q.f_queue[:, 0].tolist() == [5, 1, 2, 3, 4]
    q.enqueue(**rows(10, 17))  # more rows than slots: the last 5 are kept
    assert int(q.ptr) == 1
    assert sorted(q.idx_queue.tolist()) == [12, 13, 14, 15, 16]
    assert q.idx_queue.tolist() == [16, 12, 13, 14, 15]


def test_queue_stage_commit_and_missing_hook_error():
    q = FeatureQueue(4, dict(image=3, text=3))
    assert torch.allclose(q.image_queue.norm(dim=1), torch.ones(4))  # random unit vectors
    q.stage(image=torch.ones(2, 3), text=torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match='FeatureQueueHook'):
        q.stage(image=torch.ones(2, 3), text=torch.zeros(2, 3))
    assert q.commit() == 2
    assert torch.equal(q.image_queue[:2], torch.ones(2, 3)) and int(q.ptr) == 2
    assert q.commit() == 0  # nothing staged
    with pytest.raises(KeyError):
        q.stage(image=torch.ones(2, 3))
    # buffers are in the state dict: checkpointed and restored
    assert {'image_queue', 'text_queue', 'ptr', 'filled'} <= set(q.state_dict())


def test_empty_queue_gives_only_written_rows_as_negatives():
    q = FeatureQueue(5, dict(f=2), init='empty')
    assert q.rows('f').shape == (0, 2)
    q.enqueue(f=torch.ones(3, 2))
    assert torch.equal(q.rows('f'), torch.ones(3, 2))
    q.enqueue(f=2 * torch.ones(4, 2))  # wraps: every row written
    assert q.rows('f').shape == (5, 2)
    assert FeatureQueue(5, dict(f=2)).rows('f').shape == (5, 2)  # ALBEF: random rows count
    full = FeatureQueue(5, dict(f=2))  # the negatives are a view of the buffer, not a copy
    assert full.rows('f').data_ptr() == full.f_queue.data_ptr()
    with pytest.raises(ValueError, match='init'):
        FeatureQueue(5, dict(f=2), init='zeros')
    # the model's ITC columns: the batch alone while the queue is empty, then batch + queue
    torch.manual_seed(0)
    model = tiny_albef(queue_init='empty', momentum_distill=False)
    model.init_weights()
    model.train()
    seen = []
    orig = model.itc.forward
    model.itc.forward = lambda *a, **k: seen.append(
        sum(c.shape[0] for c in k['columns'][1])) or orig(*a, **k)
    model.loss(batch())
    model.queue.commit()
    model.loss(batch())
    assert seen == [6, 12]


def test_queue_hook_start_iter_drops_early_steps():
    from types import SimpleNamespace

    from vlp.engine.hooks.momentum import FeatureQueueHook
    q = FeatureQueue(8, dict(f=2), init='empty')
    runner = SimpleNamespace(model=nn.ModuleDict(dict(q=q)), iter=0)
    hook = FeatureQueueHook(start_iter=2)
    for it in range(4):
        runner.iter = it
        q.stage(f=torch.full((1, 2), float(it)))
        hook.after_train_iter(runner, it)
        assert not q.has_staged
    assert q.rows('f')[:, 0].tolist() == [2.0, 3.0]
    with pytest.raises(ValueError):
        FeatureQueueHook(start_iter=-1)


def test_itm_negative_warmup_draws_uniformly_then_by_similarity(monkeypatch):
    from types import SimpleNamespace

    import vlp.models.losses.matching as matching
    from vlp.engine.hooks.momentum import ITMNegativeWarmupHook
    seen = []
    real = matching.sample_hard_negatives
    monkeypatch.setattr(matching, 'sample_hard_negatives',
                        lambda sim, pos: seen.append(sim.clone()) or real(sim, pos))
    torch.manual_seed(0)
    model = tiny_albef(queue_size=0, mlm_head=None)
    model.init_weights()
    model.train()
    hook = ITMNegativeWarmupHook(iters=2)
    runner = SimpleNamespace(model=model, iter=0)
    for it in range(3):
        runner.iter = it
        hook.before_train_iter(runner, it)
        assert model.itm.hard_negatives == (it >= 2)
        model.loss(batch())
    assert all(torch.count_nonzero(s) == 0 for s in seen[:4])  # 2 steps x (i2t, t2i)
    assert all(torch.count_nonzero(s) > 0 for s in seen[4:]) and len(seen) == 6
    with pytest.raises(TypeError):
        hook.before_train_iter(SimpleNamespace(model=nn.Linear(1, 1), iter=0), 0)


def test_distill_alpha_hook_ramps_the_schedule_through_its_protocol():
    from types import SimpleNamespace

    from vlp.engine.hooks.momentum import DistillAlphaHook, MomentumUpdateHook
    from vlp.models.losses.distill import DistillationSchedule
    torch.manual_seed(0)
    model = tiny_albef(alpha=0.4)
    assert isinstance(model.distill, DistillationSchedule) and model.distill.alpha == 0.4
    hook = DistillAlphaHook(warmup_iters=4)
    runner = SimpleNamespace(model=model, iter=0)
    seen = []
    for it in range(6):
        runner.iter = it
        hook.before_train_iter(runner, it)
        seen.append(model.distill.alpha)
    assert seen == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4])
    model.train()
    assert model.loss(batch())['alpha'].item() == pytest.approx(0.4)
    off = tiny_albef(momentum_distill=False)
    assert off.loss(batch())['alpha'].item() == 0.0  # disabled: the losses see 0
    with pytest.warns(DeprecationWarning):
        DistillAlphaHook(attr='alpha')
    plain = SimpleNamespace(model=nn.Linear(1, 1), iter=0)
    with pytest.raises(TypeError, match='DistillationSchedule'):
        hook.before_train_iter(plain, 0)
    twinless = MODELS.build(dict(type='CLIP', vision=dict(
        type='TimmTower', model_name='vit_base_patch16_224', img_size=32, patch_size=8,
        embed_dim=32, depth=1, num_heads=2), text=dict(
        type='TextTransformer', vocab_size=V, context_length=8, width=32, layers=1, heads=2)))
    with pytest.raises(TypeError, match='momentum twins'):
        MomentumUpdateHook().before_train(SimpleNamespace(model=twinless))


# -- EMA -------------------------------------------------------------------------------------
def test_ema_update_is_the_formula_and_tied_params_move_once():
    torch.manual_seed(0)
    emb = nn.Embedding(7, 4)
    head = nn.Linear(4, 7, bias=False)
    head.weight = emb.weight  # tied, as ALBEF's MLM decoder
    emb_m, head_m = make_momentum_twins(emb, head)
    assert head_m.weight is emb_m.weight and not emb_m.weight.requires_grad
    pairs = [(emb, emb_m), (head, head_m)]
    with torch.no_grad():
        emb.weight.add_(1.0)
    before = emb_m.weight.detach().clone()
    ema_update(pairs, 0.9)
    expected = 0.9 * before + 0.1 * emb.weight.detach()
    assert torch.allclose(emb_m.weight, expected, atol=1e-7)  # updated once, not twice
    copy_params(pairs)
    assert torch.equal(emb_m.weight, emb.weight)
    with pytest.raises(ValueError):
        ema_update(pairs, 1.5)


def test_ema_update_keeps_bf16_twin_dtype():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3).bfloat16()
    ema_update([(a, b)], 0.5)
    assert b.weight.dtype == torch.bfloat16


# -- hard negatives --------------------------------------------------------------------------
def test_hard_negatives_never_positive_and_follow_similarity():
    torch.manual_seed(0)
    sim = torch.tensor([[5.0, 2.0, 1.0, 0.0], [1.0, 5.0, 3.0, 0.0]])
    pos = torch.tensor([[True, False, False, False], [False, True, False, True]])
    w = hard_negative_weights(sim, pos)
    assert (w[pos] == 0).all()
    soft = F.softmax(sim, dim=1) + 1e-4
    assert torch.allclose(w[0, 1:], soft[0, 1:])
    draws = torch.stack([sample_hard_negatives(sim, pos) for _ in range(4000)])  # (4000, 2)
    assert not pos[0, draws[:, 0]].any() and not pos[1, draws[:, 1]].any()
    freq = torch.bincount(draws[:, 0], minlength=4).float() / 4000
    expected = w[0] / w[0].sum()
    assert torch.allclose(freq, expected, atol=0.03), (freq, expected)
    # row 1: negatives 0 and 2 only, in the ratio e^1 : e^3
    share = (draws[:, 1] == 2).float().mean().item()
    assert share == pytest.approx(math.exp(3) / (math.exp(1) + math.exp(3)), abs=0.02)


def test_hard_negatives_error_when_only_positives():
    with pytest.raises(ValueError, match='no negative'):
        hard_negative_weights(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))


# -- MLM masking -----------------------------------------------------------------------------
def test_mask_tokens_80_10_10_and_specials():
    torch.manual_seed(0)
    ids = torch.randint(5, 1000, (200, 100))
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    mask[:, 90:] = 0
    masked, labels = mask_tokens(ids, mask_token_id=4, vocab_size=1000, mlm_probability=0.15,
                                 special_ids=[0, 2], attention_mask=mask)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 90:].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert not torch.equal(masked[~chosen], masked[~chosen] * 0)  # untouched elsewhere
    assert torch.equal(masked[~chosen], ids[~chosen])
    rate = chosen.float().sum() / (200 * 89)
    assert abs(rate - 0.15) < 0.01
    n = chosen.sum().float()
    to_mask = (masked == 4) & chosen
    unchanged = (masked == ids) & chosen
    assert abs(to_mask.sum() / n - 0.8) < 0.02
    # random replacements (10%) may hit the original id by chance: ~0.1 + 0.1/1000 kept
    assert abs(unchanged.sum() / n - 0.1) < 0.02


# -- momentum distillation in the contrastive loss -------------------------------------------
def test_distilled_itc_equals_reference_formula():
    torch.manual_seed(0)
    B, M, D, alpha = 3, 7, 5, 0.4
    n = lambda *s: F.normalize(torch.randn(*s), dim=-1)  # noqa: E731
    img, txt, img_m, txt_m = n(B, D), n(B, D), n(B, D), n(B, D)
    img_cols, txt_cols = n(M, D), n(M, D)
    loss = ITC(temperature=0.07, min_logit_scale=2.0, max_logit_scale=1000.0)
    out = loss(img, txt, columns=(img_cols, txt_cols), teacher=(img_m, txt_m), alpha=alpha)
    t = 0.07
    onehot = torch.eye(B, M)
    tgt_i2t = alpha * F.softmax(img_m @ txt_cols.t() / t, 1) + (1 - alpha) * onehot
    tgt_t2i = alpha * F.softmax(txt_m @ img_cols.t() / t, 1) + (1 - alpha) * onehot
    l_i2t = -(F.log_softmax(img @ txt_cols.t() / t, 1) * tgt_i2t).sum(1).mean()
    l_t2i = -(F.log_softmax(txt @ img_cols.t() / t, 1) * tgt_t2i).sum(1).mean()
    assert out['loss_itc'].item() == pytest.approx(((l_i2t + l_t2i) / 2).item(), rel=1e-5)
    # the temperature is clamped to [0.001, 0.5] as ALBEF's temp.clamp_(0.001, 0.5)
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1 / 0.9))
    assert loss.get_logit_scale().item() == pytest.approx(2.0)


# -- the model -------------------------------------------------------------------------------
def test_albef_losses_gradients_and_queue_staging():
    torch.manual_seed(0)
    model = tiny_albef()
    model.init_weights()
    model.train()
    out = model.loss(batch())
    assert {'loss_itc', 'loss_itm', 'loss_mlm', 'itm_acc', 'alpha'} <= set(out)
    assert model.queue.has_staged
    # the tied MLM decoder stays tied, in the twin too
    assert model.mlm_head.decoder.weight is model.text.word_embeddings.weight
    assert model.mlm_head_m.decoder.weight is model.text_m.word_embeddings.weight
    total = out['loss_itc'] + out['loss_itm'] + out['loss_mlm']
    total.backward()
    for name, p in model.named_parameters():
        if name.split('.')[0].endswith('_m'):
            assert p.grad is None and not p.requires_grad, name
    assert model.fusion.blocks[0].cross_attn.q.weight.grad is not None
    assert model.itm_head.fc.weight.grad is not None
    assert model.itc.logit_scale.grad is not None
    model.queue.commit()
    assert int(model.queue.ptr) == 6


def test_albef_without_distillation_or_queue():
    torch.manual_seed(0)
    model = tiny_albef(queue_size=0, momentum_distill=False, mlm_head=None)
    out = model.loss(batch())
    assert 'loss_mlm' not in out and model.queue is None
    # in-batch ITC, one-hot targets: a plain InfoNCE over the momentum columns
    assert out['alpha'].item() == 0.0


def test_queue_ids_make_same_image_positives():
    torch.manual_seed(0)
    model = tiny_albef(queue_ids=True, momentum_distill=False)
    data = batch()
    with pytest.raises(KeyError):
        model.loss(data)
    out = model.loss(data, dict(image_id=torch.tensor([0, 0, 1, 2, 3, 4])))
    assert torch.isfinite(out['loss_itc'])
    assert model.queue.has_staged and 'idx' in model.queue._staged


def test_albef_predict_gives_rerank_inputs():
    model = tiny_albef().eval()
    data = batch(B=2)
    ids = torch.stack([data['input_ids'], data['input_ids']], 1)  # (2, K=2, L)
    mask = torch.stack([data['attention_mask']] * 2, 1)
    res = model.predict(dict(images=data['images'], input_ids=ids, attention_mask=mask),
                        dict(image_id=torch.tensor([7, 8])))
    assert len(res) == 2 and res[0]['image_id'] == 7
    assert res[0]['text_embeds'].shape == (2, 10, 32) and res[0]['text_feat'].shape == (2, 16)
    assert res[0]['image_embeds'].shape == (17, 32)
    s = model.rerank_scores(res[0]['image_embeds'][None].expand(2, -1, -1),
                            res[0]['text_embeds'], res[0]['text_mask'])
    assert s.shape == (2,)
