"""Downstream fine-tuning models: a pre-trained family model plus a task head.

The papers fine-tune their pre-trained encoders with a small head on the fused
(multimodal) representation:

- **VQA as classification** (:class:`VQAClassifier`; ViLT Sec. 4.2, VLMo Sec. 4.1, BEiT-3
  Sec. 3.1, ALBEF's classifier variant): an MLP over the pooled fused state scores every
  answer of a fixed vocabulary (VQAv2: the 3,129 answers given by at least 9 annotators);
  the targets are soft VQA scores and the loss is a binary cross-entropy per answer,
  multiplied by the vocabulary size (ViLT's and BUTD's ``binary_cross_entropy_with_logits
  * num_answers``). Prediction: the top-scoring answer.
- **Visual reasoning / entailment as classification** (:class:`VLClassifier`; NLVR2 with two
  images and a statement, true / false; SNLI-VE with a premise image and a hypothesis,
  three classes): cross-entropy over the classes. For NLVR2, ``pair_encoding='separate'``
  is ViLT's / VLMo's / BEiT-3's "pair" method: each image is fused with the statement on
  its own and the two pooled states are concatenated into the head.

Every family exposes its fused representation through one method,
``fused_features(images, input_ids, attention_mask) -> [B, C]``: ViLT's pooled first token,
VLMo's fused text ``[CLS]``, BEiT-3's image ``[CLS]`` of the joint encoding (its heads'
``Pooler`` reads ``x[:, 0]``, the first token of ``[image; text]``), ALBEF's fusion-encoder
``[CLS]``, BLIP's image-grounded text encoder ``[ENC]`` state.

Pre-trained weights: ``pretrained`` names a checkpoint of the family model (a vlp training
checkpoint, a converted one, or a work directory: its ``last_checkpoint``); its keys are
loaded into ``model.*`` after ``revise_keys`` (regular-expression renames, e.g. VLMo's
pretrained ITM pooler into the head's pooler), a vocabulary extended with task tokens grows
the word embeddings (the checkpoint's rows copied), and the missing / unexpected keys are
logged. ``drop_parts`` removes pre-training-only parts
(projections, momentum twins, queues, MLM / ITM heads) from the family model so they are
neither trained, saved, nor reported as unused parameters by DDP.

Simplifications (docs/tasks.md): ViLT's NLVR2 gives the second image a third token-type
embedding; here both images use the image type (the two passes are told apart by their
position in the concatenation only).
"""
import logging
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from vlp.evaluation.metrics.vqa import answer_scores, load_answer_list, normalize_answer
from vlp.registry import DATASETS, MODELS
from .base import VLPModel, build_part
from .clip import _split_meta


#: keys whose first dimension may grow from checkpoint to model (a vocabulary extended with
#: new tokens: the checkpoint's rows are copied, the new rows keep their initialisation)
GROW_KEYS = (r'word_embeddings\.weight$',)


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file or DeepSpeed checkpoint directory, or a work directory (its
    ``last_checkpoint``, as mmengine writes it after training)."""
    from vlp.engine.checkpoint import is_deepspeed_checkpoint_dir
    if osp.isdir(path) and not is_deepspeed_checkpoint_dir(path):
        last = osp.join(path, 'last_checkpoint')
        if not osp.isfile(last):
            raise FileNotFoundError(f'{path} is a directory without a last_checkpoint file: '
                                    'train the model first, or name a checkpoint file')
        with open(last, encoding='utf-8') as f:
            path = f.read().strip()
    if '://' not in path and not osp.exists(path):
        raise FileNotFoundError(f'pretrained checkpoint not found: {path}')
    return path


def load_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint file, DeepSpeed checkpoint directory or work
    directory (``state_dict`` / ``model`` / ``module`` wrappers and a leading ``module.``
    removed). Local files are read weights-only (:mod:`vlp.engine.checkpoint`: a file
    holding other objects is refused, nothing in it runs); URLs through mmengine's
    ``CheckpointLoader`` (``torch.load``'s weights-only default)."""
    from vlp.engine.checkpoint import load_from_local
    path = resolve_checkpoint(path)
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu') if '://' in path \
        else load_from_local(path, map_location='cpu')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    return {re.sub(r'^module\.', '', k): v for k, v in ckpt.items()
            if isinstance(v, torch.Tensor)}


def load_pretrained_weights(module: torch.nn.Module, path: str, prefix: str = '',
                            revise_keys: Sequence[Tuple[str, str]] = (),
                            grow_keys: Sequence[str] = GROW_KEYS,
                            adapt=None) -> Dict[str, List[str]]:
    """Load a checkpoint into ``module`` without strictness, loudly: its keys get ``prefix``,
    then ``revise_keys`` renames (``(pattern, replacement)``, in order); ``adapt`` then
    rewrites the part under ``prefix`` (keys as the wrapped model names them; e.g. ALBEF's
    NLVR2 fusion expansion), so a task checkpoint (``model.*`` renamed by ``revise_keys``)
    is adapted as a pre-training one is. Tensors whose key
    matches ``grow_keys`` may be shorter in their first dimension than the module's (new
    vocabulary rows keep their init); any other shape mismatch, or no matching key at all,
    raises. Returns and logs the missing and unused keys."""
    state = {f'{prefix}{k}': v for k, v in load_state_dict_file(path).items()}
    for pattern, repl in revise_keys:
        state = {re.sub(pattern, repl, k): v for k, v in state.items()}
    if adapt is not None:  # on the keys under prefix, as the wrapped model names them
        inner = adapt({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        state = {**{k: v for k, v in state.items() if not k.startswith(prefix)},
                 **{f'{prefix}{k}': v for k, v in inner.items()}}
    own = module.state_dict()
    matched = [k for k in state if k in own]
    name = type(module).__name__
    if not matched:
        raise ValueError(f'{path}: no key of the checkpoint matches {name} (e.g. '
                         f'{next(iter(state), None)!r})')
    grown = []
    for k in matched:
        src, dst = state[k], own[k]
        if src.shape == dst.shape:
            continue
        if (any(re.search(p, k) for p in grow_keys) and src.dim() == dst.dim()
                and src.shape[1:] == dst.shape[1:] and src.shape[0] < dst.shape[0]):
            full = dst.detach().clone()
            full[:src.shape[0]] = src.to(full.dtype)
            state[k] = full
            grown.append(f'{k} {src.shape[0]} -> {dst.shape[0]}')
            continue
        raise ValueError(f'{path}: shape mismatch for {k} (checkpoint {tuple(src.shape)} vs '
                         f'model {tuple(dst.shape)})')
    result = module.load_state_dict({k: state[k] for k in matched}, strict=False)
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(result.missing_keys)
    print_log(f'{name}: loaded {len(matched)} tensors from {path}'
              f'{"; vocabulary grown: " + ", ".join(grown) if grown else ""}; missing '
              f'(trained from scratch) {len(missing)}: {missing[:8]}'
              f'{" ..." if len(missing) > 8 else ""}; unused {len(unexpected)}: '
              f'{unexpected[:8]}{" ..." if len(unexpected) > 8 else ""}',
              logger='current', level=logging.INFO)
    return dict(missing_keys=missing, unexpected_keys=unexpected, grown=grown)


class DownstreamModel(VLPModel):
    """Base of the task models: the family ``model``, its ``head``, pretrained loading.

    Args:
        model: the family model's config (any algorithm with ``fused_features``) or module.
        head: the task head's config (e.g. :class:`~vlp.models.heads.ClassifierHead`).
        pretrained: checkpoint of the family model loaded into ``model`` (``None``: none).
        revise_keys: ``[(pattern, replacement), ...]`` applied, in order, to the
            checkpoint's keys after they are prefixed with ``model.``; keys may thus be
            redirected to the head (``(r'^model\\.itm_head\\.pooler\\.', 'head.pooler.')``).
        drop_parts: attribute names of the family model set to ``None`` before loading.
        data_preprocessor / tokenizer: as :class:`VLPModel` (the tokenizer defaults to the
            family model's).
    """

    def __init__(self, model: Union[dict, torch.nn.Module], head: dict,
                 pretrained: Optional[str] = None,
                 revise_keys: Sequence[Tuple[str, str]] = (),
                 drop_parts: Sequence[str] = (), data_preprocessor: Optional[dict] = None,
                 tokenizer: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        self.model = build_part(model)
        if not hasattr(self.model, 'fused_features'):
            raise TypeError(f'{type(self.model).__name__} has no fused_features(images, '
                            f'input_ids, attention_mask): it cannot carry a task head')
        for name in drop_parts:
            if not hasattr(self.model, name):
                raise AttributeError(f'drop_parts: {type(self.model).__name__} has no {name!r}')
            setattr(self.model, name, None)
        self.head = build_part(head)
        self.revise_keys = [tuple(r) for r in revise_keys]
        if pretrained:
            self.load_pretrained(pretrained)

    @property
    def tokenizer(self):
        tok = VLPModel.tokenizer.fget(self)
        return tok if tok is not None else self.model.tokenizer

    @tokenizer.setter
    def tokenizer(self, value) -> None:
        VLPModel.tokenizer.fset(self, value)

    def init_weights(self) -> None:
        """Nothing to do: the head is initialised when built, the family model holds its
        constructor initialisation or the loaded checkpoint (its own ``init_weights``, e.g.
        ALBEF's copy into momentum twins that fine-tuning drops, is not re-run)."""

    def load_pretrained(self, path: str) -> Dict[str, List[str]]:
        """Load a family-model checkpoint (file or work directory) into ``model`` (see the
        class docstring and :func:`load_pretrained_weights`)."""
        return load_pretrained_weights(
            self, path, prefix='model.', revise_keys=self.revise_keys,
            adapt=getattr(self.model, 'adapt_pretrained_state_dict', None))

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.model.fused_features(images, input_ids, attention_mask)

    def extract_feat(self, inputs: dict) -> torch.Tensor:
        return self.fused_features(inputs['images'], inputs['input_ids'],
                                   inputs.get('attention_mask'))


def resolve_answer_list(answer_list) -> List[str]:
    """An answer vocabulary from a list of str, a file (JSON list, JSON dict answer -> index,
    or one answer per line: :func:`~vlp.evaluation.metrics.vqa.load_answer_list`) or a
    dataset config whose ``metainfo['answer_list']`` holds it (``dict(type='DemoVQA')``:
    read from the class's ``METAINFO`` when there, else from the built dataset)."""
    if isinstance(answer_list, str):
        return list(load_answer_list(answer_list))
    if isinstance(answer_list, dict):
        cls = DATASETS.get(answer_list['type'])
        if cls is None:
            raise KeyError(f"answer_list: unknown dataset {answer_list['type']!r}")
        meta = dict(getattr(cls, 'METAINFO', None) or {})
        if 'answer_list' not in meta:
            meta = DATASETS.build(answer_list).metainfo
        if 'answer_list' not in meta:
            raise KeyError(f"answer_list: {answer_list['type']} has no metainfo['answer_list']")
        return list(meta['answer_list'])
    return [str(a) for a in answer_list]


@MODELS.register_module()
class VQAClassifier(DownstreamModel):
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
        Other arguments: :class:`DownstreamModel`.

    Batch: ``images``, ``input_ids`` / ``attention_mask`` of the question; ``answers``
    (a list of the human answers per question) in ``data_samples``. ``predict`` adds
    ``pred_answer`` to each sample's metadata (for :class:`~vlp.evaluation.VQAAccuracy`).
    """

    def __init__(self, model, head: dict, answer_list: Union[str, Sequence[str]],
                 target: str = 'butd', **kwargs):
        if target not in ('butd', 'vqa'):
            raise ValueError(f"target must be 'butd' or 'vqa', got {target!r}")
        answers = resolve_answer_list(answer_list)
        if isinstance(head, dict) and head.get('num_classes') is None:
            head = dict(head, num_classes=len(answers))
        super().__init__(model, head, **kwargs)
        self.answer_list = answers
        n_out = getattr(self.head, 'num_classes', None)
        if n_out is not None and n_out != len(self.answer_list):
            raise ValueError(f'the head has {n_out} outputs for {len(self.answer_list)} '
                             'answers')
        self.answer_index = {}
        for i, a in enumerate(self.answer_list):
            self.answer_index.setdefault(normalize_answer(a), i)
        self.target = target

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
        for i, meta in enumerate(_split_meta(data_samples, logits.shape[0])):
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
class VLClassifier(DownstreamModel):
    """Image(s)-text classification: NLVR2 (two images, 2 classes), SNLI-VE (3 classes).

    Args:
        num_images: images per sample (1, or 2 for NLVR2: ``images [B, 2, 3, H, W]``).
        pair_encoding: with two images, ``'separate'`` (each image fused with the text on
            its own, the two states stacked ``[B, 2, C]`` for a head with
            ``num_inputs=2``: ViLT / VLMo / BEiT-3) or ``'joint'`` (the family model's
            ``fused_features_pair(images, input_ids, attention_mask)``: ALBEF's two-image
            fusion, ``two_image_fusion=True``).
        label_smoothing: of the cross-entropy.
        Other arguments: :class:`DownstreamModel`.

    Batch: ``images``, ``input_ids`` / ``attention_mask``; ``label`` (int) in
    ``data_samples``. ``predict`` adds ``pred_label`` and ``scores`` (class probabilities).
    """

    def __init__(self, model, head: dict, num_images: int = 1,
                 pair_encoding: str = 'separate', label_smoothing: float = 0.0, **kwargs):
        super().__init__(model, head, **kwargs)
        if num_images not in (1, 2):
            raise ValueError(f'num_images must be 1 or 2, got {num_images}')
        if pair_encoding not in ('separate', 'joint'):
            raise ValueError(f"pair_encoding must be 'separate' or 'joint', got "
                             f'{pair_encoding!r}')
        if num_images == 2 and pair_encoding == 'joint' and not (
                hasattr(self.model, 'fused_features_pair')
                and getattr(self.model, 'two_image_fusion', False)):
            raise TypeError(f'{type(self.model).__name__} has no two-image fusion (an '
                            'ALBEF built with two_image_fusion=True has one): use '
                            "pair_encoding='separate'")
        self.num_images = num_images
        self.pair_encoding = pair_encoding
        self.label_smoothing = label_smoothing

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
        for i, meta in enumerate(_split_meta(data_samples, probs.shape[0])):
            meta.update(pred_label=int(probs[i].argmax()), scores=probs[i].cpu())
            results.append(meta)
        return results
