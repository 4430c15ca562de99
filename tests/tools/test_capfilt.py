"""tools/capfilt.py (BLIP's CapFilt, Sec. 3.3) on a tiny random BLIP: the command line once,
then the in-process functions. Keep/remove decisions, counts and synthetic captions are
recomputed here independently (own image loading, ``model.generate``, ``itm_logits``)."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vlp.apis import init_model
from vlp.datasets.demo import demo_scenes, render_scene
from conftest import load_tool  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SIZE = 32
SEED, BATCH, NUM_CAPS, MAX_LEN, MIN_LEN = 3, 3, 2, 12, 5


capfilt_tool = load_tool('capfilt')

CONFIG = """
tok = dict(type='DemoTokenizer', style='bert', max_length=24,
           additional_special_tokens=['[DEC]', '[ENC]'])
width = 32
model = dict(
    type='BLIP',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size={size},
                patch_size=8, embed_dim=width, depth=1, num_heads=2),
    text=dict(type='BertEncoder', vocab_size=55, hidden_size=width, num_layers=1,
              num_heads=2, intermediate_size=64, max_position_embeddings=32,
              type_vocab_size=0, cross_attention_layers='all', hidden_dropout=0.0,
              attention_dropout=0.0),
    vision_proj=dict(type='Projection', in_dim=width, out_dim=16, bias=True),
    text_proj=dict(type='Projection', in_dim=width, out_dim=16, bias=True),
    itm_head={itm_head},
    lm_head={lm_head},
    queue_size=0, prompt='a picture of ',
    generation_cfg=dict(num_beams=3, max_length=20, min_length=5),
    tokenizer=tok)
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImage'), dict(type='Resize', size=({size}, {size})),
    dict(type='ToTensor'), dict(type='Tokenize', tokenizer=tok)]))
"""
ITM = "dict(type='ITMHead', hidden_size=width)"
LM = "dict(type='MLMHead', hidden_size=width, vocab_size=55)"


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('capfilt')
    cfg = str(tmp / 'blip_capfilt_tiny.py')
    with open(cfg, 'w') as f:
        f.write(CONFIG.format(size=SIZE, itm_head=ITM, lm_head=LM))
    torch.manual_seed(0)
    model = init_model(cfg)
    model.init_weights()

    img_root = tmp / 'images'
    os.makedirs(img_root / 'sub')
    scenes = demo_scenes('test', 5)
    rng = np.random.default_rng(0)
    ann = []
    for i, (objects, captions) in enumerate(scenes):
        rel = f'sub/img_{i}.png'
        render_scene(objects, SIZE, rng).save(img_root / rel)
        # 2-3 web captions: own ones and one of another image (noise)
        web = list(captions[:1 + i % 2]) + [scenes[(i + 1) % len(scenes)][1][2]]
        entry = dict(image=rel, caption=web, image_id=100 + i, source='web', meta={'k': i})
        if i == 4:
            entry['caption'] = web[0]  # a single caption as a str
        ann.append(entry)
    ann_file = str(tmp / 'web.json')
    with open(ann_file, 'w') as f:
        json.dump(ann, f)

    # random init gives match probabilities within ~0.01 of each other: spread them and
    # centre them on 0.5 over the web captions, so that the default threshold splits
    setup = dict(img_root=str(img_root))
    with torch.no_grad():
        model.itm_head.fc.weight.mul_(500.0)
        model.itm_head.fc.bias.zero_()
        p = torch.tensor([q for e in ann
                          for q in _match_probs(model, _images(setup, [e]), _web(e))])
        model.itm_head.fc.bias[1] -= torch.logit(p.double()).median().float() + 0.05
    ckpt = str(tmp / 'blip_capfilt_tiny.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    model = init_model(cfg, ckpt)  # what the tool loads
    return dict(tmp=tmp, cfg=cfg, ckpt=ckpt, model=model, img_root=str(img_root),
                ann=ann, ann_file=ann_file)


# ----------------------------------------------------------- independent reference
def _web(entry):
    return [entry['caption']] if isinstance(entry['caption'], str) else entry['caption']


def _images(setup, entries):
    arrs = [np.array(Image.open(osp.join(setup['img_root'], e['image'])).convert('RGB'))
            for e in entries]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()  # uint8


def _match_probs(model, images_u8, texts):
    """ITM match probability of each text with the one image ``images_u8 [1, 3, H, W]``."""
    with torch.no_grad():
        x = model.data_preprocessor.normalize(images_u8)
        emb = model.vision(x)['image_embeds'].expand(len(texts), -1, -1)
        enc = model.tokenizer(texts)
        logits = model.itm_logits(emb, enc['input_ids'], enc['attention_mask'])
        return torch.softmax(logits, dim=-1)[:, 1].tolist()


def _reference_synthetic(setup, model, seed=SEED, batch=BATCH, num=NUM_CAPS, **opts):
    """``model.generate`` in the tool's batches with one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    out = []
    ann = setup['ann']
    for s in range(0, len(ann), batch):
        images = model.data_preprocessor.normalize(_images(setup, ann[s:s + batch]))
        caps = model.generate(images, do_sample=True, num_beams=1, top_p=0.9, top_k=50,
                              repetition_penalty=1.1, max_length=MAX_LEN,
                              min_length=MIN_LEN, num_return_sequences=num, generator=g,
                              **opts)
        out += [caps[b * num:(b + 1) * num] for b in range(len(caps) // num)]
    return out


def _reference(setup, threshold, keep_empty=False):
    model, ann = setup['model'], setup['ann']
    synthetic = _reference_synthetic(setup, model)
    entries, counts = [], dict(web_kept=0, web_removed=0, synthetic_kept=0,
                               synthetic_removed=0)
    for i, entry in enumerate(ann):
        web = _web(entry)
        probs = _match_probs(model, _images(setup, [entry]), web + synthetic[i])
        wk = [t for t, p in zip(web, probs[:len(web)]) if p >= threshold]
        sk = [t for t, p in zip(synthetic[i], probs[len(web):]) if p >= threshold]
        counts['web_kept'] += len(wk)
        counts['web_removed'] += len(web) - len(wk)
        counts['synthetic_kept'] += len(sk)
        counts['synthetic_removed'] += len(synthetic[i]) - len(sk)
        if wk + sk or keep_empty:
            entries.append(dict(entry, caption=wk + sk))
    return entries, counts, synthetic


def _run(setup, **kw):
    opts = dict(threshold=0.5, num_captions=NUM_CAPS, max_length=MAX_LEN,
                min_length=MIN_LEN, batch_size=BATCH, seed=SEED, progress=False)
    opts.update(kw)
    return capfilt_tool.capfilt(setup['ann_file'], setup['model'], setup['model'],
                                setup['img_root'], **opts)


def _check_format(entries, ann):
    by_image = {e['image']: e for e in ann}
    for e in entries:
        src = by_image[e['image']]
        assert isinstance(e['caption'], list) and all(isinstance(c, str) for c in e['caption'])
        assert {k: v for k, v in e.items() if k != 'caption'} == \
            {k: v for k, v in src.items() if k != 'caption'}  # other keys preserved


# --------------------------------------------------------------------------- tests
def test_cli_matches_independent_recomputation(setup):
    out = str(setup['tmp'] / 'out' / 'clean.json')
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'capfilt.py'), setup['ann_file'], out,
           '--captioner', setup['cfg'], setup['ckpt'], '--filter', setup['cfg'], setup['ckpt'],
           '--img-root', setup['img_root'], '--num-captions', str(NUM_CAPS),
           '--max-length', str(MAX_LEN), '--min-length', str(MIN_LEN),
           '--batch-size', str(BATCH), '--seed', str(SEED), '--device', 'cpu']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        entries = json.load(f)
    with open(out + '.summary.json') as f:
        summary = json.load(f)
    assert json.loads(proc.stdout[proc.stdout.index('{'):]) == summary
    assert not [n for n in os.listdir(osp.dirname(out)) if n.endswith('.tmp')]
    _check_format(entries, setup['ann'])
    ref_entries, counts, _ = _reference(setup, 0.5)
    assert entries == ref_entries
    assert {k: summary[k] for k in counts} == counts
    assert counts['web_kept'] > 0 and counts['web_removed'] > 0  # the threshold splits
    assert summary['images'] == len(setup['ann'])
    assert summary['images_kept'] == len(ref_entries)
    assert summary['total_kept'] == counts['web_kept'] + counts['synthetic_kept']
    assert summary['web_captions'] == sum(len(_web(e)) for e in setup['ann'])
    assert summary['synthetic_captions'] == NUM_CAPS * len(setup['ann'])
    assert summary['decoding']['prompt'] == 'a picture of '  # the captioner's own
    assert summary['ann_file'] == setup['ann_file'] and summary['out_file'] == out


def test_threshold_splits_as_recomputed(setup):
    # a threshold in the middle of the probabilities: both decisions occur
    _, _, details = _run(setup, threshold=0.5)
    probs = sorted(p for d in details for p in d['web_probs'] + d['synthetic_probs'])
    thr = float(np.median(probs))
    entries, summary, details = _run(setup, threshold=thr)
    ref_entries, counts, synthetic = _reference(setup, thr)
    assert entries == ref_entries
    assert {k: summary[k] for k in counts} == counts
    assert counts['web_kept'] + counts['synthetic_kept'] > 0
    assert counts['web_removed'] + counts['synthetic_removed'] > 0
    # the probabilities reported equal the independent ITM computation
    for entry, d in zip(setup['ann'], details):
        ref = _match_probs(setup['model'], _images(setup, [entry]),
                           _web(entry) + d['synthetic'])
        np.testing.assert_allclose(d['web_probs'] + d['synthetic_probs'], ref, atol=1e-5)


def test_threshold_extremes_and_keep_empty(setup):
    n_web = sum(len(_web(e)) for e in setup['ann'])
    entries, summary, details = _run(setup, threshold=0.0)
    assert len(entries) == len(setup['ann'])
    for e, src, d in zip(entries, setup['ann'], details):
        assert e['caption'] == _web(src) + d['synthetic']
    assert summary['web_kept'] == n_web and summary['web_removed'] == 0
    assert summary['synthetic_kept'] == NUM_CAPS * len(setup['ann'])
    assert summary['total_kept'] == n_web + NUM_CAPS * len(setup['ann'])

    entries, summary, _ = _run(setup, threshold=1.01)
    assert entries == [] and summary['images_kept'] == 0
    assert summary['images_dropped'] == len(setup['ann']) and summary['total_kept'] == 0
    assert summary['web_removed'] == n_web
    assert summary['synthetic_removed'] == NUM_CAPS * len(setup['ann'])

    entries, summary, _ = _run(setup, threshold=1.01, keep_empty=True)
    assert [e['caption'] for e in entries] == [[]] * len(setup['ann'])
    _check_format(entries, setup['ann'])
    assert summary['images_kept'] == len(setup['ann'])


def test_synthetic_captions_equal_generate(setup):
    _, _, details = _run(setup, threshold=0.0, seed=7, num_captions=3, batch_size=2)
    ref = _reference_synthetic(setup, setup['model'], seed=7, batch=2, num=3)
    assert [d['synthetic'] for d in details] == ref
    assert all(len(c) == 3 for c in ref)
    # another seed gives other captions; the same seed the same
    _, _, other = _run(setup, threshold=0.0, seed=8, num_captions=3, batch_size=2)
    assert [d['synthetic'] for d in other] != ref
    # an explicit prompt is passed on
    _, _, details = _run(setup, threshold=0.0, prompt='there is', num_captions=1)
    assert [d['synthetic'] for d in details] == _reference_synthetic(
        setup, setup['model'], num=1, prompt='there is')


def test_no_synthetic_and_no_filter_web(setup, tmp_path):
    out = str(tmp_path / 'web_only.json')
    summary = capfilt_tool.run_capfilt(setup['ann_file'], out, None, setup['model'],
                                       setup['img_root'], threshold=0.0, synthetic=False,
                                       progress=False)
    with open(out) as f:
        entries = json.load(f)
    assert [e['caption'] for e in entries] == [_web(e) for e in setup['ann']]
    assert summary['synthetic_captions'] == 0 and summary['num_captions'] == 0
    entries, summary, details = _run(setup, threshold=1.01, filter_web=False)
    assert [e['caption'] for e in entries] == [_web(e) for e in setup['ann']]
    assert summary['web_removed'] == 0 and summary['synthetic_kept'] == 0
    assert all(d['web_probs'] is None for d in details)
    with pytest.raises(ValueError, match='nothing to do'):
        _run(setup, synthetic=False, filter_web=False)


def test_errors(setup, tmp_path):
    ann = [dict(image='sub/img_0.png', caption='x'), dict(image='nope/missing.png',
                                                           caption=['y'])]
    with pytest.raises(FileNotFoundError, match='missing.png'):
        capfilt_tool.capfilt(ann, setup['model'], setup['model'], setup['img_root'],
                             progress=False)
    with pytest.raises(ValueError, match='"image" and "caption"'):
        capfilt_tool.capfilt([dict(image='a.png')], setup['model'], setup['model'],
                             setup['img_root'], progress=False)
    for name, heads in (('no_lm', dict(itm_head=ITM, lm_head='None')),
                        ('no_itm', dict(itm_head='None', lm_head=LM))):
        cfg = str(tmp_path / f'{name}.py')
        with open(cfg, 'w') as f:
            f.write(CONFIG.format(size=SIZE, **heads))
        model = init_model(cfg)
        if name == 'no_lm':
            with pytest.raises(ValueError, match='captioner .*no decoder'):
                capfilt_tool.capfilt(setup['ann'], model, setup['model'], setup['img_root'],
                                     progress=False)
        else:
            with pytest.raises(ValueError, match='filter .*no ITM head'):
                capfilt_tool.capfilt(setup['ann'], setup['model'], model, setup['img_root'],
                                     progress=False)


def test_image_transform_adds_resize(setup):
    model = setup['model']
    cfg = model.cfg
    try:
        del model.cfg  # no config: a Resize to the encoder's input size is added
        t = capfilt_tool.image_transform_for(model)
        img = Image.new('RGB', (50, 40), (10, 200, 30))
        x = t(img)
        assert x.dtype == torch.uint8 and tuple(x.shape) == (3, SIZE, SIZE)
    finally:
        model.cfg = cfg
    steps = [type(s).__name__ for s in capfilt_tool.image_transform_for(model).steps]
    assert steps == ['Resize', 'ToTensor']  # the config's pipeline minus load and text
