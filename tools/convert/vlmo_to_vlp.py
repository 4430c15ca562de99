"""Convert a checkpoint of the official VLMo code (Bao et al. 2022; github.com/microsoft/
unilm ``vlmo``) to vlp's VLMo.

Usage::

    python tools/convert/vlmo_to_vlp.py CHECKPOINT OUT_DIR [--img-size 224]
        [--patch-size 16] [--num-heads 12] [--max-text-len 40]
        [--vocab-file bert-base-uncased/vocab.txt | --tokenizer-file tokenizer.json]
        [--dtype fp32]

``CHECKPOINT``: a PyTorch Lightning / DeepSpeed file of the official code (the weights
under ``state_dict`` or ``module``, or a bare state dict), read weights-only. Writes into
``OUT_DIR``: ``config.py`` (the vlp ``VLMo`` at stage ``image_text``, VLMo's square resize
and inception normalisation, the tokenizer: ``vlp.apis.init_model(OUT_DIR)``),
``model.pth`` and ``eval_retrieval_{coco,flickr30k}.py`` (with a tokenizer; numbers to
reproduce: docs/model_zoo.md). The key table and what is not converted:
``vlp.convert.formats.vlmo``.
"""
from typing import List, Optional

from vlp.convert.cli import (add_dtype_arg, add_tokenizer_args, dtype_arg, make_parser,
                             print_written)
from vlp.convert.formats.vlmo import convert, vlmo_model_cfg  # noqa: F401
from vlp.convert.formats.vlmo import convert_vlmo_state_dict as convert_state_dict  # noqa: F401


def main(argv: Optional[List[str]] = None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument('checkpoint', help='official VLMo checkpoint')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth, eval_*.py)')
    parser.add_argument('--img-size', type=int, default=224,
                        help='training resolution of the checkpoint (default 224)')
    parser.add_argument('--patch-size', type=int, default=16, help='ViT patch (default 16)')
    parser.add_argument('--num-heads', type=int, default=12,
                        help='attention heads (default 12)')
    parser.add_argument('--max-text-len', type=int, default=40,
                        help='text positions and tokenizer padding length (default 40)')
    add_tokenizer_args(parser, 'VLMo: bert-base-uncased; default: none')
    add_dtype_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.checkpoint, args.out_dir, args.img_size, args.patch_size,
                  args.num_heads, args.max_text_len, dtype_arg(args.dtype),
                  tokenizer=None if args.no_tokenizer else
                  (args.vocab_file or args.tokenizer_file))
    print(f'not converted: {out["skipped"] or "nothing"}')
    print_written(out)
    return out


if __name__ == '__main__':
    main()
