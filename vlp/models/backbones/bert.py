"""BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding"): word + position + token-type embeddings, LayerNorm and dropout,
then post-LN transformer blocks with bidirectional self-attention over real tokens.

The one BERT-style stack of vlp. Optional cross-attention layers (self-attn -> cross-attn
-> FFN, each post-LN) turn it into the multimodal encoder of ALBEF (Li et al. 2021) and
BLIP (Li et al. 2022) or the layers of the BLIP-2 Q-Former (cross-attention every 2nd
layer); ``is_causal=True`` gives BLIP's text decoder. ``load_hf_state_dict`` maps a
HF ``BertModel`` checkpoint (e.g. bert-base-uncased, for ALIGN / ALBEF) onto it.
"""
import os
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from vlp.registry import MODELS
from ..layers.attention import DecodingCache
from ..layers.transformer import (TransformerBlock, build_attn_mask, maybe_checkpoint,
                                  sdpa_mask)


def _cross_layer_set(spec: Union[None, str, Iterable[int]], num_layers: int) -> set:
    if spec is None:
        return set()
    if isinstance(spec, str):
        if spec == 'all':
            return set(range(num_layers))
        if spec.startswith('every_'):
            k = int(spec[len('every_'):])
            return set(range(0, num_layers, k))
        raise ValueError(f"cross_attention_layers: expected 'all', 'every_<k>' or indices, "
                         f'got {spec!r}')
    layers = set(int(i) for i in spec)
    if not all(0 <= i < num_layers for i in layers):
        raise ValueError(f'cross_attention_layers {sorted(layers)} out of range({num_layers})')
    return layers


@MODELS.register_module()
class BertEncoder(nn.Module):
    """BERT encoder with optional cross-attention layers.

    Args:
        vocab_size, hidden_size, num_layers, num_heads, intermediate_size,
        max_position_embeddings, type_vocab_size: BERT sizes (bert-base defaults);
            ``type_vocab_size=0`` drops token-type embeddings.
        hidden_dropout / attention_dropout: BERT's ``hidden_dropout_prob`` /
            ``attention_probs_dropout_prob``.
        pad_token_id: padding id (its embedding row starts at zero and gets no gradient).
        ln_eps: LayerNorm epsilon.
        act_layer: FFN activation.
        cross_attention_layers: ``None`` (no cross-attention), ``'all'``, ``'every_<k>'``
            (layers ``0, k, 2k, ...``: BLIP-2's ``cross_attention_freq``) or layer indices.
        cross_attention_dim: width of the image tokens (default ``hidden_size``).
        with_embeddings: False builds no embedding layers: the encoder then takes
            ``hidden_states`` (ALBEF's fusion encoder consumes the text encoder's output).
        add_pooler: pool with BERT's ``tanh(dense(h_cls))``; else ``h_cls``.
        initializer_range: std of the normal init.
        pretrained / pretrained_layer_offset: optional HF BERT checkpoint to load at
            construction (see :meth:`load_hf_state_dict`).

    Parameters: ``word_embeddings``, ``position_embeddings``, ``token_type_embeddings``,
    ``emb_norm``, ``blocks.i.{attn.qkv, attn.proj, norm1, cross_attn.q, cross_attn.kv,
    cross_attn.proj, norm_cross, mlp.fc1, mlp.fc2, norm2}``, ``pooler``.

    ``forward`` returns ``dict(text_embeds [B, L, C], text_mask [B, L], text_pooled [B, C])``.

    Several images (ALBEF's NLVR2 model, Li et al. 2021 Sec. 5.3 / Fig. 3b): ``forward``
    also takes ``image_embeds`` as a list of tensors, the ``j``-th cross-attention layer
    (counting only the cross layers, in order) attending to element ``j % len(list)``;
    :meth:`share_cross_attention_kv` ties the key/value projection of given layer pairs.
    """

    def __init__(self, vocab_size: int = 30522, hidden_size: int = 768, num_layers: int = 12,
                 num_heads: int = 12, intermediate_size: int = 3072,
                 max_position_embeddings: int = 512, type_vocab_size: int = 2,
                 hidden_dropout: float = 0.1, attention_dropout: float = 0.1,
                 pad_token_id: int = 0, ln_eps: float = 1e-12, act_layer: str = 'gelu',
                 cross_attention_layers: Union[None, str, Iterable[int]] = None,
                 cross_attention_dim: Optional[int] = None, with_embeddings: bool = True,
                 add_pooler: bool = False, initializer_range: float = 0.02,
                 pretrained: Optional[str] = None, pretrained_layer_offset: int = 0):
        super().__init__()
        self.hidden_size = self.out_dim = hidden_size
        self.num_layers = num_layers
        self.initializer_range = initializer_range
        self.with_embeddings = with_embeddings
        self.grad_checkpointing = False
        self.shared_cross_kv: List[tuple] = []  # see share_cross_attention_kv
        self.cross_layers = _cross_layer_set(cross_attention_layers, num_layers)
        ctx_dim = cross_attention_dim or hidden_size
        if with_embeddings:
            self.word_embeddings = nn.Embedding(vocab_size, hidden_size,
                                                padding_idx=pad_token_id)
            self.position_embeddings = nn.Embedding(max_position_embeddings, hidden_size)
            self.token_type_embeddings = (nn.Embedding(type_vocab_size, hidden_size)
                                          if type_vocab_size > 0 else None)
            self.emb_norm = nn.LayerNorm(hidden_size, eps=ln_eps)
            self.emb_drop = nn.Dropout(hidden_dropout)
        self.blocks = nn.ModuleList([
            TransformerBlock(hidden_size, num_heads, mlp_dim=intermediate_size,
                             act_layer=act_layer, norm_first=False, ln_eps=ln_eps,
                             drop=hidden_dropout, attn_drop=attention_dropout,
                             cross_attention_dim=ctx_dim if i in self.cross_layers else None)
            for i in range(num_layers)])
        self.pooler = nn.Linear(hidden_size, hidden_size) if add_pooler else None
        self.apply(self._init_module)
        if pretrained is not None:
            self.load_hf_state_dict(pretrained, layer_offset=pretrained_layer_offset)

    def _init_module(self, m: nn.Module) -> None:
        """BERT's init (HF ``BertPreTrainedModel._init_weights``). Not named
        ``init_weights`` so mmengine's runner never re-runs it over loaded weights."""
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=self.initializer_range)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=self.initializer_range)
            if m.padding_idx is not None:
                nn.init.zeros_(m.weight[m.padding_idx])
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def embed(self, input_ids: Optional[torch.Tensor] = None,
              token_type_ids: Optional[torch.Tensor] = None,
              prefix_embeds: Optional[torch.Tensor] = None,
              position_offset: int = 0) -> torch.Tensor:
        """``LayerNorm(word + position + type) -> dropout`` of ``input_ids [B, L]``
        (positions from ``position_offset``: incremental decoding);
        ``prefix_embeds [B, Q, C]`` (the BLIP-2 Q-Former's queries) are prepended before the
        LayerNorm, without position embeddings. Returns ``[B, Q + L, C]``."""
        if not self.with_embeddings:
            raise RuntimeError('this BertEncoder has no embeddings: pass hidden_states')
        parts = [] if prefix_embeds is None else [prefix_embeds]
        if input_ids is not None:
            L = input_ids.shape[1]
            pos = torch.arange(position_offset, position_offset + L, device=input_ids.device)
            x = self.word_embeddings(input_ids) + self.position_embeddings(pos)  # (B, L, C)
            if self.token_type_embeddings is not None:
                if token_type_ids is None:
                    token_type_ids = torch.zeros_like(input_ids)
                x = x + self.token_type_embeddings(token_type_ids)
            parts.append(x)
        if not parts:
            raise ValueError('embed needs input_ids or prefix_embeds')
        return self.emb_drop(self.emb_norm(torch.cat(parts, dim=1)))

    def forward(self, input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None,
                hidden_states: Optional[torch.Tensor] = None,
                image_embeds: Union[None, torch.Tensor, Sequence[torch.Tensor]] = None,
                image_mask: Union[None, torch.Tensor,
                                  Sequence[Optional[torch.Tensor]]] = None,
                is_causal: bool = False,
                self_attn_mask: Optional[torch.Tensor] = None,
                cache: Optional[DecodingCache] = None,
                image_index: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """
        Args:
            input_ids: ``[B, L]`` token ids (embedded by :meth:`embed`).
            attention_mask: ``[B, L]`` padding mask (1 = real token); ``None``: all real.
            token_type_ids: ``[B, L]`` segment ids (default zeros).
            hidden_states: ``[B, L, C]`` inputs that skip the embeddings (fusion encoder).
            image_embeds: ``[B, S, C_ctx]`` context of the cross-attention layers; ``None``
                skips those sub-layers (BLIP's unimodal text mode). A list / tuple of
                ``[B, S_i, C_ctx]`` tensors: the ``j``-th cross-attention layer (counting
                only the layers in ``cross_layers``, in order) attends to element
                ``j % len(image_embeds)`` (ALBEF's NLVR2 fusion: ``[image0, image1]``
                alternate layer by layer). A one-element list equals the tensor.
            image_mask: ``[B, S]`` padding mask of ``image_embeds``; with a list of
                contexts, a list of the same length (``None`` entries: no padding), or one
                mask / ``None`` used for every context.
            is_causal: causal self-attention (BLIP's text decoder).
            self_attn_mask: explicit self-attention mask (bool or additive, broadcastable
                to ``[B, nh, L, L]``) replacing the one built from ``attention_mask``.
            cache: incremental decoding (a ``DecodingCache``, causal only, no padding):
                ``input_ids`` are the new tokens, at positions ``cache.length ...``; the
                cache holds the self-attention keys/values of the earlier ones and, after
                the first step, the cross-attention keys/values of ``image_embeds`` (one
                row per context item; ``cache.route`` says which item each row reads).
            image_index: ``[B]`` shared contexts: ``image_embeds`` (and ``image_mask``)
                hold ``M`` distinct images, row ``b`` reads ``image_embeds[image_index[b]]``;
                their cross-attention keys/values are computed once per image (ITM
                re-ranking scores one image against many texts).

        Returns:
            ``text_embeds [B, L, C]`` (final hidden states), ``text_mask [B, L]``,
            ``text_pooled [B, C]`` (first token, through the pooler if any).
        """
        if cache is not None and (not is_causal or attention_mask is not None
                                  or self_attn_mask is not None):
            raise ValueError('incremental decoding (cache) is causal, without padding masks')
        offset = 0 if cache is None else cache.length
        x = (self.embed(input_ids, token_type_ids, position_offset=offset)
             if hidden_states is None else hidden_states)
        B, L, _ = x.shape
        if cache is not None:
            self_attn_mask, is_causal = None, True
        elif self_attn_mask is None:
            self_attn_mask = build_attn_mask(attention_mask, causal=is_causal)
            is_causal = is_causal and self_attn_mask is None
        self_attn_mask = sdpa_mask(self_attn_mask, x)  # converted once, not in every layer
        contexts, ctx_masks = self._contexts(image_embeds, image_mask)
        if ctx_masks is not None:
            ctx_masks = [sdpa_mask(m, x) for m in ctx_masks]
        j = 0  # cross-attention layers met so far
        for i, blk in enumerate(self.blocks):
            ctx = ctx_mask = None
            if contexts is not None and i in self.cross_layers:
                ctx, ctx_mask = contexts[j % len(contexts)], ctx_masks[j % len(contexts)]
                j += 1
            x = maybe_checkpoint(blk, x, attn_mask=self_attn_mask, is_causal=is_causal,
                                 context=ctx, context_mask=ctx_mask, cache=cache,
                                 context_index=image_index, enabled=self.grad_checkpointing)
        pooled = x[:, 0]  # (B, C) the [CLS] token
        if self.pooler is not None:
            pooled = torch.tanh(self.pooler(pooled))
        if attention_mask is None:
            attention_mask = torch.ones(B, L, dtype=torch.long, device=x.device)
        return dict(text_embeds=x, text_mask=attention_mask, text_pooled=pooled)

    @staticmethod
    def _contexts(image_embeds, image_mask):
        """``(contexts, cross-attention masks)`` as lists (``(None, None)``: no context)."""
        if image_embeds is None:
            return None, None
        if isinstance(image_embeds, torch.Tensor):
            image_embeds, image_mask = [image_embeds], [image_mask]
        image_embeds = list(image_embeds)
        if not image_embeds:
            raise ValueError('image_embeds: an empty list')
        if image_mask is None or isinstance(image_mask, torch.Tensor):
            image_mask = [image_mask] * len(image_embeds)
        image_mask = list(image_mask)
        if len(image_mask) != len(image_embeds):
            raise ValueError(f'{len(image_embeds)} contexts (image_embeds) but '
                             f'{len(image_mask)} masks (image_mask)')
        return image_embeds, [None if m is None else build_attn_mask(m)  # (B, 1, 1, S)
                              for m in image_mask]

    def share_cross_attention_kv(self, pairs: Iterable[Sequence[int]]) -> None:
        """Tie the key/value projection of the cross-attention of each ``(a, b)`` pair of
        layers: layer ``b`` then uses layer ``a``'s ``cross_attn.kv`` module (the fused
        key + value linear, weight and bias), the same ``Parameter`` objects; queries,
        output projection, norms, self-attention and FFN stay separate. ALBEF's NLVR2
        model (``share_cross_attention``) ties the two layers made from one pre-trained
        fusion layer. Layer ``b``'s own key/value weights are discarded; the state dict
        still lists the key under both layers (equal tensors). Tied pairs are recorded in
        ``shared_cross_kv``."""
        pairs = [(int(a), int(b)) for a, b in pairs]
        for a, b in pairs:
            if a == b or a not in self.cross_layers or b not in self.cross_layers:
                raise ValueError(f'share_cross_attention_kv: ({a}, {b}) must be two distinct '
                                 f'cross-attention layers ({sorted(self.cross_layers)})')
            kv_a, kv_b = self.blocks[a].cross_attn.kv, self.blocks[b].cross_attn.kv
            if kv_a.weight.shape != kv_b.weight.shape:
                raise ValueError(f'share_cross_attention_kv: layers {a} and {b} have different '
                                 'key/value shapes')
            self.blocks[b].cross_attn.kv = kv_a
        self.shared_cross_kv = self.shared_cross_kv + pairs

    #: sub-modules :meth:`share_all_but_self_attention` takes from the other encoder
    SHARED_EMBEDDINGS = ('word_embeddings', 'position_embeddings', 'token_type_embeddings',
                         'emb_norm', 'emb_drop')
    SHARED_BLOCK_PARTS = ('cross_attn', 'norm_cross', 'norm_context', 'mlp', 'mlp_drop',
                          'norm2')

    def share_all_but_self_attention(self, encoder: 'BertEncoder') -> None:
        """Use ``encoder``'s embeddings and, layer by layer, its cross-attention and
        feed-forward sub-modules (the same tensors): only the self-attention (and its norm)
        stays this stack's own. BLIP's decoder shares everything else with its text encoder
        (Li et al. 2022, Sec. 3.2)."""
        if len(encoder.blocks) != len(self.blocks):
            raise ValueError('share_decoder needs as many decoder as encoder layers')
        for name in self.SHARED_EMBEDDINGS:
            if hasattr(encoder, name):
                setattr(self, name, getattr(encoder, name))
        for be, bd in zip(encoder.blocks, self.blocks):
            for name in self.SHARED_BLOCK_PARTS:
                if hasattr(be, name):
                    setattr(bd, name, getattr(be, name))

    # -- HF checkpoints ---------------------------------------------------------------
    def load_hf_state_dict(self, src: Union[str, Dict[str, torch.Tensor]],
                           layer_offset: int = 0, strict: bool = True) -> List[str]:
        """Load a HF ``BertModel`` (or ``Bert*`` with a ``bert.`` prefix) state dict, a
        ``.safetensors``/``.bin`` file or a directory holding one. HF layer
        ``layer_offset + i`` goes to block ``i`` (ALBEF's fusion encoder takes
        bert-base layers 6-11). Cross-attention weights absent from the checkpoint keep
        their init; embeddings / pooler weights are skipped when this encoder has none.
        Returns the keys left at init; with ``strict`` raises if any other parameter is
        missing or a checkpoint block weight has no place here."""
        sd = convert_hf_bert_state_dict(_read_state_dict(src), layer_offset, self.num_layers)
        own = self.state_dict()
        # embeddings / pooler this encoder does not build are skipped on purpose
        unexpected = [k for k in sd if k not in own and k.startswith('blocks.')]
        sd = {k: v for k, v in sd.items() if k in own}
        missing = [k for k in own if k not in sd]
        bad = [k for k in missing if '.cross_attn.' not in k and '.norm_cross.' not in k]
        if strict and (bad or unexpected):
            raise KeyError(f'HF BERT checkpoint mismatch: missing {bad}, unexpected '
                           f'{unexpected}')
        self.load_state_dict(sd, strict=False)
        return missing


def _read_state_dict(src: Union[str, Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    if isinstance(src, dict):
        return src
    if os.path.isdir(src):
        for name in ('model.safetensors', 'pytorch_model.bin'):
            if os.path.isfile(os.path.join(src, name)):
                src = os.path.join(src, name)
                break
        else:
            raise FileNotFoundError(f'no model.safetensors or pytorch_model.bin in {src}')
    if not os.path.isfile(src):
        raise FileNotFoundError(f'HF BERT checkpoint {src} not found')
    # .safetensors, or a torch.save file read weights-only (UnsafeCheckpointError otherwise)
    from vlp.engine.checkpoint import read_state_dict
    return dict(read_state_dict(src))


_HF_LAYER = {  # HF sub-key -> (vlp sub-key, fused slot)
    'attention.self.query': ('attn.qkv', 0), 'attention.self.key': ('attn.qkv', 1),
    'attention.self.value': ('attn.qkv', 2), 'attention.output.dense': ('attn.proj', None),
    'attention.output.LayerNorm': ('norm1', None),
    'crossattention.self.query': ('cross_attn.q', None),
    'crossattention.self.key': ('cross_attn.kv', 0),
    'crossattention.self.value': ('cross_attn.kv', 1),
    'crossattention.output.dense': ('cross_attn.proj', None),
    'crossattention.output.LayerNorm': ('norm_cross', None),
    'intermediate.dense': ('mlp.fc1', None), 'output.dense': ('mlp.fc2', None),
    'output.LayerNorm': ('norm2', None),
}
_HF_TOP = {'embeddings.word_embeddings': 'word_embeddings',
           'embeddings.position_embeddings': 'position_embeddings',
           'embeddings.token_type_embeddings': 'token_type_embeddings',
           'embeddings.LayerNorm': 'emb_norm', 'pooler.dense': 'pooler'}


def convert_hf_bert_state_dict(sd: Dict[str, torch.Tensor], layer_offset: int = 0,
                               num_layers: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Rename a HF BERT state dict to :class:`BertEncoder` keys (fusing q/k/v). Keys it
    does not know (MLM heads, ``position_ids``) are dropped."""
    out, fused = {}, {}
    for key, val in sd.items():
        key = key[len('bert.'):] if key.startswith('bert.') else key
        module, _, param = key.rpartition('.')
        param = {'gamma': 'weight', 'beta': 'bias'}.get(param, param)
        if module in _HF_TOP:
            out[f'{_HF_TOP[module]}.{param}'] = val
            continue
        if not module.startswith('encoder.layer.'):
            continue
        idx, _, sub = module[len('encoder.layer.'):].partition('.')
        i = int(idx) - layer_offset
        if sub not in _HF_LAYER or i < 0 or (num_layers is not None and i >= num_layers):
            continue
        name, slot = _HF_LAYER[sub]
        if slot is None:
            out[f'blocks.{i}.{name}.{param}'] = val
        else:
            fused.setdefault(f'blocks.{i}.{name}.{param}', {})[slot] = val
    for key, parts in fused.items():
        out[key] = torch.cat([parts[s] for s in sorted(parts)], dim=0)
    return out
