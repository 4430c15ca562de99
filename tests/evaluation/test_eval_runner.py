"""The metrics and the zero-shot hook inside mmengine's Runner with a tiny CLIP on the demo
data: the numbers the runner reports equal a direct computation from the model."""
import copy

import pytest
import torch
from mmengine.runner import Runner

from vlp.datasets import DEMO_TEMPLATES, DemoClassification, DemoImageText, vlp_collate
from vlp.evaluation import zero_shot_classifier
from vlp.evaluation.metrics.retrieval import itc_ranks, retrieval_metrics

TINY_CLIP = dict(
    type='CLIP',
    vision=dict(type='TimmTower', model_name='vit_tiny_patch16_224', img_size=32,
                patch_size=8, embed_dim=32, depth=2, num_heads=2),
    text=dict(type='TextTransformer', vocab_size=52, context_length=32, width=32, layers=2,
              heads=2),
    vision_proj=dict(type='Projection', in_dim=32, out_dim=16),
    text_proj=dict(type='Projection', in_dim=32, out_dim=16),
    tokenizer=dict(type='DemoTokenizer', style='clip', max_length=32))


def _loader(dataset):
    return dict(batch_size=4, num_workers=0, collate_fn=dict(type='vlp_collate'),
                sampler=dict(type='DefaultSampler', shuffle=False), dataset=dataset)


def _runner(tmp_path, name, val_dataset, test_dataset, evaluator, hooks=()):
    torch.manual_seed(0)
    return Runner(
        model=copy.deepcopy(TINY_CLIP), work_dir=str(tmp_path / name),
        default_scope='vlp', experiment_name=name, log_level='WARNING',
        val_dataloader=_loader(val_dataset), val_evaluator=evaluator,
        val_cfg=dict(type='ValLoop'),
        test_dataloader=_loader(test_dataset), test_evaluator=evaluator,
        test_cfg=dict(type='TestLoop'), custom_hooks=list(hooks),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=100)))


def _batch(dataset):
    return vlp_collate([dataset[i] for i in range(len(dataset))])


def _zero_shot_accuracy(model, dataset):
    batch = _batch(dataset)
    weights = zero_shot_classifier(model, dataset.metainfo['classes'], list(DEMO_TEMPLATES))
    with torch.no_grad():
        logits = model.encode_image(batch['image']) @ weights.t()  # (N, C)
    top = logits.topk(5, dim=1).indices
    hits = top == batch['label'][:, None]
    return {'zero_shot/top1': 100.0 * hits[:, 0].float().mean().item(),
            'zero_shot/top5': 100.0 * hits.any(1).float().mean().item()}


def test_zero_shot_in_runner(tmp_path):
    ds = dict(type='DemoClassification', image_size=32, label='colour_shape')
    runner = _runner(tmp_path, 'zs', dict(ds, split='val', num_images=10),
                     dict(ds, split='test', num_images=14),
                     dict(type='ZeroShotAccuracy'),
                     hooks=[dict(type='ZeroShotClassifierHook', batch_size=64)])
    val = runner.val()
    test = runner.test()
    model = runner.model
    assert model.zero_shot_weights.shape == (40, 16)
    # the hook took the dataset's classes and templates
    torch.testing.assert_close(model.zero_shot_weights, zero_shot_classifier(
        model, DemoClassification(num_images=40).metainfo['classes'], list(DEMO_TEMPLATES)))
    for got, split, n in ((val, 'val', 10), (test, 'test', 14)):
        ds_obj = DemoClassification(split=split, num_images=n, image_size=32)
        want = _zero_shot_accuracy(model, ds_obj)
        assert set(got) == set(want)
        for k in want:
            assert got[k] == pytest.approx(want[k]), (split, k)


def test_retrieval_in_runner(tmp_path):
    ds = dict(type='DemoImageText', split='test', num_images=10, image_size=32)
    runner = _runner(tmp_path, 'ret', ds, ds, dict(type='RetrievalMetric'))
    got = runner.test()
    model = runner.model.eval()
    batch = _batch(DemoImageText(split='test', num_images=10, image_size=32))
    with torch.no_grad():
        image_feat = model.encode_image(batch['image'])  # (10, D)
        text_feat = model.text_features(batch['input_ids'].flatten(0, 1),
                                        batch['attention_mask'].flatten(0, 1))  # (50, D)
    ranks = itc_ranks(image_feat, text_feat, torch.arange(10).repeat_interleave(5))
    want = {f'retrieval/{k}': v for k, v in retrieval_metrics(*ranks).items()}
    assert got == pytest.approx(want)
