"""ITM re-ranked retrieval: vlp's ``ITMRetrievalMetric`` (each unique pair of both
directions' top-k scored once, batches sorted by text length, each image's keys/values
computed once per batch) against ALBEF's own evaluation loop, on a synthetic COCO-shaped
test set.

    python benchmarks/rerank.py [--images 60] [--k 3 8] [--family albef blip]
        [--width 256] [--batch-size 128] [--device cpu|cuda] [--json OUT.json]

The test set: ``--images`` images x 5 captions; caption lengths drawn from a COCO-like
spread (BERT tokens, ``[CLS]`` and ``[SEP]`` included: 9-24, mean about 13), padded to 30
as ALBEF's evaluation does; ITC features near their image's, so ITC ranks the positive
high but not always first. Image tokens as the base configs make them: 257 (ALBEF:
ViT-B/16 at 256 px) and 577 (BLIP: at 384 px). The fusion keeps the base depth (ALBEF 6
cross-attention layers, BLIP 12) at ``--width`` (768 is base; the default 256 fits a CPU).

``k`` scaled with the galleries: COCO's k = 256 over 5,000 images / 25,000 texts is 5.1% /
1.0% of them, Flickr30k's k = 128 over 1,000 / 5,000 is 12.8% / 2.6%; with 60 images
(300 texts) those are k = 3 (COCO-shaped) and k = 8 (Flickr-shaped), the same k in both
directions as in the full sets. Images per candidate set are fewer than at full scale, so
the share of cross-attention keys/values computed once per batch is understated here.

ALBEF's loop (``evaluation`` in ALBEF's Retrieval.py, BLIP's train_retrieval.py): for each
image, its ``k`` ITC candidates in one batch with the image repeated ``k`` times; then for
each text, its ``k`` candidate images with the text repeated. Both sides run the same vlp
model's ``rerank_scores``, alternating in one process; the recalls of both score matrices
are compared (they must be identical), and pairs/s counts the ``k * (N_img + N_txt)``
re-ranked (query, candidate) pairs each delivers. The projection for a full COCO 5k
evaluation (k = 256) divides its pair count by the measured rate of the base width on
this device, or, where only a narrower width was run, says so.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

TOKENS = dict(albef=257, blip=577)
LAYERS = dict(albef=6, blip=12)
L_PAD, CAPS = 30, 5


def build(family: str, width: int, device: str):
    """A vlp ALBEF / BLIP with the base fusion depth at ``width`` (random weights; the
    vision tower is tiny: re-ranking reads precomputed image tokens)."""
    import vlp.models  # noqa: F401
    from vlp.registry import MODELS
    heads = max(1, width // 64)
    bert = dict(type='BertEncoder', vocab_size=30524, hidden_size=width, num_heads=heads,
                intermediate_size=4 * width, max_position_embeddings=64)
    vision = dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=32,
                  patch_size=8, embed_dim=width, depth=1, num_heads=heads)
    proj = dict(type='Projection', in_dim=width, out_dim=64, bias=True)
    if family == 'albef':
        cfg = dict(type='ALBEF', vision=vision, text=dict(bert, num_layers=1),
                   fusion=dict(bert, num_layers=LAYERS['albef'], with_embeddings=False,
                               cross_attention_layers='all'),
                   vision_proj=proj, text_proj=proj,
                   itm_head=dict(type='ITMHead', hidden_size=width), mlm_head=None,
                   queue_size=0)
    else:
        cfg = dict(type='BLIP', vision=vision,
                   text=dict(bert, num_layers=LAYERS['blip'], type_vocab_size=0,
                             cross_attention_layers='all'),
                   vision_proj=proj, text_proj=proj,
                   itm_head=dict(type='ITMHead', hidden_size=width), lm_head=None,
                   queue_size=0, enc_token_id=30523, dec_token_id=30522)
    torch.manual_seed(0)
    return MODELS.build(cfg).to(device).eval()


def synthetic(family: str, n_img: int, width: int, seed: int = 0):
    """Rerank inputs of a COCO-shaped set (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    n_txt = n_img * CAPS
    image_embeds = torch.randn(n_img, TOKENS[family], width, generator=g)
    lengths = (9 + torch.distributions.Gamma(2.0, 0.5).sample((n_txt,))).round().clamp(9, 24)
    lengths = lengths.long()
    mask = (torch.arange(L_PAD)[None] < lengths[:, None]).long()
    if family == 'albef':  # unimodal text states
        text = torch.randn(n_txt, L_PAD, width, generator=g) * mask[..., None]
    else:  # token ids, re-encoded by the image-grounded encoder
        text = torch.randint(1000, 30000, (n_txt, L_PAD), generator=g) * mask
        text[:, 0] = 101
    image_feat = F.normalize(torch.randn(n_img, 64, generator=g), dim=-1)
    txt2img = torch.arange(n_img).repeat_interleave(CAPS)
    text_feat = F.normalize(image_feat[txt2img] + 0.2 * torch.randn(n_txt, 64, generator=g),
                            dim=-1)
    return image_feat, text_feat, image_embeds, text, mask, txt2img


@torch.no_grad()
def albef_loop(model, image_feat, text_feat, image_embeds, text, mask, k, device):
    """ALBEF's ``evaluation``: per query, its k candidates in one batch, the query repeated."""
    sim = image_feat @ text_feat.t()
    n_img, n_txt = sim.shape
    s_i2t = torch.full((n_img, n_txt), -100.0)
    s_t2i = torch.full((n_txt, n_img), -100.0)
    for i in range(n_img):
        topk_sim, topk_idx = sim[i].topk(k)
        enc = image_embeds[i].to(device).repeat(k, 1, 1)
        s = model.rerank_scores(enc, text[topk_idx].to(device), mask[topk_idx].to(device),
                                topk_sim.to(device))
        s_i2t[i, topk_idx] = s.float().cpu()
    simt = sim.t()
    for t in range(n_txt):
        topk_sim, topk_idx = simt[t].topk(k)
        s = model.rerank_scores(image_embeds[topk_idx].to(device),
                                text[t].to(device).repeat(k, *[1] * (text.dim() - 1)),
                                mask[t].to(device).repeat(k, 1), topk_sim.to(device))
        s_t2i[t, topk_idx] = s.float().cpu()
    return s_i2t, s_t2i


def vlp_union(model, image_feat, text_feat, image_embeds, text, mask, k, batch_size, device):
    from vlp.evaluation import ITMRetrievalMetric
    metric = ITMRetrievalMetric(k=k, batch_size=batch_size, rerank_device=device)
    metric.bind_model(model)
    import logging
    logging.getLogger('mmengine').setLevel(logging.WARNING)
    return metric.rerank(image_feat, text_feat, image_embeds, text, mask)


def recalls(s_i2t, s_t2i, txt2img):
    from vlp.evaluation.metrics.retrieval import ranks_from_scores, retrieval_metrics
    return retrieval_metrics(*ranks_from_scores(s_i2t, s_t2i, txt2img, 1024), (1, 5, 10))


def unique_pairs(image_feat, text_feat, k) -> int:
    sim = image_feat @ text_feat.t()
    a = torch.zeros_like(sim, dtype=torch.bool).scatter_(1, sim.topk(k, 1).indices, True)
    b = torch.zeros_like(sim.t(), dtype=torch.bool).scatter_(
        1, sim.t().topk(k, 1).indices, True)
    return int((a | b.t()).sum())


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', type=int, default=60)
    p.add_argument('--k', type=int, nargs='+', default=[3, 8])
    p.add_argument('--family', nargs='+', default=['albef', 'blip'], choices=['albef', 'blip'])
    p.add_argument('--width', type=int, default=256)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--rounds', type=int, default=1)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--json', default=None)
    args = p.parse_args(argv)
    rows = []
    for family in args.family:
        model = build(family, args.width, args.device)
        data = synthetic(family, args.images, args.width)
        image_feat, text_feat, image_embeds, text, mask, txt2img = data
        n_img, n_txt = image_feat.shape[0], text_feat.shape[0]
        for k in args.k:
            times = dict(albef_loop=[], vlp=[])
            out = {}
            for _ in range(args.rounds):  # alternating
                for name, fn in (('albef_loop', lambda: albef_loop(
                        model, *data[:5], k, args.device)), ('vlp', lambda: vlp_union(
                        model, *data[:5], k, args.batch_size, args.device))):
                    _sync(args.device)
                    t = time.perf_counter()
                    out[name] = fn()
                    _sync(args.device)
                    times[name].append(time.perf_counter() - t)
            pairs = k * (n_img + n_txt)
            r_ref, r_vlp = recalls(*out['albef_loop'], txt2img), recalls(*out['vlp'], txt2img)
            row = dict(family=family, width=args.width, layers=LAYERS[family],
                       image_tokens=TOKENS[family], images=n_img, texts=n_txt, k=k,
                       pairs=pairs, unique_pairs=unique_pairs(image_feat, text_feat, k),
                       device=args.device, recalls_identical=r_ref == r_vlp, recalls=r_vlp,
                       seconds={n: [round(x, 3) for x in v] for n, v in times.items()})
            for name in times:
                row[f'{name}_pairs_per_s'] = round(pairs / statistics.median(times[name]), 1)
            row['speedup'] = round(row['vlp_pairs_per_s'] / row['albef_loop_pairs_per_s'], 2)
            rows.append(row)
            print(json.dumps(row))
    print('| family (width, layers, image tokens) | images x 5 | k | pairs (unique) | '
          'ALBEF loop pairs/s | vlp pairs/s | speed-up | recalls identical |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['family']} ({r['width']}, {r['layers']}, {r['image_tokens']}) | "
              f"{r['images']} | {r['k']} | {r['pairs']:,} ({r['unique_pairs']:,}) | "
              f"{r['albef_loop_pairs_per_s']} | {r['vlp_pairs_per_s']} | "
              f"**{r['speedup']}x** | {'yes' if r['recalls_identical'] else 'NO'} |")
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
