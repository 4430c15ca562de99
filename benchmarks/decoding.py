"""Captioning throughput: vlp's cached decoding vs its uncached reference vs the anchors.

    python benchmarks/decoding.py [--family blip coca] [--size small|base|tiny]
        [--batch-size 16] [--max-length 30] [--modes greedy beam3] [--rounds 3]
        [--device cpu|cuda] [--json OUT.json]

Builds the anchors with random weights at the chosen sizes and converts them to vlp with
vlp's own converters (so both sides hold the same weights and decode the same tokens):

- BLIP: HF ``BlipForConditionalGeneration`` -> ``vlp.convert.formats.blip`` -> vlp
  ``BLIP``; anchor ``BlipForConditionalGeneration.generate`` (HF's key/value cache).
- CoCa: open_clip ``CoCa`` (open_clip's layout) -> ``tools/convert/open_clip_coca_to_vlp``
  -> vlp ``CoCa``; anchor open_clip's ``CoCa.generate`` (its own loop: it re-runs the
  whole prefix through both text decoders at every step; greedy is its ``top_k=1``). open_clip
  3.3 disables ``generate`` when transformers has no ``BeamSearchScorer`` (transformers
  >= 5): its sampling loop is run with the logits processors handed to it; its beam search
  (group beam search) cannot run there and is reported as such.

Every round decodes one batch with each implementation in turn (alternating, same images,
``min_length`` 5, greedy or 3 beams), each call synchronised; the table gives the median
captions/s, the speed-up of vlp's cache over its uncached path and the ratio to the
anchor, whether the token ids agree with vlp's cached ones, and the tensors alive at the
decoding's peak (above weights and inputs; ``tools/benchmark.py``'s dispatch-mode count,
one untimed call per implementation; CUDA's max-allocated as well on a GPU).

Sizes: ``base`` is BLIP base (ViT-B/16 at 384 px: 577 image tokens; BERT-base decoder)
and CoCa ViT-B/32 (open_clip's ``coca_ViT-B-32``: 256 captioning tokens, 12 + 12 text
layers of width 512, vocabulary 49,408); ``small`` keeps the image tokens, the
vocabularies and the number of text positions but narrows and shortens the stacks for a
CPU (widths 192-256, 4-6 layers); ``tiny`` is for the test that keeps this script running.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))

SIZES = {
    'base': dict(
        blip=dict(img=384, patch=16, v_width=768, v_layers=12, v_heads=12, v_mlp=3072,
                  t_width=768, t_layers=12, t_heads=12, t_mlp=3072, vocab=30524),
        coca=dict(img=224, patch=32, v_width=768, v_layers=12, v_heads=12, queries=256,
                  t_width=512, t_layers=12, t_heads=8, vocab=49408, ctx=76, embed=512)),
    'small': dict(
        blip=dict(img=384, patch=16, v_width=192, v_layers=4, v_heads=3, v_mlp=768,
                  t_width=256, t_layers=6, t_heads=4, t_mlp=1024, vocab=30524),
        coca=dict(img=224, patch=32, v_width=192, v_layers=4, v_heads=3, queries=256,
                  t_width=256, t_layers=6, t_heads=4, vocab=49408, ctx=76, embed=256)),
    'tiny': dict(
        blip=dict(img=32, patch=8, v_width=32, v_layers=1, v_heads=2, v_mlp=64,
                  t_width=32, t_layers=2, t_heads=2, t_mlp=64, vocab=100),
        coca=dict(img=32, patch=8, v_width=32, v_layers=1, v_heads=2, queries=8,
                  t_width=32, t_layers=2, t_heads=2, vocab=100, ctx=32, embed=32)),
}
BLIP_SEP, BLIP_PAD = 102, 0  # BERT's [SEP] / [PAD] ([DEC] = vocab - 2 as BLIP's tokenizer)


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


# -- BLIP --------------------------------------------------------------------------------------
def build_blip(s: dict, device: str):
    """A random HF ``BlipForConditionalGeneration`` and the same weights in vlp."""
    from transformers import BlipConfig, BlipForConditionalGeneration
    from vlp.apis import init_model
    from vlp.convert.formats.blip import convert
    dec = s['vocab'] - 2
    sep, pad = (BLIP_SEP, BLIP_PAD) if s['vocab'] > BLIP_SEP else (3, 0)
    cfg = BlipConfig(
        text_config=dict(vocab_size=s['vocab'], hidden_size=s['t_width'],
                         intermediate_size=s['t_mlp'], num_hidden_layers=s['t_layers'],
                         num_attention_heads=s['t_heads'], max_position_embeddings=512,
                         bos_token_id=dec, sep_token_id=sep, pad_token_id=pad,
                         eos_token_id=sep),
        vision_config=dict(hidden_size=s['v_width'], intermediate_size=s['v_mlp'],
                           num_hidden_layers=s['v_layers'], num_attention_heads=s['v_heads'],
                           image_size=s['img'], patch_size=s['patch']))
    torch.manual_seed(0)
    hf = BlipForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # peakier next-token distributions than the init's
        hf.text_decoder.cls.predictions.decoder.weight.mul_(8.0)
    out = tempfile.mkdtemp(prefix='vlp_decoding_blip_')
    convert(hf.state_dict(), out, config=cfg.to_dict(), tokenizer=None, queue_size=0,
            dec_token_id=dec, enc_token_id=dec + 1)
    model = init_model(osp.join(out, 'config.py'), osp.join(out, 'model.pth'),
                       device=device, strict=True).eval()
    hf.to(device)

    def run_vlp(images, mode, use_cache):
        return model.generate_ids(images, [dec], eos_token_id=sep, pad_token_id=pad,
                                  use_cache=use_cache, **mode)

    def run_anchor(images, mode):
        return hf.generate(pixel_values=images, **mode)

    return dict(vlp=model, anchor=hf, run_vlp=run_vlp, run_anchor=run_anchor,
                anchor_name='HF BlipForConditionalGeneration.generate', pad=pad, eos=sep,
                anchor_modes=('greedy', 'beam3'))


# -- CoCa --------------------------------------------------------------------------------------
def open_clip_generate(ref, images, **kw):
    """open_clip's ``CoCa.generate`` with transformers' logits processors handed to it
    (open_clip 3.3 disables it when ``BeamSearchScorer`` is missing, as in transformers 5)."""
    import transformers
    from open_clip import coca_model as oc
    if not oc._has_transformers:
        for n in ('LogitsProcessorList', 'TopPLogitsWarper', 'TopKLogitsWarper',
                  'RepetitionPenaltyLogitsProcessor', 'MinLengthLogitsProcessor',
                  'MaxLengthCriteria', 'StoppingCriteriaList'):
            setattr(oc, n, getattr(transformers, n))
        oc._has_transformers = True
        oc.GENERATION_TYPES = dict(top_k=transformers.TopKLogitsWarper,
                                   top_p=transformers.TopPLogitsWarper,
                                   beam_search='beam_search')
    with torch.no_grad():
        return ref.generate(images, **kw)


def _beam_search_available() -> bool:
    try:
        from transformers.generation import BeamSearchScorer  # noqa: F401
        return True
    except ImportError:
        try:
            from transformers import BeamSearchScorer  # noqa: F401
            return True
        except ImportError:
            return False


def build_coca(s: dict, device: str):
    """A random open_clip ``CoCa`` and the same weights in vlp (open_clip's layout)."""
    import open_clip
    from vlp.apis import init_model
    coca_tool = _load_tool('convert/open_clip_coca_to_vlp')
    V, ctx = s['vocab'], s['ctx']
    cfg = dict(
        embed_dim=s['embed'],
        vision_cfg=dict(image_size=s['img'], patch_size=s['patch'], width=s['v_width'],
                        layers=s['v_layers'], head_width=s['v_width'] // s['v_heads'],
                        attentional_pool=True, attn_pooler_heads=s['t_heads'],
                        attn_pooler_queries=s['queries'], output_tokens=True),
        text_cfg=dict(context_length=ctx, vocab_size=V, width=s['t_width'],
                      heads=s['t_heads'], layers=s['t_layers'], embed_cls=True,
                      output_tokens=True),
        multimodal_cfg=dict(context_length=ctx, vocab_size=V, width=s['t_width'],
                            heads=s['t_heads'], layers=s['t_layers']))
    torch.manual_seed(0)
    ref = open_clip.CoCa(**cfg).eval()
    with torch.no_grad():
        # open_clip 3.3 leaves the decoder's text_projection uninitialised (torch.empty)
        torch.nn.init.normal_(ref.text_decoder.text_projection, std=s['t_width'] ** -0.5 * 4)
    out = tempfile.mkdtemp(prefix='vlp_decoding_coca_')
    cfg_file, ckpt = osp.join(out, 'coca.json'), osp.join(out, 'coca.pt')
    with open(cfg_file, 'w') as f:
        json.dump(dict(cfg, custom_text=True), f)
    torch.save(ref.state_dict(), ckpt)
    coca_tool.main(['--model-config', cfg_file, '--checkpoint', ckpt, '--no-tokenizer',
                    osp.join(out, 'vlp')])
    model = init_model(osp.join(out, 'vlp', 'config.py'), osp.join(out, 'vlp', 'model.pth'),
                       device=device, strict=True).eval()
    ref.to(device)
    sot, eot, pad = V - 2, V - 1, 0

    def run_vlp(images, mode, use_cache):
        # open_clip writes EOT at seq_len where vlp stops at max_length: one less for vlp
        opts = dict(mode, max_length=mode['max_length'] - 1)
        return model.generate_ids(images, [sot], eos_token_id=eot, pad_token_id=pad,
                                  use_cache=use_cache, **opts)

    def run_anchor(images, mode):
        if mode['num_beams'] > 1:
            return open_clip_generate(ref, images, seq_len=mode['max_length'],
                                      min_seq_len=mode['min_length'], sot_token_id=sot,
                                      eos_token_id=eot, pad_token_id=pad,
                                      num_beams=mode['num_beams'], num_beam_groups=1)
        return open_clip_generate(ref, images, seq_len=mode['max_length'],
                                  min_seq_len=mode['min_length'], sot_token_id=sot,
                                  eos_token_id=eot, pad_token_id=pad,
                                  generation_type='top_k', top_k=1)

    modes = ('greedy', 'beam3') if _beam_search_available() else ('greedy',)
    return dict(vlp=model, anchor=ref, run_vlp=run_vlp, run_anchor=run_anchor,
                anchor_name="open_clip CoCa.generate", pad=pad, eos=eot, anchor_modes=modes,
                anchor_trim=True)


def _load_tool(name: str):
    import importlib.util
    path = osp.join(ROOT, 'tools', name + '.py')
    spec = importlib.util.spec_from_file_location(name.replace('/', '_'), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- measuring -------------------------------------------------------------------------------
def step_tensor_mib(fn: Callable, keep) -> float:
    """MiB of the tensors alive at the peak of ``fn()`` above those in ``keep``."""
    from benchmark import StepTensors, _storages  # tools/benchmark.py
    mode = StepTensors(_storages(keep))
    with torch.no_grad(), mode:
        fn()
    return round(mode.peak / 2 ** 20, 1)


def _same(a: torch.Tensor, b: torch.Tensor, pad: int, eos: int, trim: bool) -> bool:
    """Token ids equal up to trailing padding (``trim``: the anchor's forced final EOT)."""
    a, b = a.cpu(), b.cpu()
    if trim:
        b = b[:, :a.shape[1]] if b.shape[1] > a.shape[1] else b
    L = max(a.shape[1], b.shape[1])
    pa = torch.full((a.shape[0], L), pad, dtype=a.dtype)
    pb = torch.full((b.shape[0], L), pad, dtype=b.dtype)
    pa[:, :a.shape[1]], pb[:, :b.shape[1]] = a, b
    return a.shape[0] == b.shape[0] and torch.equal(pa, pb)


def bench_family(family: str, size: str, batch: int, max_length: int, modes: List[str],
                 rounds: int, device: str) -> List[dict]:
    s = SIZES[size][family]
    fam = (build_blip if family == 'blip' else build_coca)(s, device)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, s['img'], s['img'], generator=g).to(device)
    keep = (list(fam['vlp'].parameters()) + list(fam['vlp'].buffers())
            + list(fam['anchor'].parameters()) + list(fam['anchor'].buffers()) + [images])
    rows = []
    for mode_name in modes:
        mode = dict(num_beams=3 if mode_name == 'beam3' else 1, do_sample=False,
                    max_length=max_length, min_length=5)
        impls: Dict[str, Callable] = {
            'vlp cached': lambda m=mode: fam['run_vlp'](images, m, True),
            'vlp uncached': lambda m=mode: fam['run_vlp'](images, m, False)}
        if mode_name in fam['anchor_modes']:
            impls['anchor'] = lambda m=mode: fam['run_anchor'](images, m)
        outs = {}
        with torch.no_grad():
            for k, f in impls.items():  # warm-up, and the ids compared
                outs[k] = f()
        times = {k: [] for k in impls}
        for _ in range(rounds):
            for k, f in impls.items():
                _sync(device)
                t = time.perf_counter()
                with torch.no_grad():
                    f()
                _sync(device)
                times[k].append(time.perf_counter() - t)
        mem = {}
        for k, f in impls.items():
            if device.startswith('cuda'):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                with torch.no_grad():
                    f()
                _sync(device)
                mem[k] = dict(tensors_mib=step_tensor_mib(f, keep),
                              cuda_max_allocated_mib=round(
                                  (torch.cuda.max_memory_allocated() - base) / 2 ** 20, 1))
            else:
                mem[k] = dict(tensors_mib=step_tensor_mib(f, keep))
        ref = outs['vlp cached']
        row = dict(family=family, size=size, mode=mode_name, batch=batch,
                   max_length=max_length, rounds=rounds, anchor=fam['anchor_name'],
                   anchor_ran=mode_name in fam['anchor_modes'],
                   tokens=int((ref != fam['pad']).sum()), results={})
        for k in impls:
            med = statistics.median(times[k])
            row['results'][k] = dict(
                captions_per_s=round(batch / med, 3), seconds=[round(x, 4) for x in times[k]],
                same_ids_as_cached=_same(ref, outs[k], fam['pad'], fam['eos'],
                                         k == 'anchor' and fam.get('anchor_trim', False)),
                **mem[k])
        r = row['results']
        row['cache_speedup'] = round(r['vlp cached']['captions_per_s']
                                     / r['vlp uncached']['captions_per_s'], 2)
        if 'anchor' in r:
            row['vs_anchor'] = round(r['vlp cached']['captions_per_s']
                                     / r['anchor']['captions_per_s'], 2)
            row['memory_vs_anchor'] = round(r['vlp cached']['tensors_mib']
                                            / max(r['anchor']['tensors_mib'], 1e-6), 3)
        rows.append(row)
    return rows


def markdown(rows: List[dict]) -> str:
    lines = ['| family | size | mode | vlp cached (captions/s) | vlp uncached | anchor | '
             'cache speed-up | vs anchor | tensors at peak: cached / uncached / anchor (MiB) '
             '| same ids |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        res = r['results']
        a = res.get('anchor')
        same = all(v['same_ids_as_cached'] for v in res.values())
        lines.append(
            f"| {r['family']} | {r['size']} | {r['mode']} | "
            f"{res['vlp cached']['captions_per_s']:.2f} | "
            f"{res['vlp uncached']['captions_per_s']:.2f} | "
            + (f"{a['captions_per_s']:.2f} ({r['anchor']})" if a else
               f"not run ({r['anchor']}: no beam search here)") + ' | '
            f"{r['cache_speedup']:.2f}x | " + (f"**{r['vs_anchor']:.2f}x**" if a else '-')
            + f" | {res['vlp cached']['tensors_mib']} / {res['vlp uncached']['tensors_mib']}"
            f" / {a['tensors_mib'] if a else '-'} | {'yes' if same else 'NO'} |")
    return '\n'.join(lines)


def main(argv=None) -> List[dict]:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--family', nargs='+', default=['blip', 'coca'], choices=['blip', 'coca'])
    p.add_argument('--size', default='small', choices=sorted(SIZES))
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--max-length', type=int, default=30)
    p.add_argument('--modes', nargs='+', default=['greedy', 'beam3'],
                   choices=['greedy', 'beam3'])
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--json', default=None)
    args = p.parse_args(argv)
    rows = []
    for fam in args.family:
        rows += bench_family(fam, args.size, args.batch_size, args.max_length, args.modes,
                             args.rounds, args.device)
    print(markdown(rows))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
