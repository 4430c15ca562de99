"""Convert a HuggingFace transformers ``CLIPModel`` (Radford et al. 2021, CLIP) to vlp's CLIP.

Usage::

    python tools/convert/hf_clip_to_vlp.py SRC_DIR OUT_DIR [--no-tokenizer] [--dtype fp32]

``SRC_DIR``: a local ``save_pretrained`` folder (``config.json`` and ``model.safetensors``
/ ``pytorch_model.bin``, possibly sharded). Writes ``OUT_DIR/config.py`` and
``OUT_DIR/model.pth``; tokenizer files of ``SRC_DIR`` are copied and named in the config.
The key table is ``vlp.convert.formats.clip.HF_CLIP``; the way back is
``tools/convert/export.py --to hf_clip``.
"""
import argparse
from typing import List, Optional

from vlp.convert.formats.hf_clip import (convert, convert_hf_clip_state_dict,  # noqa: F401
                                         hf_clip_config_to_vlp)
from vlp.convert.cli import add_dtype_arg, dtype_arg


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src_dir', help='HF save_pretrained directory of a CLIPModel')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    parser.add_argument('--no-tokenizer', action='store_true',
                        help='do not copy tokenizer files or add a tokenizer to the config')
    add_dtype_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.src_dir, args.out_dir, tokenizer=not args.no_tokenizer,
                  dtype=dtype_arg(args.dtype))
    print(f'wrote {out["config"]} and {out["checkpoint"]}')
    return out


if __name__ == '__main__':
    main()
