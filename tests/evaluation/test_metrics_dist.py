"""RetrievalMetric and ZeroShotAccuracy across 2 gloo ranks (mmengine's collect_results):
each rank sees the shard a DefaultSampler gives it, with the last batch padded, and the
metrics equal the single-process ones."""
import json
import os
import socket

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vlp.evaluation import RetrievalMetric, ZeroShotAccuracy

N_IMAGES = 11  # odd: the sampler pads one rank with a repeat of image 0
WORLD = 2


def _data():
    g = torch.Generator().manual_seed(0)
    image_feat = F.normalize(torch.randn(N_IMAGES, 16, generator=g), dim=-1)
    preds = []
    for i in range(N_IMAGES):
        k = 2 + i % 3  # variable caption counts
        text = image_feat[i] + 0.9 * torch.randn(k, 16, generator=g)
        logits = torch.randn(7, generator=g)
        preds.append(dict(image_id=i, image_feat=image_feat[i], text_feat=text,
                          logits=logits, label=i % 7))
    return preds


def _metrics():
    return [RetrievalMetric(topk=(1, 2, 5)), ZeroShotAccuracy(topk=(1, 3))]


def _evaluate(metrics, preds, size):
    out = {}
    for metric in metrics:
        for s in range(0, len(preds), 2):
            metric.process(None, preds[s:s + 2])
        out.update(metric.evaluate(size))
    return out


def _worker(rank, port, out_dir):
    torch_dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                                  rank=rank, world_size=WORLD)
    try:
        preds = _data()
        # DefaultSampler(shuffle=False, round_up=True): indices padded to a multiple of
        # the world size with the first ones, rank r takes r::WORLD
        total = -(-N_IMAGES // WORLD) * WORLD
        indices = (list(range(N_IMAGES)) * 2)[:total][rank::WORLD]
        shard = [preds[i] for i in indices]
        results = dict(exact=_evaluate(_metrics(), shard, N_IMAGES),
                       # a size that keeps the padded repeat: de-duplication removes it
                       padded=_evaluate([RetrievalMetric(topk=(1, 2, 5))], shard, total))
        with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(results, f)
    finally:
        torch_dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_rank_collection_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    want = _evaluate(_metrics(), _data(), N_IMAGES)
    for rank in range(WORLD):  # every rank gets the broadcast result
        with open(tmp_path / f'rank{rank}.json') as f:
            got = json.load(f)
        assert got['exact'] == pytest.approx(want)
        assert got['padded'] == pytest.approx(
            {k: v for k, v in want.items() if k.startswith('retrieval/')})
    # the case is not degenerate
    assert 0 < want['retrieval/txt_r1'] < 100 and 0 < want['retrieval/img_r1'] < 100
