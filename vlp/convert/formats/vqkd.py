"""BEiT v2's VQ-KD visual tokenizer (unilm ``beit2/modeling_vqkd.py``) -> vlp's
:class:`~vlp.models.backbones.visual_tokenizers.VQKDTokenizer`, import only.

The released file (``vqkd_encoder_base_decoder_3x768x12_clip-*.pth``, ``{'model': ...}``)
holds the encoder (BEiT's ViT: q/v biases, no k bias, mean-pooling ``fc_norm``), the
``encode_task_layer``, the codebook (``quantize.embedding.weight`` [8192, 32], kept
l2-normalised by its EMA updates) and, unused for tokenising, the decoder, its task layer,
the EMA statistics and the CLIP teacher. vlp's encoder is timm's ``VisionTransformer``: the
q/k/v biases become timm's fused ``qkv.bias`` with zeros for k.
"""
import torch

from ..rules import Drop, Merge, Rename

VQKD = [
    Rename('encoder.{x:cls_token|pos_embed}', 'encoder.{x}'),
    Rename('encoder.patch_embed.proj.{p}', 'encoder.patch_embed.proj.{p}'),
    Rename('encoder.blocks.{i}.{n:norm1|norm2}.{p}', 'encoder.blocks.{i}.{n}.{p}'),
    Rename('encoder.blocks.{i}.attn.qkv.weight', 'encoder.blocks.{i}.attn.qkv.weight'),
    Merge(['encoder.blocks.{i}.attn.q_bias', 'encoder.blocks.{i}.attn.v_bias'],
          'encoder.blocks.{i}.attn.qkv.bias',
          lambda q, v: torch.cat([q, torch.zeros_like(q), v]),
          describe='q/v biases -> qkv bias (BEiT has no k bias)'),
    Rename('encoder.blocks.{i}.attn.proj.{p}', 'encoder.blocks.{i}.attn.proj.{p}'),
    Rename('encoder.blocks.{i}.mlp.{f:fc1|fc2}.{p}', 'encoder.blocks.{i}.mlp.{f}.{p}'),
    Rename('encoder.fc_norm.{p}', 'encoder.fc_norm.{p}'),
    Rename('encode_task_layer.{l:0|2}.{p}', 'encode_task_layer.{l}.{p}'),
    Rename('quantize.embedding.weight', 'codebook'),
    Drop('{x:decoder|decode_task_layer|teacher_model|scaling_layer|loss}.{rest:.*}',
         'the decoder, the CLIP teacher and the training losses: not used to tokenise'),
    Drop('quantize.embedding.{x:cluster_size|embed_avg|initted}',
         "the codebook's EMA statistics (training only)"),
    Drop('encoder.head.{p}', 'an unused classifier'),
]
