"""The embedded demo data, generated on the fly (nothing to download).

- :mod:`.scenes`: scenes of coloured shapes with compositional captions
  (:class:`DemoImageText`, :class:`DemoClassification`, :func:`demo_scenes`,
  :func:`render_scene`, :func:`demo_corpus`);
- :mod:`.tasks`: VQA, NLVR2 and SNLI-VE built from the scenes (:class:`DemoVQA`,
  :class:`DemoNLVR2`, :class:`DemoSNLIVE`);
- :mod:`.video`: the scenes as short videos (:class:`DemoVideoText`).
"""
from .scenes import (COLOURS, DEFAULT_NUM_IMAGES, DEMO_TEMPLATES, DEMO_VERSION, POSITIONS,
                     SHAPES, SIZES, SPLITS, DemoClassification, DemoImageText, Obj,
                     demo_class_names, demo_corpus, demo_scenes, make_captions, render_scene,
                     scene_bucket, scene_key)
from .tasks import (DEMO_TASKS_VERSION, DemoNLVR2, DemoSNLIVE, DemoVQA, demo_task_corpus)
from .video import DemoVideoText

__all__ = ['COLOURS', 'DEFAULT_NUM_IMAGES', 'DEMO_TEMPLATES', 'DEMO_VERSION', 'POSITIONS',
           'SHAPES', 'SIZES', 'SPLITS', 'DemoClassification', 'DemoImageText', 'Obj',
           'demo_class_names', 'demo_corpus', 'demo_scenes', 'make_captions', 'render_scene',
           'scene_bucket', 'scene_key', 'DEMO_TASKS_VERSION', 'DemoNLVR2', 'DemoSNLIVE',
           'DemoVQA', 'demo_task_corpus', 'DemoVideoText']
