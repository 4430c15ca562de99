"""Text transforms: caption cleaning (ALBEF/BLIP ``pre_caption``) and tokenisation."""
import re
from typing import Optional, Union

import numpy as np

from vlp.registry import TOKENIZERS, TRANSFORMS


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
    """

    def __init__(self, tokenizer: Union[dict, object], max_length: Optional[int] = None,
                 key: str = 'text', random_caption: bool = False):
        self.tokenizer = _build_tokenizer(tokenizer)
        self.max_length = max_length or self.tokenizer.max_length
        self.key = key
        self.random_caption = random_caption

    def __call__(self, results: dict) -> dict:
        text = results[self.key]
        if isinstance(text, str):
            out = self.tokenizer([text], max_length=self.max_length)
            out = {k: v[0] for k, v in out.items()}  # (L,)
        else:
            text = list(text)
            if not text:
                raise ValueError(f'Tokenize: empty caption list in {self.key!r}')
            if self.random_caption:
                text = text[np.random.randint(len(text))]
                results[self.key] = text
                out = {k: v[0] for k, v in
                       self.tokenizer([text], max_length=self.max_length).items()}  # (L,)
            else:
                out = self.tokenizer(text, max_length=self.max_length)  # (K, L)
        results['input_ids'] = out['input_ids']
        results['attention_mask'] = out['attention_mask']
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(tokenizer={self.tokenizer!r}, '
                f'max_length={self.max_length}, key={self.key!r}, '
                f'random_caption={self.random_caption})')


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
    ``Tokenize`` as ALBEF and BLIP do (``max_words=30``)."""

    def __init__(self, max_words: int = 30, style: str = 'blip', key: str = 'text'):
        self.max_words, self.style, self.key = max_words, style, key
        pre_caption('x', max_words, style)  # validate style early

    def __call__(self, results: dict) -> dict:
        text = results[self.key]
        if isinstance(text, str):
            results[self.key] = pre_caption(text, self.max_words, self.style)
        else:
            results[self.key] = [pre_caption(t, self.max_words, self.style) for t in text]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(max_words={self.max_words}, style={self.style!r})'
