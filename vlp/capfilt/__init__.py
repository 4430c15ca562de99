"""CapFilt at scale (BLIP, Li et al. 2022, Sec. 3.3, and the recaptioning recipes of
LAION-scale work): a data engine that captions web images and filters their captions
with registered stages (``CAPFILT_STAGES``), over JSON / CSV annotation files or
webdataset shards, on one process or many, resumable. docs/capfilt.md; the command line
is tools/capfilt.py; configs in configs/capfilt/."""
from .engine import (EXIT_INCOMPLETE, CapFiltDataError, CapFiltEngine, run_capfilt)
from .formats import (CsvFormat, JsonFormat, ShardFormat, build_format, detect_format,
                      expand_shards)
from .items import Candidate, Item
from .models import ModelPool, ModelSpec, image_transform_for, text_transform_for
from .stages import (CapFiltStage, CaptionRules, Captioner, DualEncoderRanker, ITMFilter,
                     ScoringStage, SimilarityFilter, build_stages, derive_seed)

__all__ = ['CapFiltEngine', 'CapFiltDataError', 'run_capfilt', 'EXIT_INCOMPLETE',
           'JsonFormat', 'CsvFormat', 'ShardFormat', 'build_format', 'detect_format',
           'expand_shards', 'Candidate', 'Item', 'ModelPool', 'ModelSpec',
           'image_transform_for', 'text_transform_for', 'CapFiltStage', 'Captioner',
           'ScoringStage', 'ITMFilter', 'DualEncoderRanker', 'SimilarityFilter',
           'CaptionRules', 'build_stages', 'derive_seed']
