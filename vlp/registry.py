"""vlp's registries: children of mmengine's root registries.

With ``default_scope='vlp'`` in a config, ``MODELS.build(cfg.model)`` (and the runner's
builds of datasets, hooks, metrics, strategies...) look here first and fall back to
mmengine's own classes. ``locations`` lists the modules imported the first time a
registry is searched, so a config never needs to import vlp by hand.

An outside package registers into the same registries (``from vlp.registry import
MODELS``) and is loaded from a config with ``custom_imports``.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='vlp', locations=['vlp.models'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='vlp',
                          locations=['vlp.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='vlp',
                    locations=['vlp.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='vlp',
                         locations=['vlp.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='vlp',
                      locations=['vlp.datasets.transforms'])
# collate functions and other callables named in configs
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, scope='vlp',
                     locations=['vlp.datasets'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='vlp', locations=['vlp.engine'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope='vlp', locations=['vlp.engine'])
RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, scope='vlp', locations=['vlp.engine'])
STRATEGIES = Registry('strategy', parent=MMENGINE_STRATEGIES, scope='vlp',
                      locations=['vlp.engine'])
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, scope='vlp',
                      locations=['vlp.engine'])
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='vlp',
                          locations=['vlp.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='vlp', locations=['vlp.engine'])
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
                            scope='vlp', locations=['vlp.engine'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='vlp',
                   locations=['vlp.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR, scope='vlp',
                     locations=['vlp.evaluation'])
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, scope='vlp',
                       locations=['vlp.engine'])
VISBACKENDS = Registry('vis_backend', parent=MMENGINE_VISBACKENDS, scope='vlp',
                       locations=['vlp.engine'])
LOG_PROCESSORS = Registry('log_processor', parent=MMENGINE_LOG_PROCESSORS, scope='vlp',
                          locations=['vlp.engine'])
# Text tokenizers (HF `tokenizers` wrappers). mmengine has no such root registry.
TOKENIZERS = Registry('tokenizer', scope='vlp', locations=['vlp.datasets.tokenizers'])
# CapFilt's stages (captioners, rankers, filters: vlp/capfilt/stages.py); an outside
# package adds one with ``@CAPFILT_STAGES.register_module()`` and ``custom_imports``.
CAPFILT_STAGES = Registry('capfilt stage', scope='vlp', locations=['vlp.capfilt'])
