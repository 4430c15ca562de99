"""TextTransformer (CLIP) and BertEncoder (BERT): masking, pooling, HF parity,
activation checkpointing."""
import pytest
import torch
from transformers import BertConfig, BertModel, CLIPTextConfig, CLIPTextModel

from vlp.models.backbones.bert import BertEncoder, convert_hf_bert_state_dict
from vlp.registry import MODELS

V, L = 64, 12


def clip_text(**kw):
    torch.manual_seed(0)
    cfg = dict(type='TextTransformer', vocab_size=V, context_length=16, width=32, layers=2,
               heads=4)
    cfg.update(kw)
    return MODELS.build(cfg).eval()


def bert(**kw):
    torch.manual_seed(0)
    cfg = dict(type='BertEncoder', vocab_size=V, hidden_size=32, num_layers=2, num_heads=4,
               intermediate_size=64, max_position_embeddings=32)
    cfg.update(kw)
    return MODELS.build(cfg).eval()


def clip_ids():
    """Two rows; EOT (= V - 1, the largest id) at positions 4 and 7, zero padding after."""
    ids = torch.zeros(2, L, dtype=torch.long)
    ids[0, :4] = torch.tensor([1, 5, 9, 3])
    ids[1, :7] = torch.tensor([1, 8, 2, 7, 6, 4, 3])
    ids[0, 4] = ids[1, 7] = V - 1
    return ids


# ---------------------------------------------------------------- TextTransformer
def test_text_transformer_outputs_and_causality():
    m = clip_text()
    ids = clip_ids()
    out = m(ids)
    assert out['text_embeds'].shape == (2, L, 32) and out['text_pooled'].shape == (2, 32)
    assert m.out_dim == 32
    assert out['text_mask'].tolist()[0] == [1] * 5 + [0] * 7
    ids2 = ids.clone()
    ids2[:, 6] = 11
    out2 = m(ids2)
    torch.testing.assert_close(out['text_embeds'][:, :6], out2['text_embeds'][:, :6])
    assert not torch.allclose(out['text_embeds'][:, 6:], out2['text_embeds'][:, 6:])


def test_text_transformer_eot_pooling():
    m = clip_text()
    ids = clip_ids()
    out = m(ids)
    torch.testing.assert_close(out['text_pooled'][0], out['text_embeds'][0, 4])
    torch.testing.assert_close(out['text_pooled'][1], out['text_embeds'][1, 7])
    # HF-style: first occurrence of a given id (here 3), else the last real token
    m.eot_token_id = 3
    ids[0, 6] = 3  # a later occurrence must not be used
    ids[1, 6] = 5  # row 1 had its only 3 at position 6: now it has none
    mask = (torch.arange(L) < torch.tensor([[9], [8]])).long()
    out = m(ids, mask)
    torch.testing.assert_close(out['text_pooled'][0], out['text_embeds'][0, 3])
    torch.testing.assert_close(out['text_pooled'][1], out['text_embeds'][1, 7])


def test_text_transformer_padding_does_not_change_pooled():
    m = clip_text()
    ids = clip_ids()
    ref = m(ids)['text_pooled']
    garbage = ids.clone()
    garbage[0, 5:] = torch.randint(1, V - 1, (L - 5,))
    garbage[1, 8:] = torch.randint(1, V - 1, (L - 8,))
    torch.testing.assert_close(m(garbage)['text_pooled'], ref)
    torch.testing.assert_close(m(ids[:, :8])['text_pooled'], ref)  # shorter padding
    mask = (ids != 0).long()
    mask[:, 0] = 1
    out = m(garbage, mask)  # garbage masked out: same result as well
    torch.testing.assert_close(out['text_pooled'], ref)
    assert torch.equal(out['text_mask'], mask)


def test_text_transformer_mask_never_nan():
    m = clip_text()
    ids = clip_ids()
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding: rows that would attend to nothing
    mask[1] = 0
    out = m(ids, mask)
    assert torch.isfinite(out['text_embeds']).all()


def test_text_transformer_matches_hf_clip():
    cfg = CLIPTextConfig(vocab_size=V, hidden_size=32, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=16, eos_token_id=2, bos_token_id=1)
    torch.manual_seed(1)
    hf = CLIPTextModel(cfg).eval()
    sd = hf.state_dict()
    new = {'token_embedding.weight': sd['embeddings.token_embedding.weight'],
           'positional_embedding': sd['embeddings.position_embedding.weight'],
           'ln_final.weight': sd['final_layer_norm.weight'],
           'ln_final.bias': sd['final_layer_norm.bias']}
    names = dict(layer_norm1='norm1', layer_norm2='norm2', mlp='mlp')
    for i in range(2):
        p = f'encoder.layers.{i}.'
        for t in ('weight', 'bias'):
            new[f'blocks.{i}.attn.qkv.{t}'] = torch.cat(
                [sd[f'{p}self_attn.{n}_proj.{t}'] for n in 'qkv'])
            new[f'blocks.{i}.attn.proj.{t}'] = sd[f'{p}self_attn.out_proj.{t}']
            for a, b in names.items():
                for sub in (['fc1.', 'fc2.'] if a == 'mlp' else ['']):
                    new[f'blocks.{i}.{b}.{sub}{t}'] = sd[f'{p}{a}.{sub}{t}']
    m = clip_text(act_layer='quick_gelu')
    m.load_state_dict(new)
    ids = clip_ids()
    ref = hf(input_ids=ids)
    out = m(ids)
    torch.testing.assert_close(out['text_embeds'], ref.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(out['text_pooled'], ref.pooler_output, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- BertEncoder
def test_bert_padding_invariance():
    m = bert()
    ids = torch.randint(1, V, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    ref = m(ids, mask)
    padded = torch.cat([ids, torch.randint(1, V, (2, 4))], dim=1)  # garbage, masked out
    pmask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    out = m(padded, pmask)
    torch.testing.assert_close(out['text_embeds'][:, :6], ref['text_embeds'])
    torch.testing.assert_close(out['text_pooled'], ref['text_embeds'][:, 0])
    assert torch.equal(out['text_mask'], pmask)
    # without the mask the padding does leak in (the test above is not vacuous)
    assert not torch.allclose(m(padded)['text_embeds'][:, :6], ref['text_embeds'], atol=1e-4)


def tiny_hf_bert(**kw):
    cfg = BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=32, **kw)
    torch.manual_seed(2)
    return BertModel(cfg).eval()


def test_bert_matches_hf_bert(tmp_path):
    hf = tiny_hf_bert()
    ids = torch.randint(1, V, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
    m = bert(add_pooler=True)
    left = m.load_hf_state_dict({'bert.' + k: v for k, v in hf.state_dict().items()})
    assert left == []
    out = m(ids, mask, token_type_ids=types)
    torch.testing.assert_close(out['text_embeds'], ref.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(out['text_pooled'], ref.pooler_output, atol=1e-5, rtol=0)
    # from a directory holding model.safetensors, as a constructor argument
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()},
              str(tmp_path / 'model.safetensors'))
    m2 = bert(pretrained=str(tmp_path))
    torch.testing.assert_close(m2(ids, mask, token_type_ids=types)['text_embeds'],
                               ref.last_hidden_state, atol=1e-5, rtol=0)


def test_bert_causal_cross_attention_matches_hf_decoder():
    hf = tiny_hf_bert(is_decoder=True, add_cross_attention=True)
    ids = torch.randint(1, V, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    img = torch.randn(2, 5, 32)
    img_mask = torch.ones(2, 5, dtype=torch.long)
    img_mask[0, 3:] = 0
    ref = hf(input_ids=ids, attention_mask=mask, encoder_hidden_states=img,
             encoder_attention_mask=img_mask).last_hidden_state
    m = bert(cross_attention_layers='all')
    assert m.load_hf_state_dict(hf.state_dict()) == []
    out = m(ids, mask, image_embeds=img, image_mask=img_mask, is_causal=True)['text_embeds']
    torch.testing.assert_close(out[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=0)


def test_bert_layer_offset_and_strict():
    hf = tiny_hf_bert()
    fusion = bert(num_layers=1, with_embeddings=False, cross_attention_layers=[0])
    left = fusion.load_hf_state_dict(hf.state_dict(), layer_offset=1)
    assert left and all('cross' in k for k in left)
    assert torch.equal(fusion.blocks[0].mlp.fc1.weight,
                       hf.state_dict()['encoder.layer.1.intermediate.dense.weight'])
    with pytest.raises(KeyError):
        bert(num_layers=3).load_hf_state_dict(hf.state_dict())
    sd = convert_hf_bert_state_dict(hf.state_dict())
    assert sd['blocks.0.attn.qkv.weight'].shape == (96, 32)


def test_bert_fusion_encoder_uses_image():
    m = bert(num_layers=4, cross_attention_layers='every_2', cross_attention_dim=24,
             with_embeddings=False)
    assert m.cross_layers == {0, 2}
    assert [b.has_cross_attn for b in m.blocks] == [True, False, True, False]
    assert not hasattr(m, 'word_embeddings')
    h = torch.randn(2, 6, 32)
    img = torch.randn(2, 5, 24)
    a = m(hidden_states=h, image_embeds=img)['text_embeds']
    b = m(hidden_states=h, image_embeds=torch.randn(2, 5, 24))['text_embeds']
    assert a.shape == (2, 6, 32) and not torch.allclose(a, b, atol=1e-4)
    img_mask = torch.tensor([[1, 1, 1, 0, 0]] * 2)
    img2 = img.clone()
    img2[:, 3:] += 1.0
    torch.testing.assert_close(m(hidden_states=h, image_embeds=img, image_mask=img_mask),
                               m(hidden_states=h, image_embeds=img2, image_mask=img_mask))


# ---------------------------------------------------------------- checkpointing
@pytest.mark.parametrize('make, kwargs', [
    (lambda: clip_text(), {}),
    (lambda: bert(cross_attention_layers='all', hidden_dropout=0.1, attention_dropout=0.1),
     dict(image_embeds=torch.randn(2, 5, 32))),
])
def test_grad_checkpointing_same_loss_and_grads(monkeypatch, make, kwargs):
    ids = clip_ids()
    mask = (ids != 0).long()

    def run(model):
        model.train()
        model.zero_grad()
        torch.manual_seed(123)
        out = model(ids, mask, **kwargs)
        loss = out['text_embeds'].square().mean() + out['text_pooled'].sin().sum()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                               if p.grad is not None}

    model = make()
    loss_ref, grads_ref = run(model)
    calls = []
    orig = torch.utils.checkpoint.checkpoint

    def spy(*args, **kw):
        calls.append(kw.get('use_reentrant'))
        return orig(*args, **kw)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', spy)
    model.set_grad_checkpointing(True)
    loss, grads = run(model)
    assert calls == [False] * len(model.blocks)
    torch.testing.assert_close(loss, loss_ref, atol=1e-6, rtol=0)
    assert grads.keys() == grads_ref.keys()
    for n in grads:
        torch.testing.assert_close(grads[n], grads_ref[n], atol=1e-6, rtol=0, msg=n)
    model.eval()
    with torch.no_grad():
        model(ids, mask, **kwargs)
    assert len(calls) == len(model.blocks)  # not used at inference
