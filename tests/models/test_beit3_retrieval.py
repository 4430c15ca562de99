"""Tests of BEiT3Retrieval (BEiT-3, Wang et al. 2022, Sec. 3.2: the multiway encoder as a
dual encoder fine-tuned with ITC for retrieval) at toy size on CPU."""
import torch

from vlp.evaluation.metrics.retrieval import RetrievalMetric
from vlp.models.algorithms.beit3 import BEiT3
from vlp.models.algorithms.beit3_retrieval import BEiT3Retrieval
from vlp.registry import MODELS

WIDTH, VOCAB, IMG, PATCH = 32, 40, 32, 16
BACKBONE = dict(type='BEiT3Transformer', img_size=IMG, patch_size=PATCH, vocab_size=VOCAB,
                max_text_len=16, embed_dim=WIDTH, depth=2, num_heads=2)


def _model(**kw):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='BEiT3Retrieval', backbone=BACKBONE,
        vision_proj=dict(type='Projection', in_dim=WIDTH, out_dim=WIDTH, bias=False),
        text_proj=dict(type='Projection', in_dim=WIDTH, out_dim=WIDTH, bias=False),
        itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0), **kw))


def _batch(B=6, L=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, 3, IMG, IMG, generator=g)
    ids = torch.randint(4, VOCAB, (B, L), generator=g)
    ids[:, 0] = 1  # [CLS]-like first token
    mask = torch.ones(B, L, dtype=torch.long)
    mask[::2, -2:] = 0  # some padding
    return dict(images=images, input_ids=ids, attention_mask=mask)


def _train(model, batch, steps, lr=1e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        out = model(batch, mode='loss')
        loss = out['loss_itc']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_registered():
    assert MODELS.get('BEiT3Retrieval') is BEiT3Retrieval


def test_loss_finite_and_decreases():
    model = _model()
    losses = _train(model, _batch(), steps=8)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert set(model(_batch(), mode='loss')) == {'loss_itc', 'logit_scale'}
    assert losses[-1] < losses[0]


def test_predict_format():
    model = _model().eval()
    b = _batch(B=3)
    K = 2
    ids = b['input_ids'][:, None].expand(-1, K, -1).clone()  # (B, K, L)
    mask = b['attention_mask'][:, None].expand(-1, K, -1).clone()
    with torch.no_grad():
        out = model(dict(images=b['images'], input_ids=ids, attention_mask=mask),
                    data_samples=dict(image_id=torch.arange(3)), mode='predict')
    assert len(out) == 3
    for i, r in enumerate(out):
        assert r['image_feat'].shape == (WIDTH,)
        assert r['text_feat'].shape == (K, WIDTH)
        assert r['image_id'] == i
        assert torch.allclose(r['image_feat'].norm(), torch.tensor(1.0), atol=1e-5)
    # CLIP-style inference API
    assert model.encode_image(b['images']).shape == (3, WIDTH)
    assert model.encode_text(b['input_ids']).shape == (3, WIDTH)


def test_beit3_state_dict_loads_with_only_heads_differing():
    torch.manual_seed(0)
    pre = BEiT3(backbone=BACKBONE,
                mlm_head=dict(type='MLMHead', hidden_size=WIDTH, vocab_size=VOCAB),
                mim_head=dict(type='MIMHead', hidden_size=WIDTH, out_dim=64),
                visual_tokenizer=dict(type='RandomProjectionTokenizer', patch_size=PATCH,
                                      num_classes=64, code_dim=8, seed=0))
    model = _model()
    res = model.load_state_dict(pre.state_dict(), strict=False)
    assert res.missing_keys and all(
        k.startswith(('vision_proj.', 'text_proj.', 'itc.')) for k in res.missing_keys)
    assert res.unexpected_keys and all(
        k.startswith(('mlm_head.', 'mim_head.', 'visual_tokenizer.'))
        for k in res.unexpected_keys)
    for k, v in pre.state_dict().items():
        if k.startswith('backbone.'):
            assert torch.equal(model.state_dict()[k], v), k


def test_recall_after_overfitting():
    model = _model()
    B = 8
    batch = _batch(B=B, seed=3)
    _train(model, batch, steps=60, lr=2e-3)
    model.eval()
    with torch.no_grad():
        preds = model(batch, data_samples=dict(image_id=torch.arange(B)), mode='predict')
    metric = RetrievalMetric()
    metric.process(None, preds)
    res = metric.compute_metrics(metric.results)
    assert res['txt_r1'] == 100.0 and res['img_r1'] == 100.0, res
