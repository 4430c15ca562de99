"""CapFilt throughput: images per second for captioning + filtering (BLIP's rule: one
nucleus-sampled caption, ITM on the web and synthetic captions) through the whole engine
(decode, stages, write), on a rendered demo image set, with random weights (speed does not
depend on them; captions run to the maximum length more often than a trained model's).

Sizes: ``tiny`` (the CapFilt demo's BLIP: ViT 2 x 64 at 32 px, BERT 2 x 64), ``demo``
(configs/blip/blip_tiny_demo.py: ViT 3 x 96 at 64 px), ``base`` (BLIP base: ViT-B/16 at
224 px, BERT-base 12 x 768 with cross-attention; the demo tokenizer's small vocabulary
instead of BERT's 30,524 tokens, which only shrinks the LM head)::

    .venv/bin/python tools/capfilt_throughput.py --size tiny --images 128 --batch-size 32
    .venv/bin/python tools/capfilt_throughput.py --size base --images 8 --batch-size 8

Prints a JSON line: images/s and seconds per stage (docs/capfilt.md).
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))

SIZES = {
    'tiny': dict(image=32, patch=8, width=64, depth=2, text_layers=2, heads=4),
    'demo': dict(image=64, patch=8, width=96, depth=3, text_layers=2, heads=4),
    'base': dict(image=224, patch=16, width=768, depth=12, text_layers=12, heads=12),
}


def model_config(size: str) -> str:
    s = SIZES[size]
    w = s['width']
    return f"""
_base_ = ['{ROOT}/configs/blip/blip_tiny_demo.py']
model = dict(
    vision=dict(img_size={s['image']}, patch_size={s['patch']}, embed_dim={w},
                depth={s['depth']}, num_heads={s['heads']}),
    text=dict(hidden_size={w}, num_layers={s['text_layers']}, num_heads={s['heads']},
              intermediate_size={4 * w}),
    vision_proj=dict(in_dim={w}), text_proj=dict(in_dim={w}),
    itm_head=dict(hidden_size={w}), lm_head=dict(hidden_size={w}), queue_size=0)
"""


def main(argv=None):
    p = argparse.ArgumentParser(description='CapFilt throughput (docs/capfilt.md)')
    p.add_argument('--size', choices=sorted(SIZES), default='tiny')
    p.add_argument('--images', type=int, default=128)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--threads', type=int, default=1,
                   help='torch CPU threads (more than the free cores slows it down)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--max-length', type=int, default=30)
    args = p.parse_args(argv)
    import numpy as np
    import torch
    from vlp.capfilt import run_capfilt
    from vlp.datasets.demo.scenes import demo_scenes, render_scene
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = tempfile.mkdtemp(prefix='capfilt_tp_')
    cfg_path = osp.join(tmp, 'blip.py')
    with open(cfg_path, 'w') as f:
        f.write(model_config(args.size))
    ann = []
    image = SIZES[args.size]['image']
    for i, (objects, caps) in enumerate(demo_scenes('train', args.images)):
        render_scene(objects, image, np.random.default_rng(i)).save(
            osp.join(tmp, f'{i}.png'))
        ann.append(dict(image=f'{i}.png', caption=caps[0]))
    with open(osp.join(tmp, 'ann.json'), 'w') as f:
        json.dump(ann, f)
    model = dict(config=cfg_path)
    summary = run_capfilt(dict(
        input=dict(path=osp.join(tmp, 'ann.json'), img_root=tmp),
        output=dict(path=osp.join(tmp, 'out.json')),
        stages=[dict(type='Captioner', model=model, num_captions=1,
                     decoding=dict(max_length=args.max_length)),
                dict(type='ITMFilter', model=model, threshold=0.5)],
        runtime=dict(batch_size=args.batch_size, num_workers=2, device=args.device,
                     progress_interval=0)), progress=False)
    t = summary['timing']
    print(json.dumps(dict(size=args.size, images=summary['images'],
                          batch_size=args.batch_size, threads=args.threads,
                          device=args.device, load=os.getloadavg()[0],
                          images_per_second=t['this_run']['images_per_second'],
                          wall_seconds=t['this_run']['wall_seconds'],
                          seconds_per_stage=t['seconds_per_stage'])))


if __name__ == '__main__':
    main()
