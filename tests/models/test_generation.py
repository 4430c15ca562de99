"""vlp.models.utils.generation.generate against HF transformers' generate, token for token.

A tiny random GPT-2 (no downloads) is the decoder; ``next_token_logits`` recomputes the prefix.
EOS is a token this model emits for some prompts and not for others, so EOS handling and padding
are exercised (asserted in ``test_fixture_exercises_eos_and_padding``).
"""
import warnings

import pytest
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from vlp.models.utils import generation as gen_mod
from vlp.models.utils.generation import generate

V = 50
EOS = 9      # emitted by the seeded model for some prompts (see the fixture test)
EOS2 = 14    # a second frequent token, for the multi-EOS tests
PAD = 3


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=1, eos_token_id=2, pad_token_id=PAD, initializer_range=0.2)
    return GPT2LMHeadModel(cfg).eval()


def _eos_biased_model(bias):
    """The same tiny GPT-2 with a constant logit bias per token: ln_f makes feature 0 constant (1)
    and column 0 of the (untied) lm_head holds the bias."""
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=1,
                     eos_token_id=2, pad_token_id=PAD, initializer_range=0.2, tie_word_embeddings=False)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        model.transformer.ln_f.weight[0] = 0.0
        model.transformer.ln_f.bias[0] = 1.0
        model.lm_head.weight[:, 0] = torch.tensor(bias)
    return model


@pytest.fixture(scope='module')
def eos_model():
    """EOS (9) favoured: most beams finish early, which is where the stopping rules differ."""
    bias = [0.0] * V
    bias[EOS] = 2.0
    return _eos_biased_model(bias)


@pytest.fixture(scope='module')
def two_eos_model():
    """Both EOS ids strongly favoured: the top continuations of a step are often all EOS."""
    bias = [0.0] * V
    bias[EOS] = bias[EOS2] = 4.0
    return _eos_biased_model(bias)


@pytest.fixture(scope='module')
def prompts():
    # 4 different prompts of length 3 (same length for all rows, as generate requires)
    return torch.randint(4, V, (4, 3), generator=torch.Generator().manual_seed(1))


def logits_fn(model):
    return lambda ids, rows: model(ids).logits[:, -1]


def hf_generate(model, ids, **kw):
    kw.setdefault('eos_token_id', EOS)
    kw.setdefault('do_sample', False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=kw.pop('pad_token_id', PAD),
                              **kw)


def ours(model, ids, **kw):
    kw.setdefault('eos_token_id', EOS)
    kw.setdefault('pad_token_id', PAD)
    return generate(logits_fn(model), ids, **kw)


def assert_same(a, b):
    assert a.dtype == torch.long
    assert a.shape == b.shape, (a, b)
    assert torch.equal(a, b), (a, b)


def check_contract(out, ids, *, n_ret=1, max_length, eos=(EOS,), pad=PAD):
    """Shape, prompt kept, rows of an item contiguous, EOS kept and followed by pad only."""
    assert out.dtype == torch.long and out.dim() == 2
    assert out.shape[0] == ids.shape[0] * n_ret and ids.shape[1] < out.shape[1] <= max_length
    assert torch.equal(out[:, :ids.shape[1]], ids.repeat_interleave(n_ret, 0))
    gen = out[:, ids.shape[1]:]
    for row in gen.tolist():
        ends = [i for i, t in enumerate(row) if t in eos]
        if ends:
            assert all(t == pad for t in row[ends[0] + 1:]), row


# ----------------------------------------------------------------------------- HF parity
def test_fixture_exercises_eos_and_padding(model, prompts):
    out = ours(model, prompts, max_length=20)
    has_eos = (out[:, 3:] == EOS).any(1)
    assert has_eos.any() and not has_eos.all()  # some rows stop early, others run to max_length
    assert (out == PAD).any() and out.shape[1] == 20
    check_contract(out, prompts, max_length=20)


def test_greedy_matches_hf(model, prompts):
    for use_cache in (True, False):
        assert_same(ours(model, prompts, max_length=20), hf_generate(model, prompts, max_length=20,
                                                                     use_cache=use_cache))


def test_greedy_single_prompt_matches_hf(model, prompts):
    for i in range(prompts.shape[0]):
        p = prompts[i:i + 1]
        assert_same(ours(model, p, max_length=18), hf_generate(model, p, max_length=18))


@pytest.mark.parametrize('num_beams', [3, 4])
@pytest.mark.parametrize('length_penalty', [1.0, 0.6, 2.0, -0.5])
@pytest.mark.parametrize('early_stopping', [True, False, 'never'])
def test_beam_search_matches_hf(model, prompts, num_beams, length_penalty, early_stopping):
    kw = dict(max_length=20, num_beams=num_beams, length_penalty=length_penalty,
              early_stopping=early_stopping, num_return_sequences=2)
    out = ours(model, prompts, **kw)
    assert_same(out, hf_generate(model, prompts, **kw))
    check_contract(out, prompts, n_ret=2, max_length=20)


def test_beam_search_settings_matter(model, prompts):
    """The parity cases above are not vacuous: the settings change the result here."""
    def run(**kw):
        return ours(model, prompts, max_length=20, num_beams=3, num_return_sequences=2, **kw)
    base = run()
    assert (base[:, 3:] == EOS).any(1).any()  # finished-by-EOS beams are returned
    assert not (base[:, 3:] == EOS).any(1).all()  # and beams that hit max_length without EOS
    assert not torch.equal(base, run(early_stopping=True))
    assert not torch.equal(base, run(length_penalty=0.6))
    assert not torch.equal(base, run(length_penalty=2.0))
    four = ours(model, prompts, max_length=20, num_beams=4, length_penalty=0.6)
    assert four.shape[1] < 20  # every returned beam ended with EOS: cropped output
    # and beam search does not merely reproduce greedy decoding here
    assert not torch.equal(run()[::2], ours(model, prompts, max_length=20))


@pytest.mark.parametrize('num_beams', [2, 3])
@pytest.mark.parametrize('length_penalty', [1.0, 2.0])
@pytest.mark.parametrize('early_stopping', [True, False, 'never'])
def test_beam_search_early_finishing_matches_hf(eos_model, prompts, num_beams, length_penalty, early_stopping):
    kw = dict(max_length=24, num_beams=num_beams, length_penalty=length_penalty,
              early_stopping=early_stopping, num_return_sequences=num_beams)
    assert_same(ours(eos_model, prompts, **kw), hf_generate(eos_model, prompts, **kw))


def test_early_stopping_never_differs_from_false(eos_model, prompts):
    """With length_penalty > 0, "never" assumes running beams could reach max_length, so it keeps
    searching where False stops; with length_penalty <= 0 the two are the same rule."""
    kw = dict(max_length=24, num_beams=3, num_return_sequences=3)
    for lp in (1.0, 2.0):
        assert not torch.equal(ours(eos_model, prompts, early_stopping=False, length_penalty=lp, **kw),
                               ours(eos_model, prompts, early_stopping='never', length_penalty=lp, **kw))
    for lp in (0.0, -1.0):
        assert_same(ours(eos_model, prompts, early_stopping=False, length_penalty=lp, **kw),
                    ours(eos_model, prompts, early_stopping='never', length_penalty=lp, **kw))


@pytest.mark.parametrize('num_beams', [2, 3, 4])
@pytest.mark.parametrize('length_penalty', [1.0, 2.0])
def test_beam_search_with_frequent_eos_ids_matches_hf(two_eos_model, prompts, num_beams, length_penalty):
    """(1 + n_eos) * num_beams candidates per step keep num_beams live beams even when the best
    continuations are all EOS."""
    kw = dict(max_length=24, num_beams=num_beams, length_penalty=length_penalty,
              num_return_sequences=num_beams, eos_token_id=[EOS, EOS2])
    out = ours(two_eos_model, prompts, **kw)
    assert_same(out, hf_generate(two_eos_model, prompts, **kw))
    check_contract(out, prompts, n_ret=num_beams, max_length=24, eos=(EOS, EOS2))


@pytest.fixture(scope='module')
def fixed_model():
    """Next-token distribution independent of the input: both EOS ids 0.4 each, token 5 0.12,
    token 6 0.05, the rest 0.03 shared. From the second step on, the 2 * num_beams best
    continuations (num_beams=2) are all EOS."""
    p = torch.full((V,), 0.03 / (V - 4))
    p[EOS], p[EOS2], p[5], p[6] = 0.4, 0.4, 0.12, 0.05
    model = _eos_biased_model(p.log().tolist())
    with torch.no_grad():
        model.lm_head.weight[:, 1:] = 0.0
    return model


@pytest.mark.parametrize('length_penalty', [1.0, 3.0])
@pytest.mark.parametrize('early_stopping', [True, False, 'never'])
def test_beam_search_all_eos_step_matches_hf(fixed_model, prompts, length_penalty, early_stopping):
    kw = dict(max_length=10, num_beams=2, length_penalty=length_penalty, num_return_sequences=2,
              early_stopping=early_stopping, eos_token_id=[EOS, EOS2])
    out = ours(fixed_model, prompts[:2], **kw)
    assert_same(out, hf_generate(fixed_model, prompts[:2], **kw))
    if early_stopping == 'never' and length_penalty == 3.0:
        # the search went on through steps whose best continuations were all EOS, thanks to the
        # (1 + n_eos) * num_beams candidates, and a strong length reward picks the longest
        assert out.shape[1] == 10 and out[:, 3:9].eq(5).all()


@pytest.mark.parametrize('warp', [dict(top_k=1), dict(top_p=0.2), dict(top_k=2, temperature=0.5)])
def test_beam_sampling_keeps_a_non_eos_token_matches_hf(two_eos_model, prompts, warp):
    """Beam sampling: top-k / top-p keep at least len(eos) + 1 tokens per beam, as in HF."""
    kw = dict(max_length=16, num_beams=2, do_sample=True, eos_token_id=[EOS, EOS2], **warp)
    torch.manual_seed(7)
    a = ours(two_eos_model, prompts, **kw)
    torch.manual_seed(7)
    assert_same(a, hf_generate(two_eos_model, prompts, **kw))


def test_beam_search_single_return_and_batch_of_one_match_hf(model, prompts):
    for ids in (prompts, prompts[2:3]):
        kw = dict(max_length=16, num_beams=3)
        assert_same(ours(model, ids, **kw), hf_generate(model, ids, **kw))


@pytest.mark.parametrize('num_beams', [1, 3])
def test_repetition_penalty_matches_hf(model, prompts, num_beams):
    kw = dict(max_length=20, num_beams=num_beams, repetition_penalty=1.5)
    out = ours(model, prompts, **kw)
    assert_same(out, hf_generate(model, prompts, **kw))
    assert not torch.equal(out, ours(model, prompts, max_length=20, num_beams=num_beams))
    # a penalty < 1 (rewarding repetition) as well
    kw['repetition_penalty'] = 0.7
    assert_same(ours(model, prompts, **kw), hf_generate(model, prompts, **kw))


@pytest.mark.parametrize('beam_kw', [dict(), dict(num_beams=4, length_penalty=0.6)])
def test_min_length_matches_hf(model, prompts, beam_kw):
    kw = dict(max_length=20, min_length=12, **beam_kw)
    out = ours(model, prompts, **kw)
    assert_same(out, hf_generate(model, prompts, **kw))
    assert not (out[:, :12] == EOS).any()  # EOS forbidden while length < min_length (prompt counted)
    free = ours(model, prompts, max_length=20, **beam_kw)
    assert (free[:, :12] == EOS).any() and not torch.equal(out, free)


@pytest.mark.parametrize('num_beams', [1, 4])
def test_max_new_tokens_matches_hf(model, prompts, num_beams):
    kw = dict(max_new_tokens=7, num_beams=num_beams)
    out = ours(model, prompts, **kw)
    assert_same(out, hf_generate(model, prompts, **kw))
    assert out.shape[1] <= 3 + 7
    # max_new_tokens overrides max_length
    assert_same(ours(model, prompts, max_length=5, **kw), out)


@pytest.mark.parametrize('num_beams,n_ret', [(1, 1), (3, 3)])
def test_several_eos_ids_match_hf(model, prompts, num_beams, n_ret):
    kw = dict(max_length=20, num_beams=num_beams, num_return_sequences=n_ret, eos_token_id=[EOS, EOS2])
    out = ours(model, prompts, **kw)
    assert_same(out, hf_generate(model, prompts, **kw))
    assert (out[:, 3:] == EOS2).any()
    check_contract(out, prompts, n_ret=n_ret, max_length=20, eos=(EOS, EOS2))


SAMPLING_CASES = [
    dict(max_length=20),
    dict(max_length=20, top_k=5, top_p=0.8, temperature=0.7, num_return_sequences=2,
         repetition_penalty=1.3, min_length=6),
    dict(max_length=16, num_beams=3, num_return_sequences=2),
    dict(max_length=16, num_beams=2, top_k=3, num_return_sequences=2),
    dict(max_length=16, num_beams=3, top_p=0.7, temperature=1.5, num_return_sequences=2),
    dict(max_length=16, num_beams=3, temperature=0.5, repetition_penalty=1.2, min_length=8,
         early_stopping=True, num_return_sequences=2),
]


# Beam sampling ranks its draws by score in transformers <= 4.49 and >= 5.24 (what vlp does);
# 4.50-5.23 kept them in the order drawn (vlp/models/utils/generation.py's docstring).
_HF_VERSION = tuple(int(x) for x in transformers.__version__.split('.')[:2])
_HF_BEAM_SAMPLE_UNSORTED = (4, 50) <= _HF_VERSION < (5, 24)


@pytest.mark.parametrize('case', range(len(SAMPLING_CASES)))
def test_sampling_matches_hf_with_same_seed(model, prompts, case):
    """Both draw from torch's global generator with one multinomial call per step on the same
    probabilities, so with the same seed the samples are identical (plain and beam sampling).
    Checked against transformers 5.25 (requirements/constraints.txt)."""
    kw = SAMPLING_CASES[case]
    if kw.get('num_beams', 1) > 1 and _HF_BEAM_SAMPLE_UNSORTED:
        pytest.skip(f'transformers {transformers.__version__} ranks beam-sampling draws in the order '
                    'drawn (4.50-5.23); vlp ranks them by score, as 4.49 and 5.24+ do')
    torch.manual_seed(123)
    a = ours(model, prompts, do_sample=True, **kw)
    torch.manual_seed(123)
    b = hf_generate(model, prompts, do_sample=True, **kw)
    assert_same(a, b)
    check_contract(a, prompts, n_ret=kw.get('num_return_sequences', 1), max_length=kw['max_length'])


def test_beam_pad_zero_deviation(model, prompts):
    """Documented deviation: HF's beam search pads with EOS when pad_token_id == 0; we pad with 0."""
    kw = dict(max_length=20, num_beams=4, length_penalty=0.6, num_return_sequences=2)
    out = ours(model, prompts, pad_token_id=0, **kw)
    ref = hf_generate(model, prompts, pad_token_id=0, **kw)
    assert out.shape == ref.shape
    for o, r in zip(out.tolist(), ref.tolist()):
        end = r.index(EOS, 3) if EOS in r[3:] else len(r)
        assert o[:end + 1] == r[:end + 1] and all(t == 0 for t in o[end + 1:])
    assert (out[:, 3:] == 0).any()


# ----------------------------------------------------------------------------- internal consistency
def test_num_beams_one_is_greedy(model, prompts):
    greedy = ours(model, prompts, max_length=20)
    assert_same(ours(model, prompts, max_length=20, num_beams=1, length_penalty=0.6,
                     early_stopping=True), greedy)
    # the beam-search routine itself with a single beam and early stopping reduces to greedy
    eos = torch.tensor([EOS])
    proc = lambda ids, s: gen_mod._process(ids, s, eos=eos, min_length=0, repetition_penalty=1.0,
                                           do_sample=False, temperature=1.0, top_k=0, top_p=1.0,
                                           min_keep=1)
    with torch.no_grad():
        beam1 = gen_mod._beam_search(logits_fn(model), prompts, eos=eos, pad_token_id=PAD, max_length=20,
                                     num_beams=1, do_sample=False, length_penalty=1.0,
                                     early_stopping=True, num_return_sequences=1, generator=None,
                                     proc=proc)
    assert_same(beam1, greedy)


def _context_fn(prompts, targets, calls):
    """Logits that spell out targets[b] for batch item b; checks that ``rows`` is right."""
    def fn(ids, rows):
        calls.append(rows.clone())
        assert ids.shape[0] == rows.shape[0]
        # hypothesis n really belongs to item rows[n]: its prompt is prompts[rows[n]]
        assert torch.equal(ids[:, :prompts.shape[1]], prompts[rows])
        pos = ids.shape[1] - prompts.shape[1]
        logits = torch.randn(ids.shape[0], V, generator=torch.Generator().manual_seed(pos))
        logits[torch.arange(ids.shape[0]), targets[rows, pos]] += 20.0
        return logits
    return fn


@pytest.mark.parametrize('mode', [dict(), dict(do_sample=True, num_return_sequences=3),
                                  dict(num_beams=3, num_return_sequences=2),
                                  dict(num_beams=2, do_sample=True, num_return_sequences=2)])
def test_rows_map_hypotheses_to_batch_items(mode):
    prompts = torch.tensor([[1, 20], [1, 21], [1, 22]])
    targets = torch.tensor([[30, 31, 32, 33, EOS, 0, 0, 0],
                            [40, 41, 42, 43, 44, 45, 46, EOS],
                            [35, EOS, 0, 0, 0, 0, 0, 0]])
    calls = []
    out = generate(_context_fn(prompts, targets, calls), prompts, eos_token_id=EOS, pad_token_id=PAD,
                   max_length=10, generator=torch.Generator().manual_seed(0), **mode)
    n_ret = mode.get('num_return_sequences', 1)
    assert out.shape == (3 * n_ret, 10)
    for b in range(3):
        for r in range(n_ret):
            row = out[b * n_ret + r].tolist()
            if mode.get('num_beams', 1) == 1 or r == 0:  # the best beam / every sample follows its item
                n = targets[b].tolist().index(EOS) + 1
                assert row[2:2 + n] == targets[b, :n].tolist(), (b, r, row)
                assert all(t == PAD for t in row[2 + n:])
    # every call covered only existing items, and finished rows / items were not recomputed
    assert all(int(c.max()) < 3 for c in calls)
    if mode.get('num_beams', 1) == 1:
        assert calls[-1].unique().tolist() == [1]  # only item 1 (the longest caption) runs to the end


def test_top_k_1_sampling_equals_greedy(model, prompts):
    greedy = ours(model, prompts, max_length=20)
    for seed in range(3):
        out = ours(model, prompts, max_length=20, do_sample=True, top_k=1,
                   generator=torch.Generator().manual_seed(seed))
        assert_same(out, greedy)
    # and with a repetition penalty, top_k=1 sampling still follows the penalised greedy path
    assert_same(ours(model, prompts, max_length=20, do_sample=True, top_k=1, repetition_penalty=1.5,
                     temperature=0.3, generator=torch.Generator().manual_seed(0)),
                ours(model, prompts, max_length=20, repetition_penalty=1.5))


def test_top_p_samples_only_inside_the_nucleus_and_is_reproducible():
    top_p = 0.6
    table = torch.randn(V, V, generator=torch.Generator().manual_seed(5)) * 1.5  # logits given the last token

    def fn(ids, rows):
        return table[ids[:, -1]]

    prompts = torch.arange(4, 12)[:, None]
    kw = dict(eos_token_id=0, pad_token_id=PAD, max_length=12, do_sample=True, top_p=top_p,
              num_return_sequences=4)
    rng_state = torch.get_rng_state()
    out = generate(fn, prompts, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the given generator is used, not torch's
    assert_same(generate(fn, prompts, generator=torch.Generator().manual_seed(0), **kw), out)
    assert not torch.equal(generate(fn, prompts, generator=torch.Generator().manual_seed(1), **kw), out)

    # nucleus, computed independently: a token is in it iff the strictly more probable mass before
    # it (descending order) is < top_p
    probs = table.softmax(-1)
    desc, order = probs.sort(-1, descending=True)
    before = desc.cumsum(-1) - desc
    nucleus = torch.zeros(V, V, dtype=torch.bool).scatter(1, order, before < top_p)
    assert (nucleus.sum(1) > 1).all() and (probs * ~nucleus).sum(1).min() > 0.2  # the filter matters
    pairs = 0
    for row in out.tolist():
        end = row.index(0) if 0 in row else len(row) - 1  # the EOS (id 0); pads follow it
        assert all(t == PAD for t in row[end + 1:])
        for prev, tok in zip(row[:end], row[1:end + 1]):
            assert nucleus[prev, tok], (prev, tok)
            pairs += 1
    assert pairs > 200
    assert len(set(out[:, 1].tolist())) > len(set(prompts[:, 0].tolist()))  # not degenerate


@pytest.mark.parametrize('temperature', [0.5, 2.0])
def test_sampling_frequencies_follow_tempered_softmax(temperature):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    n = 20000

    def fn(ids, rows):
        return logits.expand(ids.shape[0], -1)

    out = generate(fn, torch.zeros(1, 1, dtype=torch.long), eos_token_id=5, pad_token_id=0,
                   max_new_tokens=1, do_sample=True, temperature=temperature, num_return_sequences=n,
                   generator=torch.Generator().manual_seed(0))
    assert out.shape == (n, 2)
    counts = torch.bincount(out[:, 1], minlength=6).double()

    def chi2(p):
        expected = n * p.double()
        return float(((counts - expected) ** 2 / expected).sum())

    assert chi2((logits / temperature).softmax(-1)) < 20.5  # chi-square, 5 dof, p = 0.001
    assert chi2(logits.softmax(-1)) > 100.0  # and the temperature is really applied


def test_greedy_ignores_sampling_warpers(model, prompts):
    assert_same(ours(model, prompts, max_length=15, top_k=2, top_p=0.5, temperature=3.0),
                ours(model, prompts, max_length=15))


def test_eos_as_tensor_and_tuple(model, prompts):
    ref = ours(model, prompts, max_length=15)
    assert_same(ours(model, prompts, max_length=15, eos_token_id=torch.tensor(EOS)), ref)
    assert_same(ours(model, prompts, max_length=15, eos_token_id=(EOS,)), ref)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize('kw,match', [
    (dict(max_length=3), 'max_length'),
    (dict(max_length=2), 'max_length'),
    (dict(max_new_tokens=0), 'max_new_tokens'),
    (dict(min_length=-1), 'min_length'),
    (dict(num_beams=0), 'num_beams'),
    (dict(num_beams=3, num_return_sequences=4), 'num_return_sequences'),
    (dict(num_return_sequences=2), 'greedy'),
    (dict(num_return_sequences=0), 'num_return_sequences'),
    (dict(do_sample=True, top_p=0.0), 'top_p'),
    (dict(do_sample=True, top_p=1.5), 'top_p'),
    (dict(do_sample=True, top_k=-1), 'top_k'),
    (dict(do_sample=True, temperature=0.0), 'temperature'),
    (dict(repetition_penalty=0.0), 'repetition_penalty'),
    (dict(num_beams=2, early_stopping='sometimes'), 'early_stopping'),
    (dict(num_beams=2, early_stopping=1), 'early_stopping'),
    (dict(eos_token_id=[]), 'eos_token_id'),
    (dict(eos_token_id='x'), 'eos_token_id'),
    (dict(eos_token_id=V + 5), 'vocabulary'),
    (dict(pad_token_id=None), 'pad_token_id'),
])
def test_invalid_arguments_raise(model, prompts, kw, match):
    with pytest.raises(ValueError, match=match):
        ours(model, prompts, **kw)


def test_invalid_inputs_raise(model, prompts):
    with pytest.raises(ValueError, match='input_ids'):
        ours(model, prompts[0])
    with pytest.raises(ValueError, match='long'):
        ours(model, prompts.float())
    with pytest.raises(ValueError, match=r'\[N=4, V\]'):
        generate(lambda ids, rows: torch.zeros(ids.shape[0] + 1, V), prompts, eos_token_id=EOS,
                 pad_token_id=PAD)
    with pytest.raises(ValueError, match=r'\[N=4, V\]'):
        generate(lambda ids, rows: torch.zeros(ids.shape[0], 1, V), prompts, eos_token_id=EOS,
                 pad_token_id=PAD)
