"""The bad-data fault catalogue: every per-sample fault is skipped and counted with its
reason, file and index (never a crash, never silent), in train and eval mode, for the
Karpathy JSON, the open_clip CSV and webdataset shards; structural faults stop at once
naming the file, line, column and entry; DataSkipReportHook reports the reasons with
examples (across DataLoader workers), says what evaluation lacked, and stops a run whose
data are mostly broken.

The catalogue (files written to tmp_path, real JPEG/PNG files made with PIL):

==========================  =========================================================
image faults                missing file, zero-byte file, truncated JPEG, text file .jpg
caption faults              null, "", "   ", [], 123, a lone surrogate "\\ud800",
                            "..." (empty after CleanCaption)
entry faults                no "caption" key, no "image" key, an entry that is a string
transform fault             a transform that raises on one sample (``_RaiseOn``)
structural (JSON)           truncated file, raw 0xff byte, top level a dict / a string
structural (CSV)            empty file, missing column, raw 0xff byte
webdataset                  a shard cut in half (with and without a size index), a member
                            with a bad image, one with no caption, one with an empty one
==========================  =========================================================
"""
import io
import json
import logging
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from PIL import Image

from vlp.datasets import (CsvImageTextDataset, DefaultSampler, ImageTextJsonDataset,
                          SampleKey, WebDatasetImageText, vlp_collate)
from vlp.registry import TRANSFORMS

TOK = dict(type='DemoTokenizer', style='bert')


@TRANSFORMS.register_module(force=True)
class _RaiseOn:
    """A transform with a bug that shows on one sample: raises on paths containing
    ``word``."""

    def __init__(self, word: str = 'boom'):
        self.word = word

    def __call__(self, results: dict) -> dict:
        if self.word in str(results.get('img_path', '')) + str(results.get('key', '')):
            raise ZeroDivisionError(f'bug in _RaiseOn on {results.get("img_path")}')
        return results


def pipeline(clean=True):
    return ([dict(type='LoadImage'), dict(type='_RaiseOn'), dict(type='Resize', size=(8, 8)),
             dict(type='ToTensor')] + ([dict(type='CleanCaption')] if clean else []) +
            [dict(type='Tokenize', tokenizer=TOK, max_length=12)])


def _jpeg(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
        buf, format='JPEG')
    return buf.getvalue()


def make_images(root) -> str:
    """``good0..9.jpg``, ``good.png`` and the bad files: ``empty.jpg`` (0 bytes),
    ``truncated.jpg`` (half a JPEG), ``text.jpg`` (text), ``boom.jpg`` (fine, but
    ``_RaiseOn`` raises on it); ``missing.jpg`` does not exist."""
    img = osp.join(str(root), 'img')
    os.makedirs(img, exist_ok=True)
    for i in range(10):
        with open(osp.join(img, f'good{i}.jpg'), 'wb') as f:
            f.write(_jpeg(i))
    Image.new('RGB', (20, 12), (0, 200, 0)).save(osp.join(img, 'good.png'))
    open(osp.join(img, 'empty.jpg'), 'wb').close()
    data = _jpeg(99)
    with open(osp.join(img, 'truncated.jpg'), 'wb') as f:
        f.write(data[:len(data) // 2])
    with open(osp.join(img, 'text.jpg'), 'w') as f:
        f.write('this is a text file, not a JPEG\n')
    with open(osp.join(img, 'boom.jpg'), 'wb') as f:
        f.write(_jpeg(7))
    return img


# training annotations (Karpathy train: one caption per entry); the comment is the fault
TRAIN = [
    {'image': 'good0.jpg', 'caption': 'a red square'},
    {'image': 'good1.jpg', 'caption': 'a green circle'},
    {'image': 'good.png', 'caption': 'a png image'},
    {'image': 'good2.jpg', 'caption': 'two dogs'},
    {'image': 'good3.jpg', 'caption': 'a cat'},
    {'image': 'missing.jpg', 'caption': 'missing file'},        # 5 missing_file   (fetch)
    {'image': 'empty.jpg', 'caption': 'zero bytes'},            # 6 empty_file     (fetch)
    {'image': 'truncated.jpg', 'caption': 'truncated'},         # 7 corrupt_file   (fetch)
    {'image': 'text.jpg', 'caption': 'not an image'},           # 8 corrupt_file   (fetch)
    {'image': 'boom.jpg', 'caption': 'the transform raises'},   # 9 transform_error (fetch)
    {'image': 'good4.jpg', 'caption': None},                    # 10 bad_caption   (load)
    {'image': 'good4.jpg', 'caption': ''},                      # 11 bad_caption   (load)
    {'image': 'good4.jpg', 'caption': '   '},                   # 12 bad_caption   (load)
    {'image': 'good5.jpg', 'caption': []},                      # 13 bad_caption   (load)
    {'image': 'good4.jpg', 'caption': 123},                     # 14 bad_caption   (load)
    {'image': 'good4.jpg', 'caption': '\ud800 lone surrogate'},  # 15 bad_caption  (load)
    {'image': 'good6.jpg', 'caption': '...'},                   # 16 bad_caption: fetch
    {'image': 'good7.jpg'},                                     # 17 missing_key   (load)
    {'caption': 'an entry without an image'},                   # 18 missing_key   (load)
    'an entry that is a string',                                # 19 bad_entry     (load)
]

# evaluation annotations (one entry per image with its captions)
EVAL = [
    {'image': 'good0.jpg', 'caption': ['a red square', 'red']},
    {'image': 'good1.jpg', 'caption': ['a green circle', None]},   # 1 one bad caption
    {'image': 'good.png', 'caption': ['a png image']},
    {'image': 'missing.jpg', 'caption': ['x']},        # 3 missing_file   (load)
    {'image': 'empty.jpg', 'caption': ['x']},          # 4 empty_file     (load)
    {'image': 'truncated.jpg', 'caption': ['x']},      # 5 corrupt_file   (fetch)
    {'image': 'text.jpg', 'caption': ['x']},           # 6 corrupt_file   (fetch)
    {'image': 'boom.jpg', 'caption': ['x']},           # 7 transform_error (fetch)
    {'image': 'good2.jpg', 'caption': None},           # 8 bad_caption (load)
    {'image': 'good3.jpg', 'caption': ''},             # 9
    {'image': 'good4.jpg', 'caption': '   '},          # 10
    {'image': 'good5.jpg', 'caption': []},             # 11
    {'image': 'good6.jpg', 'caption': [123]},          # 12
    {'image': 'good7.jpg', 'caption': ['\ud800']},     # 13
    {'image': 'good8.jpg', 'caption': ['...']},        # 14 empty after CleanCaption (load)
    {'image': 'good9.jpg'},                            # 15 missing_key (load)
    {'caption': ['no image']},                         # 16 missing_key (load)
]

CSV = ('filepath\ttitle\n'
       'good0.jpg\ta red square\n'
       'good1.jpg\ta green circle\n'
       'good.png\ta png image\n'
       'missing.jpg\tmissing file\n'     # row 3 missing_file
       'empty.jpg\tzero bytes\n'         # row 4 empty_file
       'truncated.jpg\ttruncated\n'      # row 5 corrupt_file
       'text.jpg\tnot an image\n'        # row 6 corrupt_file
       'boom.jpg\tthe transform raises\n'  # row 7 transform_error
       'good2.jpg\t\n'                   # row 8 bad_caption: empty
       'good3.jpg\t   \n'                # row 9 bad_caption: blank
       'good4.jpg\t...\n'                # row 10 bad_caption after cleaning
       'good5.jpg\n'                     # row 11 missing_key: no caption field
       '\tno path\n')                    # row 12 missing_key: no path


def write_json(path, entries) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(entries, f, indent=1)  # ensure_ascii: "\ud800" stays valid JSON text
    return str(path)


def _report(ds):
    rep = ds.skip_report()
    files = {r: [osp.basename(str(e['file'])) for e in ex] for r, ex in rep['examples'].items()}
    return rep, files


def _fetch_all(ds):
    """Every index, with the sampler's keys (deterministic replacements)."""
    out = [ds[SampleKey(i, 0, 0)] for i in range(len(ds))]
    for s in out:
        assert s['image'].shape == (3, 8, 8) and s['image'].dtype == torch.uint8
    return out


@pytest.fixture
def img_dir(tmp_path):
    return make_images(tmp_path)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log():
    logger = MMLogger.get_current_instance()
    handler = _Capture()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


# ------------------------------------------------------------------ per-sample faults
def test_json_train_faults_are_skipped_and_counted(tmp_path, img_dir, log):
    ds = ImageTextJsonDataset(write_json(tmp_path / 'train.json', TRAIN), img_prefix=img_dir,
                              pipeline=pipeline(), mode='train')
    assert len(ds) == 11  # entries 0-9 and 16; the other 9 dropped when read, counted
    rep, files = _report(ds)
    assert rep['at_load'] == {'bad_caption': 6, 'missing_key': 2, 'bad_entry': 1}
    entries = sorted(e['entry'] for ex in rep['examples'].values() for e in ex
                     if e['phase'] == 'load')
    assert entries == list(range(10, 16)) + [17, 18, 19]
    assert all(e['file'].endswith('train.json') for ex in rep['examples'].values()
               for e in ex if e['phase'] == 'load')
    samples = _fetch_all(ds)  # never a crash: every index gives a valid sample
    assert {s['img_path'].rsplit('/', 1)[1] for s in samples} <= \
        {'good0.jpg', 'good1.jpg', 'good.png', 'good2.jpg', 'good3.jpg'}
    rep, files = _report(ds)
    fetch = rep['at_fetch']
    # each bad sample once, plus bad replacements drawn at random (seeded: exact)
    assert fetch['missing_file'] >= 1 and fetch['empty_file'] >= 1
    assert fetch['corrupt_file'] >= 2 and fetch['transform_error'] >= 1
    assert fetch['bad_caption'] >= 1
    assert 'missing.jpg' in files['missing_file'] and 'empty.jpg' in files['empty_file']
    assert {'truncated.jpg', 'text.jpg'} <= set(files['corrupt_file'])
    assert 'boom.jpg' in files['transform_error'] and 'good6.jpg' in files['bad_caption']
    ex = {e['index'] for e in rep['examples']['transform_error']}
    assert 9 in ex  # the index of the sample, in the report
    msg = rep['examples']['transform_error'][0]['message']
    assert '_RaiseOn' in msg and 'ZeroDivisionError' in msg
    assert ds.num_skipped == rep['total'] == 9 + sum(fetch.values())
    assert rep['delivered'] == 11
    text = '\n'.join(log)
    assert 'Traceback' in text and 'ZeroDivisionError' in text  # the bug, with its traceback
    assert 'train.json, entry 15' in text  # load-time drops name the file and entry


def test_json_eval_drops_bad_entries_once_and_skips_bad_images(tmp_path, img_dir, log):
    ds = ImageTextJsonDataset(write_json(tmp_path / 'test.json', EVAL), img_prefix=img_dir,
                              pipeline=pipeline(), mode='eval')
    # kept: good0, good1 (one caption), good.png, truncated, text, boom
    assert len(ds) == 6
    rep, files = _report(ds)
    assert rep['at_load'] == {'missing_file': 1, 'empty_file': 1, 'bad_caption': 8,
                              'missing_key': 2}
    assert ds.get_data_info(1)['text'] == ['a green circle']
    assert 'good8.jpg' not in {osp.basename(ds.get_data_info(i)['img_path'])
                               for i in range(len(ds))}  # '...' is empty after cleaning
    samples = _fetch_all(ds)
    assert [s['image_id'] for s in samples] == [0, 1, 2, 0, 0, 0]  # the next stands in
    rep, files = _report(ds)
    # each bad image once: a stand-in's own fault is recorded at its own index
    assert rep['at_fetch'] == {'corrupt_file': 2, 'transform_error': 1}
    assert {'truncated.jpg', 'text.jpg'} <= set(files['corrupt_file'])
    # a second pass counts again; the annotations are not read again
    _fetch_all(ds)
    assert ds.skip_report()['at_load'] == rep['at_load']
    assert sum('Traceback' in m for m in log) == 1  # first ZeroDivisionError only


def test_csv_faults_train_and_eval(tmp_path, img_dir):
    (tmp_path / 'train.csv').write_text(CSV)
    ds = CsvImageTextDataset(str(tmp_path / 'train.csv'), img_root=img_dir,
                             pipeline=pipeline())
    assert len(ds) == 9
    rep, _ = _report(ds)
    assert rep['at_load'] == {'bad_caption': 2, 'missing_key': 2}
    assert sorted(e['entry'] for ex in rep['examples'].values() for e in ex) == [8, 9, 11, 12]
    _fetch_all(ds)
    rep, files = _report(ds)
    assert set(rep['at_fetch']) == {'missing_file', 'empty_file', 'corrupt_file',
                                    'transform_error', 'bad_caption'}
    assert 'good4.jpg' in files['bad_caption']  # '...' found when fetched in training
    ev = CsvImageTextDataset(str(tmp_path / 'train.csv'), img_root=img_dir,
                             pipeline=pipeline(), mode='eval')
    assert len(ev) == 6
    assert ev.skip_report()['at_load'] == {'missing_file': 1, 'empty_file': 1,
                                           'bad_caption': 3, 'missing_key': 2}
    _fetch_all(ev)
    assert ev.skip_report()['at_fetch'] == {'corrupt_file': 2, 'transform_error': 1}


def test_caption_empty_after_the_tokenizers_cleaning(tmp_path, img_dir):
    """'&nbsp;' is a caption until CLIP's cleaning (html unescape, whitespace) empties it:
    dropped when read in eval mode, skipped when fetched in training."""
    from vlp.datasets.tokenizers import DemoTokenizer, clip_clean
    tok = DemoTokenizer(style='bert')
    tok.clean_fn = clip_clean
    pipe = [dict(type='LoadImage'), dict(type='Resize', size=(8, 8)), dict(type='ToTensor'),
            dict(type='Tokenize', tokenizer=tok, max_length=12)]
    entries = [{'image': 'good0.jpg', 'caption': ['a red square', '&nbsp;']},
               {'image': 'good1.jpg', 'caption': '&nbsp;'}]
    ev = ImageTextJsonDataset(write_json(tmp_path / 'e.json', entries), img_prefix=img_dir,
                              pipeline=pipe, mode='eval')
    assert len(ev) == 1 and ev.get_data_info(0)['text'] == ['a red square']
    assert ev.skip_report()['at_load'] == {'bad_caption': 2}
    tr = ImageTextJsonDataset(write_json(tmp_path / 't.json', entries), img_prefix=img_dir,
                              pipeline=pipe)
    assert len(tr) == 3
    assert [tr[SampleKey(i, 0, 0)]['text'] for i in range(3)] == ['a red square'] * 3
    rep, files = _report(tr)
    assert rep['at_fetch']['bad_caption'] >= 2 and 'Tokenize' in \
        rep['examples']['bad_caption'][0]['message']


def _loader(ds):
    """2 worker processes, the sampler's keys: deterministic replacements."""
    return torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2,
                                       sampler=DefaultSampler(ds, shuffle=False, seed=0),
                                       collate_fn=vlp_collate)


def test_bad_samples_in_dataloader_workers_reach_the_report(tmp_path, img_dir):
    ds = ImageTextJsonDataset(write_json(tmp_path / 'train.json', TRAIN), img_prefix=img_dir,
                              pipeline=pipeline())
    loader = _loader(ds)
    assert sum(len(b['text']) for b in loader) == 11  # nothing vanishes
    rep, files = _report(ds)
    assert rep['delivered'] == 11
    assert {'missing_file', 'empty_file', 'corrupt_file', 'transform_error',
            'bad_caption'} <= set(rep['at_fetch'])
    assert 'boom.jpg' in files['transform_error']  # written by a worker, read here
    assert os.listdir(ds.skips.dir)


# -------------------------------------------------------------------- structural faults
def test_structural_json_faults_name_file_line_and_entry(tmp_path):
    from vlp.datasets.image_text import AnnotationError
    good = json.dumps(TRAIN[:5], indent=1)
    cases = {
        'truncated.json': (good[:-30].encode(), r'line \d+, column \d+ \(entry 4\).*truncated'),
        'byte.json': (good.replace('two dogs', 'two d\x00gs').encode().replace(b'\x00', b'\xff'),
                      r'line 16, column 20 \(entry 3\): byte 0xff is not valid UTF-8'),
        'dict.json': (b'{"images": [], "annotations": []}',
                      r'line 1, column 1: the top level is a JSON dict with keys'),
        'string.json': (b'"not a list"', r'the top level is a JSON str'),
    }
    for name, (data, pattern) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(AnnotationError, match=pattern) as e:
            ImageTextJsonDataset(str(tmp_path / name), pipeline=pipeline())
        assert name in str(e.value)


def test_structural_csv_faults_name_file_line_and_row(tmp_path):
    from vlp.datasets.image_text import AnnotationError
    (tmp_path / 'empty.csv').write_text('')
    with pytest.raises(AnnotationError, match=r'empty.csv: line 1: the file is empty'):
        CsvImageTextDataset(str(tmp_path / 'empty.csv'), pipeline=pipeline())
    (tmp_path / 'cols.csv').write_text('path\tcaption\na.jpg\tx\n')
    with pytest.raises(KeyError, match=r"cols.csv: line 1: column 'filepath'"):
        CsvImageTextDataset(str(tmp_path / 'cols.csv'), pipeline=pipeline())
    (tmp_path / 'byte.csv').write_bytes(b'filepath\ttitle\na.jpg\tok\nb.jpg\tok\n'
                                        b'c.jpg\tbad \xff byte\n')
    with pytest.raises(AnnotationError, match=r"byte.csv: line 4, row 2, column 'title', "
                                              r'character 5: byte 0xff is not valid UTF-8'):
        CsvImageTextDataset(str(tmp_path / 'byte.csv'), pipeline=pipeline())


# --------------------------------------------------------------------------- webdataset
WDS_PIPE = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=TOK, max_length=12)]


def _json_to_shards():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'json_to_shards', osp.join(osp.dirname(__file__), '..', '..', 'tools', 'data',
                                   'json_to_shards.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shards(tmp_path, img_dir):
    json_to_shards = _json_to_shards()
    ann = write_json(tmp_path / 'clean.json',
                     [{'image': f'good{i}.jpg', 'caption': f'caption {i}'} for i in range(10)]
                     + [{'image': 'good.png', 'caption': 'caption png'},
                        {'image': 'good0.jpg', 'caption': 'caption again'}])
    return json_to_shards.main([ann, str(tmp_path / 'shards'), '--img-root', img_dir,
                                '--samples-per-shard', '4'])


def test_truncated_shard_reports_the_shard_and_what_it_lost(tmp_path, img_dir):
    out = _shards(tmp_path, img_dir)
    assert out['samples'] == 12 and out['shards'] == 3
    first = str(tmp_path / 'shards' / 'shard-000000.tar')
    data = open(first, 'rb').read()
    with open(first, 'wb') as f:
        f.write(data[:len(data) // 2])  # cut in half, inside a member
    ds = WebDatasetImageText(out['pattern'], pipeline=WDS_PIPE)
    keys = [s['key'] for s in ds]
    read = 4 - (12 - len(keys))  # samples of the cut shard read before the cut
    rep, files = _report(ds)
    assert rep['at_fetch'] == {'truncated_shard': 1}  # the sample cut; the rest unknown
    ex = rep['examples']['truncated_shard'][0]
    assert ex['file'] == first and 'unknown' in ex['message']
    assert f'after {read} complete samples' in ex['message']
    # with the shard's size (img2dataset's <shard>_stats.json): every lost sample counted
    with open(first[:-4] + '_stats.json', 'w') as f:
        json.dump(dict(successes=4), f)
    ds = WebDatasetImageText(out['pattern'], pipeline=WDS_PIPE)
    assert len(list(ds)) == len(keys)
    assert ds.skip_report()['at_fetch'] == {'truncated_shard': 4 - read}
    assert len(keys) + ds.num_skipped == 12  # nothing vanishes
    # a shard cut exactly between two members (tarfile alone ends silently there)
    with open(first, 'wb') as f:
        f.write(data[:3 * 512])
    ds = WebDatasetImageText(first, pipeline=WDS_PIPE, shard_sizes={'shard-000000.tar': 4})
    assert list(ds) == [] and ds.skip_report()['at_fetch'] == {'truncated_shard': 4}


def test_bad_shard_members_are_skipped_and_counted(tmp_path, img_dir):
    import webdataset as wds
    path = str(tmp_path / 'members.tar')
    good = open(osp.join(img_dir, 'good0.jpg'), 'rb').read()
    with wds.TarWriter(path) as sink:
        sink.write({'__key__': 'a', 'jpg': good, 'txt': 'fine'})
        sink.write({'__key__': 'b', 'jpg': b'not an image', 'txt': 'bad image'})
        sink.write({'__key__': 'c', 'jpg': good})  # no caption
        sink.write({'__key__': 'd', 'jpg': good, 'txt': '   '})  # blank caption
        sink.write({'__key__': 'e', 'txt': 'no image'})
        sink.write({'__key__': 'boom', 'jpg': good, 'txt': 'the transform raises'})
        sink.write({'__key__': 'f', 'jpg': good, 'json': json.dumps({'caption': None})})
        sink.write({'__key__': 'g', 'png': b'', 'txt': 'empty image'})
    ds = WebDatasetImageText(path, pipeline=[dict(type='_RaiseOn')] + WDS_PIPE)
    assert [s['key'] for s in ds] == ['a']
    rep, _ = _report(ds)
    assert rep['at_fetch'] == {'corrupt_file': 1, 'missing_key': 2, 'bad_caption': 2,
                               'transform_error': 1, 'empty_file': 1}
    keys = {e['entry'] for ex in rep['examples'].values() for e in ex}
    assert keys == {'b', 'c', 'd', 'e', 'boom', 'f', 'g'}
    assert all(e['file'] == path for ex in rep['examples'].values() for e in ex)


# --------------------------------------------------------------------------------- hook
def _runner(tmp_path, **loaders):
    logger = logging.getLogger('test_bad_data')
    loop = type('EpochBasedTrainLoop', (), {})()
    return SimpleNamespace(logger=logger, train_loop=loop, epoch=1, iter=0,
                           work_dir=str(tmp_path), **loaders)


def test_hook_reports_reasons_examples_and_what_eval_lacked(tmp_path, img_dir, caplog):
    from vlp.engine.hooks import DataSkipReportHook
    train = ImageTextJsonDataset(write_json(tmp_path / 'train.json', TRAIN),
                                 img_prefix=img_dir, pipeline=pipeline())
    test = ImageTextJsonDataset(write_json(tmp_path / 'test.json', EVAL), img_prefix=img_dir,
                                pipeline=pipeline(), mode='eval')
    loader = _loader(train)
    runner = _runner(tmp_path, train_dataloader=loader, test_dataloader=SimpleNamespace(
        dataset=test))
    hook = DataSkipReportHook(max_skip_fraction=0.9)  # 6 of 11 train samples are bad
    list(loader)
    _fetch_all(test)
    with caplog.at_level(logging.INFO, logger='test_bad_data'):
        hook.after_train_epoch(runner)
        hook.after_train(runner)
        hook.after_test_epoch(runner)
    text = caplog.text
    assert 'dropped when reading the annotations: bad_caption 6, missing_key 2, ' \
           'bad_entry 1' in text
    assert 'skip report' in text and 'transform_error' in text and 'boom.jpg' in text
    assert 'train.json, entry 10' in text
    assert 'test metrics lack 15 annotated samples: 12 dropped when the annotations were ' \
           'read' in text and '3 skipped when fetched' in text
    saved = json.load(open(tmp_path / 'data_skips.json'))
    assert saved['train']['at_load']['bad_caption'] == 6
    assert saved['train']['examples']['corrupt_file'][0]['file'].endswith('.jpg')
    assert saved['test']['at_fetch'] == {'corrupt_file': 2, 'transform_error': 1}


def test_hook_stops_mostly_broken_data(tmp_path, img_dir):
    from vlp.engine.hooks import DataSkipReportHook
    # 8 of 10 annotations unusable: stopped at the first report
    entries = [{'image': f'good{i}.jpg', 'caption': 'fine' if i < 2 else None}
               for i in range(10)]
    ds = ImageTextJsonDataset(write_json(tmp_path / 'a.json', entries), img_prefix=img_dir,
                              pipeline=pipeline())
    runner = _runner(tmp_path, train_dataloader=SimpleNamespace(dataset=ds))
    with pytest.raises(RuntimeError, match=r'8 of 10 train annotations were dropped.*'
                                           r'max_skip_fraction'):
        DataSkipReportHook().after_train_epoch(runner)
    # a transform that raises on most samples: stopped after the epoch
    entries = [{'image': 'boom.jpg' if i % 4 else 'good0.jpg', 'caption': f'c {i}'}
               for i in range(8)]
    ds = ImageTextJsonDataset(write_json(tmp_path / 'b.json', entries), img_prefix=img_dir,
                              pipeline=pipeline())
    _fetch_all(ds)
    runner = _runner(tmp_path, train_dataloader=SimpleNamespace(dataset=ds))
    with pytest.raises(RuntimeError, match=r'transform_error.*check the data'):
        DataSkipReportHook(max_skip_fraction=0.5).after_train_epoch(runner)
    DataSkipReportHook(max_skip_fraction=None).after_train_epoch(runner)  # the knob
    # iteration-based loops: checked at every report interval
    runner.train_loop = type('IterBasedTrainLoop', (), {})()
    with pytest.raises(RuntimeError, match=r'samples tried in iteration 1 were skipped'):
        DataSkipReportHook(interval=1).after_train_iter(runner, 0)
