"""CLIP / ALIGN algorithm: training loss, inference API, predict, zero-shot, optimizer
conventions. Tiny towers: a 2-layer width-32 timm ViT and vlp's text towers."""
import copy

import pytest
import torch
import torch.nn.functional as F

from vlp.models.algorithms.clip import CLIP
from vlp.registry import MODELS

V, L, D = 64, 8, 16  # vocab, sequence length, joint embedding width

CLIP_CFG = dict(
    type='CLIP',
    vision=dict(type='TimmTower', model_name='vit_base_patch16_clip_224', img_size=32,
                patch_size=8, embed_dim=32, depth=2, num_heads=2),
    text=dict(type='TextTransformer', vocab_size=V, context_length=L, width=32, layers=2,
              heads=2),
    vision_proj=dict(type='Projection', in_dim=32, out_dim=D),
    text_proj=dict(type='Projection', in_dim=32, out_dim=D),
    itc=dict(type='ContrastiveLoss'))

ALIGN_CFG = dict(
    type='CLIP',
    vision=dict(type='TimmTower', model_name='test_efficientnet'),  # out_dim 256
    text=dict(type='BertEncoder', vocab_size=V, hidden_size=32, num_layers=2, num_heads=2,
              intermediate_size=64, max_position_embeddings=L, hidden_dropout=0.0,
              attention_dropout=0.0),
    vision_proj=None,  # ALIGN: the pooled EfficientNet feature is the embedding
    text_proj=dict(type='Projection', in_dim=32, out_dim=256, bias=True),
    itc=dict(type='ContrastiveLoss', temperature=1.0, label_smoothing=0.1))


def _build(cfg=CLIP_CFG, **kw):
    torch.manual_seed(0)
    return MODELS.build({**copy.deepcopy(cfg), **kw})


def _ids(*shape, seed=0):
    """Token ids with CLIP's EOT convention: the largest id (V - 1) ends every row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V - 1, (*shape, L), generator=g)
    ids[..., -1] = V - 1
    return ids


def _batch(B=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = _ids(B, seed=seed)
    return dict(image=torch.randint(0, 256, (B, 3, size, size), dtype=torch.uint8, generator=g),
                input_ids=ids, attention_mask=torch.ones_like(ids),
                image_id=torch.arange(B) + 100, text=[f'caption {i}' for i in range(B)])


class ToyTokenizer:
    """Characters -> ids, padded to L, the EOT id last (the tokenizer contract)."""

    def __call__(self, texts):
        rows = []
        for t in texts:
            ids = [1 + ord(c) % (V - 2) for c in t][:L - 1] + [V - 1]
            rows.append(ids + [0] * (L - len(ids)))
        ids = torch.tensor(rows)
        return dict(input_ids=ids, attention_mask=(ids > 0).long())


def test_loss_backward_updates_both_towers():
    model = _build()
    assert isinstance(model, CLIP)
    data = model.data_preprocessor(_batch(), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_itc', 'logit_scale'}
    # the loss is the ITC of the normalised projected features
    img = F.normalize(model.vision_proj(model.vision(data['inputs']['images'])['image_pooled']),
                      dim=-1)
    txt = F.normalize(model.text_proj(model.text(data['inputs']['input_ids'])['text_pooled']),
                      dim=-1)
    torch.testing.assert_close(losses['loss_itc'], model.itc(img, txt)['loss_itc'])
    parsed, log_vars = model.parse_losses(losses)
    torch.testing.assert_close(parsed, losses['loss_itc'])
    assert 'logit_scale' in log_vars
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    parsed.backward()
    for part in ('vision', 'text', 'vision_proj', 'text_proj'):
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert all(g is not None for g in grads), part
        assert sum(g.abs().sum() for g in grads) > 0, part
    assert model.itc.logit_scale.grad.abs() > 0
    opt.step()
    for prefix in ('vision.model.blocks.0.', 'text.blocks.0.', 'vision_proj.', 'text_proj.'):
        changed = [not torch.equal(p, before[n]) for n, p in model.named_parameters()
                   if n.startswith(prefix)]
        assert changed and any(changed), prefix


def test_encode_image_and_text_are_normalised():
    model = _build().eval()
    batch = _batch(3)
    raw = batch['image']
    f_raw = model.encode_image(raw)
    f_norm = model.encode_image(model.data_preprocessor.normalize(raw))
    assert f_raw.shape == (3, D)
    torch.testing.assert_close(f_raw, f_norm)
    torch.testing.assert_close(f_raw.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(model.encode_image(raw, normalize=False).norm(dim=-1),
                              torch.ones(3))
    t = model.encode_text(batch['input_ids'])
    assert t.shape == (3, D)
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(model.encode_text(batch['input_ids'][0]), t[:1])
    with pytest.raises(RuntimeError, match='tokenizer'):
        model.encode_text(['a photo of a cat'])
    model.tokenizer = ToyTokenizer()
    s = model.encode_text(['a photo of a cat', 'a dog'])
    tok = ToyTokenizer()(['a photo of a cat', 'a dog'])
    torch.testing.assert_close(s, model.encode_text(tok['input_ids'],
                                                    attention_mask=tok['attention_mask']))
    torch.testing.assert_close(s.norm(dim=-1), torch.ones(2))


def test_predict_with_k_captions_and_meta():
    model = _build().eval()
    B, K = 3, 2
    batch = _batch(B)
    ids = _ids(B, K, seed=1)
    batch['input_ids'], batch['attention_mask'] = ids, torch.ones_like(ids)
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        out = model(**data, mode='predict')
    assert len(out) == B
    img = model.encode_image(batch['image'])
    for i, res in enumerate(out):
        assert res['image_feat'].shape == (D,) and res['text_feat'].shape == (K, D)
        torch.testing.assert_close(res['image_feat'], img[i])
        torch.testing.assert_close(res['text_feat'], model.encode_text(ids[i]))
        assert res['image_id'] == 100 + i and isinstance(res['image_id'], int)
        assert res['text'] == f'caption {i}'
        assert 'logits' not in res
    # [B, L]: one caption per image, K = 1
    data = model.data_preprocessor(_batch(B), False)
    with torch.no_grad():
        out = model.predict(data['inputs'], data['data_samples'])
    assert out[0]['text_feat'].shape == (1, D)


def test_predict_with_a_list_of_captions():
    model = _build().eval()
    ids = [_ids(1, seed=2), _ids(3, seed=3), _ids(2, seed=4)]
    images = model.data_preprocessor.normalize(_batch(3)['image'])
    with torch.no_grad():
        out = model.predict(dict(images=images, input_ids=ids,
                                 attention_mask=[torch.ones_like(t) for t in ids]))
        # captions of different lengths are encoded one sample at a time
        short = [t[:, 2:] for t in ids]
        out_short = model.predict(dict(images=images, input_ids=short))
    for i, t in enumerate(ids):
        assert out[i]['text_feat'].shape == (t.shape[0], D)
        torch.testing.assert_close(out[i]['text_feat'], model.encode_text(t))
        torch.testing.assert_close(out_short[i]['text_feat'], model.encode_text(short[i]))


def test_zero_shot_classification_images_only():
    model = _build().eval()
    raw = _batch(4)['image']
    images = model.data_preprocessor.normalize(raw)
    with torch.no_grad():
        out = model.predict(dict(images=images), dict(label=torch.tensor([0, 1, 2, 1])))
    assert 'text_feat' not in out[0] and 'logits' not in out[0] and out[1]['label'] == 1
    # class embeddings: the images' own features (scaled) plus a distractor
    img = model.encode_image(raw)
    classes = torch.cat([3.0 * img[:3], torch.randn(1, D)])
    model.set_zero_shot_classifier(classes)
    assert 'zero_shot_weights' not in model.state_dict()
    with torch.no_grad():
        out = model.predict(dict(images=images))
    w = F.normalize(classes, dim=-1)
    scale = model.itc.get_logit_scale()
    for i, res in enumerate(out):
        assert res['logits'].shape == (4,)
        torch.testing.assert_close(res['logits'], scale * img[i] @ w.t())
    assert [int(r['logits'].argmax()) for r in out[:3]] == [0, 1, 2]
    model.set_zero_shot_classifier(None)
    with torch.no_grad():
        assert 'logits' not in model.predict(dict(images=images))[0]


def test_extract_feat_tensor_mode():
    model = _build().eval()
    data = model.data_preprocessor(_batch(2), False)
    with torch.no_grad():
        feats = model(**data, mode='tensor')
    assert feats['image_feat'].shape == (2, D) and feats['text_feat'].shape == (2, D)
    with torch.no_grad():
        only_img = model.extract_feat(dict(images=data['inputs']['images']))
    assert set(only_img) == {'image_feat'}


def test_align_config_efficientnet_bert_label_smoothing():
    model = _build(ALIGN_CFG)
    assert isinstance(model.vision_proj, torch.nn.Identity)
    assert model.itc.label_smoothing == 0.1
    data = model.data_preprocessor(_batch(4, size=64), True)
    losses = model(**data, mode='loss')
    losses['loss_itc'].backward()
    assert model.vision.model.conv_stem.weight.grad.abs().sum() > 0
    assert model.text.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert model.encode_image(_batch(2, size=64)['image']).shape == (2, 256)


def test_siglip_as_itc():
    model = _build(itc=dict(type='SigLIPLoss'))
    losses = model(**model.data_preprocessor(_batch(), True), mode='loss')
    assert set(losses) == {'loss_itc', 'logit_scale', 'logit_bias'}
    losses['loss_itc'].backward()
    assert model.itc.logit_bias.grad is not None


def test_no_weight_decay_names():
    model = _build()
    names = {n for n, _ in model.named_parameters()}
    nwd = model.no_weight_decay()
    assert nwd <= names
    for n in ('itc.logit_scale', 'vision.model.pos_embed', 'vision.model.cls_token',
              'text.positional_embedding', 'vision.model.blocks.0.attn.qkv.bias',
              'text.blocks.1.norm2.weight', 'vision.model.norm.bias'):
        assert n in nwd, n
    for n in ('vision_proj.proj.weight', 'text.blocks.0.attn.qkv.weight',
              'vision.model.patch_embed.proj.weight'):
        assert n not in nwd, n


def test_grad_checkpointing_same_loss_and_grads():
    batch = _batch()
    grads = []
    for ckpt in (False, True):
        model = _build(grad_checkpointing=ckpt)
        assert model.vision.grad_checkpointing is ckpt and model.text.grad_checkpointing is ckpt
        loss = model(**model.data_preprocessor(batch, True), mode='loss')['loss_itc']
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], msg=n)


def test_init_weights_keeps_tower_weights(tmp_path):
    src = _build()
    path = tmp_path / 'vit.pth'
    torch.save(src.vision.model.state_dict(), path)
    cfg = copy.deepcopy(CLIP_CFG)
    cfg['vision']['checkpoint'] = str(path)
    model = _build(cfg)
    model.init_weights()  # what mmengine's runner calls after building
    for k, v in src.vision.model.state_dict().items():
        assert torch.equal(model.vision.model.state_dict()[k], v), k
