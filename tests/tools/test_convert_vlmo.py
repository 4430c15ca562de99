"""tools/convert/vlmo_to_vlp.py: a random state dict in the key layout of the official VLMo
code (unilm/vlmo) converts to vlp's VLMo, whose outputs equal those of the reference
code's computation, written out here from its public source (multiway_transformer.py:
q/v biases, layer scale, shared norm1 / final norm, per-expert norm2 + MLP, the VL expert
and the split at max_text_len; vlmo_module.py: BertEmbeddings with relative positions,
token-type embeddings, the merged relative-position table; heads.py)."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import api_inputs, load_tool, tiny_vocab

conv = load_tool('convert/vlmo_to_vlp')
C, H, DEPTH, VL_START, VOCAB, L, L0, IMG, P = 32, 2, 3, 2, 40, 8, 10, 16, 8
W = IMG // P


def official_state_dict():
    g = torch.Generator().manual_seed(0)

    def r(*shape, s=0.2):
        return torch.randn(*shape, generator=g) * s

    sd = {'transformer.cls_token': r(1, 1, C), 'transformer.patch_embed.proj.weight':
          r(C, 3, P, P, s=0.05), 'transformer.patch_embed.proj.bias': r(C),
          'transformer.norm.weight': 1 + r(C), 'transformer.norm.bias': r(C)}
    for i in range(DEPTH):
        b = f'transformer.blocks.{i}.'
        sd.update({b + 'norm1.weight': 1 + r(C), b + 'norm1.bias': r(C),
                   b + 'attn.qkv.weight': r(3 * C, C), b + 'attn.q_bias': r(C),
                   b + 'attn.v_bias': r(C), b + 'attn.proj.weight': r(C, C),
                   b + 'attn.proj.bias': r(C), b + 'gamma_1': 0.1 + r(C, s=0.02),
                   b + 'gamma_2': 0.1 + r(C, s=0.02)})
        for e in ('text', 'imag') + (('vl',) if i >= VL_START else ()):
            sd.update({f'{b}norm2_{e}.weight': 1 + r(C), f'{b}norm2_{e}.bias': r(C),
                       f'{b}mlp_{e}.fc1.weight': r(4 * C, C), f'{b}mlp_{e}.fc1.bias': r(4 * C),
                       f'{b}mlp_{e}.fc2.weight': r(C, 4 * C), f'{b}mlp_{e}.fc2.bias': r(C)})
    n_all = (2 * W - 1) ** 2 + 3 + 2 * L0 + 2
    sd['relative_position_bias_table'] = r(n_all, H * DEPTH)
    sd.update({'text_embeddings.word_embeddings.weight': r(VOCAB, C),
               'text_embeddings.position_embeddings.weight': r(L, C),
               'text_embeddings.token_type_embeddings.weight': r(2, C),
               'text_embeddings.LayerNorm.weight': 1 + r(C),
               'text_embeddings.LayerNorm.bias': r(C),
               'text_embeddings.position_ids': torch.arange(L)[None],
               'token_type_embeddings.weight': r(2, C),
               'pooler.dense.weight': r(C, C), 'pooler.dense.bias': r(C),
               'itm_score.fc.weight': r(2, C), 'itm_score.fc.bias': r(2),
               'itc_image_proj.fc.weight': r(C, C), 'itc_text_proj.fc.weight': r(C, C),
               'itc_vl_image_proj.fc.weight': r(C, C), 'itc_vl_text_proj.fc.weight': r(C, C),
               'logit_scale': torch.tensor(math.log(1 / 0.07)),
               'logit_vl_scale': torch.tensor(math.log(1 / 0.07)),
               'mlm_score.transform.dense.weight': r(C, C),
               'mlm_score.transform.dense.bias': r(C),
               'mlm_score.transform.LayerNorm.weight': 1 + r(C),
               'mlm_score.transform.LayerNorm.bias': r(C),
               'mlm_score.decoder.weight': r(VOCAB, C), 'mlm_score.bias': r(VOCAB)})
    return sd


# -- the reference computation ----------------------------------------------------------------
def rel_indices():
    """vlmo_module.build_relative_position_embed: image, text and text-image indices."""
    nrd = (2 * W - 1) ** 2 + 3
    n_all = nrd + 2 * L0 + 2
    ch, cw = torch.meshgrid(torch.arange(W), torch.arange(W), indexing='ij')
    coords = torch.stack([ch.flatten(), cw.flatten()])
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += W - 1
    rel[:, :, 1] += W - 1
    rel[:, :, 0] *= 2 * W - 1
    img = torch.zeros(W * W + 1, W * W + 1, dtype=torch.long)
    img[1:, 1:] = rel.sum(-1)
    img[0, 0:] = nrd - 3
    img[0:, 0] = nrd - 2
    img[0, 0] = nrd - 1
    pos = torch.arange(L - 1)
    mat = pos.unsqueeze(-2) - pos.unsqueeze(-1) - (2 - L0) + nrd + 2
    txt = torch.zeros(L, L, dtype=torch.long)
    txt[1:, 1:] = mat
    txt[0, 0:] = n_all - 3
    txt[0:, 0] = n_all - 2
    txt[0, 0] = n_all - 1
    n_img = W * W + 1
    both = torch.cat([torch.cat([txt, torch.full((L, n_img), nrd)], 1),
                      torch.cat([torch.full((n_img, L), nrd + 1), img], 1)], 0)
    return img, txt, both


def ref_block(sd, i, x, mask, modality, bias):
    b = f'transformer.blocks.{i}.'
    ln = lambda t, n: F.layer_norm(t, (C,), sd[b + n + '.weight'], sd[b + n + '.bias'], 1e-6)  # noqa
    h = ln(x, 'norm1')
    qkv_bias = torch.cat([sd[b + 'attn.q_bias'], torch.zeros(C), sd[b + 'attn.v_bias']])
    B, N, _ = x.shape
    qkv = F.linear(h, sd[b + 'attn.qkv.weight'], qkv_bias).reshape(B, N, 3, H, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = (q * (C // H) ** -0.5) @ k.transpose(-2, -1) + bias[None]
    attn = attn.masked_fill(~mask.bool()[:, None, None, :], float('-inf')).softmax(-1)
    out = F.linear((attn @ v).transpose(1, 2).reshape(B, N, C), sd[b + 'attn.proj.weight'],
                   sd[b + 'attn.proj.bias'])
    x = x + sd[b + 'gamma_1'] * out

    def mlp(t, e):
        t = F.layer_norm(t, (C,), sd[f'{b}norm2_{e}.weight'], sd[f'{b}norm2_{e}.bias'], 1e-6)
        t = F.gelu(F.linear(t, sd[f'{b}mlp_{e}.fc1.weight'], sd[f'{b}mlp_{e}.fc1.bias']))
        return F.linear(t, sd[f'{b}mlp_{e}.fc2.weight'], sd[f'{b}mlp_{e}.fc2.bias'])

    if modality == 'image':
        return x + sd[b + 'gamma_2'] * mlp(x, 'imag')
    if modality == 'text':
        return x + sd[b + 'gamma_2'] * mlp(x, 'text')
    if f'{b}mlp_vl.fc1.weight' not in sd:
        xt = x[:, :L] + sd[b + 'gamma_2'] * mlp(x[:, :L], 'text')
        xi = x[:, L:] + sd[b + 'gamma_2'] * mlp(x[:, L:], 'imag')
        return torch.cat([xt, xi], 1)
    return x + sd[b + 'gamma_2'] * mlp(x, 'vl')


def reference(sd, images=None, ids=None, text_mask=None):
    """The official infer / infer_text / infer_image, eval mode: final-norm states."""
    tt = sd['token_type_embeddings.weight']
    parts, masks = [], []
    if ids is not None:
        e = sd['text_embeddings.word_embeddings.weight'][ids] + \
            sd['text_embeddings.token_type_embeddings.weight'][0]
        e = F.layer_norm(e, (C,), sd['text_embeddings.LayerNorm.weight'],
                         sd['text_embeddings.LayerNorm.bias'], 1e-12)
        parts.append(e + tt[0])
        masks.append(text_mask)
    if images is not None:
        x = F.conv2d(images, sd['transformer.patch_embed.proj.weight'],
                     sd['transformer.patch_embed.proj.bias'], stride=P).flatten(2).transpose(1, 2)
        x = torch.cat([sd['transformer.cls_token'].expand(x.shape[0], -1, -1), x], 1)
        parts.append(x + tt[1])
        masks.append(torch.ones(x.shape[:2], dtype=torch.long))
    x, mask = torch.cat(parts, 1), torch.cat(masks, 1)
    img_idx, txt_idx, both_idx = rel_indices()
    index = both_idx if len(parts) == 2 else txt_idx if ids is not None else img_idx
    table = F.embedding(index, sd['relative_position_bias_table']).permute(2, 0, 1)
    biases = torch.chunk(table, DEPTH, dim=0)
    modality = 'vl' if len(parts) == 2 else 'text' if ids is not None else 'image'
    for i in range(DEPTH):
        x = ref_block(sd, i, x, mask, modality, biases[i])
    return F.layer_norm(x, (C,), sd['transformer.norm.weight'], sd['transformer.norm.bias'],
                        1e-6)


def test_official_vlmo_converts_with_equal_outputs(tmp_path):
    sd = official_state_dict()
    path = tmp_path / 'vlmo.ckpt'
    torch.save({'state_dict': sd, 'epoch': 3}, path)
    out = conv.main([str(path), str(tmp_path / 'out'), '--img-size', str(IMG),
                     '--patch-size', str(P), '--num-heads', str(H), '--max-text-len', str(L)])
    assert 'itc_vl_image_proj.fc.weight' in out['skipped']
    from vlp.apis import init_model
    model = init_model(out['config'], out['checkpoint'], device='cpu').eval()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, IMG, IMG, generator=g)
    ids = torch.randint(1, VOCAB, (2, L), generator=g)
    mask = torch.ones(2, L, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        img = reference(sd, images=images)
        txt = reference(sd, ids=ids, text_mask=mask)
        fused = reference(sd, images=images, ids=ids, text_mask=mask)
        bb = model.backbone
        assert (bb(images=images)['image_embeds'] - img).abs().max() < 1e-5
        assert (bb(input_ids=ids, attention_mask=mask)['text_embeds'] - txt)[mask.bool()] \
            .abs().max() < 1e-5
        mine = model.fuse(ids, mask, images)
        keep = torch.cat([mask, torch.ones(2, W * W + 1, dtype=torch.long)], 1).bool()
        assert (mine - fused)[keep].abs().max() < 1e-5
        # heads: ITC features, ITM logits on the pooled fused [CLS], MLM logits
        ref_img_feat = F.normalize(img[:, 0] @ sd['itc_image_proj.fc.weight'].t(), dim=-1)
        assert (model._image(images)[1] - ref_img_feat).abs().max() < 1e-5
        ref_txt_feat = F.normalize(txt[:, 0] @ sd['itc_text_proj.fc.weight'].t(), dim=-1)
        assert (model._text(ids, mask)[1] - ref_txt_feat).abs().max() < 1e-5
        pooled = torch.tanh(F.linear(fused[:, 0], sd['pooler.dense.weight'],
                                     sd['pooler.dense.bias']))
        ref_itm = F.linear(pooled, sd['itm_score.fc.weight'], sd['itm_score.fc.bias'])
        assert (model.itm_logits(images, ids, mask) - ref_itm).abs().max() < 1e-5
        h = F.gelu(F.linear(fused[:, :L], sd['mlm_score.transform.dense.weight'],
                            sd['mlm_score.transform.dense.bias']))
        h = F.layer_norm(h, (C,), sd['mlm_score.transform.LayerNorm.weight'],
                         sd['mlm_score.transform.LayerNorm.bias'], 1e-12)
        ref_mlm = h @ sd['mlm_score.decoder.weight'].t() + sd['mlm_score.bias']
        assert (model.mlm_head(mine[:, :L]) - ref_mlm)[mask.bool()].abs().max() < 1e-4
        assert torch.allclose(model.itc.logit_scale, sd['logit_scale'])


def test_unknown_keys_are_refused():
    sd = official_state_dict()
    sd['transformer.blocks.0.attn.rope.weight'] = torch.zeros(1)
    with pytest.raises(KeyError, match='rope'):
        conv.convert_state_dict(sd)


def _tiny_vocab(path):
    return tiny_vocab(path, VOCAB)


def test_public_api_matches_reference(tmp_path):
    """Issue 19: the converted directory through ``vlp.apis`` only. uint8 images of another
    size (resized by the converted config's test pipeline) and raw strings give the
    reference computation's ITC features and similarities and its ITM probabilities, on the
    same preprocessed pixels and the same token ids."""
    from vlp import apis
    sd = official_state_dict()
    torch.save({'state_dict': sd, 'epoch': 3}, tmp_path / 'vlmo.ckpt')
    vocab = _tiny_vocab(tmp_path / 'vocab.txt')
    out = str(tmp_path / 'out')
    conv.main([str(tmp_path / 'vlmo.ckpt'), out, '--img-size', str(IMG), '--patch-size',
               str(P), '--num-heads', str(H), '--max-text-len', str(L), '--vocab-file',
               str(tmp_path / 'vocab.txt')])
    model = apis.init_model(out)
    assert {'encode_image', 'encode_text', 'match'} <= set(apis.supported_tasks(model))
    images, texts, pixels, ids, mask = api_inputs(model, IMG, (28, 20), 3)
    assert ids.shape == (3, L) and ids[0, :7].tolist() == [vocab[w] for w in (
        '[CLS]', 'a', 'cat', 'on', 'the', 'dog', '[SEP]')]
    with torch.no_grad():
        img = reference(sd, images=pixels)
        txt = reference(sd, ids=ids, text_mask=mask)
        img_want = F.normalize(img[:, 0] @ sd['itc_image_proj.fc.weight'].t(), dim=-1)
        txt_want = F.normalize(txt[:, 0] @ sd['itc_text_proj.fc.weight'].t(), dim=-1)
        itm_want = torch.empty(2, 3)
        for i in range(2):
            fused = reference(sd, images=pixels[i:i + 1].expand(3, -1, -1, -1), ids=ids,
                              text_mask=mask)
            pooled = torch.tanh(F.linear(fused[:, 0], sd['pooler.dense.weight'],
                                         sd['pooler.dense.bias']))
            logits = F.linear(pooled, sd['itm_score.fc.weight'], sd['itm_score.fc.bias'])
            itm_want[i] = logits.softmax(-1)[:, 1]
    assert (apis.encode_image(model, images) - img_want).abs().max() < 1e-5
    assert (apis.encode_text(model, texts) - txt_want).abs().max() < 1e-5
    res = apis.match(model, images, texts)
    assert (res['itc'] - img_want @ txt_want.t()).abs().max() < 1e-5
    assert (res['itm'] - itm_want).abs().max() < 1e-5
    # the pairs differ: a wrong pairing or a constant head would not pass
    assert itm_want.max() - itm_want.min() > 1e-4
