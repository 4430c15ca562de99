"""A folder of images and a captions file -> the Karpathy / BLIP JSON splits vlp's configs read.

    python tools/data/make_annotations.py --images data/my_data/images \\
        --captions data/my_data/captions.csv --out data/my_data/annotations [--val 0.1] [--test 0.1]

The captions file is a CSV / TSV with a header (an image column: ``image``, ``filepath``,
``file_name`` or ``--image-col``; a caption column: ``caption``, ``text``, ``title`` or
``--caption-col``; an image may have several rows), a JSON list of ``{"image", "caption"}``
entries (``caption`` a string or a list), a JSON object ``{image: caption or [captions]}``, or
JSON lines. Image paths are relative to ``--images``.

Writes, split by image (never one image's captions in two splits; ``--seed`` fixes the
draw):

- ``train.json``: one entry per caption, ``{"image", "caption", "image_id"}`` (ALBEF / BLIP's
  ``coco_karpathy_train.json``);
- ``val.json``, ``test.json``: one entry per image, ``{"image", "caption": [...]}`` (their
  ``coco_karpathy_val.json``), for retrieval and caption evaluation.

Images that are missing or cannot be decoded, and empty captions, are left out and listed
(with the first few names); nothing is copied. The paths it prints go into a config's
``data_root`` / ``ann_file`` / ``img_prefix`` (docs/own_data.md).
"""
import argparse
import csv
import json
import os
import os.path as osp
import random
import sys
from collections import OrderedDict
from typing import Dict, List

IMAGE_COLS = ('image', 'filepath', 'file_name', 'filename', 'path', 'img')
CAPTION_COLS = ('caption', 'text', 'title', 'captions')


def read_captions(path: str, image_col=None, caption_col=None) -> Dict[str, List[str]]:
    """{image: [captions]} in file order."""
    out: Dict[str, List[str]] = OrderedDict()

    def add(img, caps):
        caps = caps if isinstance(caps, list) else [caps]
        out.setdefault(str(img), []).extend(c for c in caps if isinstance(c, str))

    if path.endswith(('.csv', '.tsv')):
        with open(path, newline='', encoding='utf-8') as f:
            rows = csv.DictReader(f, delimiter='\t' if path.endswith('.tsv') else ',')
            cols = rows.fieldnames or []
            ic = image_col or next((c for c in IMAGE_COLS if c in cols), None)
            cc = caption_col or next((c for c in CAPTION_COLS if c in cols), None)
            if ic not in cols or cc not in cols:
                raise SystemExit(f'{path}: columns {cols}; name the image and caption columns '
                                 'with --image-col / --caption-col')
            for row in rows:
                add(row[ic], row[cc])
    elif path.endswith('.jsonl'):
        with open(path, encoding='utf-8') as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    e = json.loads(line)
                    add(e[image_col or 'image'], e[caption_col or 'caption'])
    else:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        if isinstance(data, dict):
            for img, caps in data.items():
                add(img, caps)
        elif isinstance(data, list):
            for e in data:
                add(e[image_col or 'image'], e[caption_col or 'caption'])
        else:
            raise SystemExit(f'{path}: a JSON list or object, got {type(data).__name__}')
    return out


def _readable(path: str) -> bool:
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder failure: leave the image out
        return False


def make_splits(images: str, captions: Dict[str, List[str]], val: float, test: float,
                seed: int = 0):
    """(splits {name: entries}, problems [(image, why)])."""
    problems, kept = [], []
    for img, caps in captions.items():
        caps = [' '.join(c.split()) for c in caps if c and c.strip()]
        if not caps:
            problems.append((img, 'no non-empty caption'))
        elif not osp.isfile(osp.join(images, img)):
            problems.append((img, 'file not found'))
        elif not _readable(osp.join(images, img)):
            problems.append((img, 'not a readable image'))
        else:
            kept.append((img, caps))
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    n_val, n_test = int(round(val * len(kept))), int(round(test * len(kept)))
    if kept and (val > 0 and n_val == 0):
        n_val = 1
    if kept and (test > 0 and n_test == 0):
        n_test = 1
    val_ids = set(order[:n_val])
    test_ids = set(order[n_val:n_val + n_test])
    splits = {'train': [], 'val': [], 'test': []}
    for i, (img, caps) in enumerate(kept):
        if i in val_ids:
            splits['val'].append({'image': img, 'caption': caps})
        elif i in test_ids:
            splits['test'].append({'image': img, 'caption': caps})
        else:
            image_id = len({e['image'] for e in splits['train']})
            splits['train'] += [{'image': img, 'caption': c, 'image_id': image_id} for c in caps]
    return splits, problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', required=True, help='the folder the image paths are relative to')
    p.add_argument('--captions', required=True, help='CSV / TSV / JSON / JSONL captions file')
    p.add_argument('--out', required=True, help='folder for train.json, val.json, test.json')
    p.add_argument('--val', type=float, default=0.05, help='share of images for validation')
    p.add_argument('--test', type=float, default=0.05, help='share of images for test')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--image-col')
    p.add_argument('--caption-col')
    args = p.parse_args(argv)
    captions = read_captions(args.captions, args.image_col, args.caption_col)
    splits, problems = make_splits(args.images, captions, args.val, args.test, args.seed)
    os.makedirs(args.out, exist_ok=True)
    for name, entries in splits.items():
        with open(osp.join(args.out, f'{name}.json'), 'w', encoding='utf-8') as f:
            json.dump(entries, f, ensure_ascii=False)
    n_img = {k: len({e['image'] for e in v}) for k, v in splits.items()}
    print(f'{len(captions)} images in {args.captions}: train {n_img["train"]} images '
          f'({len(splits["train"])} captions), val {n_img["val"]}, test {n_img["test"]}; '
          f'left out {len(problems)}' + (':' if problems else ''))
    for img, why in problems[:10]:
        print(f'  {img}: {why}')
    if len(problems) > 10:
        print(f'  ... and {len(problems) - 10} more')
    print(f'wrote {args.out}/train.json, val.json, test.json')
    return 0 if splits['train'] else 1


if __name__ == '__main__':
    sys.exit(main())
