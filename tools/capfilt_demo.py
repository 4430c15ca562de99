"""CapFilt's claim in miniature (BLIP, Li et al. 2022, Sec. 3.3 / Table 1; issue 22):
captioning and filtering noisy web data trains a better model than the noisy data.

Per seed, on the embedded demo scenes (vlp/datasets/demo), everything at toy size:

1. **Data.** ``--web`` training scenes with one "alt text" each, a fraction ``--noise`` of
   them wrong the way web captions are: half replaced by the caption of another scene,
   half *partly* wrong (one attribute of one object — size, colour, shape or position —
   changed); ``--clean`` further training scenes with their five correct captions (the
   human-annotated set, COCO's role in BLIP); the test split (``--test`` scenes, five
   captions each) is clean. Images are written as PNG files, annotations as BLIP JSON, so
   CapFilt runs on files exactly as on real data. Each web entry carries a ``noise`` field
   (``clean`` / ``other`` / ``partial``) that CapFilt preserves, so what it removed can be
   scored against the truth.
2. **The noisy run**: a CLIP tiny (the downstream model) trained on the noisy web data + the
   clean set.
3. **Bootstrap** from it, as BLIP fine-tunes its captioner and filter on COCO: the
   **filter** is the noisy CLIP fine-tuned on the clean set, a ``SimilarityFilter`` whose
   threshold is the cosine that best separates matching from mismatched pairs of held-out
   clean images (balanced accuracy: the counterpart of ITM's argmax 0.5); the
   **captioner** is BLIP's captioning model (ViT + image-grounded decoder, LM loss)
   pre-trained on the same noisy data, fine-tuned on the clean set. (BLIP's ITM head did
   not leave its class prior within this CPU budget: every probability ~0.33, so ITM >= 0.5
   removed every caption; docs/capfilt.md.)
4. **CapFilt** with ``configs/capfilt/capfilt_similarity_tiny.py`` (one nucleus-sampled
   caption per image; keep a web or synthetic caption whose cosine is >= the threshold).
5. **Train the CLIP again** from scratch, same iterations and batch, on CapFilt's output +
   the clean set, and on the correct captions + the clean set (the oracle); report test
   R@1 (image->text, text->image) of the three.

Writes ``<work-dir>/results.json`` and prints a markdown table (docs/capfilt.md has the
measured figures). The defaults took 6-8 min per seed on 2 CPU cores shared with other
jobs (one torch thread)::

    .venv/bin/python tools/capfilt_demo.py --seeds 0 1 --work-dir work_dirs/capfilt_demo
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import numpy as np  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
CAPFILT_CONFIG = osp.join(ROOT, 'configs', 'capfilt', 'capfilt_similarity_tiny.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    p.add_argument('--work-dir', default='work_dirs/capfilt_demo')
    p.add_argument('--noise', type=float, default=0.5,
                   help='fraction of web captions that are wrong (half other scenes, half '
                        'partly wrong)')
    p.add_argument('--web', type=int, default=400, help='noisy web training images')
    p.add_argument('--clean', type=int, default=80,
                   help='clean training images (5 captions each)')
    p.add_argument('--test', type=int, default=200, help='test images (clean, 5 captions)')
    p.add_argument('--image-size', type=int, default=32)
    p.add_argument('--width', type=int, default=64)
    p.add_argument('--clip-iters', type=int, default=300,
                   help='CLIP training iterations (each of the three runs)')
    p.add_argument('--blip-iters', type=int, default=100,
                   help='captioner pre-training iterations (noisy data)')
    p.add_argument('--finetune-iters', type=int, default=60,
                   help='captioner / filter fine-tuning iterations (clean set)')
    p.add_argument('--finetune-lr', type=float, default=3e-4)
    p.add_argument('--batch-size', type=int, default=64, help='CLIP batch')
    p.add_argument('--blip-batch-size', type=int, default=32)
    p.add_argument('--filter-only', action='store_true',
                   help='also train on the web captions CapFilt kept without its synthetic '
                        'ones (which half of CapFilt helps)')
    p.add_argument('--threads', type=int, default=1,
                   help='torch CPU threads (1: on a shared or loaded machine 2 threads were '
                        '5-10 times slower per step than 1, from oversubscription)')
    return p.parse_args(argv)


# ------------------------------------------------------------------------------- data
def corrupt(objects, rng):
    """The scene with one attribute of one object changed (a partly wrong description)."""
    from vlp.datasets.demo.scenes import COLOURS, POSITIONS, SHAPES
    objs = [list(o) for o in objects]
    k = int(rng.integers(len(objs)))
    attr = int(rng.integers(4))  # size, colour, shape, position
    taken = {o[3] for o in objs}
    choices = {0: ['small', 'large'], 1: list(COLOURS), 2: list(SHAPES),
               3: [p for p in POSITIONS if p not in taken]}[attr]
    choices = [c for c in choices if c != objs[k][attr]]
    if not choices:  # no free position: change the colour
        attr, choices = 1, [c for c in COLOURS if c != objs[k][1]]
    objs[k][attr] = choices[int(rng.integers(len(choices)))]
    return [tuple(o) for o in objs]


def make_data(root, seed, args):
    """Images and the JSON files of one seed; returns their paths and the noise counts."""
    from vlp.datasets.demo.scenes import demo_scenes, make_captions, render_scene
    img_root = osp.join(root, 'images')
    os.makedirs(img_root, exist_ok=True)
    n = args.web + args.clean
    scenes = demo_scenes('train', n, seed=seed)
    rng = np.random.default_rng([seed, 22])
    for i, (objects, _) in enumerate(scenes):
        path = osp.join(img_root, f'{i:05d}.png')
        if not osp.exists(path):
            render_scene(objects, args.image_size, np.random.default_rng([seed, i, 2])) \
                .save(path)
    n_noisy = int(round(args.noise * args.web))
    noisy = rng.permutation(args.web)[:n_noisy]
    kind = dict.fromkeys(range(args.web), 'clean')
    for j, i in enumerate(noisy):
        kind[int(i)] = 'other' if j % 2 == 0 else 'partial'
    web, oracle = [], []
    for i in range(args.web):
        objects, caps = scenes[i]
        true = caps[int(rng.integers(len(caps)))]
        if kind[i] == 'other':
            j = int(rng.integers(n - 1))
            j += j >= i
            cap = scenes[j][1][int(rng.integers(5))]
        elif kind[i] == 'partial':
            cap = make_captions(corrupt(objects, rng), rng, num=1)[0]
        else:
            cap = true
        web.append(dict(image=f'{i:05d}.png', caption=cap, noise=kind[i]))
        oracle.append(dict(image=f'{i:05d}.png', caption=true))
    clean = [dict(image=f'{i:05d}.png', caption=list(scenes[i][1]))
             for i in range(args.web, n)]
    n_calib = max(2, len(clean) // 5)
    files = {}
    for name, entries in (('web_noisy', web), ('web_oracle', oracle), ('clean', clean),
                          ('clean_fit', clean[n_calib:]), ('clean_calib', clean[:n_calib])):
        files[name] = osp.join(root, f'{name}.json')
        with open(files[name], 'w') as f:
            json.dump(entries, f)
    counts = {k: sum(v == k for v in kind.values()) for k in ('clean', 'other', 'partial')}
    return img_root, files, counts


# --------------------------------------------------------------------------- training
def _sizes(model, family, args):
    w = args.width
    model['vision'].update(img_size=args.image_size, embed_dim=w, depth=2)
    if family == 'clip':
        model['vision_proj'].update(in_dim=w)
        model['text_proj'].update(in_dim=w)
        model['text'].update(width=w, layers=2)
    else:
        model['text'].update(hidden_size=w, num_layers=2, intermediate_size=4 * w)
        model['lm_head'].update(hidden_size=w)
        # the captioning model (as configs/blip/blip_caption_coco.py): the ViT and the
        # image-grounded decoder, LM loss only; prompt 'a picture of ' out of the loss
        model.update(vision_proj=None, text_proj=None, itm_head=None, queue_size=0,
                     prompt='a picture of ')
    return model


def build_cfg(family, work_dir, ann_files, img_root, iters, batch, seed, args,
              load_from=None, lr=1e-3):
    from mmengine.config import Config
    base = {'clip': 'configs/clip/clip_tiny_demo.py',
            'blip': 'configs/blip/blip_tiny_demo.py'}[family]
    cfg = Config.fromfile(osp.join(ROOT, base))
    cfg.model = _sizes(cfg.model.to_dict(), family, args)
    tok = cfg.model['tokenizer']
    pipe = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=tok)]
    cfg.train_dataloader = dict(
        batch_size=batch, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
        collate_fn=dict(type='vlp_collate'),
        dataset=dict(type='ImageTextJsonDataset', ann_file=ann_files, img_prefix=img_root,
                     pipeline=[dict(type='LoadImage')] + pipe))
    cfg.test_dataloader = dict(
        batch_size=100, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='vlp_collate'),
        dataset=dict(type='DemoImageText', split='test', num_images=args.test,
                     image_size=args.image_size, pipeline=pipe))
    cfg.test_evaluator = dict(type='RetrievalMetric')
    cfg.test_cfg = dict(type='TestLoop')
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg', 'auto_scale_lr'):
        cfg.pop(key, None)
    cfg.custom_hooks = []  # no momentum encoders (CLIP; BLIP's captioning model)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    cfg.optim_wrapper.optimizer.lr = lr
    warm = max(1, iters // 10)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=warm),
        dict(type='CosineAnnealingLR', eta_min=lr / 100, by_epoch=False, begin=0,
             end=iters)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(10, iters // 3))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=iters, max_keep_ckpts=1, save_last=True)
    cfg.log_processor = dict(type='LogProcessor', window_size=10, by_epoch=False)
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    cfg.randomness = dict(seed=seed, diff_rank_seed=False, deterministic=False)
    cfg.work_dir = work_dir
    cfg.load_from = load_from
    cfg.pop('test_after_train', None)
    return cfg


def train(cfg, test=True):
    """Train with mmengine's Runner; returns (checkpoint path, test metrics or None)."""
    from vlp.engine.launch import build_runner
    runner = build_runner(cfg)
    runner.train()
    ckpt = osp.join(cfg.work_dir, f'iter_{cfg.train_cfg["max_iters"]}.pth')
    metrics = runner.test() if test else None
    return ckpt, metrics


def r1(metrics):
    """(image->text R@1, text->image R@1) in % from RetrievalMetric's keys."""
    txt = next(v for k, v in metrics.items() if k.endswith('txt_r1'))
    img = next(v for k, v in metrics.items() if k.endswith('img_r1'))
    return round(float(txt), 2), round(float(img), 2)


# ------------------------------------------------------------------------------ a seed
def calibrate(model, entries, img_root, seed):
    """The cosine threshold that best separates the clean set's matching pairs from
    mismatched ones (another image's caption), by balanced accuracy: the similarity
    filter's counterpart of ITM's argmax (0.5)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from vlp.capfilt import image_transform_for
    t = image_transform_for(model)
    rng = np.random.default_rng([seed, 7])
    with torch.no_grad():
        imgs = torch.stack([t(Image.open(osp.join(img_root, e['image'])).convert('RGB'))
                            for e in entries])
        fi = F.normalize(model.encode_image(imgs).float(), dim=-1)
        pos, neg = [], []
        for i, e in enumerate(entries):
            j = int(rng.integers(len(entries) - 1))
            j += j >= i
            ft = F.normalize(model.encode_text(e['caption'] + entries[j]['caption']).float(),
                             dim=-1)
            sim = (fi[i:i + 1] @ ft.T)[0].tolist()
            pos += sim[:len(e['caption'])]
            neg += sim[len(e['caption']):]
    pos, neg = np.array(pos), np.array(neg)
    cands = np.unique(np.concatenate([pos, neg]))
    bal = [((pos >= c).mean() + (neg < c).mean()) / 2 for c in cands]
    best = int(np.argmax(bal))
    return float(cands[best]), float(bal[best])


def filter_only(cleaned: str) -> str:
    """CapFilt's output without its synthetic captions (the filter's half alone)."""
    with open(cleaned) as f:
        out = json.load(f)
    entries = []
    for e in out:
        web = [c['text'] for c in e['capfilt'] if c['source'] == 'web' and 'removed_by' not in c]
        if web:
            entries.append(dict(e, caption=web))
    path = cleaned.replace('.json', '_filter_only.json')
    with open(path, 'w') as f:
        json.dump(entries, f)
    return path


def run_seed(seed, args):
    import torch
    from mmengine.config import Config
    from vlp.apis import init_model
    from vlp.capfilt import run_capfilt
    torch.set_num_threads(args.threads)
    root = osp.abspath(osp.join(args.work_dir, f'seed{seed}'))
    os.makedirs(root, exist_ok=True)
    t0 = time.time()
    timing, results = {}, {}
    img_root, files, noise = make_data(root, seed, args)
    timing['data'] = time.time() - t0

    # 1. the noisy run: CLIP on the noisy web data + the clean set
    t = time.time()
    cfg = build_cfg('clip', osp.join(root, 'clip_noisy'), [files['web_noisy'],
                    files['clean']], img_root, args.clip_iters, args.batch_size, seed, args)
    noisy_ckpt, metrics = train(cfg)
    results['noisy'] = r1(metrics)
    timing['clip_noisy'] = time.time() - t

    # 2. bootstrapped from it, as BLIP: the filter is the noisy run fine-tuned on the clean
    # set (its threshold calibrated on held-out clean images); the captioner a BLIP
    # captioning model pre-trained on the same noisy data, fine-tuned on the clean set
    t = time.time()
    cfg = build_cfg('clip', osp.join(root, 'filter'), [files['clean_fit']], img_root,
                    args.finetune_iters, args.batch_size, seed, args, load_from=noisy_ckpt,
                    lr=args.finetune_lr)
    filter_ckpt, _ = train(cfg, test=False)
    filter_cfg = osp.join(root, 'filter.py')
    cfg.dump(filter_cfg)
    model = init_model(filter_cfg, filter_ckpt, device='cpu')
    with open(files['clean_calib']) as f:
        threshold, bal_acc = calibrate(model, json.load(f), img_root, seed)
    del model
    timing['filter'] = time.time() - t
    t = time.time()
    cfg = build_cfg('blip', osp.join(root, 'captioner_pretrain'),
                    [files['web_noisy'], files['clean']], img_root, args.blip_iters,
                    args.blip_batch_size, seed, args)
    pre_ckpt, _ = train(cfg, test=False)
    cfg = build_cfg('blip', osp.join(root, 'captioner'), [files['clean']], img_root,
                    args.finetune_iters, args.blip_batch_size, seed, args,
                    load_from=pre_ckpt, lr=args.finetune_lr)
    cap_ckpt, _ = train(cfg, test=False)
    cap_cfg = osp.join(root, 'captioner.py')
    cfg.dump(cap_cfg)
    timing['captioner'] = time.time() - t

    # 3. CapFilt (configs/capfilt/capfilt_similarity_tiny.py with this seed's files)
    t = time.time()
    cf = Config.fromfile(CAPFILT_CONFIG)
    cf.stages[0]['model'] = dict(config=cap_cfg, checkpoint=cap_ckpt)
    cf.stages[1]['model'] = dict(config=filter_cfg, checkpoint=filter_ckpt)
    cf.stages[1]['threshold'] = threshold
    cleaned = osp.join(root, 'web_capfilt.json')
    cf.input = dict(path=files['web_noisy'], img_root=img_root)
    cf.output = dict(path=cleaned, scores=True)
    cf.runtime.update(seed=seed, device='cpu', num_workers=0, progress_interval=0)
    summary = run_capfilt(cf, overwrite=True, progress=False)
    timing['capfilt'] = time.time() - t
    with open(cleaned) as f:
        out = json.load(f)
    web_kept = {k: 0 for k in noise}
    for e in out:
        for c in e['capfilt']:
            if c['source'] == 'web' and 'removed_by' not in c:
                web_kept[e['noise']] += 1
    capfilt = dict(
        threshold=round(threshold, 4), calibration_balanced_accuracy=round(bal_acc, 4),
        web_captions=summary['web_captions'], web_kept=summary['web_kept'],
        web_removed_fraction=summary['fractions']['web_removed'],
        synthetic_generated=summary['synthetic_captions'],
        synthetic_kept=summary['synthetic_kept'],
        synthetic_added_per_web_caption=summary['fractions'][
            'synthetic_added_per_web_caption'],
        images_dropped=summary['images_dropped'],
        web_kept_by_truth={k: f'{web_kept[k]}/{noise[k]}' for k in noise},
        images_per_second=summary['timing']['this_run']['images_per_second'],
        examples=[dict(web=[c['text'] for c in e['capfilt'] if c['source'] == 'web'],
                       noise=e['noise'], kept=e['caption']) for e in out[:4]])

    # 4. the downstream CLIP again, from scratch: on CapFilt's output and on the oracle
    runs = [('capfilt', cleaned), ('oracle', files['web_oracle'])]
    if args.filter_only:
        runs.insert(1, ('filter_only', filter_only(cleaned)))
    for name, ann in runs:
        t = time.time()
        cfg = build_cfg('clip', osp.join(root, f'clip_{name}'), [ann, files['clean']],
                        img_root, args.clip_iters, args.batch_size, seed, args)
        _, metrics = train(cfg)
        results[name] = r1(metrics)
        timing[f'clip_{name}'] = time.time() - t
    timing = {k: round(v, 1) for k, v in timing.items()}
    return dict(seed=seed, noise=noise, capfilt=capfilt, r1=results, seconds=timing)


NAMES = ('noisy', 'capfilt', 'filter_only', 'oracle')


def table(runs):
    lines = ['| seed | data | test R@1 image->text | test R@1 text->image |',
             '|---|---|---|---|']
    for run in runs:
        for name in NAMES:
            if name in run['r1']:
                a, b = run['r1'][name]
                lines.append(f'| {run["seed"]} | {name} | {a:.1f} | {b:.1f} |')
    for name in NAMES:
        if not all(name in r['r1'] for r in runs):
            continue
        a = np.mean([r['r1'][name][0] for r in runs])
        b = np.mean([r['r1'][name][1] for r in runs])
        lines.append(f'| mean | {name} | {a:.1f} | {b:.1f} |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    runs = []
    start = time.time()
    for seed in args.seeds:
        runs.append(run_seed(seed, args))
        with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
            json.dump(dict(args=vars(args), runs=runs,
                           wall_seconds=round(time.time() - start, 1)), f, indent=1)
    print(table(runs))
    for run in runs:
        print(f'seed {run["seed"]}: capfilt {json.dumps(run["capfilt"])}; '
              f'seconds {json.dumps(run["seconds"])}')
    print(f'total {time.time() - start:.0f} s; {osp.join(args.work_dir, "results.json")}')
    return runs


if __name__ == '__main__':
    main()
