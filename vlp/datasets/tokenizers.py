"""Text tokenizers on HuggingFace ``tokenizers`` (registered in ``TOKENIZERS``).

Every tokenizer is a callable ``tok(texts) -> dict(input_ids=Long[B, L],
attention_mask=Long[B, L])``, padded (right) to ``max_length`` and truncated so the
special tokens survive (``[bos] + content[:max_length - 2] + [eos]``: CLIP's EOT stays last
as in open_clip's ``tokenize``, BERT's ``[SEP]`` as in HF). Attributes: ``vocab_size``,
``pad_token_id``, ``bos_token_id``/``eos_token_id`` (= ``sot``/``eot`` for CLIP,
``cls``/``sep`` for BERT), ``cls_token_id``, ``sep_token_id``, ``mask_token_id``,
``unk_token_id`` (``None`` where a vocabulary has no such token).

- :class:`CLIPTokenizer`: CLIP's byte-level BPE (Radford et al. 2021), from a
  ``tokenizer.json``, ``vocab.json`` + ``merges.txt``, OpenAI's ``bpe_simple_vocab_16e6.txt.gz``
  or a hub name.
- :class:`BertTokenizer`: BERT's WordPiece (Devlin et al. 2019), from ``vocab.txt`` or
  ``tokenizer.json``.
- :class:`DemoTokenizer`: a word-level vocabulary built from :func:`vlp.datasets.demo.demo_corpus`,
  CLIP-style (``<|startoftext|> ... <|endoftext|>``, pad 0, EOT the largest id) or
  BERT-style (``[CLS] ... [SEP]``, ``[PAD]=0``, ``[MASK]``), for the demo configs;
  ``vocabulary='tasks'`` adds the words of the demo task texts (:mod:`vlp.datasets.demo.tasks`).
"""
import gzip
import hashlib
import html
import json
import os
import os.path as osp
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from vlp.registry import TOKENIZERS

# DataLoader workers give the parallelism; a Rust thread pool in a forked worker deadlocks.
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers  # noqa: E402
from tokenizers.models import BPE, WordLevel, WordPiece  # noqa: E402

# OpenAI's CLIP BPE merges, shipped with vlp (MIT; vlp/datasets/assets/LICENSE-CLIP-BPE)
BUNDLED_CLIP_BPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets',
                                'bpe_simple_vocab_16e6.txt.gz')
CLIP_SOT = '<|startoftext|>'
CLIP_EOT = '<|endoftext|>'
# CLIP's pre-tokenisation pattern (OpenAI ``simple_tokenizer.py``), applied after lower-casing.
CLIP_PATTERN = (r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|"""
                r"""[\p{N}]|[^\s\p{L}\p{N}]+""")


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2 / CLIP map from the 256 bytes to printable unicode characters."""
    bs = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1))
          + list(range(ord('®'), ord('ÿ') + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with fixed-length batching and named special ids.

    Args:
        tokenizer: the HF ``tokenizers.Tokenizer`` (its own truncation, padding and
            post-processor are not used: special tokens are added here).
        max_length: default padded length ``L``.
        pad_token_id: id written in padded positions (``attention_mask`` is 0 there).
        bos_token, eos_token: tokens put before / after the content (``None``: none).
        special_tokens: extra named tokens whose ids become attributes,
            e.g. ``dict(mask='[MASK]')`` gives ``mask_token_id``.
        clean_fn: optional Python text cleaning applied before the tokenizer (CLIP: ftfy).
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int, pad_token_id: int,
                 bos_token: Optional[str] = None, eos_token: Optional[str] = None,
                 special_tokens: Optional[Dict[str, str]] = None, clean_fn=None):
        self.tokenizer = tokenizer
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.tokenizer.post_processor = None
        self.max_length = max_length
        self.pad_token_id = pad_token_id
        self.clean_fn = clean_fn
        self.bos_token_id = self._require(bos_token)
        self.eos_token_id = self._require(eos_token)
        self.special_token_ids: Dict[str, int] = {}
        for name, token in (special_tokens or {}).items():
            tid = self.tokenizer.token_to_id(token) if token is not None else None
            setattr(self, f'{name}_token_id', tid)
            if tid is not None:
                self.special_token_ids[token] = tid
        for tok, tid in ((bos_token, self.bos_token_id), (eos_token, self.eos_token_id)):
            if tok is not None:
                self.special_token_ids[tok] = tid
        self.prefix_ids = [] if self.bos_token_id is None else [self.bos_token_id]
        self.suffix_ids = [] if self.eos_token_id is None else [self.eos_token_id]

    def _require(self, token: Optional[str]) -> Optional[int]:
        if token is None:
            return None
        tid = self.tokenizer.token_to_id(token)
        if tid is None:
            raise KeyError(f'special token {token!r} is not in the vocabulary')
        return tid

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> Optional[int]:
        return self.tokenizer.token_to_id(token)

    def get_vocab(self) -> Dict[str, int]:
        return self.tokenizer.get_vocab(with_added_tokens=True)

    def encode(self, text: str, max_length: Optional[int] = None) -> List[int]:
        """Ids of one text with its special tokens, truncated, not padded."""
        if self.clean_fn is not None:
            text = self.clean_fn(text)
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return self._wrap(ids, max_length or self.max_length)

    def _wrap(self, ids: List[int], max_length: int) -> List[int]:
        budget = max_length - len(self.prefix_ids) - len(self.suffix_ids)
        if budget < 0:
            raise ValueError(f'max_length={max_length} leaves no room for special tokens')
        return self.prefix_ids + ids[:budget] + self.suffix_ids

    def __call__(self, texts: Union[str, Sequence[str]], max_length: Optional[int] = None,
                 padding: str = 'max_length') -> Dict[str, torch.Tensor]:
        """Tokenise ``texts`` (a str is a batch of one).

        Args:
            max_length: padded/truncated length (default ``self.max_length``).
            padding: ``'max_length'`` (always ``L = max_length``) or ``'longest'``.
        Returns:
            ``dict(input_ids=Long[B, L], attention_mask=Long[B, L])``.
        """
        if isinstance(texts, str):
            texts = [texts]
        max_length = max_length or self.max_length
        if self.clean_fn is not None:
            texts = [self.clean_fn(t) for t in texts]
        encs = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        seqs = [self._wrap(e.ids, max_length) for e in encs]
        if padding == 'max_length':
            length = max_length
        elif padding == 'longest':
            length = max((len(s) for s in seqs), default=0)
        else:
            raise ValueError(f'padding must be "max_length" or "longest", got {padding!r}')
        input_ids = torch.full((len(seqs), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for i, s in enumerate(seqs):
            input_ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            attention_mask[i, :len(s)] = 1
        return dict(input_ids=input_ids, attention_mask=attention_mask)

    def decode(self, ids: Union[Sequence[int], torch.Tensor],
               skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; stops at the first EOS and drops padding."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = list(ids)
        if self.eos_token_id is not None and self.eos_token_id in ids[len(self.prefix_ids):]:
            ids = ids[:ids.index(self.eos_token_id, len(self.prefix_ids)) + 1]
        if skip_special_tokens:
            special = set(self.special_token_ids.values()) | {self.pad_token_id}
            ids = [i for i in ids if i not in special]
        return self._postprocess_decoded(self.tokenizer.decode(ids, skip_special_tokens=False))

    def _postprocess_decoded(self, text: str) -> str:
        return text.strip()

    def batch_decode(self, batch: Union[Sequence[Sequence[int]], torch.Tensor],
                     skip_special_tokens: bool = True) -> List[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    def save(self, path: str) -> None:
        """Write the underlying tokenizer as a ``tokenizer.json``."""
        self.tokenizer.save(path)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(vocab_size={self.vocab_size}, '
                f'max_length={self.max_length}, pad_token_id={self.pad_token_id})')


def _load_tokenizer(tokenizer_file: Optional[str], pretrained: Optional[str]) -> Tokenizer:
    if tokenizer_file is not None:
        return Tokenizer.from_file(tokenizer_file)
    return Tokenizer.from_pretrained(pretrained)


def clip_clean(text: str) -> str:
    """open_clip's ``_clean_lower``: ftfy fix (when installed), html unescape twice,
    whitespace collapse, lower case."""
    try:
        import ftfy
        text = ftfy.fix_text(text)
    except ImportError:  # ftfy is optional; it only repairs mojibake
        pass
    text = html.unescape(html.unescape(text))
    return ' '.join(text.split()).lower()


@TOKENIZERS.register_module()
class CLIPTokenizer(HFTokenizer):
    """CLIP's byte-level BPE: lower-case, whitespace-cleaned, ``<|startoftext|> ...
    <|endoftext|>``, padded with 0 to ``max_length`` (77) as open_clip pads.

    Give exactly one source:
        tokenizer_file: a HF ``tokenizer.json`` (its model, normaliser and pre-tokenizer are used).
        vocab_file + merges_file: HF's ``vocab.json`` and ``merges.txt``.
        bpe_path: OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (merges only; the vocabulary is
            256 bytes, the same with ``</w>``, the merges, then SOT and EOT: 49408 ids).
            ``'bundled'`` takes the copy shipped with vlp (vlp/datasets/assets/, MIT, see
            LICENSE-CLIP-BPE there); ``'open_clip'`` the one installed with open_clip.
        pretrained: a hub name (``Tokenizer.from_pretrained``) where a hub is reachable.

    Args:
        max_length: context length.
        pad_token_id: 0 as open_clip (HF pads with EOT; with argmax pooling both work).
        clean: apply :func:`clip_clean` (ftfy + html unescape) before tokenising.
    """

    def __init__(self, tokenizer_file: Optional[str] = None, vocab_file: Optional[str] = None,
                 merges_file: Optional[str] = None, bpe_path: Optional[str] = None,
                 pretrained: Optional[str] = None, max_length: int = 77, pad_token_id: int = 0,
                 clean: bool = True):
        sources = [tokenizer_file, vocab_file or merges_file, bpe_path, pretrained]
        if sum(s is not None for s in sources) != 1:
            raise ValueError('give exactly one of tokenizer_file, vocab_file+merges_file, '
                             'bpe_path, pretrained')
        if tokenizer_file is not None or pretrained is not None:
            tok = _load_tokenizer(tokenizer_file, pretrained)
        else:
            if bpe_path is not None:
                vocab, merges = self.read_openai_bpe(bpe_path)
            else:
                with open(vocab_file, encoding='utf-8') as f:
                    vocab = json.load(f)
                merges = self.read_merges(merges_file)
            tok = self.build(vocab, merges)
        super().__init__(tok, max_length=max_length, pad_token_id=pad_token_id,
                         bos_token=CLIP_SOT, eos_token=CLIP_EOT,
                         clean_fn=clip_clean if clean else None)
        self.sot_token_id = self.bos_token_id
        self.eot_token_id = self.eos_token_id
        self.cls_token_id = self.sep_token_id = self.mask_token_id = None
        self.unk_token_id = self.eot_token_id

    @staticmethod
    def read_merges(path: str) -> List[tuple]:
        with open(path, encoding='utf-8') as f:
            lines = f.read().split('\n')
        if lines and lines[0].startswith('#version'):
            lines = lines[1:]
        return [tuple(line.split()) for line in lines if line.strip()]

    @staticmethod
    def read_openai_bpe(path: str):
        """Vocabulary and merges from OpenAI's gzipped merges file (as open_clip builds them)."""
        if path == 'bundled':
            path = BUNDLED_CLIP_BPE
        elif path == 'open_clip':
            import open_clip.tokenizer as oct
            path = oct.default_bpe()
        with gzip.open(path) as f:
            lines = f.read().decode('utf-8').split('\n')
        merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1] if m.strip()]
        units = list(bytes_to_unicode().values())
        tokens = units + [u + '</w>' for u in units] + [''.join(m) for m in merges]
        tokens += [CLIP_SOT, CLIP_EOT]
        return {t: i for i, t in enumerate(tokens)}, merges

    @staticmethod
    def build(vocab: Dict[str, int], merges: List[tuple]) -> Tokenizer:
        """The CLIP pipeline on HF ``tokenizers`` (as HF's ``CLIPTokenizer``): NFC, whitespace
        collapse, lower case; CLIP's regex split, byte-level units; BPE with ``</w>``."""
        tok = Tokenizer(BPE(vocab=vocab, merges=merges, continuing_subword_prefix='',
                            end_of_word_suffix='</w>', fuse_unk=False, unk_token=CLIP_EOT))
        tok.normalizer = normalizers.Sequence([
            normalizers.NFC(), normalizers.Replace(Regex(r'\s+'), ' '), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior='removed', invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([CLIP_SOT, CLIP_EOT])
        return tok

    def _postprocess_decoded(self, text: str) -> str:
        return ' '.join(text.replace('</w>', ' ').split())


@TOKENIZERS.register_module()
class BertTokenizer(HFTokenizer):
    """BERT's WordPiece: ``[CLS] ... [SEP]``, ``[PAD]`` padding, optional lower-casing and
    accent stripping (HF ``BertTokenizer`` semantics).

    Args:
        vocab_file: a ``vocab.txt`` (one token a line); or
        tokenizer_file: a HF ``tokenizer.json``; or pretrained: a hub name.
        lowercase: lower-case (``bert-base-uncased``); ``strip_accents`` follows it
            unless given (HF's rule).
        additional_special_tokens: extra tokens appended to the vocabulary when missing
            (BLIP adds ``'[DEC]'`` and ``'[ENC]'``); their ids come from :meth:`token_to_id`.
        max_length: padded length.
    """

    def __init__(self, vocab_file: Optional[str] = None, tokenizer_file: Optional[str] = None,
                 pretrained: Optional[str] = None, lowercase: bool = True,
                 strip_accents: Optional[bool] = None, tokenize_chinese_chars: bool = True,
                 additional_special_tokens: Sequence[str] = (), max_length: int = 35):
        if sum(s is not None for s in (vocab_file, tokenizer_file, pretrained)) != 1:
            raise ValueError('give exactly one of vocab_file, tokenizer_file, pretrained')
        if vocab_file is not None:
            with open(vocab_file, encoding='utf-8') as f:
                vocab = {line.rstrip('\n'): i for i, line in enumerate(f)}
            tok = Tokenizer(WordPiece(vocab, unk_token='[UNK]', max_input_chars_per_word=100))
            tok.normalizer = normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
                strip_accents=strip_accents, lowercase=lowercase)
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece(prefix='##')
            tok.add_special_tokens([t for t in ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')
                                    if t in vocab])
        else:
            tok = _load_tokenizer(tokenizer_file, pretrained)
        if additional_special_tokens:
            tok.add_special_tokens(list(additional_special_tokens))
        pad = tok.token_to_id('[PAD]')
        super().__init__(tok, max_length=max_length, pad_token_id=0 if pad is None else pad,
                         bos_token='[CLS]', eos_token='[SEP]',
                         special_tokens=dict(cls='[CLS]', sep='[SEP]', mask='[MASK]',
                                             unk='[UNK]'))
        for t in additional_special_tokens:
            self.special_token_ids[t] = tok.token_to_id(t)

    def _postprocess_decoded(self, text: str) -> str:
        return ' '.join(text.split())


# --------------------------------------------------------------------------- demo


DEMO_VOCABULARIES = ('captions', 'tasks')


@lru_cache(maxsize=4)
def _demo_words(vocabulary: str = 'captions') -> Tuple[str, ...]:
    """Sorted word-level vocabulary (whitespace/punctuation split) of the demo corpus
    (``'captions'``), or, for ``'tasks'``, the pair (caption words, the demo task texts'
    other words, sorted); computed once per process."""
    from .demo import demo_corpus  # local import: demo imports this module's users
    if vocabulary not in DEMO_VOCABULARIES:
        raise ValueError(f'vocabulary must be one of {DEMO_VOCABULARIES}, got {vocabulary!r}')
    pre = pre_tokenizers.Whitespace()

    def words_of(corpus) -> set:
        return {w for text in corpus for w, _ in pre.pre_tokenize_str(text.lower())}

    captions = sorted(words_of(demo_corpus()))
    if vocabulary == 'captions':
        return tuple(captions)
    from .demo.tasks import demo_task_corpus
    return tuple(captions), tuple(sorted(words_of(demo_task_corpus()) - set(captions)))


@TOKENIZERS.register_module()
class DemoTokenizer(HFTokenizer):
    """Word-level tokenizer built deterministically from :func:`demo_corpus` (lower-case,
    split on whitespace and punctuation; the vocabulary is the sorted set of words).

    ``style='clip'``: ids ``0=<pad>, 1=<unk>``, the words, any ``additional_special_tokens``,
    then ``<|startoftext|>`` and ``<|endoftext|>`` = the largest id (argmax pooling finds it).
    ``style='bert'``: ``0=[PAD], 1=[UNK], 2=[CLS], 3=[SEP], 4=[MASK]``, the words, then any
    ``additional_special_tokens`` (e.g. BLIP's ``'[DEC]'``, ``'[ENC]'``).

    Args:
        style: ``'clip'`` or ``'bert'``.
        max_length: padded length (32 holds every demo caption).
        vocabulary: ``'captions'`` (the caption corpus: the default, whose ids and size the
            demo configs rely on, 53 ids for ``'bert'`` and 52 for ``'clip'``) or ``'tasks'``
            (the caption vocabulary extended: every caption word and special token keeps
            its ``'captions'`` id, the other words of the demo task texts of
            :mod:`vlp.datasets.demo.tasks` follow, sorted, after the
            ``additional_special_tokens``; in ``'clip'`` style before the start / end
            tokens, which move). A model pre-trained on the captions thus fine-tunes on
            the tasks with its word embeddings grown, not permuted.
        cache_dir: if given, the built ``tokenizer.json`` is cached there under a name keyed
            by a hash of the vocabulary recipe, and read back from there next time.
    """

    def __init__(self, style: str = 'clip', max_length: int = 32,
                 additional_special_tokens: Sequence[str] = (),
                 cache_dir: Optional[str] = None, vocabulary: str = 'captions'):
        if style not in ('clip', 'bert'):
            raise ValueError(f"style must be 'clip' or 'bert', got {style!r}")
        if vocabulary not in DEMO_VOCABULARIES:
            raise ValueError(f'vocabulary must be one of {DEMO_VOCABULARIES}, '
                             f'got {vocabulary!r}')
        self.style = style
        self.vocabulary = vocabulary
        extra = list(additional_special_tokens)
        tok = None
        path = None
        if cache_dir is not None:
            from .demo import DEMO_VERSION
            recipe = [DEMO_VERSION, style, extra]
            if vocabulary != 'captions':
                from .demo.tasks import DEMO_TASKS_VERSION
                recipe += [vocabulary, DEMO_TASKS_VERSION]
            key = hashlib.sha1(json.dumps(recipe).encode()).hexdigest()
            path = osp.join(cache_dir, f'demo_tokenizer_{style}_{vocabulary}_{key[:12]}.json')
            if osp.isfile(path):
                tok = Tokenizer.from_file(path)
        if tok is None:
            tok = self.build(style, extra, vocabulary)
            if path is not None:
                os.makedirs(cache_dir, exist_ok=True)
                tmp = f'{path}.{os.getpid()}.tmp'
                tok.save(tmp)
                os.replace(tmp, path)  # atomic: several ranks may build at once
        if style == 'clip':
            super().__init__(tok, max_length=max_length, pad_token_id=0,
                             bos_token=CLIP_SOT, eos_token=CLIP_EOT,
                             special_tokens=dict(unk='<unk>'))
            self.sot_token_id, self.eot_token_id = self.bos_token_id, self.eos_token_id
            self.cls_token_id = self.sep_token_id = self.mask_token_id = None
        else:
            super().__init__(tok, max_length=max_length, pad_token_id=0,
                             bos_token='[CLS]', eos_token='[SEP]',
                             special_tokens=dict(cls='[CLS]', sep='[SEP]', mask='[MASK]',
                                                 unk='[UNK]'))
        for t in extra:
            self.special_token_ids[t] = tok.token_to_id(t)

    @staticmethod
    def build(style: str, additional_special_tokens: Sequence[str] = (),
              vocabulary: str = 'captions') -> Tokenizer:
        if vocabulary == 'tasks':  # the caption vocabulary extended at its end
            words, task_words = (list(w) for w in _demo_words(vocabulary))
        else:
            words, task_words = list(_demo_words(vocabulary)), []
        extra = list(additional_special_tokens)
        if style == 'clip':
            # the end-of-text token stays the largest id (CLIP's argmax pooling)
            tokens = ['<pad>', '<unk>'] + words + extra + task_words + [CLIP_SOT, CLIP_EOT]
            unk = '<unk>'
            specials = ['<pad>', '<unk>'] + extra + [CLIP_SOT, CLIP_EOT]
        else:
            head = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
            tokens = head + words + extra + task_words
            unk = '[UNK]'
            specials = head + extra
        vocab = {t: i for i, t in enumerate(tokens)}
        if len(vocab) != len(tokens):
            raise ValueError('additional_special_tokens collide with the demo vocabulary')
        tok = Tokenizer(WordLevel(vocab, unk_token=unk))
        tok.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r'\s+'), ' '),
                                               normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.add_special_tokens(specials)
        return tok

    def _postprocess_decoded(self, text: str) -> str:
        return ' '.join(text.split())


# -- language models' own tokenizers (BLIP-2 stage 2, MiniGPT-4, LLaVA) ---------------
@TOKENIZERS.register_module()
class LMTokenizer:
    """The LLM's own HF tokenizer with vlp's tokenizer contract (for the ``Tokenize``
    transform and the models' inference API).

    ``tok(texts, max_length)`` gives the **target** format of :class:`BLIP2LM`'s loss,
    the same for decoder-only and encoder-decoder LMs: the text's tokens without special
    tokens, truncated, then EOS; right padded to ``max_length`` (or the longest).
    :meth:`encode_prompt` gives a prompt *with* the tokenizer's own special tokens
    (OPT / Llama: ``BOS prompt``; T5: ``prompt </s>``).

    Args:
        pretrained: local directory for ``transformers.AutoTokenizer.from_pretrained``
            (``local_files_only=True``).
        tokenizer: an already built ``transformers`` tokenizer (instead of ``pretrained``).
        max_length: default length ``L`` of the targets (EOS included).
        pad_token_id: id of padding (default: the tokenizer's pad, else its unk (LLaVA's
            choice for Llama), else 0); padding is masked out everywhere.
        **kwargs: other ``from_pretrained`` arguments (``use_fast``...).
    """

    def __init__(self, pretrained: Optional[str] = None, tokenizer=None, max_length: int = 32,
                 pad_token_id: Optional[int] = None, **kwargs):
        if tokenizer is None:
            if pretrained is None:
                raise ValueError('LMTokenizer needs pretrained (a local directory) or '
                                 'tokenizer')
            from transformers import AutoTokenizer
            kwargs.setdefault('local_files_only', True)
            tokenizer = AutoTokenizer.from_pretrained(pretrained, **kwargs)
        self.hf = tokenizer
        self.max_length = max_length
        if pad_token_id is None:
            pad_token_id = next((t for t in (tokenizer.pad_token_id, tokenizer.unk_token_id)
                                 if t is not None), 0)
        self.pad_token_id = int(pad_token_id)
        self.eos_token_id = tokenizer.eos_token_id
        self.bos_token_id = tokenizer.bos_token_id
        if self.eos_token_id is None:
            raise ValueError('LMTokenizer: the tokenizer has no eos_token')

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str, max_length: Optional[int] = None) -> List[int]:
        """Target ids of one text: ``tokens[:max_length - 1] + [EOS]``."""
        max_length = max_length or self.max_length
        ids = self.hf(text, add_special_tokens=False)['input_ids']
        return list(ids)[:max_length - 1] + [self.eos_token_id]

    def _special_frame(self):
        """The special ids the tokenizer puts before / after a text (OPT, Llama: BOS
        before; T5: EOS after), found once by tokenising a probe word."""
        if getattr(self, '_frame', None) is None:
            full = list(self.hf('a')['input_ids'])
            plain = list(self.hf('a', add_special_tokens=False)['input_ids'])
            k = next((i for i in range(len(full) - len(plain) + 1)
                      if full[i:i + len(plain)] == plain), None)
            if not plain or k is None:
                raise ValueError('LMTokenizer: cannot locate the special tokens of the '
                                 'tokenizer')
            self._frame = (full[:k], full[k + len(plain):])
        return self._frame

    def encode_prompt(self, text: str, image_token: Optional[str] = None):
        """Prompt ids with the tokenizer's own special tokens (not truncated). With
        ``image_token`` given, returns ``(before, after)``: the ids of the text before and
        after that marker (``before`` is empty without it), the leading specials in
        ``before``, the trailing ones in ``after``."""
        if image_token is None:
            return list(self.hf(text)['input_ids'])
        if image_token not in text:
            return [], list(self.hf(text)['input_ids'])
        pre, post = text.split(image_token, 1)
        head, tail = self._special_frame()
        plain = lambda t: list(self.hf(t, add_special_tokens=False)['input_ids']) if t else []
        return head + plain(pre), plain(post) + tail

    def pad(self, rows: Sequence[Sequence[int]], length: Optional[int] = None
            ) -> Dict[str, torch.Tensor]:
        """Right-pad id lists -> ``input_ids`` / ``attention_mask`` ``[B, L]``."""
        length = length or max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(list(r), dtype=torch.long)
            mask[i, :len(r)] = 1
        return dict(input_ids=ids, attention_mask=mask)

    def __call__(self, texts: Union[str, Sequence[str]], max_length: Optional[int] = None,
                 padding: str = 'max_length') -> Dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        max_length = max_length or self.max_length
        if padding not in ('max_length', 'longest'):
            raise ValueError(f'padding must be "max_length" or "longest", got {padding!r}')
        rows = [self.encode(t, max_length) for t in texts]
        return self.pad(rows, max_length if padding == 'max_length' else None)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens).strip()

    def batch_decode(self, batch, skip_special_tokens: bool = True) -> List[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({type(self.hf).__name__}, vocab_size='
                f'{self.vocab_size}, max_length={self.max_length})')


def as_lm_tokenizer(tokenizer, family: str) -> LMTokenizer:
    """``tokenizer`` as an :class:`LMTokenizer` (a plain ``transformers`` tokenizer is
    wrapped); ``None`` raises naming ``family`` and the config key to set."""
    if tokenizer is None:
        raise RuntimeError(f'{family} needs its LLM tokenizer (model.tokenizer: '
                           "dict(type='LMTokenizer', pretrained=...))")
    return tokenizer if isinstance(tokenizer, LMTokenizer) else LMTokenizer(tokenizer=tokenizer)


def demo_lm_tokenizer():
    """A ``transformers`` tokenizer over the embedded demo words, in OPT's layout: word
    level, lower-cased, ``<pad>=0``, ``</s>=1`` (BOS and EOS, put first as OPT does),
    ``<unk>=2``, then the demo words (vocabulary ``3 + len(demo words)`` = 51). Built in
    memory, nothing written or downloaded: the LLM tokenizer of the BLIP-2 stage-2 demo."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from vlp.datasets.tokenizers import _demo_words
    specials = ['<pad>', '</s>', '<unk>']
    tokens = specials + list(_demo_words())
    tk = Tokenizer(WordLevel({t: i for i, t in enumerate(tokens)}, unk_token='<unk>'))
    tk.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r'\s+'), ' '),
                                          normalizers.Lowercase()])
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.add_special_tokens(specials)
    tk.post_processor = processors.TemplateProcessing(  # OPT: BOS (= </s>) first
        single='</s> $A', special_tokens=[('</s>', 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token='<pad>', eos_token='</s>',
                                   bos_token='</s>', unk_token='<unk>')


@TOKENIZERS.register_module()
class DemoLMTokenizer(LMTokenizer):
    """:class:`LMTokenizer` over :func:`demo_lm_tokenizer` (the demo configs' LLM
    tokenizer; vocabulary 51)."""

    def __init__(self, max_length: int = 32):
        super().__init__(tokenizer=demo_lm_tokenizer(), max_length=max_length)
