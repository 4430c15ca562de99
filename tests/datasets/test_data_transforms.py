"""Image and text transforms: shapes, dtypes, determinism where expected."""
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from PIL import Image

from vlp.datasets.transforms import (CenterCrop, CleanCaption, RandomResizedCrop, Resize,
                                     ToTensor, Tokenize, pre_caption)
from vlp.registry import TRANSFORMS


def _img(w=40, h=30):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2, 0] = 255  # left half red
    arr[:, w // 2:, 2] = 255  # right half blue
    return Image.fromarray(arr)


def test_resize_shorter_side_and_exact():
    out = Resize(15)(dict(img=_img()))
    assert out['img'].size == (20, 15)  # (W, H): aspect kept
    out = Resize((8, 12))(dict(img=_img()))
    assert out['img'].size == (12, 8)


def test_center_crop_and_to_tensor():
    out = ToTensor()(CenterCrop(20)(dict(img=_img())))
    img = out['image']
    assert 'img' not in out and img.shape == (3, 20, 20) and img.dtype == torch.uint8
    assert img.is_contiguous()
    assert (img[0, :, :10] == 255).all() and (img[2, :, 10:] == 255).all()  # no flip
    # arrays, grey images and float tensors
    assert ToTensor()(dict(img=np.zeros((5, 6, 3), np.uint8)))['image'].shape == (3, 5, 6)
    assert ToTensor()(dict(img=Image.new('L', (4, 3))))['image'].shape == (3, 3, 4)
    t = ToTensor()(dict(img=torch.full((3, 2, 2), 254.6)))['image']
    assert t.dtype == torch.uint8 and (t == 255).all()


def test_random_resized_crop_size_and_seeded():
    t = RandomResizedCrop(16, scale=(0.5, 1.0))
    torch.manual_seed(0)
    a = ToTensor()(t(dict(img=_img())))['image']
    torch.manual_seed(0)
    b = ToTensor()(t(dict(img=_img())))['image']
    assert a.shape == (3, 16, 16) and torch.equal(a, b)


def test_registry_and_compose_with_default_scope():
    init_default_scope('vlp')
    pipe = Compose([dict(type='Resize', size=(8, 8)), dict(type='ToTensor'),
                    dict(type='Tokenize', tokenizer=dict(type='DemoTokenizer'),
                         max_length=10)])
    out = pipe(dict(img=_img(), text='a red square on the left'))
    assert out['image'].shape == (3, 8, 8) and out['input_ids'].shape == (10,)
    for name in ('LoadImage', 'Resize', 'CenterCrop', 'RandomResizedCrop', 'ToTensor',
                 'Tokenize', 'CleanCaption', 'RandomHorizontalFlip', 'RandAugment'):
        assert TRANSFORMS.get(name) is not None, name
    flip = TRANSFORMS.build(dict(type='RandomHorizontalFlip', prob=1.0))
    flipped = ToTensor()(flip(dict(img=_img())))['image']
    assert (flipped[2, :, :20] == 255).all()  # blue now on the left
    aug = TRANSFORMS.build(dict(type='RandAugment', num_ops=2, magnitude=7))
    assert aug(dict(img=_img()))['img'].size == (40, 30)


def test_tokenize_str_list_and_random_caption():
    tok = Tokenize(tokenizer=dict(type='DemoTokenizer', style='bert'), max_length=10)
    out = tok(dict(text='a red circle'))
    assert out['input_ids'].shape == (10,) and out['attention_mask'].shape == (10,)
    assert out['input_ids'].dtype == torch.long and out['attention_mask'].sum() == 5
    caps = ['a red circle', 'a blue star on the left', 'a big white cross']
    out = tok(dict(text=list(caps)))
    assert out['input_ids'].shape == (3, 10) and out['text'] == caps
    rnd = Tokenize(tokenizer=tok.tokenizer, random_caption=True)
    assert rnd.max_length == 32  # the tokenizer's own
    np.random.seed(0)
    picked = set()
    for _ in range(20):
        o = rnd(dict(text=list(caps)))
        assert o['input_ids'].shape == (32,) and o['text'] in caps
        assert tok.tokenizer.decode(o['input_ids']) == o['text']
        picked.add(o['text'])
    assert len(picked) > 1


def test_clean_caption():
    assert pre_caption('A man (left)   riding a horse!!', style='blip') == \
        'a man left riding a horse'
    assert pre_caption("A dog's toy, red-ish.", style='albef') == 'a dogs toy red ish'
    assert pre_caption(' '.join(['w'] * 40), max_words=30) == ' '.join(['w'] * 30)
    out = CleanCaption(max_words=3)(dict(text=['One two three four', 'Five.']))
    assert out['text'] == ['one two three', 'five']
    with pytest.raises(ValueError):
        CleanCaption(style='nope')
    # BLIP's captioning fine-tuning: the prompt before the cleaned caption, not cleaned itself
    out = CleanCaption(prefix='a picture of ')(dict(text='A RED Circle!'))
    assert out['text'] == 'a picture of a red circle'
    assert CleanCaption(prefix='p: ')(dict(text=['A', 'B']))['text'] == ['p: a', 'p: b']
    with pytest.raises(TypeError, match='prefix'):
        CleanCaption(prefix=None)


def test_set_text_before_tokenize():
    from vlp.datasets.transforms import SetText, Tokenize
    from vlp.datasets.tokenizers import DemoTokenizer
    tok = DemoTokenizer(style='bert', max_length=8)
    out = Tokenize(tok)(SetText('a picture')(dict(label=3)))
    assert out['text'] == 'a picture' and out['label'] == 3
    assert out['input_ids'].tolist()[:4] == [tok.cls_token_id, tok.token_to_id('a'),
                                             tok.token_to_id('picture'), tok.sep_token_id]
    assert SetText('x', key='question')(dict(question='old'))['question'] == 'x'
