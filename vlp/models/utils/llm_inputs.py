"""Input assembly of the vision-to-LLM models (BLIP-2 stage 2, MiniGPT-4, LLaVA): text
token embeddings around the visual prompts, padded, with the label tensor of training."""
from typing import Callable, List, Optional, Sequence

import torch

IMAGE_TOKEN = '<ImageHere>'  # where a prompt places the visual prompts (MiniGPT-4, LLaVA)


def prompt_rows(tokenizer, B: int, prompt_ids: Optional[torch.Tensor] = None,
                prompt_mask: Optional[torch.Tensor] = None,
                prompts: Optional[Sequence[str]] = None, default: str = '') -> List[tuple]:
    """Per-row ``(before, after)`` prompt ids around the visual prompts: given ids (padding
    dropped; all after the image), given strings, or ``default`` for every row, tokenised by
    ``tokenizer.encode_prompt`` (an ``LMTokenizer``: special tokens included; an
    ``'<ImageHere>'`` in the text marks where the visual prompts go, else they lead).
    ``tokenizer``: a callable returning it (only called for strings)."""
    if prompt_ids is not None:
        mask = torch.ones_like(prompt_ids) if prompt_mask is None else prompt_mask
        return [([], row[m.bool()].tolist()) for row, m in zip(prompt_ids, mask)]
    tok = tokenizer()
    return [tok.encode_prompt(p, image_token=IMAGE_TOKEN)
            for p in (prompts if prompts is not None else [default] * B)]


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


def lm_logits(llm, prompts: torch.Tensor, parts: List[tuple], text_ids: torch.Tensor,
              text_mask: torch.Tensor):
    """LLM logits and the label tensor they are scored against, for target texts
    ``text_ids`` / ``text_mask [B, L]`` (no BOS, EOS last) after the visual ``prompts [B, Q,
    H]`` and the per-row ``(before, after)`` prompt ids ``parts``. A decoder-only LM reads
    ``[before; visual; after; text]`` (labels on the text only; position ``t`` predicts
    ``labels[t + 1]``); an encoder-decoder LM encodes ``[before; visual; after]`` and
    decodes the text (position ``t`` predicts ``labels[t]``). ``llm``: an
    ``HFLanguageModel`` (``embed_tokens``, ``is_encoder_decoder``, ``decoder_input_ids``)."""
    before = [pre for pre, _ in parts]
    if llm.is_encoder_decoder:
        embeds, att, _ = assemble_inputs(llm.embed_tokens, prompts, before,
                                         [post for _, post in parts])
        labels = text_ids.masked_fill(text_mask == 0, -100)
        out = llm(inputs_embeds=embeds, attention_mask=att,
                  decoder_input_ids=llm.decoder_input_ids(labels), decoder_attention_mask=text_mask)
        return out.logits, labels
    texts = [row[m.bool()].tolist() for row, m in zip(text_ids, text_mask)]
    after = [post + t for (_, post), t in zip(parts, texts)]
    labs = [[-100] * len(post) + t for (_, post), t in zip(parts, texts)]
    embeds, att, labels = assemble_inputs(llm.embed_tokens, prompts, before, after, labs)
    return llm(inputs_embeds=embeds, attention_mask=att).logits, labels


def hf_generate_options(*options: dict, pad_token_id: int) -> dict:
    """HF ``generate`` keyword arguments from ``options`` merged left to right (over
    ``max_length=30``), with lengths that count **generated tokens only** for both LM kinds:
    ``max_length`` / ``max_new_tokens`` become ``max_new_tokens`` (``max_new_tokens``
    wins), ``min_length`` becomes ``min_new_tokens``; ``pad_token_id`` unless given."""
    opts = dict(max_length=30)
    for o in options:
        opts.update(o)
    max_new, max_len = opts.pop('max_new_tokens', None), opts.pop('max_length')
    opts['max_new_tokens'] = max_new if max_new is not None else max_len
    if 'min_length' in opts:
        opts['min_new_tokens'] = opts.pop('min_length')
    opts.setdefault('pad_token_id', pad_token_id)
    return opts
