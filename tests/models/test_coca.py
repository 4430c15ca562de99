"""CoCa: decoder causality, losses, training on a fixed batch, generation, predict, and the
attentional pooler against torch's multi-head attention. Converter parity with open_clip:
tests/tools/test_convert_coca.py."""
import pytest
import torch
import torch.nn.functional as F

from vlp.registry import MODELS

W, CTX = 32, 16
CAPTIONS = ['a small red circle on the left', 'a large blue square at the bottom',
            'a big green star in the middle', 'a little white cross near the top']


def coca(**kw):
    torch.manual_seed(0)
    cfg = dict(
        type='CoCa',
        vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=32,
                    patch_size=8, embed_dim=W, depth=1, num_heads=4),
        text=dict(type='TextTransformer', vocab_size=52, context_length=CTX, width=W,
                  layers=2, heads=4, act_layer='gelu', embed_cls=True),
        decoder=dict(type='MultimodalDecoder', vocab_size=52, width=W, layers=2, heads=4),
        cap_pooler=dict(type='AttentionalPooler', dim=W, context_dim=W, num_heads=4,
                        n_queries=8),
        con_pooler=dict(type='AttentionalPooler', dim=W, context_dim=W, num_heads=4,
                        n_queries=1),
        vision_proj=dict(type='Projection', in_dim=W, out_dim=24),
        text_proj=dict(type='Projection', in_dim=W, out_dim=24),
        tokenizer=dict(type='DemoTokenizer', style='clip', max_length=CTX))
    cfg.update(kw)
    return MODELS.build(cfg)


def batch(model, n=4):
    tok = model.tokenizer(CAPTIONS[:n])
    images = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return dict(images=images, **tok)


# ---------------------------------------------------------------- causality
def test_unimodal_decoder_is_causal_and_cls_sees_everything():
    model = coca().eval()
    ids = model.tokenizer(CAPTIONS[:2])['input_ids']
    mask = torch.ones_like(ids)
    changed = ids.clone()
    changed[:, 4] = 7
    with torch.no_grad():
        a = model.text_features(ids, mask)
        b = model.text_features(changed, mask)
    torch.testing.assert_close(a['text_hidden'][:, :4], b['text_hidden'][:, :4])
    assert not torch.allclose(a['text_hidden'][:, 4:], b['text_hidden'][:, 4:])
    # the [CLS] appended after the last token attends to the whole caption
    assert not torch.allclose(a['text_feat'], b['text_feat'])
    # ... but not to padding (the tokenizer's attention_mask)
    tok = model.tokenizer(CAPTIONS[:2])
    padded = tok['input_ids'].clone()
    padded[tok['attention_mask'] == 0] = 9
    with torch.no_grad():
        c = model.text_features(tok['input_ids'], tok['attention_mask'])['text_feat']
        d = model.text_features(padded, tok['attention_mask'])['text_feat']
    torch.testing.assert_close(c, d)


@pytest.mark.parametrize('cross_ffn', [False, True], ids=['standard', 'open_clip'])
def test_multimodal_decoder_is_causal(cross_ffn):
    model = coca(decoder=dict(type='MultimodalDecoder', vocab_size=52, width=W, layers=2,
                              heads=4, cross_ffn=cross_ffn)).eval()
    assert (model.decoder.cross_blocks is not None) == cross_ffn
    ids = model.tokenizer(CAPTIONS[:2])['input_ids']
    changed = ids.clone()
    changed[:, 5:] = 11
    with torch.no_grad():
        cap = model.image_features(batch(model, 2)['images'])['caption_tokens']
        hidden = [model.text_features(x, torch.ones_like(x))['text_hidden'] for x in (ids, changed)]
        la, lb = (model.caption_logits(h, cap) for h in hidden)
        # the decoder alone: later decoder inputs do not reach earlier outputs either
        h2 = hidden[0].clone()
        h2[:, 5:] += torch.randn_like(h2[:, 5:])
        lc = model.caption_logits(h2, cap)
        # ... while the image does reach every position
        ld = model.caption_logits(hidden[0], cap.flip(0))
    torch.testing.assert_close(la[:, :5], lb[:, :5])
    assert not torch.allclose(la[:, 5:], lb[:, 5:])
    torch.testing.assert_close(la[:, :5], lc[:, :5])
    assert not torch.allclose(la[:, :5], ld[:, :5])


# ---------------------------------------------------------------- losses
def test_loss_keys_weights_and_padding():
    model = coca(contrastive_weight=0.5, caption_weight=2.0).eval()
    data = batch(model)
    with torch.no_grad():
        losses = model(data, mode='loss')
    assert set(losses) == {'loss_itc', 'loss_caption', 'logit_scale'}
    with torch.no_grad():
        img = model.image_features(data['images'])
        txt = model.text_features(data['input_ids'], data['attention_mask'])
        itc = model.itc(img['image_feat'], txt['text_feat'])['loss_itc']
        logits = model.caption_logits(txt['text_hidden'][:, :-1], img['caption_tokens'])
        ids, mask = data['input_ids'], data['attention_mask']
        labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        cap = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    torch.testing.assert_close(losses['loss_itc'], 0.5 * itc)
    torch.testing.assert_close(losses['loss_caption'], 2.0 * cap)
    # padding ids are not predicted (and, for the [CLS], not attended)
    padded = dict(data, input_ids=ids.masked_fill(mask == 0, 13))
    with torch.no_grad():
        again = model(padded, mode='loss')
    torch.testing.assert_close(again['loss_caption'], losses['loss_caption'])
    torch.testing.assert_close(again['loss_itc'], losses['loss_itc'])


def test_default_loss_weights_are_the_papers():
    model = coca()
    assert (model.contrastive_weight, model.caption_weight) == (1.0, 2.0)
    assert type(model.caption_loss).__name__ == 'CaptionLoss'
    assert model.caption_loss.label_smoothing == 0.0


def test_optimizer_steps_reduce_both_losses():
    model = coca().train()
    data = batch(model)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(15):
        losses = model(data, mode='loss')
        history.append((losses['loss_itc'].item(), losses['loss_caption'].item()))
        opt.zero_grad()
        (losses['loss_itc'] + losses['loss_caption']).backward()
        opt.step()
    (itc0, cap0), (itc1, cap1) = history[0], history[-1]
    assert itc1 < 0.8 * itc0, history
    assert cap1 < 0.6 * cap0, history


# ---------------------------------------------------------------- layouts
def test_shared_pooler_layout_is_open_clips():
    model = coca(con_pooler=None, pooler_layout='shared').eval()
    assert model.con_pooler is None
    images = batch(model, 2)['images']
    with torch.no_grad():
        out = model.image_features(images, normalize=False)
        pooled = model.cap_pooler(model.vision(images)['image_embeds'])  # (B, 8, W)
    assert out['caption_tokens'].shape == (2, 7, W)
    torch.testing.assert_close(out['caption_tokens'], pooled[:, 1:])
    torch.testing.assert_close(out['image_feat'], model.vision_proj(pooled[:, 0]))
    with pytest.raises(ValueError):
        coca(pooler_layout='shared')  # a con_pooler with the shared layout
    with pytest.raises(ValueError):
        coca(con_pooler=None)  # parallel without a contrastive pooler


def test_attentional_pooler_matches_multihead_attention():
    torch.manual_seed(0)
    pool = MODELS.build(dict(type='AttentionalPooler', dim=16, context_dim=24, num_heads=4,
                             n_queries=3, out_norm=False)).eval()
    mha = torch.nn.MultiheadAttention(16, 4, kdim=24, vdim=24, batch_first=True).eval()
    with torch.no_grad():
        mha.q_proj_weight.copy_(pool.attn.q.weight)
        mha.k_proj_weight.copy_(pool.attn.kv.weight[:16])
        mha.v_proj_weight.copy_(pool.attn.kv.weight[16:])
        mha.in_proj_bias.copy_(torch.cat([pool.attn.q.bias, pool.attn.kv.bias]))
        mha.out_proj.load_state_dict(pool.attn.proj.state_dict())
        x = torch.randn(2, 5, 24)
        ctx = pool.norm_context(x)
        q = pool.norm_query(pool.query).expand(2, -1, -1)
        want = mha(q, ctx, ctx, need_weights=False)[0]
        got = pool(x)
    assert got.shape == (2, 3, 16)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- generation
def _greedy_by_hand(model, images, steps):
    """Argmax decoding written against the model's parts."""
    tok = model.tokenizer
    cap = model.image_features(images)['caption_tokens']
    ids = torch.full((images.shape[0], 1), tok.bos_token_id)
    for _ in range(steps):
        hidden = model.text(ids, torch.ones_like(ids))['text_hidden']
        nxt = model.caption_logits(hidden, cap)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return [tok.decode(row[1:].tolist()) for row in ids]


def test_generate_greedy_beam_and_batch_independence():
    pytest.importorskip('vlp.models.utils.generation')
    model = coca().train()
    data = batch(model)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(15):  # a little training so captions are words, not one repeated id
        losses = model(data, mode='loss')
        opt.zero_grad()
        (losses['loss_itc'] + losses['loss_caption']).backward()
        opt.step()
    model.eval()
    images = data['images']
    with torch.no_grad():
        greedy = model.generate(images, num_beams=1, max_length=12)
        by_hand = _greedy_by_hand(model, images, steps=11)
        beam = model.generate(images, num_beams=3, max_length=12)
        single = [model.generate(images[i:i + 1], num_beams=3, max_length=12)[0]
                  for i in range(len(images))]
        several = model.generate(images[:2], num_beams=3, num_return_sequences=2,
                                 max_length=12)
    assert all(isinstance(c, str) for c in greedy + beam + several)
    assert greedy == by_hand
    assert beam == single  # hypotheses read their own image (rows)
    assert len(several) == 4
    assert any(c for c in greedy)  # not all empty
    with pytest.raises(ValueError):  # longer than the text decoder's positions
        model.generate(images, max_length=CTX + 2)


def test_generation_cfg_and_prompt():
    pytest.importorskip('vlp.models.utils.generation')
    model = coca(generation_cfg=dict(max_length=6)).eval()
    images = batch(model, 2)['images']
    with torch.no_grad():
        out = model.generate(images)
        n_words = [len(c.split()) for c in out]
        prompted = model.generate(images, prompt='a small', max_length=8)
    assert all(n <= 5 for n in n_words)  # SOT + at most 5 generated tokens
    assert all(isinstance(c, str) for c in prompted)
    # uint8 images are normalised by the data preprocessor's statistics
    raw = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert model.generate(raw) == model.generate(model.data_preprocessor.normalize(raw))


def test_predict_caption_and_retrieval_modes():
    pytest.importorskip('vlp.models.utils.generation')
    model = coca(generation_cfg=dict(max_length=8)).eval()
    images = batch(model, 2)['images']
    tok = model.tokenizer(CAPTIONS)  # image 0: captions 0, 1; image 1: captions 2, 3
    ids = tok['input_ids'].view(2, 2, -1)
    meta = dict(image_id=torch.tensor([3, 4]), text=[CAPTIONS[:2], CAPTIONS[2:4]])
    with torch.no_grad():
        out = model(dict(images=images, input_ids=ids), meta, mode='predict')
    assert [r['image_id'] for r in out] == [3, 4]
    assert out[1]['text'] == CAPTIONS[2:4]
    assert all(isinstance(r['pred_caption'], str) for r in out)
    model.predict_mode = 'retrieval'
    with torch.no_grad():
        out = model(dict(images=images, input_ids=ids,
                         attention_mask=tok['attention_mask'].view(2, 2, -1)),
                    meta, mode='predict')
    assert out[0]['image_feat'].shape == (24, ) and out[0]['text_feat'].shape == (2, 24)
    torch.testing.assert_close(out[0]['image_feat'], model.encode_image(images)[0])
    torch.testing.assert_close(out[1]['text_feat'][0], model.encode_text(CAPTIONS[2])[0])


def test_zero_shot_classifier_logits():
    """ZeroShotClassifierHook's interface: prompt-ensembled class embeddings set on the
    model, then predict ('retrieval' mode) adds the scaled cosine logits per image."""
    from vlp.evaluation.metrics.zero_shot import zero_shot_classifier
    model = coca(predict_mode='retrieval').eval()
    images = batch(model, 2)['images']
    classes = ['red circle', 'blue square', 'green star']
    weights = zero_shot_classifier(model, classes, ['a {}', 'a picture of a {}'])
    model.set_zero_shot_classifier(weights)
    with torch.no_grad():
        out = model.predict(dict(images=images), dict(image_id=[0, 1]))
        feat = model.encode_image(images)
    expected = model.get_logit_scale() * feat @ F.normalize(weights, dim=-1).t()
    assert out[0]['logits'].shape == (3, )
    torch.testing.assert_close(torch.stack([o['logits'] for o in out]), expected)
    model.set_zero_shot_classifier(None)
    with torch.no_grad():
        assert 'logits' not in model.predict(dict(images=images))[0]
