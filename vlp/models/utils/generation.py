"""Model-agnostic autoregressive decoding: greedy, sampling, beam search, beam sampling.

:func:`generate` drives any decoder through one callable::

    next_token_logits(ids, rows) -> logits      # ids [N, T] long, rows [N] long -> [N, V]

which returns the logits of the token that follows each row of ``ids``. ``rows[n]`` is the
index in ``[0, B)`` of the batch item that hypothesis ``n`` belongs to, so the caller can
pick its per-item context (``image_embeds[rows]``). BLIP, BLIP's VQA and CoCa share it
through :func:`generate_ids`, which builds both callables from one ``logits(ids, context,
context_mask, cache)`` of the family; the prompt is whatever the caller puts in
``input_ids`` (BLIP: ``[DEC] a picture of``; CoCa: the start-of-text token).

**Key/value cache** (the default where the decoder gives one): a second callable::

    step(new_ids, rows, cache) -> logits        # new_ids [N, t] long, cache: DecodingCache

runs only the tokens not yet in ``cache`` (the whole prompt at the first step, then the
last token), at positions ``cache.length ...``. Its self-attention layers keep their keys
and values in the cache, its cross-attention layers compute the keys and values of each
batch item's context (image tokens) once, at the first step. Between steps the loop
reorders the cache to the hypotheses it keeps (the chosen beams, the unfinished rows) and
tells it which item each hypothesis reads (``DecodingCache.route``: all beams of an item
read its keys/values in one pass, never copied per beam). ``use_cache=False`` runs
``next_token_logits`` instead, which recomputes the whole prefix at every step (O(T^2)
attention, every image's keys/values at every step): the reference the cached path is
tested against, token for token. Either way, rows that cannot change the result any more
are not recomputed: finished rows of greedy/sampling and batch items whose beam search is
over.

Semantics follow Hugging Face ``transformers.GenerationMixin.generate`` token for token
(checked against transformers 5.25, the version locked in requirements/constraints.txt; the
tests compare with it). In detail:

* Lengths: ``max_length`` / ``min_length`` count the prompt; ``max_new_tokens`` overrides
  ``max_length`` with ``L0 + max_new_tokens``. EOS is forbidden (logit ``-inf``) while the
  current length is ``< min_length``.
* Logits processing, in this order: repetition penalty (every token present anywhere in the
  sequence, prompt included; positive scores divided by the penalty, negative multiplied),
  min-length; then, only when ``do_sample``: temperature, top-k, top-p (nucleus: the
  smallest set of most likely tokens whose mass reaches ``top_p``; tokens whose ascending
  cumulative mass is ``<= 1 - top_p`` are removed). Greedy and plain sampling process the
  raw logits; beam search and beam sampling process the *log-softmax* of the logits (so,
  as in HF, the repetition penalty multiplies log-probabilities and, with beam sampling,
  temperature divides log-probabilities). top-k / top-p keep at least 1 token (plain
  sampling) or ``len(eos) + 1`` tokens (beam sampling). ``temperature``, ``top_k`` and
  ``top_p`` are ignored when ``do_sample`` is False.
* Greedy / sampling: argmax / one multinomial draw per row on ``softmax(scores)``; once a
  row emits an EOS it is padded with ``pad_token_id``; decoding stops when every row is
  finished or the length reaches ``max_length``. Sampling with ``num_return_sequences``
  draws the rows of one item independently (input repeated, rows of item b contiguous).
* Beam search: each item keeps ``num_beams`` running beams (initially only beam 0 is live:
  the others start at ``-1e9``) and ``num_beams`` finished hypotheses. Per step the
  ``K = max(2, 1 + n_eos) * num_beams`` best continuations of the summed log-probabilities
  (drawn without replacement from ``softmax`` of them under beam sampling, then sorted by
  score) are taken; those ending in EOS, or reaching ``max_length``, are finished
  candidates, but only if ranked in the first ``num_beams`` of the K; the best
  ``num_beams`` unfinished continuations keep running. Beam sampling ranks the K draws by
  their summed log-probability, as transformers <= 4.49 (``beam_sample``) and >= 5.24 do;
  transformers 4.50-5.23 ranked them in the order drawn, so an EOS drawn early but scored
  low could finish a hypothesis there (and the same seed gives other samples). A finished candidate is scored ``sum_logprobs / n_gen ** length_penalty`` where
  ``n_gen`` is the number of *generated* tokens, EOS included, prompt excluded (versions of
  transformers before 4.50 divided by other lengths), and enters the finished set if it
  beats its worst member. Sequences that reach ``max_length`` without EOS are finished the
  same way and are returned without EOS. An item stops accepting hypotheses when (a)
  ``early_stopping is True`` and it has ``num_beams`` finished ones, or (b) the best running
  score divided by ``n ** length_penalty`` cannot beat the worst finished score, with
  ``n = max_length - L0`` when ``early_stopping == "never"`` and ``length_penalty > 0``, the
  current generated length otherwise (HF's heuristic, also applied when
  ``early_stopping is True``). The search ends when no item can improve, or (globally)
  every item is full under ``early_stopping=True``, or every candidate hit a stop. The best
  ``num_return_sequences`` finished hypotheses of each item are returned, best first,
  cropped to the longest of them.
* ``num_beams == 1`` with ``do_sample=False`` is greedy decoding (as in HF).

Deviations from HF (documented, tested):

* Output padding is always ``pad_token_id``. (HF's beam search fills with
  ``pad_token_id or eos_token_id[0]``, i.e. with EOS when ``pad_token_id == 0``.)
* Only the arguments of the signature are supported (no ``bad_words_ids``, no-repeat
  n-grams, forced tokens, ...), ``eos_token_id`` and ``pad_token_id`` are required, and all
  rows share one prompt length (no left padding / attention mask).
* Greedy decoding with ``num_return_sequences > 1`` raises (as HF does); so does
  ``num_return_sequences > num_beams`` for beam search.
"""
import collections.abc
from numbers import Integral
from typing import Callable, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..layers.attention import DecodingCache

__all__ = ['generate', 'generate_ids', 'eos_pad_ids', 'decode_texts', 'DecodingCache']

_NEG = -1.0e9  # "impossible" score used by the beam bookkeeping (HF uses the same value)

NextTokenLogits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CachedStep = Callable[[torch.Tensor, torch.Tensor, DecodingCache], torch.Tensor]
#: ``(ids, context, context_mask, cache) -> logits [N, T, V]`` (see :func:`generate_ids`)
ContextLogits = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor],
                          Optional[DecodingCache]], torch.Tensor]


def _is_int(x) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def _check_args(input_ids, eos_token_id, pad_token_id, max_length, min_length, max_new_tokens,
                num_beams, do_sample, top_k, top_p, temperature, repetition_penalty,
                length_penalty, early_stopping, num_return_sequences):
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError('`input_ids` must be a [B, L0] tensor, got '
                         f'{getattr(input_ids, "shape", type(input_ids))}')
    if input_ids.dtype != torch.long:
        raise ValueError(f'`input_ids` must be torch.long, got {input_ids.dtype}')
    if input_ids.shape[0] < 1 or input_ids.shape[1] < 1:
        raise ValueError(f'`input_ids` needs at least one row and one prompt token, got shape '
                         f'{tuple(input_ids.shape)}')
    if isinstance(eos_token_id, torch.Tensor):
        eos_token_id = eos_token_id.tolist()
    if _is_int(eos_token_id):
        eos = [int(eos_token_id)]
    else:
        is_seq = isinstance(eos_token_id, collections.abc.Sequence) and not isinstance(eos_token_id, str)
        eos = list(eos_token_id) if is_seq else []
        if not eos or not all(_is_int(e) for e in eos):
            raise ValueError(f'`eos_token_id` must be an int or a non-empty sequence of ints, '
                             f'got {eos_token_id!r}')
        eos = [int(e) for e in eos]
    if any(e < 0 for e in eos):
        raise ValueError(f'`eos_token_id` must be non-negative, got {eos}')
    if not _is_int(pad_token_id) or pad_token_id < 0:
        raise ValueError(f'`pad_token_id` must be a non-negative int, got {pad_token_id!r}')
    prompt_len = input_ids.shape[1]
    if max_new_tokens is not None:
        if not _is_int(max_new_tokens) or max_new_tokens < 1:
            raise ValueError(f'`max_new_tokens` must be a positive int, got {max_new_tokens!r}')
        max_length = prompt_len + int(max_new_tokens)
    if not _is_int(max_length):
        raise ValueError(f'`max_length` must be an int, got {max_length!r}')
    if max_length <= prompt_len:
        raise ValueError(f'`max_length` ({max_length}) must exceed the prompt length ({prompt_len}): '
                         'it counts the prompt; increase it or set `max_new_tokens`')
    if not _is_int(min_length) or min_length < 0:
        raise ValueError(f'`min_length` must be a non-negative int, got {min_length!r}')
    if not _is_int(num_beams) or num_beams < 1:
        raise ValueError(f'`num_beams` must be a positive int, got {num_beams!r}')
    if not _is_int(num_return_sequences) or num_return_sequences < 1:
        raise ValueError(f'`num_return_sequences` must be a positive int, got {num_return_sequences!r}')
    if num_beams == 1 and not do_sample and num_return_sequences > 1:
        raise ValueError('greedy decoding (num_beams=1, do_sample=False) returns one sequence per item; '
                         f'got num_return_sequences={num_return_sequences}')
    if num_beams > 1 and num_return_sequences > num_beams:
        raise ValueError(f'`num_return_sequences` ({num_return_sequences}) must be <= `num_beams` '
                         f'({num_beams})')
    if not _is_int(top_k) or top_k < 0:
        raise ValueError(f'`top_k` must be a non-negative int (0 disables it), got {top_k!r}')
    if not (0.0 < float(top_p) <= 1.0):
        raise ValueError(f'`top_p` must be in (0, 1], got {top_p!r}')
    if not float(temperature) > 0.0:
        raise ValueError(f'`temperature` must be > 0 (use do_sample=False for greedy), got {temperature!r}')
    if not float(repetition_penalty) > 0.0:
        raise ValueError(f'`repetition_penalty` must be > 0, got {repetition_penalty!r}')
    if not (early_stopping is True or early_stopping is False or early_stopping == 'never'):
        raise ValueError(f'`early_stopping` must be True, False or "never", got {early_stopping!r}')
    return eos, int(max_length)


def _process(ids: torch.Tensor, scores: torch.Tensor, *, eos: torch.Tensor, min_length: int,
             repetition_penalty: float, do_sample: bool, temperature: float, top_k: int,
             top_p: float, min_keep: int) -> torch.Tensor:
    """Applies the processors to the next-token ``scores`` [N, V] of ``ids`` [N, T], in HF's order."""
    vocab = scores.shape[-1]
    if repetition_penalty != 1.0:
        # one extra column absorbs prompt ids outside the output vocabulary (never penalised)
        padded = F.pad(scores, (0, 1))
        seen = ids.clamp(max=vocab)
        s = padded.gather(1, seen)
        s = torch.where(s < 0, s * repetition_penalty, s / repetition_penalty)
        scores = padded.scatter(1, seen, s)[:, :vocab]
    if ids.shape[1] < min_length:
        scores = scores.clone()
        scores[:, eos] = float('-inf')
    if not do_sample:
        return scores
    if temperature != 1.0:
        scores = scores / temperature
    if top_k > 0:
        k = min(max(top_k, min_keep), vocab)
        kth = scores.topk(k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float('-inf'))
    if top_p < 1.0:
        ascending, order = scores.sort(dim=-1)
        mass_below = ascending.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = mass_below <= 1.0 - top_p
        drop_sorted[:, -min_keep:] = False
        drop = drop_sorted.scatter(1, order, drop_sorted)
        scores = scores.masked_fill(drop, float('-inf'))
    return scores


class _Stepper:
    """Runs the decoder on the live hypotheses of a step: uncached, ``logits_fn(ids, rows)``
    on whole sequences; cached, ``step_fn(new_ids, rows, cache)`` on the tokens not yet in
    the :class:`DecodingCache`, after reordering it. ``parent[n]``: the position, among the
    hypotheses of the previous call, of the one that hypothesis ``n`` extends (``None``:
    the same hypotheses in the same order)."""

    def __init__(self, logits_fn: Optional[NextTokenLogits], step_fn: Optional[CachedStep],
                 n_items: int):
        self.logits_fn, self.step_fn, self.n_items = logits_fn, step_fn, n_items
        self.cache = DecodingCache() if step_fn is not None else None
        self.vocab = None

    def __call__(self, ids: torch.Tensor, rows: torch.Tensor,
                 parent: Optional[torch.Tensor]) -> torch.Tensor:
        cache = self.cache
        if cache is None:
            logits = self.logits_fn(ids, rows)
        else:
            if parent is not None and cache.length:
                cache.reorder(parent)
            cache.route(rows, self.n_items)
            logits = self.step_fn(ids[:, cache.length:], rows, cache)
            cache.length = ids.shape[1]
        vocab = self.vocab
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 \
                or logits.shape[0] != ids.shape[0] or (vocab is not None and logits.shape[1] != vocab):
            raise ValueError(f'next_token_logits must return [N={ids.shape[0]}, V] logits'
                             + (f' with V={vocab}' if vocab is not None else '')
                             + f', got {getattr(logits, "shape", type(logits))}')
        self.vocab = logits.shape[1]
        return logits.float()


def _positions(prev: torch.Tensor, now: torch.Tensor, n: int) -> Optional[torch.Tensor]:
    """Positions in ``prev`` of the indices ``now`` (a subset), ``None`` if the same."""
    if now.numel() == prev.numel():
        return None
    pos = torch.full((n,), -1, dtype=torch.long, device=now.device)
    pos[prev] = torch.arange(prev.numel(), device=now.device)
    return pos[now]


def _greedy_or_sample(step, input_ids, *, eos, pad_token_id, max_length, do_sample,
                      num_return_sequences, generator, proc):
    if not isinstance(step, _Stepper):  # a plain next_token_logits
        step = _Stepper(step, None, input_ids.shape[0])
    batch = input_ids.shape[0]
    device = input_ids.device
    ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
    rows = torch.arange(batch, device=device).repeat_interleave(num_return_sequences)
    n = ids.shape[0]
    unfinished = torch.ones(n, dtype=torch.bool, device=device)
    vocab = None
    prev = None
    while ids.shape[1] < max_length:
        live = unfinished.nonzero().squeeze(1)
        logits = step(ids[live], rows[live], None if prev is None else _positions(prev, live, n))
        prev = live
        vocab = logits.shape[1]
        if vocab <= int(eos.max()):
            raise ValueError(f'eos_token_id {eos.tolist()} outside the vocabulary of size {vocab}')
        scores = logits.new_zeros(n, vocab)  # finished rows: any finite values, their token is replaced
        scores[live] = proc(ids[live], logits)
        if do_sample:
            # one draw for every row (finished ones included): the random stream consumed does
            # not depend on which rows are finished, as in HF
            nxt = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
        else:
            nxt = scores.argmax(dim=-1)
        nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad_token_id))
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        unfinished &= ~torch.isin(nxt, eos)
        if not bool(unfinished.any()):
            break
    return ids


def _beam_search(step, input_ids, *, eos, pad_token_id, max_length, num_beams, do_sample,
                 length_penalty, early_stopping, num_return_sequences, generator, proc):
    if not isinstance(step, _Stepper):  # a plain next_token_logits
        step = _Stepper(step, None, input_ids.shape[0])
    batch, prompt_len = input_ids.shape
    device = input_ids.device
    nb = num_beams
    n_cand = max(2, 1 + eos.numel()) * nb  # enough candidates to keep nb unfinished beams
    top_nb = torch.arange(n_cand, device=device) < nb  # only these may become finished
    es_true = early_stopping is True

    running = torch.full((batch, nb, max_length), pad_token_id, dtype=torch.long, device=device)
    running[:, :, :prompt_len] = input_ids[:, None]
    run_scores = torch.zeros(batch, nb, device=device)
    run_scores[:, 1:] = _NEG  # all beams are equal at first: expand from beam 0 only
    fin = running.clone()
    fin_scores = torch.full((batch, nb), _NEG, device=device)
    fin_mask = torch.zeros(batch, nb, dtype=torch.bool, device=device)
    fin_len = torch.zeros(batch, nb, dtype=torch.long, device=device)  # generated tokens
    improvable = torch.ones(batch, dtype=torch.bool, device=device)
    all_rows = torch.arange(batch, device=device).repeat_interleave(nb)
    ar_b = torch.arange(batch, device=device)[:, None]
    vocab = None
    cur = prompt_len
    prev = parent = None  # the hypotheses of the last call; where each running beam came from
    while True:
        # items whose finished set is frozen: no need to run the model on their beams
        done = ~improvable | (fin_mask.all(dim=1) & es_true)
        flat = running[:, :, :cur].reshape(batch * nb, cur)
        live = (~done).repeat_interleave(nb).nonzero().squeeze(1)
        if prev is not None:  # positions, among the last call's rows, of the beams' parents
            pos = torch.full((batch * nb,), -1, dtype=torch.long, device=device)
            pos[prev] = torch.arange(prev.numel(), device=device)
            parent = pos[parent[live]]
        logits = step(flat[live], all_rows[live], parent)
        prev = live
        vocab = logits.shape[1]
        if vocab <= int(eos.max()):
            raise ValueError(f'eos_token_id {eos.tolist()} outside the vocabulary of size {vocab}')
        logp = logits.new_zeros(batch * nb, vocab)
        logp[live] = proc(flat[live], logits.log_softmax(dim=-1))
        total = (logp.view(batch, nb, vocab) + run_scores[:, :, None]).view(batch, nb * vocab)

        if do_sample:
            cand = torch.multinomial(total.softmax(dim=-1), n_cand, generator=generator)
            cand_scores = total.gather(1, cand)
            # rank the drawn candidates by score: "the first nb" below means the nb best of
            # the draws, not the first nb drawn (HF <= 4.49 and >= 5.24; see the docstring)
            cand_scores, order = cand_scores.sort(dim=-1, descending=True)
            cand = cand.gather(1, order)
        else:
            cand_scores, cand = total.topk(n_cand, dim=-1)
        src_beam, token = cand // vocab, cand % vocab
        cand_seqs = running[ar_b, src_beam]  # [B, K, max_length] (a copy)
        cand_seqs[:, :, cur] = token
        n_gen = cur + 1 - prompt_len
        stops = torch.isin(token, eos) | (cur + 1 >= max_length)  # [B, K]

        # running beams for the next step: the best nb candidates that did not stop
        masked = cand_scores + stops.float() * _NEG
        keep = masked.topk(nb, dim=-1).indices
        running = cand_seqs[ar_b, keep]
        run_scores = masked.gather(1, keep)
        parent = (ar_b * nb + src_beam.gather(1, keep)).view(-1)  # flat index of the parent

        # finished hypotheses: merge the stopped candidates ranked in the first nb
        new_fin = stops & top_nb
        cand_fin = cand_scores / (n_gen ** length_penalty)
        cand_fin = cand_fin + (fin_mask.all(dim=1, keepdim=True) & es_true).float() * _NEG
        cand_fin = cand_fin + (~improvable[:, None]).float() * _NEG
        cand_fin = cand_fin + (~new_fin).float() * _NEG
        m_scores = torch.cat([fin_scores, cand_fin], dim=1)
        best = m_scores.topk(nb, dim=-1).indices
        upd = (~done)[:, None]  # frozen items keep their finished set as is
        fin = torch.where(upd[:, :, None], torch.cat([fin, cand_seqs], dim=1)[ar_b, best], fin)
        fin_scores = torch.where(upd, m_scores.gather(1, best), fin_scores)
        fin_mask = torch.where(upd, torch.cat([fin_mask, new_fin], dim=1).gather(1, best), fin_mask)
        fin_len = torch.where(upd, torch.cat([fin_len, torch.full_like(cand, n_gen)], dim=1).gather(1, best),
                              fin_len)

        cur += 1
        # can the best running beam still beat the worst finished hypothesis?
        if early_stopping == 'never' and length_penalty > 0.0:
            hyp_len = max_length - prompt_len
        else:
            hyp_len = cur - prompt_len
        best_running = run_scores[:, :1] / (hyp_len ** length_penalty)
        worst_fin = torch.where(fin_mask, fin_scores.min(dim=1, keepdim=True).values,
                                torch.full_like(fin_scores, _NEG))
        improvable = improvable & (best_running > worst_fin).any(dim=1)
        if not bool(improvable.any()) or (es_true and bool(fin_mask.all())) or bool(stops.all()):
            break

    out = fin[:, :num_return_sequences].reshape(batch * num_return_sequences, max_length)
    length = prompt_len + int(fin_len[:, :num_return_sequences].max())
    return out[:, :length]


@torch.no_grad()
def generate(next_token_logits: NextTokenLogits,
             input_ids: torch.Tensor,
             *, eos_token_id: Union[int, Sequence[int]],
             pad_token_id: int,
             max_length: int = 30,
             min_length: int = 0,
             max_new_tokens: Optional[int] = None,
             num_beams: int = 1, do_sample: bool = False,
             top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0,
             repetition_penalty: float = 1.0, length_penalty: float = 1.0,
             early_stopping: Union[bool, str] = False, num_return_sequences: int = 1,
             generator: Optional[torch.Generator] = None,
             cached_step: Optional[CachedStep] = None, use_cache: bool = True) -> torch.Tensor:
    """Autoregressive decoding with HF ``generate`` semantics (see the module docstring).

    Args:
        next_token_logits: ``(ids [N, T], rows [N]) -> [N, V]`` logits of the next token;
            ``rows[n]`` in ``[0, B)`` is the batch item of hypothesis ``n``. Recomputes the
            prefix: the uncached reference (may be ``None`` when ``cached_step`` runs).
        input_ids: [B, L0] long prompt, same length for all rows.
        eos_token_id: one id or a sequence of ids that end a sequence.
        pad_token_id: fills the positions after EOS.
        max_length: total length including the prompt.
        min_length: total length (prompt included) before which EOS cannot be emitted.
        max_new_tokens: if given, ``max_length = L0 + max_new_tokens``.
        num_beams: 1 = greedy / sampling; > 1 = beam search (beam sampling if ``do_sample``).
        do_sample: sample from the processed distribution instead of taking the best.
        top_k, top_p, temperature: sampling warpers (ignored unless ``do_sample``);
            ``top_k=0`` and ``top_p=1`` disable them.
        repetition_penalty: CTRL-style penalty on every token already in the sequence.
        length_penalty: exponent of the generated length dividing a finished beam's score.
        early_stopping: True / False / ``"never"`` (beam search only, HF semantics).
        num_return_sequences: sequences returned per item (<= num_beams for beam search;
            independent draws for sampling; must be 1 for greedy).
        generator: torch.Generator for the random draws (default: torch's global one).
        cached_step: ``(new_ids [N, t], rows [N], cache) -> [N, V]``: the same logits from
            the tokens not yet in ``cache`` (a :class:`DecodingCache`), used when
            ``use_cache`` (the default).
        use_cache: decode with ``cached_step`` when given; False: ``next_token_logits``.

    Returns:
        [B * num_return_sequences, L] long, L <= max_length: full sequences including the
        prompt, the rows of item b contiguous (best beam first), EOS kept and followed by
        ``pad_token_id``.
    """
    eos_list, max_length = _check_args(
        input_ids, eos_token_id, pad_token_id, max_length, min_length, max_new_tokens, num_beams,
        do_sample, top_k, top_p, temperature, repetition_penalty, length_penalty, early_stopping,
        num_return_sequences)
    eos = torch.tensor(eos_list, dtype=torch.long, device=input_ids.device)
    beam = num_beams > 1
    cached = cached_step is not None and use_cache
    if not cached and next_token_logits is None:
        raise ValueError('use_cache=False needs next_token_logits (the uncached decoder)')
    step = _Stepper(None if cached else next_token_logits, cached_step if cached else None,
                    input_ids.shape[0])

    def proc(ids, scores):
        return _process(ids, scores, eos=eos, min_length=min_length,
                        repetition_penalty=float(repetition_penalty), do_sample=do_sample,
                        temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                        min_keep=eos.numel() + 1 if beam else 1)

    if not beam:
        return _greedy_or_sample(
            step, input_ids, eos=eos, pad_token_id=pad_token_id,
            max_length=max_length, do_sample=do_sample, num_return_sequences=num_return_sequences,
            generator=generator, proc=proc)
    return _beam_search(
        step, input_ids, eos=eos, pad_token_id=pad_token_id, max_length=max_length,
        num_beams=num_beams, do_sample=do_sample, length_penalty=float(length_penalty),
        early_stopping=early_stopping, num_return_sequences=num_return_sequences,
        generator=generator, proc=proc)


def generate_ids(logits: ContextLogits, context: torch.Tensor, prompt_ids: Sequence[int],
                 eos_token_id: Union[int, Sequence[int]], pad_token_id: int, *options: dict,
                 context_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`generate` for a decoder over a per-item ``context [B, N, C]`` (image tokens,
    question states; ``context_mask [B, N]``) from ``prompt_ids`` (the same for every
    item), with ``options`` (dicts of :func:`generate`'s arguments, ``use_cache``
    included) merged left to right: a family's defaults, its ``generation_cfg``, the
    call's own. ``logits(ids, context, context_mask, cache) -> [N, T, V]``: without a
    cache, every hypothesis's full prefix and its item's rows of the context; with one,
    the new ids and the whole batch's context (the cache computes its keys/values once and
    routes each hypothesis to its item). Returns the sequences ``[B *
    num_return_sequences, L]``, prompt included."""
    opts = {}
    for o in options:
        opts.update(o)

    def next_token_logits(seq: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        mask = None if context_mask is None else context_mask[rows]
        return logits(seq, context[rows], mask, None)[:, -1].float()

    def cached_step(new: torch.Tensor, rows: torch.Tensor, cache) -> torch.Tensor:
        return logits(new, context, context_mask, cache)[:, -1].float()

    ids = torch.tensor(list(prompt_ids), dtype=torch.long,
                       device=context.device).repeat(context.shape[0], 1)
    return generate(next_token_logits, ids, eos_token_id=eos_token_id,
                    pad_token_id=pad_token_id, cached_step=cached_step, **opts)


def eos_pad_ids(tokenizer, eos_token_id: Optional[int], pad_token_id: Optional[int],
                family: str, eos_name: str = 'eos_token_id'):
    """``(eos, pad)``: the ids given, else the tokenizer's ``eos_name`` / ``pad_token_id``."""
    if eos_token_id is None or pad_token_id is None:
        if tokenizer is None:
            raise RuntimeError(f'{family}.generate_ids needs a tokenizer or eos/pad ids')
        eos_token_id = getattr(tokenizer, eos_name) if eos_token_id is None else eos_token_id
        pad_token_id = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
    return eos_token_id, pad_token_id


def decode_texts(tokenizer, ids: torch.Tensor, prompt_len: int) -> List[str]:
    """The texts of :func:`generate_ids`' rows without their first ``prompt_len`` tokens."""
    return [tokenizer.decode(row[prompt_len:].tolist()).strip() for row in ids]
