"""The demo task datasets (VQA, NLVR2, SNLI-VE): ground truth re-derived from the scene
objects by parsing the texts here, uniqueness of referents, determinism, split
disjointness, label balance, majority baselines, sample schema and vocabulary coverage."""
import re
from collections import Counter

import pytest
import torch

from vlp.datasets import (DemoImageText, DemoNLVR2, DemoSNLIVE, DemoTokenizer, DemoVQA,
                          demo_task_corpus, vlp_collate)
from vlp.datasets.demo import COLOURS, SHAPES, scene_key
from vlp.datasets.demo.tasks import ANSWER_VARIANTS, VQA_ANSWERS
from vlp.registry import DATASETS

POS = {'left': 'left', 'right': 'right', 'top': 'top', 'bottom': 'bottom',
       'centre': 'centre', 'middle': 'centre'}
PLURAL = {s + ('es' if s == 'cross' else 's'): s for s in SHAPES}
NUM = {'one': 1, 'two': 2, 'three': 3, 'four': 4}


def pos_of(phrase):
    return POS[next(w for w in reversed(phrase.split()) if w in POS)]


def parse_desc(text):
    """'large red shape' -> (size, colour, shape) with None for unnamed attributes."""
    words = text.split()
    size = words.pop(0) if words[0] in ('small', 'large') else None
    colour = words.pop(0) if words[0] in COLOURS else None
    assert len(words) == 1 and (words[0] in SHAPES or words[0] == 'shape'), text
    return size, colour, None if words[0] == 'shape' else words[0]


def select(objs, size=None, colour=None, shape=None, pos=None):
    return [o for o in objs if all(v is None or v == o[k]
                                   for k, v in enumerate((size, colour, shape, pos)))]


def the(objs, **kw):
    """The one object a definite description picks (the uniqueness rule)."""
    hits = select(objs, **kw)
    assert len(hits) == 1, (objs, kw)
    return hits[0]


def vqa_truth(q, objs):
    """(question_type, answer) computed from the objects alone."""
    m = re.fullmatch(r'what colour is the shape (.+)\?', q)
    if m:
        return 'colour', the(objs, pos=pos_of(m[1]))[1]
    m = re.fullmatch(r'what colour is the (\w+)\?', q)
    if m:
        return 'colour', the(objs, shape=m[1])[1]
    m = re.fullmatch(r'what shape is the (\w+) object\?', q)
    if m:
        return 'shape', the(objs, colour=m[1])[2]
    m = re.fullmatch(r'what shape is (.+)\?', q)
    if m:
        return 'shape', the(objs, pos=pos_of(m[1]))[2]
    if q == 'how many shapes are there?':
        return 'count', str(len(objs))
    m = re.fullmatch(r'how many (\w+) shapes are there\?', q)
    if m:
        return 'count', str(len(select(objs, colour=m[1])))
    m = re.fullmatch(r'how many (\w+) are there\?', q)
    if m:
        return 'count', str(len(select(objs, shape=PLURAL[m[1]])))
    m = re.fullmatch(r'where is the (\w+) shape\?', q)
    if m:
        return 'position', the(objs, colour=m[1])[3]
    m = re.fullmatch(r'where is the (\w+) (\w+)\?', q)
    if m:
        return 'position', the(objs, colour=m[1], shape=m[2])[3]
    m = re.fullmatch(r'where is the (\w+)\?', q)
    if m:
        return 'position', the(objs, shape=m[1])[3]
    m = re.fullmatch(r'what size is the shape (.+)\?', q)
    if m:
        return 'size', the(objs, pos=pos_of(m[1]))[0]
    m = re.fullmatch(r'what size is the (\w+) (\w+)\?', q)
    if m:
        return 'size', the(objs, colour=m[1], shape=m[2])[0]
    m = re.fullmatch(r'what size is the (\w+)\?', q)
    if m:
        return 'size', the(objs, shape=m[1])[0]
    m = re.fullmatch(r'is there (an?) (.+)\?', q)
    if m:
        size, colour, shape = parse_desc(m[2])
        assert m[1] == ('an' if m[2][0] in 'aeiou' else 'a')
        return 'yes/no', 'yes' if select(objs, size, colour, shape) else 'no'
    m = re.fullmatch(r'is the (\w+) (.+)\?', q)
    if m:
        return 'yes/no', 'yes' if the(objs, shape=m[1])[3] == pos_of(m[2]) else 'no'
    raise AssertionError(f'unparsed question {q!r}')


@pytest.fixture(scope='module')
def vqa_test():
    return DemoVQA('test')


def test_vqa_answers_match_scene_objects(vqa_test):
    ds = vqa_test
    assert len(ds) == 510 and ds.metainfo['answer_list'] == sorted(VQA_ANSWERS)
    families = Counter()
    ids = set()
    per_image = Counter()
    for i in range(len(ds)):
        info = ds.get_item_info(i)
        objs = ds.get_scene(info['image_id'])
        assert tuple(info['objects']) == tuple(objs)
        qtype, answer = vqa_truth(info['question'], objs)
        assert qtype == info['question_type'] and answer == info['answer'], info
        assert answer in ds.metainfo['answer_list']
        assert info['answer_type'] == {'yes/no': 'yes/no', 'count': 'number'}.get(qtype, 'other')
        answers = info['answers']
        assert len(answers) == 10 and answers.count(answer) >= 7
        assert all(a == answer or a in ANSWER_VARIANTS[answer] for a in answers)
        families[qtype] += 1
        ids.add(info['question_id'])
        per_image[info['image_id']] += 1
    assert len(ids) == len(ds)  # unique question ids
    assert set(per_image.values()) == {3}
    assert set(families) == {'colour', 'shape', 'count', 'position', 'size', 'yes/no'}
    # distinct families per image
    by_image = {}
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        by_image.setdefault(info['image_id'], []).append(info['question_type'])
    assert all(len(set(v)) == len(v) for v in by_image.values())
    # count answers include absent colours / shapes
    assert '0' in {ds.get_data_info(i)['answer'] for i in range(len(ds))}


def test_vqa_balance_and_majority_baseline(vqa_test):
    answers = Counter(vqa_test.get_data_info(i)['answer'] for i in range(len(vqa_test)))
    assert answers.most_common(1)[0][1] / len(vqa_test) < 0.25
    assert abs(answers['yes'] - answers['no']) <= 1


def test_vqa_sample_schema_determinism_and_pixels():
    a = DemoVQA('test', num_images=8, image_size=32)
    b = DATASETS.build(dict(type='DemoVQA', split='test', num_images=8, image_size=32))
    ref = DemoImageText('test', num_images=8, image_size=32)
    assert len(a) == 24
    for i in (0, 5, 23):
        s, t = a[i], b[i]
        assert s['image'].dtype == torch.uint8 and s['image'].shape == (3, 32, 32)
        assert torch.equal(s['image'], t['image'])
        assert torch.equal(s['image'], ref[s['image_id']]['image'])  # same scene pixels
        assert s['input_ids'].shape == s['attention_mask'].shape == (24,)
        assert s['input_ids'].dtype == torch.long and s['attention_mask'][-1] == 0
        for k in ('question', 'question_id', 'image_id', 'answers', 'answer_type',
                  'question_type'):
            assert s[k] == t[k]
        assert isinstance(s['question'], str) and len(s['answers']) == 10
    # a prefix does not depend on the requested size
    c = DemoVQA('test', num_images=16, image_size=32)
    assert [c.get_data_info(i)['question'] for i in range(24)] == \
        [a.get_data_info(i)['question'] for i in range(24)]
    batch = vlp_collate([a[0], a[1]])
    assert batch['image'].shape == (2, 3, 32, 32)


def nlvr2_truth(text, left, right):
    m = re.fullmatch(r'(the left image contains|the right image contains|both images '
                     r'contain|exactly one image contains|neither image contains) (an?) (.+)',
                     text)
    if m:
        d = parse_desc(m[3])
        assert m[2] == ('an' if m[3][0] in 'aeiou' else 'a')
        l, r = bool(select(left, *d)), bool(select(right, *d))
        return {'the left image contains': l, 'the right image contains': r,
                'both images contain': l and r, 'exactly one image contains': l != r,
                'neither image contains': not l and not r}[m[1]]
    m = re.fullmatch(r'there are (\w+) shapes in total', text)
    if m:
        return len(left) + len(right) == NUM[m[1]]
    if text == 'the left image has more shapes than the right image':
        return len(left) > len(right)
    if text == 'the right image has more shapes than the left image':
        return len(right) > len(left)
    if text == 'both images have the same number of shapes':
        return len(left) == len(right)
    raise AssertionError(f'unparsed statement {text!r}')


def test_nlvr2_labels_match_scenes_and_are_balanced():
    ds = DemoNLVR2('test')
    assert len(ds) == 500 and ds.metainfo['classes'] == ('False', 'True')
    labels = Counter()
    idents = set()
    texts = Counter()
    for i in range(len(ds)):
        info = ds.get_item_info(i)
        left, right = info['objects']
        assert info['image_ids'][0] != info['image_ids'][1]
        assert scene_key(left) != scene_key(right)
        assert (left, right) == tuple(ds.get_scene(j) for j in info['image_ids'])
        assert nlvr2_truth(info['text'], left, right) == bool(info['label']), info
        labels[info['label']] += 1
        idents.add(info['identifier'])
        texts[info['text'].split()[0]] += 1
    assert labels[0] == labels[1] == 250  # exactly balanced: majority baseline 50%
    assert len(idents) == 500 and ds.get_data_info(17)['identifier'] == 'demo-test-17-0'
    assert len(texts) >= 4


def test_nlvr2_family_and_description_subsets():
    families = ('left_contains', 'total', 'same_number')
    ds = DemoNLVR2('test', num_pairs=60, families=families, desc_kinds=('colour',))
    seen = set()
    for i in range(len(ds)):
        info = ds.get_item_info(i)
        text = info['text']
        seen.add(text.split()[0])
        assert text.startswith(('the left image contains', 'there are', 'both images have'))
        if text.startswith('the left'):
            assert text.endswith(' shape')  # a colour-only description: "a blue shape"
        left, right = info['objects']
        assert nlvr2_truth(text, left, right) == bool(info['label'])
    assert seen == {'the', 'there', 'both'}
    with pytest.raises(ValueError, match='families'):
        DemoNLVR2('test', families=('nope',))
    with pytest.raises(ValueError, match='desc_kinds'):
        DemoNLVR2('test', desc_kinds=())


def test_nlvr2_sample_schema_and_determinism():
    a = DemoNLVR2('val', num_pairs=6, num_images=30, image_size=32)
    b = DemoNLVR2('val', num_pairs=6, num_images=30, image_size=32)
    ref = DemoImageText('val', num_images=30, image_size=32)
    for i in range(6):
        s, t = a[i], b[i]
        assert s['image'].shape == (2, 3, 32, 32) and s['image'].dtype == torch.uint8
        assert torch.equal(s['image'], t['image']) and s['text'] == t['text']
        left, right = a.get_data_info(i)['image_ids']
        assert torch.equal(s['image'][0], ref[left]['image'])
        assert torch.equal(s['image'][1], ref[right]['image'])
        assert s['input_ids'].shape == s['attention_mask'].shape == (24,)
        assert isinstance(s['label'], int) and isinstance(s['identifier'], str)
    assert sum(a.get_data_info(i)['label'] for i in range(6)) == 3
    batch = vlp_collate([a[0], a[1]])
    assert batch['image'].shape == (2, 2, 3, 32, 32)


def snlive_label(text, objs):
    m = re.fullmatch(r'the picture shows (\w+) shapes?', text)
    if m:
        return 2 if len(objs) == NUM[m[1]] else 0
    m = re.fullmatch(r'there is (an?) (.+)', text)
    if m:
        return 2 if select(objs, *parse_desc(m[2])) else 0
    m = re.fullmatch(r'an? (\w+) (\w+) is (.+)', text)
    if m:
        return 2 if select(objs, colour=m[1], shape=m[2], pos=pos_of(m[3])) else 0
    m = re.fullmatch(r'the (.+?) (is made of \w+|is \w+|was drawn by a child|'
                     r'was painted by an artist)', text)
    if m:  # undecidable about a present object; a false presupposition otherwise
        return 1 if select(objs, *parse_desc(m[1])) else 0
    raise AssertionError(f'unparsed hypothesis {text!r}')


def test_snlive_labels_match_scenes_and_are_balanced():
    ds = DemoSNLIVE('test')
    assert len(ds) == 510
    assert ds.metainfo['classes'] == ('contradiction', 'neutral', 'entailment')
    labels = Counter()
    neutral_style = Counter()
    for i in range(len(ds)):
        info = ds.get_item_info(i)
        assert snlive_label(info['text'], info['objects']) == info['label'], info
        labels[info['label']] += 1
        if re.match(r'the (?!picture)', info['text']):
            neutral_style[info['label']] += 1
    assert labels[0] == labels[1] == labels[2] == 170  # majority baseline 1/3
    # neutral-style texts about absent objects are contradictions: text alone is not enough
    assert neutral_style[0] > 30 and neutral_style[1] == 170
    assert len({ds.get_data_info(i)['pair_id'] for i in range(len(ds))}) == len(ds)


def test_snlive_sample_schema_and_determinism():
    a = DemoSNLIVE('test', num_images=4, image_size=32)
    b = DemoSNLIVE('test', num_images=4, image_size=32)
    for i in range(12):
        s, t = a[i], b[i]
        assert s['image'].shape == (3, 32, 32) and s['image'].dtype == torch.uint8
        assert torch.equal(s['image'], t['image']) and s['text'] == t['text']
        assert s['label'] == t['label'] and s['image_id'] == i // 3 and s['pair_id'] == i
        assert s['input_ids'].shape == s['attention_mask'].shape == (24,)


def test_splits_disjoint_as_scenes():
    keys = {}
    for split in ('train', 'test'):
        vqa = DemoVQA(split, num_images=200)
        ve = DemoSNLIVE(split, num_images=200)
        nl = DemoNLVR2(split, num_pairs=100, num_images=200)
        used = {scene_key(vqa.get_scene(vqa.get_data_info(i)['image_id']))
                for i in range(len(vqa))}
        used |= {scene_key(o) for i in range(len(ve)) for o in [ve.get_item_info(i)['objects']]}
        used |= {scene_key(o) for i in range(len(nl)) for o in nl.get_item_info(i)['objects']}
        keys[split] = used
    assert not keys['train'] & keys['test']


def test_every_task_word_is_in_the_tasks_vocabulary():
    tok = DemoTokenizer(style='bert', vocabulary='tasks')
    texts = list(demo_task_corpus())
    for split in ('train', 'test'):
        vqa = DemoVQA(split)
        texts += [vqa.get_data_info(i)['question'] for i in range(len(vqa))]
        texts += [a for i in range(len(vqa)) for a in vqa.get_data_info(i)['answers']]
        for cls in (DemoNLVR2, DemoSNLIVE):
            ds = cls(split)
            texts += [ds.get_data_info(i)['text'] for i in range(len(ds))]
    ids = tok(sorted(set(texts)), max_length=24)
    assert (ids['input_ids'] != tok.unk_token_id).all()
    assert (ids['attention_mask'][:, -1] == 0).all()  # nothing truncated at 24
    # the default (caption) vocabulary is untouched: the demo configs hard-code its size
    assert DemoTokenizer(style='bert').vocab_size == 53
    assert DemoTokenizer(style='clip').vocab_size == 52
    caption = DemoTokenizer(style='bert')
    assert any((caption(t)['input_ids'] == caption.unk_token_id).any() for t in texts[:50])
