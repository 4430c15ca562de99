"""Pictures of inference results a person can look at (``tools/infer.py``,
``tools/test.py --show-dir``): PNG files drawn with PIL (image grids with text under each
image) and matplotlib (similarity heat maps).

- :func:`draw_captions`: each image with lines of text under it (generated captions, the
  answers to questions, the top-k captions of retrieval or classes of zero-shot
  classification with their scores).
- :func:`draw_heatmap`: the image x text score matrix of ``vlp.apis.match``, a thumbnail
  of each image beside its row and the texts under the columns.

The sizes are fixed by the arguments (tiles of ``tile`` pixels, ``lines`` text lines a
tile), so a picture's size is known beforehand: :func:`grid_size`.
"""
import math
import os
import os.path as osp
import textwrap
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['draw_captions', 'draw_heatmap', 'grid_size', 'heatmap_size', 'text_height',
           'ranked_lines', 'image_from_path']

LINE_HEIGHT = 14  # pixels per text line (PIL's default bitmap font is 11 px high)
PAD = 6


def _font():
    from PIL import ImageFont
    return ImageFont.load_default()


def grid_size(num_images: int, tile: int = 256, lines: int = 4, cols: int = 4
              ) -> Tuple[int, int]:
    """``(width, height)`` of :func:`draw_captions`'s picture."""
    cols = max(1, min(cols, num_images))
    rows = math.ceil(num_images / cols)
    return cols * tile, rows * (tile + lines * LINE_HEIGHT + 2 * PAD)


def _fit(img, tile: int):
    """The image scaled to fit ``tile x tile`` (aspect kept), centred on a white square."""
    from PIL import Image
    img = img.convert('RGB')
    scale = min(tile / img.width, tile / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.BICUBIC)
    canvas = Image.new('RGB', (tile, tile), 'white')
    canvas.paste(img, ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return canvas


def _wrap(texts: Sequence[str], width_px: int, lines: int) -> List[str]:
    """Texts wrapped to the tile's width (about 6 px a character), at most ``lines``."""
    chars = max(8, width_px // 6)
    out = []
    for text in texts:
        out.extend(textwrap.wrap(str(text), chars) or [''])
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][:chars - 3] + '...'
    return out


def text_height(texts: Sequence[Sequence[str]], tile: int = 256, most: int = 12) -> int:
    """The text lines a tile needs for the longest of ``texts`` once wrapped to the
    tile's width (at most ``most``), for :func:`draw_captions`'s ``lines``."""
    return max(1, min(most, max(len(_wrap(t, tile - 2 * PAD, 10 ** 6)) for t in texts)))


def draw_captions(images: Sequence, texts: Sequence[Sequence[str]], out_file: str,
                  tile: int = 256, lines: int = 4, cols: int = 4) -> str:
    """Save a grid of ``images`` (PIL), each with its ``texts`` (a list of lines: a
    caption, ``'Q: ... A: ...'``, ``'0.93  a dog on grass'``) under it, as a PNG;
    returns ``out_file``. Size: :func:`grid_size`."""
    from PIL import Image, ImageDraw
    if len(images) != len(texts):
        raise ValueError(f'{len(images)} images but {len(texts)} text lists')
    if not images:
        raise ValueError('no images to draw')
    width, height = grid_size(len(images), tile, lines, cols)
    cols = max(1, min(cols, len(images)))
    cell_h = tile + lines * LINE_HEIGHT + 2 * PAD
    canvas = Image.new('RGB', (width, height), 'white')
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for i, (img, lines_i) in enumerate(zip(images, texts)):
        x, y = (i % cols) * tile, (i // cols) * cell_h
        canvas.paste(_fit(img, tile), (x, y))
        for j, line in enumerate(_wrap(lines_i, tile - 2 * PAD, lines)):
            draw.text((x + PAD, y + tile + PAD + j * LINE_HEIGHT), line, fill='black',
                      font=font)
        draw.rectangle([x, y, x + tile - 1, y + cell_h - 1], outline=(200, 200, 200))
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    canvas.save(out_file, format='PNG')
    return out_file


def heatmap_size(num_images: int, num_texts: int, dpi: int = 100) -> Tuple[int, int]:
    """``(width, height)`` of :func:`draw_heatmap`'s picture."""
    w, h = _heatmap_inches(num_images, num_texts)
    return int(round(w * dpi)), int(round(h * dpi))


def _heatmap_inches(num_images: int, num_texts: int) -> Tuple[float, float]:
    return 2.7 + 1.2 * num_texts, 1.6 + 1.0 * num_images


def draw_heatmap(images: Sequence, texts: Sequence[str], scores, out_file: str,
                 title: str = 'image-text similarity', dpi: int = 100,
                 value_format: str = '{:.2f}',
                 image_names: Optional[Sequence[str]] = None) -> str:
    """Save the ``[num_images, num_texts]`` ``scores`` as a heat map (rows: images, with a
    thumbnail; columns: texts, wrapped under the axis; each cell annotated) to a PNG;
    returns ``out_file``; ``image_names`` label the rows (default ``image 0``, ...). Size:
    :func:`heatmap_size`."""
    import matplotlib
    matplotlib.use('Agg', force=False)
    import matplotlib.pyplot as plt
    scores = np.asarray(scores.detach().cpu() if hasattr(scores, 'detach') else scores,
                        dtype=np.float64)
    n_img, n_txt = len(images), len(texts)
    if scores.shape != (n_img, n_txt):
        raise ValueError(f'scores of shape {scores.shape} for {n_img} images and {n_txt} texts')
    w, h = _heatmap_inches(n_img, n_txt)
    fig = plt.figure(figsize=(w, h), dpi=dpi)
    # fixed axes positions (no tight layout), so the picture's size is the figure's
    left, bottom = 1.5 / w, 0.9 / h
    ax = fig.add_axes([left, bottom, (1.2 * n_txt) / w, (1.0 * n_img) / h])
    im = ax.imshow(scores, cmap='viridis', aspect='auto')
    ax.set_xticks(range(n_txt))
    ax.set_xticklabels(['\n'.join(textwrap.wrap(t, 16)[:4]) for t in texts], fontsize=7)
    ax.set_yticks(range(n_img))
    names = list(image_names) if image_names is not None else [f'image {i}'
                                                                for i in range(n_img)]
    ax.set_yticklabels([str(n) if len(str(n)) <= 18 else str(n)[:15] + '...'
                        for n in names], fontsize=7)
    lo, hi = float(np.nanmin(scores)), float(np.nanmax(scores))
    for i in range(n_img):
        for j in range(n_txt):
            v = scores[i, j]
            light = hi > lo and (v - lo) / (hi - lo) < 0.5
            ax.text(j, i, value_format.format(v), ha='center', va='center', fontsize=8,
                    color='white' if light else 'black')
    ax.set_title(title, fontsize=9)
    for i, img in enumerate(images):  # thumbnails left of the rows
        thumb = _fit(img, 64)
        y = bottom + (n_img - 1 - i + 0.1) * 1.0 / h
        tax = fig.add_axes([0.05 / w, y, 0.8 / w, 0.8 / h])
        tax.imshow(np.asarray(thumb))
        tax.axis('off')
    cax = fig.add_axes([(left * w + 1.2 * n_txt + 0.15) / w, bottom, 0.15 / w,
                        (1.0 * n_img) / h])
    fig.colorbar(im, cax=cax)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=dpi, format='png')
    plt.close(fig)
    return out_file


def ranked_lines(names: Sequence[str], scores, k: int = 3) -> List[str]:
    """``'0.93  name'`` lines of the ``k`` best ``names`` by ``scores``."""
    scores = np.asarray(scores.detach().cpu() if hasattr(scores, 'detach') else scores)
    order = np.argsort(-scores)[:k]
    return [f'{scores[i]:.2f}  {names[i]}' for i in order]


def image_from_path(path: Optional[str]):
    """The image at ``path`` (RGB), or a grey placeholder when it cannot be read."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            return img.convert('RGB')
    except Exception:  # noqa: BLE001 - a picture of the results, not a data pipeline
        return Image.new('RGB', (64, 64), (128, 128, 128))
