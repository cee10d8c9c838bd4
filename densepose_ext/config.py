"""DensePose configuration keys, added to a detectron2 config by :func:`add_densepose_config`.

Keys and defaults of the DensePose R-CNN head follow upstream detectron2 DensePose
(projects/DensePose/densepose/config.py), so configs written for it keep their meaning here.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from detectron2.config import CfgNode as CN

__all__ = ["add_densepose_config", "get_densepose_cfg", "setup_densepose_cfg"]


def add_densepose_config(cfg: CN) -> CN:
    """Add every DensePose key, with its default, to ``cfg`` (in place); return ``cfg``.

    Calling it twice is harmless (existing values are kept).
    """
    if "ROI_DENSEPOSE_HEAD" in cfg.MODEL:
        return cfg
    _C = cfg

    # Run the DensePose branch of the ROI heads (part labels I and chart coordinates U, V).
    _C.MODEL.DENSEPOSE_ON = True

    _C.MODEL.ROI_DENSEPOSE_HEAD = CN()
    # Conv-stack head, a name in ROI_DENSEPOSE_HEAD_REGISTRY.
    _C.MODEL.ROI_DENSEPOSE_HEAD.NAME = "DensePoseV1ConvXHead"
    # Number of 3x3 conv + ReLU layers of the head (body_conv_fcn1..N).
    _C.MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS = 8
    # Number of fine body parts (charts); the predictor outputs NUM_PATCHES + 1 channels.
    _C.MODEL.ROI_DENSEPOSE_HEAD.NUM_PATCHES = 24
    # Kernel of the stride-2 transposed convs of the predictor.
    _C.MODEL.ROI_DENSEPOSE_HEAD.DECONV_KERNEL = 4
    # Channels of the head's convs.
    _C.MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM = 512
    # Kernel of the head's convs.
    _C.MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_KERNEL = 3
    # Bilinear upsampling factor applied after the transposed convs.
    _C.MODEL.ROI_DENSEPOSE_HEAD.UP_SCALE = 2
    # Side S of the SxS output grid; must equal POOLER_RESOLUTION * 2 * UP_SCALE.
    _C.MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE = 112
    # ROI pooler type (detectron2 ROIPooler); ROIAlignV2 uses the half-pixel-aligned grid.
    _C.MODEL.ROI_DENSEPOSE_HEAD.POOLER_TYPE = "ROIAlignV2"
    # Side of the pooled ROI features.
    _C.MODEL.ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION = 28
    # Sampling points per bin of ROIAlign (0 = adaptive).
    _C.MODEL.ROI_DENSEPOSE_HEAD.POOLER_SAMPLING_RATIO = 2
    # Coarse segmentation channels: 2 (background / person) or 15 (background + 14 parts).
    _C.MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS = 2
    # A proposal trains DensePose if its IoU with its matched GT person is >= this.
    _C.MODEL.ROI_DENSEPOSE_HEAD.FG_IOU_THRESHOLD = 0.7
    # Weight of the coarse segmentation cross-entropy (upstream name: "index" = annotation masks).
    _C.MODEL.ROI_DENSEPOSE_HEAD.INDEX_WEIGHTS = 5.0
    # Weight of the fine part (24 parts + background) cross-entropy at the annotated points.
    _C.MODEL.ROI_DENSEPOSE_HEAD.PART_WEIGHTS = 1.0
    # Weight of the U and V smooth-L1 losses (summed over points, as upstream).
    _C.MODEL.ROI_DENSEPOSE_HEAD.POINT_REGRESSION_WEIGHTS = 0.01
    # Drop annotated points that fall outside the proposal box (else clamp them to its border).
    _C.MODEL.ROI_DENSEPOSE_HEAD.DROP_POINTS_OUTSIDE_BOX = True

    # Directory of the official DensePose data files (SMPL_subdiv.mat, Pdist_matrix.pkl,
    # SMPL_SUBDIV_TRANSFORM.mat, UV_symmetry_transforms.mat) used for flips and evaluation
    # instead of what the dataset metadata names; "" = follow the metadata.
    _C.DENSEPOSE_DATA_DIR = ""
    return cfg


def get_densepose_cfg() -> CN:
    """A detectron2 default config with the DensePose keys added."""
    from detectron2.config import get_cfg

    return add_densepose_config(get_cfg())


def setup_densepose_cfg(config_file: str, opts: Sequence[str] = ()) -> CN:
    """Default config + DensePose keys + ``config_file`` + ``KEY VALUE`` overrides (unfrozen).

    Without CUDA a ``cuda`` MODEL.DEVICE falls back to the CPU, with a warning.
    """
    cfg = get_densepose_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning(
            "CUDA is not available: running on the CPU (MODEL.DEVICE cpu)"
        )
        cfg.MODEL.DEVICE = "cpu"
    return cfg
