"""Input assembly of the vision-to-LLM models (BLIP-2 stage 2, MiniGPT-4, LLaVA): text
token embeddings around the visual prompts, padded, with the label tensor of training."""
from typing import Callable, List, Optional

import torch


def assemble_inputs(embed_tokens: Callable[[torch.Tensor], torch.Tensor],
                    prompts: torch.Tensor, before: List[List[int]], after: List[List[int]],
                    labels: Optional[List[List[int]]] = None, left: bool = False):
    """Per row ``[embed(before); visual prompts; embed(after)]``, padded (right for
    training, left for decoder-only generation) -> ``inputs_embeds [B, T, H]``,
    ``attention_mask [B, T]`` and, given ``labels`` (one per ``after`` token), the label
    tensor ``[B, T]`` (-100 on ``before``, the visual prompts and padding).
    ``embed_tokens``: the LLM's input embedding of token ids; ``prompts [B, Q, H]``."""
    B, Q, H = prompts.shape
    device = prompts.device
    lengths = [n for pre, post in zip(before, after) for n in (len(pre), len(post))]
    flat = [t for pre, post in zip(before, after) for t in pre + post]
    ids = torch.tensor(flat, dtype=torch.long, device=device)
    pieces = list(embed_tokens(ids).to(prompts.dtype).split(lengths))
    seqs = [torch.cat([pieces[2 * i], prompts[i], pieces[2 * i + 1]]) for i in range(B)]
    T = max(len(x) for x in seqs)
    embeds = prompts.new_zeros(B, T, H)
    mask = torch.zeros(B, T, dtype=torch.long, device=device)
    lab = torch.full((B, T), -100, dtype=torch.long, device=device)
    for i, x in enumerate(seqs):
        start = T - len(x) if left else 0
        embeds[i, start:start + len(x)] = x
        mask[i, start:start + len(x)] = 1
        if labels is not None:
            end = start + len(x)
            lab[i, end - len(labels[i]):end] = torch.tensor(labels[i], device=device)
    return embeds, mask, (lab if labels is not None else None)
