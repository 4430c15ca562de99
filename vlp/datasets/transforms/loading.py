"""``LoadImage``: read an image file into a PIL RGB image, or report it and skip it."""
import io
import logging
from typing import Optional

from mmengine.fileio import get
from mmengine.logging import print_log
from PIL import Image

from vlp.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadImage:
    """Read ``results[key]`` (a path or URI; mmengine ``fileio`` backends) into
    ``results['img']`` (PIL, RGB) and ``results['ori_shape'] = (H, W)``.

    A sample that already holds a decoded ``img`` and no path (a webdataset shard member)
    passes through, so JSON datasets and shards share their pipelines.

    A missing, empty, truncated or undecodable file returns ``None`` after a warning with
    the path through mmengine's current logger; it never raises. It leaves
    ``results['_skip'] = dict(reason, file, message)`` (reason ``'missing_file'``,
    ``'empty_file'`` or ``'corrupt_file'``, see :data:`vlp.datasets.skips.SKIP_REASONS`),
    which the vlp datasets record in their skip report before fetching another sample.

    Args:
        key: the field holding the path.
        backend_args: mmengine file backend arguments.
    """

    def __init__(self, key: str = 'img_path', backend_args: Optional[dict] = None):
        self.key = key
        self.backend_args = backend_args

    def __call__(self, results: dict) -> Optional[dict]:
        if self.key not in results and isinstance(results.get('img'), Image.Image):
            # already decoded (webdataset shards give ``img``): the same pipeline serves
            # annotation files and shards
            results.setdefault('ori_shape', (results['img'].height, results['img'].width))
            return results
        path = results[self.key]
        reason, buf = 'corrupt_file', None
        try:
            try:
                data = get(path, backend_args=self.backend_args)
            except FileNotFoundError:
                reason = 'missing_file'
                raise
            if not data:
                reason = 'empty_file'
                raise OSError('the file is empty (0 bytes)')
            buf = io.BytesIO(data)
            img = Image.open(buf)
            img.load()  # decode now: a truncated file fails here, not later
            img = img.convert('RGB')
        except Exception as e:  # noqa: BLE001 - any unreadable image is skipped, loudly
            error = str(e) if buf is None else str(e).replace(repr(buf), 'it')
            message = f'cannot read image {path}: {type(e).__name__}: {error}'
            print_log(f'LoadImage: {message}; skipping this sample', logger='current',
                      level=logging.WARNING)
            results['_skip'] = dict(reason=reason, file=str(path), message=message)
            results['_skip_logged'] = True
            return None
        results['img'] = img
        results['ori_shape'] = (img.height, img.width)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(key={self.key!r})'
