"""Convert an original ALBEF checkpoint (Li et al. 2021, "Align before Fuse";
github.com/salesforce/ALBEF) to vlp's ALBEF.

Usage::

    python tools/convert/albef_to_vlp.py CHECKPOINT OUT_DIR [--image-res 256]
        [--fusion-layer 6] [--vision-heads 12] [--text-heads 12]
        [--vocab-file vocab.txt | --tokenizer-file tokenizer.json] [--dtype fp32]

``CHECKPOINT``: a file saved by ALBEF's training scripts (the weights under ``'model'``) or
a bare state dict, read weights-only unless ``--no-weights-only``. ``--image-res``: the
resolution the checkpoint was trained at (256 pretraining, 384 fine-tuned); position
embeddings are never interpolated. Writes into ``OUT_DIR``: ``config.py`` (model, tokenizer,
ALBEF's test transforms and caption cleaning: ``vlp.apis.init_model(OUT_DIR)``),
``model.pth`` and, with a tokenizer, ``eval_retrieval_{coco,flickr30k}.py`` (numbers to
reproduce: docs/model_zoo.md). The tokenizer is checked against the weights' vocabulary.
Layouts and the key table: ``vlp.convert.formats.albef``.
"""
from typing import List, Optional

from vlp.convert.cli import (add_drop_keys_arg, add_dtype_arg, add_weights_only_arg,
                             dtype_arg, make_parser, print_report, print_written)
from vlp.convert.formats.albef import (ALBEF_FUSION_LAYER, ALBEF_HEADS,  # noqa: F401
                                       ALBEF_TEXT_MAX_LENGTH, albef_model_cfg, convert,
                                       convert_albef, convert_albef_state_dict)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument('checkpoint', help='ALBEF checkpoint (weights under "model")')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth, eval_*.py)')
    parser.add_argument('--image-res', type=int, default=256,
                        help='training resolution of the checkpoint (ALBEF: 256 pretrain, '
                             '384 fine-tuned; default 256)')
    parser.add_argument('--fusion-layer', type=int, default=ALBEF_FUSION_LAYER,
                        help='first BERT layer of the fusion encoder (default 6)')
    parser.add_argument('--vision-heads', type=int, default=ALBEF_HEADS,
                        help='ViT attention heads (default 12)')
    parser.add_argument('--text-heads', type=int, default=ALBEF_HEADS,
                        help='BERT attention heads (default 12)')
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument('--vocab-file', help='BERT vocab.txt to copy and name in the config')
    tok.add_argument('--tokenizer-file', help='BERT tokenizer.json to copy and name')
    parser.add_argument('--max-length', type=int, default=ALBEF_TEXT_MAX_LENGTH,
                        help='tokenizer padding length (default 30)')
    add_drop_keys_arg(parser)
    add_dtype_arg(parser)
    add_weights_only_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.checkpoint, args.out_dir, image_res=args.image_res,
                  fusion_layer=args.fusion_layer, vision_heads=args.vision_heads,
                  text_heads=args.text_heads, tokenizer=args.vocab_file or args.tokenizer_file,
                  max_length=args.max_length, dtype=dtype_arg(args.dtype),
                  drop=args.drop_keys, weights_only=not args.no_weights_only)
    rep = out['report']
    print_report(rep, f'{rep.layout} layout, {rep.num_bert_layers} BERT layers split at '
                 f'fusion_layer {rep.fusion_layer}')
    print_written(out)
    return out


if __name__ == '__main__':
    main()
