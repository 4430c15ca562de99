"""Test helpers for the engine: a tiny contrastive two-tower model, an in-memory paired
dataset, a retrieval metric and hooks that record per-rank losses.

Imported by the engine/tools tests and, in subprocess runs, through the generated
config's ``custom_imports`` (the test puts this directory on ``PYTHONPATH``).

The loss is an InfoNCE over the *global* batch (features all-gathered with gradient,
like CLIP), so it depends on which samples share a batch, and a 2-rank run with
per-rank batch B computes exactly the loss of a 1-rank run with batch 2B.
"""
import json
import os
import os.path as osp
import random
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook

from vlp.models.algorithms.base import VLPModel
from vlp.registry import DATASETS, HOOKS, METRICS, MODELS


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradient from every rank (open_clip's
    ``gather_with_grad``): every rank computes the same global loss."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ws = dist.get_world_size()
        comm = x.detach().float().contiguous()
        out = [torch.empty_like(comm) for _ in range(ws)]
        dist.all_gather(out, comm)
        ctx.rank, ctx.ws, ctx.n, ctx.dtype = dist.get_rank(), ws, x.shape[0], x.dtype
        return torch.cat(out).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.float().contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n].to(ctx.dtype)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _GatherWithGrad.apply(x)
    return x


@MODELS.register_module()
class ToyContrastive(VLPModel):
    """Linear/MLP image tower + bag-of-tokens text tower, symmetric InfoNCE.

    Args:
        image_size: side of the square images.
        vocab_size, embed_dim: text vocabulary and joint embedding size.
        drop: dropout in the image MLP (exercises the torch RNG on resume).
    """

    def __init__(self, image_size: int = 8, vocab_size: int = 32, embed_dim: int = 16,
                 hidden: int = 32, drop: float = 0.0, grad_checkpointing: bool = False,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.image_mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(3 * image_size * image_size, hidden), nn.GELU(),
            nn.Dropout(drop), nn.Linear(hidden, embed_dim))
        self.token_embed = nn.Embedding(vocab_size, embed_dim)
        self.text_proj = nn.Linear(embed_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))
        self.grad_checkpointing = grad_checkpointing

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def extract_feat(self, inputs: dict) -> Dict[str, torch.Tensor]:
        images = inputs['images']
        if self.grad_checkpointing and self.training:
            from torch.utils.checkpoint import checkpoint
            img = checkpoint(self.image_mlp, images, use_reentrant=False)
        else:
            img = self.image_mlp(images)  # (B, D)
        tok = self.token_embed(inputs['input_ids'])  # (B, L, D)
        mask = inputs['attention_mask'].unsqueeze(-1).to(tok.dtype)
        txt = self.text_proj((tok * mask).sum(1) / mask.sum(1).clamp(min=1))  # (B, D)
        return dict(image_feat=F.normalize(img, dim=-1), text_feat=F.normalize(txt, dim=-1))

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        # a 0-dim parameter, like CLIP's: DeepSpeed must hand it back with its shape
        assert self.logit_scale.dim() == 0, self.logit_scale.shape
        feats = self.extract_feat(inputs)
        img = gather_with_grad(feats['image_feat'])  # (W*B, D)
        txt = gather_with_grad(feats['text_feat'])
        logits = self.logit_scale.exp() * img @ txt.t()  # (W*B, W*B)
        labels = torch.arange(logits.shape[0], device=logits.device)
        loss = (F.cross_entropy(logits.float(), labels) +
                F.cross_entropy(logits.t().float(), labels)) / 2
        if getattr(self, 'inject_nan', False):  # set by NaNInjectHook
            loss = loss * float('nan')
        return dict(loss_itc=loss, logit_scale=self.logit_scale.detach().exp())

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        feats = self.extract_feat(inputs)
        index = (data_samples or {}).get('index')
        out = []
        for i in range(feats['image_feat'].shape[0]):
            out.append(dict(image_feat=feats['image_feat'][i].float().cpu(),
                            text_feat=feats['text_feat'][i].float().cpu(),
                            index=int(index[i]) if index is not None else i))
        return out


@DATASETS.register_module()
class ToyPairDataset(torch.utils.data.Dataset):
    """``num`` image/caption pairs generated from a fixed seed; captions are token ids
    derived from the image's class so the contrastive task is learnable.

    ``augment=True`` flips images with python's ``random`` and adds numpy noise, so
    a resumed run only matches if the python/numpy RNG states are restored.
    """

    def __init__(self, num: int = 64, image_size: int = 8, length: int = 6,
                 vocab_size: int = 32, num_classes: int = 8, augment: bool = False,
                 seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, num_classes, (num,), generator=g)
        protos = torch.randint(0, 256, (num_classes, 3, image_size, image_size), generator=g)
        noise = torch.randint(-20, 21, (num, 3, image_size, image_size), generator=g)
        self.images = (protos[self.labels] + noise).clamp(0, 255).to(torch.uint8)
        words = torch.randint(1, vocab_size, (num_classes, length), generator=g)
        self.input_ids = words[self.labels].clone()
        self.input_ids[:, -1] = torch.randint(1, vocab_size, (num,), generator=g)
        self.augment = augment
        self.metainfo = dict(classes=tuple(str(i) for i in range(num_classes)))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> dict:
        image = self.images[idx]
        if self.augment:
            if random.random() < 0.5:
                image = image.flip(-1)
            image = (image.int() + int(np.random.randint(0, 8))).clamp(0, 255).to(torch.uint8)
        ids = self.input_ids[idx]
        return dict(image=image, input_ids=ids, attention_mask=torch.ones_like(ids),
                    index=idx)


@METRICS.register_module()
class ToyRetrievalMetric(BaseMetric):
    """Image-to-text recall@1 over the whole evaluation set."""
    default_prefix = 'toy'

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            self.results.append(s)

    def compute_metrics(self, results: list) -> dict:
        results = sorted(results, key=lambda r: r['index'])
        img = torch.stack([r['image_feat'] for r in results])
        txt = torch.stack([r['text_feat'] for r in results])
        sim = img @ txt.t()
        hit = sim.argmax(1) == torch.arange(len(results))
        # pos_sim: a continuous value, so equal metrics mean equal weights
        return dict(i2t_r1=hit.float().mean().item() * 100, pos_sim=sim.diag().mean().item())


@HOOKS.register_module()
class LossRecorderHook(Hook):
    """Appends ``{"iter", "rank", <log vars>}`` per training iteration to
    ``<work_dir>/losses_rank<r>.jsonl`` (one file per rank, survives resumes)."""
    priority = 'NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        rec = dict(iter=runner.iter, rank=rank)
        for k, v in (outputs or {}).items():
            rec[k] = float(v.item() if torch.is_tensor(v) else v)
        with open(osp.join(runner.work_dir, f'losses_rank{rank}.jsonl'), 'a') as f:
            f.write(json.dumps(rec) + '\n')


@HOOKS.register_module()
class ParamDeltaHook(Hook):
    """Records the L2 norm of the change of all (gathered) parameters over training in
    ``self.delta_norm`` and the engine's parameter dtypes in ``self.dtypes``."""

    def _params(self, runner) -> torch.Tensor:
        model = runner.model
        module = getattr(model, 'module', model)
        params = list(module.parameters())
        self.dtypes = {p.dtype for p in params}
        try:
            import deepspeed
            ctx = deepspeed.zero.GatheredParameters(params)  # no-op unless ZeRO-3
        except ImportError:
            import contextlib
            ctx = contextlib.nullcontext()
        with ctx:
            return torch.cat([p.detach().float().reshape(-1).clone() for p in params])

    def before_train(self, runner) -> None:
        self._start = self._params(runner)

    def after_train(self, runner) -> None:
        self.delta_norm = (self._params(runner) - self._start).norm().item()


@HOOKS.register_module()
class ModelStateRecorderHook(Hook):
    """After training, each rank saves its model's full state (buffers, and parameters
    gathered under ZeRO-3) to ``<work_dir>/model_state_rank<r>.pt``; with ``before=True``
    also before training, to ``model_state_before_rank<r>.pt``."""
    priority = 'LOWEST'

    def __init__(self, before: bool = False):
        self.before = before

    def before_train(self, runner) -> None:
        if self.before:
            self._save(runner, 'model_state_before')

    def after_train(self, runner) -> None:
        self._save(runner, 'model_state')

    def _save(self, runner, name: str) -> None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        module = runner.model
        while isinstance(getattr(module, 'module', None), torch.nn.Module):
            module = module.module
        params = list(module.parameters())
        try:
            import deepspeed
            ctx = deepspeed.zero.GatheredParameters(params)  # no-op unless ZeRO-3
        except ImportError:
            import contextlib
            ctx = contextlib.nullcontext()
        with ctx:
            state = {k: v.detach().float().clone() if v.is_floating_point() else v.clone()
                     for k, v in module.state_dict().items()}
        torch.save(state, osp.join(runner.work_dir, f'{name}_rank{rank}.pt'))


def read_losses(work_dir: str, key: str = 'loss') -> Dict[int, float]:
    """Per-iteration ``key`` averaged over the ranks' files in ``work_dir``."""
    per_iter: Dict[int, List[float]] = {}
    files = sorted(f for f in os.listdir(work_dir) if f.startswith('losses_rank'))
    assert files, f'no loss records in {work_dir}'
    for name in files:
        with open(osp.join(work_dir, name)) as f:
            for line in f:
                rec = json.loads(line)
                per_iter.setdefault(rec['iter'], []).append(rec[key])
    n_ranks = len(files)
    assert all(len(v) == n_ranks for v in per_iter.values()), per_iter
    return {i: sum(v) / n_ranks for i, v in sorted(per_iter.items())}


REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
HERE = osp.abspath(osp.dirname(__file__))

# The toy experiment: model, data, optimizer on top of configs/_base_/default_runtime.py.
# prepare_config() turns it (or any vlp config, e.g. configs/clip/clip_tiny_demo.py)
# into a short iteration-based run that records its losses.
TOY_CONFIG = """
_base_ = [{runtime!r}]
model = dict(type='ToyContrastive', drop=0.0)
train_dataloader = dict(
    batch_size=8, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ToyPairDataset', num=64, augment=False))
val_dataloader = dict(
    batch_size=8, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ToyPairDataset', num=16, augment=True))
val_evaluator = dict(type='ToyRetrievalMetric')
val_cfg = dict(type='ValLoop')
test_dataloader = dict(
    batch_size=8, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ToyPairDataset', num=32))
test_evaluator = dict(type='ToyRetrievalMetric')
test_cfg = dict(type='TestLoop')
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2, val_interval=1)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=5e-3, weight_decay=0.05),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=2)]
randomness = dict(seed=1)
"""


def write_toy_config(path: str) -> str:
    with open(path, 'w') as f:
        f.write(TOY_CONFIG.format(runtime=osp.join(REPO, 'configs/_base_/default_runtime.py')))
    return path


def prepare_config(base: str, path: str, *, max_iters: Optional[int] = 8,
                   max_epochs: Optional[int] = None, ckpt_interval: int = 4,
                   batch_size: Optional[int] = None, deepspeed_stage: Optional[int] = None,
                   bf16: bool = False, val: bool = False,
                   options: Optional[dict] = None) -> str:
    """Write ``base`` as a short run to ``path``: ``max_iters`` iterations (or
    ``max_epochs`` epochs) with a checkpoint every ``ckpt_interval`` iterations (epochs),
    per-iteration loss records (:class:`LossRecorderHook`), an iteration-based warm-up +
    cosine schedule, optionally the DeepSpeed strategy (fp32 unless ``bf16``) and a
    validation at every checkpoint; ``options`` are merged last (``--cfg-options`` keys).
    """
    from mmengine.config import Config
    cfg = Config.fromfile(base)
    imports = dict(cfg.get('custom_imports') or {}).get('imports', [])
    imports = [imports] if isinstance(imports, str) else list(imports)
    cfg.custom_imports = dict(imports=imports + ['vlp_toy'], allow_failed_imports=False)
    by_epoch = max_epochs is not None
    if by_epoch:
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                             val_interval=ckpt_interval if val else max_epochs + 1)
        cfg.param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0,
                                    end=max_epochs)]
    else:
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                             val_interval=ckpt_interval if val else max_iters + 1)
        warm = max(1, min(2, max_iters - 1))
        cfg.param_scheduler = [
            dict(type='LinearLR', start_factor=0.2, by_epoch=False, begin=0, end=warm)]
        if max_iters > warm:
            cfg.param_scheduler.append(
                dict(type='CosineAnnealingLR', by_epoch=False, begin=warm, end=max_iters))
    if not val:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=ckpt_interval,
                                        by_epoch=by_epoch, max_keep_ckpts=-1, save_last=True)
    cfg.log_processor = dict(type='LogProcessor', by_epoch=by_epoch, window_size=1)
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='LossRecorderHook')]
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    if deepspeed_stage is not None:
        cfg.strategy = dict(
            type='DeepSpeedStrategy',
            # no persistent (never partitioned) parameters: ZeRO-3 partitions all of them
            zero_optimization=dict(stage=deepspeed_stage, stage3_param_persistence_threshold=0))
        if bf16:
            cfg.strategy['bf16'] = dict(enabled=True)
    if options:
        cfg.merge_from_dict(options)
    cfg.dump(path)
    return path


def train_in_process(config_path: str, work_dir: str, cfg_options: Optional[dict] = None,
                     resume=None):
    """Train like ``tools/train.py`` (no launcher) inside this process; returns the runner."""
    import uuid

    from mmengine.config import Config

    from vlp.engine.launch import build_runner, prepare_launch
    cfg = Config.fromfile(config_path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'{osp.basename(work_dir)}_{uuid.uuid4().hex[:8]}'
    if resume is not None:
        cfg.resume = True
        cfg.load_from = None if resume == 'auto' else resume
    cfg.launcher = 'none'
    prepare_launch(cfg)
    runner = build_runner(cfg)
    runner.train()
    return runner


def test_in_process(config_path: str, checkpoint: str, work_dir: str,
                    cfg_options: Optional[dict] = None) -> dict:
    """``tools/test.py CONFIG CHECKPOINT`` (no launcher) inside this process."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('vlp_tools_test',
                                                  osp.join(REPO, 'tools', 'test.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    import uuid
    options = dict(experiment_name=f'test_{uuid.uuid4().hex[:8]}', **(cfg_options or {}))
    argv = [config_path, checkpoint, '--work-dir', work_dir, '--cfg-options']
    argv += [f'{k}={v}' for k, v in options.items()]
    return tool.main(argv)


test_in_process.__test__ = False  # a helper, not a pytest test


def copy_checkpoint(src: str, work_dir: str) -> str:
    """Put checkpoint ``src`` (file or DeepSpeed directory) into a fresh ``work_dir`` as
    its latest checkpoint, so ``--resume`` (auto) picks it up: the state of a run that
    stopped right after saving it."""
    import shutil
    os.makedirs(work_dir, exist_ok=True)
    dst = osp.join(work_dir, osp.basename(src))
    (shutil.copytree if osp.isdir(src) else shutil.copy)(src, dst)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(dst)
    return dst


def reset_process_group() -> None:
    """Tear down the one-process group an in-process DeepSpeed run created, and the
    process groups DeepSpeed cached from it, so a later run starts clean."""
    try:
        import deepspeed.comm.comm as ds_comm
        import deepspeed.utils.groups as ds_groups
    except ImportError:
        ds_comm = ds_groups = None
    if ds_groups is not None:
        for name, value in list(vars(ds_groups).items()):
            if isinstance(value, dist.ProcessGroup) or type(value).__name__ == 'DeviceMesh':
                setattr(ds_groups, name, None)
            elif isinstance(value, dict) and any(isinstance(v, dist.ProcessGroup)
                                                 for v in value.values()):
                value.clear()
        ds_comm.cdb = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- command-line runs (tools/*.py, tools/dist_*.sh) in subprocesses -------------------------
def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_cli(args: List[str], timeout: int = 600) -> str:
    """Run a command with vlp and this directory importable; returns its output and
    fails with the output's tail when it fails."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHON=sys.executable, MASTER_PORT=str(_free_port()),
               PYTHONPATH=os.pathsep.join([REPO, HERE, os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run(args, env=env, cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if proc.returncode != 0:
        import tempfile
        with tempfile.NamedTemporaryFile('w', suffix='.log', delete=False) as f:
            f.write(proc.stdout)
        lines = proc.stdout.splitlines()
        errors = [ln for ln in lines if 'Error' in ln or 'error' in ln or 'Traceback' in ln]
        raise AssertionError(f'{" ".join(args)} failed ({proc.returncode}), full log in '
                             f'{f.name}; error lines:\n' + '\n'.join(errors[-40:]) +
                             '\n...\n' + '\n'.join(lines[-40:]))
    return proc.stdout


def cli_train(config: str, work_dir: str, *args: str, nproc: int = 1) -> str:
    """``tools/train.py`` (nproc=1) or ``tools/dist_train.sh CONFIG NPROC``."""
    import sys
    if nproc == 1:
        cmd = [sys.executable, osp.join(REPO, 'tools/train.py'), config]
    else:
        cmd = ['bash', osp.join(REPO, 'tools/dist_train.sh'), config, str(nproc)]
    return run_cli(cmd + ['--work-dir', work_dir, *args])


def cli_test(config: str, checkpoint: str, work_dir: str, *args: str, nproc: int = 1) -> dict:
    """``tools/test.py`` / ``tools/dist_test.sh``; returns the metrics it wrote."""
    import glob
    import sys
    if nproc == 1:
        cmd = [sys.executable, osp.join(REPO, 'tools/test.py'), config, checkpoint]
    else:
        cmd = ['bash', osp.join(REPO, 'tools/dist_test.sh'), config, checkpoint, str(nproc)]
    run_cli(cmd + ['--work-dir', work_dir, *args])
    logs = sorted(p for p in glob.glob(osp.join(work_dir, '*', '*.json'))
                  if osp.basename(osp.dirname(p)) + '.json' == osp.basename(p))
    assert logs, f'no metrics json in {work_dir}'
    with open(logs[-1]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def batch_size_of(config: str) -> int:
    from mmengine.config import Config
    return Config.fromfile(config).train_dataloader.batch_size


@HOOKS.register_module()
class StageStateRecorderHook(Hook):
    """Before each iteration in ``iters`` (after the stage hook ran) and after training,
    each rank saves ``<work_dir>/stage_state_<iter>_rank<r>.pt``: the bare model's state
    (float copies), the names of its trainable parameters, the names of frozen parameters
    the optimizer still holds state or a slot for, and whether the optimizer's parameters
    are exactly the trainable ones."""
    priority = 'LOWEST'

    def __init__(self, iters=()):
        self.iters = set(iters)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.iter in self.iters:
            self._save(runner, runner.iter)

    def after_train(self, runner) -> None:
        self._save(runner, runner.iter)

    def _save(self, runner, it: int) -> None:
        from vlp.engine.hooks.momentum import find_deepspeed_engine
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        module = runner.model
        from vlp.engine.hooks.stagewise import _bare
        module = _bare(module)
        named = dict(module.named_parameters())
        trainable = sorted(n for n, p in named.items() if p.requires_grad)
        by_id = {id(p): n for n, p in named.items()}
        engine = find_deepspeed_engine(runner.model)
        if engine is not None:
            groups = getattr(engine.optimizer, 'bit16_groups', None) or \
                [g['params'] for g in engine.optimizer.param_groups]
            in_opt = {by_id.get(id(p)) for g in groups for p in g}
            stateful_frozen = []
        else:
            opt = runner.optim_wrapper.optimizer
            in_opt = {by_id.get(id(p)) for g in opt.param_groups for p in g['params']}
            stateful_frozen = sorted(by_id[id(p)] for p in opt.state
                                     if not p.requires_grad)
        state = {k: v.detach().float().clone() for k, v in module.state_dict().items()
                 if v.is_floating_point()}
        torch.save(dict(model=state, params=sorted(named), trainable=trainable,
                        stateful_frozen=stateful_frozen,
                        optimizer_matches=in_opt == set(trainable), stage=module.stage),
                   osp.join(runner.work_dir, f'stage_state_{it}_rank{rank}.pt'))


@HOOKS.register_module()
class NaNInjectHook(Hook):
    """Makes the toy model's loss NaN at the given iterations (0-based), on the given
    ranks (all by default): a bad batch or an overflow at a known step."""
    priority = 'VERY_HIGH'

    def __init__(self, iters=(), ranks=None):
        self.iters, self.ranks = set(iters), ranks

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        module = runner.model
        while isinstance(getattr(module, 'module', None), torch.nn.Module):
            module = module.module
        module.inject_nan = runner.iter in self.iters and (self.ranks is None or rank in self.ranks)


@HOOKS.register_module()
class KillDuringSaveHook(Hook):
    """SIGKILLs this process during the ``at``-th checkpoint save (1-based) at ``point``:

    - ``'mid_write'``: half of the checkpoint's bytes written (to the temporary file);
    - ``'before_rename'``: the temporary file complete, not yet renamed;
    - ``'after_rename'``: the new checkpoint in place, old ones not yet removed and
      ``last_checkpoint`` not yet rewritten;
    - ``'last_checkpoint'``: ``last_checkpoint`` truncated (mmengine writes it in place).
    """

    def __init__(self, at: int = 2, point: str = 'mid_write'):
        self.at, self.point, self.saves = at, point, 0

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self.saves += 1
        if self.saves != self.at:
            return
        import signal

        import vlp.engine.safe_io as safe_io
        from vlp.engine.hooks import checkpoint as ckpt_hook

        def die():
            os.kill(os.getpid(), signal.SIGKILL)

        if self.point in ('mid_write', 'before_rename'):
            real_replace = os.replace

            def write_then_die(path, write, size_hint=None):
                tmp = safe_io.temp_name(path)
                with open(tmp, 'wb') as f:
                    write(f)
                    if self.point == 'mid_write':
                        f.truncate(max(1, f.tell() // 2))
                    f.flush()
                die()
            safe_io._write = write_then_die
            del real_replace
        elif self.point == 'after_rename':
            def die_instead(*args, **kwargs):
                die()
            ckpt_hook.atomic_write_text = die_instead
        elif self.point == 'last_checkpoint':
            def truncate_and_die(path, text):
                open(path, 'w').close()
                die()
            ckpt_hook.atomic_write_text = truncate_and_die
        else:
            raise ValueError(self.point)
