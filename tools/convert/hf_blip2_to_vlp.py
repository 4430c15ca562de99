"""Convert a HuggingFace transformers BLIP-2 checkpoint (Li et al. 2023, "BLIP-2";
``Blip2ForConditionalGeneration`` or ``Blip2Model``) to vlp's stage-2 ``BLIP2LM``.

Usage::

    python tools/convert/hf_blip2_to_vlp.py HF_DIR OUT_DIR
        [--post-layernorm ln_vision|vision_norm] [--prompt 'a photo of']
        [--drop-keys REGEX ...] [--dtype fp32]

``HF_DIR``: a ``save_pretrained`` folder. Writes ``OUT_DIR/config.py`` and
``OUT_DIR/model.pth``. The key table and where HF's ``post_layernorm`` goes are described in
``vlp.convert.formats.blip2``; the way back is ``tools/convert/export.py --to hf_blip2``.
The tokenizer is not written (set ``model.tokenizer = dict(type='LMTokenizer',
pretrained=<LLM dir>)``).
"""
import argparse
from typing import List, Optional

from vlp.convert.cli import add_drop_keys_arg, add_dtype_arg, dtype_arg, print_report
from vlp.convert.formats.blip2 import (POST_LAYERNORM, convert,  # noqa: F401
                                       convert_hf_blip2, convert_hf_blip2_state_dict,
                                       hf_blip2_model_cfg)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src_dir', help='HF save_pretrained directory of a BLIP-2 model')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
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
                  seed=args.seed)
    rep = out['report']
    print_report(rep, f'post_layernorm -> {rep.post_layernorm}; tied LM head filled: '
                 f'{rep.tied_lm_head}')
    print(f'wrote {out["config"]} and {out["checkpoint"]}')
    return out


if __name__ == '__main__':
    main()
