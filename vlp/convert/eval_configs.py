"""What a converter writes beside the weights so that they run as they are: the test
pipeline of the reference implementation in ``config.py``, and one evaluation config per
benchmark the family is evaluated on (``eval_<task>.py``), each ready for
``tools/test.py <out_dir>/eval_<task>.py <out_dir>/model.pth``.

An evaluation config is ``_base_ = ['./config.py']`` (the converted model) plus the test
part of the repository's paper config of that benchmark, resolved (dataset, loader,
metric, test loop, the runtime, the test hooks such as the zero-shot classifier), with the
dataset's pipeline replaced by the converted model's own and the model flags the task needs
(``predict_mode='retrieval'``, ...). Data paths are the paper configs' (``data/...``,
relative to where ``tools/test.py`` runs; docs/data.md); the numbers each should reproduce
are in docs/model_zoo.md.
"""
import os.path as osp
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

#: the repository's configs (a source checkout or an editable install)
CONFIG_ROOT = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                       'configs')
#: runtime keys copied from the benchmark's config
RUNTIME_KEYS = ('default_hooks', 'env_cfg', 'vis_backends', 'visualizer', 'log_processor',
                'log_level', 'randomness')
#: custom hooks a test run needs (training hooks are left out)
TEST_HOOKS = ('ZeroShotClassifierHook',)


class EvalEntry(NamedTuple):
    name: str  # eval_<name>.py
    source: str  # the repository's config of the benchmark (relative to configs/)
    pipeline: str  # 'image' (images only) or 'test' (images and tokenised text)
    model: Mapping = {}  # model keys set for the task
    copy_model: Sequence[str] = ()  # model keys taken from the benchmark's config
    when: Optional[Callable[[Mapping], bool]] = None  # applies to this model config


def _has(key: str) -> Callable[[Mapping], bool]:
    return lambda cfg: cfg.get(key) is not None


_RETRIEVAL = ('retrieval_coco', 'retrieval_flickr30k')
# BLIP's captioning evaluation: its prompt, beam 3, lengths 5 to 20
_BLIP_CAPTION = [EvalEntry('caption_coco', 'blip/blip_caption_coco.py', 'image',
                           dict(predict_mode='caption'), copy_model=('prompt', 'generation_cfg'),
                           when=_has('lm_head'))]
EVAL_CONFIGS: Dict[str, List[EvalEntry]] = {
    'CLIP': [EvalEntry('zeroshot_imagefolder', 'clip/clip_zeroshot_imagefolder.py', 'image'),
             *[EvalEntry(n, f'clip/clip_{n}.py', 'test') for n in _RETRIEVAL]],
    'CoCa': [EvalEntry('zeroshot_imagefolder', 'coca/coca_zeroshot_imagefolder.py', 'image',
                       dict(predict_mode='retrieval')),
             *[EvalEntry(n, f'coca/coca_{n}.py', 'test', dict(predict_mode='retrieval'))
               for n in _RETRIEVAL],
             EvalEntry('caption_coco', 'blip2/blip2_stage2_opt.py', 'image',
                       dict(predict_mode='caption'))],
    'BLIP': [*[EvalEntry(n, f'blip/blip_{n}.py', 'test', dict(predict_mode='retrieval'),
                         when=_has('itm_head')) for n in _RETRIEVAL],
             *_BLIP_CAPTION],
    'BLIPCaption': _BLIP_CAPTION,
    'ALBEF': [EvalEntry(n, f'albef/albef_{n}.py', 'test', when=_has('itm_head'))
              for n in _RETRIEVAL],
    'VLMo': [EvalEntry(n, f'vlmo/vlmo_{n}.py', 'test') for n in _RETRIEVAL],
    'ViLT': [EvalEntry(n, f'vilt/vilt_{n}.py', 'test', when=_has('itm_head'))
             for n in _RETRIEVAL],
    'BEiT3Retrieval': [EvalEntry(n, f'beit3/beit3_{n}.py', 'test') for n in _RETRIEVAL],
    'BLIP2LM': [EvalEntry('caption_coco', 'blip2/blip2_stage2_opt.py', 'image',
                          dict(predict_mode='caption'), ('generation_cfg',)),
                EvalEntry('vqa_zeroshot', 'blip2/blip2_vqa_zeroshot_opt.py', 'image',
                          dict(predict_mode='vqa'), ('vqa_prompt', 'generation_cfg'))],
}


# -- pipelines ----------------------------------------------------------------------------------
def image_pipeline(size: int, mode: str = 'square', interpolation: str = 'bicubic') -> list:
    """The test image transforms of a reference implementation: ``'square'`` resizes to
    ``size x size`` (BLIP, ALBEF, BLIP-2, ViLT / VLMo / BEiT-3 in vlp), ``'shorter'`` resizes
    the shorter side and centre-crops (CLIP, open_clip)."""
    if mode == 'square':
        spatial = [dict(type='Resize', size=[size, size], interpolation=interpolation)]
    elif mode == 'shorter':
        spatial = [dict(type='Resize', size=size, interpolation=interpolation),
                   dict(type='CenterCrop', size=size)]
    else:
        raise ValueError(f"mode must be 'square' or 'shorter', got {mode!r}")
    return [dict(type='LoadImage'), *spatial, dict(type='ToTensor')]


def test_pipeline(images: list, tokenizer: Optional[Mapping],
                  clean: Optional[dict] = None) -> Optional[list]:
    """``images`` followed by the caption cleaning (ALBEF / BLIP: ``CleanCaption``) and
    ``Tokenize``; ``None`` without a tokenizer."""
    if tokenizer is None:
        return None
    text = [dict(type='CleanCaption', **clean)] if clean else []
    return [*images, *text, dict(type='Tokenize', tokenizer=dict(tokenizer))]


def pipeline_vars(model_cfg: Mapping, images: list, clean: Optional[dict] = None) -> dict:
    """The ``image_pipeline`` / ``test_pipeline`` variables of a converted ``config.py``."""
    out = dict(image_pipeline=images)
    text = test_pipeline(images, model_cfg.get('tokenizer'), clean)
    if text is not None:
        out['test_pipeline'] = text
    return out


# -- evaluation configs ------------------------------------------------------------------------
def _plain(value):
    return value.to_dict() if hasattr(value, 'to_dict') else value


def eval_config_text(entry: EvalEntry, pipeline: list, out_dir: str) -> str:
    """The source of ``eval_<entry.name>.py``."""
    from mmengine.config import Config

    from .io import format_py
    src = osp.join(CONFIG_ROOT, entry.source)
    cfg = Config.fromfile(src)
    loader = _plain(cfg.test_dataloader)
    loader['dataset']['pipeline'] = pipeline
    parts = {k: _plain(cfg[k]) for k in RUNTIME_KEYS if k in cfg}
    parts.update(test_dataloader=loader, test_evaluator=_plain(cfg.test_evaluator),
                 test_cfg=_plain(cfg.test_cfg))
    hooks = [_plain(h) for h in cfg.get('custom_hooks') or [] if h.get('type') in TEST_HOOKS]
    parts['custom_hooks'] = hooks
    model = {k: _plain(cfg.model[k]) for k in entry.copy_model if k in cfg.model}
    model.update(entry.model)
    rel = osp.relpath(src, osp.dirname(CONFIG_ROOT))
    lines = [f'# Evaluation of the converted model in this directory on {entry.name}: the '
             f'test settings of {rel}',
             '# (data paths relative to where tools/test.py runs) with the converted model\'s '
             'own test pipeline.',
             f'#   python tools/test.py {osp.join(out_dir, f"eval_{entry.name}.py")} '
             f'{osp.join(out_dir, "model.pth")}',
             '# The published numbers to reproduce: docs/model_zoo.md.',
             "_base_ = ['./config.py']", '']
    if model:
        lines.append('model = ' + format_py(model))
    for key, value in parts.items():
        lines.append(f'{key} = ' + format_py(value))
    return '\n'.join(lines) + '\n'


def write_eval_configs(out_dir: str, model_cfg: Mapping, pipelines: Mapping[str, list]
                       ) -> List[str]:
    """Write ``out_dir/eval_<task>.py`` for every benchmark of the model's family whose
    pipeline exists (retrieval needs a tokenizer); returns the paths. Nothing is written
    without the repository's configs (a non-editable install)."""
    written = []
    if not osp.isdir(CONFIG_ROOT):
        return written
    pipes = dict(image=pipelines.get('image_pipeline'), test=pipelines.get('test_pipeline'))
    for entry in EVAL_CONFIGS.get(model_cfg['type'], ()):
        if entry.when is not None and not entry.when(model_cfg):
            continue
        pipeline = pipes[entry.pipeline]
        if pipeline is None or not osp.isfile(osp.join(CONFIG_ROOT, entry.source)):
            continue
        path = osp.join(out_dir, f'eval_{entry.name}.py')
        with open(path, 'w') as f:
            f.write(eval_config_text(entry, pipeline, out_dir))
        written.append(path)
    return written
