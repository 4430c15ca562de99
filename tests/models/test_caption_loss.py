"""CaptionLoss: token-mean cross-entropy, label smoothing as torch's, ignore_index."""
import math

import pytest
import torch

from vlp.registry import MODELS


def _data(seed=0, B=3, T=5, V=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 2
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, 3:] = -100  # padding
    labels[2, 0] = -100  # a prompt token
    return logits, labels


def _by_hand(logits, labels, eps, ignore=-100):
    """``(1 - eps) * -log p_y + eps * mean_v(-log p_v)`` averaged over kept tokens, written
    out with Python loops."""
    V = logits.shape[-1]
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            y = int(labels[b, t])
            if y == ignore:
                continue
            z = [float(v) for v in logits[b, t]]
            m = max(z)
            log_norm = m + math.log(sum(math.exp(v - m) for v in z))
            nll = log_norm - z[y]
            uniform = sum(log_norm - v for v in z) / V
            total += (1 - eps) * nll + eps * uniform
            count += 1
    return total / count


@pytest.mark.parametrize('eps', [0.0, 0.1, 0.5])
def test_caption_loss_matches_hand_computation(eps):
    logits, labels = _data()
    loss = MODELS.build(dict(type='CaptionLoss', label_smoothing=eps))(logits, labels)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(_by_hand(logits, labels, eps), rel=1e-5)


def test_caption_loss_ignores_ignored_tokens():
    logits, labels = _data()
    loss_fn = MODELS.build(dict(type='CaptionLoss', label_smoothing=0.1))
    base = loss_fn(logits, labels)
    changed = logits.clone()
    changed[labels == -100] = torch.randn_like(changed[labels == -100]) * 10
    assert loss_fn(changed, labels).item() == pytest.approx(base.item(), rel=1e-6)
    # ignored positions get no gradient, kept ones do
    logits = logits.clone().requires_grad_(True)
    loss_fn(logits, labels).backward()
    assert logits.grad[labels == -100].abs().sum() == 0
    assert (logits.grad[labels != -100].abs().sum(-1) > 0).all()
    # a token mean over the batch, not a mean of per-row means
    rows = [loss_fn(logits[i:i + 1], labels[i:i + 1]).item() for i in range(3)]
    counts = (labels != -100).sum(1).tolist()
    assert base.item() == pytest.approx(sum(r * c for r, c in zip(rows, counts)) / sum(counts),
                                        rel=1e-5)
    assert base.item() != pytest.approx(sum(rows) / 3, rel=1e-3)


def test_caption_loss_custom_ignore_index_and_empty_batch():
    logits, labels = _data()
    pad = labels.masked_fill(labels == -100, 0)  # open_clip style: pad id 0 ignored
    loss = MODELS.build(dict(type='CaptionLoss', ignore_index=0))(logits, pad)
    assert loss.item() == pytest.approx(_by_hand(logits, pad, 0.0, ignore=0), rel=1e-5)
    empty = torch.full_like(labels, -100)
    logits.requires_grad_(True)
    loss = MODELS.build(dict(type='CaptionLoss'))(logits, empty)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad.abs().sum() == 0


def test_caption_loss_low_precision_logits_and_shape_check():
    logits, labels = _data()
    loss_fn = MODELS.build(dict(type='CaptionLoss', label_smoothing=0.1))
    half = loss_fn(logits.bfloat16(), labels)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(loss_fn(logits.bfloat16().float(), labels).item())
    with pytest.raises(ValueError):
        loss_fn(logits, labels[:, :-1])
    with pytest.raises(ValueError):
        MODELS.build(dict(type='CaptionLoss', label_smoothing=1.5))
