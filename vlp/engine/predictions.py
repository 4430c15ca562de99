"""``tools/test.py --out FILE / --show-dir DIR``: the predictions of a test run, with the
sample ids, as JSON, and pictures of a sample of them.

:class:`DumpPredictions` is a metric added beside the config's own: it keeps, per sample,
the metadata the dataset gives (``image_id``, ``img_path``, ``question_id``, ``question``,
reference captions ``text``, ``answers``, ``label``, ...) and the model's predictions:
``pred_caption``, ``pred_answer``, the top-k classes of ``logits`` (zero-shot and
classification), and, for retrieval, the ranking by the features' cosine similarity (the
top-k texts of each image and the top-k images of each text; an ITM re-ranking metric
re-scores its candidates itself, so its recalls can differ from this ranking). It reports
no metric. Drawn with :mod:`vlp.visualization`.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric

from vlp.registry import METRICS

#: metadata keys never copied (tensors of the inputs, internal keys)
_SKIP = ('image', 'images', 'input_ids', 'attention_mask', 'image_feat', 'text_feat',
         'image_embeds', 'text_embeds', 'text_mask', 'logits')


def _jsonable(value, depth: int = 0):
    """``value`` as JSON data, or ``None`` when it is not small plain data."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else (
            value.tolist() if value.numel() <= 16 and depth == 0 else None)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)) and depth < 2 and len(value) <= 64:
        out = [_jsonable(v, depth + 1) for v in value]
        return None if any(o is None and v is not None for o, v in zip(out, value)) else out
    return None


@METRICS.register_module()
class DumpPredictions(BaseMetric):
    """Collect the predictions; on the main process write them to ``out_file`` (JSON:
    ``{"predictions": [...], "texts": [...]}``) and draw ``num_show`` of them into
    ``show_dir``.

    Args:
        out_file: the JSON file (``None``: not written).
        show_dir: the folder of the pictures (``None``: none drawn).
        num_show: samples drawn (spread evenly over the test set).
        topk: classes / texts / images kept per prediction.
    """
    default_prefix = 'dump'

    def __init__(self, out_file: Optional[str] = None, show_dir: Optional[str] = None,
                 num_show: int = 16, topk: int = 5, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.out_file, self.show_dir = out_file, show_dir
        self.num_show, self.topk = int(num_show), int(topk)
        self._thumbs = 0  # thumbnails kept of samples without an image file

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        pixels = _batch_images(data_batch)
        for i, sample in enumerate(data_samples):
            rec = {}
            for k, v in sample.items():
                if k in _SKIP or k.startswith('_'):
                    continue
                j = _jsonable(v)
                if j is not None:
                    rec[k] = j
            logits = sample.get('logits')
            if isinstance(logits, torch.Tensor) and logits.dim() == 1:
                probs = logits.detach().float().softmax(-1).cpu()
                top = probs.topk(min(self.topk, probs.numel()))
                rec['pred_label'] = int(top.indices[0])
                rec['top_classes'] = [[int(i), round(float(p), 6)]
                                      for p, i in zip(top.values, top.indices)]
            feats = {}
            for k in ('image_feat', 'text_feat'):
                if isinstance(sample.get(k), torch.Tensor):
                    feats[k] = sample[k].detach().float().cpu()
            if (self.show_dir and not rec.get('img_path') and pixels is not None
                    and i < len(pixels) and self._thumbs < self.num_show):
                feats['thumb'] = _thumbnail(pixels[i])  # in-memory data: no file to read
                self._thumbs += 1
            self.results.append(dict(record=rec, **feats))

    # -- retrieval -----------------------------------------------------------------------------
    def _rank(self, results: List[dict], records: List[dict]) -> Optional[List[str]]:
        """Top-k texts per image and top-k images per text (cosine similarity); returns
        the texts (every image's captions in order) or ``None`` without features."""
        if not all('image_feat' in r and 'text_feat' in r for r in results):
            return None
        image_feat = [r['image_feat'] for r in results]
        text_feat = [r['text_feat'].reshape(-1, r['text_feat'].shape[-1]) for r in results]
        if len({f.shape for f in image_feat}) != 1:
            return None
        img = torch.stack(image_feat)  # (N, D) or (N, Q, D)
        txt = torch.cat(text_feat)  # (T, D)
        if img.shape[-1] != txt.shape[-1]:
            return None
        sim = (torch.einsum('iqd,td->itq', img, txt).amax(-1) if img.dim() == 3
               else img @ txt.t())  # (N, T)
        texts: List[str] = []
        for rec, t in zip(records, text_feat):
            caps = rec.get('text') if isinstance(rec.get('text'), list) else (
                [rec['text']] if isinstance(rec.get('text'), str) else [])
            texts += [caps[i] if i < len(caps) else '' for i in range(t.shape[0])]
        k_t, k_i = min(self.topk, sim.shape[1]), min(self.topk, sim.shape[0])
        top_t = sim.topk(k_t, dim=1)
        top_i = sim.t().topk(k_i, dim=1)
        start = 0
        for n, (rec, t) in enumerate(zip(records, text_feat)):
            rec['top_texts'] = [[int(j), round(float(s), 6)]
                                for s, j in zip(top_t.values[n], top_t.indices[n])]
            rec['text_indices'] = list(range(start, start + t.shape[0]))
            rec['top_images_of_texts'] = [
                [[int(j), round(float(s), 6)] for s, j in zip(top_i.values[q], top_i.indices[q])]
                for q in range(start, start + t.shape[0])]
            start += t.shape[0]
        return texts

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        records = [dict(r['record']) for r in results]
        texts = self._rank(results, records)
        payload = dict(predictions=records)
        if texts is not None:
            payload['texts'] = texts
        classes = (self.dataset_meta or {}).get('classes') or \
            (self.dataset_meta or {}).get('class_names')
        if self.out_file:
            os.makedirs(osp.dirname(osp.abspath(self.out_file)), exist_ok=True)
            with open(self.out_file, 'w') as f:
                json.dump(payload, f, indent=1)
        if self.show_dir:
            draw_predictions(records, texts, classes, self.show_dir, self.num_show,
                             thumbs=[r.get('thumb') for r in results])
        self._thumbs = 0
        return {}


def _lines(rec: dict, texts: Optional[List[str]], classes, k: int = 3) -> List[str]:
    """The text under a sample's picture."""
    out = []
    if 'pred_caption' in rec:
        out.append(f'pred: {rec["pred_caption"]}')
        refs = rec.get('text')
        if isinstance(refs, list) and refs:
            out.append(f'ref: {refs[0]}')
    if 'pred_answer' in rec:
        if rec.get('question'):
            out.append(f'Q: {rec["question"]}')
        out.append(f'A: {rec["pred_answer"]}')
    if 'top_classes' in rec:
        for i, p in rec['top_classes'][:k]:
            name = classes[i] if classes is not None and i < len(classes) else f'class {i}'
            out.append(f'{p:.2f}  {name}')
        if rec.get('label') is not None and classes is not None:
            lab = rec['label']
            if isinstance(lab, int) and lab < len(classes):
                out.append(f'true: {classes[lab]}')
    if 'top_texts' in rec and texts is not None:
        own = set(rec.get('text_indices', []))
        for j, s in rec['top_texts'][:k]:
            mark = '*' if j in own else ' '
            out.append(f'{mark}{s:.2f}  {texts[j]}')
    return out or ['(no prediction to show)']


def _batch_images(data_batch) -> Optional[torch.Tensor]:
    """The batch's pixels as the data pipeline made them (``image`` / ``images``,
    ``[B, 3, H, W]`` or videos ``[B, T, 3, H, W]``), or ``None``."""
    if not isinstance(data_batch, dict):
        return None
    for where in (data_batch, data_batch.get('inputs')):
        if isinstance(where, dict):
            for key in ('image', 'images'):
                x = where.get(key)
                if isinstance(x, torch.Tensor) and x.dim() in (4, 5):
                    return x
    return None


def _thumbnail(x: torch.Tensor, size: int = 128) -> torch.Tensor:
    """A ``uint8 [3, h, w]`` copy (at most ``size`` pixels a side) of an image ``[3, H, W]``
    (a video's middle frame; an NLVR2 pair's first image) of uint8 or float pixels (0-1,
    0-255 or normalised: rescaled to its range)."""
    x = x.detach().cpu()
    while x.dim() > 3:
        x = x[x.shape[0] // 2]
    x = x.float()
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 255:
        x = (x - lo) / max(hi - lo, 1e-6) * 255
    elif hi <= 1:
        x = x * 255
    scale = size / max(x.shape[-2:])
    if scale < 1:
        x = torch.nn.functional.interpolate(
            x[None], size=(max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale))),
            mode='bilinear', align_corners=False)[0]
    return x.round().clamp(0, 255).to(torch.uint8)


def draw_predictions(records: List[dict], texts: Optional[List[str]], classes,
                     show_dir: str, num_show: int = 16,
                     thumbs: Optional[List[Optional[torch.Tensor]]] = None) -> List[str]:
    """Pictures of ``num_show`` records spread over the test set (images with their
    predictions under them; retrieval: ``*`` marks a correct caption), as
    ``show_dir/predictions_NNN.png`` (8 samples a file). A record's image is its
    ``img_path``, else its thumbnail in ``thumbs`` (data made in memory). Returns the
    files."""
    from PIL import Image

    from vlp.visualization import draw_captions, image_from_path, text_height
    thumbs = thumbs or [None] * len(records)
    shown = [(r, t) for r, t in zip(records, thumbs) if r.get('img_path') or t is not None]
    if not shown:
        from mmengine.logging import print_log
        print_log(f'--show-dir {show_dir}: no sample has an img_path or pixels in its batch; '
                  'nothing drawn', logger='current', level=30)
        return []
    step = max(1, len(shown) // max(1, num_show))
    shown = shown[::step][:num_show]
    files = []
    for start in range(0, len(shown), 8):
        chunk = [r for r, _ in shown[start:start + 8]]
        images = [image_from_path(r['img_path']) if r.get('img_path') else
                  Image.fromarray(t.permute(1, 2, 0).numpy())
                  for r, t in shown[start:start + 8]]
        lines = [_lines(r, texts, classes) for r in chunk]
        out = osp.join(show_dir, f'predictions_{start // 8:03d}.png')
        files.append(draw_captions(images, lines, out, lines=text_height(lines)))
    return files
