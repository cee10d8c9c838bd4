"""DensePose chart predictor: per-output stride-2 transposed conv, then bilinear upsampling."""
from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.layers import ConvTranspose2d
from torch import nn
from torch.nn import functional as F

from densepose_ext.structures import DensePoseChartOutput

from .densepose_head import init_kaiming

__all__ = ["DensePoseChartPredictor"]


class DensePoseChartPredictor(nn.Module):
    """Head features (R, D, P, P) -> :class:`DensePoseChartOutput` on a (4P x 4P) grid.

    Parameter names follow upstream DensePose: ``ann_index_lowres`` (coarse segmentation),
    ``index_uv_lowres`` (fine segmentation), ``u_lowres``, ``v_lowres``.
    """

    def __init__(self, cfg: CfgNode, input_channels: int):
        super().__init__()
        head_cfg = cfg.MODEL.ROI_DENSEPOSE_HEAD
        n_coarse = head_cfg.NUM_COARSE_SEGM_CHANNELS
        if n_coarse not in (2, 15):
            raise ValueError(
                "MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS must be 2 or 15, "
                f"got {n_coarse}"
            )
        n_fine = head_cfg.NUM_PATCHES + 1
        kernel = head_cfg.DECONV_KERNEL
        if kernel % 2:
            raise ValueError(
                "MODEL.ROI_DENSEPOSE_HEAD.DECONV_KERNEL must be even (exact 2x upsampling)"
            )

        def deconv(out_channels: int) -> ConvTranspose2d:
            return ConvTranspose2d(
                input_channels, out_channels, kernel, stride=2, padding=kernel // 2 - 1
            )

        self.ann_index_lowres = deconv(n_coarse)
        self.index_uv_lowres = deconv(n_fine)
        self.u_lowres = deconv(n_fine)
        self.v_lowres = deconv(n_fine)
        self.scale_factor = head_cfg.UP_SCALE
        init_kaiming(self)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_factor == 1:
            return x
        return F.interpolate(
            x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False
        )

    def forward(self, features: torch.Tensor) -> DensePoseChartOutput:
        return DensePoseChartOutput(
            coarse_segm=self._upsample(self.ann_index_lowres(features)),
            fine_segm=self._upsample(self.index_uv_lowres(features)),
            u=self._upsample(self.u_lowres(features)),
            v=self._upsample(self.v_lowres(features)),
        )
