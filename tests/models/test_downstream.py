"""Task heads and the downstream wrappers (VQAClassifier, VLClassifier) on every fusion
family's ``fused_features``: shapes, losses against hand computations, pretrained loading."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope

from vlp.models.algorithms.base import without_weights
from vlp.models.algorithms.downstream import VLClassifier, VQAClassifier
from vlp.models.heads import ClassifierHead
from vlp.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = {
    'vilt': 'configs/vilt/vilt_tiny_demo.py',
    'vlmo': 'configs/vlmo/vlmo_tiny_demo.py',
    'albef': 'configs/albef/albef_tiny_demo.py',
    'blip': 'configs/blip/blip_tiny_demo.py',
    'beit3': 'configs/beit3/beit3_tiny_demo.py',
}


def family_cfg(name):
    cfg = Config.fromfile(str(ROOT / FAMILIES[name]))
    model = without_weights(cfg.model.to_dict())
    if name == 'vlmo':
        model['stage'] = 'image_text'
    return model, cfg


def _image_size(cfg):
    return cfg.get('image_size', 64)


def _inputs(cfg, B=3, L=8, seed=0, vocab=50):
    g = torch.Generator().manual_seed(seed)
    S = _image_size(cfg)
    images = torch.randn(B, 3, S, S, generator=g)
    ids = torch.randint(5, vocab, (B, L), generator=g)
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, -2:] = 0
    return images, ids, mask


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('vlp')
    torch.manual_seed(0)


# -- heads ---------------------------------------------------------------------------------
def test_classifier_head_shapes_and_layout():
    head = ClassifierHead(in_channels=8, num_classes=5)  # ViLT's VQA head: 8 -> 16 -> 5
    assert [type(m).__name__ for m in head.mlp] == ['Linear', 'LayerNorm', 'GELU', 'Linear']
    assert head.mlp[0].out_features == 16 and head.num_classes == 5
    assert head(torch.randn(4, 8)).shape == (4, 5)
    pair = ClassifierHead(in_channels=8, num_classes=2, num_inputs=2, pooler='ln_bert')
    assert pair.mlp[0].in_features == 16 and pair.mlp[0].out_features == 16
    x = torch.randn(4, 2, 8)
    expected = pair.mlp(pair.pooler(x).flatten(1))  # pooler per state, then concatenation
    torch.testing.assert_close(pair(x), expected)
    with pytest.raises(ValueError, match='2 state'):
        pair(torch.randn(4, 8))
    albef = ClassifierHead(in_channels=8, num_classes=3, hidden_channels=8, norm=False,
                           act='relu')
    assert [type(m).__name__ for m in albef.mlp] == ['Linear', 'ReLU', 'Linear']
    assert isinstance(ClassifierHead(8, 3, hidden_channels=0).mlp, torch.nn.Linear)
    with pytest.raises(ValueError, match='pooler'):
        ClassifierHead(8, 3, pooler='max')


# -- every family's fused representation ------------------------------------------------------
@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_fused_features_depend_on_image_and_text(name):
    model_cfg, cfg = family_cfg(name)
    model = MODELS.build(model_cfg).eval()
    images, ids, mask = _inputs(cfg)
    with torch.no_grad():
        f = model.fused_features(images, ids, mask)
        assert f.dim() == 2 and f.shape[0] == 3 and torch.isfinite(f).all()
        other_img = model.fused_features(images.flip(0), ids, mask)
        other_txt = model.fused_features(images, ids.flip(0), mask.flip(0))
    assert not torch.allclose(f, other_img, atol=1e-5)  # the image is read
    assert not torch.allclose(f, other_txt, atol=1e-5)  # and the text
    # one sample at a time gives the same state (no leakage across the batch)
    with torch.no_grad():
        single = model.fused_features(images[1:2], ids[1:2], mask[1:2])
    torch.testing.assert_close(single, f[1:2], atol=1e-4, rtol=1e-4)


# -- VQA -------------------------------------------------------------------------------------
ANSWERS = ['yes', 'no', '2', 'red', 'left']


def vqa_model(name='vilt', **kw):
    model_cfg, cfg = family_cfg(name)
    width = cfg.width
    head = dict(type='ClassifierHead', in_channels=width, num_classes=len(ANSWERS))
    drop = kw.pop('drop_parts', ('itm_head', 'mlm_head') if name == 'vilt' else ())
    return VQAClassifier(model_cfg, head, answer_list=ANSWERS, drop_parts=drop, **kw), cfg


def test_vqa_targets_soft_scores():
    model, _ = vqa_model()
    answers = [['2'] * 3 + ['two'] + ['3'] * 6,  # 'two' normalises to '2': 4 votes
               ['Yes'] * 2 + ['no'] * 8,
               ['blue'] * 10]                  # out of the vocabulary: no target
    t = model.vqa_targets(answers, 'cpu')
    expected = torch.zeros(3, 5)
    expected[0, 2] = 1.0             # BUTD: 4 annotators -> 1.0
    expected[1, 0], expected[1, 1] = 0.6, 1.0
    torch.testing.assert_close(t, expected)
    vqa = vqa_model(target='vqa')[0].vqa_targets(answers[:1], 'cpu')
    # official accuracy of '2' with 4 of 10 humans: each leave-one-out subset has 3 or 4
    # matches -> min(1, m / 3) = 1
    assert vqa[0, 2].item() == pytest.approx(1.0)
    two = vqa_model(target='vqa')[0].vqa_targets([['2'] * 2 + ['3'] * 8], 'cpu')
    # 2 matches: 8 subsets keep both (2/3), 2 subsets drop one (1/3) -> 0.6
    assert two[0, 2].item() == pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)


def test_vqa_loss_is_bce_times_vocabulary_and_predicts_answers():
    model, cfg = vqa_model()
    images, ids, mask = _inputs(cfg)
    answers = [['yes'] * 10, ['red'] * 5 + ['left'] * 5, ['2'] * 10]
    inputs = dict(images=images, input_ids=ids, attention_mask=mask)
    losses = model.loss(inputs, dict(answers=answers))
    logits = model.logits(inputs)
    targets = model.vqa_targets(answers, 'cpu')
    manual = F.binary_cross_entropy_with_logits(logits, targets) * len(ANSWERS)
    torch.testing.assert_close(losses['loss_vqa'], manual)
    losses['loss_vqa'].backward()
    assert model.model.backbone.patch_embed.weight.grad.abs().sum() > 0
    # a few steps on the batch: the predictions become the answers
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(40):
        opt.zero_grad()
        model.loss(inputs, dict(answers=answers))['loss_vqa'].backward()
        opt.step()
    model.eval()
    out = model.predict(inputs, dict(answers=answers, question_id=[7, 8, 9]))
    assert [o['question_id'] for o in out] == [7, 8, 9]
    assert out[0]['pred_answer'] == 'yes' and out[2]['pred_answer'] == '2'
    assert out[1]['pred_answer'] in ('red', 'left')


def test_vqa_head_size_must_match_answers():
    model_cfg, cfg = family_cfg('vilt')
    with pytest.raises(ValueError, match='outputs'):
        VQAClassifier(model_cfg, dict(type='ClassifierHead', in_channels=cfg.width,
                                      num_classes=3), answer_list=ANSWERS)


# -- NLVR2 / SNLI-VE ---------------------------------------------------------------------------
def test_nlvr2_separate_pair_encoding_matches_manual():
    model_cfg, cfg = family_cfg('vilt')
    clf = VLClassifier(model_cfg, dict(type='ClassifierHead', in_channels=cfg.width,
                                       num_classes=2, num_inputs=2),
                       num_images=2, drop_parts=('itm_head', 'mlm_head')).eval()
    images, ids, mask = _inputs(cfg, B=2)
    pairs = torch.stack([images, images.flip(0)], dim=1)  # (B, 2, 3, H, W)
    inputs = dict(images=pairs, input_ids=ids, attention_mask=mask)
    with torch.no_grad():
        logits = clf.logits(inputs)
        f0 = clf.model.fused_features(pairs[:, 0], ids, mask)
        f1 = clf.model.fused_features(pairs[:, 1], ids, mask)
        manual = clf.head(torch.stack([f0, f1], dim=1))
        swapped = clf.logits(dict(inputs, images=pairs.flip(1)))
    torch.testing.assert_close(logits, manual, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(logits, swapped)  # left / right are told apart
    with pytest.raises(ValueError, match='pairs'):
        clf.logits(dict(inputs, images=images))
    clf.train()
    losses = clf.loss(inputs, dict(label=torch.tensor([1, 0])))
    torch.testing.assert_close(losses['loss_cls'],
                               F.cross_entropy(clf.logits(inputs), torch.tensor([1, 0])))
    out = clf.predict(inputs, dict(label=[1, 0], identifier=['a', 'b']))
    assert out[1]['identifier'] == 'b' and out[0]['pred_label'] in (0, 1)
    assert out[0]['scores'].sum().item() == pytest.approx(1.0, abs=1e-5)


def test_joint_pair_encoding_needs_the_family_fusion():
    model_cfg, cfg = family_cfg('vilt')
    with pytest.raises(TypeError, match='two-image fusion'):
        VLClassifier(model_cfg, dict(type='ClassifierHead', in_channels=cfg.width,
                                     num_classes=2), num_images=2, pair_encoding='joint')


@pytest.mark.parametrize('name', ['albef', 'vlmo', 'beit3', 'blip'])
def test_snli_ve_classifier_trains_every_family(name):
    model_cfg, cfg = family_cfg(name)
    width = cfg.width
    drop = dict(albef=('itm_head', 'mlm_head', 'vision_proj', 'text_proj'),
                vlmo=('itm_head', 'mlm_head', 'mim_head', 'visual_tokenizer'),
                beit3=('mlm_head', 'mim_head', 'visual_tokenizer'),
                blip=('itm_head', 'lm_head', 'decoder'))[name]
    clf = VLClassifier(model_cfg, dict(type='ClassifierHead', in_channels=width,
                                       num_classes=3), drop_parts=drop)
    images, ids, mask = _inputs(cfg)
    inputs = dict(images=images, input_ids=ids, attention_mask=mask)
    losses = clf.loss(inputs, dict(label=torch.tensor([0, 1, 2])))
    assert torch.isfinite(losses['loss_cls'])
    losses['loss_cls'].backward()
    trained = [n for n, p in clf.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert any(n.startswith('head.') for n in trained)
    assert any(n.startswith('model.') for n in trained)
    for part in drop:
        assert getattr(clf.model, part) is None
        assert not any(k.startswith(f'model.{part}.') for k in clf.state_dict())


# -- pretrained loading ----------------------------------------------------------------------
def test_load_pretrained_family_checkpoint(tmp_path):
    model_cfg, cfg = family_cfg('vlmo')
    model_cfg['itm_head']['pooler'] = True  # VLMo's pooler: reused by the task head
    family = MODELS.build(model_cfg)
    path = tmp_path / 'vlmo.pth'
    torch.save(dict(state_dict=family.state_dict(), meta=dict(epoch=1)), path)
    clf = VLClassifier(model_cfg, dict(type='ClassifierHead', in_channels=cfg.width,
                                       num_classes=3, pooler='bert'),
                       pretrained=str(path), drop_parts=('mim_head', 'visual_tokenizer'),
                       revise_keys=[(r'^model\.itm_head\.pooler\.0\.', 'head.pooler.0.')])
    own = clf.state_dict()
    for k, v in family.state_dict().items():
        if k.startswith(('mim_head.', 'visual_tokenizer.')):
            continue
        if k.startswith('itm_head.pooler.0.'):
            torch.testing.assert_close(own['head.pooler.0.' + k.split('.')[-1]], v)
        else:
            torch.testing.assert_close(own['model.' + k], v)
    # a checkpoint of another model is refused
    torch.save({'foo.weight': torch.zeros(2)}, tmp_path / 'other.pth')
    with pytest.raises(ValueError, match='no key'):
        VLClassifier(model_cfg, dict(type='ClassifierHead', in_channels=cfg.width,
                                     num_classes=3), pretrained=str(tmp_path / 'other.pth'))


def test_pretrained_from_work_dir_with_a_grown_vocabulary(tmp_path):
    """A model pre-trained on the caption vocabulary (53 ids) fine-tunes on the task
    vocabulary (115 ids, the caption ids kept): the embedding rows are copied, the new rows
    keep their init; the checkpoint is found through the work dir's last_checkpoint."""
    model_cfg, cfg = family_cfg('albef')
    family = MODELS.build(model_cfg)
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=family.state_dict()), ckpt)
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    grown_cfg = dict(model_cfg, text=dict(model_cfg['text'], vocab_size=115), mlm_head=None)
    clf = VLClassifier(grown_cfg, dict(type='ClassifierHead', in_channels=cfg.width,
                                       num_classes=3), pretrained=str(tmp_path))
    old = family.text.word_embeddings.weight
    new = clf.model.text.word_embeddings.weight
    assert new.shape == (115, old.shape[1])
    torch.testing.assert_close(new[:53], old)
    assert not torch.equal(new[53:60], torch.zeros_like(new[53:60]))  # init kept
    # any other shape mismatch is refused
    bad_cfg = dict(model_cfg, fusion=dict(model_cfg['fusion'], intermediate_size=128))
    with pytest.raises(ValueError, match='shape mismatch'):
        VLClassifier(bad_cfg, dict(type='ClassifierHead', in_channels=cfg.width,
                                   num_classes=3), pretrained=str(ckpt))
    (tmp_path / 'untrained').mkdir()
    with pytest.raises(FileNotFoundError, match='last_checkpoint'):
        VLClassifier(model_cfg, dict(type='ClassifierHead', in_channels=cfg.width,
                                     num_classes=3), pretrained=str(tmp_path / 'untrained'))


def test_task_checkpoint_into_two_image_fusion(tmp_path):
    """A fine-tuned task model (SNLI-VE: VLClassifier keys model.* / head.*) starts an
    ALBEF NLVR2 model: revise_keys strips the wrapper, then ALBEF's adapter expands the
    fusion layers (k -> 2k, 2k + 1) as it does for a pre-training checkpoint."""
    model_cfg, cfg = family_cfg('albef')
    head = dict(type='ClassifierHead', in_channels=cfg.width, num_classes=3)
    ve = VLClassifier(model_cfg, head)
    torch.save(dict(state_dict=ve.state_dict()), tmp_path / 've.pth')
    n = len(ve.model.fusion.blocks)
    joint_cfg = dict(model_cfg, two_image_fusion=True,
                     fusion=dict(model_cfg['fusion'], num_layers=2 * n))
    nlvr2 = VLClassifier(joint_cfg, dict(head, num_classes=2), num_images=2,
                         pair_encoding='joint', pretrained=str(tmp_path / 've.pth'),
                         revise_keys=[(r'^model\.model\.', 'model.')])
    src = ve.model.fusion.blocks
    dst = nlvr2.model.fusion.blocks
    for k in range(n):
        for j in (2 * k, 2 * k + 1):
            torch.testing.assert_close(dst[j].mlp.fc1.weight, src[k].mlp.fc1.weight)
            torch.testing.assert_close(dst[j].attn.qkv.weight, src[k].attn.qkv.weight)
    vision = ve.model.vision.state_dict()
    assert vision and all(torch.equal(v, nlvr2.model.vision.state_dict()[k])
                          for k, v in vision.items())
