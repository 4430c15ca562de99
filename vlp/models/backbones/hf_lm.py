"""A Hugging Face ``transformers`` language model as a vlp part (the frozen LLM of
BLIP-2 stage 2, MiniGPT-4 and LLaVA).

:class:`HFLanguageModel` wraps a decoder-only causal LM (``AutoModelForCausalLM``: OPT,
Llama/Vicuna, ...) or an encoder-decoder LM (``AutoModelForSeq2SeqLM``: T5/FlanT5), built
from local pretrained files (``pretrained='data/opt-2.7b'``) or, when ``pretrained`` is
``None``, from an architecture description (``config=dict(model_type='opt', ...)``:
``AutoConfig.for_model`` + ``from_config``, random weights; no download). Paper configs give
both, so they build without weights (tests, the meta device) and load them when present.

:class:`LMTokenizer` (``TOKENIZERS``) gives the LM's own tokenizer vlp's tokenizer contract.
"""
import pickle
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from vlp.registry import MODELS, TOKENIZERS

DTYPES = {None: None, 'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16,
          'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}


def to_dtype(name) -> Optional[torch.dtype]:
    """``'fp16'`` / ``'bf16'`` / ``'fp32'`` / ``None`` (or a ``torch.dtype``) -> dtype."""
    if isinstance(name, torch.dtype) or name is None:
        return name
    if name not in DTYPES:
        raise ValueError(f'unknown dtype {name!r}: expected one of '
                         f'{sorted(k for k in DTYPES if k)}')
    return DTYPES[name]


@MODELS.register_module()
class HFLanguageModel(nn.Module):
    """A HF causal or encoder-decoder LM.

    Args:
        pretrained: a local directory (or hub name, with a hub) for ``from_pretrained``.
        config: ``AutoConfig.for_model(**config)`` arguments (``model_type`` required), used
            only when ``pretrained`` is ``None`` (random weights).
        torch_dtype: ``'fp16'``, ``'bf16'``, ``'fp32'`` or ``None`` (the checkpoint's /
            the default dtype).
        grad_checkpointing: HF gradient checkpointing (only useful for a trainable LM).
        from_pretrained_kwargs: other ``from_pretrained`` arguments
            (``local_files_only=True`` by default: vlp never downloads implicitly).

    Attributes: ``model`` (the HF model; parameters ``model.<hf name>``),
    ``is_encoder_decoder``, ``hidden_size`` (width of the input embeddings).
    """

    def __init__(self, pretrained: Optional[str] = None, config: Optional[dict] = None,
                 torch_dtype=None, grad_checkpointing: bool = False,
                 from_pretrained_kwargs: Optional[dict] = None):
        super().__init__()
        from transformers import (AutoConfig, AutoModelForCausalLM,
                                  AutoModelForSeq2SeqLM)
        dtype = to_dtype(torch_dtype)
        if pretrained is not None:
            hf_cfg = AutoConfig.from_pretrained(pretrained, local_files_only=True)
            auto = AutoModelForSeq2SeqLM if hf_cfg.is_encoder_decoder else AutoModelForCausalLM
            kwargs = dict(local_files_only=True, **(from_pretrained_kwargs or {}))
            if dtype is not None:
                kwargs['dtype'] = dtype
            try:  # transformers reads pytorch_model.bin weights-only (model.safetensors: no pickle)
                self.model = auto.from_pretrained(pretrained, **kwargs)
            except pickle.UnpicklingError as e:
                from vlp.engine.checkpoint import unsafe_checkpoint_error
                refused = unsafe_checkpoint_error(
                    e, f'{pretrained} (its PyTorch weights file)',
                    opt_out='pass from_pretrained_kwargs=dict(weights_only=False) (this '
                    'unpickles it fully), or save it as model.safetensors')
                if refused is None:
                    raise
                raise refused from e
        elif config is not None:
            config = dict(config)
            if 'model_type' not in config:
                raise ValueError("HFLanguageModel: config needs a 'model_type' (e.g. 'opt')")
            hf_cfg = AutoConfig.for_model(**config)
            auto = AutoModelForSeq2SeqLM if hf_cfg.is_encoder_decoder else AutoModelForCausalLM
            self.model = auto.from_config(hf_cfg)
            if dtype is not None:
                self.model.to(dtype)
        else:
            raise ValueError('HFLanguageModel needs pretrained (local files) or config')
        self.is_encoder_decoder = bool(self.model.config.is_encoder_decoder)
        self.hidden_size = self.model.get_input_embeddings().embedding_dim
        if grad_checkpointing:
            self.set_grad_checkpointing(True)

    def init_weights(self) -> None:
        """Nothing: mmengine must not re-initialise pretrained LM weights."""

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        # transformers 5.x renamed gradient_checkpointing_* to activation_checkpointing_*
        new = hasattr(self.model, 'activation_checkpointing_enable')
        if enable and new:
            self.model.activation_checkpointing_enable(
                activation_checkpointing_kwargs=dict(use_reentrant=False))
        elif enable:
            self.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=dict(use_reentrant=False))
        elif self.grad_checkpointing:
            (self.model.activation_checkpointing_disable if new
             else self.model.gradient_checkpointing_disable)()

    @property
    def grad_checkpointing(self) -> bool:
        m = self.model
        return bool(m.is_activation_checkpointing if hasattr(m, 'is_activation_checkpointing')
                    else m.is_gradient_checkpointing)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def decoder_input_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """Encoder-decoder LMs: teacher-forcing decoder inputs of ``labels [B, L]`` (the
        decoder start token, then ``labels`` shifted right, -100 replaced by padding)."""
        return self.model.prepare_decoder_input_ids_from_labels(labels=labels)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, L]`` -> input embeddings ``[B, L, H]`` (the LM's own table)."""
        return self.model.get_input_embeddings()(input_ids)

    def forward(self, **kwargs):
        """The HF model's forward (``inputs_embeds``, ``attention_mask``,
        ``decoder_input_ids`` ...)."""
        return self.model(**kwargs)

    def generate(self, **kwargs) -> torch.Tensor:
        return self.model.generate(**kwargs)


@TOKENIZERS.register_module()
class LMTokenizer:
    """The LLM's own HF tokenizer with vlp's tokenizer contract (for the ``Tokenize``
    transform and the models' inference API).

    ``tok(texts, max_length)`` gives the **target** format of :class:`BLIP2LM`'s loss,
    the same for decoder-only and encoder-decoder LMs: the text's tokens without special
    tokens, truncated, then EOS; right padded to ``max_length`` (or the longest).
    :meth:`encode_prompt` gives a prompt *with* the tokenizer's own special tokens
    (OPT / Llama: ``BOS prompt``; T5: ``prompt </s>``).

    Args:
        pretrained: local directory for ``transformers.AutoTokenizer.from_pretrained``
            (``local_files_only=True``).
        tokenizer: an already built ``transformers`` tokenizer (instead of ``pretrained``).
        max_length: default length ``L`` of the targets (EOS included).
        pad_token_id: id of padding (default: the tokenizer's pad, else its unk (LLaVA's
            choice for Llama), else 0); padding is masked out everywhere.
        **kwargs: other ``from_pretrained`` arguments (``use_fast``...).
    """

    def __init__(self, pretrained: Optional[str] = None, tokenizer=None, max_length: int = 32,
                 pad_token_id: Optional[int] = None, **kwargs):
        if tokenizer is None:
            if pretrained is None:
                raise ValueError('LMTokenizer needs pretrained (a local directory) or '
                                 'tokenizer')
            from transformers import AutoTokenizer
            kwargs.setdefault('local_files_only', True)
            tokenizer = AutoTokenizer.from_pretrained(pretrained, **kwargs)
        self.hf = tokenizer
        self.max_length = max_length
        if pad_token_id is None:
            pad_token_id = next((t for t in (tokenizer.pad_token_id, tokenizer.unk_token_id)
                                 if t is not None), 0)
        self.pad_token_id = int(pad_token_id)
        self.eos_token_id = tokenizer.eos_token_id
        self.bos_token_id = tokenizer.bos_token_id
        if self.eos_token_id is None:
            raise ValueError('LMTokenizer: the tokenizer has no eos_token')

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str, max_length: Optional[int] = None) -> List[int]:
        """Target ids of one text: ``tokens[:max_length - 1] + [EOS]``."""
        max_length = max_length or self.max_length
        ids = self.hf(text, add_special_tokens=False)['input_ids']
        return list(ids)[:max_length - 1] + [self.eos_token_id]

    def _special_frame(self):
        """The special ids the tokenizer puts before / after a text (OPT, Llama: BOS
        before; T5: EOS after), found once by tokenising a probe word."""
        if getattr(self, '_frame', None) is None:
            full = list(self.hf('a')['input_ids'])
            plain = list(self.hf('a', add_special_tokens=False)['input_ids'])
            k = next((i for i in range(len(full) - len(plain) + 1)
                      if full[i:i + len(plain)] == plain), None)
            if not plain or k is None:
                raise ValueError('LMTokenizer: cannot locate the special tokens of the '
                                 'tokenizer')
            self._frame = (full[:k], full[k + len(plain):])
        return self._frame

    def encode_prompt(self, text: str, image_token: Optional[str] = None):
        """Prompt ids with the tokenizer's own special tokens (not truncated). With
        ``image_token`` given, returns ``(before, after)``: the ids of the text before and
        after that marker (``before`` is empty without it), the leading specials in
        ``before``, the trailing ones in ``after``."""
        if image_token is None:
            return list(self.hf(text)['input_ids'])
        if image_token not in text:
            return [], list(self.hf(text)['input_ids'])
        pre, post = text.split(image_token, 1)
        head, tail = self._special_frame()
        plain = lambda t: list(self.hf(t, add_special_tokens=False)['input_ids']) if t else []
        return head + plain(pre), plain(post) + tail

    def pad(self, rows: Sequence[Sequence[int]], length: Optional[int] = None
            ) -> Dict[str, torch.Tensor]:
        """Right-pad id lists -> ``input_ids`` / ``attention_mask`` ``[B, L]``."""
        length = length or max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(list(r), dtype=torch.long)
            mask[i, :len(r)] = 1
        return dict(input_ids=ids, attention_mask=mask)

    def __call__(self, texts: Union[str, Sequence[str]], max_length: Optional[int] = None,
                 padding: str = 'max_length') -> Dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        max_length = max_length or self.max_length
        if padding not in ('max_length', 'longest'):
            raise ValueError(f'padding must be "max_length" or "longest", got {padding!r}')
        rows = [self.encode(t, max_length) for t in texts]
        return self.pad(rows, max_length if padding == 'max_length' else None)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens).strip()

    def batch_decode(self, batch, skip_special_tokens: bool = True) -> List[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({type(self.hf).__name__}, vocab_size='
                f'{self.vocab_size}, max_length={self.max_length})')


def demo_lm_tokenizer():
    """A ``transformers`` tokenizer over the embedded demo words, in OPT's layout: word
    level, lower-cased, ``<pad>=0``, ``</s>=1`` (BOS and EOS, put first as OPT does),
    ``<unk>=2``, then the demo words (vocabulary ``3 + len(demo words)`` = 51). Built in
    memory, nothing written or downloaded: the LLM tokenizer of the BLIP-2 stage-2 demo."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from vlp.datasets.tokenizers import _demo_words
    specials = ['<pad>', '</s>', '<unk>']
    tokens = specials + list(_demo_words())
    tk = Tokenizer(WordLevel({t: i for i, t in enumerate(tokens)}, unk_token='<unk>'))
    tk.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r'\s+'), ' '),
                                          normalizers.Lowercase()])
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.add_special_tokens(specials)
    tk.post_processor = processors.TemplateProcessing(  # OPT: BOS (= </s>) first
        single='</s> $A', special_tokens=[('</s>', 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token='<pad>', eos_token='</s>',
                                   bos_token='</s>', unk_token='<unk>')


@TOKENIZERS.register_module()
class DemoLMTokenizer(LMTokenizer):
    """:class:`LMTokenizer` over :func:`demo_lm_tokenizer` (the demo configs' LLM
    tokenizer; vocabulary 51)."""

    def __init__(self, max_length: int = 32):
        super().__init__(tokenizer=demo_lm_tokenizer(), max_length=max_length)
