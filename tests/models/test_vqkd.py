"""VQKDTokenizer (BEiT v2's VQ-KD) against a reference written from BEiT v2's code structure
(unilm beit2/modeling_vqkd.py and modeling_finetune.py): a file in the released layout
({'model': ...}: BEiT's ViT with q/v biases, fc_norm, the task layer, the codebook, plus the
decoder, the EMA statistics and teacher keys) loads, and the codes match the reference's."""
import torch
import torch.nn.functional as F

from vlp.models.backbones.visual_tokenizers import VQKDTokenizer
from vlp.registry import MODELS

D, HEADS, DEPTH, P, IMG, K, CODE = 32, 2, 2, 8, 32, 64, 8


def _released_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    n = (IMG // P) ** 2
    sd = {'encoder.cls_token': r(1, 1, D), 'encoder.pos_embed': r(1, n + 1, D),
          'encoder.patch_embed.proj.weight': r(D, 3, P, P), 'encoder.patch_embed.proj.bias': r(D),
          'encoder.fc_norm.weight': 1 + r(D), 'encoder.fc_norm.bias': r(D),
          'encode_task_layer.0.weight': r(D, D), 'encode_task_layer.0.bias': r(D),
          'encode_task_layer.2.weight': r(CODE, D), 'encode_task_layer.2.bias': r(CODE),
          'quantize.embedding.weight': F.normalize(r(K, CODE), dim=-1),
          'quantize.embedding.cluster_size': r(K), 'quantize.embedding.embed_avg': r(K, CODE),
          'quantize.embedding.initted': torch.tensor([1.0]),
          'decoder.cls_token': r(1, 1, D), 'decode_task_layer.0.weight': r(D, D),
          'teacher_model.visual.proj': r(D, D), 'scaling_layer.shift': r(1, 3, 1, 1)}
    for i in range(DEPTH):
        b = f'encoder.blocks.{i}.'
        sd.update({b + 'norm1.weight': 1 + r(D), b + 'norm1.bias': r(D),
                   b + 'attn.qkv.weight': r(3 * D, D), b + 'attn.q_bias': r(D),
                   b + 'attn.v_bias': r(D), b + 'attn.proj.weight': r(D, D),
                   b + 'attn.proj.bias': r(D), b + 'norm2.weight': 1 + r(D),
                   b + 'norm2.bias': r(D), b + 'mlp.fc1.weight': r(4 * D, D),
                   b + 'mlp.fc1.bias': r(4 * D), b + 'mlp.fc2.weight': r(D, 4 * D),
                   b + 'mlp.fc2.bias': r(D)})
    return sd


def _reference_codes(sd, pixels):
    """BEiT v2's tokenizer: [0, 255] pixels -> [-1, 1] -> ViT (q/v biases, pre-LN, no layer
    scale) -> fc_norm on the patch tokens -> task layer -> l2norm -> nearest code."""
    x = pixels / 127.5 - 1.0
    x = F.conv2d(x, sd['encoder.patch_embed.proj.weight'], sd['encoder.patch_embed.proj.bias'],
                 stride=P).flatten(2).transpose(1, 2)
    x = torch.cat([sd['encoder.cls_token'].expand(x.shape[0], -1, -1), x], 1)
    x = x + sd['encoder.pos_embed']
    ln = lambda t, k: F.layer_norm(t, (D,), sd[k + '.weight'], sd[k + '.bias'], 1e-6)  # noqa: E731
    for i in range(DEPTH):
        b = f'encoder.blocks.{i}.'
        h = ln(x, b + 'norm1')
        bias = torch.cat([sd[b + 'attn.q_bias'], torch.zeros(D), sd[b + 'attn.v_bias']])
        q, k, v = F.linear(h, sd[b + 'attn.qkv.weight'], bias).chunk(3, -1)
        heads = lambda t: t.reshape(t.shape[0], t.shape[1], HEADS, -1).transpose(1, 2)  # noqa
        a = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / (D // HEADS) ** 0.5, -1)
        o = (a @ heads(v)).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(o, sd[b + 'attn.proj.weight'], sd[b + 'attn.proj.bias'])
        h = ln(x, b + 'norm2')
        h = F.linear(F.gelu(F.linear(h, sd[b + 'mlp.fc1.weight'], sd[b + 'mlp.fc1.bias'])),
                     sd[b + 'mlp.fc2.weight'], sd[b + 'mlp.fc2.bias'])
        x = x + h
    t = ln(x[:, 1:], 'encoder.fc_norm')
    t = F.linear(torch.tanh(F.linear(t, sd['encode_task_layer.0.weight'],
                                     sd['encode_task_layer.0.bias'])),
                 sd['encode_task_layer.2.weight'], sd['encode_task_layer.2.bias'])
    z = F.normalize(t, dim=-1)
    e = sd['quantize.embedding.weight']
    d = z.pow(2).sum(-1, keepdim=True) + e.pow(2).sum(-1) - 2 * z @ e.t()
    return d.argmin(-1)


def test_released_layout_loads_and_codes_match(tmp_path):
    sd = _released_state()
    path = tmp_path / 'vqkd.pth'
    torch.save({'model': sd}, path)
    mean, std = (122.8, 116.7, 104.1), (68.5, 66.6, 70.3)
    tok = MODELS.build(dict(type='VQKDTokenizer', checkpoint=str(path), image_size=IMG,
                            patch_size=P, embed_dim=D, depth=DEPTH, num_heads=HEADS,
                            num_classes=K, code_dim=CODE, mean=mean, std=std))
    pixels = torch.randint(0, 256, (3, 3, IMG, IMG)).float()
    normed = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    codes = tok(normed)
    assert codes.shape == (3, (IMG // P) ** 2) and codes.dtype == torch.long
    ref = _reference_codes(sd, pixels)
    assert torch.equal(codes, ref)
    assert len(set(ref.flatten().tolist())) > 3  # the fixture does use several codes
    assert not any(p.requires_grad for p in tok.parameters()) and not tok.training
    # a state dict saved from vlp loads back the same
    torch.save(tok.state_dict(), tmp_path / 'vlp.pth')
    again = VQKDTokenizer(checkpoint=str(tmp_path / 'vlp.pth'), image_size=IMG, patch_size=P,
                          embed_dim=D, depth=DEPTH, num_heads=HEADS, num_classes=K,
                          code_dim=CODE, mean=mean, std=std)
    assert torch.equal(again(normed), codes)
