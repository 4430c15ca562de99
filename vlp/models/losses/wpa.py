"""Word-patch alignment (ViLT, Kim et al. 2021, Sec. 3.2): an optimal-transport distance
between the text and the image token states of a fused pass, computed with the inexact
proximal point method (IPOT, Xie et al. 2019)."""
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlp.registry import MODELS


@torch.no_grad()
def ipot(cost: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor, beta: float = 0.5,
         iterations: int = 50, inner: int = 1) -> torch.Tensor:
    """Inexact proximal point OT plan (Xie et al. 2019, Alg. 1) of ``cost [B, M, N]`` between
    uniform distributions over the valid rows (``x_mask [B, M]``) and columns (``y_mask
    [B, N]``): ``T <- diag(a) (exp(-C / beta) * T) diag(b)`` with ``inner`` Sinkhorn steps
    per proximal step. Returns the plan ``[B, M, N]`` (0 on masked rows / columns)."""
    x, y = x_mask.to(cost.dtype), y_mask.to(cost.dtype)
    mu = x / x.sum(dim=1, keepdim=True).clamp(min=1)  # (B, M)
    nu = y / y.sum(dim=1, keepdim=True).clamp(min=1)  # (B, N)
    valid = x[:, :, None] * y[:, None, :]  # (B, M, N)
    kernel = torch.exp(-cost / beta) * valid
    plan = valid.clone()
    b = nu.clone()
    for _ in range(iterations):
        q = kernel * plan
        for _ in range(inner):
            a = mu / torch.bmm(q, b[..., None]).squeeze(-1).clamp(min=1e-30)  # (B, M)
            b = nu / torch.bmm(q.transpose(1, 2), a[..., None]).squeeze(-1).clamp(min=1e-30)
        plan = a[:, :, None] * q * b[:, None, :]
    return plan


@MODELS.register_module()
class WordPatchAlignmentLoss(nn.Module):
    """ViLT's WPA (Sec. 3.2): OT distance ``D = sum(C * T)`` with ``C = 1 - cos`` between the
    text token states (without ``[CLS]`` and the last ``[SEP]``) and the patch states
    (without the image ``[class]``), ``T`` the IPOT plan (no gradient through ``T``);
    ``loss_wpa = (sum D_matched - sum D_unmatched) / B``. The loss is signed (negative once
    unmatched pairs are farther apart than matched ones); each ``D`` is in ``[0, 2]``.

    Args:
        beta, iterations, inner: IPOT's proximal weight and iteration counts (ViLT / UNITER:
            0.5, 50, 1).
    """

    def __init__(self, beta: float = 0.5, iterations: int = 50, inner: int = 1):
        super().__init__()
        self.beta, self.iterations, self.inner = beta, iterations, inner

    def distance(self, text_embeds, text_mask, image_embeds, image_mask) -> torch.Tensor:
        """OT distances ``[B]`` of ``text_embeds [B, L, C]`` and ``image_embeds [B, 1+N, C]``."""
        tmask = text_mask.bool().clone()
        last = tmask.long().sum(dim=1).clamp(min=1) - 1
        tmask[torch.arange(tmask.shape[0], device=tmask.device), last] = False  # [SEP]
        tmask[:, 0] = False  # [CLS]
        imask = image_mask.bool().clone()
        imask[:, 0] = False  # the image [class] token
        t = F.normalize(text_embeds.float(), dim=-1)
        v = F.normalize(image_embeds.float(), dim=-1)
        cost = 1.0 - torch.bmm(t, v.transpose(1, 2))  # (B, L, 1+N)
        plan = ipot(cost.detach(), tmask, imask, self.beta, self.iterations, self.inner)
        return (cost * plan).sum(dim=(1, 2))  # (B,)

    def forward(self, text_embeds, text_mask, image_embeds, image_mask,
                matched: torch.Tensor) -> Dict[str, torch.Tensor]:
        d = self.distance(text_embeds, text_mask, image_embeds, image_mask)
        sign = torch.where(matched.bool(), 1.0, -1.0).to(d)
        return dict(loss_wpa=(sign * d).sum() / d.shape[0])
