"""BLIP's VQA model (Li et al. 2022, "BLIP: Bootstrapping Language-Image Pre-training for
Unified Vision-Language Understanding and Generation", Sec. 5.3 / Fig. 5), i.e. ALBEF's
generative VQA (Li et al. 2021, "Align before Fuse", Sec. 5 / Fig. 3a) on BLIP's parts.

VQA is treated as answer *generation* (not classification over a fixed answer set):

- the **question encoder** is BLIP's image-grounded text encoder: the question, led by
  ``[ENC]``, cross-attends to the ViT image tokens in every layer (BLIP's ITM mode,
  :meth:`BLIP.fuse`);
- the **answer decoder** is a causal BERT led by ``[DEC]`` whose cross-attention reads the
  question encoder's output states (with the question's padding mask), *not* the image;
  it is separate from the encoder (no parameter sharing) and initialised from the
  pre-trained captioning decoder.

Training (BLIP / ALBEF): each question's answers are normalised and counted; every unique
answer ``a`` gets the weight ``count(a) / n_answers`` (VQAv2: 10 human answers); the
question states are repeated once per unique answer, the decoder scores
``[DEC] answer [SEP]`` and the loss is ``sum_answers weight * NLL(answer) / B`` where
``NLL`` is the per-sequence *sum* of the token cross-entropies.

Inference (``inference=``):

- ``'rank'`` (BLIP / ALBEF's evaluation on VQAv2): the decoder's first-token distribution
  given ``[DEC]`` scores every candidate of ``answer_list`` by the probability of its
  first token; the ``k_test`` best (BLIP: 128) are then scored by their full
  log-likelihood (sum of the token log-probabilities, ``[SEP]`` included) and the best one
  is the answer;
- ``'generate'``: open-ended decoding (beam search with 3 beams, at most 10 tokens, as
  BLIP's ``inference='generate'``) from ``[DEC]``.

State-dict layout is BLIP's (:class:`~vlp.models.BLIP`): ``vision.*`` (image encoder),
``text.*`` (question encoder = BLIP's text encoder), ``decoder.*`` + ``lm_head.*`` (answer
decoder = BLIP's text decoder), so a BLIP pre-training checkpoint loads with
``strict=False``; its ITC / ITM parts (projections, ITM head, momentum twins, queue,
temperature) are unexpected keys. With BLIP's parameter sharing the pre-training state
dict holds the shared tensors under both ``text.*`` and ``decoder.*``, which is how
BLIP's VQA initialises its two separate text transformers.

Simplifications / differences from the reference code:

- ``label_smoothing`` of the answer loss defaults to 0 (ALBEF; the paper states none);
  BLIP's released code computes it with its ``BertLMHeadModel``, which hard-codes
  label smoothing 0.1 (``label_smoothing=0.1`` reproduces it). Ranking always uses the
  exact log-likelihood (BLIP's code ranks with the smoothed loss).
- Answers are normalised with VQAv2's official ``normalize_answer`` (from
  :mod:`vlp.evaluation.metrics.vqa`) before counting; BLIP counts the raw strings of its pre-processed annotations.
- The answer decoder's cross-attention width is the text width (BLIP: ``encoder_width``
  of the MED config, 768); a pre-training checkpoint whose decoder cross-attends to a
  wider image encoder (ViT-L) does not fit it (BLIP drops those mismatched tensors).
- No key/value cache in generation (:mod:`vlp.models.utils.generation`); the ``k_test``
  candidates of all questions are scored in one batch (no chunking).
"""
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from vlp.evaluation.metrics.vqa import normalize_answer
from vlp.registry import MODELS
from ..utils.generation import generate as generate_ids
from .base import VLPModel, build_part
from .blip import BLIP
from .clip import _split_meta

# BLIP constructor keys that only the pre-training objectives use: accepted (so a BLIP
# config can be re-typed as BLIPVQA) and ignored
_BLIP_ONLY_KEYS = frozenset((
    'vision_proj', 'text_proj', 'itm_head', 'itc', 'caption_loss', 'share_decoder',
    'queue_size', 'queue_ids', 'queue_init', 'momentum_distill', 'alpha', 'itm_negatives',
    'prompt', 'prompt_in_loss', 'predict_mode', 'loss_weights'))


def answer_weights(answers: Sequence[str]) -> Tuple[List[str], List[float]]:
    """Unique normalised answers of one question (first-seen order) and their weights
    ``count / len(answers)`` (BLIP / ALBEF's VQA targets)."""
    norm = [normalize_answer(a) for a in answers]
    counts = Counter(norm)
    uniq = list(dict.fromkeys(norm))
    return uniq, [counts[a] / len(norm) for a in uniq]


@MODELS.register_module()
class BLIPVQA(BLIP):
    """BLIP VQA: image encoder, question encoder (BLIP's image-grounded text encoder) and
    answer decoder (causal, cross-attending to the question states).

    Args:
        vision: image encoder config (as :class:`BLIP`).
        text: question encoder, a :class:`BertEncoder` with cross-attention in every layer
            (as :class:`BLIP`'s ``text``).
        lm_head: the answer decoder's LM head (``MLMHead``, as :class:`BLIP`).
        decoder: overrides of the answer decoder's :class:`BertEncoder` config (default:
            the ``text`` config with ``cross_attention_dim`` = the text width, since it
            cross-attends to the question states).
        tie_lm_head: tie the LM head's output matrix to the decoder's word embeddings.
        label_smoothing: of the answer loss (0; BLIP's code: 0.1, see the module doc).
        inference: ``'rank'`` (candidate ranking over ``answer_list``) or ``'generate'``.
        answer_list: candidate answers of ``'rank'``: a list of strings, the path of a
            JSON list (BLIP's ``answer_list.json``: VQAv2's 3,128 frequent answers) or any
            form :func:`~vlp.models.algorithms.downstream.resolve_answer_list` reads (a
            dataset config such as ``dict(type='DemoVQA')``).
        k_test: candidates kept by the first-token pruning of ``'rank'`` (BLIP: 128).
        generation_cfg: decoding options of ``'generate'`` over BLIP's
            ``dict(num_beams=3, max_length=10, min_length=1)`` (lengths count ``[DEC]``).
        enc_token_id / dec_token_id: ids of ``[ENC]`` / ``[DEC]`` (default: looked up in
            the tokenizer).
        data_preprocessor, tokenizer, grad_checkpointing, init_cfg: see :class:`BLIP`.
        pretrained: a BLIP checkpoint (file or work directory) loaded when built (see
            :meth:`load_pretrained`); ``None``: none.
        **blip_keys: BLIP pre-training keys (``vision_proj``, ``itm_head``, ``queue_size``,
            ...), accepted so that a BLIP config can be re-typed, and ignored.
    """

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
        VLPModel.__init__(self, data_preprocessor=data_preprocessor, tokenizer=tokenizer,
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
        self.share_decoder = False
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
        """Load a BLIP pre-training checkpoint (file or work directory) non-strictly and
        loudly (:func:`~vlp.models.algorithms.downstream.load_pretrained_weights`): the
        pre-training-only parts are reported unused; a vocabulary extended with task tokens
        grows the word embeddings and the tied LM head (checkpoint rows copied)."""
        from .downstream import GROW_KEYS, load_pretrained_weights
        return load_pretrained_weights(
            self, path, grow_keys=GROW_KEYS + (r'^lm_head\.(decoder\.weight|bias)$',))

    @staticmethod
    def _check_inference(inference: str) -> None:
        if inference not in ('rank', 'generate'):
            raise ValueError(f"inference must be 'rank' or 'generate', got {inference!r}")

    def momentum_pairs(self) -> List[tuple]:
        return []  # no momentum encoders in VQA fine-tuning

    # -- candidate answers ------------------------------------------------------------------
    @property
    def answer_list(self) -> Optional[List[str]]:
        return self._answer_list

    @answer_list.setter
    def answer_list(self, value: Union[None, str, Sequence[str]]) -> None:
        from .downstream import resolve_answer_list  # JSON / txt file, list or dataset cfg
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
        """``[DEC] answer [SEP]`` ids and mask ``[N, T]`` (padded to the longest) on the
        model's device."""
        if self.tokenizer is None:
            raise RuntimeError('BLIPVQA needs a tokenizer to tokenise answers')
        enc = self.tokenizer(list(answers), padding='longest')
        ids = self._with_first(enc['input_ids'], self.dec_token_id)
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
        return self.fuse(input_ids, attention_mask, image_embeds), attention_mask

    def answer_logits(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
                      question_states: torch.Tensor, question_mask: torch.Tensor
                      ) -> torch.Tensor:
        """``[DEC]``-led answer ids ``[N, T]`` -> next-token logits ``[N, T, V]`` of the
        answer decoder, cross-attending to ``question_states [N, L, C]`` (padding masked
        by ``question_mask [N, L]``)."""
        hidden = self.decoder(input_ids, attention_mask, image_embeds=question_states,
                              image_mask=question_mask, is_causal=True)['text_embeds']
        return self.lm_head(hidden)

    def answer_nll(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   question_states: torch.Tensor, question_mask: torch.Tensor,
                   label_smoothing: float = 0.0) -> torch.Tensor:
        """Per-sequence negative log-likelihood ``[N]`` of ``[DEC] answer [SEP]``: the sum
        over the answer's tokens (``[SEP]`` included, padding excluded) of the
        (label-smoothed) cross-entropy; with ``label_smoothing=0`` it is minus the
        answer's log-likelihood."""
        logits = self.answer_logits(input_ids, attention_mask, question_states,
                                    question_mask)[:, :-1].float()
        labels = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
        tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                              ignore_index=-100, reduction='none',
                              label_smoothing=label_smoothing)
        return tok.view(labels.shape).sum(1)

    # -- training -----------------------------------------------------------------------------
    @staticmethod
    def _answers_of(data_samples) -> List[Sequence[str]]:
        if isinstance(data_samples, dict):
            answers = data_samples.get('answers')
        elif isinstance(data_samples, (list, tuple)):
            answers = [d.get('answers') for d in data_samples]
        else:
            answers = None
        if answers is None or any(a is None for a in answers):
            raise ValueError("BLIPVQA.loss needs data_samples['answers'] (a list of answer "
                             'lists, one per question)')
        return [[a] if isinstance(a, str) else list(a) for a in answers]

    def loss(self, inputs: dict, data_samples=None) -> Dict[str, torch.Tensor]:
        """Weighted answer LM loss of a batch: ``images``, ``input_ids`` /
        ``attention_mask`` (the tokenised questions) and ``data_samples['answers']``."""
        images, ids = inputs['images'], inputs['input_ids']
        answers = self._answers_of(data_samples)
        B = images.shape[0]
        if len(answers) != B:
            raise ValueError(f'{len(answers)} answer lists for {B} questions')
        q_states, q_mask = self.encode_question(images, ids, inputs.get('attention_mask'))
        texts, weights, counts = [], [], []
        for ans in answers:
            uniq, w = answer_weights(ans) if len(ans) else ([], [])
            texts += uniq
            weights += w
            counts.append(len(uniq))
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
        Q, A = question_states.shape[0], cand_ids.shape[0]
        k = min(int(k_test or self.k_test), A)
        start = cand_ids[:1, :1].expand(Q, 1)  # [DEC]
        first = self.answer_logits(start, None, question_states, question_mask)[:, 0]
        first_prob = first.float().softmax(-1).index_select(1, cand_ids[:, 1])  # (Q, A)
        _, topk = first_prob.topk(k, dim=1)  # (Q, k)
        flat = topk.reshape(-1)
        rows = torch.arange(Q, device=topk.device).repeat_interleave(k)
        loglik = -self.answer_nll(cand_ids[flat], cand_mask[flat], question_states[rows],
                                  question_mask[rows]).view(Q, k)
        return topk.gather(1, loglik.argmax(1, keepdim=True)).squeeze(1)

    @torch.no_grad()
    def generate_answers(self, question_states: torch.Tensor, question_mask: torch.Tensor,
                         **decoding) -> List[str]:
        """Open-ended answers decoded from ``[DEC]`` (BLIP: beam search, 3 beams, at most
        10 tokens); ``decoding`` as :func:`vlp.models.utils.generation.generate`."""
        tok = self.tokenizer
        if tok is None:
            raise RuntimeError('BLIPVQA generation needs a tokenizer')
        Q = question_states.shape[0]
        ids = torch.full((Q, 1), self.dec_token_id, dtype=torch.long,
                         device=question_states.device)

        def next_token_logits(seq: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.answer_logits(seq, None, question_states[rows],
                                      question_mask[rows])[:, -1].float()

        opts = dict(num_beams=3, max_length=10, min_length=1)
        opts.update(self.generation_cfg)
        opts.update(decoding)
        eos = getattr(tok, 'sep_token_id', None)
        eos = tok.eos_token_id if eos is None else eos
        out = generate_ids(next_token_logits, ids, eos_token_id=eos,
                           pad_token_id=tok.pad_token_id, **opts)
        return [tok.decode(row[1:].tolist()).strip() for row in out]

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
        metas = _split_meta(data_samples, images.shape[0])
        return [dict(metas[i], pred_answer=answers[i]) for i in range(len(answers))]

    def extract_feat(self, inputs: dict) -> Dict[str, torch.Tensor]:
        states, mask = self.encode_question(inputs['images'], inputs['input_ids'],
                                            inputs.get('attention_mask'))
        return dict(question_states=states, question_mask=mask)
