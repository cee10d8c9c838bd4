"""DensePose ROI head: a conv stack on pooled ROI features (ROI_DENSEPOSE_HEAD_REGISTRY)."""
from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.layers import Conv2d
from fvcore.common.registry import Registry
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ROI_DENSEPOSE_HEAD_REGISTRY",
    "DensePoseV1ConvXHead",
    "build_densepose_head",
    "init_kaiming",
]

ROI_DENSEPOSE_HEAD_REGISTRY = Registry("ROI_DENSEPOSE_HEAD")
ROI_DENSEPOSE_HEAD_REGISTRY.__doc__ = """
Heads mapping pooled ROI features (R, C, P, P) to DensePose features (R, D, P, P).
A head is built as ``HEAD(cfg, input_channels)`` and exposes ``n_out_channels``.
"""


def init_kaiming(module: nn.Module) -> None:
    """He (fan-out, ReLU) init for conv / deconv weights and zero biases, as DensePose uses."""
    for name, param in module.named_parameters():
        if "bias" in name:
            nn.init.constant_(param, 0)
        elif "weight" in name:
            nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


@ROI_DENSEPOSE_HEAD_REGISTRY.register()
class DensePoseV1ConvXHead(nn.Module):
    """NUM_STACKED_CONVS conv + ReLU layers named ``body_conv_fcn1..N`` (upstream layout)."""

    def __init__(self, cfg: CfgNode, input_channels: int):
        super().__init__()
        head_cfg = cfg.MODEL.ROI_DENSEPOSE_HEAD
        dim = head_cfg.CONV_HEAD_DIM
        kernel = head_cfg.CONV_HEAD_KERNEL
        self.n_stacked_convs = head_cfg.NUM_STACKED_CONVS
        if self.n_stacked_convs < 1:
            raise ValueError("MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS must be >= 1")
        channels = input_channels
        for k in range(1, self.n_stacked_convs + 1):
            conv = Conv2d(channels, dim, kernel, stride=1, padding=kernel // 2)
            self.add_module(f"body_conv_fcn{k}", conv)
            channels = dim
        self.n_out_channels = channels
        init_kaiming(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        for k in range(1, self.n_stacked_convs + 1):
            x = F.relu(getattr(self, f"body_conv_fcn{k}")(x))
        return x


def build_densepose_head(cfg: CfgNode, input_channels: int) -> nn.Module:
    """The head named by ``MODEL.ROI_DENSEPOSE_HEAD.NAME``."""
    name = cfg.MODEL.ROI_DENSEPOSE_HEAD.NAME
    if name not in ROI_DENSEPOSE_HEAD_REGISTRY:  # e.g. upstream's DensePoseDeepLabHead
        known = ", ".join(sorted(k for k, _ in ROI_DENSEPOSE_HEAD_REGISTRY))
        raise KeyError(
            f"MODEL.ROI_DENSEPOSE_HEAD.NAME={name!r} is not supported by densepose_ext "
            f"(registered heads: {known})"
        )
    return ROI_DENSEPOSE_HEAD_REGISTRY.get(name)(cfg, input_channels)
