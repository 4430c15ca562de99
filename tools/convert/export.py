"""Export a vlp model to the format of a reference implementation (the converters' tables
run backwards).

Usage::

    python tools/convert/export.py --to hf_clip CONFIG CHECKPOINT OUT_DIR
    python tools/convert/export.py --to open_clip configs/clip/clip_tiny_demo.py \
        work_dirs/clip_tiny_demo/epoch_15.pth out/open_clip
    python tools/convert/export.py --to hf_blip CONFIG CHECKPOINT OUT_DIR --kind captioning

``--to``: ``hf_clip`` (``transformers.CLIPModel``), ``open_clip`` / ``open_clip_coca``
(``open_clip.create_model('local-dir:OUT_DIR')``), ``hf_blip`` (``BlipForImageTextRetrieval``
or, ``--kind captioning``, ``BlipForConditionalGeneration``), ``hf_blip2``
(``Blip2ForConditionalGeneration``), ``hf_vilt`` (``ViltModel`` / ``ViltForMaskedLM`` /
``ViltForImageAndTextRetrieval``, ``--kind model|mlm|retrieval``). ``CONFIG``: the vlp
config file the model was trained or converted with; ``CHECKPOINT``: its weights in any
layout (a converter's ``model.pth``, an mmengine ``epoch_N.pth`` / ``iter_N.pth``, a
DeepSpeed checkpoint directory, ``.safetensors``), read weights-only unless
``--no-weights-only``. HF formats write ``config.json`` + ``model.safetensors`` (+
``preprocessor_config.json``) so that ``XModel.from_pretrained(OUT_DIR)`` loads them;
open_clip formats ``open_clip_config.json`` + ``open_clip_model.safetensors``.

Every vlp key must be exported or dropped on purpose (momentum twins, queues, parts the
reference model has no place for: listed in the report); every reference key must be
produced. An architecture the reference cannot express exactly is refused
(``NotImplementedError`` saying what differs). Tokenizer files are not written.
"""
from typing import List, Optional

from vlp.convert import EXPORTERS, export
from vlp.convert.cli import (add_dtype_arg, add_weights_only_arg, dtype_arg, make_parser,
                             print_report)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument('--to', required=True, choices=sorted(EXPORTERS),
                        help='the reference format')
    parser.add_argument('config', help='vlp config file of the model')
    parser.add_argument('checkpoint', help='vlp weights (any checkpoint layout)')
    parser.add_argument('out_dir', help='output directory')
    parser.add_argument('--kind', default=None,
                        help='hf_blip: retrieval | captioning; hf_vilt: model | mlm | '
                             'retrieval (default: from the model\'s heads)')
    parser.add_argument('--image-token-index', type=int, default=None,
                        help='hf_blip2: id of the image placeholder token (default: the '
                             'last LM id)')
    add_dtype_arg(parser, default='keep')
    add_weights_only_arg(parser)
    args = parser.parse_args(argv)
    options = {}
    if args.kind is not None:
        if args.to not in ('hf_blip', 'hf_vilt'):
            parser.error('--kind applies to hf_blip and hf_vilt')
        options['kind'] = args.kind
    if args.image_token_index is not None:
        if args.to != 'hf_blip2':
            parser.error('--image-token-index applies to hf_blip2')
        options['image_token_index'] = args.image_token_index
    out = export(args.to, args.config, args.checkpoint, args.out_dir,
                 dtype=dtype_arg(args.dtype), weights_only=not args.no_weights_only,
                 **options)
    rep = out['report']
    print_report(rep, *rep.info.get('notes', []))
    print(f'wrote {out["out_dir"]} (load with {EXPORTERS[args.to][1]})')
    return out


if __name__ == '__main__':
    main()
