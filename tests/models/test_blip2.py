"""BLIP-2 stage 1: the Q-Former's three masks against the paper's definition, the query /
text routing, ITC as the maximum over queries, ITM averaged over queries, ITG, and the
frozen image encoder."""
import pytest
import torch
import torch.nn.functional as F

import vlp.models  # noqa: F401  (registers the parts)
from vlp.datasets.tokenizers import DemoTokenizer
from vlp.models.losses.contrastive import max_query_similarity
from vlp.models.necks.qformer import QFormer, qformer_attention_mask
from vlp.registry import MODELS

TOK = dict(type='DemoTokenizer', style='bert', max_length=16, additional_special_tokens=['[DEC]'])
V = 54


def tiny_qformer(**kw):
    cfg = dict(num_query_tokens=4, encoder_width=24, vocab_size=V, hidden_size=32,
               num_layers=3, num_heads=2, intermediate_size=64, max_position_embeddings=32,
               hidden_dropout=0.0, attention_dropout=0.0)
    cfg.update(kw)
    return QFormer(**cfg)


def tiny_blip2(**kw):
    cfg = dict(
        type='BLIP2',
        vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=32,
                    patch_size=8, embed_dim=24, depth=1, num_heads=2),
        qformer=dict(type='QFormer', num_query_tokens=4, encoder_width=24, vocab_size=V,
                     hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                     max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0),
        vision_proj=dict(type='Projection', in_dim=32, out_dim=16, bias=True),
        text_proj=dict(type='Projection', in_dim=32, out_dim=16, bias=True),
        itm_head=dict(type='ITMHead', hidden_size=32),
        lm_head=dict(type='MLMHead', hidden_size=32, vocab_size=V),
        tokenizer=TOK)
    cfg.update(kw)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def batch(B=4, seed=0):
    tok = DemoTokenizer(**{k: v for k, v in TOK.items() if k != 'type'})
    texts = ['a small red circle on the left', 'a large blue square at the top',
             'there is a little green star', 'a big white cross and a small cyan triangle'][:B]
    g = torch.Generator().manual_seed(seed)
    return dict(images=torch.randn(B, 3, 32, 32, generator=g), **tok(texts))


# -- masks ---------------------------------------------------------------------------------
def _paper_mask(Q, text_mask_row, mode):
    """Fig. 2 of BLIP-2, written out entry by entry."""
    L = len(text_mask_row)
    T = Q + L
    m = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(T):
            if j >= Q and not text_mask_row[j - Q]:
                continue  # padding is never a key
            qi, qj = i < Q, j < Q
            if mode == 'itm':
                m[i, j] = True
            elif mode == 'itc':
                m[i, j] = qi == qj
            else:  # itg: queries see queries; text sees queries and earlier text
                m[i, j] = qj if qi else (qj or j <= i)
        if not m[i].any():
            m[i, i] = True
    return m


@pytest.mark.parametrize('mode', ['itc', 'itm', 'itg'])
def test_masks_equal_the_paper_definition(mode):
    text_mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    got = qformer_attention_mask(3, text_mask, mode)
    assert got.shape == (2, 1, 9, 9)
    for b in range(2):
        assert torch.equal(got[b, 0], _paper_mask(3, text_mask[b].tolist(), mode)), (mode, b)
    with pytest.raises(ValueError):
        qformer_attention_mask(3, text_mask, 'causal')


def test_qformer_routing_and_mask_semantics():
    torch.manual_seed(0)
    qf = tiny_qformer().eval()
    img = torch.randn(2, 5, 24)
    ids = torch.randint(5, V, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    # uni-modal: queries equal the query-only pass, text equals the text-only pass
    joint = qf(img, ids, mask, mode='itc')
    assert torch.allclose(joint['query_embeds'], qf(img)['query_embeds'], atol=1e-5)
    alone = qf(input_ids=ids, attention_mask=mask, use_queries=False)
    assert torch.allclose(joint['text_embeds'], alone['text_embeds'], atol=1e-5)
    # itg: queries do not see the text; text is causal
    itg = qf(img, ids, mask, mode='itg')
    assert torch.allclose(itg['query_embeds'], qf(img)['query_embeds'], atol=1e-5)
    ids2 = ids.clone()
    ids2[:, 4:] = 9
    itg2 = qf(img, ids2, mask, mode='itg')
    assert torch.allclose(itg['text_embeds'][:, :4], itg2['text_embeds'][:, :4], atol=1e-5)
    assert not torch.allclose(itg['text_embeds'][:, 4:], itg2['text_embeds'][:, 4:], atol=1e-3)
    # itm: the queries see the text (and the text sees the image through them)
    itm = qf(img, ids, mask, mode='itm')
    assert not torch.allclose(itm['query_embeds'], joint['query_embeds'], atol=1e-3)
    other_img = qf(torch.randn(2, 5, 24), ids, mask, mode='itm')['text_embeds']
    assert (itm['text_embeds'] - other_img).abs().max() > 1e-6  # depends on the image
    # cross-attention every 2nd layer, only the queries have their own FFN
    assert qf.cross_layers == {0, 2}
    assert not hasattr(qf.blocks[1], 'cross_attn')
    assert qf.query_ffn[0].mlp.fc1.weight is not qf.blocks[0].mlp.fc1.weight


def test_qformer_query_ffn_init_from_text_ffn():
    qf = tiny_qformer()
    qf.init_query_ffn_from_text()
    for blk, qffn in zip(qf.blocks, qf.query_ffn):
        assert torch.equal(blk.mlp.fc1.weight, qffn.mlp.fc1.weight)
        assert torch.equal(blk.norm2.bias, qffn.norm.bias)


# -- the model ---------------------------------------------------------------------------------
def test_itc_is_the_maximum_over_queries():
    torch.manual_seed(0)
    model = tiny_blip2()
    model.eval()
    b = batch()
    with torch.no_grad():
        _, image_feat = model._image(b['images'])  # (B, Q, D)
        _, text_feat = model._text(b['input_ids'], b['attention_mask'])
    assert image_feat.shape == (4, 4, 16)
    sim = max_query_similarity(image_feat, text_feat)
    for i in range(4):
        for j in range(4):
            expect = max(float(image_feat[i, q] @ text_feat[j]) for q in range(4))
            assert abs(float(sim[i, j]) - expect) < 1e-6
    out = model.itc(image_feat, text_feat)
    loss, scale = out['loss_itc'], out['logit_scale']
    labels = torch.arange(4)
    direct = 0.5 * (F.cross_entropy(scale * sim, labels, label_smoothing=0.1)
                    + F.cross_entropy(scale * sim.t(), labels, label_smoothing=0.1))
    assert torch.allclose(loss, direct, atol=1e-6)


def test_itm_averages_the_query_logits_and_itg_uses_dec():
    torch.manual_seed(0)
    model = tiny_blip2()
    model.eval()
    b = batch()
    image_embeds = model.image_tokens(b['images'])
    q = model.qformer(image_embeds, b['input_ids'], b['attention_mask'],
                      mode='itm')['query_embeds']
    assert torch.allclose(model.itm_logits(image_embeds, b['input_ids'], b['attention_mask']),
                          model.itm_head(q).mean(1), atol=1e-6)
    assert model.lm_head.decoder.weight is model.qformer.word_embeddings.weight
    loss = model.itg_loss(image_embeds, b['input_ids'], b['attention_mask'])
    ids = b['input_ids'].clone()
    ids[:, 0] = model.dec_token_id
    hidden = model.qformer(image_embeds, ids, b['attention_mask'], mode='itg')['text_embeds']
    logits = model.lm_head(hidden)[:, :-1]
    labels = ids[:, 1:].masked_fill(b['attention_mask'][:, 1:] == 0, -100)
    direct = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100,
                             label_smoothing=0.1)
    assert torch.allclose(loss, direct, atol=1e-6)


def test_frozen_image_encoder_gets_no_gradient_and_stays_identical():
    torch.manual_seed(0)
    model = tiny_blip2()
    model.train()
    assert not model.vision.training  # frozen encoder kept in eval mode
    before = {k: v.clone() for k, v in model.vision.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(not p.requires_grad for p in model.vision.parameters())
    assert not {id(p) for p in model.vision.parameters()} & {id(p) for p in params}
    opt = torch.optim.AdamW(params, lr=1e-2)
    b = batch()
    first = None
    for _ in range(4):
        out = model.loss(b)
        assert {'loss_itc', 'loss_itm', 'loss_itg', 'itm_acc'} <= set(out)
        total = out['loss_itc'] + out['loss_itm'] + out['loss_itg']
        first = total.item() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert all(p.grad is None for p in model.vision.parameters())
    for k, v in model.vision.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.qformer.query_tokens.grad is not None
    assert total.item() < first
    # half-precision frozen encoder
    half = tiny_blip2(vision_dtype='bf16')
    assert next(half.vision.parameters()).dtype == torch.bfloat16
    assert half.image_tokens(b['images']).dtype == torch.float32


def test_retrieval_predictions_feed_the_itm_metric():
    from vlp.evaluation.metrics.itm_retrieval import ITMRetrievalMetric
    torch.manual_seed(0)
    model = tiny_blip2()
    model.eval()
    b = batch()
    ids = b['input_ids'][:, None]  # one caption per image
    res = model.predict(dict(images=b['images'], input_ids=ids,
                             attention_mask=b['attention_mask'][:, None]),
                        dict(image_id=[0, 1, 2, 3]))
    assert res[0]['image_feat'].shape == (4, 16) and res[0]['text_embeds'].dtype == torch.long
    metric = ITMRetrievalMetric(k=2, batch_size=8)
    metric.bind_model(model)
    metric.process(None, res)
    out = metric.compute_metrics(metric.results)
    assert 'itc_txt_r1' in out and 'txt_r1' in out
    with pytest.raises(ValueError, match='retrieval'):
        tiny_blip2(predict_mode='caption')
