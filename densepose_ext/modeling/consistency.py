"""Mean-teacher consistency (Tarvainen & Valpola, 2017): schedules, the EMA update and the
consistency costs between a student's and a teacher's box-frame outputs on the same ROIs.

Every cost is a mean squared error between probabilities, as in the paper: the costs are
bounded and stay informative where the teacher is unsure (a KL divergence would not be).
"""
from __future__ import annotations

import math
from typing import Dict

import torch
from torch import nn
from torch.nn import functional as F

from densepose_ext.structures import DensePoseChartOutput

__all__ = ["sigmoid_rampup", "ema_decay", "ema_update", "box_consistency", "mask_consistency",
           "keypoint_consistency", "densepose_consistency"]


def sigmoid_rampup(step: int, rampup_iters: int) -> float:
    """The paper's ramp-up exp(-5 (1 - t)^2), t = step / rampup_iters clipped to [0, 1]
    (1 throughout when ``rampup_iters`` is 0)."""
    if rampup_iters <= 0:
        return 1.0
    t = min(max(step / rampup_iters, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def ema_decay(step: int, rampup_iters: int, decay_rampup: float, decay: float) -> float:
    """EMA decay after optimizer step ``step`` (0-based): ``decay_rampup`` while the consistency
    weight ramps up, ``decay`` after; never above 1 - 1/(step + 1), so early teachers are true
    averages of the students seen so far rather than stuck at the initial weights."""
    target = decay_rampup if step < rampup_iters else decay
    return min(1.0 - 1.0 / (step + 1), target)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student, parameter by parameter; buffers
    (normalisation statistics, anchors) are copied from the student."""
    t_params = dict(teacher.named_parameters())
    for name, p in student.named_parameters():
        t = t_params[name]
        if decay == 0.0:
            t.copy_(p)
        else:
            t.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
    t_buffers = dict(teacher.named_buffers())
    for name, b in student.named_buffers():
        t_buffers[name].copy_(b)


def _mean_or_zero(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.mean() if x.numel() else like.sum() * 0.0


def box_consistency(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """(R, K+1) class logits: sum over classes of the squared probability difference, mean
    over ROIs."""
    diff = F.softmax(student_logits, dim=1) - F.softmax(teacher_logits, dim=1)
    return _mean_or_zero((diff * diff).sum(dim=1), student_logits)


def mask_consistency(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """(R, C, M, M) mask logits: mean squared difference of the sigmoid probabilities."""
    diff = torch.sigmoid(student_logits) - torch.sigmoid(teacher_logits)
    return _mean_or_zero(diff * diff, student_logits)


def keypoint_consistency(student_logits: torch.Tensor, teacher_logits: torch.Tensor
                         ) -> torch.Tensor:
    """(R, K, S, S) heatmap logits: each keypoint's spatial softmax (its location
    distribution, the keypoint head's training target); summed squared difference over the
    positions, mean over ROIs and keypoints."""
    s = F.softmax(student_logits.flatten(2), dim=2)
    t = F.softmax(teacher_logits.flatten(2), dim=2)
    return _mean_or_zero(((s - t) ** 2).sum(dim=2), student_logits)


def densepose_consistency(student: DensePoseChartOutput, teacher: DensePoseChartOutput
                          ) -> Dict[str, torch.Tensor]:
    """Costs between two (R, C, S, S) chart outputs (segmentations as logits or log
    probabilities): coarse and fine part probabilities (summed squared difference over the
    channels, mean over cells), and U, V weighted by the teacher's part probability
    (sum over the body parts of p_teacher(c) (u_s - u_t)^2 + same for v, mean over cells)."""
    out = {}
    for key in ("coarse_segm", "fine_segm"):
        diff = F.softmax(getattr(student, key), dim=1) - F.softmax(getattr(teacher, key), dim=1)
        out[key] = _mean_or_zero((diff * diff).sum(dim=1), diff)
    p = F.softmax(teacher.fine_segm, dim=1)[:, 1:]  # background has no chart
    uv = p * ((student.u[:, 1:] - teacher.u[:, 1:]) ** 2 + (student.v[:, 1:] - teacher.v[:, 1:]) ** 2)
    out["uv"] = _mean_or_zero(uv.sum(dim=1), uv)
    return out
