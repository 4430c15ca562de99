"""Convert a HuggingFace transformers BLIP checkpoint (Li et al. 2022, "BLIP: Bootstrapping
Language-Image Pre-training"; ``BlipForImageTextRetrieval`` or
``BlipForConditionalGeneration``) to vlp's BLIP.

Usage::

    python tools/convert/hf_blip_to_vlp.py HF_DIR OUT_DIR
        [--vocab-file vocab.txt | --tokenizer-file tokenizer.json | --no-tokenizer]
        [--enc-token-id 30523] [--queue-size 57600] [--prompt 'a picture of ']
        [--drop-keys REGEX ...] [--dtype fp32]

``HF_DIR``: a ``save_pretrained`` folder. Writes ``OUT_DIR/config.py`` and
``OUT_DIR/model.pth``. The model kind comes from the keys (``text_encoder.*``: retrieval,
``text_decoder.*``: captioning). Parts the checkpoint lacks start at vlp's init (reported),
the momentum twins copy the online weights. The key table, special tokens and the parts
left at init are described in ``vlp.convert.formats.blip``; the way back is
``tools/convert/export.py --to hf_blip``.
"""
import argparse
import os.path as osp
from typing import List, Optional

from vlp.convert.cli import (add_drop_keys_arg, add_dtype_arg, add_tokenizer_args, dtype_arg,
                             print_report)
from vlp.convert.formats.blip import (BLIP_QUEUE_SIZE, BLIP_TEXT_MAX_LENGTH,  # noqa: F401
                                      convert, convert_hf_blip, convert_hf_blip_state_dict,
                                      hf_blip_model_cfg, special_token_ids)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src_dir', help='HF save_pretrained directory of a BLIP model')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    add_tokenizer_args(parser, 'default: SRC_DIR/vocab.txt when present')
    parser.add_argument('--enc-token-id', type=int, default=None,
                        help='[ENC] id (default: from the vocabulary, else bos_token_id + 1)')
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
                  dtype=dtype_arg(args.dtype), drop=args.drop_keys, seed=args.seed)
    rep = out['report']
    print_report(rep, f'{rep.kind} model; tie_lm_head={rep.tie_lm_head}; '
                 f'[ENC]={rep.enc_token_id}, [DEC]={rep.dec_token_id}')
    print(f'wrote {out["config"]} and {out["checkpoint"]}')
    return out


if __name__ == '__main__':
    main()
