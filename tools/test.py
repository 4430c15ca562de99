"""Evaluate a checkpoint on the config's test set (OpenMMLab ``tools/test.py`` conventions).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options key=value ...]
        [--launcher none|pytorch|slurm|mpi]

Runs ``test_dataloader`` / ``test_evaluator`` / ``test_cfg`` of the config. CHECKPOINT is
a ``.pth`` file (read weights-only, see :mod:`vlp.engine.checkpoint`) or, for a config
with a DeepSpeed ``strategy``, a DeepSpeed checkpoint directory. Metrics are logged and
written to ``<work_dir>/<timestamp>/<timestamp>.json``.
"""
import argparse
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
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


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
    prepare_launch(cfg)
    runner = build_runner(cfg)
    metrics = runner.test()
    finish_launch(cfg)
    return metrics


if __name__ == '__main__':
    main()
