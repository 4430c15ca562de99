"""Contrastive losses: InfoNCE / SigLIP against direct computations, the temperature
clamp, the queue seam, and a real 2-process gloo run against the 1-process global batch."""
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vlp.models.losses.contrastive import ContrastiveLoss, SigLIPLoss, all_gather_features
from vlp.registry import MODELS


def _feats(n: int, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    return img, txt


def _ref_ce_rows(S, pos, eps=0.0, targets=None):
    """Mean over rows of the (label-smoothed / soft-target) cross-entropy, by loops."""
    total = 0.0
    for i in range(S.shape[0]):
        lse = torch.logsumexp(S[i], dim=0)
        nll = [lse - S[i, j] for j in range(S.shape[1])]
        if targets is None:
            t = [(1 - eps) * (j == pos[i]) + eps / S.shape[1] for j in range(S.shape[1])]
        else:
            t = [(1 - eps) * targets[i, j] + eps / S.shape[1] for j in range(S.shape[1])]
        total = total + sum(t[j] * nll[j] for j in range(S.shape[1]))
    return total / S.shape[0]


def _ref_infonce(img, txt, scale, eps=0.0):
    N = img.shape[0]
    S = torch.empty(N, N, dtype=torch.float64)
    for i in range(N):
        for j in range(N):
            S[i, j] = scale * torch.dot(img[i], txt[j])
    pos = list(range(N))
    return 0.5 * (_ref_ce_rows(S, pos, eps) + _ref_ce_rows(S.t(), pos, eps))


def _ref_siglip(img, txt, t, b):
    N = img.shape[0]
    total = 0.0
    for i in range(N):
        for j in range(N):
            z = 1.0 if i == j else -1.0
            logit = t * torch.dot(img[i], txt[j]) + b
            total = total - math.log(1.0 / (1.0 + math.exp(-z * float(logit))))
    return total / N


def test_registered_and_defaults():
    loss = MODELS.build(dict(type='ContrastiveLoss'))
    assert isinstance(loss, ContrastiveLoss)
    assert loss.logit_scale.dim() == 0 and loss.logit_scale.requires_grad
    assert loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    sig = MODELS.build(dict(type='SigLIPLoss'))
    assert sig.logit_scale.item() == pytest.approx(math.log(10.0))
    assert sig.logit_bias.item() == -10.0


def test_infonce_uniform_similarities_is_log_n():
    n = 6
    img = F.normalize(torch.ones(n, 4), dim=-1)
    for eps in (0.0, 0.1):
        out = ContrastiveLoss(label_smoothing=eps)(img, img.clone())
        assert out['loss_itc'].item() == pytest.approx(math.log(n), abs=1e-5)


@pytest.mark.parametrize('eps', [0.0, 0.1])
@pytest.mark.parametrize('local_loss', [False, True])
def test_infonce_matches_reference(eps, local_loss):
    img, txt = _feats(5)
    loss = ContrastiveLoss(temperature=0.1, label_smoothing=eps, local_loss=local_loss)
    out = loss(img, txt)
    ref = _ref_infonce(img, txt, 10.0, eps)
    assert out['loss_itc'].item() == pytest.approx(float(ref), rel=1e-5)
    assert out['logit_scale'].item() == pytest.approx(10.0, rel=1e-5)
    assert not out['logit_scale'].requires_grad


def test_infonce_asymmetric_pairs_are_not_symmetric_in_direction():
    # a loss that averaged only one direction would still pass the reference test if
    # S were symmetric; here S is not and both directions differ
    img, txt = _feats(4, seed=3)
    ref_i2t = _ref_ce_rows(10 * img @ txt.t(), list(range(4)))
    ref_t2i = _ref_ce_rows(10 * txt @ img.t(), list(range(4)))
    assert abs(float(ref_i2t - ref_t2i)) > 1e-3
    out = ContrastiveLoss(temperature=0.1)(img, txt)['loss_itc']
    assert out.item() == pytest.approx(float(0.5 * (ref_i2t + ref_t2i)), rel=1e-5)


def test_temperature_clamp():
    img, txt = _feats(4)
    loss = ContrastiveLoss()
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1000.0))
    out = loss(img, txt)
    assert out['logit_scale'].item() == pytest.approx(100.0, rel=1e-5)
    assert out['loss_itc'].item() == pytest.approx(float(_ref_infonce(img, txt, 100.0)),
                                                   rel=1e-5)
    out['loss_itc'].backward()
    assert loss.logit_scale.grad.item() == 0.0  # no gradient past the bound
    assert loss.logit_scale.item() == pytest.approx(math.log(1000.0))  # not clamped in place
    # inside the bounds the scale is learned
    loss2 = ContrastiveLoss()
    loss2(img, txt)['loss_itc'].backward()
    assert loss2.logit_scale.grad.abs().item() > 0
    # lower bound
    loss3 = ContrastiveLoss(temperature=0.9, min_logit_scale=2.0)
    assert loss3(img, txt)['logit_scale'].item() == pytest.approx(2.0, rel=1e-5)


def test_fixed_temperature_is_a_buffer():
    loss = ContrastiveLoss(temperature=0.05, learnable_temperature=False)
    assert len(list(loss.parameters())) == 0
    assert 'logit_scale' in loss.state_dict()
    assert loss(*_feats(3))['logit_scale'].item() == pytest.approx(20.0, rel=1e-5)


def test_loss_name_is_configurable():
    out = ContrastiveLoss(loss_name='loss_vl')(*_feats(3))
    assert set(out) == {'loss_vl', 'logit_scale'}


def test_queue_seam_extra_columns_and_soft_targets():
    img, txt = _feats(3, seed=1)
    q_img, q_txt = _feats(4, seed=2)  # a feature queue
    m_img, m_txt = _feats(3, seed=5)  # momentum features (the positives)
    img_all, txt_all = torch.cat([m_img, q_img]), torch.cat([m_txt, q_txt])
    loss = ContrastiveLoss(temperature=0.1)
    out = loss(img, txt, columns=(img_all, txt_all))['loss_itc']
    pos = [0, 1, 2]
    ref = 0.5 * (_ref_ce_rows(10 * img @ txt_all.t(), pos)
                 + _ref_ce_rows(10 * txt @ img_all.t(), pos))
    assert out.item() == pytest.approx(float(ref), rel=1e-5)
    # soft targets (ALBEF's momentum distillation)
    ti2t = torch.softmax(torch.randn(3, 7, dtype=torch.float64), dim=1)
    tt2i = torch.softmax(torch.randn(3, 7, dtype=torch.float64), dim=1)
    out = loss(img, txt, columns=(img_all, txt_all), targets=(ti2t, tt2i))['loss_itc']
    ref = 0.5 * (_ref_ce_rows(10 * img @ txt_all.t(), pos, targets=ti2t)
                 + _ref_ce_rows(10 * txt @ img_all.t(), pos, targets=tt2i))
    assert out.item() == pytest.approx(float(ref), rel=1e-5)
    with pytest.raises(ValueError):  # distillation needs the columns
        loss(img, txt, teacher=(m_img, m_txt), alpha=0.4)
    with pytest.raises(ValueError):
        loss(img, txt, columns=(img_all, txt_all), targets=(ti2t[:, :3], tt2i))


def test_column_blocks_equal_concatenated_columns_with_distillation():
    """ALBEF / BLIP pass [momentum features, queue] as blocks: same loss and gradients as
    the concatenated columns, the queue never copied."""
    img, txt = _feats(3, seed=1)
    q_img, q_txt = _feats(6, seed=2)
    m_img, m_txt = _feats(3, seed=5)
    kw = dict(teacher=(m_img, m_txt), alpha=0.4)
    grads, losses = [], []
    for blocks in (False, True):
        loss = ContrastiveLoss(temperature=0.1)
        a, b = img.clone().requires_grad_(), txt.clone().requires_grad_()
        cols = (([m_img, q_img], [m_txt, q_txt]) if blocks
                else (torch.cat([m_img, q_img]), torch.cat([m_txt, q_txt])))
        out = loss(a, b, columns=cols, **kw)['loss_itc']
        out.backward()
        losses.append(out.item())
        grads.append((a.grad, b.grad, loss.logit_scale.grad))
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    for g0, g1 in zip(*grads):
        assert torch.allclose(g0, g1, atol=1e-7)
    # the distillation targets depend on the queue: changing one queue row changes the loss
    q2 = q_img.clone()
    q2[0] = -q2[0]
    other = ContrastiveLoss(temperature=0.1)(img, txt, columns=([m_img, q2], [m_txt, q_txt]),
                                             **kw)
    assert other['loss_itc'].item() != pytest.approx(losses[0], rel=1e-6)


def test_siglip_matches_reference_and_learns_scale_and_bias():
    img, txt = _feats(5, seed=4)
    loss = SigLIPLoss()
    out = loss(img, txt)
    assert out['loss_itc'].item() == pytest.approx(_ref_siglip(img, txt, 10.0, -10.0),
                                                   rel=1e-5)
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(3.0))
        loss.logit_bias.fill_(0.5)
    out = loss(img, txt)
    assert out['loss_itc'].item() == pytest.approx(_ref_siglip(img, txt, 3.0, 0.5), rel=1e-5)
    out['loss_itc'].backward()
    assert loss.logit_scale.grad.abs().item() > 0 and loss.logit_bias.grad.abs().item() > 0
    assert set(out) == {'loss_itc', 'logit_scale', 'logit_bias'}


def test_all_gather_single_process_is_identity():
    x = torch.randn(3, 4)
    assert all_gather_features(x) is x
    assert all_gather_features(x, with_grad=False) is x


# -- two processes (gloo) vs one process on the global batch -------------------------------
N, D, WORLD = 8, 6, 2
CASES = {
    'global': lambda: ContrastiveLoss(),
    'global_ls': lambda: ContrastiveLoss(label_smoothing=0.1, temperature=0.2),
    'local': lambda: ContrastiveLoss(local_loss=True),
    'local_ls': lambda: ContrastiveLoss(local_loss=True, label_smoothing=0.1),
    'siglip': lambda: SigLIPLoss(),
}


def _run_cases(rank: int, world: int) -> dict:
    """Each rank takes its slice of one global batch; features go through a shared linear
    map ``P`` (a stand-in for the towers) and are normalised, as in a model."""
    g = torch.Generator().manual_seed(0)
    x_img = torch.randn(N, D, generator=g, dtype=torch.float64)
    x_txt = torch.randn(N, D, generator=g, dtype=torch.float64)
    P = torch.randn(D, D, generator=g, dtype=torch.float64)
    B = N // world
    sl = slice(rank * B, (rank + 1) * B)
    results = {}
    for name, make in CASES.items():
        loss_mod = make().double()
        xi = x_img[sl].clone().requires_grad_()
        xt = x_txt[sl].clone().requires_grad_()
        Pw = P.clone().requires_grad_()
        img = F.normalize(xi @ Pw, dim=-1)
        txt = F.normalize(xt @ Pw.t(), dim=-1)
        out = loss_mod(img, txt)
        out['loss_itc'].backward()
        res = dict(loss=out['loss_itc'].detach(), g_img=xi.grad, g_txt=xt.grad, g_P=Pw.grad,
                   g_scale=loss_mod.logit_scale.grad)
        if hasattr(loss_mod, 'logit_bias'):
            res['g_bias'] = loss_mod.logit_bias.grad
        results[name] = res
    if world > 1:  # the no-grad gather (feature queue) in rank order
        results['gather_no_grad'] = all_gather_features(x_img[sl], with_grad=False)
    return results


def _dist_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(port)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        torch.save(_run_cases(rank, world), os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def two_rank_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('dist')
    # spawn (fork can deadlock on torch's thread pools); the children re-import vlp
    mp.spawn(_dist_worker, args=(WORLD, _free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f'rank{r}.pt', weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize('name', list(CASES))
def test_two_ranks_match_one_rank_on_global_batch(two_rank_results, name):
    ref = _run_cases(0, 1)[name]
    ranks = [r[name] for r in two_rank_results]
    close = dict(rtol=1e-9, atol=1e-12)
    # loss: the mean over ranks (what DDP optimises) is the global loss; the non-local
    # InfoNCE computes the whole global loss on every rank
    torch.testing.assert_close(sum(r['loss'] for r in ranks) / WORLD, ref['loss'], **close)
    if name.startswith('global'):
        for r in ranks:
            torch.testing.assert_close(r['loss'], ref['loss'], **close)
    # gradients after DDP's averaging over ranks: shared parameters are averaged; a rank's
    # feature gradients (through the gathered columns of every rank) are W x the global
    for key in ('g_P', 'g_scale') + (('g_bias',) if name == 'siglip' else ()):
        torch.testing.assert_close(sum(r[key] for r in ranks) / WORLD, ref[key], **close)
    for key in ('g_img', 'g_txt'):
        torch.testing.assert_close(torch.cat([r[key] for r in ranks]) / WORLD, ref[key],
                                   **close)
    # the gradients are not trivially zero
    assert ref['g_P'].abs().sum() > 0 and ref['g_txt'].abs().sum() > 0


def test_two_ranks_gather_without_grad(two_rank_results):
    g = torch.Generator().manual_seed(0)
    x_img = torch.randn(N, D, generator=g, dtype=torch.float64)
    for r in two_rank_results:
        torch.testing.assert_close(r['gather_no_grad'], x_img)
