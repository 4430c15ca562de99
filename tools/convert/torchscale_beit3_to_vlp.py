"""Convert a torchscale BEiT-3 checkpoint (Wang et al. 2022, "Image as a Foreign Language";
torchscale ``model/BEiT3.py`` as wrapped by unilm/beit3) to vlp's BEiT-3 models.

Usage::

    python tools/convert/torchscale_beit3_to_vlp.py CHECKPOINT OUT_DIR
        [--model auto|retrieval|pretrain] [--num-heads 12] [--layernorm-eps 1e-5]
        [--drop-keys REGEX ...] [--dtype fp32] [--no-weights-only]

``CHECKPOINT``: a ``torch.save`` file holding a torchscale ``BEiT3`` state dict (bare or
under ``'model'`` / ``'module'`` / ``'state_dict'``, keys possibly under unilm's ``beit3.``)
or a ``.safetensors`` file. Writes into ``OUT_DIR``: ``config.py`` and ``model.pth`` of a
complete model (sizes read from the weights): ``BEiT3Retrieval`` when unilm's retrieval
heads are there (``vision_head`` / ``language_head`` / ``logit_scale``:
``vlp.apis.init_model(OUT_DIR)`` encodes and matches), else the ``BEiT3`` pre-training
model around the backbone (its MLM / MIM heads at init; the ``pretrained=`` of the
fine-tuning configs); torchscale's output layer is kept when the checkpoint has it. BEiT-3's
test transforms are written; no tokenizer (XLM-R SentencePiece: texts as token ids). Key
table: ``vlp.convert.formats.beit3``.
"""
from typing import List, Optional

from vlp.convert.cli import (add_drop_keys_arg, add_dtype_arg, add_weights_only_arg,
                             dtype_arg, make_parser, print_report, print_written)
from vlp.convert.formats.beit3 import (KINDS, beit3_model_cfg, convert,  # noqa: F401
                                       convert_beit3_state_dict)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument('checkpoint', help='torchscale / unilm BEiT-3 checkpoint')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    parser.add_argument('--model', choices=KINDS, default='auto',
                        help='the vlp model written (default auto: retrieval when unilm\'s '
                             'retrieval heads are present, else pretrain)')
    parser.add_argument('--num-heads', type=int, default=None,
                        help='attention heads (default embed_dim // 64: 12 base, 16 large)')
    parser.add_argument('--layernorm-eps', type=float, default=1e-5,
                        help="LayerNorm eps (torchscale's default 1e-5)")
    add_drop_keys_arg(parser)
    add_dtype_arg(parser)
    add_weights_only_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.checkpoint, args.out_dir, num_heads=args.num_heads,
                  layernorm_eps=args.layernorm_eps, kind=args.model,
                  dtype=dtype_arg(args.dtype), drop=args.drop_keys,
                  weights_only=not args.no_weights_only)
    rep, cfg = out['report'], out['backbone_cfg']
    print_report(rep, f'{out["model_cfg"]["type"]} (source prefix {rep.prefix!r}): embed_dim '
                 f'{cfg["embed_dim"]}, depth {cfg["depth"]}, heads {cfg["num_heads"]}, '
                 f'img_size {cfg["img_size"]}, output layer {cfg["output_projection"]}')
    print_written(out)
    return out


if __name__ == '__main__':
    main()
