"""Token masking for masked language modelling (BERT, Devlin et al. 2019, Sec. 3.1;
as ALBEF / BLIP / VLMo use it): each candidate token is chosen with probability
``mlm_probability`` (0.15); a chosen token becomes ``[MASK]`` with probability 0.8, a
random vocabulary token with 0.1 and stays unchanged with 0.1. Labels are the original ids
at chosen positions and ``-100`` (ignored by cross-entropy) elsewhere.
"""
from typing import Iterable, Optional, Tuple

import torch


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
