"""3D-pose class heads: pooled ROI features -> K class logits (ROI_POSE3D_HEAD_REGISTRY)."""
from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from fvcore.common.registry import Registry
from torch import nn
from torch.nn import functional as F

__all__ = ["ROI_POSE3D_HEAD_REGISTRY", "Pose3DClassConvFCHead", "build_pose3d_head"]

ROI_POSE3D_HEAD_REGISTRY = Registry("ROI_POSE3D_HEAD")
ROI_POSE3D_HEAD_REGISTRY.__doc__ = """
Heads mapping pooled ROI features (R, C, P, P) to 3D-pose class logits (R, K).
A head is built as ``HEAD(cfg, input_shape, num_classes)``.
"""


@ROI_POSE3D_HEAD_REGISTRY.register()
class Pose3DClassConvFCHead(nn.Module):
    """NUM_CONV 3x3 convs (CONV_DIM, optional NORM) + NUM_FC fully connected layers (FC_DIM),
    ReLU after each, then a linear K-way classifier ``cls_score``."""

    def __init__(self, cfg: CfgNode, input_shape: ShapeSpec, num_classes: int):
        super().__init__()
        head = cfg.MODEL.ROI_POSE3D_HEAD
        if head.NUM_CONV < 0 or head.NUM_FC < 0:
            raise ValueError("MODEL.ROI_POSE3D_HEAD.NUM_CONV and NUM_FC must be >= 0")
        channels = input_shape.channels
        self.convs = nn.ModuleList()
        for _ in range(head.NUM_CONV):
            conv = Conv2d(channels, head.CONV_DIM, 3, padding=1, bias=not head.NORM,
                          norm=get_norm(head.NORM, head.CONV_DIM), activation=F.relu)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            self.convs.append(conv)
            channels = head.CONV_DIM
        size = channels * input_shape.height * input_shape.width
        self.fcs = nn.ModuleList()
        for _ in range(head.NUM_FC):
            fc = nn.Linear(size, head.FC_DIM)
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
            self.fcs.append(fc)
            size = head.FC_DIM
        self.cls_score = nn.Linear(size, num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.zeros_(self.cls_score.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        x = torch.flatten(x, 1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return self.cls_score(x)


def build_pose3d_head(cfg: CfgNode, input_shape: ShapeSpec, num_classes: int) -> nn.Module:
    """The head named by ``MODEL.ROI_POSE3D_HEAD.NAME``."""
    return ROI_POSE3D_HEAD_REGISTRY.get(cfg.MODEL.ROI_POSE3D_HEAD.NAME)(
        cfg, input_shape, num_classes)
