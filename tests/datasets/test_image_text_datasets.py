"""JSON (Karpathy) and CSV (open_clip) readers on tiny files with real PNGs; missing and
corrupt images are skipped, counted and logged with their path."""
import json
import logging

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from PIL import Image

from vlp.datasets import CsvImageTextDataset, ImageTextJsonDataset, vlp_collate
from vlp.datasets.tokenizers import DemoTokenizer
from vlp.registry import DATASETS

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _pipeline(size=16):
    return [dict(type='LoadImage'), dict(type='Resize', size=(size, size)),
            dict(type='ToTensor'),
            dict(type='Tokenize', tokenizer=dict(type='DemoTokenizer', style='bert'),
                 max_length=12)]


@pytest.fixture
def image_dir(tmp_path):
    root = tmp_path / 'images'
    (root / 'sub').mkdir(parents=True)
    for i, c in enumerate(COLOURS):
        Image.new('RGB', (20 + i, 24), c).save(root / 'sub' / f'{i}.png')
    Image.new('L', (10, 10), 128).save(root / 'sub' / 'grey.png')
    (root / 'sub' / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n this is not a png')
    return root


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_log():
    logger = MMLogger.get_current_instance()
    handler = _Capture()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def _write_json(path, entries):
    path.write_text(json.dumps(entries))
    return str(path)


def test_json_train_one_sample_per_pair(tmp_path, image_dir):
    ann = _write_json(tmp_path / 'train.json', [
        {'image': 'sub/0.png', 'caption': 'a red circle', 'image_id': 'coco_1'},
        {'image': 'sub/1.png', 'caption': ['a green square', 'a big green square']},
        {'image': 'sub/0.png', 'caption': 'a red circle on the left'},
        {'image': 'sub/grey.png', 'caption': 'grey'},
    ])
    ds = ImageTextJsonDataset(ann, data_root=str(tmp_path), img_prefix='images',
                              pipeline=_pipeline(), mode='train')
    assert len(ds) == 5
    texts = [ds[i]['text'] for i in range(5)]
    assert texts == ['a red circle', 'a red circle on the left', 'a green square',
                     'a big green square', 'grey']
    ids = [ds[i]['image_id'] for i in range(5)]
    assert ids == [0, 0, 1, 1, 2]  # index of the image, shared by its captions
    s = ds[0]
    assert s['image'].shape == (3, 16, 16) and s['image'].dtype == torch.uint8
    assert s['image'][0].float().mean() > 250 and s['image'][1:].float().mean() < 5  # red
    assert s['input_ids'].shape == (12,) and s['input_ids'].dtype == torch.long
    assert ds[4]['image'].shape == (3, 16, 16)  # a grey PNG becomes RGB
    tok = DemoTokenizer(style='bert')
    assert s['input_ids'][0] == tok.cls_token_id
    assert ds.num_skipped == 0


def test_json_eval_one_sample_per_image(tmp_path, image_dir):
    ann = _write_json(tmp_path / 'test.json', [
        {'image': 'sub/0.png', 'caption': ['a red circle', 'red', 'a red thing']},
        {'image': 'sub/1.png', 'caption': ['a green square', 'green']},
        {'image': 'sub/2.png', 'caption': 'blue'},
    ])
    ds = DATASETS.build(dict(type='ImageTextJsonDataset', ann_file=ann,
                             img_prefix=str(image_dir), pipeline=_pipeline(), mode='eval'))
    assert len(ds) == 3
    samples = [ds[i] for i in range(3)]
    assert [s['image_id'] for s in samples] == [0, 1, 2]
    assert samples[0]['text'] == ['a red circle', 'red', 'a red thing']
    assert samples[0]['input_ids'].shape == (3, 12)
    assert samples[2]['input_ids'].shape == (1, 12)
    batch = vlp_collate(samples)
    assert batch['image'].shape == (3, 3, 16, 16)
    assert isinstance(batch['input_ids'], list)  # ragged K: 3, 2, 1
    assert [t.shape[0] for t in batch['input_ids']] == [3, 2, 1]
    assert batch['text'][1] == ['a green square', 'green']


def test_missing_and_corrupt_images_are_skipped_counted_logged(tmp_path, image_dir,
                                                             warnings_log):
    ann = _write_json(tmp_path / 'train.json', [
        {'image': 'sub/0.png', 'caption': 'red'},
        {'image': 'sub/missing.png', 'caption': 'nothing'},
        {'image': 'sub/corrupt.png', 'caption': 'broken'},
        {'image': 'sub/2.png', 'caption': 'blue'},
    ])
    ds = ImageTextJsonDataset(ann, img_prefix=str(image_dir), pipeline=_pipeline())
    assert len(ds) == 4
    np.random.seed(0)
    s1, s2 = ds[1], ds[2]  # refetched: a valid sample comes back
    for s in (s1, s2):
        assert s['text'] in ('red', 'blue') and s['image'].shape == (3, 16, 16)
    assert ds.num_skipped >= 2
    text = '\n'.join(warnings_log)
    assert str(image_dir / 'sub' / 'missing.png') in text
    assert str(image_dir / 'sub' / 'corrupt.png') in text
    # max_refetch is respected: a dataset of broken images ends with a clear error
    bad = ImageTextJsonDataset(
        _write_json(tmp_path / 'bad.json', [{'image': 'sub/missing.png', 'caption': 'x'}]),
        img_prefix=str(image_dir), pipeline=_pipeline(), max_refetch=3)
    with pytest.raises(RuntimeError, match='refetch'):
        bad[0]
    assert bad.num_skipped == 4


def test_eval_drops_missing_files_and_refetches_corrupt(tmp_path, image_dir, warnings_log):
    ann = _write_json(tmp_path / 'test.json', [
        {'image': 'sub/0.png', 'caption': ['red']},
        {'image': 'sub/missing.png', 'caption': ['nothing']},
        {'image': 'sub/corrupt.png', 'caption': ['broken']},
        {'image': 'sub/2.png', 'caption': ['blue']},
    ])
    ds = ImageTextJsonDataset(ann, img_prefix=str(image_dir), pipeline=_pipeline(),
                              mode='eval')
    assert len(ds) == 3 and ds.num_skipped == 1  # the missing file is dropped on loading
    assert [ds.get_data_info(i)['image_id'] for i in range(3)] == [0, 1, 2]
    assert ds[1]['text'] == ['blue']  # corrupt: the next image, deterministically
    assert ds.num_skipped == 2
    assert any('missing.png' in m for m in warnings_log)
    assert any('corrupt.png' in m for m in warnings_log)


def test_num_skipped_is_shared_with_dataloader_workers(tmp_path, image_dir):
    ann = _write_json(tmp_path / 'train.json', [
        {'image': 'sub/0.png', 'caption': 'red'},
        {'image': 'sub/missing.png', 'caption': 'nothing'},
        {'image': 'sub/1.png', 'caption': 'green'},
        {'image': 'sub/missing.png', 'caption': 'nothing again'},
    ])
    ds = ImageTextJsonDataset(ann, img_prefix=str(image_dir), pipeline=_pipeline())
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2,
                                         collate_fn=vlp_collate)
    batches = list(loader)
    assert sum(b['image'].shape[0] for b in batches) == 4
    assert ds.num_skipped >= 2  # counted in the workers, read in the main process


def test_csv_reader(tmp_path, image_dir):
    csv_file = tmp_path / 'train.csv'
    csv_file.write_text('filepath\ttitle\n'
                        'sub/0.png\ta red square\n'
                        'sub/1.png\t"a green, big square"\n'
                        'sub/0.png\tred again\n')
    ds = CsvImageTextDataset(str(csv_file), img_root=str(image_dir), pipeline=_pipeline())
    assert len(ds) == 3
    assert [ds[i]['text'] for i in range(3)] == ['a red square', 'red again',
                                                 'a green, big square']
    assert ds[2]['image'][1].float().mean() > 250
    ev = CsvImageTextDataset(str(csv_file), img_root=str(image_dir), pipeline=_pipeline(),
                             mode='eval')
    assert len(ev) == 2 and ev[0]['text'] == ['a red square', 'red again']
    # other column names and separators, absolute paths used as given
    csv2 = tmp_path / 'b.csv'
    csv2.write_text(f'url,caption\n{image_dir / "sub" / "2.png"},blue\n')
    ds2 = DATASETS.build(dict(type='CsvImageTextDataset', csv_file=str(csv2), img_key='url',
                              caption_key='caption', sep=',', pipeline=_pipeline()))
    assert ds2[0]['text'] == 'blue' and ds2[0]['image'][2].float().mean() > 250
    with pytest.raises(KeyError, match='filepath'):
        CsvImageTextDataset(str(csv2), sep=',', pipeline=_pipeline())
