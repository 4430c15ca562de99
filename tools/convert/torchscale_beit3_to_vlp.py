"""Convert a torchscale BEiT-3 checkpoint (Wang et al. 2022, "Image as a Foreign Language";
torchscale ``model/BEiT3.py`` as wrapped by unilm/beit3) to vlp's ``BEiT3Transformer``.

Usage::

    python tools/convert/torchscale_beit3_to_vlp.py CHECKPOINT OUT_DIR
        [--num-heads 12] [--layernorm-eps 1e-5] [--prefix backbone.]
        [--drop-keys REGEX ...] [--dtype fp32] [--no-weights-only]

``CHECKPOINT``: a ``torch.save`` file holding a torchscale ``BEiT3`` state dict (bare or
under ``'model'`` / ``'module'`` / ``'state_dict'``, keys possibly under unilm's ``beit3.``)
or a ``.safetensors`` file. Writes ``OUT_DIR/config.py`` (``type='BEiT3Transformer'``,
sizes read from the weights) and ``OUT_DIR/model.pth``; ``--prefix`` puts the backbone
under a parent module's attribute. Key table: ``vlp.convert.formats.beit3``.
"""
import argparse
from typing import List, Optional

from vlp.convert.cli import (add_drop_keys_arg, add_dtype_arg, add_weights_only_arg,
                             dtype_arg, print_report)
from vlp.convert.formats.beit3 import (beit3_model_cfg, convert,  # noqa: F401
                                       convert_beit3_state_dict)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='torchscale / unilm BEiT-3 checkpoint')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    parser.add_argument('--num-heads', type=int, default=None,
                        help='attention heads (default embed_dim // 64: 12 base, 16 large)')
    parser.add_argument('--layernorm-eps', type=float, default=1e-5,
                        help="LayerNorm eps (torchscale's default 1e-5)")
    parser.add_argument('--prefix', default='',
                        help='prefix of the written keys, e.g. "backbone." (default none)')
    add_drop_keys_arg(parser)
    add_dtype_arg(parser)
    add_weights_only_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.checkpoint, args.out_dir, num_heads=args.num_heads,
                  layernorm_eps=args.layernorm_eps, prefix=args.prefix,
                  dtype=dtype_arg(args.dtype), drop=args.drop_keys,
                  weights_only=not args.no_weights_only)
    rep, cfg = out['report'], out['model_cfg']
    print_report(rep, f'BEiT-3 backbone (source prefix {rep.prefix!r}): embed_dim '
                 f'{cfg["embed_dim"]}, depth {cfg["depth"]}, heads {cfg["num_heads"]}, '
                 f'img_size {cfg["img_size"]}')
    print(f'wrote {out["config"]} and {out["checkpoint"]}')
    return out


if __name__ == '__main__':
    main()
