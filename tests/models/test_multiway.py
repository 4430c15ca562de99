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


def _route_counts(model, **inputs):
    """Tokens each expert FFN of each block received (forward hooks on the experts)."""
    seen = {}

    def hook(name):
        def fn(module, args, out):
            seen[name] = seen.get(name, 0) + args[0].shape[1]
        return fn

    handles = [ffn.register_forward_hook(hook(f'{i}.{e}'))
               for i, blk in enumerate(model.blocks) for e, ffn in blk.ffn.items()]
    model(**inputs)
    for h in handles:
        h.remove()
    return seen


def test_expert_routing_by_forward_hooks():
    model = tiny().eval()  # depth 3, VL expert in block 2; 4 patches + [CLS] = 5 tokens
    images = torch.randn(2, 3, 16, 16)
    ids = torch.randint(1, 30, (2, 6))
    # image-only: every image token through V-FFN, none through L-FFN / VL-FFN
    assert _route_counts(model, images=images) == {'0.v': 5, '1.v': 5, '2.v': 5}
    # text-only: every text token through L-FFN
    assert _route_counts(model, input_ids=ids) == {'0.l': 6, '1.l': 6, '2.l': 6}
    # fusion: modality experts below, then the whole sequence through VL-FFN
    assert _route_counts(model, images=images, input_ids=ids) == {
        '0.l': 6, '0.v': 5, '1.l': 6, '1.v': 5, '2.vl': 11}


def test_rel_pos_bias_layout():
    """VLMo's merged table: [text; image] index with its [CLS] and cross-modal entries."""
    model = tiny(abs_pos_embed=False, rel_pos_bias=True, text_rel_pos_len=10)
    w = 2  # 16 / 8
    n_img = (2 * w - 1) ** 2 + 3
    n_all = n_img + 2 * 10 + 2
    assert model.rel_pos_bias_table.shape == (n_all, 3 * 2)
    ti = model.rel_index_text
    assert ti[0, 0] == n_all - 1 and ti[0, 3] == n_all - 3 and ti[3, 0] == n_all - 2
    assert ti[1, 2] - ti[1, 1] == 1 and ti[2, 1] - ti[1, 1] == -1  # offset j - i
    assert ti[1, 1] == ti[4, 4]  # translation invariant
    ii = model.rel_index_image
    assert ii[0, 0] == n_img - 1 and ii[0, 2] == n_img - 3 and ii[2, 0] == n_img - 2
    bias = model._rel_pos(3, 5)
    assert bias.shape == (3, 2, 8, 8)
    with torch.no_grad():
        model.rel_pos_bias_table[n_img] = 7.0  # text -> image entry
        model.rel_pos_bias_table[n_img + 1] = -7.0  # image -> text entry
    bias = model._rel_pos(3, 5)
    assert torch.all(bias[:, :, :3, 3:] == 7.0) and torch.all(bias[:, :, 3:, :3] == -7.0)
    # the bias changes the outputs; a zero table is a no-op next to no table
    images, ids = torch.randn(2, 3, 16, 16), torch.randint(1, 30, (2, 6))
    out = model(images=images, input_ids=ids)['text_embeds']
    with torch.no_grad():
        model.rel_pos_bias_table.zero_()
    assert not torch.allclose(out, model(images=images, input_ids=ids)['text_embeds'])
    with pytest.raises(ValueError):
        tiny(rel_pos_bias=True, text_rel_pos_len=4)  # shorter than max_text_len 8


def test_image_mask_replaces_patches_and_layer_scale():
    model = tiny(layer_scale_init=0.1).eval()
    assert torch.allclose(model.blocks[0].gamma_1, torch.full((16,), 0.1))
    a, b = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    everything = torch.ones(2, 4, dtype=torch.bool)
    # every patch masked: the output no longer depends on the pixels
    assert torch.allclose(model(images=a, image_mask=everything)['image_embeds'],
                          model(images=b, image_mask=everything)['image_embeds'], atol=1e-6)
    part = torch.zeros(2, 4, dtype=torch.bool)
    part[:, 1] = True
    assert not torch.allclose(model(images=a, image_mask=part)['image_embeds'],
                              model(images=b, image_mask=part)['image_embeds'])
    assert tiny(layer_scale_init=None).blocks[0].gamma_1 is None
