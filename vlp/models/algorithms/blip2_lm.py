"""BLIP-2 stage 2 (Li et al. 2023, "BLIP-2: Bootstrapping Language-Image Pre-training with
Frozen Image Encoders and Large Language Models", Sec. 3.3, Fig. 3): generative
vision-to-language learning. A frozen image encoder, the Q-Former (from stage 1) and a
linear projection turn an image into ``Q`` (32) soft visual prompts prepended to the input
embeddings of a frozen LLM; the objective is the LM loss on the text only (decoder-only
LMs: OPT) or prefix LM (encoder-decoder: FlanT5, queries + prompt into the encoder, the
text as decoder targets). The same composition gives MiniGPT-4 (Zhu et al. 2023: frozen
Q-Former, only the projection trains) and LLaVA (Liu et al. 2023: ViT patch tokens, no
Q-Former, an MLP projector; stage 2 also trains the LLM).
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from vlp.registry import MODELS
from vlp.datasets.tokenizers import LMTokenizer, as_lm_tokenizer
from ..backbones.hf_lm import to_dtype
from ..necks.projection import llm_projector
from ..utils.llm_inputs import (IMAGE_TOKEN, assemble_inputs, hf_generate_options,  # noqa: F401
                                lm_logits, prompt_rows)
from ..utils.pretrained import load_prefixed_parts
from .base import VLPModel, build_part, split_meta



@MODELS.register_module()
class BLIP2LM(VLPModel):
    """Frozen image encoder + (Q-Former) + projection -> frozen LLM.

    Args:
        vision: image tower config (``TimmTower``: ``image_embeds [B, N, C_v]``); frozen.
        llm: ``HFLanguageModel`` arguments (``pretrained`` local files, or ``config`` with
            ``model_type`` for a randomly initialised one); ``type`` may be omitted.
        qformer: ``QFormer`` config (``None`` with ``use_queries=False``: LLaVA feeds the
            vision tokens to the projector directly).
        projector: ``'linear'`` (BLIP-2, MiniGPT-4, LLaVA v1) or ``'mlp2x_gelu'`` (LLaVA-1.5)
            to the LLM hidden size.
        drop_vision_prefix: leading vision tokens dropped (LLaVA: 1, the class token).
        vision_dtype: ``'fp16'`` / ``'bf16'`` runs the frozen vision tower in that dtype.
        ln_vision / freeze_ln_vision: BLIP-2's LayerNorm over the vision tokens (LLaVA:
            none), frozen for MiniGPT-4.
        freeze_qformer: MiniGPT-4; freeze_llm: ``True`` by default (``False``: LLaVA stage
            2, with ``llm_grad_checkpointing``).
        prompt: text between the visual prompts and the text, or around them with
            ``'<ImageHere>'`` (MiniGPT-4); per-sample prompts go to :meth:`generate` or, in
            training, through ``prompt_ids``.
        label_smoothing: of the LM loss (BLIP-2: 0).
        stage1: ``dict(checkpoint=path, strict=True)``: ``vision`` / ``ln_vision`` /
            ``qformer`` from a vlp BLIP-2 stage-1 checkpoint (:meth:`load_stage1`).
        generation_cfg: decoding options of :meth:`predict`.
        predict_mode: ``'caption'`` (``pred_caption``) or ``'vqa'`` (each sample's
            ``question`` in ``vqa_prompt``, the answer as ``pred_answer``).
        vqa_prompt: BLIP-2's zero-shot VQA prompt (Sec. 4.1; LAVIS evaluates with 5 beams,
            ``max_length`` 10, ``length_penalty`` -1: set them in ``generation_cfg``).
        tokenizer: the LLM's tokenizer (``dict(type='LMTokenizer', pretrained=...)``, or
            a ``transformers`` tokenizer set with ``model.tokenizer = ...``).

    Training inputs (``loss``): ``images``, ``input_ids`` / ``attention_mask`` ``[B, L]``: the
    target text tokenised as :class:`LMTokenizer` does (``Tokenize`` transform): **without**
    BOS, ending with EOS, right padded (T5's own format; for decoder-only LMs the BOS leads
    the prompt instead); optional per-sample ``prompt_ids`` / ``prompt_mask`` (with the
    tokenizer's special tokens; placed after the visual prompts) replacing ``prompt``.
    """
    capabilities = frozenset({'loss', 'predict', 'generate', 'answer', 'query_features'})

    def __init__(self, vision: dict, llm: dict, qformer: Optional[dict] = None,
                 projector: str = 'linear', use_queries: bool = True,
                 drop_vision_prefix: int = 0, vision_dtype: Optional[str] = None,
                 ln_vision: bool = True, freeze_ln_vision: bool = False,
                 freeze_qformer: bool = False, freeze_llm: bool = True,
                 llm_grad_checkpointing: bool = False, prompt: str = '',
                 label_smoothing: float = 0.0, stage1: Optional[dict] = None,
                 generation_cfg: Optional[dict] = None, predict_mode: str = 'caption',
                 vqa_prompt: str = 'Question: {} Short answer:',
                 data_preprocessor: Optional[dict] = None, tokenizer=None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        if predict_mode not in ('caption', 'vqa'):
            raise ValueError(f"BLIP2LM.predict_mode must be 'caption' or 'vqa', got "
                             f'{predict_mode!r}')
        if '{}' not in vqa_prompt:
            raise ValueError(f'vqa_prompt needs a "{{}}" for the question: {vqa_prompt!r}')
        if use_queries == (qformer is None):
            raise ValueError('BLIP2LM: a qformer config is needed with use_queries=True and '
                             'must be None with use_queries=False')
        self.vision = build_part(vision)
        self.qformer = build_part(qformer)
        self.ln_vision = nn.LayerNorm(self.vision.embed_dim) if ln_vision else None
        llm = dict(llm) if isinstance(llm, dict) else llm
        if isinstance(llm, dict):
            llm.setdefault('type', 'HFLanguageModel')
            if llm_grad_checkpointing:
                llm['grad_checkpointing'] = True
        self.llm = build_part(llm)
        self.projection = llm_projector(
            projector, self.qformer.hidden_size if use_queries else self.vision.embed_dim,
            self.llm.hidden_size)
        self.use_queries = use_queries
        if not use_queries:
            self.drop_capabilities('built with use_queries=False (no Q-Former: LLaVA)',
                                   'query_features')
        self.drop_vision_prefix = int(drop_vision_prefix)
        self.vision_dtype = to_dtype(vision_dtype)
        self.freeze_qformer, self.freeze_llm = freeze_qformer, freeze_llm
        self.prompt = prompt
        self.lm_loss = build_part(dict(type='CaptionLoss', label_smoothing=label_smoothing))
        self.generation_cfg = dict(generation_cfg or {})
        self.predict_mode = predict_mode
        self.vqa_prompt = vqa_prompt
        if stage1 is not None and stage1.get('checkpoint') is not None:
            self.load_stage1(stage1['checkpoint'], strict=stage1.get('strict', True))
        if self.vision_dtype is not None:
            self.vision.to(self.vision_dtype)
        self._frozen = [part for part, frozen in (
            (self.vision, True), (self.ln_vision, freeze_ln_vision),
            (self.qformer, freeze_qformer), (self.llm, freeze_llm)) if frozen and part is not None]
        for part in self._frozen:
            part.requires_grad_(False).eval()
        if self.qformer is not None:  # the text-only parameters: unused in stage 2
            self.qformer.freeze_text_only()

    def init_weights(self) -> None:
        """Nothing: every part initialises itself at construction, and mmengine's
        recursive ``init_weights`` must not re-initialise loaded towers or the LLM."""

    def train(self, mode: bool = True):
        """Frozen parts stay in eval mode (no dropout, fixed statistics)."""
        super().train(mode)
        for part in self._frozen:
            part.eval()
        return self

    def load_stage1(self, checkpoint: Union[str, Dict[str, torch.Tensor]],
                    strict: bool = True) -> None:
        """Load ``vision.*``, ``ln_vision.*`` and ``qformer.*`` of a vlp BLIP-2 stage-1
        checkpoint (a path, or a state dict) into the same parts here; other keys (ITC/ITM
        heads, projections) are ignored."""
        load_prefixed_parts(checkpoint, {'vision.': self.vision, 'ln_vision.': self.ln_vision,
                                         'qformer.': self.qformer}, strict, 'stage-1')

    # -- visual prompts -------------------------------------------------------------------
    def visual_prompts(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images ``[B, 3, H, W]`` -> soft prompts ``[B, Q, H_llm]`` (``Q`` the
        queries, or the (patch) tokens with ``use_queries=False``)."""
        tokens = self._visual_tokens(images)
        prompts = self.projection(tokens.to(next(self.projection.parameters()).dtype))
        return prompts.to(self.llm.dtype)  # (B, Q, H)

    def _visual_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The Q-Former's query outputs ``[B, Q, C]`` (with ``use_queries=False``: the
        vision tokens after ``ln_vision``)."""
        with torch.no_grad():  # the image encoder is frozen
            if self.vision_dtype is not None:
                images = images.to(self.vision_dtype)
            tokens = self.vision(images)['image_embeds'][:, self.drop_vision_prefix:]
        tokens = tokens.float() if self.vision_dtype is not None else tokens
        if self.ln_vision is not None:
            tokens = self.ln_vision(tokens)
        if self.use_queries:
            tokens = self.qformer(image_embeds=tokens)['query_embeds']  # (B, Q, C)
        return tokens

    @torch.no_grad()
    def query_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> the Q-Former's query outputs ``[B, Q, C]``, before the projection to
        the LLM (HF's ``Blip2Model.get_qformer_features``)."""
        self.require('query_features')
        return self._visual_tokens(self.preprocess_images(images))

    @torch.no_grad()
    def answer(self, images: torch.Tensor, questions: Union[str, Sequence[str]],
               **decoding) -> List[str]:
        """Zero-shot VQA (BLIP-2 Sec. 4.1): each question in ``vqa_prompt``, the generated
        text stripped; ``decoding`` as :meth:`generate`."""
        questions = [questions] if isinstance(questions, str) else list(questions)
        prompts = [self.vqa_prompt.format(q) for q in questions]
        return [a.strip() for a in self._generate(self.preprocess_images(images), prompts,
                                                  **decoding)]

    # -- tokens ----------------------------------------------------------------------------
    @property
    def lm_tokenizer(self) -> LMTokenizer:
        """``self.tokenizer`` as an :class:`LMTokenizer` (a plain ``transformers``
        tokenizer set with ``model.tokenizer = ...`` is wrapped once)."""
        tok = as_lm_tokenizer(self.tokenizer, 'BLIP2LM')
        if tok is not self.tokenizer:
            self.tokenizer = tok
        return tok

    def tokenize_text(self, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Target texts -> ``input_ids`` / ``attention_mask`` as :meth:`loss` expects
        (``text EOS``, no BOS, padded to the longest: what the ``Tokenize`` transform gives
        with an :class:`LMTokenizer`)."""
        return self.lm_tokenizer(list(texts), padding='longest')

    # -- mmengine modes -----------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """LM loss of the text given the visual prompts and the prompt (Sec. 3.3)."""
        logits, labels = self.lm_logits(inputs, data_samples)
        logits = logits.float()  # a frozen fp16 / bf16 LLM: cross-entropy in float32
        if self.llm.is_encoder_decoder:
            return dict(loss_lm=self.lm_loss(logits, labels))
        # decoder-only: the state at t predicts token t + 1
        return dict(loss_lm=self.lm_loss(logits[:, :-1], labels[:, 1:]))

    def lm_logits(self, inputs: dict, data_samples: Optional[dict] = None):
        """LLM logits and the label tensor they are scored against (unshifted:
        decoder-only position ``t`` predicts ``labels[t + 1]``; encoder-decoder position
        ``t`` predicts ``labels[t]``). Per-sample ``prompt_ids`` / ``prompt_mask`` are read
        from ``inputs`` or, as the data preprocessor passes unknown keys, ``data_samples``."""
        prompts = self.visual_prompts(inputs['images'])
        text_ids, text_mask = inputs['input_ids'], inputs.get('attention_mask')
        extra = {**(data_samples if isinstance(data_samples, dict) else {}), **inputs}
        parts = prompt_rows(lambda: self.lm_tokenizer, prompts.shape[0],
                            extra.get('prompt_ids'), extra.get('prompt_mask'), default=self.prompt)
        return lm_logits(self.llm, prompts, parts, text_ids,
                         torch.ones_like(text_ids) if text_mask is None else text_mask)

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """One dict per image with the sample's metadata and ``pred_caption`` (decoded with
        ``generation_cfg``; the references in ``text`` for ``CaptionMetric``) or, with
        ``predict_mode='vqa'``, ``pred_answer`` to the sample's ``question``."""
        images = inputs.get('images')
        if images is None:
            raise ValueError('BLIP2LM.predict needs images')
        metas = split_meta(data_samples, images.shape[0])
        if self.predict_mode == 'vqa':
            if any('question' not in m for m in metas):
                raise ValueError("BLIP2LM.predict (vqa) needs each sample's question "
                                 "(data_samples['question'])")
            answers = self._generate(images, [self.vqa_prompt.format(m['question'])
                                              for m in metas])
            return [dict(m, pred_answer=a.strip()) for m, a in zip(metas, answers)]
        captions = self._generate(images)
        return [dict(metas[i], pred_caption=captions[i]) for i in range(len(captions))]

    # -- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompt: Union[None, str, Sequence[str]] = None,
                 **decoding) -> List[str]:
        """Texts for ``images [B, 3, H, W]`` (``uint8``, or normalised as the data
        preprocessor does), through HF's ``generate(inputs_embeds=..., attention_mask=...)``.

        Args:
            prompt: a string for every image or one per image (default ``self.prompt``;
                VQA: ``'Question: {} Answer:'.format(q)``); not part of the outputs.
            decoding: HF ``generate`` options (``num_beams``, ``do_sample``, ``top_p``, ...)
                over ``generation_cfg``; lengths count **generated tokens only**
                (:func:`~vlp.models.utils.llm_inputs.hf_generate_options`). Default:
                greedy, ``max_length=30`` (BLIP-2's captioning: ``num_beams=5``,
                ``max_length=30``, ``min_length=8``, set in ``generation_cfg``).
        """
        return self._generate(self.preprocess_images(images), prompt, **decoding)

    @torch.no_grad()
    def _generate(self, images: torch.Tensor, prompt=None, **decoding) -> List[str]:
        tok = self.lm_tokenizer
        prompts = self.visual_prompts(images)
        B = prompts.shape[0]
        if isinstance(prompt, str):
            prompt = [prompt] * B
        parts = prompt_rows(lambda: self.lm_tokenizer, B, prompts=prompt, default=self.prompt)
        opts = hf_generate_options(self.generation_cfg, decoding, pad_token_id=tok.pad_token_id)
        embeds, att, _ = assemble_inputs(self.llm.embed_tokens, prompts,
                                         [pre for pre, _ in parts], [post for _, post in parts],
                                         left=not self.llm.is_encoder_decoder)
        out = self.llm.generate(inputs_embeds=embeds, attention_mask=att, **opts)
        # decoder-only with inputs_embeds: only new tokens; encoder-decoder: decoder start
        # token first (dropped as a special token)
        return tok.batch_decode(out)
