"""The multiway transformer (VLMo / BEiT-3): shared attention, modality experts, the
VL expert in the top blocks in fusion mode only, padding, activation checkpointing."""
import pytest
import torch

from vlp.models.backbones.multiway import MultiwayTransformer


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(img_size=16, patch_size=8, vocab_size=30, max_text_len=8, embed_dim=16,
               depth=3, num_heads=2, num_vl_layers=1)
    cfg.update(kw)
    return MultiwayTransformer(**cfg)


def _grads(model, out_key, **inputs):
    model.zero_grad()
    out = model(**inputs)
    out[out_key].sum().backward()
    return {n: p.grad is not None and p.grad.abs().sum() > 0
            for n, p in model.named_parameters()}


def test_experts_by_mode():
    model = tiny()
    images = torch.randn(2, 3, 16, 16)
    ids = torch.randint(1, 30, (2, 5))
    g = _grads(model, 'image_embeds', images=images)  # image encoder: V experts only
    assert g['blocks.0.ffn.v.fc1.weight'] and g['blocks.2.ffn.v.fc1.weight']
    assert not any(g[n] for n in g if '.l.' in n or '.vl.' in n or 'word_embeddings' in n)
    assert g['blocks.0.attn.qkv.weight']
    g = _grads(model, 'text_embeds', input_ids=ids)  # text encoder: L experts only
    assert g['blocks.2.ffn.l.fc1.weight'] and not g['blocks.2.ffn.v.fc1.weight']
    assert not any(g[n] for n in g if '.vl.' in n or 'patch_embed' in n)
    # fusion: modality experts below, the VL expert in the top block for every token
    g = _grads(model, 'text_embeds', images=images, input_ids=ids)
    assert g['blocks.0.ffn.v.fc1.weight'] and g['blocks.0.ffn.l.fc1.weight']
    assert g['blocks.2.ffn.vl.fc1.weight']
    assert not g['blocks.2.ffn.v.fc1.weight'] and not g['blocks.2.ffn.l.fc1.weight']
    assert not hasattr(model.blocks[1].ffn, 'vl') or 'vl' not in model.blocks[1].ffn
    # the shared attention sees both modalities: text outputs depend on the image
    other = model(images=torch.randn(2, 3, 16, 16), input_ids=ids)['text_embeds']
    assert not torch.allclose(other, model(images=images, input_ids=ids)['text_embeds'])


def test_padding_and_checkpointing():
    model = tiny().eval()
    ids = torch.randint(1, 30, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[:, 4:] = 0
    a = model(input_ids=ids, attention_mask=mask)['text_embeds'][:, :4]
    ids2 = ids.clone()
    ids2[:, 4:] = 7
    b = model(input_ids=ids2, attention_mask=mask)['text_embeds'][:, :4]
    assert torch.allclose(a, b, atol=1e-6)
    images = torch.randn(2, 3, 16, 16)
    model.train()
    ref = model(images=images, input_ids=ids)['image_pooled']
    model.set_grad_checkpointing(True)
    assert torch.allclose(model(images=images, input_ids=ids)['image_pooled'], ref, atol=1e-6)
    with pytest.raises(ValueError):
        model()
    with pytest.raises(ValueError):
        tiny(num_vl_layers=4)
