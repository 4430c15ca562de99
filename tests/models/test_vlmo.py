"""VLMo on the multiway transformer: dual-encoder ITC, fusion ITM with hard negatives and
MLM, each mode training the experts it should; retrieval predictions with ITM re-ranking."""
import pytest
import torch

import vlp.models  # noqa: F401
from vlp.registry import MODELS

V = 53


def tiny_vlmo(**kw):
    torch.manual_seed(0)
    cfg = dict(
        type='VLMo',
        backbone=dict(type='MultiwayTransformer', img_size=16, patch_size=8, vocab_size=V,
                      max_text_len=12, embed_dim=32, depth=3, num_heads=2, num_vl_layers=1),
        vision_proj=dict(type='Projection', in_dim=32, out_dim=16, bias=True),
        text_proj=dict(type='Projection', in_dim=32, out_dim=16, bias=True),
        itm_head=dict(type='ITMHead', hidden_size=32),
        mlm_head=dict(type='MLMHead', hidden_size=32, vocab_size=V),
        mim_head=dict(type='MIMHead', hidden_size=32, out_dim=16),
        visual_tokenizer=dict(type='RandomProjectionTokenizer', patch_size=8, num_classes=16,
                              code_dim=4),
        mim_mask=dict(num_masking_patches=2, min_num_patches=1),
        mask_token_id=4, special_token_ids=[0, 2, 3])
    cfg.update(kw)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def batch(B=4):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (B, 10), generator=g)
    ids[:, 0] = 2
    mask = torch.ones(B, 10, dtype=torch.long)
    mask[0, 7:] = 0
    return dict(images=torch.randn(B, 3, 16, 16, generator=g), input_ids=ids,
                attention_mask=mask)


def test_losses_train_every_expert_where_expected():
    model = tiny_vlmo()
    model.train()
    out = model.loss(batch())
    assert {'loss_itc', 'loss_itm', 'loss_mlm', 'itm_acc'} <= set(out)
    (out['loss_itc'] + out['loss_itm'] + out['loss_mlm']).backward()
    blk = model.backbone.blocks
    for name in ('ffn.v.fc1.weight', 'ffn.l.fc1.weight'):
        assert blk[0].get_parameter(name).grad is not None
    assert blk[2].ffn['vl'].fc1.weight.grad is not None  # fusion (ITM, MLM)
    assert model.mlm_head.decoder.weight is model.backbone.word_embeddings.weight
    # the ITM head reads the fused text [CLS]
    b = batch()
    fused = model.fuse(b['input_ids'], b['attention_mask'], b['images'])
    direct = model.backbone(images=b['images'], input_ids=b['input_ids'],
                            attention_mask=b['attention_mask'])['text_pooled']
    assert torch.allclose(fused[:, 0], direct)


def test_retrieval_predictions_and_rerank():
    from vlp.evaluation.metrics.itm_retrieval import ITMRetrievalMetric
    model = tiny_vlmo().eval()
    b = batch()
    res = model.predict(dict(images=b['images'], input_ids=b['input_ids'][:, None],
                             attention_mask=b['attention_mask'][:, None]),
                        dict(image_id=[0, 1, 2, 3]))
    assert res[0]['text_embeds'].dtype == torch.long
    metric = ITMRetrievalMetric(k=2, batch_size=8)
    metric.bind_model(model)
    metric.process(None, res)
    out = metric.compute_metrics(metric.results)
    assert 'txt_r1' in out and 'itc_img_r1' in out
    # the re-ranking score: the ITM match logit, plus the ITC similarity with rerank_itc
    ids, mask, itc = b['input_ids'], b['attention_mask'], torch.tensor([0.5, -0.25, 1.0, 0.0])
    itm = model.itm_logits(b['images'], ids, mask)[:, 1]
    assert torch.equal(model.rerank_scores(b['images'], ids, mask, itc), itm)
    model.rerank_itc = True
    assert torch.allclose(model.rerank_scores(b['images'], ids, mask, itc), itm + itc)
    assert torch.equal(model.rerank_scores(b['images'], ids, mask), itm)


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_stages_freeze_the_documented_parameters_and_train_them():
    model = tiny_vlmo(stage='image')
    assert model.stage == 'image'
    tr = _trainable(model)
    for name in ('backbone.patch_embed.weight', 'backbone.mask_token',
                 'backbone.blocks.0.attn.qkv.weight', 'backbone.blocks.0.norm1.weight',
                 'backbone.blocks.1.ffn.v.fc1.weight', 'backbone.blocks.1.norm2.v.weight',
                 'backbone.blocks.2.gamma_2', 'backbone.norm.weight', 'mim_head.fc.weight'):
        assert name in tr, name
    assert not any(('.l.' in n or '.vl.' in n or 'word_embeddings' in n or '_proj.' in n or
                    'itm_head' in n or 'mlm_head' in n or 'type_embed' in n) for n in tr)
    model.train()
    out = model.loss(batch())
    assert set(out) == {'loss_mim', 'acc_mim'}
    out['loss_mim'].backward()
    graded = {n for n, p in model.named_parameters() if p.grad is not None}
    assert graded <= tr and 'backbone.blocks.2.ffn.v.fc1.weight' in graded

    model.zero_grad(set_to_none=True)
    model.set_stage('text')
    tr = _trainable(model)
    assert tr == {n for n in tr if n.startswith(('backbone.word_embeddings',
                                                'backbone.text_pos_embed', 'backbone.text_norm',
                                                'mlm_head.')) or '.l.' in n}
    assert 'backbone.blocks.0.ffn.l.fc1.weight' in tr and 'mlm_head.dense.weight' in tr
    out = model.loss(batch())
    assert set(out) == {'loss_mlm', 'acc_mlm'}
    out['loss_mlm'].backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} <= tr

    model.set_stage('image_text')
    assert _trainable(model) == {n for n, _ in model.named_parameters()
                                 if not n.startswith('mim_head.') and 'mask_token' not in n}
    assert not any(p.requires_grad for p in model.visual_tokenizer.parameters())
    with pytest.raises(ValueError):
        model.set_stage('video')
    with pytest.raises(ValueError):
        tiny_vlmo(mim_head=None, stage='image')
