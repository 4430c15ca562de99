"""A short summary at the start of a run, before mmengine's long environment and config dump.

``tools/train.py`` prints :func:`config_summary` (read from the config alone: nothing is built
yet) and the ``RunSummaryHook`` that ``prepare_launch`` adds logs the same lines plus what only
the built run knows (parameters, dataset sizes, iterations per epoch) to the log file when
training starts::

    vlp run: configs/clip/clip_tiny_demo.py -> work_dirs/clip_tiny_demo
      model      CLIP (vision TimmTower vit_base_patch16_clip_quickgelu_224, text TextTransformer)
      params     1.37 M, 1.37 M trainable
      train      DemoImageText (5000 samples), batch 128 x 1 process = 128, 40 iterations/epoch
      val/test   DemoImageText / DemoImageText
      schedule   EpochBasedTrainLoop, 15 epochs; AdamW lr 0.001
      engine     Runner (single process), fp32
      checkpoints every 15 epochs in work_dirs/clip_tiny_demo, keep 1; resume: no
"""
import os
from typing import List, Optional

from mmengine.hooks import Hook

from vlp.registry import HOOKS


def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _parts(model: dict) -> str:
    parts = []
    for k, v in model.items():
        if isinstance(v, dict) and isinstance(v.get('type'), str) and k not in (
                'data_preprocessor', 'tokenizer'):
            name = v.get('model_name') or v.get('pretrained') if v['type'] == 'TimmTower' else None
            parts.append(f'{k} {v["type"]}' + (f' {name}' if isinstance(name, str) else ''))
    return ', '.join(parts[:4]) + (', ...' if len(parts) > 4 else '')


def _world_size() -> int:
    try:
        return int(os.environ.get('WORLD_SIZE', '1'))
    except ValueError:
        return 1


def config_summary(cfg, config_path: Optional[str] = None) -> List[str]:
    """The summary lines that the config alone gives."""
    model = cfg.get('model') or {}
    lines = [f'vlp run: {config_path or cfg.filename} -> {cfg.get("work_dir")}']
    if model:
        lines.append(f'  model      {model.get("type")} ({_parts(model)})')
    train = cfg.get('train_dataloader')
    ws = _world_size()
    if train:
        bs = train.get('batch_size')
        ds = _get(train, 'dataset', 'type')
        total = bs * ws if isinstance(bs, int) else '?'
        lines.append(f'  train      {ds}, batch {bs} x {ws} process(es) = {total}, '
                     f'{train.get("num_workers", 0)} worker(s) each')
    evals = [_get(cfg.get(k) or {}, 'dataset', 'type') for k in ('val_dataloader', 'test_dataloader')]
    if any(evals):
        lines.append(f'  val/test   {evals[0] or "-"} / {evals[1] or "-"}')
    tc = cfg.get('train_cfg') or {}
    length = (f'{tc["max_epochs"]} epochs' if 'max_epochs' in tc else
              f'{tc.get("max_iters")} iterations')
    opt = _get(cfg.get('optim_wrapper') or {}, 'optimizer') or {}
    lines.append(f'  schedule   {tc.get("type", "by_epoch" if tc.get("by_epoch") else "loop")}, '
                 f'{length}; {opt.get("type")} lr {opt.get("lr")}')
    strategy = cfg.get('strategy')
    if strategy:
        zero = _get(strategy, 'zero_optimization', 'stage', default=0)
        prec = ('bf16' if _get(strategy, 'bf16', 'enabled') else
                'fp16' if _get(strategy, 'fp16', 'enabled') else 'fp32')
        engine = f'DeepSpeed ZeRO-{zero}, {prec}'
    else:
        wrapper = _get(cfg.get('optim_wrapper') or {}, 'type') or 'OptimWrapper'
        prec = 'mixed precision (AMP)' if wrapper == 'AmpOptimWrapper' else 'fp32'
        launcher = cfg.get('launcher', 'none')
        engine = f'Runner ({"DDP" if launcher != "none" else "single process"}), {prec}'
    lines.append(f'  engine     {engine}' + (', gradient checkpointing'
                                              if model.get('grad_checkpointing') else ''))
    ck = _get(cfg.get('default_hooks') or {}, 'checkpoint') or {}
    unit = 'epochs' if ck.get('by_epoch', 'max_epochs' in tc) else 'iterations'
    keep = ck.get('max_keep_ckpts', -1)
    resume = (cfg.get('load_from') or 'the newest complete checkpoint') if cfg.get('resume') \
        else 'no'
    lines.append(f'  checkpoints every {ck.get("interval", 1)} {unit} in {cfg.get("work_dir")}, '
                 f'keep {"all" if keep is None or keep < 0 else keep}; resume: {resume}'
                 + (f'; weights from {cfg.load_from}' if cfg.get('load_from') and
                    not cfg.get('resume') else ''))
    return lines


@HOOKS.register_module()
class RunSummaryHook(Hook):
    """Logs the run summary (:func:`config_summary` plus parameters and data sizes) when
    training starts, so the log file opens with it too."""
    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        lines = config_summary(runner.cfg)
        model = runner.model
        while hasattr(model, 'module') and not isinstance(getattr(model, 'module'), type(None)):
            if model.module is model:
                break
            model = model.module
        params = list(model.parameters())
        total = sum(getattr(p, 'ds_numel', p.numel()) for p in params)
        trainable = sum(getattr(p, 'ds_numel', p.numel()) for p in params if p.requires_grad)
        lines.insert(2, f'  params     {total / 1e6:.2f} M, {trainable / 1e6:.2f} M trainable')
        try:
            size = len(runner.train_dataloader.dataset)
            per_epoch = len(runner.train_dataloader)
            lines = [ln.replace('  train      ', f'  train      {size} samples, '
                                f'{per_epoch} iterations/epoch; ', 1) for ln in lines]
        except TypeError:
            pass
        runner.logger.info('\n'.join(lines))
