"""CapFilt: caption a web image-text dataset and filter its captions (BLIP, Li et al.
2022, Sec. 3.3, and LAION-style recaptioning), with the data engine of
:mod:`vlp.capfilt` (docs/capfilt.md).

A config (configs/capfilt/*.py) names the input, the output and the stages::

    python tools/capfilt.py CONFIG [--input PATH] [--output PATH] [--img-root DIR]
        [--work-dir DIR] [--device cpu|cuda] [--batch-size N] [--num-workers N] [--seed N]
        [--max-units N] [--overwrite] [--no-progress] [--launcher none|pytorch|slurm|mpi]
        [--cfg-options KEY=VALUE ...]

    tools/dist_capfilt.sh CONFIG NPROC [capfilt.py args...]    # torchrun; NNODES etc.

JSON / CSV in -> the same format out; shards in -> one shard per input shard. Restarted
with the same command, a run resumes (finished units skipped; the output byte for byte
that of an uninterrupted run). Exit codes: 0 complete, 3 incomplete (``--max-units``, or
units whose input could not be read: rerun), 2 a configuration or input error, 1 data
that are mostly broken.

BLIP's rule on one JSON file, the form of earlier versions (still supported)::

    python tools/capfilt.py ANN_FILE OUT_FILE --captioner CFG [CKPT] --filter CFG [CKPT] \\
        --img-root DIR [--threshold 0.5] [--num-captions 1] [--top-p 0.9] [--top-k 50] \\
        [--repetition-penalty 1.1] [--max-length 30] [--min-length 5] \\
        [--prompt 'a picture of '] [--batch-size 32] [--num-workers 0] \\
        [--device cpu|cuda] [--seed 0] [--keep-empty] [--no-synthetic] [--no-filter-web]

It runs the same engine with ``[Captioner(num_captions), ITMFilter(threshold)]``,
writes ``OUT_FILE`` and ``OUT_FILE.summary.json`` and prints the summary.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from mmengine.config import Config, DictAction  # noqa: E402

_LEGACY_FLAGS = ('--captioner', '--filter', '--no-synthetic', '--no-filter-web')


# ------------------------------------------------------------------------ config form
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='CapFilt data engine: caption and filter an image-text dataset '
                    '(docs/capfilt.md)')
    p.add_argument('config', help='a CapFilt config (configs/capfilt/*.py)')
    p.add_argument('--input', help='input.path: a JSON / CSV file or shards (brace pattern, '
                                   'glob, .txt list)')
    p.add_argument('--output', help='output.path: a file (JSON / CSV) or a folder (shards)')
    p.add_argument('--img-root', help='input.img_root (JSON / CSV image paths)')
    p.add_argument('--format', choices=('json', 'csv', 'shards'), help='input.format')
    p.add_argument('--work-dir', help='output.work_dir (default: OUTPUT.capfilt)')
    p.add_argument('--device', help='runtime.device (default auto: cuda:LOCAL_RANK or cpu)')
    p.add_argument('--batch-size', type=int, help='runtime.batch_size')
    p.add_argument('--num-workers', type=int, help='runtime.num_workers (decoding threads)')
    p.add_argument('--seed', type=int, help='runtime.seed')
    p.add_argument('--max-units', type=int, help='stop each rank after N units (exit 3 '
                                                 'until complete; rerun to continue)')
    p.add_argument('--overwrite', action='store_true',
                   help='forget the finished units of an earlier run in the work folder')
    p.add_argument('--no-progress', action='store_true', help='no progress lines')
    p.add_argument('--launcher', default='none', choices=('none', 'pytorch', 'slurm', 'mpi'))
    p.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config keys, e.g. stages.1.threshold=0.6')
    return p.parse_args(argv)


def check_capfilt_options(cfg: Config, path: str, options: dict) -> None:
    """``--cfg-options`` may set what the CapFilt config has (``stages.1.threshold``,
    ``runtime.batch_size``) or add a key to a dict it has (``input.caption_key``); anything
    else is a typo that would change nothing: a ``ValueError`` naming the nearest keys."""
    from vlp.engine.config_check import _flatten, suggest
    flat = _flatten(cfg.to_dict())
    bad = []
    for key in options:
        parent = key.rpartition('.')[0]
        if key in flat or (parent and isinstance(flat.get(parent), dict)):
            continue
        near = suggest(key, flat)
        bad.append(f'  {key}' + (f': did you mean {" or ".join(near)}?' if near else ''))
    if bad:
        raise ValueError(f'--cfg-options: {len(bad)} key(s) that {path} does not have:\n'
                         + '\n'.join(bad))


def load_config(args) -> Config:
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config {args.config} not found')
    try:
        cfg = Config.fromfile(args.config)
    except Exception as e:  # noqa: BLE001 - an unreadable config stops everything, clearly
        raise ValueError(f'cannot read config {args.config}: {type(e).__name__}: {e}') \
            from None
    if args.cfg_options:
        check_capfilt_options(cfg, args.config, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    for key, path in (('input', ('path', args.input)), ('input', ('img_root', args.img_root)),
                      ('input', ('format', args.format)), ('output', ('path', args.output)),
                      ('output', ('work_dir', args.work_dir))):
        if path[1] is not None:
            cfg.setdefault(key, {})
            cfg[key][path[0]] = path[1]
    runtime = cfg.get('runtime') or {}
    for name in ('device', 'batch_size', 'num_workers', 'seed'):
        value = getattr(args, name)
        if value is not None:
            runtime[name] = value
    cfg.runtime = runtime
    return cfg


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in _LEGACY_FLAGS or a.split('=')[0] in _LEGACY_FLAGS for a in argv):
        return legacy_main(argv)
    args = parse_args(argv)
    from vlp.capfilt import EXIT_INCOMPLETE, CapFiltDataError, CapFiltEngine
    try:
        cfg = load_config(args)
        engine = CapFiltEngine(cfg, args.launcher, args.max_units, args.overwrite,
                               not args.no_progress)
        summary = engine.run()
    except CapFiltDataError as e:
        sys.stderr.write(f'capfilt: error: {e}\n')
        sys.exit(1)
    except (ValueError, FileNotFoundError, OSError, KeyError) as e:
        sys.stderr.write(f'capfilt: error: {e}\n')
        sys.exit(2)
    if summary is not None:
        _report(summary, engine.summary_path)
        if not summary['complete']:
            sys.exit(EXIT_INCOMPLETE)
    return summary


def _report(summary: dict, path: str) -> None:
    f = summary['fractions']
    u = summary['units']
    lines = [
        f'capfilt: {"complete" if summary["complete"] else "INCOMPLETE"}: units {u["done"]}'
        f'/{u["total"]} done' + (f', {len(u["failed"])} failed' if u['failed'] else '')
        + (f', {len(u["pending"])} pending' if u['pending'] else ''),
        f'  images {summary["images"]:,} (skipped {summary["samples_skipped"]:,}: '
        f'{summary["skipped"]}), kept {summary["images_kept"]:,}, dropped '
        f'{summary["images_dropped"]:,}',
        f'  web captions {summary["web_captions"]:,}: kept {summary["web_kept"]:,}, removed '
        f'{summary["web_removed"]:,} ({f["web_removed"]})',
        f'  synthetic captions {summary["synthetic_captions"]:,}: kept '
        f'{summary["synthetic_kept"]:,} ({f["synthetic_added_per_web_caption"]} per web '
        'caption)',
        f'  this run: {summary["timing"]["this_run"]["images"]:,} images, '
        f'{summary["timing"]["this_run"]["images_per_second"]} images/s',
        f'  summary: {path}']
    sys.stderr.write('\n'.join(lines) + '\n')


# ------------------------------------------------------------------------ legacy form
def parse_legacy_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="BLIP's CapFilt: caption web images with a captioner and keep the web "
                    'and synthetic captions an ITM filter accepts')
    parser.add_argument('ann_file', help='input annotation JSON ([{"image", "caption"}])')
    parser.add_argument('out_file', help='output annotation JSON (same format)')
    parser.add_argument('--captioner', nargs='+', metavar=('CONFIG', 'CHECKPOINT'),
                        help='captioner config [checkpoint] (a model with generate)')
    parser.add_argument('--filter', nargs='+', metavar=('CONFIG', 'CHECKPOINT'),
                        required=True, help='filter config [checkpoint] (a model with '
                                            'itm_score)')
    parser.add_argument('--img-root', default='', help='folder the image paths are under')
    parser.add_argument('--threshold', type=float, default=0.5,
                        help='keep a caption when its ITM match probability is >= this')
    parser.add_argument('--num-captions', type=int, default=1,
                        help='synthetic captions sampled per image')
    parser.add_argument('--top-p', type=float, default=0.9, help='nucleus sampling mass')
    parser.add_argument('--top-k', type=int, default=50,
                        help='top-k before top-p (0: off; BLIP: 50, the HF default)')
    parser.add_argument('--repetition-penalty', type=float, default=1.1,
                        help="repetition penalty (BLIP's sampling: 1.1)")
    parser.add_argument('--max-length', type=int, default=30,
                        help='max tokens, [DEC] and prompt included')
    parser.add_argument('--min-length', type=int, default=5,
                        help='min tokens, [DEC] and prompt included')
    parser.add_argument('--prompt', default=None,
                        help="caption prompt (default: the captioner's own, BLIP: "
                             "'a picture of ')")
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--num-workers', type=int, default=0, help='image decoding threads')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--keep-empty', action='store_true',
                        help='keep images with no caption left (caption: [])')
    parser.add_argument('--no-synthetic', action='store_true',
                        help='no captioner: only filter the web captions')
    parser.add_argument('--no-filter-web', action='store_true',
                        help='keep every web caption (filter only the synthetic ones)')
    args = parser.parse_args(argv)
    for name in ('captioner', 'filter'):
        value = getattr(args, name)
        if value is not None and len(value) > 2:
            parser.error(f'--{name} takes CONFIG [CHECKPOINT], got {value}')
    if args.captioner is None and not args.no_synthetic:
        parser.error('--captioner is required unless --no-synthetic')
    if args.no_synthetic and args.no_filter_web:
        parser.error('--no-synthetic with --no-filter-web leaves nothing to do')
    return args


def _model(value):
    return dict(config=value[0], checkpoint=value[1] if len(value) > 1 else None)


def legacy_config(args) -> dict:
    """The config the earlier command line stands for (BLIP's rule)."""
    stages = []
    if not args.no_synthetic:
        stages.append(dict(
            type='Captioner', model=_model(args.captioner), num_captions=args.num_captions,
            prompt=args.prompt, dedupe=False,
            decoding=dict(do_sample=True, num_beams=1, top_p=args.top_p, top_k=args.top_k,
                          repetition_penalty=args.repetition_penalty,
                          max_length=args.max_length, min_length=args.min_length)))
    stages.append(dict(type='ITMFilter', model=_model(args.filter), threshold=args.threshold,
                       apply_to='synthetic' if args.no_filter_web else 'all'))
    return dict(
        input=dict(path=args.ann_file, format='json', img_root=args.img_root or ''),
        output=dict(path=args.out_file, keep_empty=args.keep_empty, web='kept',
                    work_dir=args.out_file + '.capfilt'),
        stages=stages,
        runtime=dict(batch_size=args.batch_size, num_workers=args.num_workers,
                     seed=args.seed, device=args.device, max_skip_fraction=0.5))


def legacy_main(argv=None) -> dict:
    args = parse_legacy_args(argv)
    from vlp.capfilt import CapFiltDataError, CapFiltEngine
    from vlp.engine.safe_io import atomic_write_text
    try:
        engine = CapFiltEngine(legacy_config(args), progress=False)
        summary = engine.run()
    except CapFiltDataError as e:
        sys.stderr.write(f'capfilt: error: {e}\n')
        sys.exit(1)
    except (ValueError, FileNotFoundError, OSError, KeyError) as e:
        sys.stderr.write(f'capfilt: error: {e}\n')
        sys.exit(2)
    cap = next((s for s in engine.stages if s.name == 'captioner'), None)
    summary.update(threshold=args.threshold,
                   num_captions=0 if args.no_synthetic else args.num_captions,
                   filter_web=not args.no_filter_web, synthetic=not args.no_synthetic,
                   seed=args.seed, batch_size=args.batch_size,
                   ann_file=args.ann_file, out_file=args.out_file)
    if cap is not None:
        summary['decoding'] = dict(cap.decoding, prompt=getattr(cap.model, 'prompt', None)
                                   if cap.prompt is None
                                   else cap.prompt)
    atomic_write_text(engine.summary_path, json.dumps(summary, indent=2, default=str) + '\n')
    print(json.dumps(summary, indent=2, default=str))
    return summary


if __name__ == '__main__':
    main()
