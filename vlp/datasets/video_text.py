"""Video-text data read with decord: MSR-VTT-style annotations and frame sampling.

- Frame sampling (CLIP4Clip / ClipBERT conventions): ``uniform`` (evaluation) takes the
  centre frame of each of ``T`` equal segments, ``int((i + 0.5) * n / T)``; ``random_segment``
  (training) draws one frame uniformly inside each segment ``[i * n / T, (i + 1) * n / T)``.
  Videos shorter than ``T`` frames repeat frames.
- :class:`LoadVideoFrames` decodes only the sampled frames (``decord.VideoReader.get_batch``),
  resized at decode time, into ``image``: ``uint8 [T, 3, H, W]`` (batches collate to
  ``[B, T, 3, H, W]``). A missing or corrupt video logs its path and drops the sample: the
  dataset counts it and fetches another (as broken images).
- :class:`VideoTextDataset`: MSR-VTT's JSON (``{"videos": [{"video_id", "split"}],
  "sentences": [{"video_id", "caption"}]}``, filtered by ``split``) or a list
  ``[{"video": path, "caption": str or [str]}]``; videos under ``video_root`` as
  ``<video_id><ext>``.
- The demo scenes as short videos: :class:`~vlp.datasets.demo.DemoVideoText`
  (vlp/datasets/demo/video.py).
"""
import json
import logging
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.logging import print_log

from vlp.registry import DATASETS, TRANSFORMS
from .image_text import BaseImageTextDataset


def uniform_frame_indices(num_total: int, num_frames: int) -> List[int]:
    """Centre frame of each of ``num_frames`` equal segments of ``num_total`` frames."""
    if num_total < 1:
        raise ValueError('a video without frames')
    return [min(int((i + 0.5) * num_total / num_frames), num_total - 1)
            for i in range(num_frames)]


def random_segment_frame_indices(num_total: int, num_frames: int,
                                 rng: Optional[np.random.Generator] = None) -> List[int]:
    """One frame drawn uniformly in each of ``num_frames`` equal segments."""
    if num_total < 1:
        raise ValueError('a video without frames')
    if rng is None:  # from numpy's global stream, which a SampleKey seeds per sample
        rng = np.random.default_rng(np.random.randint(2 ** 31, size=2))
    out = []
    for i in range(num_frames):
        lo = int(i * num_total / num_frames)
        hi = max(int((i + 1) * num_total / num_frames), lo + 1)
        out.append(min(int(rng.integers(lo, hi)), num_total - 1))
    return out


@TRANSFORMS.register_module()
class LoadVideoFrames:
    """Decode ``num_frames`` frames of ``results[key]`` into ``results['image']``.

    Args:
        num_frames: frames per clip ``T``.
        sampling: ``'uniform'`` or ``'random_segment'`` (see the module docstring).
        size: decode-time resize ``(H, W)`` or an int (square); ``None``: native size.
        key: the video path field.
    """

    def __init__(self, num_frames: int = 8, sampling: str = 'uniform',
                 size: Union[int, Tuple[int, int], None] = None, key: str = 'video_path'):
        if sampling not in ('uniform', 'random_segment'):
            raise ValueError(f"sampling must be 'uniform' or 'random_segment', got {sampling!r}")
        self.num_frames, self.sampling, self.key = num_frames, sampling, key
        self.size = (size, size) if isinstance(size, int) else size

    def __call__(self, results: dict) -> Optional[dict]:
        import decord
        path = results[self.key]
        try:
            kw = {} if self.size is None else dict(height=self.size[0], width=self.size[1])
            vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, **kw)
            n = len(vr)
            inds = (uniform_frame_indices(n, self.num_frames) if self.sampling == 'uniform'
                    else random_segment_frame_indices(n, self.num_frames))
            frames = vr.get_batch(inds).asnumpy()  # (T, H, W, 3) uint8
        except Exception as exn:  # missing, corrupt or undecodable: log, drop the sample
            message = f'cannot read {path} ({type(exn).__name__}: {exn})'
            print_log(f'LoadVideoFrames: {message}', logger='current', level=logging.WARNING)
            local = isinstance(path, str) and '://' not in path
            reason = ('missing_file' if local and not osp.exists(path) else
                      'empty_file' if local and osp.getsize(path) == 0 else 'corrupt_file')
            results['_skip'] = dict(reason=reason, file=str(path), message=message)
            results['_skip_logged'] = True
            return None
        results['image'] = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        results['frame_inds'] = torch.tensor(inds, dtype=torch.long)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_frames={self.num_frames}, '
                f'sampling={self.sampling!r}, size={self.size})')


@DATASETS.register_module()
class VideoTextDataset(BaseImageTextDataset):
    """Video-caption pairs (MSR-VTT JSON or a list of ``{"video", "caption"}``).

    Args:
        ann_file: the JSON file.
        video_root: folder of the videos (relative to ``data_root``).
        split: MSR-VTT ``split`` to keep (``'train'``, ``'validate'``, ``'test'``; ``None``:
            all); ignored for the list format.
        ext: file extension of MSR-VTT video ids.
        pipeline: transforms (start with :class:`LoadVideoFrames`).
        mode: ``'train'`` (a sample per pair) or ``'eval'`` (a sample per video, all
            captions).
    """

    def __init__(self, ann_file: str, video_root: str = '', split: Optional[str] = None,
                 ext: str = '.mp4', pipeline: Sequence = (), mode: str = 'train',
                 data_root: str = '', **kwargs):
        self.split, self.ext = split, ext
        self.video_root = osp.join(data_root, video_root) if data_root else video_root
        path = osp.join(data_root, ann_file) if data_root and not osp.isabs(ann_file) \
            else ann_file
        if not osp.exists(path):
            raise FileNotFoundError(f'annotation file not found: {path}')
        self.ann_path = path
        super().__init__(ann_file=path, pipeline=pipeline, mode=mode, **kwargs)

    def load_records(self) -> List[dict]:
        with open(self.ann_path, encoding='utf-8') as f:
            ann = json.load(f)
        groups = {}
        if isinstance(ann, dict):  # MSR-VTT
            keep = {v['video_id'] for v in ann['videos']
                    if self.split is None or v.get('split') == self.split}
            for s in ann['sentences']:
                if s['video_id'] in keep:
                    groups.setdefault(s['video_id'], []).append(s['caption'])
            items = [(osp.join(self.video_root, vid + self.ext), caps)
                     for vid, caps in groups.items()]
        else:
            for e in ann:
                caps = e['caption'] if isinstance(e['caption'], list) else [e['caption']]
                groups.setdefault(e['video'], []).extend(caps)
            items = [(v if osp.isabs(v) else osp.join(self.video_root, v), caps)
                     for v, caps in groups.items()]
        return [dict(video_path=p, captions=caps) for p, caps in items]
