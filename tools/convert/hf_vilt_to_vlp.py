"""Convert a HuggingFace transformers ViLT checkpoint (Kim et al. 2021, "ViLT";
``ViltModel``, ``ViltForMaskedLM`` or ``ViltForImageAndTextRetrieval``) to vlp's ``ViLT``.

Usage::

    python tools/convert/hf_vilt_to_vlp.py SRC OUT_DIR [--config config.json]
        [--vocab-file vocab.txt | --tokenizer-file tokenizer.json | --no-tokenizer]
        [--drop-keys REGEX ...] [--dtype fp32]

``SRC``: a ``save_pretrained`` folder or one weights file (then ``--config``). Nothing is
downloaded. Writes into ``OUT_DIR``: ``config.py`` (model, tokenizer, test transforms:
``vlp.apis.init_model(OUT_DIR)``), ``model.pth``, the tokenizer file (checked against the
weights' vocabulary) and, for a retrieval model, ``eval_retrieval_{coco,flickr30k}.py``
(numbers to reproduce: docs/model_zoo.md). The key table is in
``vlp.convert.formats.vilt``; the way back is ``tools/convert/export.py --to hf_vilt``.
"""
import os.path as osp
from typing import List, Optional

from vlp.convert.cli import (add_drop_keys_arg, add_dtype_arg, add_tokenizer_args, dtype_arg,
                             make_parser, print_report, print_written)
from vlp.convert.formats.vilt import (convert, convert_hf_vilt_state_dict,  # noqa: F401
                                      hf_vilt_model_cfg)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument('src', help='HF save_pretrained directory, or one weights file')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth, eval_*.py)')
    parser.add_argument('--config', help='config.json of a single weights file')
    add_tokenizer_args(parser, 'default: SRC/vocab.txt when present')
    parser.add_argument('--max-length', type=int, default=None,
                        help='tokenizer padding length (default: max_position_embeddings)')
    add_drop_keys_arg(parser)
    add_dtype_arg(parser)
    args = parser.parse_args(argv)
    tokenizer = args.vocab_file or args.tokenizer_file
    if tokenizer is None and not args.no_tokenizer and osp.isdir(args.src):
        for name in ('tokenizer.json', 'vocab.txt'):
            if osp.exists(osp.join(args.src, name)):
                tokenizer = osp.join(args.src, name)
                break
    out = convert(args.src, args.out_dir, config=args.config, tokenizer=tokenizer,
                  max_length=args.max_length, dtype=dtype_arg(args.dtype),
                  drop=args.drop_keys)
    rep = out['report']
    print_report(rep, f"{out['kind']}; tie_mlm_decoder={rep.tie_mlm_decoder}")
    print_written(out)
    return out


if __name__ == '__main__':
    main()
