"""ALBEF's NLVR2 two-image fusion (Sec. 5.3, Fig. 3b): list contexts in BertEncoder, tied
cross-attention key/value, the 2N-layer state-dict expansion, and VLClassifier on top."""
import pytest
import torch

import vlp.models  # noqa: F401  (registers the parts)
from vlp.models.algorithms.albef import ALBEF
from vlp.models.algorithms.downstream import VLClassifier
from vlp.registry import MODELS

V = 53
W = 32


def tiny_albef(fusion_layers=2, **kw):
    bert = dict(type='BertEncoder', vocab_size=V, hidden_size=W, num_heads=2,
                intermediate_size=64, max_position_embeddings=32)
    cfg = dict(
        type='ALBEF',
        vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=32,
                    patch_size=8, embed_dim=W, depth=1, num_heads=2),
        text=dict(bert, num_layers=1),
        fusion=dict(bert, num_layers=fusion_layers, with_embeddings=False,
                    cross_attention_layers='all'),
        vision_proj=dict(type='Projection', in_dim=W, out_dim=16, bias=True),
        text_proj=dict(type='Projection', in_dim=W, out_dim=16, bias=True),
        itm_head=dict(type='ITMHead', hidden_size=W),
        mlm_head=dict(type='MLMHead', hidden_size=W, vocab_size=V),
        queue_size=8, mask_token_id=4, special_token_ids=[0, 2])
    cfg.update(kw)
    return MODELS.build(cfg)


def pair_batch(B=3, L=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, L), generator=g)
    ids[:, 0] = 2
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, 5:] = 0
    ids[0, 5:] = 0
    return torch.randn(B, 2, 3, 32, 32, generator=g), ids, mask


def nlvr_model(seed=0):
    """A two-image ALBEF (4 fusion layers) initialised from a pre-training one (2)."""
    torch.manual_seed(seed)
    pre = tiny_albef(fusion_layers=2)
    pre.init_weights()
    nlvr = tiny_albef(fusion_layers=4, two_image_fusion=True)
    sd = nlvr.adapt_pretrained_state_dict(pre.state_dict())
    nlvr.load_state_dict(sd, strict=True)
    return pre, nlvr


def test_list_context_of_one_tensor_equals_tensor_call():
    torch.manual_seed(0)
    enc = MODELS.build(dict(type='BertEncoder', vocab_size=V, hidden_size=W, num_heads=2,
                            intermediate_size=64, num_layers=3, with_embeddings=False,
                            cross_attention_layers=[0, 2])).eval()
    x, img = torch.randn(2, 5, W), torch.randn(2, 6, W)
    mask, img_mask = torch.ones(2, 5, dtype=torch.long), torch.ones(2, 6, dtype=torch.long)
    img_mask[1, 4:] = 0
    ref = enc(hidden_states=x, attention_mask=mask, image_embeds=img,
              image_mask=img_mask)['text_embeds']
    for embeds, m in (([img], [img_mask]), ((img,), img_mask)):
        out = enc(hidden_states=x, attention_mask=mask, image_embeds=embeds,
                  image_mask=m)['text_embeds']
        assert torch.equal(out, ref)
    # two contexts: cross layer 0 (block 0) -> img, cross layer 1 (block 2) -> other
    other = torch.randn(2, 3, W)
    two = enc(hidden_states=x, attention_mask=mask, image_embeds=[img, other],
              image_mask=[img_mask, None])['text_embeds']
    assert not torch.allclose(two, ref)
    with pytest.raises(ValueError, match='masks'):
        enc(hidden_states=x, image_embeds=[img, other], image_mask=[img_mask])
    with pytest.raises(ValueError, match='empty'):
        enc(hidden_states=x, image_embeds=[])


def test_layer_2k_sees_image0_only_and_cls_sees_both():
    _, model = nlvr_model()
    model.eval()
    images, ids, mask = pair_batch()
    outs = {}
    hooks = [model.fusion.blocks[i].register_forward_hook(
        lambda m, a, o, i=i: outs.__setitem__(i, o.detach().clone())) for i in (0, 1)]
    cls = model.fused_features_pair(images, ids, mask)
    first = dict(outs)
    changed = images.clone()
    changed[:, 1] = torch.randn_like(changed[:, 1])
    cls2 = model.fused_features_pair(changed, ids, mask)
    for h in hooks:
        h.remove()
    assert cls.shape == (3, W)
    assert torch.equal(outs[0], first[0])  # layer 0 attends to image 0 only
    assert not torch.allclose(outs[1], first[1])  # layer 1 to image 1
    assert not torch.allclose(cls2, cls)
    # swapping the images changes the result (the layers are told apart)
    assert not torch.allclose(model.fused_features_pair(images.flip(1), ids, mask), cls)


def test_cross_kv_shared_queries_separate():
    pre, model = nlvr_model()
    blocks = model.fusion.blocks
    assert model.fusion.shared_cross_kv == [(0, 1), (2, 3)]
    for a, b in ((0, 1), (2, 3)):
        assert blocks[a].cross_attn.kv.weight is blocks[b].cross_attn.kv.weight
        assert blocks[a].cross_attn.kv.bias is blocks[b].cross_attn.kv.bias
        assert blocks[a].cross_attn.q.weight is not blocks[b].cross_attn.q.weight
        assert blocks[a].attn.qkv.weight is not blocks[b].attn.qkv.weight
    assert blocks[1].cross_attn.kv.weight is not blocks[2].cross_attn.kv.weight
    # the momentum twin has its own tied copy
    tw = model.fusion_m.blocks
    assert tw[0].cross_attn.kv.weight is tw[1].cross_attn.kv.weight
    assert tw[0].cross_attn.kv.weight is not blocks[0].cross_attn.kv.weight
    # 2N layers initialised from N: equal values; q separate parameters but equal values
    assert torch.equal(blocks[1].cross_attn.q.weight, pre.fusion.blocks[0].cross_attn.q.weight)
    assert torch.equal(blocks[2].mlp.fc1.weight, pre.fusion.blocks[1].mlp.fc1.weight)
    # a gradient step: the shared K/V stay one tensor, the queries drift apart
    model.train()
    images, ids, mask = pair_batch()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.fused_features_pair(images, ids, mask).pow(2).sum().backward()
    assert blocks[0].cross_attn.kv.weight.grad is not None
    opt.step()
    assert torch.equal(blocks[0].cross_attn.kv.weight, blocks[1].cross_attn.kv.weight)
    assert not torch.equal(blocks[0].cross_attn.q.weight, blocks[1].cross_attn.q.weight)
    # tying checks
    with pytest.raises(ValueError, match='even'):
        tiny_albef(fusion_layers=3, two_image_fusion=True)
    with pytest.raises(ValueError, match='distinct'):
        model.fusion.share_cross_attention_kv([(1, 1)])


def test_expand_fusion_state_dict_and_load():
    torch.manual_seed(0)
    pre = tiny_albef(fusion_layers=2)
    pre.init_weights()
    sd = pre.state_dict()
    big = ALBEF.expand_fusion_state_dict(sd)
    for k in range(2):
        for new in (2 * k, 2 * k + 1):
            for head in ('fusion', 'fusion_m'):
                for name in ('attn.qkv.weight', 'cross_attn.q.weight', 'cross_attn.kv.bias',
                             'norm2.weight'):
                    assert torch.equal(big[f'{head}.blocks.{new}.{name}'],
                                       sd[f'{head}.blocks.{k}.{name}'])
    assert not any(k.startswith('fusion.blocks.4.') for k in big)
    assert torch.equal(big['text.word_embeddings.weight'], sd['text.word_embeddings.weight'])
    # prefixed keys (a downstream model's 'model.fusion.')
    pref = ALBEF.expand_fusion_state_dict({'model.fusion.blocks.1.norm2.bias': torch.ones(2)},
                                          prefix='model.fusion.')
    assert set(pref) == {'model.fusion.blocks.2.norm2.bias', 'model.fusion.blocks.3.norm2.bias'}

    nlvr = tiny_albef(fusion_layers=4, two_image_fusion=True)
    adapted = nlvr.adapt_pretrained_state_dict(sd)
    res = nlvr.load_state_dict(adapted, strict=False)
    assert not [k for k in res.missing_keys if 'fusion' in k]
    assert not res.unexpected_keys
    # already in the NLVR2 layout: kept; a single-image model: identity; wrong depth: error
    assert nlvr.adapt_pretrained_state_dict(adapted) is adapted
    assert pre.adapt_pretrained_state_dict(sd) is sd
    with pytest.raises(ValueError, match='layers'):
        tiny_albef(fusion_layers=6, two_image_fusion=True).adapt_pretrained_state_dict(sd)
    with pytest.raises(RuntimeError, match='two_image_fusion'):
        pre.fused_features_pair(*pair_batch())


def test_vlclassifier_joint_trains_a_step():
    torch.manual_seed(0)
    clf = VLClassifier(
        model=tiny_albef(fusion_layers=4, two_image_fusion=True),
        head=dict(type='ClassifierHead', in_channels=W, num_classes=2, hidden_channels=W,
                  norm=False, act='relu'),
        num_images=2, pair_encoding='joint',
        drop_parts=('vision_m', 'vision_proj_m', 'text_m', 'text_proj_m', 'fusion_m',
                    'mlm_head_m', 'mlm_head', 'itm_head', 'queue'))
    clf.train()
    images, ids, mask = pair_batch()
    opt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=1e-3)
    losses = clf.loss(dict(images=images, input_ids=ids, attention_mask=mask),
                      dict(label=[0, 1, 1]))
    assert torch.isfinite(losses['loss_cls'])
    losses['loss_cls'].backward()
    vis_grads = [p.grad for p in clf.model.vision.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in vis_grads)
    kv = clf.model.fusion.blocks[0].cross_attn.kv.weight
    assert kv.grad is not None and kv.grad.abs().sum() > 0
    opt.step()
    preds = clf.predict(dict(images=images, input_ids=ids, attention_mask=mask))
    assert len(preds) == 3 and all(p['pred_label'] in (0, 1) for p in preds)
