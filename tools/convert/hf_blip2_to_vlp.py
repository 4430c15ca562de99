"""Convert a HuggingFace transformers BLIP-2 checkpoint (Li et al. 2023, "BLIP-2";
``Blip2ForConditionalGeneration`` or ``Blip2Model``) to vlp's stage-2 ``BLIP2LM``.

Usage::

    python tools/convert/hf_blip2_to_vlp.py HF_DIR OUT_DIR
        [--tokenizer LLM_TOKENIZER_DIR | --no-tokenizer]
        [--post-layernorm ln_vision|vision_norm] [--prompt 'a photo of']
        [--drop-keys REGEX ...] [--dtype fp32]

``HF_DIR``: a ``save_pretrained`` folder. Writes into ``OUT_DIR``: ``config.py`` (model,
LLM tokenizer, BLIP-2's test transforms: ``vlp.apis.init_model(OUT_DIR)`` captions,
answers and gives the Q-Former's query features), ``model.pth``, ``tokenizer/`` (the LLM
tokenizer files: HF_DIR's own when it has them, as the released folders do, or
``--tokenizer``; checked against the LM's vocabulary) and ``eval_caption_coco.py`` /
``eval_vqa_zeroshot.py`` (numbers to reproduce: docs/model_zoo.md). The key table and
where HF's ``post_layernorm`` goes are described in ``vlp.convert.formats.blip2``; the way
back is ``tools/convert/export.py --to hf_blip2``.
"""
from typing import List, Optional

from vlp.convert.cli import (add_drop_keys_arg, add_dtype_arg, dtype_arg, make_parser,
                             print_report, print_written)
from vlp.convert.formats.blip2 import (POST_LAYERNORM, convert,  # noqa: F401
                                       convert_hf_blip2, convert_hf_blip2_state_dict,
                                       hf_blip2_model_cfg)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument('src_dir', help='HF save_pretrained directory of a BLIP-2 model')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth, eval_*.py)')
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument('--tokenizer', default='auto',
                     help='folder of the LLM tokenizer files (default: SRC_DIR when it '
                          'holds them)')
    tok.add_argument('--no-tokenizer', action='store_true', help='no tokenizer in the config')
    parser.add_argument('--post-layernorm', default='ln_vision', choices=POST_LAYERNORM,
                        help="where HF's vision post_layernorm goes (default ln_vision, "
                             "trainable, eps 1e-5; vision_norm: the frozen ViT's final norm, "
                             "HF's eps)")
    parser.add_argument('--prompt', default='', help="captioning prompt (default '')")
    add_drop_keys_arg(parser)
    parser.add_argument('--seed', type=int, default=0, help='seed of the parts left at init')
    add_dtype_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.src_dir, args.out_dir, post_layernorm=args.post_layernorm,
                  prompt=args.prompt, dtype=dtype_arg(args.dtype), drop=args.drop_keys,
                  seed=args.seed, tokenizer=None if args.no_tokenizer else args.tokenizer)
    rep = out['report']
    print_report(rep, f'post_layernorm -> {rep.post_layernorm}; tied LM head filled: '
                 f'{rep.tied_lm_head}')
    print_written(out)
    return out


if __name__ == '__main__':
    main()
