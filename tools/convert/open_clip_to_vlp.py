"""Convert an open_clip ``CLIP`` (Radford et al. 2021, CLIP; OpenAI and OpenCLIP weights)
to vlp's CLIP.

Usage::

    python tools/convert/open_clip_to_vlp.py --model-name ViT-B-16 --checkpoint FILE OUT_DIR
    python tools/convert/open_clip_to_vlp.py --model-config cfg.json --checkpoint FILE OUT_DIR

``--model-name`` reads the model config that ships with open_clip (no download);
``--model-config`` a JSON file of the same form. ``FILE``: a ``.safetensors`` file, a
``torch.save`` state dict (an open_clip training checkpoint too) or OpenAI's TorchScript
release (its weights are read without running its code; ``--no-weights-only`` loads a
trusted file with ``torch.jit.load`` / a full unpickle instead). Writes
``OUT_DIR/config.py`` (model, tokenizer, open_clip's test transforms:
``vlp.apis.init_model(OUT_DIR)``), ``OUT_DIR/model.pth`` and ``OUT_DIR/eval_*.py``
(zero-shot ImageNet, COCO / Flickr30k retrieval for ``tools/test.py``; the numbers to
reproduce: docs/model_zoo.md); the tokenizer vocabulary (``--tokenizer FILE``, by default
open_clip's bundled BPE for models with the OpenAI tokenizer) is copied and named in the
config, and refused when it has more tokens than the weights' vocabulary. The key table is ``vlp.convert.formats.clip.OPEN_CLIP``; the way
back is ``tools/convert/export.py --to open_clip``.
"""
from typing import List, Optional

from vlp.convert.cli import open_clip_main
from vlp.convert.formats.open_clip import convert, open_clip_config_to_vlp  # noqa: F401


def main(argv: Optional[List[str]] = None) -> dict:
    return open_clip_main(argv, convert, __doc__, 'ViT-B-16',
                          'open_clip / OpenAI weights file')


if __name__ == '__main__':
    main()
