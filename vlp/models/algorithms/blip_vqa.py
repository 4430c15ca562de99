"""BLIP's VQA model (Li et al. 2022, "BLIP", Sec. 5.3 / Fig. 5), i.e. ALBEF's generative
VQA (Li et al. 2021, Sec. 5 / Fig. 3a) on BLIP's parts: answers are *generated*, not
classified.

- **Question encoder**: BLIP's image-grounded text encoder (the ``[ENC]``-led question
  cross-attends to the ViT tokens in every layer).
- **Answer decoder**: a causal BERT led by ``[DEC]`` cross-attending to the question states
  (not the image), separate from the encoder, initialised from BLIP's captioning decoder.
- **Loss** (BLIP / ALBEF): every unique normalised answer of a question weighs
  ``count / n_answers``; ``sum weight * NLL(answer) / B`` with ``NLL`` the per-sequence sum
  of the token cross-entropies.
- **Inference**: ``'rank'`` (VQAv2: the ``k_test`` candidates of ``answer_list`` with the
  most probable first token re-scored by their full log-likelihood) or ``'generate'`` (beam
  search, 3 beams, at most 10 tokens).

The state dict is BLIP's (``vision.*``, ``text.*``, ``decoder.*`` + ``lm_head.*``): a BLIP
pre-training checkpoint loads with ``strict=False`` (its shared tensors under both
``text.*`` and ``decoder.*`` start the two transformers). Differences from the reference
code (docs/models.md): ``label_smoothing`` defaults to 0 (BLIP's code hard-codes 0.1) and
ranking uses the exact log-likelihood; answers are normalised with VQAv2's
``normalize_answer``; the decoder cross-attends at the text width. Generation caches
keys/values (``use_cache=False``: the uncached reference).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from vlp.registry import MODELS
from ..utils.answers import (answer_weights, answers_of, rank_candidates,  # noqa: F401
                             resolve_answer_list, sequence_nll, weighted_answers)
from ..utils.generation import decode_texts, generate_ids
from ..utils.pretrained import GROW_KEYS, load_pretrained_weights
from .base import VLPModel, build_part, replace_first_token, split_meta, token_id_property
from . import blip_caption
from .blip_caption import UNUSED_BLIP_KEYS

# BLIP constructor keys that only pre-training and captioning use: accepted (so a BLIP
# config can be re-typed as BLIPVQA) and ignored
_BLIP_ONLY_KEYS = (UNUSED_BLIP_KEYS - {'enc_token_id'}) | {
    'caption_loss', 'prompt', 'prompt_in_loss', 'predict_mode'}


@MODELS.register_module()
class BLIPVQA(VLPModel):
    """BLIP VQA: image encoder, question encoder (BLIP's image-grounded text encoder) and
    answer decoder (causal, cross-attending to the question states).

    Args:
        vision / text / lm_head: as :class:`BLIP` (``text``: the question encoder).
        decoder: overrides of the answer decoder's config (default: ``text``'s, with
            ``cross_attention_dim`` the text width: it reads the question states).
        tie_lm_head: tie the LM head's output matrix to the decoder's word embeddings.
        label_smoothing: of the answer loss (0; BLIP's code: 0.1).
        inference: ``'rank'`` (over ``answer_list``) or ``'generate'``.
        answer_list: candidates of ``'rank'``: strings, a JSON list (BLIP's
            ``answer_list.json``) or what :func:`~vlp.models.utils.answers.resolve_answer_list`
            reads (``dict(type='DemoVQA')``).
        k_test: candidates kept by the first-token pruning of ``'rank'`` (BLIP: 128).
        generation_cfg: options of ``'generate'`` over ``dict(num_beams=3, max_length=10,
            min_length=1)`` (lengths count ``[DEC]``).
        enc_token_id / dec_token_id: ids of ``[ENC]`` / ``[DEC]`` (default: the tokenizer's).
        pretrained: a BLIP checkpoint (file or work directory) loaded when built.
        **blip_keys: BLIP pre-training keys (``vision_proj``, ``queue_size``, ...),
            accepted so that a BLIP config can be re-typed, and ignored.
        data_preprocessor, tokenizer, grad_checkpointing, init_cfg: see :class:`VLPModel`.
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'fused_features', 'answer'})

    def __init__(self, vision: dict, text: dict, lm_head: dict,
                 decoder: Optional[dict] = None, tie_lm_head: bool = True,
                 label_smoothing: float = 0.0, inference: str = 'rank',
                 answer_list: Union[None, str, Sequence[str]] = None, k_test: int = 128,
                 generation_cfg: Optional[dict] = None,
                 enc_token_id: Optional[int] = None, dec_token_id: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None, **blip_keys):
        unknown = set(blip_keys) - _BLIP_ONLY_KEYS
        if unknown:
            raise TypeError(f'BLIPVQA got unexpected arguments {sorted(unknown)}')
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        self._check_inference(inference)
        self.vision = build_part(vision)
        self.text = build_part(text)
        if not self.text.cross_layers:
            raise ValueError('BLIPVQA: the question encoder needs cross-attention layers '
                             "(cross_attention_layers='all')")
        dec_cfg = dict(text, cross_attention_dim=self.text.hidden_size)
        dec_cfg.update(decoder or {})
        self.decoder = build_part(dec_cfg)
        if not self.decoder.cross_layers:
            raise ValueError('BLIPVQA: the answer decoder needs cross-attention layers')
        self.lm_head = build_part(lm_head)
        if tie_lm_head:
            self.lm_head.tie_weights(self.decoder.word_embeddings)
        self.label_smoothing = float(label_smoothing)
        self.inference = inference
        self.k_test = int(k_test)
        self.generation_cfg = dict(generation_cfg or {})
        self._enc_token_id, self._dec_token_id = enc_token_id, dec_token_id
        self.answer_list = answer_list
        self.set_grad_checkpointing(grad_checkpointing)
        if pretrained:
            self.load_pretrained(pretrained)

    def load_pretrained(self, path: str):
        """Load a BLIP pre-training checkpoint non-strictly and loudly (its pre-training
        parts reported unused; task tokens grow the word embeddings and the tied head)."""
        return load_pretrained_weights(
            self, path, grow_keys=GROW_KEYS + (r'^lm_head\.(decoder\.weight|bias)$',))

    @staticmethod
    def _check_inference(inference: str) -> None:
        if inference not in ('rank', 'generate'):
            raise ValueError(f"inference must be 'rank' or 'generate', got {inference!r}")

    enc_token_id, dec_token_id = token_id_property('[ENC]'), token_id_property('[DEC]')

    # -- candidate answers ------------------------------------------------------------------
    @property
    def answer_list(self) -> Optional[List[str]]:
        return self._answer_list

    @answer_list.setter
    def answer_list(self, value: Union[None, str, Sequence[str]]) -> None:
        self._answer_list = None if value is None else resolve_answer_list(value)
        self._answer_cache = None  # (device, ids, mask) of the tokenised list

    def _answer_tokens(self, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """``[DEC] answer [SEP]`` ids and mask ``[A, T]`` of ``answer_list`` (cached)."""
        if not self._answer_list:
            raise ValueError("inference='rank' needs an answer_list")
        cache = self._answer_cache
        if cache is None or cache[0] != device:
            ids, mask = self.tokenize_answers(self._answer_list)
            cache = self._answer_cache = (device, ids.to(device), mask.to(device))
        return cache[1], cache[2]

    def tokenize_answers(self, answers: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``[DEC] answer [SEP]`` ids and mask ``[N, T]`` (padded to the longest)."""
        if self.tokenizer is None:
            raise RuntimeError('BLIPVQA needs a tokenizer to tokenise answers')
        enc = self.tokenizer(list(answers), padding='longest')
        ids = replace_first_token(enc['input_ids'], self.dec_token_id)
        return ids.to(self.device), enc['attention_mask'].to(self.device)

    # -- the two text transformers ------------------------------------------------------------
    def encode_question(self, images: torch.Tensor, input_ids: torch.Tensor,
                        attention_mask: Optional[torch.Tensor] = None
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B, 3, H, W]`` and question ids ``[B, L]`` -> question states
        ``[B, L, C]`` (``[ENC]``-led, cross-attending to the image) and their mask."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        image_embeds = self.vision(images)['image_embeds']
        ids = replace_first_token(input_ids, self.enc_token_id)
        states = self.text(ids, attention_mask, image_embeds=image_embeds)['text_embeds']
        return states, attention_mask

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The question encoder's ``[ENC]`` state ``[B, C]``."""
        return self.encode_question(images, input_ids, attention_mask)[0][:, 0]

    # (ids, mask, question_states, question_mask, cache=None) -> logits: BLIP's decoder step
    answer_logits = blip_caption.decoder_logits

    def answer_nll(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   question_states: torch.Tensor, question_mask: torch.Tensor,
                   label_smoothing: float = 0.0) -> torch.Tensor:
        """Per-sequence NLL ``[N]`` of ``[DEC] answer [SEP]`` (the tokens' summed
        cross-entropy, ``[SEP]`` included)."""
        logits = self.answer_logits(input_ids, attention_mask, question_states, question_mask)
        return sequence_nll(logits, input_ids, attention_mask, label_smoothing)

    # -- training -----------------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples=None) -> Dict[str, torch.Tensor]:
        """Weighted answer LM loss of a batch: ``images``, ``input_ids`` /
        ``attention_mask`` (the tokenised questions) and ``data_samples['answers']``."""
        images, ids = inputs['images'], inputs['input_ids']
        answers = answers_of(data_samples, 'BLIPVQA')
        B = images.shape[0]
        if len(answers) != B:
            raise ValueError(f'{len(answers)} answer lists for {B} questions')
        q_states, q_mask = self.encode_question(images, ids, inputs.get('attention_mask'))
        texts, weights, counts = weighted_answers(answers)
        if not texts:  # no answers: a zero that keeps the graph
            return dict(loss_vqa=q_states.sum() * 0.0)
        a_ids, a_mask = self.tokenize_answers(texts)
        rows = torch.repeat_interleave(torch.arange(B, device=q_states.device),
                                       torch.tensor(counts, device=q_states.device))
        nll = self.answer_nll(a_ids, a_mask, q_states[rows], q_mask[rows],
                              self.label_smoothing)
        w = torch.tensor(weights, device=nll.device, dtype=nll.dtype)
        return dict(loss_vqa=(w * nll).sum() / B)

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def rank_answers(self, question_states: torch.Tensor, question_mask: torch.Tensor,
                     k_test: Optional[int] = None) -> torch.Tensor:
        """Indices ``[Q]`` into ``answer_list`` of the best candidate per question: the
        ``k_test`` candidates with the most probable first token, re-scored by their full
        log-likelihood."""
        cand_ids, cand_mask = self._answer_tokens(question_states.device)
        start = cand_ids[:1, :1].expand(question_states.shape[0], 1)  # [DEC]
        first = self.answer_logits(start, None, question_states, question_mask)[:, 0]
        return rank_candidates(
            first, cand_ids, cand_mask, int(k_test or self.k_test),
            lambda ids, mask, rows: -self.answer_nll(ids, mask, question_states[rows],
                                                     question_mask[rows]))

    @torch.no_grad()
    def generate_answers(self, question_states: torch.Tensor, question_mask: torch.Tensor,
                         **decoding) -> List[str]:
        """Open-ended answers decoded from ``[DEC]`` (BLIP: beam search, 3 beams, at most
        10 tokens); ``decoding`` as :func:`vlp.models.utils.generation.generate` (the
        decoder caches its keys/values, the question's computed once per answer;
        ``use_cache=False``: the uncached reference)."""
        tok = self.tokenizer
        if tok is None:
            raise RuntimeError('BLIPVQA generation needs a tokenizer')
        eos = getattr(tok, 'sep_token_id', None)
        ids = generate_ids(lambda ids, ctx, mask, cache: self.answer_logits(ids, None, ctx, mask,
                                                                           cache=cache),
                           question_states, [self.dec_token_id],
                           tok.eos_token_id if eos is None else eos, tok.pad_token_id,
                           dict(num_beams=3, max_length=10, min_length=1),
                           self.generation_cfg, decoding, context_mask=question_mask)
        return decode_texts(tok, ids, 1)

    @torch.no_grad()
    def answer_questions(self, images: torch.Tensor, input_ids: torch.Tensor,
                         attention_mask: Optional[torch.Tensor] = None,
                         inference: Optional[str] = None, k_test: Optional[int] = None,
                         **decoding) -> List[str]:
        """Answers (strings) of tokenised questions about normalised ``images``."""
        inference = inference or self.inference
        self._check_inference(inference)
        q_states, q_mask = self.encode_question(images, input_ids, attention_mask)
        if inference == 'generate':
            return self.generate_answers(q_states, q_mask, **decoding)
        best = self.rank_answers(q_states, q_mask, k_test)
        return [self._answer_list[i] for i in best.tolist()]

    def answer(self, images: torch.Tensor, questions: Union[str, List[str]],
               inference: Optional[str] = None, **kwargs) -> List[str]:
        """Answers of raw questions about raw images (``uint8`` ``[B, 3, H, W]`` or
        ``[3, H, W]``, normalised with the data preprocessor's statistics; float images
        are taken as normalised)."""
        images = self.preprocess_images(images)
        enc = self.tokenize(questions)
        return self.answer_questions(images, enc['input_ids'], enc.get('attention_mask'),
                                     inference=inference, **kwargs)

    def predict(self, inputs: dict, data_samples=None) -> List[dict]:
        """One dict per question: its metadata (``question_id``, ``answers``, ...) and
        ``pred_answer``."""
        images = inputs['images']
        answers = self.answer_questions(images, inputs['input_ids'],
                                        inputs.get('attention_mask'))
        metas = split_meta(data_samples, images.shape[0])
        return [dict(metas[i], pred_answer=answers[i]) for i in range(len(answers))]

    def extract_feat(self, inputs: dict) -> Dict[str, torch.Tensor]:
        states, mask = self.encode_question(inputs['images'], inputs['input_ids'],
                                            inputs.get('attention_mask'))
        return dict(question_states=states, question_mask=mask)
