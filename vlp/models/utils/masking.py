"""Token masking for masked language modelling (BERT, Devlin et al. 2019, Sec. 3.1;
as ALBEF / BLIP / VLMo use it): each candidate token is chosen with probability
``mlm_probability`` (0.15); a chosen token becomes ``[MASK]`` with probability 0.8, a
random vocabulary token with 0.1 and stays unchanged with 0.1. Labels are the original ids
at chosen positions and ``-100`` (ignored by cross-entropy) elsewhere.
"""
import math
from typing import Iterable, List, Optional, Sequence, Tuple

import torch


class MLMTokenIds:
    """The ids MLM masking needs, resolved once, on first use: ``mask_token_id``,
    ``special_ids`` (never masked; padding positions never are either) and ``vocab_size``
    (random replacements) as given, else the tokenizer's ``[MASK]``, its ids named in
    ``special_tokens`` (``[0]`` without a tokenizer) and the MLM head's output size."""

    def __init__(self, mask_token_id: Optional[int] = None,
                 special_ids: Optional[Sequence[int]] = None, vocab_size: Optional[int] = None,
                 special_tokens: Sequence[str] = ('pad_token_id', 'cls_token_id')):
        self.mask_token_id, self.special_ids = mask_token_id, special_ids
        self.vocab_size, self.special_tokens = vocab_size, tuple(special_tokens)

    def resolve(self, tokenizer, mlm_head, family: str) -> Tuple[int, List[int], int]:
        """``(mask_token_id, special_ids, vocab_size)``; ``family`` names the model in the
        error raised when no ``[MASK]`` id is known."""
        if self.mask_token_id is None:
            self.mask_token_id = getattr(tokenizer, 'mask_token_id', None)
            if self.mask_token_id is None:
                raise ValueError(f'{family} MLM needs mask_token_id (or a tokenizer with '
                                 '[MASK])')
        if self.special_ids is None:
            self.special_ids = [0] if tokenizer is None else [
                i for i in (getattr(tokenizer, n, None) for n in self.special_tokens)
                if i is not None]
        self.vocab_size = self.vocab_size or mlm_head.decoder.out_features
        return self.mask_token_id, list(self.special_ids), self.vocab_size


def mask_tokens(input_ids: torch.Tensor, mask_token_id: int, vocab_size: int,
                mlm_probability: float = 0.15, special_ids: Iterable[int] = (),
                attention_mask: Optional[torch.Tensor] = None,
                mask_ratio: float = 0.8, random_ratio: float = 0.1,
                generator: Optional[torch.Generator] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mask ``input_ids [B, L]`` for MLM.

    Args:
        input_ids: token ids.
        mask_token_id: id of ``[MASK]``.
        vocab_size: random replacements are drawn uniformly from ``[0, vocab_size)`` (as
            BERT and ALBEF).
        mlm_probability: chance that a candidate token is chosen.
        special_ids: ids never chosen (ALBEF: ``[PAD]`` and ``[CLS]``; BERT's data code
            also excludes ``[SEP]``).
        attention_mask: ``[B, L]``; padded positions are never chosen.
        mask_ratio / random_ratio: of the chosen tokens, the share replaced by ``[MASK]``
            and by a random token (the rest stays unchanged).
        generator: RNG (default: the global one of ``input_ids``' device).

    Returns:
        ``(masked_ids, labels)``, both ``[B, L]``; ``labels`` is ``-100`` where not chosen.
    """
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f'mlm_probability must be in [0, 1], got {mlm_probability}')
    if mask_ratio + random_ratio > 1.0:
        raise ValueError('mask_ratio + random_ratio must be at most 1')
    device = input_ids.device

    def draw(p: float) -> torch.Tensor:
        return torch.rand(input_ids.shape, device=device, generator=generator) < p

    candidates = torch.ones_like(input_ids, dtype=torch.bool)
    for sid in special_ids:
        if sid is not None:
            candidates &= input_ids != sid
    if attention_mask is not None:
        candidates &= attention_mask.bool()
    chosen = draw(mlm_probability) & candidates
    labels = input_ids.masked_fill(~chosen, -100)
    to_mask = chosen & draw(mask_ratio)
    # of the rest, random_ratio / (1 - mask_ratio) become random tokens
    rest = 1.0 - mask_ratio
    to_random = chosen & ~to_mask & draw(random_ratio / rest if rest > 0 else 0.0)
    masked = input_ids.masked_fill(to_mask, mask_token_id)
    random_ids = torch.randint(vocab_size, input_ids.shape, device=device, generator=generator,
                               dtype=input_ids.dtype)
    masked = torch.where(to_random, random_ids, masked)
    return masked, labels


def block_wise_mask(batch_size: int, grid: Tuple[int, int], num_masking_patches: int,
                    min_num_patches: int = 16, max_num_patches: Optional[int] = None,
                    min_aspect: float = 0.3, max_aspect: Optional[float] = None,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """BEiT's block-wise masking of image patches (Bao et al. 2022, "BEiT: BERT
    Pre-Training of Image Transformers", Algorithm 1): rectangles of at least
    ``min_num_patches`` patches with a log-uniform aspect ratio in ``[min_aspect,
    max_aspect]`` (default ``1 / min_aspect``) are masked until ``num_masking_patches`` of
    the grid are (BEiT: 75 of 14 x 14, min 16, aspect 0.3); a block never takes the count
    above the target, and after ten failed placements the mask stays smaller.

    Returns:
        bool ``[batch_size, H * W]`` (row-major, True = masked).
    """
    H, W = grid
    if not 0 <= num_masking_patches <= H * W:
        raise ValueError(f'num_masking_patches must be in [0, {H * W}], got '
                         f'{num_masking_patches}')
    max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
    max_aspect = max_aspect or 1.0 / min_aspect
    log_ratio = (math.log(min_aspect), math.log(max_aspect))

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand((), generator=generator).item()

    def randint(lo: int, hi: int) -> int:  # inclusive, as random.randint
        return int(torch.randint(lo, hi + 1, (), generator=generator))

    masks = torch.zeros(batch_size, H, W, dtype=torch.bool)
    for b in range(batch_size):
        mask = masks[b]
        count = 0
        while count < num_masking_patches:
            budget = min(num_masking_patches - count, max_num_patches)
            added = 0
            for _ in range(10):
                area = uniform(min_num_patches, budget)
                ratio = math.exp(uniform(*log_ratio))
                h = int(round(math.sqrt(area * ratio)))
                w = int(round(math.sqrt(area / ratio)))
                if w < W and h < H:
                    top, left = randint(0, H - h), randint(0, W - w)
                    block = mask[top:top + h, left:left + w]
                    new = h * w - int(block.sum())
                    if 0 < new <= budget:
                        block.fill_(True)
                        added = new
                if added:
                    break
            if not added:
                break
            count += added
    return masks.flatten(1)


def mask_whole_words(input_ids: torch.Tensor, word_ids: torch.Tensor, mask_token_id: int,
                     vocab_size: int, mlm_probability: float = 0.15,
                     special_ids: Iterable[int] = (),
                     attention_mask: Optional[torch.Tensor] = None,
                     mask_ratio: float = 0.8, random_ratio: float = 0.1,
                     generator: Optional[torch.Generator] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Whole-word masking of ``input_ids [B, L]`` (BERT's WWM, ViLT Sec. 3.3): each word
    (a run of tokens sharing a ``word_ids`` value >= 0 in one row) is chosen with probability
    ``mlm_probability``, and then every one of its tokens is a target; a target token becomes
    ``[MASK]`` with ``mask_ratio``, a random id with ``random_ratio``, else stays. Tokens
    with ``word_ids < 0`` (special tokens, padding), ``special_ids`` or ``attention_mask == 0``
    are never chosen. Returns ``(masked_ids, labels)`` (``labels`` -100 off target)."""
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f'mlm_probability must be in [0, 1], got {mlm_probability}')
    if word_ids.shape != input_ids.shape:
        raise ValueError(f'word_ids {tuple(word_ids.shape)} != input_ids '
                         f'{tuple(input_ids.shape)}')
    device = input_ids.device
    word_ids = word_ids.to(device).long()
    candidates = word_ids >= 0
    for sid in special_ids:
        if sid is not None:
            candidates &= input_ids != sid
    if attention_mask is not None:
        candidates &= attention_mask.bool()
    num_words = int(word_ids.max().item()) + 1 if word_ids.numel() else 0
    pick = torch.rand((input_ids.shape[0], max(num_words, 1)), device=device,
                      generator=generator) < mlm_probability  # (B, W): one draw per word
    chosen = pick.gather(1, word_ids.clamp(min=0)) & candidates  # (B, L)
    labels = input_ids.masked_fill(~chosen, -100)

    def draw(p: float) -> torch.Tensor:
        return torch.rand(input_ids.shape, device=device, generator=generator) < p

    to_mask = chosen & draw(mask_ratio)
    rest = 1.0 - mask_ratio
    to_random = chosen & ~to_mask & draw(random_ratio / rest if rest > 0 else 0.0)
    random_ids = torch.randint(vocab_size, input_ids.shape, device=device, generator=generator,
                               dtype=input_ids.dtype)
    masked = torch.where(to_random, random_ids, input_ids.masked_fill(to_mask, mask_token_id))
    return masked, labels
