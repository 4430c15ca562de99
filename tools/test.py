"""Evaluate a checkpoint on the config's test set (OpenMMLab ``tools/test.py`` conventions).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options key=value ...]
        [--out FILE] [--show-dir DIR] [--non-strict] [--launcher none|pytorch|slurm|mpi]

Runs ``test_dataloader`` / ``test_evaluator`` / ``test_cfg`` of the config. CHECKPOINT is
a ``.pth`` / ``.safetensors`` file (read weights-only, see :mod:`vlp.engine.checkpoint`)
or a DeepSpeed checkpoint directory of any ZeRO stage. Metrics are logged, written to
``<work_dir>/<timestamp>/<timestamp>.json`` and to TensorBoard (``vis_backends``).

- The checkpoint must fit the config's model exactly: a missing, unexpected or mis-shaped
  key stops the run before anything is built, listing the first ones (``--non-strict``
  loads the matching tensors and logs the rest).
- ``--out FILE``: the predictions with the samples' ids as JSON (captions, answers, the
  top classes, retrieval rankings; :mod:`vlp.engine.predictions`), and the metrics.
- ``--show-dir DIR``: pictures of a sample of the test set with the predictions under each
  image (``--show-num``).
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from vlp.engine.dist import setup_deepspeed_accelerator_env  # noqa: E402

setup_deepspeed_accelerator_env()  # before mmengine.runner imports deepspeed

from mmengine.config import Config  # noqa: E402

from vlp.engine.config_check import (CfgOptionsAction, ConfigError,  # noqa: E402
                                     check_cfg_values, check_options_and_merge)
from vlp.engine.launch import build_runner, finish_launch, prepare_launch  # noqa: E402
from vlp.engine.preflight import TEST_PARTS, TRAIN_PARTS, run_preflight  # noqa: E402,F401


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (evaluate) a vlp model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file or DeepSpeed checkpoint dir')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        help='override config settings, key=value pairs (xxx=yyy, a.b=c, k=[a,b]); a key '
        'the config lacks must be one something reads (vlp/engine/config_check.py)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the resolved config and the preflight report (every file '
                        'the config needs that is missing) and exit')
    parser.add_argument('--skip-preflight', action='store_true',
                        help='start even if files the config names are missing')
    parser.add_argument('--non-strict', action='store_true',
                        help='load a checkpoint that does not fit the model exactly (the '
                        'matching tensors; the others are logged)')
    parser.add_argument('--out', help='write the predictions (with sample ids) and the '
                        'metrics to this JSON file')
    parser.add_argument('--show-dir', help='draw pictures of the predictions of a sample of '
                        'the test set into this folder')
    parser.add_argument('--show-num', type=int, default=16,
                        help='samples drawn with --show-dir (default 16)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def check_checkpoint(cfg: Config, checkpoint: str) -> None:
    """The checkpoint's keys and shapes against the config's model, built on the meta
    device (no weights, no files): a :class:`vlp.apis.CheckpointMismatchError` listing the
    first differences."""
    import torch
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    from vlp.apis import CheckpointMismatchError, state_dict_mismatch
    from vlp.engine.checkpoint import read_state_dict
    from vlp.models.algorithms.base import without_weights
    from vlp.registry import MODELS
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'vlp'))
    with torch.device('meta'):
        model = MODELS.build(without_weights(cfg.model.to_dict()))
    problem = state_dict_mismatch(model, read_state_dict(checkpoint), checkpoint)
    if problem:
        raise CheckpointMismatchError(
            f'{problem}. Test with the config the weights were trained or converted with '
            '(a converter writes config.py and eval_*.py beside model.pth), or pass '
            '--non-strict to load the matching tensors anyway')


def add_prediction_dump(cfg: Config, args) -> None:
    """``--out`` / ``--show-dir``: a :class:`~vlp.engine.predictions.DumpPredictions`
    beside the config's metrics."""
    import vlp.engine.predictions  # noqa: F401  (registers DumpPredictions)
    evaluator = cfg.test_evaluator
    metrics = list(evaluator) if isinstance(evaluator, (list, tuple)) else (
        list(evaluator['metrics']) if 'metrics' in evaluator and 'type' not in evaluator
        else [evaluator])
    metrics.append(dict(type='DumpPredictions', out_file=args.out, show_dir=args.show_dir,
                        num_show=args.show_num))
    if isinstance(evaluator, dict) and 'metrics' in evaluator and 'type' not in evaluator:
        cfg.test_evaluator['metrics'] = metrics
    else:
        cfg.test_evaluator = metrics


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    try:  # bad options or impossible values: a short message before anything is built
        check_options_and_merge(cfg, args.cfg_options)
        check_cfg_values(cfg, args.cfg_options)
    except ConfigError as err:
        print(f'test.py: error: {err}', file=sys.stderr)
        raise SystemExit(2)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    cfg.launcher = args.launcher
    for key in ('test_dataloader', 'test_evaluator', 'test_cfg'):
        if cfg.get(key) is None:
            raise KeyError(f'{args.config} has no {key}: nothing to test')
    # every file the config names (and the checkpoint), all reported at once
    run_preflight(cfg, args.config, 'test.py', parts=TEST_PARTS,
                  dry_run=args.dry_run, skip=args.skip_preflight, what_for='testing')
    if not args.non_strict:
        check_checkpoint(cfg, args.checkpoint)
    if args.out or args.show_dir:
        add_prediction_dump(cfg, args)
    prepare_launch(cfg)
    runner = build_runner(cfg)
    metrics = runner.test()
    finish_launch(cfg)
    if args.out and osp.isfile(args.out):  # the main process wrote the predictions
        with open(args.out) as f:
            payload = json.load(f)
        payload = dict(config=osp.abspath(args.config), checkpoint=osp.abspath(args.checkpoint),
                       metrics={k: v for k, v in (metrics or {}).items()
                                if isinstance(v, (int, float, str))}, **payload)
        with open(args.out, 'w') as f:
            json.dump(payload, f, indent=1)
    return metrics


if __name__ == '__main__':
    from vlp.apis import CheckpointMismatchError
    try:
        main()
    except CheckpointMismatchError as err:
        print(f'test.py: error: {err}', file=sys.stderr)
        raise SystemExit(1)
