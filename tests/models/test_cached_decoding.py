"""Cached decoding (issue 21): the key/value cache of vlp's decoders gives the tokens of the
uncached reference (``use_cache=False``, which recomputes the prefix every step), token for
token, in every decoding mode, with rows and batch items finishing early (cache reordering,
contexts dropped), beams folded onto their image, a context mask and a prompt. BLIP's
decoder, BLIPVQA's answer decoder and CoCa's two decoders (both layer layouts) are
checked on tiny models; HF / open_clip parity is in tests/tools/test_hf_blip_converter.py
and tests/tools/test_convert_coca.py."""
import pytest
import torch

import vlp.models  # noqa: F401  (registers the parts)
from vlp.models.backbones.bert import BertEncoder
from vlp.models.layers.attention import DecodingCache
from vlp.models.utils.generation import generate

V, PAD, B, S, C = 40, 0, 5, 6, 16
EOS_IDS = (11, 17)  # tokens this seeded model emits at different steps for different items


class ToyCaptioner(torch.nn.Module):
    """vlp's BERT decoder (causal, cross-attention in every layer) over per-item contexts
    (images) with a padding mask, and an LM head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.decoder = BertEncoder(vocab_size=V, hidden_size=C, num_layers=2, num_heads=2,
                                   intermediate_size=32, max_position_embeddings=40,
                                   type_vocab_size=0, cross_attention_layers='all',
                                   hidden_dropout=0.0, attention_dropout=0.0)
        self.head = torch.nn.Linear(C, V)
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(2.0)  # peakier distributions than BERT's init gives
        g = torch.Generator().manual_seed(1)
        self.context = 10 * torch.randn(B, S, C, generator=g)
        self.context_mask = torch.ones(B, S, dtype=torch.long)
        self.context_mask[1, 3:] = 0  # item 1 has half its context padded
        self.context_mask[3, 5:] = 0
        self.live = []  # hypotheses run at each cached step

    def logits(self, ids, rows):
        h = self.decoder(ids, image_embeds=self.context[rows],
                         image_mask=self.context_mask[rows], is_causal=True)['text_embeds']
        return self.head(h[:, -1])

    def step(self, new, rows, cache):
        self.live.append(new.shape[0])
        h = self.decoder(new, image_embeds=self.context, image_mask=self.context_mask,
                         is_causal=True, cache=cache)['text_embeds']
        return self.head(h[:, -1])


MODES = [dict(), dict(repetition_penalty=1.3, min_length=6),
         dict(do_sample=True, top_p=0.8, num_return_sequences=3),
         dict(num_beams=3), dict(num_beams=3, num_return_sequences=2, early_stopping=True),
         dict(num_beams=2, length_penalty=0.5, early_stopping='never'),
         dict(num_beams=3, do_sample=True, top_k=8, num_return_sequences=2)]


@pytest.mark.parametrize('mode', MODES, ids=lambda m: ','.join(f'{k}={v}' for k, v in m.items()) or 'greedy')
def test_cached_equals_uncached_with_early_finishing(mode):
    model = ToyCaptioner().eval()
    prompt = torch.tensor([[1, 9, 12]]).repeat(B, 1)  # a 3-token prompt: causal first step
    shrank = False
    for eos in EOS_IDS:
        outs = []
        with torch.no_grad():
            for use_cache in (False, True):
                model.live = []
                kw = dict(mode, eos_token_id=eos, pad_token_id=PAD, max_length=16,
                          use_cache=use_cache, cached_step=model.step)
                if mode.get('do_sample'):
                    kw['generator'] = torch.Generator().manual_seed(3)
                outs.append(generate(model.logits, prompt, **kw))
        assert torch.equal(outs[0], outs[1]), (mode, eos, outs)
        # rows finished / items done while others went on: the cache was reordered and
        # contexts dropped mid-decoding
        shrank |= model.live[0] > model.live[-1] and len(model.live) > 3
    assert shrank, mode


def test_cache_routes_beams_to_their_item_and_drops_finished_items():
    """Hypotheses read their item's keys/values: beams folded onto the item (no copy per
    beam), items nobody reads any more dropped once, irregular layouts gathered."""
    cache = DecodingCache()
    rows = torch.arange(4).repeat_interleave(3)
    cache.route(rows, 4)
    assert cache.group == 3 and cache.rows is None and cache.items is None
    k = torch.randn(4, 2, 5, 8)
    cache.context_kv['m'] = (k, k.clone())
    cache.route(torch.tensor([0, 0, 0, 2, 2, 2, 3, 3, 3]), 4)  # item 1 finished
    assert cache.items.tolist() == [0, 2, 3] and cache.group == 3
    assert torch.equal(cache.context_kv['m'][0], k[[0, 2, 3]])
    cache.route(torch.tensor([0, 2, 2, 3]), 4)  # irregular: gathered at each step
    assert cache.group == 0 and cache.rows.tolist() == [0, 1, 1, 2]
    q = torch.randn(4, 2, 1, 8)
    out = cache.attend(q, *cache.context_kv['m'], None)
    want = torch.nn.functional.scaled_dot_product_attention(q, k[[0, 2, 2, 3]],
                                                            k[[0, 2, 2, 3]])
    torch.testing.assert_close(out, want)
    cache.route(torch.tensor([0, 0, 3, 3]), 4)
    assert cache.items.tolist() == [0, 3] and cache.group == 2
    folded = cache.attend(q, *cache.context_kv['m'], None)
    want = torch.nn.functional.scaled_dot_product_attention(q, k[[0, 0, 3, 3]],
                                                            k[[0, 0, 3, 3]])
    torch.testing.assert_close(folded, want)


def test_self_attention_cache_grows_and_reorders():
    model = ToyCaptioner().eval()
    cache = DecodingCache()
    ids = torch.randint(1, V, (B, 4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache.route(torch.arange(B), B)
        model.step(ids[:, :2], torch.arange(B), cache)
        cache.length = 2
        cache.reorder(torch.tensor([4, 4, 0, 1, 2]))
        cache.route(torch.tensor([4, 4, 0, 1, 2]), B)
        got = model.step(ids[[4, 4, 0, 1, 2], 2:3], None, cache)
        want = model.logits(ids[[4, 4, 0, 1, 2], :3], torch.tensor([4, 4, 0, 1, 2]))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    layer = model.decoder.blocks[0].attn
    assert cache.self_kv[layer][0].shape == (B, 2, 3, C // 2)  # (N, nh, positions, hs)


# -- the families --------------------------------------------------------------------------
def _both(fn, **kw):
    outs = []
    for use_cache in (False, True):
        torch.manual_seed(11)
        with torch.no_grad():
            outs.append(fn(use_cache=use_cache, **kw))
    return outs


FAMILY_MODES = [dict(num_beams=1), dict(num_beams=3), dict(num_beams=3, num_return_sequences=2),
                dict(num_beams=1, do_sample=True, top_p=0.9)]


def test_blip_cached_generate_equals_uncached():
    from test_blip import batch, tiny_blip
    model = tiny_blip().eval()
    images = batch(3)['images']
    for mode in FAMILY_MODES:
        a, b = _both(model.generate_ids, images=images, prompt_ids=[model.dec_token_id, 9, 11],
                     max_length=12, min_length=0, **mode)
        assert torch.equal(a, b), mode
    a, b = _both(model.generate, images=images, prompt='a small', max_length=10)
    assert a == b and any(a)


@pytest.mark.parametrize('cross_ffn', [False, True], ids=['paper-layer', 'open_clip-layer'])
def test_coca_cached_generate_equals_uncached(cross_ffn):
    from test_coca import coca
    model = coca(decoder=dict(type='MultimodalDecoder', vocab_size=52, width=32, layers=2,
                              heads=4, cross_ffn=cross_ffn)).eval()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sot = model.tokenizer.bos_token_id
    for mode in FAMILY_MODES:
        a, b = _both(model.generate_ids, images=images, prompt_ids=[sot, 30, 31],
                     max_length=10, **mode)
        assert torch.equal(a, b), mode


def test_blip_vqa_cached_answers_equal_uncached():
    """Questions of different lengths: the answer decoder's context (the question states)
    has a padding mask, routed with the hypotheses."""
    from test_blip_vqa import batch, tiny_vqa
    model = tiny_vqa(inference='generate').eval()
    b = batch(4)
    assert not b['attention_mask'].all()
    for mode in FAMILY_MODES[:3]:
        a, c = _both(model.answer_questions, images=b['images'], input_ids=b['input_ids'],
                     attention_mask=b['attention_mask'], max_length=8, min_length=1, **mode)
        assert a == c and any(a), mode
