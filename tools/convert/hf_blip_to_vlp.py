"""Convert a HuggingFace transformers BLIP checkpoint (Li et al. 2022, "BLIP: Bootstrapping
Language-Image Pre-training"; ``BlipForImageTextRetrieval`` or
``BlipForConditionalGeneration``) to vlp's BLIP (retrieval) or BLIPCaption (captioning).

Usage::

    python tools/convert/hf_blip_to_vlp.py HF_DIR OUT_DIR
        [--vocab-file vocab.txt | --tokenizer-file tokenizer.json | --no-tokenizer]
        [--enc-token replace|keep] [--enc-token-id 30523] [--dec-token-id 30522]
        [--queue-size 57600] [--prompt 'a picture of '] [--drop-keys REGEX ...]
        [--dtype fp32]

``HF_DIR``: a ``save_pretrained`` folder. Writes into ``OUT_DIR``: ``config.py`` (model,
tokenizer, BLIP's test transforms: ``vlp.apis.init_model(OUT_DIR)``), ``model.pth``, the
tokenizer file and the evaluation configs (retrieval model: ``eval_retrieval_{coco,
flickr30k}.py``; captioning model: ``eval_caption_coco.py``; numbers to reproduce:
docs/model_zoo.md). The model kind comes from the keys (``text_encoder.*``: retrieval,
``text_decoder.*``: captioning, a ``BLIPCaption``). Parts the retrieval checkpoint lacks
start at vlp's init (reported), the momentum twins copy the online weights.

Special tokens: [DEC] is the HF text config's ``bos_token_id`` unless ``--dec-token-id``
names it (required when that id lies outside the vocabulary); [ENC] is ``--enc-token-id``,
else the tokenizer's [ENC], else [DEC] + 1. ``--enc-token replace`` (default) leads the
image-grounded encoder's input with [ENC] as BLIP's code (and training) did; ``keep``
encodes the ids as given, which reproduces HF's ``BlipForImageTextRetrieval`` exactly.
The key table and the parts left at init are described in ``vlp.convert.formats.blip``;
the way back is ``tools/convert/export.py --to hf_blip``.
"""
import os.path as osp
from typing import List, Optional

from vlp.convert.cli import (add_drop_keys_arg, add_dtype_arg, add_token_id_args,
                             add_tokenizer_args, dtype_arg, make_parser, print_report,
                             print_written)
from vlp.convert.formats.blip import (BLIP_QUEUE_SIZE, BLIP_TEXT_MAX_LENGTH,  # noqa: F401
                                      convert, convert_hf_blip, convert_hf_blip_state_dict,
                                      hf_blip_model_cfg, special_token_ids)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument('src_dir', help='HF save_pretrained directory of a BLIP model')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth, eval_*.py)')
    add_tokenizer_args(parser, 'default: SRC_DIR/vocab.txt when present')
    parser.add_argument('--enc-token', choices=('replace', 'keep'), default='replace',
                        help="'replace': the image-grounded encoder reads [ENC] in place of "
                             "the first token (BLIP's code, default); 'keep': the ids as "
                             "given (HF's BlipForImageTextRetrieval)")
    add_token_id_args(parser, 'enc', 'dec')
    parser.add_argument('--max-length', type=int, default=BLIP_TEXT_MAX_LENGTH,
                        help='tokenizer padding length (default 35)')
    parser.add_argument('--queue-size', type=int, default=BLIP_QUEUE_SIZE,
                        help='ITC feature-queue length (default 57600; 0: none)')
    parser.add_argument('--prompt', default='',
                        help="captioning prompt (BLIP's fine-tuning: 'a picture of '; "
                             "default '' as HF's generate)")
    add_drop_keys_arg(parser)
    parser.add_argument('--seed', type=int, default=0, help='seed of the parts left at init')
    add_dtype_arg(parser)
    args = parser.parse_args(argv)
    tokenizer = args.vocab_file or args.tokenizer_file
    if tokenizer is None and not args.no_tokenizer \
            and osp.exists(osp.join(args.src_dir, 'vocab.txt')):
        tokenizer = osp.join(args.src_dir, 'vocab.txt')
    out = convert(args.src_dir, args.out_dir, tokenizer=tokenizer,
                  enc_token_id=args.enc_token_id, max_length=args.max_length,
                  queue_size=args.queue_size, prompt=args.prompt,
                  dtype=dtype_arg(args.dtype), drop=args.drop_keys, seed=args.seed,
                  dec_token_id=args.dec_token_id, use_enc_token=args.enc_token == 'replace')
    rep = out['report']
    print_report(rep, f'{rep.kind} model; tie_lm_head={rep.tie_lm_head}; '
                 f'[ENC]={rep.enc_token_id}, [DEC]={rep.dec_token_id} '
                 f'(--enc-token {args.enc_token})')
    print_written(out)
    return out


if __name__ == '__main__':
    main()
