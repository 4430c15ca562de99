"""The demo scenes as short videos whose objects drift and flicker with noise, each written
as an mp4 file (OpenCV) to a cache folder the first time it is read; read back with decord
through :class:`~vlp.datasets.video_text.LoadVideoFrames` (the CLIP4Clip demo)."""
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np

from vlp.registry import DATASETS
from ..image_text import BaseImageTextDataset
from .scenes import _split_id, demo_scenes, render_scene


@DATASETS.register_module()
class DemoVideoText(BaseImageTextDataset):
    """The demo scenes as short videos (see the module docstring).

    Args:
        split, num_videos, image_size, seed: as :class:`DemoImageText` (defaults 1000
            train / 200 val / 200 test videos).
        num_frames: frames written per video; fps: their rate.
        cache_dir: where the mp4 files are written (once) and read from.
        pipeline: transforms (start with :class:`LoadVideoFrames`).
    """
    DEFAULT_NUM = dict(train=1000, val=200, test=200)

    def __init__(self, split: str = 'train', num_videos: Optional[int] = None,
                 image_size: int = 64, num_frames: int = 16, fps: int = 8, seed: int = 0,
                 cache_dir: str = osp.join(osp.expanduser('~'), '.cache', 'vlp',
                                           'demo_videos'),
                 pipeline: Sequence = (), mode: Optional[str] = None, **kwargs):
        _split_id(split)
        self.split, self.seed = split, seed
        self.num_videos = self.DEFAULT_NUM[split] if num_videos is None else num_videos
        self.image_size, self.num_frames, self.fps = image_size, num_frames, fps
        self.cache = osp.join(cache_dir, f'{split}_{self.num_videos}_{image_size}_'
                                         f'{num_frames}_{seed}')
        kwargs.setdefault('serialize_data', False)
        super().__init__(pipeline=pipeline,
                         mode=mode or ('train' if split == 'train' else 'eval'),
                         train_sampling='random', **kwargs)

    def load_records(self) -> List[dict]:
        scenes = demo_scenes(self.split, self.num_videos, self.seed)
        os.makedirs(self.cache, exist_ok=True)
        return [dict(video_path=osp.join(self.cache, f'{i:05d}.mp4'), captions=list(caps),
                     image_id=i) for i, (_, caps) in enumerate(scenes)]

    def load_image(self, data_info: dict) -> dict:
        """Write the sample's video the first time it is read."""
        if not osp.exists(data_info['video_path']):
            objs = demo_scenes(self.split, self.num_videos, self.seed)[data_info['image_id']][0]
            self._write(data_info['video_path'], objs, data_info['image_id'])
        return data_info

    def _write(self, path: str, objs, index: int) -> None:
        import cv2
        rng = np.random.default_rng([self.seed, _split_id(self.split), index, 7])
        size = self.image_size
        base = np.asarray(render_scene(objs, size, rng, noise=0.0), dtype=np.float32)
        tmp = f'{path}.{os.getpid()}.tmp.mp4'
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*'mp4v'), self.fps, (size, size))
        dx, dy = rng.integers(-2, 3, size=2)
        for t in range(self.num_frames):
            shift = (int(dx * t / max(self.num_frames - 1, 1) * 2),
                     int(dy * t / max(self.num_frames - 1, 1) * 2))
            frame = np.roll(base, shift, axis=(1, 0)) + rng.normal(0, 6.0, base.shape)
            frame = np.clip(frame, 0, 255).astype(np.uint8)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        os.replace(tmp, path)  # complete files only, also with several processes
