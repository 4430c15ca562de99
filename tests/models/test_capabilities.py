"""Capabilities over the registry: every registered algorithm and every config.

Each family declares the public methods it implements (``capabilities``, checked against
the methods it defines); here every declared method is called on tiny random weights with
tiny inputs, and every other public method must raise a ``NotImplementedError`` naming the
family and the method.

- Demo configs build tiny models and are exercised directly.
- Paper configs are built on the meta device (as ``tests/test_configs.py``) to check their
  contract; their behaviour flags (heads removed, ``queue_ids``, ``predict_mode``, ``stage``,
  ``two_image_fusion``...) are then laid over the demo config of the same family, and that
  tiny model is exercised (the flags select the code paths, the demo the sizes).
- Every registered algorithm of vlp has at least one demo config.
"""
import inspect
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import vlp.models  # noqa: F401  (registers the parts)
from vlp.models.algorithms.base import CAPABILITIES, VLPModel, without_weights
from vlp.registry import DATASETS, FUNCTIONS, MODELS

ROOT = Path(__file__).resolve().parents[2]
# model configs (configs/capfilt/ configures a data tool whose stages name model configs)
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.parts and 'capfilt' not in p.parts)
DEMOS = [p for p in CONFIGS if p.name.endswith('_tiny_demo.py')]
PAPERS = [p for p in CONFIGS if p not in DEMOS]
#: paper-config keys laid over the demo config: behaviour, not sizes or files
FLAGS = ('queue_ids', 'itm_negatives', 'predict_mode', 'stage', 'share_decoder',
         'tie_lm_head', 'momentum_distill', 'inference', 'freeze_vision', 'two_image_fusion',
         'label_smoothing', 'target', 'caption_weight', 'contrastive_weight')
# None in a paper config: removed
HEADS = ('mlm_head', 'lm_head', 'itm_head', 'wpa')
# removed only when both are None (BLIP without projections: the captioning model); ALIGN's
# vision_proj=None alone means a tower whose pooled width is already the embedding's
PROJECTIONS = ('vision_proj', 'text_proj')
TASKS = ('VLClassifier', 'VQAClassifier')


def _rel(p):
    return str(p.relative_to(ROOT))


def _families():
    return sorted(name for name, cls in MODELS.module_dict.items()
                  if isinstance(cls, type) and issubclass(cls, VLPModel)
                  and cls.__module__.startswith('vlp.'))


def _load(path):
    init_default_scope('vlp')
    return Config.fromfile(str(path))


_DEMO_CFGS = {}


def demo_cfg(path):
    if path not in _DEMO_CFGS:
        _DEMO_CFGS[path] = _load(path)
    return _DEMO_CFGS[path]


def demo_of(family, inner=None):
    """The first demo config whose model is ``family`` (wrapping ``inner``)."""
    for path in DEMOS:
        m = demo_cfg(path).model
        if m['type'] == family and (inner is None or m.get('model', {}).get('type') == inner):
            return path
    return None


# -- inputs -----------------------------------------------------------------------------------
def batch_of(cfg, model, n=3):
    torch.manual_seed(0)
    dl = cfg.train_dataloader
    ds = DATASETS.build(dl.dataset)
    batch = FUNCTIONS.get(dl.collate_fn['type'])([ds[i] for i in range(n)])
    return model.data_preprocessor(batch, True)


def call(model, name, data):
    """Call the public method ``name`` with tiny inputs from the demo batch ``data``."""
    inp, samples = data['inputs'], data['data_samples']
    images, ids, mask = inp.get('images'), inp.get('input_ids'), inp.get('attention_mask')
    if images is not None and images.dim() == 5 and images.shape[1] == 2:  # NLVR2 pairs
        images = images[:, 0]
    if name == 'loss':
        return model.train().loss(inp, samples)
    model.eval()
    if name == 'predict':
        if getattr(model, 'predict_mode', None) == 'vqa':
            samples = dict(samples or {}, question=['what is it?'] * images.shape[0])
        return model.predict(inp, samples)
    if name == 'extract_feat':
        return model.extract_feat(inp)
    if name == 'encode_image':
        return model.encode_image(images)
    if name == 'encode_text':
        return model.encode_text(ids, mask)
    if name == 'itm_score':
        return model.itm_score(images, ids, mask)
    if name == 'fused_features':
        return model.fused_features(images, ids, mask)
    if name == 'fused_features_pair':
        return model.fused_features_pair(torch.stack([images, images.flip(0)], 1), ids, mask)
    if name == 'generate':
        return model.generate(images, max_length=12, num_beams=1)
    if name == 'answer':
        return model.answer(images, ['what shape is it?'] * images.shape[0])
    if name == 'query_features':
        out = model.query_features(images)
        assert out.dim() == 3 and out.shape[0] == images.shape[0], out.shape
        return out
    if name == 'rerank_scores':  # on the inputs the ITM re-ranking metric gets
        mode = getattr(model, 'predict_mode', None)
        if mode == 'caption':
            model.predict_mode = 'retrieval'
        try:
            res = model.predict(dict(images=images, input_ids=ids, attention_mask=mask))
        finally:
            if mode == 'caption':
                model.predict_mode = mode
        k = res[0]['text_embeds'].shape[0]
        image = res[0]['image_embeds'][None].expand(k, *res[0]['image_embeds'].shape)
        return model.rerank_scores(image, res[0]['text_embeds'], res[0]['text_mask'])
    raise AssertionError(f'no inputs for {name}')


def call_unsupported(model, name):
    """Call ``name`` with ``None`` for each required argument: an unsupported method raises
    before it reads them."""
    method = getattr(model, name)
    required = [p for p in inspect.signature(method).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                       p.POSITIONAL_OR_KEYWORD)]
    with pytest.raises(NotImplementedError) as err:
        method(*[None] * len(required))
    assert type(model).__name__ in str(err.value) and f'{name}()' in str(err.value), err.value


def check_model(model, data):
    family = type(model).__name__
    for name in CAPABILITIES:
        if model.supports(name):
            with torch.no_grad() if name != 'loss' else torch.enable_grad():
                out = call(model, name, data)
            assert out is not None, f'{family}.{name} returned None'
            if name == 'loss':
                assert torch.isfinite(model.parse_losses(out)[0]), f'{family}.loss'
        else:
            call_unsupported(model, name)


# -- the classes ------------------------------------------------------------------------------
def test_every_registered_family_declares_what_it_defines_and_has_a_demo():
    families = _families()
    assert {'ALBEF', 'BLIP', 'BLIP2', 'BLIP2LM', 'BLIPVQA', 'BEiT3', 'BEiT3Retrieval', 'CLIP',
            'CoCa', 'VLClassifier', 'VLMo', 'ViLT', 'VQAClassifier'} <= set(families)
    demo_types = {demo_cfg(p).model['type'] for p in DEMOS}
    for name in families:
        cls = MODELS.get(name)
        assert 'capabilities' in vars(cls), f'{name} declares no capabilities'
        assert cls.capabilities <= set(CAPABILITIES) and 'loss' in cls.capabilities
        for method in cls.capabilities:  # defined here or in the family, not the stubs
            assert not getattr(getattr(cls, method), '_capability_stub', False), (name, method)
        assert VLPModel in cls.__mro__ and name in demo_types, f'{name}: no demo config'


def test_families_inherit_only_the_base_model():
    for name in _families():
        bases = [b for b in MODELS.get(name).__mro__[1:]
                 if isinstance(b, type) and issubclass(b, VLPModel) and b is not VLPModel]
        registered = [b.__name__ for b in bases if MODELS.get(b.__name__) is b]
        assert not registered, f'{name} inherits the families {registered}'


def test_declaring_an_undefined_method_is_an_error():
    with pytest.raises(TypeError, match='does not define'):
        type('Broken', (VLPModel,), dict(capabilities=frozenset({'loss', 'generate'}),
                                         loss=lambda self, *a: {}))
    with pytest.raises(TypeError, match='does not declare'):
        type('Hidden', (VLPModel,), dict(capabilities=frozenset({'loss'}),
                                         loss=lambda self, *a: {}, predict=lambda self: []))
    # an outside plugin that declares nothing gets what it defines
    plugin = type('Plugin', (VLPModel,), dict(loss=lambda self, *a: {}))
    assert plugin.capabilities == {'loss'}


# -- every config -----------------------------------------------------------------------------
@pytest.mark.parametrize('path', DEMOS, ids=_rel)
def test_demo_config_capabilities(path):
    cfg = demo_cfg(path)
    torch.manual_seed(0)
    model = MODELS.build(without_weights(cfg.model.to_dict()))
    check_model(model, batch_of(cfg, model))


def _offline_answer_lists(cfg):
    """A missing ``answer_list`` file becomes placeholder answers (as test_configs.py)."""
    if isinstance(cfg, dict):
        out = {k: _offline_answer_lists(v) for k, v in cfg.items()}
        if isinstance(out.get('answer_list'), str) and not Path(out['answer_list']).exists():
            n = (out.get('head') or {}).get('num_classes') or 16
            out['answer_list'] = [f'answer {i}' for i in range(n)]
        return out
    return cfg


def _flags(model_cfg):
    out = {k: model_cfg[k] for k in FLAGS if k in model_cfg}
    out.update({k: None for k in HEADS if k in model_cfg and model_cfg[k] is None})
    if all(k in model_cfg and model_cfg[k] is None for k in PROJECTIONS):
        out.update({k: None for k in PROJECTIONS})
    return out


def _variants():
    """``(paper config, family, flags)`` of every paper config (and of the family model
    inside a task model), without repeats."""
    seen, out = set(), []
    for path in PAPERS:
        m = _load(path).model.to_dict()
        parts = [(m['type'], _flags(m), m.get('model', {}).get('type'))]
        if m['type'] in TASKS:
            parts.append((m['model']['type'], _flags(m['model']), None))
        for family, flags, inner in parts:
            if family in TASKS:  # its own flags (num_images, pair_encoding) are sizes
                flags = {k: v for k, v in flags.items() if k in ('target', 'label_smoothing')}
            demo = demo_cfg(demo_of(family, inner) or demo_of(family)).model
            if all(demo.get(k, object()) == v for k, v in flags.items()):
                continue  # the demo itself: test_demo_config_capabilities
            key = (family, inner, tuple(sorted(flags.items())))
            if key not in seen:
                seen.add(key)
                out.append(pytest.param(path, family, inner, flags,
                                        id=f'{_rel(path)}:{family}'))
    return out


@pytest.mark.parametrize('path', PAPERS, ids=_rel)
def test_paper_config_contract(path):
    """Built on the meta device: its capabilities are its family's, less what its missing
    parts drop, and the others raise naming the family and the method."""
    with torch.device('meta'):
        model = MODELS.build(_offline_answer_lists(without_weights(
            _load(path).model.to_dict())))
    assert model.capabilities <= type(model).capabilities and 'loss' in model.capabilities
    for name in set(CAPABILITIES) - model.capabilities:
        call_unsupported(model, name)


@pytest.mark.parametrize('path,family,inner,flags', _variants())
def test_paper_config_flags_on_the_demo(path, family, inner, flags):
    demo = demo_of(family, inner) or demo_of(family)
    cfg = demo_cfg(demo)
    model_cfg = without_weights(cfg.model.to_dict())
    model_cfg.update(flags)
    if flags.get('two_image_fusion') and model_cfg.get('fusion'):  # ALBEF: 2N fusion layers
        model_cfg['fusion'] = dict(model_cfg['fusion'],
                                   num_layers=2 * model_cfg['fusion']['num_layers'])
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    check_model(model, batch_of(cfg, model))


# -- the hooks' protocols ---------------------------------------------------------------------
def _hooked():
    out = []
    for path in CONFIGS:
        hooks = {h['type'] for h in _load(path).get('custom_hooks', [])}
        if hooks & {'MomentumUpdateHook', 'FeatureQueueHook', 'DistillAlphaHook',
                    'ITMNegativeWarmupHook'}:
            out.append(pytest.param(path, sorted(hooks), id=_rel(path)))
    return out


@pytest.mark.parametrize('path,hooks', _hooked())
def test_config_hooks_find_their_parts(path, hooks):
    """Every momentum / queue / distillation / ITM warm-up hook of a config finds the part
    (or the momentum twins) it drives in the config's model."""
    from vlp.engine.hooks.momentum import find_parts
    from vlp.models.losses.distill import DistillationSchedule
    from vlp.models.losses.matching import ITMLoss
    from vlp.models.utils.feature_queue import FeatureQueue
    with torch.device('meta'):
        model = MODELS.build(_offline_answer_lists(without_weights(
            _load(path).model.to_dict())))
    parts = dict(FeatureQueueHook=FeatureQueue, DistillAlphaHook=DistillationSchedule,
                 ITMNegativeWarmupHook=ITMLoss)
    for hook in hooks:
        if hook == 'MomentumUpdateHook':
            assert model.momentum_pairs(), f'{_rel(path)}: no momentum twins'
        elif hook in parts:
            assert find_parts(model, parts[hook], hook)
