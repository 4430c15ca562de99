"""Data-loading throughput: samples/s of vlp's data paths on this machine.

    python benchmarks/data_throughput.py [--workers 0 2] [--batch-size 64] [--samples 2048]
        [--image-size 224] [--frames 8] [--out results.json]

Builds its own data in a temporary folder (random JPEG images of ``--image-size``, their
JSON annotations, webdataset shards of the same pairs, and generated demo mp4 clips) and
times a full pass of a DataLoader (decode + resize + tokenise + collate in the workers) for

- ``json``: ``ImageTextJsonDataset`` (``LoadImage``, ``RandomResizedCrop``, ``Tokenize``),
- ``shards``: ``WebDatasetImageText`` over the same pairs (same transforms),
- ``video``: ``DemoVideoText`` clips with ``LoadVideoFrames`` (``--frames`` per clip),

with each ``--workers`` count. Prints a table and writes JSON. Timings are measurements,
not assertions: figures go to docs/benchmarks.md.
"""
import argparse
import json
import os
import os.path as osp
import platform
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def make_data(root: str, n: int, size: int) -> dict:
    from PIL import Image
    rng = np.random.default_rng(0)
    os.makedirs(osp.join(root, 'img'), exist_ok=True)
    entries = []
    for i in range(n):
        p = osp.join(root, 'img', f'{i}.jpg')
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            p, quality=90)
        entries.append(dict(image=f'{i}.jpg', caption=f'a red circle on the left {i}'))
    ann = osp.join(root, 'ann.json')
    with open(ann, 'w') as f:
        json.dump(entries, f)
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'json_to_shards', osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                                   'tools', 'data', 'json_to_shards.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shards = mod.convert(ann, osp.join(root, 'shards'), osp.join(root, 'img'),
                         samples_per_shard=256)
    return dict(ann=ann, img=osp.join(root, 'img'), pattern=shards['pattern'])


def datasets(data: dict, size: int, frames: int, n_videos: int, cache: str):
    import vlp.datasets  # noqa: F401
    from vlp.registry import DATASETS
    tok = dict(type='DemoTokenizer', style='clip', max_length=32)
    pipe = [dict(type='RandomResizedCrop', size=size, scale=(0.5, 1.0)),
            dict(type='ToTensor'), dict(type='Tokenize', tokenizer=tok)]
    yield 'json', DATASETS.build(dict(type='ImageTextJsonDataset', ann_file=data['ann'],
                                      img_prefix=data['img'],
                                      pipeline=[dict(type='LoadImage')] + pipe))
    yield 'shards', DATASETS.build(dict(type='WebDatasetImageText', urls=data['pattern'],
                                        pipeline=pipe))
    yield 'video', DATASETS.build(dict(
        type='DemoVideoText', split='train', num_videos=n_videos, cache_dir=cache,
        pipeline=[dict(type='LoadVideoFrames', num_frames=frames, sampling='random_segment'),
                  dict(type='Tokenize', tokenizer=tok)]))


def time_pass(dataset, workers: int, batch_size: int) -> dict:
    from vlp.datasets import vlp_collate
    shuffle = not isinstance(dataset, torch.utils.data.IterableDataset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                         num_workers=workers, collate_fn=vlp_collate,
                                         persistent_workers=False)
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += len(batch['text'])
    dt = time.perf_counter() - t0
    return dict(samples=n, seconds=round(dt, 3), samples_per_s=round(n / dt, 1))


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 2])
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--samples', type=int, default=2048)
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--frames', type=int, default=8)
    parser.add_argument('--videos', type=int, default=512)
    parser.add_argument('--out', default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        data = make_data(root, args.samples, args.image_size)
        cache = osp.join(root, 'videos')
        for name, ds in datasets(data, args.image_size, args.frames, args.videos, cache):
            if name == 'video':  # write the clips before timing
                for i in range(len(ds)):
                    ds.load_image(ds.get_data_info(i))
            for w in args.workers:
                r = time_pass(ds, w, args.batch_size)
                rows.append(dict(data=name, workers=w, **r))
                print(f'{name:7s} workers={w:2d}  {r["samples"]:6d} samples  '
                      f'{r["seconds"]:8.2f} s  {r["samples_per_s"]:8.1f} samples/s', flush=True)
    meta = dict(cpu_count=os.cpu_count(), python=platform.python_version(),
                torch=torch.__version__, image_size=args.image_size, frames=args.frames,
                batch_size=args.batch_size)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    return rows


if __name__ == '__main__':
    main()
