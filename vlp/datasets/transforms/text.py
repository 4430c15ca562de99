"""Text transforms: caption cleaning (ALBEF/BLIP ``pre_caption``) and tokenisation."""
import re
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from vlp.registry import TOKENIZERS, TRANSFORMS
from ..skips import BadSample


_ALNUM = re.compile(r'[^\W_]')
_ENTITY = re.compile(r'&#?\w+;')


def _build_tokenizer(tokenizer):
    return TOKENIZERS.build(tokenizer) if isinstance(tokenizer, dict) else tokenizer


@TRANSFORMS.register_module()
class Tokenize:
    """Tokenise ``results[key]`` into ``input_ids`` / ``attention_mask`` (``int64``).

    A str gives ``[L]``; a list of K str gives ``[K, L]`` (all captions of an image, for
    retrieval evaluation), or, with ``random_caption=True``, one caption drawn at random
    (``results[key]`` then holds the drawn caption) and ``[L]``.

    Args:
        tokenizer: a tokenizer or its config (``TOKENIZERS``), e.g.
            ``dict(type='CLIPTokenizer', bpe_path='open_clip')``.
        max_length: padded length ``L`` (default: the tokenizer's).
        key: the text field.
        random_caption: draw one caption of a list (training).
        return_word_ids: also write ``word_ids`` (``int64``, the shape of ``input_ids``):
            the index of the word each token belongs to, from the HF ``tokenizers``
            ``Encoding.word_ids`` (the pre-tokenizer's words, so the subword pieces of one
            word share it), ``-1`` on special tokens and padding. Whole-word masking (ViLT)
            reads it. Needs a :class:`~vlp.datasets.tokenizers.HFTokenizer`-style tokenizer
            (``.tokenizer``, ``prefix_ids``, ``suffix_ids``).

    A caption that is empty or blank after the tokenizer's own cleaning (``clean_fn``:
    CLIP's html unescape, ftfy and whitespace folding), or an empty list of captions,
    raises :class:`~vlp.datasets.skips.BadSample` (``'bad_caption'``): the dataset skips the
    sample and records it instead of training on a caption of special tokens only.
    """

    def __init__(self, tokenizer: Union[dict, object], max_length: Optional[int] = None,
                 key: str = 'text', random_caption: bool = False,
                 return_word_ids: bool = False):
        self.tokenizer = _build_tokenizer(tokenizer)
        self.max_length = max_length or self.tokenizer.max_length
        self.key = key
        self.random_caption = random_caption
        self.return_word_ids = return_word_ids
        if return_word_ids:
            missing = [a for a in ('tokenizer', 'prefix_ids', 'suffix_ids')
                       if not hasattr(self.tokenizer, a)]
            if missing:
                raise TypeError(f'Tokenize(return_word_ids=True) needs an HFTokenizer-style '
                                f'tokenizer; {type(self.tokenizer).__name__} lacks {missing}')

    def word_ids(self, texts: Sequence[str], length: int) -> torch.Tensor:
        """``[K, length]`` word index of every token as the tokenizer lays the ids out
        (``[bos] + content[:budget] + [eos]``, right padding), ``-1`` off words."""
        tok = self.tokenizer
        clean = getattr(tok, 'clean_fn', None)
        texts = [clean(t) for t in texts] if clean is not None else list(texts)
        encs = tok.tokenizer.encode_batch(texts, add_special_tokens=False)
        budget = self.max_length - len(tok.prefix_ids) - len(tok.suffix_ids)
        out = torch.full((len(texts), length), -1, dtype=torch.long)
        for i, enc in enumerate(encs):
            words: List[int] = [-1 if w is None else w for w in enc.word_ids[:budget]]
            row = [-1] * len(tok.prefix_ids) + words + [-1] * len(tok.suffix_ids)
            out[i, :len(row)] = torch.tensor(row[:length], dtype=torch.long)
        return out

    def _check(self, texts: Sequence[str]) -> None:
        clean = getattr(self.tokenizer, 'clean_fn', None)
        for t in texts:
            if not isinstance(t, str):
                raise BadSample('bad_caption', f'Tokenize: {self.key!r} holds a '
                                f'{type(t).__name__} ({str(t)[:40]}), not a string')
            # only text without a letter or digit (outside html entities) can clean to ''
            maybe_empty = not _ALNUM.search(_ENTITY.sub('', t))
            if maybe_empty and not (clean(t) if clean is not None else t).strip():
                raise BadSample('bad_caption', f'Tokenize: the caption {t!r} in {self.key!r} '
                                'is empty after the tokenizer\'s cleaning')

    def __call__(self, results: dict) -> dict:
        text = results[self.key]
        if isinstance(text, str):
            self._check([text])
            out = self.tokenizer([text], max_length=self.max_length)
            out = {k: v[0] for k, v in out.items()}  # (L,)
            texts = [text]
        else:
            text = list(text)
            if not text:
                raise BadSample('bad_caption', f'Tokenize: empty caption list in {self.key!r}')
            self._check(text)
            if self.random_caption:
                text = text[np.random.randint(len(text))]
                results[self.key] = text
                out = {k: v[0] for k, v in
                       self.tokenizer([text], max_length=self.max_length).items()}  # (L,)
                texts = [text]
            else:
                out = self.tokenizer(text, max_length=self.max_length)  # (K, L)
                texts = text
        results['input_ids'] = out['input_ids']
        results['attention_mask'] = out['attention_mask']
        if self.return_word_ids:
            ids = out['input_ids']
            word_ids = self.word_ids(texts, ids.shape[-1])
            results['word_ids'] = word_ids.view(ids.shape)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(tokenizer={self.tokenizer!r}, '
                f'max_length={self.max_length}, key={self.key!r}, '
                f'random_caption={self.random_caption}, '
                f'return_word_ids={self.return_word_ids})')


def pre_caption(caption: str, max_words: int = 30, style: str = 'blip') -> str:
    """ALBEF's / BLIP's caption cleaning: lower case, drop punctuation, collapse spaces,
    keep the first ``max_words`` words."""
    if style == 'blip':
        caption = re.sub(r"([.!\"()*#:;~])", ' ', caption.lower())
        caption = re.sub(r'\s{2,}', ' ', caption).rstrip('\n').strip(' ')
    elif style == 'albef':
        caption = re.sub(r"([,.'!?\"()*#:;~])", '', caption.lower())
        caption = caption.replace('-', ' ').replace('/', ' ').replace('<person>', 'person')
        caption = re.sub(r'\s{2,}', ' ', caption).rstrip('\n').strip(' ')
    else:
        raise ValueError(f"style must be 'blip' or 'albef', got {style!r}")
    words = caption.split(' ')
    if max_words and len(words) > max_words:
        caption = ' '.join(words[:max_words])
    return caption


@TRANSFORMS.register_module()
class CleanCaption:
    """Apply :func:`pre_caption` to ``results[key]`` (a str or a list of str); put it before
    ``Tokenize`` as ALBEF and BLIP do (``max_words=30``).

    A caption the cleaning empties (``"..."``, ``"!!!"``) raises
    :class:`~vlp.datasets.skips.BadSample` (``'bad_caption'``): the dataset skips the sample
    and records it (in evaluation mode the image-text datasets drop such captions when they
    read the annotations, with this same cleaning).

    ``prefix`` is put before each cleaned caption: BLIP's captioning fine-tuning trains on
    ``'a picture of ' + pre_caption(caption)`` (its ``prompt``; the model keeps the prompt
    out of the loss). Training pipelines only: evaluation references stay unprefixed."""

    def __init__(self, max_words: int = 30, style: str = 'blip', key: str = 'text',
                 prefix: str = ''):
        self.max_words, self.style, self.key = max_words, style, key
        if not isinstance(prefix, str):
            raise TypeError(f'CleanCaption: prefix must be a str, got {prefix!r}')
        self.prefix = prefix
        pre_caption('x', max_words, style)  # validate style early

    def clean(self, text: str) -> str:
        return pre_caption(text, self.max_words, self.style)

    def __call__(self, results: dict) -> dict:
        text = results[self.key]
        texts = [text] if isinstance(text, str) else list(text)
        for t in texts:
            if not isinstance(t, str):
                raise BadSample('bad_caption', f'CleanCaption: {self.key!r} holds a '
                                f'{type(t).__name__} ({str(t)[:40]}), not a string')
        cleaned = [self.clean(t) for t in texts]
        for t, c in zip(texts, cleaned):
            if not c.strip():
                raise BadSample('bad_caption', f'CleanCaption: the caption {t!r} is empty '
                                f'after cleaning (style={self.style!r})')
        cleaned = [self.prefix + c for c in cleaned]
        results[self.key] = cleaned[0] if isinstance(text, str) else cleaned
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(max_words={self.max_words}, style={self.style!r}'
                + (f', prefix={self.prefix!r})' if self.prefix else ')'))


@TRANSFORMS.register_module()
class SetText:
    """Write a fixed text into ``results[key]`` (before ``Tokenize``): a model that always
    reads a text, given samples that have none, e.g. a single-stream ViLT trained as an
    image classifier (its image-only initialisation, as ViLT starts from an ImageNet ViT)
    reads a constant prompt."""

    def __init__(self, text: str, key: str = 'text'):
        self.text, self.key = text, key

    def __call__(self, results: dict) -> dict:
        results[self.key] = self.text
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(text={self.text!r}, key={self.key!r})'
