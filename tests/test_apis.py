"""vlp.apis: init_model round trips a tiny CLIP through a config file and a checkpoint,
loads weights only, and the encode / zero-shot helpers agree with the model."""
import math
import os.path as osp
import pickle

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.registry import init_default_scope

from vlp.apis import encode_image, encode_text, init_model, zero_shot_classify
from vlp.evaluation import zero_shot_classifier
from vlp.registry import MODELS

TINY_CLIP = """
default_scope = 'vlp'
model = dict(
    type='CLIP',
    vision=dict(type='TimmTower', model_name='vit_tiny_patch16_224', img_size=32,
                patch_size=8, embed_dim=32, depth=2, num_heads=2),
    text=dict(type='TextTransformer', vocab_size=52, context_length=32, width=32,
              layers=2, heads=2),
    vision_proj=dict(type='Projection', in_dim=32, out_dim=16),
    text_proj=dict(type='Projection', in_dim=32, out_dim=16),
    tokenizer=dict(type='DemoTokenizer', style='clip', max_length=32))
"""
CLASSES = ['red circle', 'blue square', 'green star']
TEMPLATES = ['a {}', 'a picture of a {}']
SCALE = 7.0  # logit scale set before saving


class Evil:
    """Unpickling this would run :func:`_side_effect`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_side_effect, (self.path,))


def _side_effect(path):
    with open(path, 'w') as f:
        f.write('executed')
    return 'pwned'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('apis')
    cfg_path = str(tmp / 'tiny_clip.py')
    with open(cfg_path, 'w') as f:
        f.write(TINY_CLIP)
    init_default_scope('vlp')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(cfg_path).model).eval()
    with torch.no_grad():  # a non-default logit scale, so it must come from the checkpoint
        model.itc.logit_scale.fill_(math.log(SCALE))
    state = model.state_dict()
    ckpt = str(tmp / 'mmengine.pth')
    torch.save(dict(meta=dict(epoch=3, cfg='...'), state_dict=state), ckpt)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g)
    return dict(tmp=tmp, cfg=cfg_path, model=model, state=state, ckpt=ckpt, images=images)


def _assert_same_outputs(a, b, images):
    torch.testing.assert_close(a.encode_image(images), b.encode_image(images), rtol=0, atol=0)
    texts = ['a red circle on the left', 'a big blue square']
    torch.testing.assert_close(a.encode_text(texts), b.encode_text(texts), rtol=0, atol=0)
    assert torch.equal(a.get_logit_scale(), b.get_logit_scale())


def test_round_trip(setup):
    model = init_model(setup['cfg'], setup['ckpt'], device='cpu')
    assert type(model).__name__ == 'CLIP' and not model.training
    assert isinstance(model.cfg, Config) and model.cfg.model.type == 'CLIP'
    assert model.get_logit_scale().item() == pytest.approx(SCALE)
    _assert_same_outputs(model, setup['model'], setup['images'])
    # a freshly built model (another seed) differs: the weights came from the file
    torch.manual_seed(123)
    fresh = init_model(setup['cfg'])
    assert not torch.allclose(fresh.encode_image(setup['images']),
                              model.encode_image(setup['images']))


def test_bare_and_module_prefixed_state_dicts(setup):
    bare = str(setup['tmp'] / 'bare.pth')
    torch.save({f'module.{k}': v for k, v in setup['state'].items()}, bare)
    model = init_model(Config.fromfile(setup['cfg']), bare)
    _assert_same_outputs(model, setup['model'], setup['images'])


def test_mmengine_training_checkpoint_loads(setup):
    """A checkpoint as mmengine's runner writes it (message hub with HistoryBuffers)."""
    buf = HistoryBuffer()
    buf.update(0.5)
    hub = dict(log_scalars={'train/loss': buf}, runtime_info=dict(epoch=1))
    path = str(setup['tmp'] / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict=setup['state'], message_hub=hub,
                    optimizer=dict(state={}, param_groups=[dict(lr=1e-3)])), path)
    _assert_same_outputs(init_model(setup['cfg'], path), setup['model'], setup['images'])


def test_non_tensor_checkpoint_refused(setup):
    marker = str(setup['tmp'] / 'executed.txt')
    path = str(setup['tmp'] / 'evil.pth')
    torch.save(dict(state_dict=setup['state'], extra=Evil(marker)), path)
    with pytest.raises(pickle.UnpicklingError):
        init_model(setup['cfg'], path)
    assert not osp.exists(marker)


def test_strict_and_cfg_options(setup):
    # one text layer instead of two: the checkpoint's second layer is unexpected
    opts = {'model.text.layers': 1}
    with pytest.raises(RuntimeError, match='unexpected'):
        init_model(setup['cfg'], setup['ckpt'], cfg_options=opts)
    model = init_model(setup['cfg'], setup['ckpt'], cfg_options=opts, strict=False)
    assert model.text.num_layers == 1
    # a missing key
    path = str(setup['tmp'] / 'missing.pth')
    state = dict(setup['state'])
    state.pop('text_proj.proj.weight')
    torch.save(dict(state_dict=state), path)
    with pytest.raises(RuntimeError, match='text_proj.proj.weight'):
        init_model(setup['cfg'], path)
    with pytest.raises(FileNotFoundError):
        init_model(setup['cfg'], str(setup['tmp'] / 'nope.pth'))


def test_encode_helpers(setup):
    model = setup['model']
    images = setup['images']
    feat = encode_image(model, images)
    assert feat.shape == (3, 16) and not feat.requires_grad
    torch.testing.assert_close(feat.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(encode_image(model, list(images)), feat)
    # uint8 images are normalised with the preprocessor's statistics: the same features as
    # floats in [0, 1] (torchvision's convention), and as the model's own method on the
    # normalised batch; floats outside [0, 1] (a normalised batch) are refused, not guessed
    torch.testing.assert_close(encode_image(model, images.float() / 255), feat)
    normed = model.data_preprocessor.normalize(images)
    torch.testing.assert_close(model.image_features(normed), feat)
    with pytest.raises(ValueError, match=r'must lie in \[0, 1\]'):
        encode_image(model, normed)
    tok = model.tokenizer(['a red circle'])
    torch.testing.assert_close(encode_text(model, ['a red circle']),
                               model.text_features(tok['input_ids'], tok['attention_mask']))


def test_zero_shot_classify_matches_predict(setup):
    model = setup['model']
    images = setup['images']
    probs = zero_shot_classify(model, images, CLASSES, TEMPLATES)
    assert probs.shape == (3, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    weights = zero_shot_classifier(model, CLASSES, TEMPLATES)
    want = (SCALE * encode_image(model, images) @ weights.t()).softmax(-1)
    torch.testing.assert_close(probs, want)
    # the model's predict path gives the same logits
    model.set_zero_shot_classifier(weights)
    try:
        out = model.predict(dict(images=model.data_preprocessor.normalize(images)))
    finally:
        model.set_zero_shot_classifier(None)
    torch.testing.assert_close(torch.stack([o['logits'] for o in out]).softmax(-1), probs)
    # prompt ensemble: average of normalised per-template embeddings, renormalised
    per_t = torch.stack([F.normalize(model.encode_text([t.format(c) for c in CLASSES]), dim=-1)
                         for t in TEMPLATES])  # (T, C, D)
    torch.testing.assert_close(weights, F.normalize(per_t.mean(0), dim=-1))
