"""Run a model on your own images: captions, answers, image-text matching, retrieval among
given captions and zero-shot classification, as a table on the terminal and as pictures.

Usage::

    python tools/infer.py CONFIG_OR_DIR [CHECKPOINT] --images IMG [IMG ...] [TASK OPTIONS]
        [--out-dir DIR] [--device cpu|cuda] [--batch-size 32] [--topk 3]

- ``CONFIG_OR_DIR``: a config file (with ``CHECKPOINT``, or random weights without), or a
  converter's output directory (its ``config.py`` and ``model.pth``).
- ``--images``: files (images, or videos for the families that read them), folders (every
  image inside) and globs (``'photos/*.jpg'``, quoted).
- The task (``--task``, default ``auto``: from the options given):
  ``caption`` (a caption per image; ``--prompt``, ``--num-beams``, ``--max-length``),
  ``answer`` (``--questions``: one per image, or one for all), ``match`` (``--texts``: the
  image x text scores, ITC and, where the family has one, ITM, as heat maps), ``retrieve``
  (``--texts``: the ``--topk`` best texts for each image), ``zero-shot`` (``--classes``
  names, or ``imagenet`` for open_clip's ImageNet class names; ``--templates``).
  ``auto``: ``answer`` with questions, ``zero-shot`` with classes, ``match`` and
  ``retrieve`` with texts, else ``caption``.

Writes ``DIR/<task>.png`` (default ``DIR``: ``work_dirs/infer``): the images with their
captions / answers / top-k texts or classes under them, and the similarity heat map(s) of
``match``. Everything goes through ``vlp.apis`` (one batched model call per batch).
"""
import argparse
import glob
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff')
TASKS = ('auto', 'caption', 'answer', 'match', 'retrieve', 'zero-shot')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.strip().split('\n\n')[0],
        epilog=__doc__.strip().split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, or a converter\'s output directory')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='weights (any layout init_model reads); none: random weights, '
                             'or the directory\'s model.pth')
    parser.add_argument('--images', nargs='+', required=True,
                        help='image / video files, folders, globs')
    parser.add_argument('--task', choices=TASKS, default='auto', help='what to run')
    parser.add_argument('--texts', nargs='+', help='captions to match / retrieve')
    parser.add_argument('--questions', nargs='+', help='questions (one per image, or one)')
    parser.add_argument('--classes', nargs='+',
                        help='class names for zero-shot classification, or "imagenet"')
    parser.add_argument('--templates', nargs='+',
                        help='prompt templates with "{}" (default: CLIP\'s "a photo of a {}.")')
    parser.add_argument('--prompt', help='caption prompt (the captions continue it)')
    parser.add_argument('--num-beams', type=int, help='beam search width (captions)')
    parser.add_argument('--max-length', type=int, help='longest caption / answer, in tokens')
    parser.add_argument('--topk', type=int, default=3, help='texts / classes shown per image')
    parser.add_argument('--batch-size', type=int, default=32, help='images per model call')
    parser.add_argument('--out-dir', default='work_dirs/infer', help='where the PNGs go')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ...')
    parser.add_argument('--non-strict', action='store_true',
                        help='load a checkpoint that does not fit the config exactly')
    return parser.parse_args(argv)


def expand_images(specs: Sequence[str]) -> List[str]:
    """Files, folders (their images, sorted) and globs -> a list of paths."""
    from vlp.apis import VIDEO_EXTS
    out = []
    for spec in specs:
        if osp.isdir(spec):
            found = sorted(osp.join(spec, f) for f in os.listdir(spec)
                           if f.lower().endswith(IMAGE_EXTS + VIDEO_EXTS))
        elif any(c in spec for c in '*?['):
            found = sorted(glob.glob(spec))
        else:
            found = [spec]
        if not found:
            raise FileNotFoundError(f'--images {spec}: no image found')
        for path in found:
            if not osp.isfile(path):
                raise FileNotFoundError(f'--images: {path} not found')
        out.extend(found)
    return out


def pick_task(args) -> str:
    if args.task != 'auto':
        return args.task
    if args.questions:
        return 'answer'
    if args.classes:
        return 'zero-shot'
    if args.texts:
        return 'match'
    return 'caption'


def _batches(items: List[str], size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run(model, paths: List[str], task: str, args) -> Dict[str, object]:
    """The task's results for every image: ``lines`` (text under each image) and, for
    ``match``, the score matrices."""
    import torch

    from vlp import apis
    lines: List[List[str]] = []
    scores: Dict[str, List] = {}
    questions = list(args.questions or [])
    if task == 'answer':
        if not questions:
            raise SystemExit('infer.py: error: --task answer needs --questions')
        if len(questions) not in (1, len(paths)):
            raise SystemExit(f'infer.py: error: {len(questions)} questions for {len(paths)} '
                             'images: give one per image or one for all')
    if task in ('match', 'retrieve') and not args.texts:
        raise SystemExit(f'infer.py: error: --task {task} needs --texts')
    if task == 'zero-shot' and not args.classes:
        raise SystemExit('infer.py: error: --task zero-shot needs --classes')
    generation = {k: v for k, v in dict(num_beams=args.num_beams,
                                        max_length=args.max_length).items() if v is not None}
    classes = args.classes
    if classes and len(classes) == 1 and classes[0].lower() == 'imagenet':
        classes = 'imagenet'
    for start, batch in zip(range(0, len(paths), args.batch_size),
                            _batches(paths, args.batch_size)):
        if task == 'caption':
            caps = apis.caption(model, batch, prompt=args.prompt, **generation)
            lines += [[c] for c in caps]
        elif task == 'answer':
            qs = questions * len(batch) if len(questions) == 1 else \
                questions[start:start + len(batch)]
            ans = apis.answer(model, batch, qs, **generation)
            lines += [[f'Q: {q}', f'A: {a}'] for q, a in zip(qs, ans)]
        elif task in ('match', 'retrieve'):
            out = apis.match(model, batch, args.texts, itm=task == 'match')
            for key, value in out.items():
                scores.setdefault(key, []).append(value)
            best = out.get('itm', out.get('itc'))
            from vlp.visualization import ranked_lines
            lines += [ranked_lines(args.texts, row, args.topk) for row in best]
        elif task == 'zero-shot':
            probs = apis.zero_shot_classify(model, batch, classes, args.templates)
            names = classes
            if names == 'imagenet':
                from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
                names = list(IMAGENET_CLASSNAMES)
            from vlp.visualization import ranked_lines
            lines += [ranked_lines(names, row, args.topk) for row in probs]
    return dict(lines=lines, scores={k: torch.cat(v) for k, v in scores.items()})


def print_table(paths: List[str], lines: List[List[str]], task: str) -> None:
    width = min(48, max(len(osp.basename(p)) for p in paths))
    print(f'{"image":<{width}}  {task}')
    print('-' * (width + 2 + 60))
    for path, texts in zip(paths, lines):
        name = osp.basename(path)[:width]
        for j, text in enumerate(texts):
            print(f'{name if j == 0 else "":<{width}}  {text}')


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    from vlp import apis
    from vlp.visualization import draw_captions, draw_heatmap, text_height
    paths = expand_images(args.images)
    task = pick_task(args)
    model = apis.init_model(args.config, args.checkpoint, device=args.device,
                            strict=not args.non_strict)
    try:
        result = run(model, paths, task, args)
    except NotImplementedError as err:
        raise SystemExit(f'infer.py: error: {err}')
    print_table(paths, result['lines'], task)
    images = apis.load_images(paths)
    os.makedirs(args.out_dir, exist_ok=True)
    pictures = [draw_captions(images, result['lines'],
                              osp.join(args.out_dir, f'{task.replace("-", "_")}.png'),
                              lines=text_height(result['lines']))]
    if task == 'match':
        for key, title in (('itc', 'ITC: cosine similarity'),
                           ('itc_probs', 'ITC: softmax over the texts'),
                           ('itm', 'ITM: match probability')):
            if key in result['scores']:
                pictures.append(draw_heatmap(images, args.texts, result['scores'][key],
                                             osp.join(args.out_dir, f'match_{key}.png'),
                                             title=title,
                                             image_names=[osp.basename(p) for p in paths]))
    for p in pictures:
        print(f'wrote {p}')
    return dict(task=task, paths=paths, pictures=pictures, **result)


if __name__ == '__main__':
    main()
