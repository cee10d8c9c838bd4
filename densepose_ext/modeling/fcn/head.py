"""Fully convolutional DensePose head: FPN levels merged at a common stride, 1x1 predictors.

Each level goes through ``log2(stride / COMMON_STRIDE)`` stages of conv + norm + ReLU + 2x
bilinear upsampling (one stage without upsampling for the finest level), the levels are summed,
NUM_STACKED_CONVS more conv layers follow, and four 1x1 convs predict the coarse (person /
background) segmentation, the fine part segmentation and U, V for every part. The per-pixel
outputs are these maps upsampled bilinearly to the input resolution (:func:`upsample_maps`).
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import nn
from torch.nn import functional as F

from densepose_ext.structures import DensePoseChartOutput

__all__ = ["DensePoseFCNHead", "NUM_COARSE_CHANNELS", "upsample_maps"]

#: The FCN's coarse segmentation is 2-way: background / person.
NUM_COARSE_CHANNELS = 2


def _conv_norm_relu(in_channels: int, out_channels: int, norm: str) -> nn.Module:
    return Conv2d(
        in_channels, out_channels, kernel_size=3, padding=1, bias=not norm,
        norm=get_norm(norm, out_channels), activation=F.relu,
    )


class _Upsample2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class DensePoseFCNHead(nn.Module):
    """Backbone features -> per-pixel :class:`DensePoseChartOutput` of shape (B, C, H, W).

    Args:
        input_shape: the backbone's output shapes, by feature name.
        in_features: features to merge (their strides must be powers of 2 >= common_stride).
        common_stride: stride of the merged map.
        conv_dim / norm: channels and normalisation of every conv of the head.
        num_stacked_convs: conv layers after the merge.
        num_patches: fine parts; fine segmentation, U and V have num_patches + 1 channels.
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_features: Sequence[str],
        common_stride: int = 4,
        conv_dim: int = 128,
        norm: str = "GN",
        num_stacked_convs: int = 2,
        num_patches: int = 24,
    ):
        super().__init__()
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.DENSEPOSE_FCN.IN_FEATURES {missing} are not backbone outputs "
                f"({sorted(input_shape)})"
            )
        self.in_features = list(in_features)
        self.common_stride = int(common_stride)
        self.scale_heads = nn.ModuleList()
        for name in self.in_features:
            stride = input_shape[name].stride
            n_up = math.log2(stride / self.common_stride)
            if n_up < 0 or n_up != int(n_up):
                raise ValueError(
                    f"feature {name!r} has stride {stride}: MODEL.DENSEPOSE_FCN.COMMON_STRIDE "
                    f"{self.common_stride} must divide it by a power of 2"
                )
            layers = []
            channels = input_shape[name].channels
            for _ in range(max(1, int(n_up))):
                layers.append(_conv_norm_relu(channels, conv_dim, norm))
                channels = conv_dim
                if n_up > 0:
                    layers.append(_Upsample2x())
            self.scale_heads.append(nn.Sequential(*layers))
        self.convs = nn.Sequential(
            *[_conv_norm_relu(conv_dim, conv_dim, norm) for _ in range(num_stacked_convs)]
        )
        n_fine = num_patches + 1
        self.coarse_segm = Conv2d(conv_dim, NUM_COARSE_CHANNELS, kernel_size=1)
        self.fine_segm = Conv2d(conv_dim, n_fine, kernel_size=1)
        self.u = Conv2d(conv_dim, n_fine, kernel_size=1)
        self.v = Conv2d(conv_dim, n_fine, kernel_size=1)
        #: channels of coarse_segm, fine_segm, u, v
        self.channels = (NUM_COARSE_CHANNELS, n_fine, n_fine, n_fine)
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for the 3x3 convs (norm layers keep their identity init); small normal
        weights for the 1x1 predictors, so training starts from near-uniform outputs."""
        for module in self.modules():
            if isinstance(module, Conv2d) and module.kernel_size == (3, 3):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for predictor in (self.coarse_segm, self.fine_segm, self.u, self.v):
            nn.init.normal_(predictor.weight, std=0.001)
            nn.init.zeros_(predictor.bias)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> "DensePoseFCNHead":
        fcn = cfg.MODEL.DENSEPOSE_FCN
        return cls(
            input_shape,
            in_features=fcn.IN_FEATURES,
            common_stride=fcn.COMMON_STRIDE,
            conv_dim=fcn.CONVS_DIM,
            norm=fcn.NORM,
            num_stacked_convs=fcn.NUM_STACKED_CONVS,
            num_patches=cfg.MODEL.ROI_DENSEPOSE_HEAD.NUM_PATCHES,
        )

    def forward(self, features: Dict[str, torch.Tensor]) -> DensePoseChartOutput:
        """Logits (coarse, fine) and U, V at the common stride, spanning the padded input."""
        x = None
        for name, head in zip(self.in_features, self.scale_heads):
            y = head(features[name])
            x = y if x is None else x + y
        x = self.convs(x)
        return DensePoseChartOutput(
            coarse_segm=self.coarse_segm(x), fine_segm=self.fine_segm(x), u=self.u(x), v=self.v(x)
        )


def upsample_maps(maps: DensePoseChartOutput, size: Tuple[int, int]) -> DensePoseChartOutput:
    """Bilinear upsampling (``align_corners=False``) of every map to ``size``.

    With ``size`` = stride x the map size, output pixel (c, r) is the bilinear sample of the
    input maps at image position (c + 0.5, r + 0.5); so sampling the low-resolution maps
    directly at an image position (as the training losses do) reads the same continuous
    function, exactly at every pixel centre.
    """
    tensors = (maps.coarse_segm, maps.fine_segm, maps.u, maps.v)
    channels = [t.shape[1] for t in tensors]
    stacked = F.interpolate(torch.cat(tensors, dim=1), size=tuple(size), mode="bilinear",
                            align_corners=False)
    coarse, fine, u, v = torch.split(stacked, channels, dim=1)
    return DensePoseChartOutput(coarse_segm=coarse, fine_segm=fine, u=u, v=v)
