"""Example plugin parts: one of each kind a user typically adds."""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook

from vlp.registry import DATASETS, HOOKS, MODELS


@MODELS.register_module()
class ConvTower(nn.Module):
    """A small CNN vision tower following vlp's tower contract."""

    def __init__(self, width: int = 32, depth: int = 2):
        super().__init__()
        layers, in_ch = [], 3
        for _ in range(depth):
            layers += [nn.Conv2d(in_ch, width, 3, stride=2, padding=1), nn.GELU()]
            in_ch = width
        self.body = nn.Sequential(*layers)
        self.out_dim = width

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        pass  # two convolutions: nothing worth recomputing

    def forward(self, images: torch.Tensor) -> dict:
        fmap = self.body(images)  # (B, C, h, w)
        tokens = fmap.flatten(2).transpose(1, 2)  # (B, hw, C)
        return dict(image_embeds=tokens, image_pooled=tokens.mean(1))


@MODELS.register_module()
class MeanPoolNeck(nn.Module):
    """Mean-pools tokens then projects: a neck mapping [B, N, C] -> [B, D]."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(tokens.mean(1))


@MODELS.register_module()
class ScaledDotHead(nn.Module):
    """A head scoring image/text feature pairs: logits only, no loss."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, image_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
        return (image_feat * text_feat).sum(-1) * self.scale


@MODELS.register_module()
class CosineMarginLoss(nn.Module):
    """Hinge on cosine similarity of matched pairs against the hardest in-batch negative."""

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin

    def forward(self, image_feat: torch.Tensor, text_feat: torch.Tensor) -> dict:
        sim = F.normalize(image_feat, dim=-1) @ F.normalize(text_feat, dim=-1).t()
        pos = sim.diag()
        neg = sim.masked_fill(torch.eye(len(sim), dtype=torch.bool, device=sim.device),
                              float('-inf')).amax(1)
        return dict(loss_margin=F.relu(self.margin - pos + neg).mean())


@DATASETS.register_module()
class NoiseImageText(BaseDataset):
    """Random images with token-id captions, for smoke tests of a plugin."""

    def __init__(self, num_samples: int = 8, image_size: int = 16, seq_len: int = 6,
                 vocab_size: int = 20, **kwargs):
        self.num_samples, self.image_size = num_samples, image_size
        self.seq_len, self.vocab_size = seq_len, vocab_size
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        return [dict(idx=i) for i in range(self.num_samples)]

    def prepare_data(self, idx: int) -> dict:
        g = torch.Generator().manual_seed(idx)
        image = torch.randint(0, 256, (3, self.image_size, self.image_size), generator=g,
                              dtype=torch.uint8)
        ids = torch.randint(1, self.vocab_size, (self.seq_len,), generator=g)
        return dict(image=image, input_ids=ids, attention_mask=torch.ones_like(ids),
                    image_id=idx)


@HOOKS.register_module()
class LossSpikeHook(Hook):
    """Warns when the loss jumps above ``factor`` times its running mean."""

    def __init__(self, factor: float = 3.0):
        self.factor, self.mean = factor, None
        self.spikes = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs or 'loss' not in outputs:
            return
        loss = float(outputs['loss'])
        if self.mean is not None and loss > self.factor * self.mean:
            self.spikes += 1
            runner.logger.warning(f'loss spike at iter {runner.iter}: {loss:.4f}')
        self.mean = loss if self.mean is None else 0.9 * self.mean + 0.1 * loss
