"""DensePose decoder: merges the FPN levels into one map that the DensePose pooler reads.

Upstream detectron2 DensePose (v0.6, ``MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON``, on by default)
runs a Panoptic-FPN style semantic head over ``ROI_HEADS.IN_FEATURES``: per level, 3x3 conv +
ReLU blocks, each followed by a 2x bilinear upsampling until the level reaches
``DECODER_COMMON_STRIDE``; the levels are summed and a 1x1 conv gives
``DECODER_NUM_CLASSES`` channels. Module names (``roi_heads.decoder.<level>.<k>``,
``roi_heads.decoder.predictor``) follow upstream so its checkpoints load tensor for tensor.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import CfgNode
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from fvcore.nn import weight_init
from torch import nn
from torch.nn import functional as F

__all__ = ["DensePoseDecoder", "build_densepose_decoder", "decoder_output_shape"]


class DensePoseDecoder(nn.Module):
    """FPN levels (each (N, C, H_l, W_l), stride s_l) -> one (N, K, H, W) map at the common stride.

    Level l gets max(1, log2(s_l / common_stride)) conv blocks; after each, a 2x bilinear
    upsampling (align_corners=False) when s_l differs from the common stride.
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        in_features: Sequence[str],
        *,
        num_classes: int,
        conv_dims: int,
        common_stride: int,
        norm: str = "",
    ):
        """
        Args:
            input_shape: shapes of the backbone's feature maps.
            in_features: the levels merged, in the order of the maps given to ``forward``.
            num_classes: channels of the output (the final 1x1 conv).
            conv_dims: channels of the 3x3 convs.
            common_stride: stride of the output; must be the first level's stride.
            norm: normalisation of the 3x3 convs ("" = none, the convs have a bias).
        """
        super().__init__()
        self.in_features = list(in_features)
        self.common_stride = int(common_stride)
        first = input_shape[self.in_features[0]].stride
        if first != self.common_stride:
            raise ValueError(
                f"MODEL.ROI_DENSEPOSE_HEAD.DECODER_COMMON_STRIDE={common_stride} must equal the "
                f"stride {first} of the first ROI_HEADS.IN_FEATURES map {self.in_features[0]!r}"
            )
        for name in self.in_features:
            stride = input_shape[name].stride
            if stride < self.common_stride or stride & (stride - 1):
                raise ValueError(
                    f"DensePose decoder input {name!r} has stride {stride}: needs a power of two "
                    f">= DECODER_COMMON_STRIDE={common_stride}"
                )
            blocks: List[nn.Module] = []
            n_convs = max(1, int(math.log2(stride) - math.log2(self.common_stride)))
            for k in range(n_convs):
                conv = Conv2d(
                    input_shape[name].channels if k == 0 else conv_dims,
                    conv_dims,
                    kernel_size=3,
                    padding=1,
                    bias=not norm,
                    norm=get_norm(norm, conv_dims),
                    activation=F.relu,
                )
                weight_init.c2_msra_fill(conv)
                blocks.append(conv)
                if stride != self.common_stride:
                    blocks.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.add_module(name, nn.Sequential(*blocks))
        self.predictor = Conv2d(conv_dims, num_classes, kernel_size=1)
        weight_init.c2_msra_fill(self.predictor)
        self.out_channels = int(num_classes)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        """``features``: maps of ``in_features`` in that order -> merged map."""
        x = None
        for name, f in zip(self.in_features, features):
            y = getattr(self, name)(f)
            x = y if x is None else x + y
        return self.predictor(x)


def build_densepose_decoder(
    cfg: CfgNode, input_shape: Dict[str, ShapeSpec], in_features: Sequence[str]
) -> Optional[DensePoseDecoder]:
    """The decoder of ``MODEL.ROI_DENSEPOSE_HEAD.DECODER_*``, or None when DECODER_ON is off."""
    head_cfg = cfg.MODEL.ROI_DENSEPOSE_HEAD
    if not head_cfg.get("DECODER_ON", False):
        return None
    return DensePoseDecoder(
        input_shape,
        in_features,
        num_classes=head_cfg.DECODER_NUM_CLASSES,
        conv_dims=head_cfg.DECODER_CONV_DIMS,
        common_stride=head_cfg.DECODER_COMMON_STRIDE,
        norm=head_cfg.DECODER_NORM,
    )


def decoder_output_shape(decoder: DensePoseDecoder) -> ShapeSpec:
    """Channels and stride of the decoder's output map (what the DensePose pooler reads)."""
    return ShapeSpec(channels=decoder.out_channels, stride=decoder.common_stride)
