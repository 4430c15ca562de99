"""One command for the figures a GPU is needed for (issue 21), ready before one is lent.

    python benchmarks/gpu_suite.py --out OUT_DIR [--budget-s 540] [--only SECTION ...]
    python benchmarks/gpu_suite.py --out OUT_DIR --dry-run      # CPU: the same code path

Sections, in this order (each item timed; an item that fails is recorded with its error
and the suite goes on; items that would start after ``--budget-s`` are recorded as
skipped, so the whole run stays within 10 minutes):

- ``train``: each base config's training step in bf16 autocast (SDPA picks the flash /
  memory-efficient kernels on CUDA), through ``tools/benchmark.py`` (samples/s, FLOPs per
  sample, tensor memory, MFU against the matmul peak it measures).
- ``mfu``: CLIP ViT-B/16's bf16 MFU against the GPU's *dense bf16 peak* from its data
  sheet (H100 SXM / H200: 989 TFLOP/s, H100 PCIe: 756, A100: 312; others: the measured
  matmul peak, said so).
- ``zero``: CLIP ViT-B/16 under DeepSpeed ZeRO stages 0, 1, 2 and 3 on one GPU (bf16,
  torch's AdamW as the client optimizer): step time, samples/s, CUDA max-allocated.
- ``compare``: the ``--compare`` rows in bf16: CLIP vs open_clip and HF, BLIP vs HF, BLIP-2
  stage 1 vs HF (fp32 ViT-g), ViLT vs HF, CoCa ViT-B/32 in open_clip's layout vs open_clip.
- ``decoding``: ``benchmarks/decoding.py`` at the base sizes (batch 16, max length 30,
  greedy and 3 beams; vlp cached / uncached, HF BLIP, open_clip CoCa).
- ``rerank``: ``benchmarks/rerank.py`` at the base fusion width (768), for the projection of
  a full COCO 5k re-ranked evaluation.

Writes ``OUT_DIR/results.json`` (every item's result or error, the device, the versions)
and ``OUT_DIR/results.md`` (the tables). ``--dry-run`` runs every section on the CPU with
the tiny demo configs, one step, tiny decoding and re-ranking sizes, and ZeRO through
DeepSpeed's CPU accelerator (gloo): what ``tests/benchmarks/test_gpu_suite.py`` runs, so
the suite cannot rot between GPU loans.
"""
import argparse
import gc
import json
import os
import os.path as osp
import platform
import socket
import statistics
import sys
import tempfile
import time
import traceback

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

# (config, batch size on a GPU, cfg-options); BERT-tokenizer configs get a vocab file
BASE = [
    ('clip/clip_vit-b16_base.py', 128, {}),
    ('align/align_base.py', 32, {}),
    ('albef/albef_base.py', 64, {}),
    ('blip/blip_base.py', 32, {}),
    ('blip2/blip2_stage1_base.py', 32, {}),
    ('coca/coca_base.py', 32, {}),
    ('vlmo/vlmo_base.py', 32, {'model.stage': 'image_text'}),
    ('beit3/beit3_base.py', 32, {}),
    ('vilt/vilt_base.py', 64, {}),
]
TINY = {c: c.replace('clip_vit-b16_base', 'clip_tiny_demo').replace(
            'blip2_stage1_base', 'blip2_stage1_tiny_demo').replace('_base.py', '_tiny_demo.py')
        for c, _, _ in BASE}
COMPARE = [('clip/clip_vit-b16_base.py', 'open_clip', 128, {}),
           ('clip/clip_vit-b16_base.py', 'hf', 128, {}),
           ('blip/blip_base.py', 'hf', 32, {}),
           ('blip2/blip2_stage1_base.py', 'hf', 32, {'model.vision_dtype': None}),
           ('vilt/vilt_base.py', 'hf', 64, {}),
           ('coca_open_clip_layout', 'open_clip', 64, {})]
BERT_FAMILIES = ('albef', 'align', 'beit3', 'blip', 'blip2', 'vilt', 'vlmo')
# dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity), TFLOP/s
DENSE_BF16_TFLOPS = [('H200', 989.4), ('H100 PCIe', 756.0), ('H100', 989.4), ('GH200', 989.4),
                     ('A100', 312.0), ('L40S', 362.1), ('L4', 121.0), ('A10G', 70.0),
                     ('A10', 125.0), ('B200', 2250.0)]
SECTIONS = ('train', 'mfu', 'zero', 'compare', 'decoding', 'rerank')


def dense_bf16_peak(device: str):
    """(TFLOP/s, source) of the device's dense bf16 peak."""
    import torch
    if not device.startswith('cuda'):
        return None, 'no data-sheet peak for a CPU'
    name = torch.cuda.get_device_name()
    for key, tflops in DENSE_BF16_TFLOPS:
        if key in name:
            return tflops, f'{name}: data sheet, dense bf16'
    return None, f'{name}: not in the table'


def write_vocab(path: str) -> str:
    """A 30,522-line BERT-style vocabulary (the configs' ids; the step uses random ids)."""
    words = ['[PAD]'] + [f'[unused{i}]' for i in range(99)] + ['[UNK]', '[CLS]', '[SEP]',
                                                             '[MASK]']
    words += [f'w{i}' for i in range(30522 - len(words))]
    with open(path, 'w') as f:
        f.write('\n'.join(words) + '\n')
    return path


def _options(config: str, opts: dict, vocab: str) -> list:
    opts = dict(opts)
    if vocab is not None and config.split('/')[0] in BERT_FAMILIES:
        opts['model.tokenizer.vocab_file'] = vocab
    return ['--cfg-options'] + [f'{k}={v}' for k, v in opts.items()] if opts else []


def _free(device: str) -> None:
    gc.collect()
    if device.startswith('cuda'):
        import torch
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def coca_open_clip_layout(out_dir: str, dry_run: bool) -> str:
    """A config of CoCa ViT-B/32 in open_clip's layout (open_clip's ``coca_ViT-B-32.json``
    through the converter; the demo's sizes in a dry run), as tests/tools/test_benchmark_tool.py
    writes it."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'oc_coca', osp.join(ROOT, 'tools', 'convert', 'open_clip_coca_to_vlp.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if dry_run:
        oc = dict(embed_dim=96,
                  vision_cfg=dict(image_size=64, patch_size=8, width=96, layers=3, head_width=24,
                                  attentional_pool=True, attn_pooler_heads=4,
                                  attn_pooler_queries=17, output_tokens=True),
                  text_cfg=dict(context_length=32, vocab_size=52, width=96, heads=4, layers=2,
                                embed_cls=True, output_tokens=True),
                  multimodal_cfg=dict(context_length=32, vocab_size=52, width=96, heads=4,
                                      layers=2))
    else:
        import open_clip
        with open(osp.join(osp.dirname(open_clip.__file__), 'model_configs',
                           'coca_ViT-B-32.json')) as f:
            oc = json.load(f)
        oc.pop('custom_text', None)
    model = mod.open_clip_coca_config_to_vlp(oc)
    path = osp.join(out_dir, 'coca_open_clip_layout.py')
    base = osp.join(ROOT, 'configs', 'coca', 'coca_tiny_demo.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = ['{base}']\nmodel = dict(_delete_=True, **{model!r})\n"
                "model['tokenizer'] = {{_base_.model.tokenizer}}\n")
    return path


def run_benchmark(config: str, batch: int, opts: dict, vocab: str, device: str, steps: int,
                  warmup: int, compare: str = 'none', amp: str = 'bf16') -> dict:
    import benchmark  # tools/benchmark.py
    path = config if osp.isabs(config) else osp.join(ROOT, 'configs', config)
    argv = [path, '--batch-size', str(batch), '--steps', str(steps), '--warmup', str(warmup),
            '--device', device, '--compare', compare]
    if amp:
        argv += ['--amp', amp]
    if device == 'cpu':
        argv += ['--adamw', 'foreach']
    return benchmark.main(argv + _options(config, opts, vocab))


def zero_step(stage: int, config: str, batch: int, device: str, steps: int,
              warmup: int) -> dict:
    """Training steps of ``config`` under DeepSpeed ZeRO ``stage`` on one device (bf16)."""
    import torch
    if device == 'cpu':
        os.environ.setdefault('DS_ACCELERATOR', 'cpu')
    for k, v in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1').items():
        os.environ.setdefault(k, v)
    if 'MASTER_PORT' not in os.environ:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            os.environ['MASTER_PORT'] = str(s.getsockname()[1])
    import deepspeed
    import vlp.engine.strategies.deepspeed_compat  # noqa: F401  (vlp's DeepSpeed patches)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    import vlp.models  # noqa: F401
    from vlp.models.algorithms.base import without_weights
    from vlp.registry import MODELS
    import benchmark
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend='nccl' if device.startswith('cuda') else 'gloo',
                                   verbose=False)
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    init_default_scope('vlp')
    torch.manual_seed(0)
    model = MODELS.build(without_weights(cfg.model.to_dict())).to(device).train()
    inputs, samples = benchmark.synthetic_batch(cfg, model, batch, device)
    inputs = {k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() else v
              for k, v in inputs.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ds_cfg = dict(train_micro_batch_size_per_gpu=batch, gradient_accumulation_steps=1,
                  zero_optimization=dict(stage=stage), bf16=dict(enabled=True),
                  gradient_clipping=1.0, steps_per_print=10 ** 9, wall_clock_breakdown=False)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=ds_cfg)

    def step():
        losses = engine(inputs, samples, mode='loss')
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        engine.backward(loss)
        engine.step()

    for _ in range(warmup):
        step()
    benchmark._sync(device)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        benchmark._sync(device)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    out = dict(stage=stage, config=config, batch_size=batch, step_s=round(med, 4),
               samples_per_s=round(batch / med, 2),
               peak_memory_mib=round(benchmark.peak_memory(device), 1))
    engine.destroy() if hasattr(engine, 'destroy') else None
    del engine, model, opt
    return out


def plan(args, vocab: str, tmp: str):
    """``[(section, name, callable)]`` in the order run."""
    dry, dev = args.dry_run, args.device
    steps, warmup = (1, 0) if dry else (args.steps, args.warmup)
    items = []
    train_configs = [(TINY[c] if dry else c, 2 if dry else b, o) for c, b, o in BASE]
    for c, b, o in train_configs:
        items.append(('train', c, lambda c=c, b=b, o=o: run_benchmark(
            c, b, o, vocab, dev, steps, warmup)))
    clip = 'clip/clip_tiny_demo.py' if dry else 'clip/clip_vit-b16_base.py'
    items.append(('mfu', clip, None))  # computed from the train row
    for stage in (0, 1, 2, 3):
        items.append(('zero', f'stage {stage}', lambda s=stage: zero_step(
            s, clip, 2 if dry else 128, dev, steps, warmup)))
    for c, kind, b, o in COMPARE:
        name = f'{c} --compare {kind}'
        if c == 'coca_open_clip_layout':
            items.append(('compare', name, lambda kind=kind, b=b: run_benchmark(
                coca_open_clip_layout(tmp, dry), 2 if dry else b, {}, vocab, dev, steps,
                warmup, compare=kind)))
        else:
            cfg = TINY[c] if dry else c
            o = {k: v for k, v in o.items() if not dry}
            items.append(('compare', name, lambda cfg=cfg, kind=kind, b=b, o=o: run_benchmark(
                cfg, 2 if dry else b, o, vocab, dev, steps, warmup, compare=kind)))
    import decoding
    items.append(('decoding', 'blip + coca', lambda: decoding.main(
        ['--size', 'tiny' if dry else 'base', '--batch-size', '2' if dry else '16',
         '--max-length', '8' if dry else '30', '--rounds', '1' if dry else '3',
         '--device', dev, '--json', osp.join(args.out, 'decoding.json')])))
    import rerank
    items.append(('rerank', 'albef + blip', lambda: rerank.main(
        (['--images', '8', '--k', '2', '--width', '32'] if dry
         else ['--images', '200', '--k', '10', '26', '--width', '768', '--batch-size', '256'])
        + ['--device', dev, '--json', osp.join(args.out, 'rerank.json')])))
    return [i for i in items if not args.only or i[0] in args.only]


def markdown(res: dict) -> str:
    out = [f"# GPU suite: {res['device_name']}", '',
           f"torch {res['versions']['torch']}, {res['when']}, total {res['total_s']:.0f} s"
           + (' (dry run: CPU, tiny sizes)' if res['dry_run'] else ''), '']
    items = res['items']

    def ok(sec):
        return [i for i in items if i['section'] == sec]

    if ok('train'):
        out += ['## Train step, bf16', '',
                '| config | batch | samples/s | FLOPs / sample | MFU (measured matmul peak) '
                '| tensors at peak (MiB) | CUDA / RSS peak (MiB) |',
                '|---|---|---|---|---|---|---|']
        for i in ok('train'):
            r = i.get('result')
            if r is None:
                out.append(f"| {i['name']} | | {i['status']}: {i.get('error', '')[:80]} | | | | |")
                continue
            v = r['rows']['vlp']
            out.append(f"| {i['name']} | {r['batch_size']} | {v['samples_per_s']} | "
                       f"{v['flops_per_sample'] / 1e9:.1f} G | {v['mfu']:.1%} | "
                       f"{v['tensor_mib']['total']:,} | {r['peak_memory_mib']:,} |")
        out.append('')
    for i in ok('mfu'):
        r = i.get('result') or {}
        out += ['## MFU, CLIP ViT-B/16 bf16', '',
                f"{r.get('mfu_dense_peak', 'n/a')} of {r.get('peak_tflops')} TFLOP/s "
                f"({r.get('peak_source')}); achieved {r.get('achieved_tflops')} TFLOP/s", '']
    if ok('zero'):
        out += ['## ZeRO on one device, CLIP ViT-B/16, bf16', '',
                '| stage | batch | step (s) | samples/s | peak memory (MiB) |',
                '|---|---|---|---|---|']
        for i in ok('zero'):
            r = i.get('result')
            out.append(f"| {i['name']} | " + (
                f"{r['batch_size']} | {r['step_s']} | {r['samples_per_s']} | "
                f"{r['peak_memory_mib']:,} |" if r else f"{i['status']} | | | |"))
        out.append('')
    if ok('compare'):
        out += ['## --compare rows, bf16', '',
                '| config | anchor | vlp samples/s | anchor samples/s | speed ratio | '
                'tensor memory ratio |', '|---|---|---|---|---|---|']
        for i in ok('compare'):
            r = i.get('result')
            if r is None:
                out.append(f"| {i['name']} | {i['status']}: {i.get('error', '')[:80]} | | | | |")
                continue
            a = r['compare']['anchor']
            out.append(f"| {i['name']} | {r['compare']['impl']} | "
                       f"{r['rows']['vlp']['samples_per_s']} | {r['rows'][a]['samples_per_s']} | "
                       f"**{r['speed_ratio']}x** | {r['tensor_peak_ratio']} |")
        out.append('')
    for i in ok('decoding'):
        if i.get('result'):
            import decoding
            out += ['## Captioning (batch 16, max length 30)', '',
                    decoding.markdown(i['result']), '']
    for i in ok('rerank'):
        if i.get('result'):
            out += ['## ITM re-ranking', '', '| family | k | pairs/s ALBEF loop | pairs/s vlp | '
                    'speed-up | recalls identical |', '|---|---|---|---|---|---|']
            for r in i['result']:
                out.append(f"| {r['family']} (width {r['width']}) | {r['k']} | "
                           f"{r['albef_loop_pairs_per_s']} | {r['vlp_pairs_per_s']} | "
                           f"{r['speedup']}x | {r['recalls_identical']} |")
            out.append('')
    bad = [i for i in items if i['status'] != 'ok']
    if bad:
        out += ['## Not completed', ''] + [f"- {i['section']} / {i['name']}: {i['status']}"
                                           + (f": {i['error'][:200]}" if i.get('error') else '')
                                           for i in bad]
    return '\n'.join(out) + '\n'


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True)
    p.add_argument('--dry-run', action='store_true',
                   help='CPU, tiny configs, one step: the code path, not the figures')
    p.add_argument('--budget-s', type=float, default=540.0,
                   help='no item starts after this many seconds (default 540)')
    p.add_argument('--only', nargs='+', choices=SECTIONS, default=None)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--device', default=None)
    args = p.parse_args(argv)
    import torch
    if args.device is None:
        args.device = 'cpu' if args.dry_run else 'cuda'
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit('no CUDA device: run with --dry-run on a CPU')
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='gpu_suite_')
    # the paper configs' BERT vocabulary is not shipped; the demos use their own tokenizer
    vocab = None if args.dry_run else write_vocab(osp.join(tmp, 'vocab.txt'))
    if args.device.startswith('cuda'):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.dry_run:  # the peak matmul of a dry run: small (its figure is not used)
        import functools
        import benchmark
        benchmark.matmul_peak = functools.partial(benchmark.matmul_peak, n=256, reps=1)
    t0 = time.perf_counter()
    res = dict(dry_run=args.dry_run, device=args.device,
               device_name=(torch.cuda.get_device_name() if args.device.startswith('cuda')
                            else f'CPU ({platform.processor() or platform.machine()}, '
                                 f'{os.cpu_count()} cores)'),
               versions=dict(torch=torch.__version__, python=platform.python_version()),
               when=time.strftime('%Y-%m-%d %H:%M'), items=[])
    train_rows = {}
    for section, name, fn in plan(args, vocab, tmp):
        item = dict(section=section, name=name)
        start = time.perf_counter()
        if start - t0 > args.budget_s:
            item['status'] = 'skipped (budget)'
        elif section == 'mfu':
            r = train_rows.get(name)
            peak, src = dense_bf16_peak(args.device)
            if r is None:
                item['status'] = 'no train row'
            else:
                v = r['rows']['vlp']
                achieved = v['flops_per_sample'] * v['samples_per_s']
                if peak is None:
                    peak, src = r['matmul_peak_tflops'], src + '; measured bf16 matmul peak'
                item['result'] = dict(achieved_tflops=round(achieved / 1e12, 2),
                                      peak_tflops=peak, peak_source=src,
                                      mfu_dense_peak=f'{achieved / (peak * 1e12):.1%}')
                item['status'] = 'ok'
        else:
            try:
                item['result'] = fn()
                item['status'] = 'ok'
                if section == 'train':
                    train_rows[name] = item['result']
            except Exception as e:  # noqa: BLE001  (recorded, the suite goes on)
                item['status'] = 'error'
                item['error'] = f'{type(e).__name__}: {e}'
                item['traceback'] = traceback.format_exc()[-3000:]
            except SystemExit as e:
                item['status'] = 'error'
                item['error'] = f'SystemExit: {e}'
        item['seconds'] = round(time.perf_counter() - start, 1)
        res['items'].append(item)
        print(f"[gpu_suite] {section:9s} {name}: {item['status']} ({item['seconds']} s)",
              flush=True)
        _free(args.device)
        with open(osp.join(args.out, 'results.json'), 'w') as f:  # partial results survive
            json.dump(dict(res, total_s=time.perf_counter() - t0), f, indent=1, default=str)
    res['total_s'] = round(time.perf_counter() - t0, 1)
    with open(osp.join(args.out, 'results.json'), 'w') as f:
        json.dump(res, f, indent=1, default=str)
    with open(osp.join(args.out, 'results.md'), 'w') as f:
        f.write(markdown(res))
    print(markdown(res))
    return res


if __name__ == '__main__':
    main()
