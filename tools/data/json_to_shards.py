"""Convert a JSON image-text annotation file (ALBEF / BLIP / COCO Karpathy format:
``[{"image": path, "caption": str or [str]}, ...]``) into webdataset shards, the format
img2dataset writes: per pair ``<key>.jpg`` (the image file's bytes, re-encoded to JPEG only
when it is another format), ``<key>.txt`` (the caption) and ``<key>.json`` (``caption``,
``image`` path, ``image_id``).

Usage::

    python tools/data/json_to_shards.py ANN.json OUT_DIR [--img-root DIR]
        [--samples-per-shard 10000] [--prefix shard] [--all-captions]

One sample per (image, caption) pair with ``--all-captions`` (the training protocol of the
JSON datasets), otherwise one per image with its first caption. Missing or unreadable
images are skipped, counted and listed at the end. Writes ``OUT_DIR/<prefix>-000000.tar``
... and prints the brace pattern to put in a config
(``WebDatasetImageText(urls=...)``).
"""
import argparse
import io
import json
import os
import os.path as osp
from typing import List, Optional


def _jpeg_bytes(path: str) -> bytes:
    from PIL import Image
    with open(path, 'rb') as f:
        data = f.read()
    img = Image.open(io.BytesIO(data))
    img.load()  # fails on truncated / corrupt files
    if img.format == 'JPEG':
        return data
    buf = io.BytesIO()
    img.convert('RGB').save(buf, format='JPEG', quality=95)
    return buf.getvalue()


def convert(ann_file: str, out_dir: str, img_root: str = '', samples_per_shard: int = 10000,
            prefix: str = 'shard', all_captions: bool = False) -> dict:
    """Write the shards; returns ``dict(pattern, shards, samples, skipped)``."""
    import webdataset as wds
    from mmengine.utils import ProgressBar
    with open(ann_file, encoding='utf-8') as f:
        entries = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    pattern = osp.join(out_dir, f'{prefix}-%06d.tar')
    skipped: List[str] = []
    n = 0
    image_ids = {}
    bar = ProgressBar(len(entries))
    with wds.ShardWriter(pattern, maxcount=samples_per_shard, verbose=0) as sink:
        for e in entries:
            bar.update()
            rel = e['image']
            path = rel if (osp.isabs(rel) or not img_root) else osp.join(img_root, rel)
            try:
                data = _jpeg_bytes(path)
            except Exception as exn:  # missing or unreadable: skip, report
                skipped.append(f'{path} ({type(exn).__name__})')
                continue
            caps = e['caption'] if isinstance(e['caption'], list) else [e['caption']]
            image_id = image_ids.setdefault(rel, len(image_ids))
            for c in (caps if all_captions else caps[:1]):
                sink.write({'__key__': f'{n:09d}', 'jpg': data, 'txt': c,
                            'json': json.dumps(dict(caption=c, image=rel,
                                                    image_id=image_id))})
                n += 1
        shards = sink.shard  # files opened (the first one at construction)
    last = max(shards - 1, 0)
    brace = osp.join(out_dir, f'{prefix}-{{000000..{last:06d}}}.tar')
    return dict(pattern=brace, shards=shards, samples=n, skipped=skipped)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('ann_file')
    parser.add_argument('out_dir')
    parser.add_argument('--img-root', default='')
    parser.add_argument('--samples-per-shard', type=int, default=10000)
    parser.add_argument('--prefix', default='shard')
    parser.add_argument('--all-captions', action='store_true')
    args = parser.parse_args(argv)
    out = convert(args.ann_file, args.out_dir, args.img_root, args.samples_per_shard,
                  args.prefix, args.all_captions)
    print(f'\n{out["samples"]} samples in {out["shards"]} shards: {out["pattern"]}')
    if out['skipped']:
        print(f'{len(out["skipped"])} images skipped:')
        for s in out['skipped']:
            print('  ' + s)
    return out


if __name__ == '__main__':
    main()
