"""VQA v2 (official + ALBEF formats), NLVR2 (official JSON lines + ALBEF list), SNLI-VE
(official JSON lines + ALBEF list) and ImageFolderClassification readers on tiny files with
real images: sample keys, shapes, labels, multi-file reading, missing images skipped and
counted, zero-shot metainfo."""
import json

import pytest
import torch
from PIL import Image

from vlp.datasets import (ImageFolderClassification, NLVR2Dataset, SNLIVEDataset,
                          VQAv2Dataset, vlp_collate)
from vlp.registry import DATASETS

TOK = dict(type='DemoTokenizer', style='bert')


def _img(path, colour=(255, 0, 0), size=(20, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, colour).save(path)


def _vqa_pipeline():
    return [dict(type='LoadImage'), dict(type='Resize', size=(16, 16)), dict(type='ToTensor'),
            dict(type='Tokenize', tokenizer=TOK, max_length=12, key='question')]


# ------------------------------------------------------------------------------ VQA v2
def _official_vqa(tmp_path, subtype, qids, image_ids, with_answers=True):
    qfile = tmp_path / f'q_{subtype}.json'
    qfile.write_text(json.dumps(dict(data_subtype=subtype, questions=[
        dict(image_id=i, question=f'what is {q}?', question_id=q)
        for q, i in zip(qids, image_ids)])))
    if not with_answers:
        return str(qfile), None
    afile = tmp_path / f'a_{subtype}.json'
    afile.write_text(json.dumps(dict(annotations=[
        dict(question_id=q, image_id=i, answer_type='yes/no' if q % 2 else 'other',
             multiple_choice_answer='yes', question_type='is',
             answers=[dict(answer='yes', answer_confidence='yes', answer_id=k + 1)
                      for k in range(10)])
        for q, i in zip(qids, image_ids)])))
    return str(qfile), str(afile)


def test_vqa_official_format(tmp_path):
    _img(tmp_path / 'val2014' / 'COCO_val2014_000000000001.jpg')
    _img(tmp_path / 'val2014' / 'COCO_val2014_000000000002.jpg')
    qf, af = _official_vqa(tmp_path, 'val2014', [11, 12, 13], [1, 2, 1])
    ds = DATASETS.build(dict(type='VQAv2Dataset', question_file=qf, annotation_file=af,
                             img_prefix=str(tmp_path / 'val2014'), pipeline=_vqa_pipeline(),
                             mode='eval'))
    assert isinstance(ds, VQAv2Dataset) and len(ds) == 3
    s = ds[1]
    assert s['img_path'].endswith('val2014/COCO_val2014_000000000002.jpg')
    assert s['question'] == 'what is 12?' and s['question_id'] == 12 and s['image_id'] == 2
    assert s['answers'] == ['yes'] * 10 and s['answer_type'] == 'other'
    assert s['image'].shape == (3, 16, 16) and s['image'].dtype == torch.uint8
    assert s['input_ids'].shape == (12,)
    batch = vlp_collate([ds[0], ds[1]])
    assert batch['question_id'].tolist() == [11, 12] and len(batch['answers']) == 2


def test_vqa_split_template_and_no_answers(tmp_path):
    ds = VQAv2Dataset(question_file=_official_vqa(tmp_path, 'test-dev2015', [5], [9], False)[0],
                      img_prefix='imgs', check_files=False, mode='eval')
    info = ds.get_data_info(0)
    assert info['img_path'] == 'imgs/COCO_test2015_000000000009.jpg'
    assert info['answers'] == [] and info['answer_type'] == ''
    qf = _official_vqa(tmp_path, 'val2014', [5], [9], False)[0]
    assert VQAv2Dataset(question_file=qf, split='train', check_files=False).get_data_info(0)[
        'img_path'] == 'COCO_train2014_000000000009.jpg'
    ds = VQAv2Dataset(question_file=qf, img_template='{split}/{image_id}.png',
                      check_files=False)
    assert ds.get_data_info(0)['img_path'] == 'val2014/9.png'
    with pytest.raises(ValueError):
        VQAv2Dataset(question_file=qf, ann_file='x.json')


def test_vqa_multi_file_and_missing_images(tmp_path):
    _img(tmp_path / 'train2014' / 'COCO_train2014_000000000001.jpg')
    _img(tmp_path / 'val2014' / 'COCO_val2014_000000000003.jpg')
    qt, at = _official_vqa(tmp_path, 'train2014', [1, 2], [1, 2])  # image 2 missing
    qv, av = _official_vqa(tmp_path, 'val2014', [3], [3])
    cfg = dict(question_file=[qt, qv], annotation_file=[at, av], data_root=str(tmp_path),
               img_prefix=['train2014', 'val2014'], pipeline=_vqa_pipeline())
    train = VQAv2Dataset(mode='train', **cfg)
    assert len(train) == 3 and train.num_skipped == 0
    s = train[1]  # the missing image: replaced by another sample, counted
    assert s['question_id'] in (1, 3) and train.num_skipped >= 1
    ev = VQAv2Dataset(mode='eval', **cfg)
    assert len(ev) == 2 and ev.num_skipped == 1
    assert [ev[i]['question_id'] for i in range(2)] == [1, 3]


def test_vqa_albef_format(tmp_path):
    _img(tmp_path / 'imgs' / 'val2014' / 'COCO_val2014_000000000042.jpg')
    _img(tmp_path / 'imgs' / 'vg' / '77.jpg')
    f1 = tmp_path / 'vqa_train.json'
    f1.write_text(json.dumps([dict(question_id=100, question='is it red?',
                                   answer=['yes', 'yes', 'no'],
                                   image='val2014/COCO_val2014_000000000042.jpg',
                                   dataset='vqa')]))
    f2 = tmp_path / 'vg_qa.json'
    f2.write_text(json.dumps([dict(question='what colour?', answer='red', image='vg/77.jpg',
                                   dataset='vg')]))
    ds = VQAv2Dataset(ann_file=[str(f1), str(f2)], img_prefix=str(tmp_path / 'imgs'),
                      pipeline=_vqa_pipeline(), mode='eval')
    assert len(ds) == 2
    a, b = ds[0], ds[1]
    assert a['answers'] == ['yes', 'yes', 'no'] and a['image_id'] == 42
    assert a['question_id'] == 100 and a['answer_type'] == ''
    assert b['answers'] == ['red'] and b['image_id'] == 77 and b['question_id'] == 0
    assert b['input_ids'].shape == (12,)


# ------------------------------------------------------------------------------ NLVR2
IMAGE_PIPE = [dict(type='LoadImage'), dict(type='Resize', size=(8, 8)), dict(type='ToTensor')]


def test_nlvr2_official_jsonl(tmp_path):
    _img(tmp_path / 'train' / '67' / 'train-10171-0-img0.png', (255, 0, 0))
    _img(tmp_path / 'train' / '67' / 'train-10171-0-img1.png', (0, 0, 255))
    # the second pair's right image is missing
    _img(tmp_path / 'train' / '3' / 'train-5-1-img0.png')
    lines = [dict(identifier='train-10171-0-0', sentence='one is red', label='True',
                  directory=67, left_url='x'),
             dict(identifier='train-5-1-2', sentence='two dogs', label='False', directory=3)]
    f = tmp_path / 'train.json'
    f.write_text('\n'.join(json.dumps(x) for x in lines) + '\n')
    ds = DATASETS.build(dict(type='NLVR2Dataset', ann_file=str(f),
                             img_prefix=str(tmp_path / 'train'), image_pipeline=IMAGE_PIPE,
                             pipeline=[dict(type='Tokenize', tokenizer=TOK, max_length=10)]))
    assert isinstance(ds, NLVR2Dataset) and len(ds) == 2
    assert ds.metainfo['classes'] == ('False', 'True')
    s = ds[0]
    assert s['image'].shape == (2, 3, 8, 8) and s['image'].dtype == torch.uint8
    assert s['image'][0, 0].float().mean() > 200 and s['image'][1, 2].float().mean() > 200
    assert s['image'][0, 2].float().mean() < 50  # left red, right blue
    assert s['text'] == 'one is red' and s['label'] == 1
    assert s['identifier'] == 'train-10171-0-0' and s['input_ids'].shape == (10,)
    s = ds[1]  # missing image: another sample
    assert s['identifier'] == 'train-10171-0-0' and ds.num_skipped >= 1
    ev = NLVR2Dataset(ann_file=str(f), img_prefix=str(tmp_path / 'train'),
                      image_pipeline=IMAGE_PIPE, mode='eval')
    assert len(ev) == 1 and ev.num_skipped == 1


def test_nlvr2_dev_paths_and_albef_format(tmp_path):
    f = tmp_path / 'dev.json'
    f.write_text(json.dumps(dict(identifier='dev-850-0-1', sentence='s', label='False')))
    ds = NLVR2Dataset(ann_file=str(f), img_prefix='dev', check_files=False)
    assert ds.get_data_info(0)['img_paths'] == ['dev/dev-850-0-img0.png',
                                                'dev/dev-850-0-img1.png']
    for k in range(4):
        _img(tmp_path / 'imgs' / f'{k}.png', size=(10 + k, 12))
    albef = tmp_path / 'nlvr_dev.json'
    albef.write_text(json.dumps([
        dict(images=['0.png', '1.png'], sentence='a', label='True'),
        dict(images=['2.png', '3.png'], sentence='b', label=False),
        dict(images=['0.png', '3.png'], sentence='c', label=1, identifier='x-1')]))
    ds = NLVR2Dataset(ann_file=str(albef), img_prefix=str(tmp_path / 'imgs'),
                      image_pipeline=IMAGE_PIPE, mode='eval')
    assert [ds[i]['label'] for i in range(3)] == [1, 0, 1]
    assert ds[2]['identifier'] == 'x-1'
    batch = vlp_collate([ds[0], ds[1]])
    assert batch['image'].shape == (2, 2, 3, 8, 8) and batch['label'].tolist() == [1, 0]
    # images of different sizes without a resize: a clear error
    raw = NLVR2Dataset(ann_file=str(albef), img_prefix=str(tmp_path / 'imgs'), mode='eval')
    with pytest.raises(ValueError, match='resize'):
        raw[0]


# ------------------------------------------------------------------------------ SNLI-VE
def test_snli_ve_official_and_albef(tmp_path, caplog):
    _img(tmp_path / 'flickr' / '3534548254.jpg')
    _img(tmp_path / 'flickr' / '111.jpg')
    lines = [dict(Flickr30K_ID='3534548254', sentence2='a man sleeps',
                  gold_label='contradiction', pairID='p1'),
             dict(Flickr30K_ID='3534548254', sentence2='no majority', gold_label='-',
                  pairID='p2'),
             dict(Flickr30K_ID='111', sentence2='a dog', gold_label='entailment',
                  pairID='p3'),
             dict(Flickr30K_ID='999', sentence2='missing image', gold_label='neutral',
                  pairID='p4')]
    f = tmp_path / 'snli_ve_dev.jsonl'
    f.write_text('\n'.join(json.dumps(x) for x in lines))
    albef = tmp_path / 've_test.json'
    albef.write_text(json.dumps([dict(image='111.jpg', sentence='maybe', label='neutral')]))
    pipe = [dict(type='LoadImage'), dict(type='Resize', size=(8, 8)), dict(type='ToTensor')]
    ds = DATASETS.build(dict(type='SNLIVEDataset', ann_file=[str(f), str(albef)],
                             img_prefix=str(tmp_path / 'flickr'), pipeline=pipe, mode='eval'))
    assert isinstance(ds, SNLIVEDataset)
    assert ds.metainfo['classes'] == ('contradiction', 'neutral', 'entailment')
    assert ds.num_unlabelled == 1 and ds.num_skipped == 1  # '-' left out, 999.jpg missing
    assert len(ds) == 3
    samples = [ds[i] for i in range(3)]
    assert [s['label'] for s in samples] == [0, 2, 1]
    assert [s['pair_id'] for s in samples] == ['p1', 'p3', '1-0']
    assert [s['image_id'] for s in samples] == [0, 1, 1]
    assert samples[0]['text'] == 'a man sleeps' and samples[0]['image'].shape == (3, 8, 8)
    assert samples[0]['img_path'].endswith('flickr/3534548254.jpg')
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps([dict(image='111.jpg', sentence='x', label='unknown')]))
    with pytest.raises(ValueError):
        SNLIVEDataset(ann_file=str(bad))


# --------------------------------------------------------------- image folder (zero-shot)
def _folder(tmp_path):
    root = tmp_path / 'imagenet_val'
    for folder, n in (('n02', 2), ('n01', 1), ('n03', 1)):
        for k in range(n):
            _img(root / folder / f'{k}.JPEG')
    (root / 'n03' / 'notes.txt').write_text('not an image')
    (root / 'n03' / 'bad.png').write_bytes(b'not a png')
    return root


def test_image_folder_classification(tmp_path):
    root = _folder(tmp_path)
    names = {'n01': 'goldfish', 'n02': 'tench', 'n03': 'great white shark'}
    (tmp_path / 'names.json').write_text(json.dumps(names))
    (tmp_path / 'names.txt').write_text('goldfish\ntench\ngreat white shark\n')
    pipe = [dict(type='LoadImage'), dict(type='Resize', size=(8, 8)), dict(type='ToTensor')]
    for cn in (names, str(tmp_path / 'names.json'), str(tmp_path / 'names.txt')):
        ds = DATASETS.build(dict(type='ImageFolderClassification', img_dir=str(root),
                                 class_names=cn, templates=['a photo of a {}.'],
                                 pipeline=pipe))
        assert ds.metainfo['classes'] == ['goldfish', 'tench', 'great white shark']
    assert isinstance(ds, ImageFolderClassification) and ds.test_mode
    assert ds.metainfo['templates'] == ['a photo of a {}.']
    assert len(ds) == 5
    assert [ds.get_data_info(i)['label'] for i in range(5)] == [0, 1, 1, 2, 2]
    assert [ds.get_data_info(i)['image_id'] for i in range(5)] == list(range(5))
    s = ds[0]
    assert s['label'] == 0 and s['image'].shape == (3, 8, 8) and s['image_id'] == 0
    assert ds[3]['img_path'].endswith('n03/0.JPEG') and ds.num_skipped == 0
    s = ds[4]  # n03/bad.png: unreadable, the next sample (wrapping to 0) instead, counted
    assert s['img_path'].endswith('n01/0.JPEG') and ds.num_skipped == 1
    plain = ImageFolderClassification(img_dir='imagenet_val', data_root=str(tmp_path))
    assert plain.metainfo['classes'] == ['n01', 'n02', 'n03']
    assert 'templates' not in plain.metainfo
    with pytest.raises(ValueError):
        ImageFolderClassification(img_dir=str(root), class_names=['a', 'b'])


def test_image_folder_with_zero_shot_hook_and_metric(tmp_path):
    """ZeroShotClassifierHook reads classes/templates from the dataset's metainfo; the
    ZeroShotAccuracy metric scores the logits against the folder labels."""
    from vlp.engine.hooks import ZeroShotClassifierHook
    from vlp.evaluation import ZeroShotAccuracy
    root = _folder(tmp_path)
    ds = ImageFolderClassification(img_dir=str(root),
                                   class_names={'n01': 'red', 'n02': 'green', 'n03': 'blue'},
                                   templates=['a {} thing.', 'the {}.'])
    prompts = []

    class Model(torch.nn.Module):
        def encode_text(self, texts):
            prompts.extend(texts)
            return torch.ones(len(texts), 4)

        def set_zero_shot_classifier(self, weights, **kwargs):
            self.weights = weights

    hook = ZeroShotClassifierHook()
    model = Model()
    runner = type('Runner', (), {})()
    runner.model = model
    hook._set_classifier(runner, ds)
    assert model.weights.shape == (3, 4)
    assert prompts[:4] == ['a red thing.', 'the red.', 'a green thing.', 'the green.']
    metric = ZeroShotAccuracy(topk=(1,))
    metric.process(None, [dict(logits=torch.eye(3)[ds.get_data_info(i)['label']],
                               label=ds.get_data_info(i)['label']) for i in range(len(ds))])
    assert metric.evaluate(len(ds)) == {'zero_shot/top1': 100.0}
