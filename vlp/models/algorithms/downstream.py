"""Downstream fine-tuning models: a pre-trained family model plus a task head.

The papers fine-tune their pre-trained encoders with a small head on the fused
(multimodal) representation:

- **VQA as classification** (:class:`VQAClassifier`; ViLT Sec. 4.2, VLMo Sec. 4.1, BEiT-3
  Sec. 3.1, ALBEF's classifier variant): an MLP over the pooled fused state scores a fixed
  answer vocabulary (VQAv2: 3,129 answers) against soft VQA scores, a binary cross-entropy
  per answer times the vocabulary size (ViLT's and BUTD's).
- **Visual reasoning / entailment** (:class:`VLClassifier`; NLVR2: two images and a
  statement, true / false; SNLI-VE: three classes): cross-entropy over the classes; NLVR2's
  ``pair_encoding='separate'`` is ViLT's / VLMo's / BEiT-3's "pair" method (each image fused
  with the statement on its own, the two pooled states concatenated).

A family exposes its fused representation as ``fused_features(images, input_ids,
attention_mask) -> [B, C]`` (ViLT's pooled first token, VLMo's fused text ``[CLS]``,
BEiT-3's image ``[CLS]`` of the joint encoding, ALBEF's fusion ``[CLS]``, BLIP's ``[ENC]``).

Both task models inherit only :class:`VLPModel` and compose ``model`` (the family model's
config or module, built by :func:`~vlp.models.algorithms.task.build_family`) and ``head`` (e.g. ``ClassifierHead``).
Their shared arguments: ``pretrained`` (a checkpoint of the family model: a vlp training
checkpoint, a converted one, or a work directory), loaded into ``model.*`` after
``revise_keys`` (``[(pattern, replacement), ...]`` renames, e.g. VLMo's pretrained ITM
pooler into ``head.pooler``), task tokens growing the word embeddings, the missing /
unexpected keys logged; ``drop_parts`` (pre-training-only parts of the family model set to
``None``); ``data_preprocessor`` / ``tokenizer`` (default: the family model's).

Simplifications (docs/tasks.md): ViLT's NLVR2 gives the second image a third token-type
embedding; here both images use the image type (the two passes are told apart by their
position in the concatenation only).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from vlp.evaluation.metrics.vqa import answer_scores, normalize_answer
from vlp.registry import MODELS
# the loading helpers live with the parts; re-exported for their callers
from ..utils.answers import resolve_answer_list
from ..utils.pretrained import (GROW_KEYS, load_pretrained_weights,  # noqa: F401
                                load_state_dict_file, resolve_checkpoint)
from .base import VLPModel, build_part, split_meta, supports
from .task import (FAMILY_TOKENIZER, build_family, family_fused_features,  # noqa: F401
                   keep_initialisation, load_family_checkpoint)


@MODELS.register_module()
class VQAClassifier(VLPModel):
    """VQA as multi-label classification over an answer vocabulary.

    Args:
        answer_list: the answer vocabulary: a list of str, a file (JSON list / dict
            answer -> index, or one answer per line), or a dataset config whose
            ``metainfo['answer_list']`` holds it (``dict(type='DemoVQA')``); answers are
            matched after the official VQA normalisation. The head has
            ``len(answer_list)`` outputs (filled in when its config leaves
            ``num_classes`` out).
        target: soft targets, ``'butd'`` (ViLT / BUTD: 0.3 per annotator, 1 from four on)
            or ``'vqa'`` (the official leave-one-out accuracy of each answer).
        model, head, pretrained, revise_keys, drop_parts, data_preprocessor, tokenizer,
            init_cfg: the task-model arguments (module docstring).

    Batch: ``images``, ``input_ids`` / ``attention_mask`` of the question; ``answers``
    (a list of the human answers per question) in ``data_samples``. ``predict`` adds
    ``pred_answer`` to each sample's metadata (for :class:`~vlp.evaluation.VQAAccuracy`).
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'fused_features', 'answer'})

    def __init__(self, model, head: dict, answer_list: Union[str, Sequence[str]],
                 target: str = 'butd', pretrained: Optional[str] = None,
                 revise_keys: Sequence[Tuple[str, str]] = (), drop_parts: Sequence[str] = (),
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if target not in ('butd', 'vqa'):
            raise ValueError(f"target must be 'butd' or 'vqa', got {target!r}")
        answers = resolve_answer_list(answer_list)
        if isinstance(head, dict) and head.get('num_classes') is None:
            head = dict(head, num_classes=len(answers))
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        self.model = build_family(model, drop_parts)
        self.head = build_part(head)
        self.revise_keys = [tuple(r) for r in revise_keys]
        if pretrained:
            self.load_pretrained(pretrained)
        self.answer_list = answers
        n_out = getattr(self.head, 'num_classes', None)
        if n_out is not None and n_out != len(self.answer_list):
            raise ValueError(f'the head has {n_out} outputs for {len(self.answer_list)} '
                             'answers')
        self.answer_index = {}
        for i, a in enumerate(self.answer_list):
            self.answer_index.setdefault(normalize_answer(a), i)
        self.target = target

    tokenizer = FAMILY_TOKENIZER
    init_weights = keep_initialisation
    load_pretrained = load_family_checkpoint
    fused_features = family_fused_features

    def extract_feat(self, inputs: dict) -> torch.Tensor:
        return self.fused_features(inputs['images'], inputs['input_ids'],
                                   inputs.get('attention_mask'))

    def vqa_targets(self, answers: Sequence[Sequence[str]], device) -> torch.Tensor:
        """``[B, A]`` soft scores of the vocabulary answers (answers outside the vocabulary
        get no target: their questions can then score at most the in-vocabulary part)."""
        targets = torch.zeros(len(answers), len(self.answer_list))
        for i, ans in enumerate(answers):
            for a, s in answer_scores(list(ans), mode=self.target).items():
                j = self.answer_index.get(a)
                if j is not None:
                    targets[i, j] = s
        return targets.to(device)

    @staticmethod
    def _answers(data_samples) -> List[List[str]]:
        if isinstance(data_samples, dict) and 'answers' in data_samples:
            return [list(a) for a in data_samples['answers']]
        if isinstance(data_samples, (list, tuple)):
            return [list(d['answers']) for d in data_samples]
        raise ValueError('VQAClassifier.loss needs the human answers (data_samples["answers"])')

    def logits(self, inputs: dict) -> torch.Tensor:
        return self.head(self.extract_feat(inputs)).float()

    def loss(self, inputs: dict, data_samples=None) -> Dict[str, torch.Tensor]:
        logits = self.logits(inputs)
        targets = self.vqa_targets(self._answers(data_samples), logits.device)
        loss = F.binary_cross_entropy_with_logits(logits, targets) * targets.shape[1]
        score = targets.gather(1, logits.detach().argmax(1, keepdim=True)).mean()
        return dict(loss_vqa=loss, vqa_score=score)

    def predict(self, inputs: dict, data_samples=None) -> List[dict]:
        logits = self.logits(inputs)
        best = logits.argmax(1).tolist()
        results = []
        for i, meta in enumerate(split_meta(data_samples, logits.shape[0])):
            meta['pred_answer'] = self.answer_list[best[i]]
            results.append(meta)
        return results

    @torch.no_grad()
    def answer(self, images: torch.Tensor, questions: Union[str, List[str]]) -> List[str]:
        """Answers to raw questions about ``uint8`` images (one question per image)."""
        tok = self.tokenize(questions)
        inputs = dict(images=self.preprocess_images(images), **tok)
        return [self.answer_list[i] for i in self.logits(inputs).argmax(1).tolist()]


@MODELS.register_module()
class VLClassifier(VLPModel):
    """Image(s)-text classification: NLVR2 (two images, 2 classes), SNLI-VE (3 classes).

    Args:
        num_images: images per sample (1, or 2 for NLVR2: ``images [B, 2, 3, H, W]``).
        pair_encoding: with two images, ``'separate'`` (each image fused with the text on
            its own, the two states stacked ``[B, 2, C]`` for a head with
            ``num_inputs=2``: ViLT / VLMo / BEiT-3) or ``'joint'`` (the family model's
            ``fused_features_pair(images, input_ids, attention_mask)``: ALBEF's two-image
            fusion, ``two_image_fusion=True``).
        label_smoothing: of the cross-entropy.
        model, head, pretrained, revise_keys, drop_parts, data_preprocessor, tokenizer,
            init_cfg: the task-model arguments (module docstring).

    Batch: ``images``, ``input_ids`` / ``attention_mask``; ``label`` (int) in
    ``data_samples``. ``predict`` adds ``pred_label`` and ``scores`` (class probabilities).
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'fused_features'})

    def __init__(self, model, head: dict, num_images: int = 1,
                 pair_encoding: str = 'separate', label_smoothing: float = 0.0,
                 pretrained: Optional[str] = None,
                 revise_keys: Sequence[Tuple[str, str]] = (), drop_parts: Sequence[str] = (),
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        self.model = build_family(model, drop_parts)
        if not supports(self.model, 'fused_features'):  # a two-image fusion only
            self.drop_capabilities(f'{type(self.model).__name__} fuses image pairs only',
                                   'fused_features')
        self.head = build_part(head)
        self.revise_keys = [tuple(r) for r in revise_keys]
        if pretrained:
            self.load_pretrained(pretrained)
        if num_images not in (1, 2):
            raise ValueError(f'num_images must be 1 or 2, got {num_images}')
        if pair_encoding not in ('separate', 'joint'):
            raise ValueError(f"pair_encoding must be 'separate' or 'joint', got "
                             f'{pair_encoding!r}')
        if (num_images == 1 or pair_encoding == 'separate') and not self.supports(
                'fused_features'):
            raise TypeError(f'{type(self.model).__name__} fuses image pairs only: use '
                            "num_images=2, pair_encoding='joint'")
        if num_images == 2 and pair_encoding == 'joint' and not supports(
                self.model, 'fused_features_pair'):
            raise TypeError(f'{type(self.model).__name__} has no two-image fusion (an '
                            'ALBEF built with two_image_fusion=True has one): use '
                            "pair_encoding='separate'")
        self.num_images = num_images
        self.pair_encoding = pair_encoding
        self.label_smoothing = label_smoothing

    tokenizer = FAMILY_TOKENIZER
    init_weights = keep_initialisation
    load_pretrained = load_family_checkpoint
    fused_features = family_fused_features

    def extract_feat(self, inputs: dict) -> torch.Tensor:
        images, ids = inputs['images'], inputs['input_ids']
        mask = inputs.get('attention_mask')
        if mask is None:
            mask = torch.ones_like(ids)
        if self.num_images == 1:
            if images.dim() != 4:
                raise ValueError(f'expected images [B, 3, H, W], got {tuple(images.shape)}')
            return self.fused_features(images, ids, mask)
        if images.dim() != 5 or images.shape[1] != 2:
            raise ValueError(f'expected image pairs [B, 2, 3, H, W], got {tuple(images.shape)}')
        if self.pair_encoding == 'joint':
            return self.model.fused_features_pair(images, ids, mask)
        B = images.shape[0]
        feats = self.fused_features(images.flatten(0, 1), ids.repeat_interleave(2, 0),
                                    mask.repeat_interleave(2, 0))  # (2B, C)
        return feats.view(B, 2, -1)

    def logits(self, inputs: dict) -> torch.Tensor:
        return self.head(self.extract_feat(inputs)).float()

    @staticmethod
    def _labels(data_samples, device) -> torch.Tensor:
        if isinstance(data_samples, dict) and 'label' in data_samples:
            return torch.as_tensor(data_samples['label'], device=device).long()
        if isinstance(data_samples, (list, tuple)):
            return torch.tensor([int(d['label']) for d in data_samples], device=device)
        raise ValueError('VLClassifier.loss needs data_samples["label"]')

    def loss(self, inputs: dict, data_samples=None) -> Dict[str, torch.Tensor]:
        logits = self.logits(inputs)
        labels = self._labels(data_samples, logits.device)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(1) == labels).float().mean()
        return dict(loss_cls=loss, acc=acc)

    def predict(self, inputs: dict, data_samples=None) -> List[dict]:
        probs = self.logits(inputs).softmax(-1)
        results = []
        for i, meta in enumerate(split_meta(data_samples, probs.shape[0])):
            meta.update(pred_label=int(probs[i].argmax()), scores=probs[i].cpu())
            results.append(meta)
        return results
