"""Command-line pieces the converters in ``tools/convert/`` share."""
import argparse
import json
import os
from typing import Callable, List, Optional

import torch

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16, 'keep': None}


def make_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of a converter whose ``--help`` shows its whole docstring: the first
    paragraph as the description, the rest (usage, notes) as the epilog, line breaks kept
    (a first docstring line alone was cut mid-sentence)."""
    head, _, rest = doc.strip().partition('\n\n')
    return argparse.ArgumentParser(description=head, epilog=rest.strip() or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_token_id_args(parser, *names: str) -> None:
    """``--<name>-token-id`` options (validated against the vocabulary by the converter)."""
    helps = dict(
        eot='id of the token whose state the text tower pools (default: from the source '
            'config; none: argmax of the ids)',
        enc='[ENC] id (default: the tokenizer\'s [ENC], else [DEC] + 1)',
        dec='[DEC] id, the caption decoder\'s first token (default: the HF text config\'s '
            'bos_token_id)')
    for name in names:
        parser.add_argument(f'--{name}-token-id', type=int, default=None, help=helps[name])


def dtype_arg(name: str) -> Optional[torch.dtype]:
    """``--dtype`` choice -> torch dtype (``keep`` -> ``None``)."""
    return DTYPES[name]


def add_dtype_arg(parser, default: str = 'fp32') -> None:
    parser.add_argument('--dtype', default=default, choices=list(DTYPES),
                        help=f'dtype of the floating tensors written (default {default})')


def add_drop_keys_arg(parser) -> None:
    parser.add_argument('--drop-keys', nargs='*', default=[], metavar='REGEX',
                        help='source keys (full-match regexes) to drop on purpose')


def add_weights_only_arg(parser) -> None:
    parser.add_argument('--no-weights-only', action='store_true',
                        help='unpickle the checkpoint fully (only for files you trust)')


def add_tokenizer_args(parser, default_note: str) -> None:
    """``--vocab-file`` / ``--tokenizer-file`` / ``--no-tokenizer`` (BERT vocabularies)."""
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument('--vocab-file', help=f'BERT vocab.txt to copy and name in the config '
                     f'({default_note})')
    tok.add_argument('--tokenizer-file', help='BERT tokenizer.json to copy and name')
    tok.add_argument('--no-tokenizer', action='store_true', help='write no tokenizer')


def print_report(report, *lines: str) -> None:
    """The converters' summary: ``lines`` then the report's key groups."""
    for line in list(lines) + report.lines():
        print(line)


def open_clip_main(argv: Optional[List[str]], convert_fn: Callable, description: str,
                   example_model: str, weights_help: str) -> dict:
    """The command line of the open_clip converters (CLIP and CoCa)."""
    parser = make_parser(description)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--model-name', help=f"open_clip model name, e.g. '{example_model}'")
    src.add_argument('--model-config', help='open_clip model config JSON file')
    parser.add_argument('--checkpoint', required=True, help=weights_help)
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument('--tokenizer', default='auto',
                     help="tokenizer vocabulary file to copy (default: open_clip's bundled "
                          'BPE vocabulary when the model uses it)')
    tok.add_argument('--no-tokenizer', action='store_true', help='no tokenizer in the config')
    parser.add_argument('--mean', type=float, nargs=3, help='image mean, 0-1 scale')
    parser.add_argument('--std', type=float, nargs=3, help='image std, 0-1 scale')
    add_token_id_args(parser, 'eot')
    add_dtype_arg(parser)
    add_weights_only_arg(parser)
    args = parser.parse_args(argv)
    if args.model_name:
        import open_clip
        model_cfg = open_clip.get_model_config(args.model_name)
        if model_cfg is None:
            parser.error(f'unknown open_clip model {args.model_name!r}')
    else:
        with open(args.model_config) as f:
            model_cfg = json.load(f)
    out = convert_fn(model_cfg, args.checkpoint, args.out_dir,
                     tokenizer=None if args.no_tokenizer else args.tokenizer,
                     dtype=dtype_arg(args.dtype), mean=args.mean, std=args.std,
                     model_name=args.model_name or '', weights_only=not args.no_weights_only,
                     eot_token_id=args.eot_token_id)
    print_written(out)
    return out


def print_written(out: dict) -> None:
    """The converters' last lines: what was written and how to use it."""
    print(f'wrote {out["config"]} and {out["checkpoint"]}')
    for path in out.get('eval_configs') or []:
        print(f'  evaluate: python tools/test.py {path} {out["checkpoint"]}')
    print(f'  use: vlp.apis.init_model({os.path.dirname(out["config"])!r})')
