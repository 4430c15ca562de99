"""CapFilt (BLIP, Li et al. 2022, Sec. 3.3): bootstrap a noisy web image-text dataset.

The **captioner** (a BLIP with a decoder, fine-tuned for captioning) writes
``--num-captions`` synthetic captions per image by nucleus sampling; the **filter** (a BLIP
with an ITM head, fine-tuned for image-text matching) scores every web caption and every
synthetic caption against its image, and a caption is kept when its ITM match
probability ``softmax(itm_logits)[:, 1] >= --threshold`` (0.5: BLIP's rule, "the ITM head
predicts it as unmatched" otherwise).

    python tools/capfilt.py ANN_FILE OUT_FILE --captioner CFG [CKPT] --filter CFG [CKPT] \
        --img-root DIR [--threshold 0.5] [--num-captions 1] [--top-p 0.9] [--top-k 50] \
        [--repetition-penalty 1.1] [--max-length 30] [--min-length 5] \
        [--prompt 'a picture of '] [--batch-size 32] [--num-workers 0] \
        [--device cpu|cuda] [--seed 0] [--keep-empty] [--no-synthetic] [--no-filter-web]

``ANN_FILE`` is a BLIP/ALBEF JSON annotation file ``[{"image": rel_path, "caption": str or
[str]}, ...]``; ``OUT_FILE`` gets the same format, one entry per image with ``caption`` the
list of kept captions (web ones first, in their order, then the synthetic ones; the web
captions unchanged), every other key of the entry preserved. Images left with no caption
are dropped unless ``--keep-empty``. Both files are written atomically; the summary (image
and caption counts) is printed and saved as ``OUT_FILE.summary.json``.

Images are read with ``LoadImage`` and prepared by each model's test pipeline
(``test_dataloader.dataset.pipeline`` of its config without the loading and text steps;
a ``Resize`` to the image encoder's input size is added when the pipeline has none). When
the filter's pipeline cleans captions (``CleanCaption``), the filter scores the cleaned
text; the output keeps the original. A missing or unreadable image is an error (checked
before any model runs, for missing files).

Sampling: ``do_sample=True, num_beams=1`` with ``top_p`` (0.9), ``top_k`` (50) and
``repetition_penalty`` (1.1) as BLIP's ``generate(sample=True)`` (its HF call leaves
``top_k`` at the transformers default 50 and sets the penalty to 1.1); lengths count
``[DEC]`` and the prompt. The prompt defaults to the captioner's own ``prompt``
(BLIP's captioner: ``'a picture of '``); it is not part of the captions. One
``torch.Generator`` seeded with ``--seed`` drives all draws, batch after batch, so a
result is reproducible for a given seed *and* batch size. ``--captioner`` and ``--filter``
may name the same config and checkpoint (then one model is built); ``--no-synthetic``
only filters the web captions (no captioner needed), ``--no-filter-web`` keeps every web
caption unscored.

In-process use (tests, notebooks)::

    summary = run_capfilt('web.json', 'clean.json', captioner, filter_model, 'images/')
    entries, summary, details = capfilt(annotations, captioner, filter_model, 'images/')
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from mmengine.utils import ProgressBar  # noqa: E402

from vlp.datasets.transforms import LoadImage  # noqa: E402
from vlp.datasets.transforms.text import pre_caption  # noqa: E402

# pipeline steps that do not touch the image (dropped from the image pipeline)
_NON_IMAGE_STEPS = ('LoadImage', 'Tokenize', 'CleanCaption')
# steps that set the image size (when a pipeline has none, a Resize is added)
_SIZE_STEPS = ('Resize', 'CenterCrop', 'RandomResizedCrop')

__all__ = ['load_annotations', 'check_images', 'check_captioner', 'check_filter',
           'image_transform_for', 'text_transform_for', 'generate_captions',
           'itm_match_probs', 'capfilt', 'run_capfilt', 'dump_json_atomic', 'parse_args',
           'main']


# ------------------------------------------------------------------------------ models
def check_captioner(model: nn.Module) -> nn.Module:
    """``model`` if it can caption (a BLIP-style ``generate`` and a decoder), else a
    ``ValueError`` saying why."""
    if not callable(getattr(model, 'generate', None)):
        raise ValueError(f'the captioner ({type(model).__name__}) has no generate(): '
                         'CapFilt needs a BLIP captioner')
    if getattr(model, 'decoder', 'missing') is None or getattr(model, 'lm_head', 1) is None:
        raise ValueError(f'the captioner ({type(model).__name__}) has no decoder '
                         '(lm_head=None): give a BLIP config with an lm_head (a captioning '
                         'model)')
    if getattr(model, 'tokenizer', None) is None:
        raise ValueError('the captioner has no tokenizer')
    return model


def check_filter(model: nn.Module) -> nn.Module:
    """``model`` if it can score image-text matching (``itm_logits`` and an ITM head)."""
    if not callable(getattr(model, 'itm_logits', None)):
        raise ValueError(f'the filter ({type(model).__name__}) has no itm_logits(): '
                         'CapFilt needs a BLIP filter with an ITM head')
    if getattr(model, 'itm_head', None) is None:
        raise ValueError(f'the filter ({type(model).__name__}) has no ITM head '
                         '(itm_head=None): give a BLIP config with an itm_head')
    if getattr(model, 'tokenizer', None) is None:
        raise ValueError('the filter has no tokenizer')
    return model


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device('cpu')


def _image_size(model: nn.Module) -> Optional[Tuple[int, int]]:
    """Input size of the image encoder (timm: ``patch_embed.img_size``)."""
    tower = getattr(model, 'vision', None)
    timm_model = getattr(tower, 'model', tower)
    size = getattr(getattr(timm_model, 'patch_embed', None), 'img_size', None)
    if size is None:
        input_size = (getattr(timm_model, 'pretrained_cfg', None) or {}).get('input_size')
        size = tuple(input_size[1:]) if input_size else None
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _pipeline_of(model: nn.Module) -> List[dict]:
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        return []
    try:
        return list(cfg.test_dataloader.dataset.pipeline)
    except (AttributeError, KeyError, TypeError):
        return []


def image_transform_for(model: nn.Module) -> Callable[[object], torch.Tensor]:
    """A callable ``PIL image -> uint8 [3, H, W]``: the model's test pipeline
    (``model.cfg``, as :func:`vlp.apis.init_model` sets it) without loading and text
    steps, with a ``Resize`` to the encoder's input size if it has no resizing step,
    ending with ``ToTensor``."""
    from vlp.registry import TRANSFORMS
    steps = [dict(s) for s in _pipeline_of(model) if s.get('type') not in _NON_IMAGE_STEPS]
    if not any(s.get('type') in _SIZE_STEPS for s in steps):
        size = _image_size(model)
        if size is not None:
            steps.insert(0, dict(type='Resize', size=size, interpolation='bicubic'))
    if not steps or steps[-1].get('type') != 'ToTensor':
        steps = [s for s in steps if s.get('type') != 'ToTensor'] + [dict(type='ToTensor')]
    transforms = [TRANSFORMS.build(s) for s in steps]

    def transform(img) -> torch.Tensor:
        results = dict(img=img)
        for t in transforms:
            results = t(results)
        return results['image']

    transform.steps = transforms
    return transform


def text_transform_for(model: nn.Module) -> Optional[Callable[[str], str]]:
    """The caption cleaning of the model's test pipeline (``CleanCaption``), or None."""
    for s in _pipeline_of(model):
        if s.get('type') == 'CleanCaption':
            max_words, style = s.get('max_words', 30), s.get('style', 'blip')
            return lambda text: pre_caption(text, max_words=max_words, style=style)
    return None


# ------------------------------------------------------------------------- annotations
def load_annotations(ann: Union[str, Sequence[dict]]) -> List[dict]:
    """BLIP/ALBEF JSON annotations (a path or the loaded list), checked: each entry a
    dict with ``image`` and ``caption`` (a str or a list of str)."""
    if isinstance(ann, (str, os.PathLike)):
        with open(ann, encoding='utf-8') as f:
            data = json.load(f)
        name = str(ann)
    else:
        data, name = ann, 'annotations'
    if not isinstance(data, list):
        raise ValueError(f'{name}: expected a JSON list of {{"image", "caption"}} entries, '
                         f'got {type(data).__name__}')
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or 'image' not in entry or 'caption' not in entry:
            raise ValueError(f'{name}: entry {i} is not a dict with "image" and "caption": '
                             f'{str(entry)[:200]}')
        cap = entry['caption']
        if not (isinstance(cap, str) or (isinstance(cap, list)
                                         and all(isinstance(c, str) for c in cap))):
            raise ValueError(f'{name}: entry {i} ({entry["image"]}): "caption" must be a str '
                             'or a list of str')
    return list(data)


def _captions(entry: dict) -> List[str]:
    cap = entry['caption']
    return [cap] if isinstance(cap, str) else list(cap)


def _image_path(img_root: Optional[str], rel: str) -> str:
    return osp.join(img_root, rel) if img_root else rel


def check_images(entries: Sequence[dict], img_root: Optional[str]) -> None:
    """Raise ``FileNotFoundError`` naming the missing images (local paths only)."""
    paths = [_image_path(img_root, e['image']) for e in entries]
    missing = [p for p in paths if '://' not in p and not osp.isfile(p)]
    if missing:
        shown = '\n  '.join(missing[:10])
        more = f'\n  ... and {len(missing) - 10} more' if len(missing) > 10 else ''
        raise FileNotFoundError(f'{len(missing)} of {len(paths)} images not found (img_root='
                                f'{img_root!r}):\n  {shown}{more}')


class _Images(torch.utils.data.Dataset):
    """The images of the entries, each through every model's transform."""

    def __init__(self, entries: Sequence[dict], img_root: Optional[str],
                 transforms: Sequence[Callable]):
        self.paths = [_image_path(img_root, e['image']) for e in entries]
        self.transforms = list(transforms)
        self.loader = LoadImage(key='img_path')

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        results = self.loader(dict(img_path=self.paths[i]))
        if results is None:
            raise RuntimeError(f'cannot read image {self.paths[i]} (see the warning above)')
        return dict(index=i, images=[t(results['img']) for t in self.transforms])


def _collate(samples: List[dict]) -> dict:
    n = len(samples[0]['images'])
    return dict(index=[s['index'] for s in samples],
                images=[torch.stack([s['images'][k] for s in samples]) for k in range(n)])


# ----------------------------------------------------------------------- the two models
def _normalise(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> the model's normalised float images on its device."""
    images = model.data_preprocessor(dict(image=images))['inputs']['images']
    return images.to(_device(model))


@torch.no_grad()
def generate_captions(model: nn.Module, images: torch.Tensor, num_captions: int = 1,
                      generator: Optional[torch.Generator] = None,
                      prompt: Optional[str] = None, **decoding) -> List[List[str]]:
    """``num_captions`` sampled captions of each uint8 image ``[B, 3, H, W]``: one call of
    ``model.generate(images, prompt, do_sample=True, num_beams=1,
    num_return_sequences=num_captions, generator=generator, **decoding)``."""
    opts = dict(do_sample=True, num_beams=1)
    opts.update(decoding)
    caps = model.generate(_normalise(model, images), prompt=prompt,
                          num_return_sequences=num_captions, generator=generator, **opts)
    return [caps[b * num_captions:(b + 1) * num_captions] for b in range(images.shape[0])]


@torch.no_grad()
def itm_match_probs(model: nn.Module, images: torch.Tensor, texts: Sequence[Sequence[str]],
                    batch_size: int = 32) -> List[List[float]]:
    """ITM match probabilities ``softmax(itm_logits)[:, 1]`` of every text of
    ``texts[b]`` with uint8 image ``images[b]``; pairs go through the fusion encoder in
    chunks of ``batch_size``."""
    pairs = [(b, t) for b, ts in enumerate(texts) for t in ts]
    out: List[List[float]] = [[] for _ in texts]
    if not pairs:
        return out
    image_embeds = model.vision(_normalise(model, images))['image_embeds']  # (B, N, C)
    device = image_embeds.device
    probs = []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        enc = model.tokenizer([t for _, t in chunk])
        rows = torch.tensor([b for b, _ in chunk], device=device)
        logits = model.itm_logits(image_embeds[rows], enc['input_ids'].to(device),
                                  enc['attention_mask'].to(device))  # (n, 2)
        probs.extend(logits.float().softmax(dim=-1)[:, 1].tolist())
    for (b, _), p in zip(pairs, probs):
        out[b].append(p)
    return out


# --------------------------------------------------------------------------- CapFilt
def capfilt(annotations: Union[str, Sequence[dict]], captioner: Optional[nn.Module],
            filter_model: Optional[nn.Module], img_root: Optional[str] = None, *,
            threshold: float = 0.5, num_captions: int = 1, top_p: float = 0.9,
            top_k: int = 50, repetition_penalty: float = 1.1, max_length: int = 30,
            min_length: int = 5, prompt: Optional[str] = None, batch_size: int = 32,
            num_workers: int = 0, seed: int = 0, keep_empty: bool = False,
            synthetic: bool = True, filter_web: bool = True, progress: bool = True
            ) -> Tuple[List[dict], dict, List[dict]]:
    """Run CapFilt on ``annotations`` (a path or the loaded list).

    Returns:
        ``(entries, summary, details)``: the cleaned entries (input format, captions a
        list), the summary counts, and per input image ``dict(image, web, web_probs,
        synthetic, synthetic_probs)`` (``web_probs`` None without ``filter_web``).
    """
    entries = load_annotations(annotations)
    if not synthetic and not filter_web:
        raise ValueError('nothing to do: --no-synthetic and --no-filter-web')
    if synthetic:
        if captioner is None:
            raise ValueError('synthetic captions need a captioner (or pass synthetic=False)')
        check_captioner(captioner)
        if num_captions < 1:
            raise ValueError(f'num_captions must be >= 1, got {num_captions}')
    if filter_model is None:
        raise ValueError('CapFilt needs a filter (a BLIP with an ITM head)')
    check_filter(filter_model)
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    check_images(entries, img_root)

    models = ([captioner] if synthetic else []) + [filter_model]
    for m in models:
        m.eval()
    # one image transform per distinct model (the same model built once: one transform)
    transforms, slot = [], {}
    for m in models:
        if id(m) not in slot:
            slot[id(m)] = len(transforms)
            transforms.append(image_transform_for(m))
    clean = text_transform_for(filter_model) or (lambda t: t)
    loader = torch.utils.data.DataLoader(_Images(entries, img_root, transforms),
                                         batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=_collate)
    generator = None
    if synthetic:
        generator = torch.Generator(device=_device(captioner)).manual_seed(int(seed))
    decoding = dict(top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                    max_length=max_length, min_length=min_length)

    details: List[dict] = [None] * len(entries)
    bar = ProgressBar(len(entries), file=sys.stderr) if progress and entries else None
    with torch.no_grad():
        for batch in loader:
            idx = batch['index']
            web = [_captions(entries[i]) for i in idx]
            syn = [[] for _ in idx]
            if synthetic:
                syn = generate_captions(captioner, batch['images'][slot[id(captioner)]],
                                        num_captions, generator=generator, prompt=prompt,
                                        **decoding)
            scored = [([clean(t) for t in w] if filter_web else []) + [clean(t) for t in s]
                      for w, s in zip(web, syn)]
            probs = itm_match_probs(filter_model, batch['images'][slot[id(filter_model)]],
                                    scored, batch_size=batch_size)
            for k, i in enumerate(idx):
                nw = len(web[k]) if filter_web else 0
                details[i] = dict(image=entries[i]['image'], web=web[k],
                                  web_probs=probs[k][:nw] if filter_web else None,
                                  synthetic=syn[k], synthetic_probs=probs[k][nw:])
            if bar is not None:
                bar.update(len(idx))
    if bar is not None:
        sys.stderr.write('\n')

    out, counts = [], dict(web_kept=0, web_removed=0, synthetic_kept=0,
                           synthetic_removed=0)
    for entry, d in zip(entries, details):
        web_keep = (list(d['web']) if d['web_probs'] is None else
                    [t for t, p in zip(d['web'], d['web_probs']) if p >= threshold])
        syn_keep = [t for t, p in zip(d['synthetic'], d['synthetic_probs']) if p >= threshold]
        counts['web_kept'] += len(web_keep)
        counts['web_removed'] += len(d['web']) - len(web_keep)
        counts['synthetic_kept'] += len(syn_keep)
        counts['synthetic_removed'] += len(d['synthetic']) - len(syn_keep)
        kept = web_keep + syn_keep
        if kept or keep_empty:
            out.append(dict(entry, caption=kept))
    summary = dict(images=len(entries), images_kept=len(out),
                   images_dropped=len(entries) - len(out),
                   web_captions=counts['web_kept'] + counts['web_removed'],
                   synthetic_captions=counts['synthetic_kept'] + counts['synthetic_removed'],
                   **counts, total_kept=counts['web_kept'] + counts['synthetic_kept'],
                   threshold=threshold, num_captions=num_captions if synthetic else 0,
                   filter_web=filter_web, synthetic=synthetic, seed=seed,
                   batch_size=batch_size)
    if synthetic:
        summary['decoding'] = dict(decoding, do_sample=True, num_beams=1,
                                   prompt=captioner.prompt if prompt is None else prompt)
    return out, summary, details


def dump_json_atomic(obj, path: str, indent: Optional[int] = None) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file in the same folder and
    ``os.replace`` (readers never see a partial file)."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(obj, f, ensure_ascii=False, indent=indent)
            f.write('\n')
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def run_capfilt(ann: Union[str, Sequence[dict]], out_file: str,
                captioner: Optional[nn.Module], filter_model: Optional[nn.Module],
                img_root: Optional[str] = None, ann_file: Optional[str] = None,
                **kwargs) -> dict:
    """:func:`capfilt`, then write ``out_file`` and ``out_file.summary.json`` (atomically)
    and print the summary. ``ann_file`` names the input in the summary when ``ann`` is a
    loaded list. Returns the summary."""
    entries, summary, _ = capfilt(ann, captioner, filter_model, img_root, **kwargs)
    dump_json_atomic(entries, out_file)
    summary = dict(summary, ann_file=ann if isinstance(ann, str) else ann_file,
                   out_file=out_file)
    dump_json_atomic(summary, f'{out_file}.summary.json', indent=2)
    print(json.dumps(summary, indent=2))
    return summary


# ------------------------------------------------------------------------------- CLI
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="BLIP's CapFilt: caption web images with a captioner and keep the web "
                    'and synthetic captions an ITM filter accepts')
    parser.add_argument('ann_file', help='input annotation JSON ([{"image", "caption"}])')
    parser.add_argument('out_file', help='output annotation JSON (same format)')
    parser.add_argument('--captioner', nargs='+', metavar=('CONFIG', 'CHECKPOINT'),
                        help='captioner config [checkpoint] (a BLIP with a decoder)')
    parser.add_argument('--filter', nargs='+', metavar=('CONFIG', 'CHECKPOINT'),
                        required=True, help='filter config [checkpoint] (a BLIP with ITM)')
    parser.add_argument('--img-root', default='', help='folder the image paths are under')
    parser.add_argument('--threshold', type=float, default=0.5,
                        help='keep a caption when its ITM match probability is >= this')
    parser.add_argument('--num-captions', type=int, default=1,
                        help='synthetic captions sampled per image')
    parser.add_argument('--top-p', type=float, default=0.9, help='nucleus sampling mass')
    parser.add_argument('--top-k', type=int, default=50,
                        help='top-k before top-p (0: off; BLIP: 50, the HF default)')
    parser.add_argument('--repetition-penalty', type=float, default=1.1,
                        help="repetition penalty (BLIP's sampling: 1.1)")
    parser.add_argument('--max-length', type=int, default=30,
                        help='max tokens, [DEC] and prompt included')
    parser.add_argument('--min-length', type=int, default=5,
                        help='min tokens, [DEC] and prompt included')
    parser.add_argument('--prompt', default=None,
                        help="caption prompt (default: the captioner's own, BLIP: "
                             "'a picture of ')")
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--num-workers', type=int, default=0, help='image loading workers')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--keep-empty', action='store_true',
                        help='keep images with no caption left (caption: [])')
    parser.add_argument('--no-synthetic', action='store_true',
                        help='no captioner: only filter the web captions')
    parser.add_argument('--no-filter-web', action='store_true',
                        help='keep every web caption (filter only the synthetic ones)')
    args = parser.parse_args(argv)
    for name in ('captioner', 'filter'):
        value = getattr(args, name)
        if value is not None and len(value) > 2:
            parser.error(f'--{name} takes CONFIG [CHECKPOINT], got {value}')
    if args.captioner is None and not args.no_synthetic:
        parser.error('--captioner is required unless --no-synthetic')
    if args.no_synthetic and args.no_filter_web:
        parser.error('--no-synthetic with --no-filter-web leaves nothing to do')
    return args


def _spec(value: Optional[List[str]]) -> Optional[Tuple[str, Optional[str]]]:
    if value is None:
        return None
    return (osp.abspath(value[0]), osp.abspath(value[1]) if len(value) > 1 else None)


def main(argv=None) -> dict:
    args = parse_args(argv)
    # annotations and image files first: no model is built for a run that cannot finish
    entries = load_annotations(args.ann_file)
    check_images(entries, args.img_root or None)
    from vlp.apis import init_model
    import vlp.models  # noqa: F401  (registers the parts)
    cap_spec = None if args.no_synthetic else _spec(args.captioner)
    filt_spec = _spec(args.filter)
    filter_model = check_filter(init_model(*filt_spec, device=args.device))
    captioner = None
    if cap_spec is not None:
        captioner = filter_model if cap_spec == filt_spec else \
            init_model(*cap_spec, device=args.device)
        check_captioner(captioner)
    return run_capfilt(entries, args.out_file, captioner, filter_model,
                       args.img_root or None, ann_file=args.ann_file, threshold=args.threshold,
                       num_captions=args.num_captions, top_p=args.top_p, top_k=args.top_k,
                       repetition_penalty=args.repetition_penalty,
                       max_length=args.max_length, min_length=args.min_length,
                       prompt=args.prompt, batch_size=args.batch_size,
                       num_workers=args.num_workers, seed=args.seed,
                       keep_empty=args.keep_empty, synthetic=not args.no_synthetic,
                       filter_web=not args.no_filter_web)


if __name__ == '__main__':
    main()
