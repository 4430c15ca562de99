"""Convert an open_clip ``CoCa`` (Yu et al. 2022, "CoCa: Contrastive Captioners are
Image-Text Foundation Models"; open_clip's ``coca_ViT-B-32`` / ``coca_ViT-L-14`` weights)
to vlp's CoCa.

Usage::

    python tools/convert/open_clip_coca_to_vlp.py --model-name coca_ViT-B-32 \
        --checkpoint FILE OUT_DIR
    python tools/convert/open_clip_coca_to_vlp.py --model-config cfg.json \
        --checkpoint FILE OUT_DIR

As ``open_clip_to_vlp.py`` (same options): writes ``OUT_DIR/config.py`` (model,
tokenizer, test transforms), ``OUT_DIR/model.pth``, ``OUT_DIR/eval_*.py`` (zero-shot
ImageNet, COCO / Flickr30k retrieval, COCO captioning) and copies the tokenizer vocabulary.
The vocabulary written is the weights' (the text embedding's rows, checked against
open_clip's config); a tokenizer with more tokens than that is refused (``--tokenizer`` /
``--no-tokenizer``). The key table and the layout
notes are in ``vlp.convert.formats.coca``; the way back is
``tools/convert/export.py --to open_clip_coca``.
"""
from typing import List, Optional

from vlp.convert.cli import open_clip_main
from vlp.convert.formats.coca import (convert,  # noqa: F401
                                      convert_open_clip_coca_state_dict,
                                      open_clip_coca_config_to_vlp)


def main(argv: Optional[List[str]] = None) -> dict:
    return open_clip_main(argv, convert, __doc__, 'coca_ViT-B-32',
                          'open_clip CoCa weights file')


if __name__ == '__main__':
    main()
