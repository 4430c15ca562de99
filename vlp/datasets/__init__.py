"""Importing this package registers datasets, transforms, collate functions and tokenizers."""
from . import transforms  # noqa: F401  (registers the transforms)
from .collate import vlp_collate
from .samplers import DefaultSampler, InfiniteSampler, SampleKey, sample_rng
from .demo import (DEMO_TEMPLATES, DemoClassification, DemoImageText, DemoNLVR2, DemoSNLIVE,
                   DemoVideoText, DemoVQA, demo_class_names, demo_corpus, demo_scenes,
                   demo_task_corpus)
from .image_text import (AnnotationError, BaseImageTextDataset, CsvImageTextDataset,
                         ImageTextJsonDataset)
from .skips import SKIP_REASONS, BadSample, SkipLog
from .unimodal import ImageListDataset, TextCorpusDataset
from .vqa import VQAv2Dataset
from .reasoning import ImageFolderClassification, NLVR2Dataset, SNLIVEDataset
from .webdataset import WebDatasetImageText
from .video_text import (LoadVideoFrames, VideoTextDataset, random_segment_frame_indices,
                         uniform_frame_indices)
from .tokenizers import (BertTokenizer, CLIPTokenizer, DemoLMTokenizer, DemoTokenizer,
                         HFTokenizer, LMTokenizer)

__all__ = ['vlp_collate', 'DefaultSampler', 'InfiniteSampler', 'SampleKey', 'sample_rng',
           'DemoImageText', 'DemoClassification', 'demo_corpus', 'demo_scenes',
           'demo_class_names', 'DEMO_TEMPLATES', 'DemoVQA', 'DemoNLVR2', 'DemoSNLIVE',
           'demo_task_corpus', 'BaseImageTextDataset', 'ImageTextJsonDataset',
           'AnnotationError', 'BadSample', 'SkipLog', 'SKIP_REASONS',
           'CsvImageTextDataset', 'CLIPTokenizer', 'BertTokenizer', 'DemoTokenizer',
           'HFTokenizer', 'LMTokenizer', 'DemoLMTokenizer', 'ImageListDataset',
           'TextCorpusDataset',
           'WebDatasetImageText', 'DemoVideoText', 'LoadVideoFrames', 'VideoTextDataset',
           'random_segment_frame_indices', 'uniform_frame_indices',
           'VQAv2Dataset', 'NLVR2Dataset', 'SNLIVEDataset', 'ImageFolderClassification']
