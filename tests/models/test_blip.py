"""BLIP: parameter sharing of the MED, the three text modes, the losses (LM label
smoothing against a direct computation), decoder causality, generation and retrieval
predictions."""
import pytest
import torch
import torch.nn.functional as F

import vlp.models  # noqa: F401  (registers the parts)
from vlp.datasets.tokenizers import DemoTokenizer
from vlp.registry import MODELS

TOK = dict(type='DemoTokenizer', style='bert', max_length=16,
           additional_special_tokens=['[DEC]', '[ENC]'])
V = 55


def tiny_blip(**kw):
    width = 32
    cfg = dict(
        type='BLIP',
        vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=32,
                    patch_size=8, embed_dim=width, depth=1, num_heads=2),
        text=dict(type='BertEncoder', vocab_size=V, hidden_size=width, num_layers=2,
                  num_heads=2, intermediate_size=64, max_position_embeddings=32,
                  type_vocab_size=0, cross_attention_layers='all', hidden_dropout=0.0,
                  attention_dropout=0.0),
        vision_proj=dict(type='Projection', in_dim=width, out_dim=16, bias=True),
        text_proj=dict(type='Projection', in_dim=width, out_dim=16, bias=True),
        itm_head=dict(type='ITMHead', hidden_size=width),
        lm_head=dict(type='MLMHead', hidden_size=width, vocab_size=V),
        queue_size=24, tokenizer=TOK)
    cfg.update(kw)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def batch(B=4, seed=0):
    tok = DemoTokenizer(**{k: v for k, v in TOK.items() if k != 'type'})
    texts = ['a small red circle on the left', 'a large blue square at the top',
             'there is a little green star', 'two shapes: a big white cross and a small '
             'cyan triangle'][:B]
    enc = tok(texts)
    g = torch.Generator().manual_seed(seed)
    return dict(images=torch.randn(B, 3, 32, 32, generator=g), **enc)


def test_decoder_shares_all_but_self_attention():
    model = tiny_blip()
    enc, dec = model.text, model.decoder
    assert dec.word_embeddings.weight is enc.word_embeddings.weight
    assert dec.position_embeddings.weight is enc.position_embeddings.weight
    assert dec.emb_norm.weight is enc.emb_norm.weight
    for be, bd in zip(enc.blocks, dec.blocks):
        for name in ('cross_attn.q.weight', 'cross_attn.kv.weight', 'cross_attn.proj.weight',
                     'norm_cross.weight', 'mlp.fc1.weight', 'mlp.fc2.weight', 'norm2.bias'):
            assert bd.get_parameter(name) is be.get_parameter(name), name
        assert bd.attn.qkv.weight is not be.attn.qkv.weight
        assert bd.norm1.weight is not be.norm1.weight
    # the LM head's output matrix is the (shared) word embedding matrix
    assert model.lm_head.decoder.weight is enc.word_embeddings.weight
    # unique decoder parameters: only the self-attention sub-layers and the head transform
    enc_ids = {id(p) for p in enc.parameters()}
    own = [n for n, p in dec.named_parameters() if id(p) not in enc_ids]
    assert own and all('.attn.' in n or '.norm1.' in n for n in own), own
    # not shared: a separate decoder
    sep = tiny_blip(share_decoder=False)
    assert sep.decoder.blocks[0].mlp.fc1.weight is not sep.text.blocks[0].mlp.fc1.weight
    assert sep.lm_head.decoder.weight is sep.decoder.word_embeddings.weight


def test_losses_gradients_and_twins():
    torch.manual_seed(0)
    model = tiny_blip()
    model.train()
    out = model.loss(batch())
    assert {'loss_itc', 'loss_itm', 'loss_lm', 'itm_acc', 'alpha'} <= set(out)
    (out['loss_itc'] + out['loss_itm'] + out['loss_lm']).backward()
    for name, p in model.named_parameters():
        if name.split('.')[0].endswith('_m'):
            assert p.grad is None and not p.requires_grad, name
    assert model.decoder.blocks[0].attn.qkv.weight.grad is not None  # LM
    assert model.text.blocks[0].cross_attn.q.weight.grad is not None  # ITM and LM
    assert model.itm_head.fc.weight.grad is not None
    # BLIP has no decoder twin and no MLM
    assert not hasattr(model, 'decoder_m') and getattr(model, 'mlm_head', None) is None
    assert len(model.momentum_pairs()) == 4
    model.queue.commit()
    assert int(model.queue.ptr) == 4


def test_lm_loss_is_label_smoothed_next_token_ce():
    torch.manual_seed(0)
    model = tiny_blip()
    model.eval()
    b = batch()
    images, ids, mask = b['images'], b['input_ids'], b['attention_mask']
    image_embeds = model.vision(images)['image_embeds']
    loss = model.lm_loss(ids, mask, image_embeds)
    # direct computation: [DEC] replaces [CLS]; position t predicts token t+1; padding out
    dec_ids = ids.clone()
    dec_ids[:, 0] = model.dec_token_id
    logits = model.decoder_logits(dec_ids, mask, image_embeds)[:, :-1]
    target, keep = ids[:, 1:], mask[:, 1:].bool()
    logp = F.log_softmax(logits[keep].double(), dim=-1)
    eps = 0.1
    nll = -logp.gather(1, target[keep][:, None]).squeeze(1)
    smooth = -logp.mean(dim=-1)
    expected = ((1 - eps) * nll + eps * smooth).mean()
    assert torch.allclose(loss.double(), expected, atol=1e-5)
    # a prompt is excluded from the loss
    model.prompt = 'a small'
    assert model.prompt_length() == 3  # [DEC] a small
    prompted = model.lm_loss(ids, mask, image_embeds)
    keep2 = keep.clone()
    keep2[:, :2] = False  # labels of positions 1, 2 (the prompt words) dropped
    logp2 = F.log_softmax(logits[keep2].double(), dim=-1)
    nll2 = -logp2.gather(1, target[keep2][:, None]).squeeze(1)
    expected2 = ((1 - eps) * nll2 + eps * (-logp2.mean(dim=-1))).mean()
    assert torch.allclose(prompted.double(), expected2, atol=1e-5)


def test_decoder_is_causal_and_encoder_modes_differ():
    torch.manual_seed(0)
    model = tiny_blip()
    model.eval()
    b = batch()
    image_embeds = model.vision(b['images'])['image_embeds']
    ids = b['input_ids'].clone()
    ids[:, 0] = model.dec_token_id
    full = model.decoder_logits(ids, None, image_embeds)
    changed = ids.clone()
    changed[:, 4:] = 7
    other = model.decoder_logits(changed, None, image_embeds)
    assert torch.allclose(full[:, :4], other[:, :4], atol=1e-6)
    assert not torch.allclose(full[:, 4:], other[:, 4:], atol=1e-3)
    # the image-grounded encoder sees the image and starts with [ENC] whatever is first
    a = model.itm_logits(image_embeds, b['input_ids'], b['attention_mask'])
    first = b['input_ids'].clone()
    first[:, 0] = 9
    assert torch.allclose(a, model.itm_logits(image_embeds, first, b['attention_mask']))
    shuffled = model.itm_logits(image_embeds.flip(0), b['input_ids'], b['attention_mask'])
    assert not torch.allclose(a, shuffled, atol=1e-4)


def test_generate_greedy_matches_a_manual_loop_and_beams_run():
    torch.manual_seed(0)
    model = tiny_blip()
    model.eval()
    images = batch()['images'][:2]
    caps = model.generate(images, num_beams=1, max_length=8, min_length=0)
    assert len(caps) == 2 and all(isinstance(c, str) for c in caps)
    tok = model.tokenizer
    image_embeds = model.vision(images)['image_embeds']
    for i in range(2):
        seq = [model.dec_token_id]
        while len(seq) < 8:
            logits = model.decoder_logits(torch.tensor([seq]), None, image_embeds[i:i + 1])
            nxt = int(logits[0, -1].argmax())
            seq.append(nxt)
            if nxt == tok.sep_token_id:
                break
        assert caps[i] == tok.decode(seq[1:]).strip()
    beams = model.generate(images, num_beams=3, max_length=8, min_length=4)
    assert len(beams) == 2
    sampled = model.generate(images, do_sample=True, top_p=0.9, max_length=8,
                             generator=torch.Generator().manual_seed(0))
    assert len(sampled) == 2


def test_predict_caption_and_retrieval_modes():
    torch.manual_seed(0)
    model = tiny_blip(generation_cfg=dict(num_beams=2, max_length=6, min_length=2))
    model.eval()
    b = batch(B=2)
    meta = dict(image_id=[5, 6], text=[['x'], ['y']])
    out = model.predict(b, meta)
    assert [o['image_id'] for o in out] == [5, 6] and all('pred_caption' in o for o in out)
    model.predict_mode = 'retrieval'
    ids = b['input_ids'].unsqueeze(1)  # one caption per image, [B, K, L]
    res = model.predict(dict(b, input_ids=ids, attention_mask=b['attention_mask'][:, None]),
                        dict(image_id=[5, 6]))
    assert res[0]['text_embeds'].dtype == torch.long  # ids: the ITM re-encodes the text
    scores = model.rerank_scores(res[0]['image_embeds'][None], res[0]['text_embeds'],
                                 res[0]['text_mask'], torch.tensor([0.5]))
    itm = model.itm_logits(res[0]['image_embeds'][None], res[0]['text_embeds'],
                           res[0]['text_mask'])[:, 1]
    assert torch.allclose(scores, itm + 0.5)


def test_missing_special_tokens_is_a_clear_error():
    model = tiny_blip(tokenizer=dict(type='DemoTokenizer', style='bert'))
    with pytest.raises(ValueError, match=r'\[DEC\]'):
        model.dec_token_id
    with pytest.raises(ValueError, match='cross-attention'):
        tiny_blip(text=dict(type='BertEncoder', vocab_size=V, hidden_size=32, num_layers=1,
                            num_heads=2, intermediate_size=64))


def test_video_clips_concatenate_frame_tokens():
    """Multi-frame input (issue 7): frame tokens concatenated for fusion / decoding, frame
    features mean-pooled for ITC; every loss runs on clips."""
    model = tiny_blip()
    model.train()
    b = batch()
    video = torch.stack([b['images'], b['images'].flip(-1)], dim=1)  # (B, 2, 3, H, W)
    embeds, feat = model._image(video)
    single, _ = model._image(b['images'])
    assert embeds.shape == (video.shape[0], 2 * single.shape[1], single.shape[2])
    assert torch.allclose(embeds[:, :single.shape[1]], single, atol=1e-5)
    frames = torch.stack([model._image(video[:, t])[1] for t in range(2)], 1)
    assert torch.allclose(feat, torch.nn.functional.normalize(frames.mean(1), dim=-1),
                          atol=1e-5)
    out = model.loss(dict(b, images=video))
    assert all(torch.isfinite(v) for k, v in out.items() if k.startswith('loss'))


def test_captioning_model_is_vit_and_decoder_with_lm_only(tmp_path):
    """``BLIPCaption``: BLIP's captioning model (BLIP_Decoder): every parameter trained by
    the LM loss alone, the decoder of a pre-trained BLIP loads into it key for key (from a
    BLIP config re-typed, its pre-training keys accepted), the same LM loss and captions as
    BLIP's decoder, and what it has not got raises naming it."""
    torch.manual_seed(0)
    full = tiny_blip()
    cap = tiny_blip(type='BLIPCaption', prompt='a small')  # BLIP's keys: accepted, unused
    assert type(cap).__name__ == 'BLIPCaption' and cap.momentum_pairs() == []
    assert cap.lm_head.decoder.weight is cap.decoder.word_embeddings.weight
    assert {k.split('.')[0] for k in cap.state_dict()} == {'vision', 'decoder', 'lm_head'}
    res = cap.load_state_dict(full.state_dict(), strict=False)
    assert res.missing_keys == []
    assert {k.split('.')[0] for k in res.unexpected_keys} == {
        'text', 'text_m', 'vision_m', 'vision_proj', 'vision_proj_m', 'text_proj',
        'text_proj_m', 'itm_head', 'queue', 'itc'}
    # pretrained=: the same load from a checkpoint file, at build time
    torch.save(dict(state_dict=full.state_dict()), str(tmp_path / 'blip.pth'))
    loaded = tiny_blip(type='BLIPCaption', prompt='a small', pretrained=str(tmp_path / 'blip.pth'))
    assert all(torch.equal(v, cap.state_dict()[k]) for k, v in loaded.state_dict().items())
    b = batch()
    cap.train()
    out = cap.loss(b)
    assert set(out) == {'loss_lm'}
    out['loss_lm'].backward()
    assert all(p.grad is not None for p in cap.parameters())  # no unused parameter (DDP)
    # the same LM loss as the full model's decoder on the same weights (prompt excluded)
    full.prompt = 'a small'
    full.eval(), cap.eval()
    image_embeds = full.vision(b['images'])['image_embeds']
    assert torch.equal(cap.lm_loss(b['input_ids'], b['attention_mask'], image_embeds),
                       full.lm_loss(b['input_ids'], b['attention_mask'], image_embeds))
    assert cap.generate(b['images'], max_length=6, num_beams=1) == \
        full.generate(b['images'], max_length=6, num_beams=1)
    dec = [full.dec_token_id]
    assert torch.equal(cap.generate_ids(b['images'], dec, num_beams=2, max_length=6),
                       full.generate_ids(b['images'], dec, num_beams=2, max_length=6))
    preds = cap.predict(dict(images=b['images']), dict(image_id=[0, 1, 2, 3]))
    assert [p['image_id'] for p in preds] == [0, 1, 2, 3] and all(
        isinstance(p['pred_caption'], str) for p in preds)
    for name, args in (('encode_image', (b['images'],)), ('encode_text', (['a'],)),
                       ('itm_score', (b['images'], ['a'] * 4)), ('extract_feat', (b,))):
        with pytest.raises(NotImplementedError, match='captioning BLIP has no unimodal'):
            getattr(cap, name)(*args)
    with pytest.raises(ValueError, match="type='BLIPCaption'"):
        tiny_blip(vision_proj=None)
    with pytest.raises(ValueError, match="predict_mode='caption'"):
        tiny_blip(type='BLIPCaption', predict_mode='retrieval')
    with pytest.raises(TypeError, match='unexpected arguments'):
        tiny_blip(type='BLIPCaption', queue_sise=8)
