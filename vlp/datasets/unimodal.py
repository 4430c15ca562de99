"""Single-modality datasets for the stage-wise pre-training of VLMo (Bao et al. 2022, Sec.
3.3): images without text for the image stage (ImageNet-22K in the paper) and texts without
images for the text stage (English Wikipedia and BookCorpus).

- :class:`ImageListDataset`: every image file under a folder (recursive, by extension) or
  the paths listed in a text file; a sample is the image alone (``img_path``,
  ``image_id``). Missing or unreadable images are skipped and counted as in
  :class:`~vlp.datasets.image_text.BaseImageTextDataset`.
- :class:`TextCorpusDataset`: one passage per non-empty line of plain-text files; a
  sample is the text alone (``text``). A passage the pipeline rejects is skipped and
  counted (``num_skipped``, ``skip_report()``).

A path that does not exist raises ``FileNotFoundError`` naming it when the dataset is
built, before training starts.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset

from vlp.registry import DATASETS
from .image_text import BaseImageTextDataset, build_transform
from .samplers import sample_rng
from .skips import SkipLog, run_pipeline

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.JPEG', '.JPG', '.PNG')


def _files(paths: Union[str, List[str]], data_root: str) -> List[str]:
    paths = [paths] if isinstance(paths, str) else list(paths)
    out = [p if (not data_root or osp.isabs(p)) else osp.join(data_root, p) for p in paths]
    for p in out:
        if not osp.exists(p):
            raise FileNotFoundError(f'data path not found: {p}')
    return out


@DATASETS.register_module()
class ImageListDataset(BaseImageTextDataset):
    """Images without captions.

    Args:
        img_dir: folder searched recursively for ``extensions`` (relative to
            ``data_root``), or ``None`` when ``ann_file`` lists the images.
        ann_file: text file(s) with one image path per line, relative to ``img_prefix``.
        data_root, img_prefix, pipeline: as the image-text datasets (start the pipeline
            with ``LoadImage``; no ``Tokenize``).
    """

    def __init__(self, img_dir: str = None, ann_file: Union[str, List[str]] = '',
                 pipeline: Sequence = (), data_root: str = '', img_prefix: str = '',
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, **kwargs):
        if not img_dir and not ann_file:
            raise ValueError('ImageListDataset needs img_dir or ann_file')
        self.img_dir = _files(img_dir, data_root)[0] if img_dir else None
        self.list_files = _files(ann_file, data_root) if ann_file else []
        self.extensions = tuple(extensions)
        super().__init__(ann_file='', pipeline=pipeline, mode='train', data_root=data_root,
                         img_prefix=img_prefix, **kwargs)

    def load_records(self) -> List[dict]:
        if self.img_dir is not None:
            paths = []
            for root, _, names in os.walk(self.img_dir):
                paths += [osp.join(root, n) for n in names if n.endswith(self.extensions)]
            return [dict(img_path=p, captions=[]) for p in sorted(paths)]
        records = []
        for f in self.list_files:
            with open(f, encoding='utf-8') as fh:
                records += [dict(img_path=self._img_path(line.strip()), captions=[])
                            for line in fh if line.strip()]
        return records

    def parse_record(self, record: dict) -> List[dict]:
        record = dict(record)
        record.pop('captions')
        return [record]


@DATASETS.register_module()
class TextCorpusDataset(BaseDataset):
    """Texts without images: one sample per non-empty line.

    Args:
        ann_file: plain-text file(s) (relative to ``data_root``).
        pipeline: text transforms (``Tokenize``).
    """

    def __init__(self, ann_file: Union[str, List[str]], pipeline: Sequence = (),
                 data_root: str = '', **kwargs):
        self.text_files = _files(ann_file, data_root)
        self.skips = SkipLog(type(self).__name__)
        super().__init__(ann_file=self.text_files[0], data_root=data_root,
                         pipeline=[build_transform(t) for t in pipeline], **kwargs)

    def __getitem__(self, idx: int) -> dict:
        with sample_rng(idx):  # per-sample randomness from the sampler's key
            return super().__getitem__(idx)

    def prepare_data(self, idx: int) -> Optional[dict]:
        """The pipeline on one passage; a passage a transform rejects (``Tokenize``: empty
        after the tokenizer's cleaning) or fails on is skipped and recorded, and mmengine
        fetches another."""
        out = run_pipeline(self.pipeline.transforms, self.get_data_info(idx), self.skips,
                           index=idx, action='fetching another (random) passage')
        if out is not None:
            self.skips.delivered()
        return out

    @property
    def num_skipped(self) -> int:
        return self.skips.total

    def skip_report(self) -> dict:
        return self.skips.report()

    def load_data_list(self) -> List[dict]:
        data = []
        for f in self.text_files:
            with open(f, encoding='utf-8') as fh:
                data += [dict(text=line.strip()) for line in fh if line.strip()]
        return data
