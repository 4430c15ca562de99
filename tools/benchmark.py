"""Train-step benchmark of a vlp config, optionally against an anchor implementation.

    python tools/benchmark.py CONFIG [--batch-size N] [--steps K] [--warmup W]
        [--compare open_clip|hf|none] [--amp bf16] [--compile] [--grad-ckpt]
        [--adamw fused|foreach] [--device cpu|cuda] [--json OUT.json]
        [--cfg-options KEY=VALUE ...]

Builds the config's model (random weights: pretrained weights are not loaded), a synthetic
batch of the config's shapes (images of ``image_size``, texts of the tokenizer's
``max_length`` drawn from its vocabulary), and AdamW (``--adamw fused``, the default, as the
paper configs, or ``foreach``). Times
``--warmup`` then ``--steps`` full training steps (forward, loss, backward, optimizer step),
each synchronised, and reports the median step time, samples/s, peak memory (CUDA max
allocated, or the process's peak RSS on a CPU; and how much of it the step itself adds
above the memory in use between steps: activations, gradients, temporaries), the live
tensors at the peak of one step per implementation (parameters, buffers and optimizer
state, plus the most the step's own tensors hold at once, followed through a dispatch
mode: it compares implementations in one process, on a CPU too), model FLOPs
per sample (one step counted
with ``torch.utils.flop_counter``: forward and backward) and the achieved fraction of this
machine's dense matmul peak (MFU; the peak measured here with a large matmul in the run's
precision, before and after the timed steps, the better of the two).

``--compare open_clip|hf`` builds the same architecture and shapes in an anchor
(``benchmarks/anchors.py``): open_clip's ``CLIP`` / ``CoCa`` (open_clip's layout:
shared pooler, as ``tools/convert/open_clip_coca_to_vlp.py`` writes); HF ``CLIPModel``,
BLIP's pre-training step over HF's BLIP modules, BLIP-2's stage-1 ITC + ITM over
``Blip2ForImageTextRetrieval``'s modules, ``ViltForMaskedLM`` + an ITM head. It checks that
the compared parameters (trainable, less the parts of objectives one side lacks; totals
reported beside them) agree and refuses otherwise; where vlp computes objectives the
anchor has no counterpart for (BLIP-2's ITG, ViLT's WPA), vlp runs only the shared ones.
Both are timed in the same process on the same batch, alternating step by step; the
table says what each side's step computes, and the ratios of samples/s and of tensor
memory at the peak are printed (CUDA max-allocated and RSS are per process).

Output: a table on stdout and, with ``--json``, the numbers as JSON.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time
import weakref
from typing import Callable, Dict, Optional

import torch
from mmengine.config import DictAction
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'benchmarks'))


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def peak_memory(device: str) -> Optional[float]:
    """MiB: CUDA max allocated, or the process's peak RSS on a CPU (Linux KiB units)."""
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_memory(device: str) -> float:
    """MiB in use now: CUDA allocated, or the process's resident set on a CPU."""
    if device.startswith('cuda'):
        return torch.cuda.memory_allocated() / 2 ** 20
    import os
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def matmul_peak(device: str, dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Measured dense matmul FLOP/s of ``n x n @ n x n`` in ``dtype`` (best of ``reps``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float('inf')
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def synthetic_batch(cfg, model, batch_size: int, device: str) -> dict:
    """A preprocessed batch of the config's shapes."""
    size = int(cfg.get('image_size', 224))
    try:
        tok = getattr(model, 'tokenizer', None)  # built on first access
    except Exception as exn:  # the tokenizer files of a paper config are not here
        print(f'note: no tokenizer ({type(exn).__name__}: {exn}); synthetic texts use the '
              "text tower's length and vocabulary")
        tok = None
    text = getattr(model, 'text', None)
    length = getattr(tok, 'max_length', None) or getattr(text, 'context_length', None) or 32
    emb = getattr(text, 'token_embedding', None) or getattr(text, 'word_embeddings', None)
    vocab = getattr(tok, 'vocab_size', None) or getattr(emb, 'num_embeddings', None) or 1000
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (batch_size, length), generator=g)
    ids[:, 0] = getattr(tok, 'cls_token_id', None) or getattr(tok, 'bos_token_id', None) or 1
    eot = getattr(tok, 'eos_token_id', None) or getattr(tok, 'sep_token_id', None)
    if eot is not None:
        ids[:, -1] = eot
    batch = dict(image=torch.randint(0, 256, (batch_size, 3, size, size), generator=g,
                                     dtype=torch.uint8),
                 input_ids=ids, attention_mask=torch.ones_like(ids),
                 image_id=torch.arange(batch_size))
    data = model.data_preprocessor(batch, True)
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in data['inputs'].items()}, \
        data['data_samples']


def make_step(model, loss_fn: Callable, device: str, amp: Optional[str],
              adamw: str = 'fused'):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1, **{adamw: True})
    dtype = torch.bfloat16 if amp == 'bf16' else None

    from vlp.models.utils.feature_queue import FeatureQueue
    queues = [m for m in model.modules() if isinstance(m, FeatureQueue)]

    def step():
        with torch.autocast(device_type=device.split(':')[0], dtype=dtype,
                            enabled=dtype is not None):
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        for q in queues:  # FeatureQueueHook's work (ALBEF / BLIP momentum queues)
            q.commit()
    step.model, step.optimizer = model, opt
    return step


class StepTensors(TorchDispatchMode):
    """A dispatch mode that follows the tensor storages created while it is on: bytes
    alive ``now`` and at the ``peak`` (a storage counts once however many views it has,
    and stops counting when it is freed). Storages in ``existing`` (``{id: nbytes}``)
    are not counted."""

    def __init__(self, existing: Dict[int, int]):
        super().__init__()
        self.now = self.peak = 0
        self.seen, self.refs = set(existing), {}

    def _track(self, t: torch.Tensor) -> None:
        try:
            st = t.untyped_storage()
        except (NotImplementedError, RuntimeError):  # no storage (sparse, meta)
            return
        key = st._cdata
        if key in self.seen:
            return
        self.seen.add(key)
        n = st.nbytes()
        self.now += n
        self.peak = max(self.peak, self.now)

        def freed(_, key=key, n=n):
            self.now -= n
            self.seen.discard(key)
        self.refs[key] = weakref.ref(st, freed)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tree_map_only(torch.Tensor, self._track, out)
        return out


def _storages(tensors) -> Dict[int, int]:
    out = {}
    for t in tensors:
        if torch.is_tensor(t) and t.device.type != 'meta':
            st = t.untyped_storage()
            out[st._cdata] = st.nbytes()
    return out


def tensor_memory(step: Callable, extra=()) -> Dict[str, float]:
    """MiB of tensors in one step of one implementation: ``state`` (its parameters,
    buffers and optimizer state, each storage once), ``step_peak`` (the most the step's
    own tensors (activations, gradients, temporaries) hold at once above that, followed
    through a dispatch mode), ``total`` (their sum) and ``left`` (what the step created
    and did not free). Unlike CUDA's max-allocated or a process's peak RSS it is per
    implementation, so two in one process compare on a CPU too; allocator caching and
    library workspaces are not in it. ``extra``: other tensors that outlive the step
    (the inputs)."""
    model, opt = step.model, step.optimizer
    if not opt.state:  # AdamW makes its state in its first step: take that step first
        step()
    state = [v for s in opt.state.values() for v in s.values()]
    existing = _storages(list(model.parameters()) + list(model.buffers()) + state
                         + list(extra))
    mode = StepTensors(existing)
    with mode:
        step()
    mib = 2 ** 20
    base = sum(existing.values()) - sum(_storages(extra).values())
    return dict(state=round(base / mib, 1), step_peak=round(mode.peak / mib, 1),
                total=round((base + mode.peak) / mib, 1), left=round(mode.now / mib, 1))


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding,
                         _dilation, transposed, _output_padding, _groups, output_mask,
                         out_shape=None, **kwargs) -> int:
    """A convolution's backward: the gradient of its input and the gradient of its
    weight each cost what its forward costs. (torch's own formula ignores ``groups`` in
    the backward: it counts a depthwise convolution's backward ``channels`` times over,
    which made EfficientNet's MFU exceed 100%.)"""
    from torch.utils.flop_counter import conv_flop_count
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(step: Callable) -> int:
    """FLOPs of one step (``torch.utils.flop_counter``; matmuls, attention and
    convolutions), with the grouped-convolution backward counted correctly."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False, custom_mapping={
            torch.ops.aten.convolution_backward: _conv_backward_flops}) as counter:
        step()
    return int(counter.get_total_flops())


def time_steps(steps: Dict[str, Callable], n: int, warmup: int, device: str) -> tuple:
    """Alternate the steps of every entry: ``(per-entry step times in seconds, MiB in use
    after the warm-up: weights, gradients freed, optimizer state)``."""
    for _ in range(warmup):
        for f in steps.values():
            f()
    _sync(device)
    baseline = current_memory(device)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    times = {k: [] for k in steps}
    for _ in range(n):
        for k, f in steps.items():
            _sync(device)
            t = time.perf_counter()
            f()
            _sync(device)
            times[k].append(time.perf_counter() - t)
    return times, baseline


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--batch-size', type=int, default=None)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--compare', default='none', choices=['none', 'open_clip', 'hf'])
    parser.add_argument('--amp', default=None, choices=[None, 'bf16'])
    parser.add_argument('--compile', action='store_true')
    parser.add_argument('--grad-ckpt', action='store_true')
    parser.add_argument('--adamw', default='fused', choices=['fused', 'foreach'],
                        help="torch AdamW's implementation, on both sides (default: fused, "
                             'as the paper configs)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', default=None)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='config overrides, e.g. model.stage=image_text')
    args = parser.parse_args(argv)

    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    import vlp.models  # noqa: F401
    from vlp.registry import MODELS
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    init_default_scope('vlp')
    torch.manual_seed(0)
    from vlp.models.algorithms.base import without_weights
    model = MODELS.build(without_weights(cfg.model.to_dict())).to(args.device).train()
    if args.grad_ckpt:
        model.set_grad_checkpointing(True)
    B = args.batch_size or cfg.train_dataloader.batch_size
    inputs, samples = synthetic_batch(cfg, model, B, args.device)
    fwd = torch.compile(model) if args.compile else model

    def vlp_loss():
        losses = fwd(inputs, samples, mode='loss')
        return sum(v for k, v in losses.items() if 'loss' in k)

    anchor = None
    if args.compare != 'none':
        from anchors import build_anchor, param_report  # benchmarks/anchors.py
        anchor = build_anchor(args.compare, model, inputs, samples, args.device)
        params = param_report(model, anchor)
        if not params['agree']:
            raise SystemExit(
                f'--compare {args.compare}: the compared parameters differ (vlp '
                f'{params["compared"]["vlp"]:,} vs {anchor.impl} '
                f'{params["compared"]["anchor"]:,}; totals {params["total"]["vlp"]:,} vs '
                f'{params["total"]["anchor"]:,}): not the same architecture')
        if anchor.vlp_loss_fn is not None:
            vlp_loss = anchor.vlp_loss_fn
            if args.compile:
                raise SystemExit('--compile with an objective subset is not supported')
    steps = {'vlp': make_step(model, vlp_loss, args.device, args.amp, args.adamw)}
    counts = {'vlp': n_params(model)}
    if anchor is not None:
        twin_loss = anchor.loss_fn
        if args.compile:
            twin_loss = torch.compile(anchor.loss_fn)
        steps[anchor.name] = make_step(anchor.model, twin_loss, args.device, args.amp,
                                       args.adamw)
        counts[anchor.name] = n_params(anchor.model)
    flops = count_flops(steps['vlp'])
    tensors = {k: tensor_memory(f, extra=[v for v in inputs.values() if torch.is_tensor(v)])
               for k, f in steps.items()}
    dtype = torch.bfloat16 if args.amp == 'bf16' else torch.float32
    peak = matmul_peak(args.device, dtype)
    times, baseline = time_steps(steps, args.steps, args.warmup, args.device)
    # the peak again after the steps, the better of the two: a machine shared with other
    # work (a CPU host) measured once can report a peak below what the steps achieved
    peak = max(peak, matmul_peak(args.device, dtype))
    rows = {}
    for k, ts in times.items():
        med = statistics.median(ts)
        rows[k] = dict(params=counts[k], step_s=round(med, 4), samples_per_s=round(B / med, 2),
                       tensor_mib=tensors[k])
    rows['vlp'].update(flops_per_sample=flops // B,
                       mfu=round(flops / statistics.median(times['vlp']) / peak, 4))
    result = dict(config=args.config, device=args.device, batch_size=B, amp=args.amp,
                  compile=args.compile, grad_ckpt=args.grad_ckpt, adamw=args.adamw,
                  matmul_peak_tflops=round(peak / 1e12, 3),
                  peak_memory_mib=round(peak_memory(args.device), 1),
                  step_memory_mib=round(peak_memory(args.device) - baseline, 1), rows=rows)
    if anchor is not None:
        rows['vlp'].update(compared_params=params['compared']['vlp'],
                           objectives=anchor.objectives['vlp'])
        rows[anchor.name].update(impl=anchor.impl, compared_params=params['compared']['anchor'],
                                 objectives=anchor.objectives['anchor'])
        result['compare'] = dict(anchor=anchor.name, impl=anchor.impl, params=params,
                                 notes=anchor.notes)
        result['params_agree'] = params['agree']
        result['speed_ratio'] = round(rows['vlp']['samples_per_s'] /
                                      rows[anchor.name]['samples_per_s'], 3)
        result['tensor_peak_ratio'] = round(tensors['vlp']['total'] /
                                            tensors[anchor.name]['total'], 3)
    print(f'{args.config}  device={args.device}  batch={B}  amp={args.amp}  '
          f'compile={args.compile}  grad_ckpt={args.grad_ckpt}')
    print(f'{"impl":10s} {"params":>12s} {"compared":>12s} {"step (s)":>10s} '
          f'{"samples/s":>10s}  timed step')
    for k, r in rows.items():
        cmp = f'{r["compared_params"]:12,d}' if 'compared_params' in r else f'{"":12s}'
        print(f'{k:10s} {r["params"]:12,d} {cmp} {r["step_s"]:10.4f} '
              f'{r["samples_per_s"]:10.2f}  {r.get("objectives", "full training loss")}')
    print(f'FLOPs/sample {rows["vlp"]["flops_per_sample"]:,}  MFU {rows["vlp"]["mfu"]:.1%} '
          f'of a measured {result["matmul_peak_tflops"]} TFLOP/s  '
          f'peak memory {result["peak_memory_mib"]} MiB, of which '
          f'{result["step_memory_mib"]} MiB above the state between steps (activations, '
          'gradients, temporaries)')
    for k, r in rows.items():
        t = r['tensor_mib']
        print(f'{k}: tensors at the step\'s peak {t["total"]:,.1f} MiB = parameters, '
              f'buffers and optimizer state {t["state"]:,.1f} + the step\'s own '
              f'(activations, gradients, temporaries) {t["step_peak"]:,.1f}')
    if anchor is not None:
        print(f'anchor: {anchor.impl}')
        for note in anchor.notes:
            print(f'note: {note}')
        ex = {k: v for k, v in params['excluded'].items() if v}
        print(f'vlp / {anchor.name} tensor memory at the peak: {result["tensor_peak_ratio"]}')
        print(f'vlp / {anchor.name} samples/s: {result["speed_ratio"]}  (compared parameters '
              '(trainable' + (f', less {ex}' if ex else '') + ') '
              f'{"agree" if result["params_agree"] else "DIFFER"}: '
              f'{params["compared"]["vlp"]:,}; totals {params["total"]["vlp"]:,} vs '
              f'{params["total"]["anchor"]:,})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
