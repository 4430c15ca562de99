"""A Hugging Face ``transformers`` language model as a vlp part (the frozen LLM of
BLIP-2 stage 2, MiniGPT-4 and LLaVA).

:class:`HFLanguageModel` wraps a decoder-only causal LM (``AutoModelForCausalLM``: OPT,
Llama/Vicuna, ...) or an encoder-decoder LM (``AutoModelForSeq2SeqLM``: T5/FlanT5), built
from local pretrained files (``pretrained='data/opt-2.7b'``) or, when ``pretrained`` is
``None``, from an architecture description (``config=dict(model_type='opt', ...)``:
``AutoConfig.for_model`` + ``from_config``, random weights; no download). Paper configs give
both, so they build without weights (tests, the meta device) and load them when present.

:class:`~vlp.datasets.tokenizers.LMTokenizer` (``TOKENIZERS``, in vlp/datasets/tokenizers.py)
gives the LM's own tokenizer vlp's tokenizer contract.
"""
import pickle
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from vlp.registry import MODELS

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
