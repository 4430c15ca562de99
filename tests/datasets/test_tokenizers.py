"""Tokenizer parity: CLIP BPE against HF transformers and open_clip, BERT WordPiece against
HF transformers (fast and the pure-Python legacy one), on vocabularies the tests write."""
import gzip
import json

import pytest
import torch

from vlp.datasets.tokenizers import (BertTokenizer, CLIPTokenizer, DemoTokenizer,
                                     bytes_to_unicode)
from vlp.registry import TOKENIZERS

SENTENCES = [
    'the cat sat on the mat',
    'The  Cat,   and the hat!!',
    "it's the cat's hat",
    'a cat on 12 mats & a hat',
    'thecat   hat\ton\nthe mat.',
    'zebra xylophone qq',
    'Café naïve the',
]
MERGES = ['t h', 'th e</w>', 'c a', 'ca t</w>', 'a t</w>', 'h at</w>', 'o n</w>', 'm at</w>',
          'a n', 'an d</w>', 's at</w>', 'th e', "' s</w>", 'i t</w>', 'e s</w>']


def _clip_vocab():
    units = list(bytes_to_unicode().values())
    tokens = units + [u + '</w>' for u in units] + [''.join(m.split()) for m in MERGES]
    tokens += ['<|startoftext|>', '<|endoftext|>']
    return {t: i for i, t in enumerate(tokens)}


@pytest.fixture
def clip_files(tmp_path):
    (tmp_path / 'vocab.json').write_text(json.dumps(_clip_vocab()))
    (tmp_path / 'merges.txt').write_text('#version: 0.2\n' + '\n'.join(MERGES) + '\n')
    with gzip.open(tmp_path / 'bpe.txt.gz', 'wt', encoding='utf-8') as f:
        # no trailing newline: open_clip would read the empty last line as a merge
        f.write('#version: 0.2\n' + '\n'.join(MERGES))
    return tmp_path


def test_clip_matches_transformers(clip_files):
    transformers = pytest.importorskip('transformers')
    ref = transformers.CLIPTokenizer.from_pretrained(str(clip_files))
    ours = CLIPTokenizer(vocab_file=str(clip_files / 'vocab.json'),
                         merges_file=str(clip_files / 'merges.txt'), max_length=16)
    out = ours(SENTENCES)
    exp = ref(SENTENCES, padding='max_length', truncation=True, max_length=16,
              return_tensors='pt')
    assert torch.equal(out['attention_mask'], exp['attention_mask'])
    mask = out['attention_mask'].bool()
    assert torch.equal(out['input_ids'][mask], exp['input_ids'][mask])
    assert (out['input_ids'][~mask] == 0).all()  # pad 0 as open_clip (HF pads with EOT)
    assert ours.vocab_size == len(_clip_vocab()) == ref.vocab_size
    assert ours.sot_token_id == ref.bos_token_id and ours.eot_token_id == ref.eos_token_id
    # the same from a tokenizer.json written by transformers
    ref.save_pretrained(str(clip_files / 'hf'))
    from_json = CLIPTokenizer(tokenizer_file=str(clip_files / 'hf' / 'tokenizer.json'),
                              max_length=16)
    assert torch.equal(from_json(SENTENCES)['input_ids'], out['input_ids'])


def test_clip_matches_open_clip_small_vocab_and_truncation(clip_files):
    oc_tok = pytest.importorskip('open_clip.tokenizer')
    ref = oc_tok.SimpleTokenizer(bpe_path=str(clip_files / 'bpe.txt.gz'))
    ours = CLIPTokenizer(bpe_path=str(clip_files / 'bpe.txt.gz'), max_length=10)
    assert ours.vocab_size == ref.vocab_size
    long = ['the cat sat on the mat and the cat sat on the hat and the mat']
    for texts in (SENTENCES, long):
        exp = ref(texts, context_length=10)
        got = ours(texts)['input_ids']
        assert torch.equal(got, exp), (texts, got, exp)
    ids = ours(long)['input_ids'][0]
    assert ids[0] == ours.sot_token_id and ids[-1] == ours.eot_token_id  # EOT kept at the end
    assert ours.eot_token_id == ours.vocab_size - 1  # argmax pooling finds it


@pytest.mark.parametrize('source', ['bundled', 'open_clip'])
def test_clip_matches_open_clip_full_vocab(source):
    """vlp's bundled copy of OpenAI's merges (no open_clip needed at run time) and open_clip's
    give open_clip's ids."""
    oc_tok = pytest.importorskip('open_clip.tokenizer')
    ref = oc_tok.SimpleTokenizer()  # OpenAI's merges, shipped inside the open_clip package
    ours = TOKENIZERS.build(dict(type='CLIPTokenizer', bpe_path=source))
    if source == 'bundled':
        from vlp.datasets.tokenizers import BUNDLED_CLIP_BPE
        import filecmp
        assert filecmp.cmp(BUNDLED_CLIP_BPE, oc_tok.default_bpe(), shallow=False)
    texts = SENTENCES + [
        'A photo of a dog &amp; a café!', 'Hello   World 2024 :-) <3',
        'über-cool naïve résumé', "we're they'll I'd you've",
        ' '.join(['long'] * 100)]
    assert ours.vocab_size == ref.vocab_size == 49408
    assert torch.equal(ours(texts)['input_ids'], ref(texts))
    assert ours.decode(ours('a photo of a dog')['input_ids'][0]) == 'a photo of a dog'


def _bert_vocab():
    return (['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'cat', 'sat', 'on', 'mat',
             'a', 'hat', 'cafe', 'naive', ',', '.', '!', "'", 's', 'un', '##aff', '##able',
             '##s', 'The', 'Cat', '12', '&', 'zebra', 'x', '##y', '##lo'])


@pytest.fixture
def bert_dir(tmp_path):
    (tmp_path / 'vocab.txt').write_text('\n'.join(_bert_vocab()) + '\n')
    return tmp_path


@pytest.mark.parametrize('lowercase', [True, False])
def test_bert_matches_transformers(bert_dir, lowercase):
    transformers = pytest.importorskip('transformers')
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    texts = SENTENCES + ['unaffable cats', 'xylo x', 'the cat sat on the mat ' * 5]
    ours = BertTokenizer(vocab_file=str(bert_dir / 'vocab.txt'), lowercase=lowercase,
                         max_length=12)
    out = ours(texts)
    refs = [BertTokenizerLegacy(str(bert_dir / 'vocab.txt'), do_lower_case=lowercase),
            transformers.BertTokenizer.from_pretrained(str(bert_dir), do_lower_case=lowercase)]
    for ref in refs:
        exp = ref(texts, padding='max_length', truncation=True, max_length=12,
                  return_tensors='pt')
        assert torch.equal(out['input_ids'], exp['input_ids']), type(ref)
        assert torch.equal(out['attention_mask'], exp['attention_mask'])
    assert (ours.cls_token_id, ours.sep_token_id, ours.pad_token_id, ours.mask_token_id) == \
        (2, 3, 0, 4)
    assert ours.vocab_size == len(_bert_vocab())
    # a tokenizer.json written by transformers gives the same ids
    refs[1].save_pretrained(str(bert_dir / 'hf'))
    from_json = BertTokenizer(tokenizer_file=str(bert_dir / 'hf' / 'tokenizer.json'),
                              max_length=12)
    assert torch.equal(from_json(texts)['input_ids'], out['input_ids'])


def test_bert_additional_special_tokens(bert_dir):
    tok = BertTokenizer(vocab_file=str(bert_dir / 'vocab.txt'),
                        additional_special_tokens=['[DEC]', '[ENC]'], max_length=8)
    n = len(_bert_vocab())
    assert tok.token_to_id('[DEC]') == n and tok.token_to_id('[ENC]') == n + 1
    assert tok.vocab_size == n + 2
    assert tok('[DEC] the cat')['input_ids'][0, :4].tolist() == [2, n, 5, 6]


@pytest.mark.parametrize('style', ['clip', 'bert'])
def test_demo_tokenizer(style, tmp_path):
    tok = DemoTokenizer(style=style, max_length=12)
    again = DemoTokenizer(style=style, max_length=12)
    assert tok.get_vocab() == again.get_vocab()  # deterministic
    out = tok(['a small red circle on the left', 'A  LARGE blue star, in the centre'])
    ids, mask = out['input_ids'], out['attention_mask']
    assert ids.shape == (2, 12) and ids.dtype == torch.long and mask.dtype == torch.long
    assert tok.pad_token_id == 0 and (ids[mask == 0] == 0).all()
    assert (ids != tok.unk_token_id).all()
    if style == 'clip':
        assert tok.eot_token_id == tok.vocab_size - 1 == ids.max()
        assert (ids.argmax(-1) == mask.sum(-1) - 1).all()  # argmax pooling hits EOT
        assert ids[0, 0] == tok.sot_token_id
    else:
        assert ids[0, 0] == tok.cls_token_id and ids[0, mask[0].sum() - 1] == tok.sep_token_id
        assert tok.mask_token_id is not None and tok.mask_token_id < 5
    assert tok.decode(ids[0]) == 'a small red circle on the left'
    assert tok.batch_decode(ids)[1] == 'a large blue star , in the centre'
    # truncation keeps the end token
    long = tok(['a small red circle on the left and a large blue star in the centre'])
    assert long['input_ids'][0, -1] == tok.eos_token_id and long['attention_mask'].all()
    # cached to a file keyed by a hash: the second build reads it back
    cached = DemoTokenizer(style=style, cache_dir=str(tmp_path))
    files = list(tmp_path.glob(f'demo_tokenizer_{style}_*.json'))
    assert len(files) == 1
    assert DemoTokenizer(style=style, cache_dir=str(tmp_path)).get_vocab() == \
        cached.get_vocab() == tok.get_vocab()
    extra = DemoTokenizer(style=style, additional_special_tokens=['[DEC]'])
    if style == 'clip':
        assert extra.eot_token_id == extra.vocab_size - 1
    else:
        assert extra.token_to_id('[DEC]') == extra.vocab_size - 1


def test_padding_longest_and_single_string():
    tok = DemoTokenizer(max_length=32)
    out = tok(['a red circle', 'a big red circle on the left'], padding='longest')
    assert out['input_ids'].shape == (2, 9)
    assert tok('a red circle')['input_ids'].shape == (1, 32)


def test_tokenize_word_ids_group_wordpieces(bert_dir):
    """``Tokenize(return_word_ids=True)``: subword pieces share their word's index,
    special tokens and padding are -1, truncation and caption lists keep the layout;
    without the flag the output is unchanged (no ``word_ids``)."""
    from vlp.datasets.transforms import Tokenize
    tok = BertTokenizer(vocab_file=str(bert_dir / 'vocab.txt'), max_length=10)
    t = Tokenize(tok, return_word_ids=True)
    out = t(dict(text='the unaffable cats sat'))
    # [CLS] the un ##aff ##able cat ##s sat [SEP] [PAD]
    assert out['input_ids'].tolist() == [2, 5, 19, 20, 21, 6, 22, 7, 3, 0]
    assert out['word_ids'].tolist() == [-1, 0, 1, 1, 1, 2, 2, 3, -1, -1]
    assert out['word_ids'].dtype == torch.int64
    many = t(dict(text=['the cat sat on the mat , a hat', 'cats']))
    assert many['word_ids'].shape == many['input_ids'].shape == (2, 10)
    assert many['word_ids'][0].tolist() == [-1, 0, 1, 2, 3, 4, 5, 6, 7, -1]  # truncated
    assert many['word_ids'][1].tolist() == [-1, 0, 0, -1] + [-1] * 6
    assert 'word_ids' not in Tokenize(tok)(dict(text='the cat'))


def test_demo_tokenizer_default_vocabulary_unchanged():
    # the demo configs hard-code these sizes (e.g. vocab_size=53 for style='bert')
    assert DemoTokenizer(style='bert').vocab_size == 53
    assert DemoTokenizer(style='clip').vocab_size == 52
    assert DemoTokenizer(style='bert', vocabulary='captions').get_vocab() == \
        DemoTokenizer(style='bert').get_vocab()


@pytest.mark.parametrize('style', ['clip', 'bert'])
def test_demo_tokenizer_tasks_vocabulary(style, tmp_path):
    captions = DemoTokenizer(style=style)
    tasks = DemoTokenizer(style=style, vocabulary='tasks')
    cv, tv = captions.get_vocab(), tasks.get_vocab()
    assert set(cv) < set(tv) and tasks.vocab_size == len(tv) > captions.vocab_size
    # the caption vocabulary extended at its end: every caption word (and, in 'bert' style,
    # every caption special token) keeps its id; the new words follow, sorted
    moved = {'<|startoftext|>', '<|endoftext|>'} if style == 'clip' else set()
    assert all(tv[t] == i for t, i in cv.items() if t not in moved)
    new = sorted(set(tv) - set(cv), key=tv.get)
    assert new == sorted(new) and min(tv[t] for t in new) == len(cv) - len(moved)
    if style == 'clip':
        assert tasks.eot_token_id == tasks.vocab_size - 1
    with_extra = DemoTokenizer(style=style, vocabulary='tasks',
                               additional_special_tokens=['[DEC]', '[ENC]'])
    plain_extra = DemoTokenizer(style=style, additional_special_tokens=['[DEC]', '[ENC]'])
    assert with_extra.token_to_id('[ENC]') == plain_extra.token_to_id('[ENC]')
    out = tasks(['what colour is the circle?', 'the left image contains an orange star',
                 'the red circle is made of wood', 'how many crosses are there?'])
    assert (out['input_ids'] != tasks.unk_token_id).all()
    assert (captions(['what colour is the circle?'])['input_ids'] == captions.unk_token_id).any()
    # the cache is keyed by the vocabulary too
    DemoTokenizer(style=style, cache_dir=str(tmp_path))
    cached = DemoTokenizer(style=style, cache_dir=str(tmp_path), vocabulary='tasks')
    assert len(list(tmp_path.glob(f'demo_tokenizer_{style}_*.json'))) == 2
    assert DemoTokenizer(style=style, cache_dir=str(tmp_path), vocabulary='tasks').get_vocab() \
        == cached.get_vocab() == tv
    assert DemoTokenizer(style=style, cache_dir=str(tmp_path)).get_vocab() == cv
    with pytest.raises(ValueError):
        DemoTokenizer(style=style, vocabulary='nope')


def test_demo_tokenizer_tasks_vocabulary_from_config():
    tok = TOKENIZERS.build(dict(type='DemoTokenizer', style='bert', vocabulary='tasks'))
    assert tok.vocabulary == 'tasks' and tok.vocab_size == 115


def test_lm_tokenizers_are_found_in_the_tokenizer_registry_alone():
    """LMTokenizer / DemoLMTokenizer live with the tokenizers: the registry finds them
    without importing vlp.models (TOKENIZERS' locations are vlp.datasets.tokenizers)."""
    import subprocess
    import sys
    code = ('import sys; from vlp.registry import TOKENIZERS; '
            "print(TOKENIZERS.get('LMTokenizer') is not None, "
            "TOKENIZERS.get('DemoLMTokenizer') is not None, 'vlp.models' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.stdout.split() == ['True', 'True', 'False'], out.stdout + out.stderr
