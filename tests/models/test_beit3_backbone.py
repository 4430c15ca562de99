"""BEiT3Transformer (vlp/models/backbones/beit3.py): expert routing, fusion split,
gradient checkpointing, masked image modelling input, Magneto init gain."""
import math

import pytest
import torch

from vlp.models.backbones.beit3 import POS_OFFSET, BEiT3Transformer, Multiway
from vlp.registry import MODELS

IMG, PATCH, DIM, VOCAB = 32, 8, 32, 60
N_IMG = (IMG // PATCH) ** 2 + 1  # patches + [CLS]
T = 7


def tiny(**kw) -> BEiT3Transformer:
    torch.manual_seed(0)
    cfg = dict(img_size=IMG, patch_size=PATCH, vocab_size=VOCAB, max_text_len=16,
               embed_dim=DIM, depth=2, num_heads=2, mlp_ratio=2.0)
    cfg.update(kw)
    return BEiT3Transformer(**cfg).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, IMG, IMG, generator=g)
    ids = torch.randint(0, VOCAB, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, 4:] = 0
    return images, ids, mask


def record_experts(model):
    """Forward hooks on every vision (``.v``) and language (``.l``) expert: list of
    (module name, expert, number of tokens, input)."""
    calls, handles = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, Multiway):
            for e in ('v', 'l'):
                handles.append(getattr(mod, e).register_forward_hook(
                    lambda m, args, out, n=name, e=e: calls.append(
                        (n, e, args[0].shape[1], args[0].detach().clone()))))
    return calls, handles


def multiway_names(model):
    return {n for n, m in model.named_modules() if isinstance(m, Multiway)}


@pytest.mark.parametrize('mode', ['image', 'text', 'fusion'])
def test_expert_routing(mode):
    model = tiny()
    images, ids, mask = inputs()
    kwargs = {'image': dict(images=images),
              'text': dict(input_ids=ids, attention_mask=mask),
              'fusion': dict(images=images, input_ids=ids, attention_mask=mask)}[mode]
    calls, handles = record_experts(model)
    with torch.no_grad():
        out = model(**kwargs)
    for h in handles:
        h.remove()
    used = {(n, e) for n, e, _, _ in calls}
    names = multiway_names(model)
    # every multiway part runs once per forward in each used expert
    experts = {'image': ('v',), 'text': ('l',), 'fusion': ('v', 'l')}[mode]
    assert used == {(n, e) for n in names for e in experts}
    assert len(calls) == len(used)
    for n, e, num, _ in calls:
        # image tokens only ever reach vision experts, text tokens only language ones
        assert num == (N_IMG if e == 'v' else T), (n, e, num)
    if mode == 'fusion':  # split at the image token count: the experts see exactly their part
        emb_img = model.embed_image(images)
        emb_txt = model.embed_text(ids) * mask.unsqueeze(-1)
        first = {e: x for n, e, _, x in calls if n == 'blocks.0.norm1'}
        torch.testing.assert_close(first['v'], emb_img, rtol=0, atol=0)
        torch.testing.assert_close(first['l'], emb_txt, rtol=0, atol=0)
        assert out['image_embeds'].shape == (2, N_IMG, DIM)
        assert out['text_embeds'].shape == (2, T, DIM)
        torch.testing.assert_close(out['text_pooled'], out['text_embeds'][:, 0])
    if mode != 'text':
        torch.testing.assert_close(out['image_pooled'], out['image_embeds'][:, 0])
    if mode != 'image':
        assert torch.equal(out['text_mask'], mask)


def test_unimodal_outputs_ignore_other_experts():
    """Changing every language expert leaves image-only outputs untouched, and the other
    way round."""
    images, ids, mask = inputs()
    model = tiny()
    with torch.no_grad():
        img0 = model(images=images)['image_embeds']
        txt0 = model(input_ids=ids, attention_mask=mask)['text_embeds']
        fus0 = model(images=images, input_ids=ids, attention_mask=mask)
        for n, p in model.named_parameters():
            if '.l.' in n:
                p.add_(1.0)
        torch.testing.assert_close(model(images=images)['image_embeds'], img0, rtol=0, atol=0)
        assert not torch.allclose(model(input_ids=ids, attention_mask=mask)['text_embeds'],
                                  txt0)
        # fusion: the joint softmax lets text change the image tokens
        fus1 = model(images=images, input_ids=ids, attention_mask=mask)
        assert not torch.allclose(fus1['image_embeds'], fus0['image_embeds'])
        model = tiny()
        for n, p in model.named_parameters():
            if '.v.' in n:
                p.add_(1.0)
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask)['text_embeds'],
                                   txt0, rtol=0, atol=0)


def test_padding_is_masked():
    """Padded text tokens change no unpadded output."""
    images, ids, mask = inputs()
    model = tiny()
    other = ids.clone()
    other[1, 4:] = (other[1, 4:] + 1) % VOCAB
    with torch.no_grad():
        a = model(images=images, input_ids=ids, attention_mask=mask)
        b = model(images=images, input_ids=other, attention_mask=mask)
    torch.testing.assert_close(a['image_embeds'], b['image_embeds'])
    torch.testing.assert_close(a['text_embeds'][1, :4], b['text_embeds'][1, :4])


def test_grad_checkpointing_same_output_and_grads():
    images, ids, mask = inputs()
    results = []
    for ckpt in (False, True):
        model = tiny(drop_path_rate=0.0).train()
        model.set_grad_checkpointing(ckpt)
        out = model(images=images, input_ids=ids, attention_mask=mask)
        loss = out['image_embeds'].pow(2).mean() + out['text_embeds'].sin().sum()
        loss.backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters()
                              if p.grad is not None}))
    (o0, g0), (o1, g1) = results
    for k in ('image_embeds', 'text_embeds'):
        torch.testing.assert_close(o0[k], o1[k], rtol=0, atol=0)
    assert g0.keys() == g1.keys() and 'blocks.0.attn.qkv.v.weight' in g0
    for n in g0:
        torch.testing.assert_close(g0[n], g1[n], rtol=1e-6, atol=1e-7)


def test_masked_positions_use_mask_token():
    images, _, _ = inputs()
    model = tiny()
    with torch.no_grad():
        model.mask_token.normal_()
        masked = torch.zeros(2, N_IMG - 1, dtype=torch.bool)
        masked[0, :5] = True
        masked[1, 9:] = True
        plain = model.embed_image(images)
        emb = model.embed_image(images, masked)
        pos = model.image_pos_embed.weight[POS_OFFSET:POS_OFFSET + N_IMG]
        sel = torch.cat([torch.zeros(2, 1, dtype=torch.bool), masked], 1)
        expect = torch.where(sel.unsqueeze(-1), model.mask_token + pos, plain)
        torch.testing.assert_close(emb, expect)
        assert not torch.allclose(emb[0, 1], plain[0, 1])
        torch.testing.assert_close(emb[:, 0], plain[:, 0])  # [CLS] never masked
        out = model(images=images, vision_masked_position=masked)['image_embeds']
        assert not torch.allclose(out, model(images=images)['image_embeds'])


def test_registry_contract_and_errors():
    model = MODELS.build(dict(type='BEiT3Transformer', img_size=IMG, patch_size=PATCH,
                              vocab_size=VOCAB, max_text_len=10, embed_dim=DIM, depth=1,
                              num_heads=2))
    assert model.embed_dim == model.out_dim == DIM
    assert model.word_embeddings.weight.shape == (VOCAB, DIM)
    assert model.text_pos_embed.weight.shape == (10, DIM)
    assert model.image_pos_embed.weight.shape == (N_IMG + POS_OFFSET, DIM)
    ids = torch.randint(0, VOCAB, (1, 8))
    assert model(input_ids=ids)['text_embeds'].shape == (1, 8, DIM)
    with pytest.raises(ValueError, match='max_text_len'):
        model(input_ids=torch.randint(0, VOCAB, (1, 9)))
    with pytest.raises(ValueError):
        model()


def test_magneto_subln_init_gain():
    """torchscale multiplies fc1, fc2, out_proj and v_proj (weights and biases) by
    sqrt(log(2 * depth)) when ``subln``; q and k stay as initialised."""
    a, b = tiny(subln_init_gain=False), tiny(subln_init_gain=True)
    scale = math.sqrt(math.log(2 * 2))
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    for e in ('v', 'l'):
        for i in range(2):
            p = f'blocks.{i}.'
            for name in (f'attn.proj.{e}.weight', f'ffn.{e}.fc1.bias', f'ffn.{e}.fc2.weight'):
                torch.testing.assert_close(pb[p + name], pa[p + name] * scale)
            qkv_a, qkv_b = pa[p + f'attn.qkv.{e}.weight'], pb[p + f'attn.qkv.{e}.weight']
            torch.testing.assert_close(qkv_b[:2 * DIM], qkv_a[:2 * DIM], rtol=0, atol=0)
            torch.testing.assert_close(qkv_b[2 * DIM:], qkv_a[2 * DIM:] * scale)
    # the vision and language experts start different (torchscale re-initialises B)
    assert not torch.equal(pa['blocks.0.ffn.v.fc1.weight'], pa['blocks.0.ffn.l.fc1.weight'])


def test_group_matcher_covers_every_parameter():
    import re
    model = tiny()
    g = model.group_matcher()
    patterns = [g['stem']] + [p for p, _ in g['blocks']]
    for name, _ in model.named_parameters():
        assert any(re.match(p, name) for p in patterns), name
    assert {'cls_token', 'mask_token', 'image_pos_embed.weight'} <= {
        n for n, _ in model.named_parameters()} & model.no_weight_decay()
