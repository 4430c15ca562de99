"""Convert a HuggingFace transformers ``CLIPModel`` (Radford et al. 2021, CLIP) to vlp's CLIP.

Usage::

    python tools/convert/hf_clip_to_vlp.py SRC_DIR OUT_DIR [--no-tokenizer]
        [--eot-token-id ID] [--dtype fp32]

``SRC_DIR``: a local ``save_pretrained`` folder (``config.json`` and ``model.safetensors``
/ ``pytorch_model.bin``, possibly sharded). Writes into ``OUT_DIR``: ``config.py`` (the
model, its tokenizer and CLIP's test transforms: ``vlp.apis.init_model(OUT_DIR)`` runs it),
``model.pth``, the tokenizer files of ``SRC_DIR`` (checked against the weights'
vocabulary) and ``eval_*.py`` (zero-shot ImageNet, COCO and Flickr30k retrieval:
``python tools/test.py OUT_DIR/eval_zeroshot_imagefolder.py OUT_DIR/model.pth``; the
numbers to reproduce are in docs/model_zoo.md). The key table is
``vlp.convert.formats.clip.HF_CLIP``; the way back is ``tools/convert/export.py --to
hf_clip``.
"""
from typing import List, Optional

from vlp.convert.cli import (add_dtype_arg, add_token_id_args, dtype_arg, make_parser,
                             print_written)
from vlp.convert.formats.hf_clip import (convert, convert_hf_clip_state_dict,  # noqa: F401
                                         hf_clip_config_to_vlp)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument('src_dir', help='HF save_pretrained directory of a CLIPModel')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth, eval_*.py)')
    parser.add_argument('--no-tokenizer', action='store_true',
                        help='do not copy tokenizer files or add a tokenizer to the config')
    add_token_id_args(parser, 'eot')
    add_dtype_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.src_dir, args.out_dir, tokenizer=not args.no_tokenizer,
                  dtype=dtype_arg(args.dtype), eot_token_id=args.eot_token_id)
    print_written(out)
    return out


if __name__ == '__main__':
    main()
