"""The embedded demo data: deterministic, split-disjoint, captions consistent with scenes."""
import re

import numpy as np
import pytest
import torch

from vlp.datasets import (DEMO_TEMPLATES, DemoClassification, DemoImageText, DemoTokenizer,
                          demo_class_names, demo_corpus, demo_scenes, vlp_collate)
from vlp.datasets.demo import COLOURS, SHAPES, scene_bucket, scene_key
from vlp.registry import DATASETS

POS_WORDS = {'left': ('left',), 'right': ('right',), 'top': ('top',), 'bottom': ('bottom',),
             'centre': ('centre', 'middle')}
SIZE_WORDS = {'small': ('small', 'little'), 'large': ('large', 'big')}


def test_same_index_same_pixels_and_captions_across_instances():
    a = DemoImageText('test', num_images=20, image_size=32)
    b = DATASETS.build(dict(type='DemoImageText', split='test', num_images=20, image_size=32))
    assert len(a) == len(b) == 20
    for i in (0, 7, 19):
        sa, sb = a[i], b[i]
        assert sa['image'].dtype == torch.uint8 and sa['image'].shape == (3, 32, 32)
        assert torch.equal(sa['image'], sb['image'])
        assert sa['text'] == sb['text'] and len(set(sa['text'])) == 5
        assert torch.equal(sa['input_ids'], sb['input_ids'])
    # a prefix does not depend on the requested size
    c = DemoImageText('test', num_images=40, image_size=32)
    assert torch.equal(c[7]['image'], a[7]['image']) and c[7]['text'] == a[7]['text']


def test_different_indices_and_seeds_differ():
    ds = DemoImageText('val', num_images=10, image_size=32)
    assert not torch.equal(ds[0]['image'], ds[1]['image'])
    other = DemoImageText('val', num_images=10, image_size=32, seed=1)
    assert not torch.equal(ds[0]['image'], other[0]['image'])


def test_splits_disjoint_and_scenes_unique():
    keys = {}
    for split in ('train', 'val', 'test'):
        scenes = demo_scenes(split, 300)
        ks = [scene_key(objs) for objs, _ in scenes]
        assert len(set(ks)) == len(ks), f'duplicate scene in {split}'
        assert all(scene_bucket(objs) == split for objs, _ in scenes)
        keys[split] = set(ks)
    assert not keys['train'] & keys['val']
    assert not keys['train'] & keys['test']
    assert not keys['val'] & keys['test']
    # and the pixels of the same index differ between splits
    tr = DemoImageText('train', num_images=5, image_size=32, mode='eval')
    te = DemoImageText('test', num_images=5, image_size=32)
    assert not torch.equal(tr[0]['image'], te[0]['image'])


def _dominant_colour(img: np.ndarray, cx: float, cy: float) -> str:
    """Name of the palette colour nearest to the pixel at the object's centre."""
    h, w, _ = img.shape
    patch = img[int(cy * h) - 1:int(cy * h) + 2, int(cx * w) - 1:int(cx * w) + 2]
    pix = patch.reshape(-1, 3).mean(0)
    return min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - pix).sum())


def test_captions_name_every_drawn_object():
    ds = DemoImageText('test', num_images=60, image_size=64, noise=0.0)
    from vlp.datasets.demo import POSITIONS
    for i in range(60):
        objects = ds.get_scene(i)
        caps = ds.get_data_info(i)['text']
        assert len(caps) == 5 and len(set(caps)) == 5
        for cap in caps:
            words = re.findall(r'[a-z]+', cap)
            # every object: size, colour, shape and position words are there...
            for size, colour, shape, pos in objects:
                assert colour in words and shape in words, (cap, objects)
                assert any(w in words for w in POS_WORDS[pos]), (cap, objects)
                assert any(w in words for w in SIZE_WORDS[size]), (cap, objects)
            # ...and no colour or shape that is not drawn
            assert {w for w in words if w in COLOURS} == {o[1] for o in objects}
            assert {w for w in words if w in SHAPES} == {o[2] for o in objects}
        # the drawn pixels at each object's place have the caption's colour
        img = np.asarray(ds.render(i))
        for size, colour, shape, pos in objects:
            if shape in ('triangle', 'star'):
                continue  # their centroid is off the bounding-circle centre: skip
            cx, cy = POSITIONS[pos]
            # a larger object may cover a small one only partly: check the small ones
            # and the large ones not overlapped
            if size == 'small' or len(objects) == 1:
                assert _dominant_colour(img, cx, cy) == colour, (i, objects)


def test_train_mode_random_caption_and_pairs():
    np.random.seed(0)
    ds = DemoImageText('train', num_images=8, image_size=32)
    assert ds.mode == 'train' and len(ds) == 8
    caps = ds.get_data_info(3)['text']
    seen = {ds[3]['text'] for _ in range(30)}
    assert seen <= set(caps) and len(seen) > 1
    s = ds[3]
    assert s['input_ids'].shape == (32,) and s['attention_mask'].shape == (32,)
    pairs = DemoImageText('train', num_images=8, image_size=32, train_sampling='pairs')
    assert len(pairs) == 40
    assert [pairs[k]['text'] for k in range(15, 20)] == caps
    assert {pairs[k]['image_id'] for k in range(15, 20)} == {3}


def test_eval_mode_all_captions_and_collate():
    ds = DemoImageText('val', num_images=6, image_size=32)
    assert ds.mode == 'eval'
    batch = vlp_collate([ds[i] for i in range(4)])
    assert batch['image'].shape == (4, 3, 32, 32)
    assert batch['input_ids'].shape == (4, 5, 32) and batch['input_ids'].dtype == torch.long
    assert batch['image_id'].tolist() == [0, 1, 2, 3]
    assert len(batch['text']) == 4 and len(batch['text'][0]) == 5


def test_tokenizer_covers_the_demo_vocabulary():
    for style in ('clip', 'bert'):
        tok = DemoTokenizer(style=style)
        unk = tok.unk_token_id
        texts = [c for _, caps in demo_scenes('test') for c in caps]
        texts += [t.format(n) for n in demo_class_names() for t in DEMO_TEMPLATES]
        ids = tok(texts)['input_ids']
        assert not (ids == unk).any()
        assert ids.shape[1] == 32 and (ids[:, -1] == tok.pad_token_id).all()  # room to spare
    assert sum(1 for _ in demo_corpus(50)) == 50 * 5 + 40 * (1 + len(DEMO_TEMPLATES))


@pytest.mark.parametrize('label,n_cls', [('colour_shape', 40), ('shape', 5), ('colour', 8)])
def test_classification(label, n_cls):
    ds = DemoClassification('test', num_images=2 * n_cls, image_size=32, label=label)
    assert ds.metainfo['classes'] == demo_class_names(label) and len(ds.metainfo['classes']) \
        == n_cls
    assert ds.metainfo['templates'] == list(DEMO_TEMPLATES)
    labels = [ds[i]['label'] for i in range(len(ds))]
    assert sorted(set(labels)) == list(range(n_cls))
    s = ds[3]
    assert s['image'].shape == (3, 32, 32) and s['image'].dtype == torch.uint8
    size, colour, shape, pos = ds.get_object(3)
    name = ds.metainfo['classes'][s['label']]
    if label == 'colour_shape':
        assert name == f'{colour} {shape}'
    elif label == 'shape':
        assert name == shape
    else:
        assert name == colour
    again = DemoClassification('test', num_images=2 * n_cls, image_size=32, label=label)
    assert torch.equal(again[3]['image'], s['image'])
    train = DemoClassification('train', num_images=2 * n_cls, image_size=32, label=label)
    assert not torch.equal(train[3]['image'], s['image'])
