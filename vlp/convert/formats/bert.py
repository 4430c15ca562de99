"""THE HF BERT key table: HF ``BertModel`` layers / embeddings -> vlp ``BertEncoder``.

Shared by every BERT-style converter (BLIP's text encoder and decoder, ALBEF's text and
fusion encoders, the BLIP-2 Q-Former). Per layer (HF -> vlp)::

    attention.<a>.{query,key,value}          -> attn.qkv        (rows q, k, v)
    attention.output.dense / LayerNorm       -> attn.proj / norm1
    crossattention.<a>.query                 -> cross_attn.q
    crossattention.<a>.{key,value}           -> cross_attn.kv   (rows k, v)
    crossattention.output.dense / LayerNorm  -> cross_attn.proj / norm_cross
    intermediate.dense / output.dense        -> mlp.fc1 / mlp.fc2
    output.LayerNorm                         -> norm2

``<a>`` is ``self`` (``BertSelfAttention``: BERT, BLIP, ALBEF) or ``attention`` (the
BLIP-2 Q-Former). Embeddings: ``embeddings.{word,position,token_type}_embeddings`` ->
``{...}_embeddings``, ``embeddings.LayerNorm`` -> ``emb_norm``, ``pooler.dense`` ->
``pooler`` (on request); ``embeddings.position_ids`` (a constant buffer older files hold)
is dropped.
"""
from typing import List, Mapping, Optional

from ..rules import Drop, Fuse, Rename, Rule, nest


def bert_layer(attention: str = 'self') -> List[Rule]:
    """Rules of one BERT layer (relative names)."""
    a = attention
    return [
        Fuse(f'attention.{a}.{{s}}.{{p}}', 'attn.qkv.{p}', s=('query', 'key', 'value')),
        Rename('attention.output.dense.{p}', 'attn.proj.{p}'),
        Rename('attention.output.LayerNorm.{p}', 'norm1.{p}'),
        Rename(f'crossattention.{a}.query.{{p}}', 'cross_attn.q.{p}'),
        Fuse(f'crossattention.{a}.{{s}}.{{p}}', 'cross_attn.kv.{p}', s=('key', 'value')),
        Rename('crossattention.output.dense.{p}', 'cross_attn.proj.{p}'),
        Rename('crossattention.output.LayerNorm.{p}', 'norm_cross.{p}'),
        Rename('intermediate.dense.{p}', 'mlp.fc1.{p}'),
        Rename('output.dense.{p}', 'mlp.fc2.{p}'),
        Rename('output.LayerNorm.{p}', 'norm2.{p}'),
    ]


BERT_EMBEDDINGS: List[Rule] = [
    Rename('embeddings.{e:word|position|token_type}_embeddings.weight', '{e}_embeddings.weight'),
    Rename('embeddings.LayerNorm.{p}', 'emb_norm.{p}'),
    Drop('embeddings.position_ids', 'constant buffer'),
]
BERT_POOLER: List[Rule] = [Rename('pooler.dense.{p}', 'pooler.{p}')]


def bert(src: str, dst: str, layers: Optional[Mapping[int, int]] = None,
         embeddings: bool = True, pooler: bool = False, attention: str = 'self') -> List[Rule]:
    """A HF BERT under ``src`` -> a vlp ``BertEncoder`` under ``dst``. ``layers``: HF
    layer index -> vlp block index (all layers, same index, by default); ``pooler``: map
    ``pooler.dense`` (BLIP and ALBEF have none: the key is then unexpected)."""
    maps = None if layers is None else {'i': layers}
    rules = nest(bert_layer(attention), src + 'encoder.layer.{i}.', dst + 'blocks.{i}.', maps)
    return (nest(BERT_EMBEDDINGS, src, dst) if embeddings else []) + \
        (nest(BERT_POOLER, src, dst) if pooler else []) + rules
