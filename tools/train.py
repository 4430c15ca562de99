"""Train a vlp model from a config (OpenMMLab ``tools/train.py`` conventions).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]

- ``--work-dir`` defaults to ``cfg.work_dir`` or ``./work_dirs/<config name>``.
- ``--resume`` alone resumes from the newest complete checkpoint in the work dir (the one
  ``last_checkpoint`` names, or, if a save was interrupted, the newest complete one before
  it: vlp/engine/hooks/checkpoint.py); with a path, from that checkpoint (a ``.pth`` file,
  or a DeepSpeed checkpoint directory), checked for completeness first.
- ``--amp``: mixed precision. With mmengine's Runner the optim wrapper becomes
  ``AmpOptimWrapper`` (float16 + loss scaling on GPUs, bfloat16 autocast on CPU, see
  :mod:`vlp.engine.optim.amp`); with a DeepSpeed strategy it turns on the strategy's
  ``bf16`` (unless the config already chose fp16/bf16).
- A config with ``strategy`` runs on mmengine's ``FlexibleRunner`` (DeepSpeed), any
  other on ``Runner`` (single process or DDP); ``runner_type`` in the config overrides.
- ``test_after_train = True`` in a config runs its test loop once training ends (the
  demo configs report their test split this way).
- The process group is set up here, device-aware: ``env_cfg.dist_cfg.backend='auto'``
  is nccl on CUDA and gloo otherwise, so ``tools/dist_train.sh`` also runs on CPUs.
"""
import argparse
import os
import os.path as osp
import sys

# vlp from this checkout even when not installed
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from vlp.engine.dist import setup_deepspeed_accelerator_env  # noqa: E402

setup_deepspeed_accelerator_env()  # before mmengine.runner imports deepspeed

from mmengine.config import Config  # noqa: E402

from vlp.engine.config_check import (CfgOptionsAction, ConfigError,  # noqa: E402
                                     check_cfg_values, check_options_and_merge)
from vlp.engine.hooks.checkpoint import (checkpoint_problem,  # noqa: E402
                                         find_resumable_checkpoint)
from vlp.engine.launch import build_runner, finish_launch, prepare_launch  # noqa: E402
from vlp.engine.preflight import TEST_PARTS, TRAIN_PARTS, run_preflight  # noqa: E402,F401
from vlp.engine.summary import config_summary  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a vlp model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a value, from the latest checkpoint '
        'in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision training')
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
    # torch.distributed.launch passes --local_rank (older) or --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args) -> Config:
    """Apply the command line to the config; a ``--cfg-options`` key that nothing would
    read raises :class:`~vlp.engine.config_check.ConfigError`."""
    check_options_and_merge(cfg, args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        if cfg.get('strategy') is not None:
            strategy = cfg.strategy
            if not (strategy.get('fp16') or {}).get('enabled') and \
                    not (strategy.get('bf16') or {}).get('enabled'):
                strategy.bf16 = dict(enabled=True)
        else:
            wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
            if wrapper_type == 'AmpOptimWrapper':
                print('AMP is already on in the config (AmpOptimWrapper)')
            else:
                assert wrapper_type == 'OptimWrapper', (
                    f'--amp works with OptimWrapper only, the config has {wrapper_type}')
                cfg.optim_wrapper.type = 'AmpOptimWrapper'
                cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.resume == 'auto':
        # the newest *complete* checkpoint (an interrupted save is never picked)
        cfg.load_from = find_resumable_checkpoint(cfg.work_dir)
        cfg.resume = cfg.load_from is not None
        if not cfg.resume:
            print(f'--resume: no checkpoint in {cfg.work_dir}; training from the start')
    elif args.resume is not None:
        problem = checkpoint_problem(args.resume)
        if problem is not None:
            raise FileNotFoundError(f'--resume {args.resume}: cannot resume from it ({problem}); '
                                    'give another checkpoint, or --resume alone for the newest '
                                    'complete one in the work dir')
        cfg.resume = True
        cfg.load_from = args.resume
    cfg.launcher = args.launcher
    return cfg


def main(argv=None):
    args = parse_args(argv)
    try:  # bad options or impossible values: a short message before anything is built
        cfg = merge_args(Config.fromfile(args.config), args)
        check_cfg_values(cfg, args.cfg_options)
    except (ConfigError, FileNotFoundError) as err:  # FileNotFoundError: config, --resume
        print(f'train.py: error: {err}', file=sys.stderr)
        raise SystemExit(2)
    # every file the config names, all reported at once, before anything is built
    run_preflight(cfg, args.config, 'train.py', parts=TRAIN_PARTS + (TEST_PARTS if cfg.get('test_after_train') else ()),
                  dry_run=args.dry_run, skip=args.skip_preflight, what_for='training')
    if int(os.environ.get('RANK', '0')) == 0:  # before mmengine's long dump
        print('\n'.join(config_summary(cfg, args.config)), flush=True)
    prepare_launch(cfg)
    runner = build_runner(cfg)
    runner.train()
    if cfg.get('test_after_train', False):
        # demo configs report the test split at the end of training
        runner.test()
    finish_launch(cfg)
    return runner


if __name__ == '__main__':
    main()
