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

    # Weight of the mask head's loss when DensePose is trained with masks (multi-task).
    _C.MODEL.ROI_MASK_HEAD.LOSS_WEIGHT = 1.0

    # Cross-task cascade (DensePoseCascadeROIHeads): a second, refining stage per task.
    _C.MODEL.ROI_CASCADE_HEAD = CN()
    # True: stage 2 of every task sees the stage-1 outputs of all tasks (the paper's
    # cross-cascade); False: each task sees only its own stage-1 output (the paper's control).
    _C.MODEL.ROI_CASCADE_HEAD.CROSS_TASK = True
    # Multiplier of every stage-1 loss (stage-2 losses keep the tasks' own weights).
    _C.MODEL.ROI_CASCADE_HEAD.STAGE1_LOSS_WEIGHT = 1.0
    # Stage whose outputs inference returns: 2, or 1 to time / evaluate the first stage alone.
    _C.MODEL.ROI_CASCADE_HEAD.TEST_STAGE = 2

    # Fully convolutional DensePose baseline (META_ARCHITECTURE "DensePoseFCN"); its losses
    # take NUM_PATCHES and the *_WEIGHTS keys from ROI_DENSEPOSE_HEAD.
    _C.MODEL.DENSEPOSE_FCN = CN()
    # Backbone features merged by the head (semantic-FPN style).
    _C.MODEL.DENSEPOSE_FCN.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    # Stride at which the levels are merged and the predictors run.
    _C.MODEL.DENSEPOSE_FCN.COMMON_STRIDE = 4
    # Channels of the head's convs.
    _C.MODEL.DENSEPOSE_FCN.CONVS_DIM = 128
    # Normalisation of the head's convs ("GN", "BN", "" ...).
    _C.MODEL.DENSEPOSE_FCN.NORM = "GN"
    # 3x3 conv + norm + ReLU layers applied after the merge, before the 1x1 predictors.
    _C.MODEL.DENSEPOSE_FCN.NUM_STACKED_CONVS = 2
    # Side S of each instance's pred_densepose grid (resampled from the image-level maps).
    _C.MODEL.DENSEPOSE_FCN.HEATMAP_SIZE = 112
    # Connected components of the predicted person mask smaller than this (input pixels) are
    # dropped at inference.
    _C.MODEL.DENSEPOSE_FCN.MIN_AREA = 64
    # Multi-scale / flip testing: probabilities averaged over the runs, then instances extracted.
    _C.MODEL.DENSEPOSE_FCN.TEST_AUG = CN({"ENABLED": False})
    # Shorter side of the input at each test scale (the longer side is capped by MAX_SIZE).
    _C.MODEL.DENSEPOSE_FCN.TEST_AUG.MIN_SIZES = (400, 500, 600, 700, 800)
    # Cap on the longer side of the input at the test scales.
    _C.MODEL.DENSEPOSE_FCN.TEST_AUG.MAX_SIZE = 1333
    # Also run every scale on the mirrored image (flipped back with the symmetry tables).
    _C.MODEL.DENSEPOSE_FCN.TEST_AUG.FLIP = True
    # Single-person mode: train on one crop per annotated person and evaluate every GT person
    # on its own crop with its GT box given (see densepose_ext.data.person_crop_mapper).
    _C.MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP = False
    # Side of the square crop is CROP_SCALE x the longer side of the person's box (>= 1).
    _C.MODEL.DENSEPOSE_FCN.CROP_SCALE = 1.2
    # Crops are resized to CROP_SIZE x CROP_SIZE pixels.
    _C.MODEL.DENSEPOSE_FCN.CROP_SIZE = 256

    # 3D-pose classification (Pose3DClassROIHeads): the mapper adds gt_pose3d (N, 24, 3) from
    # the annotations' joints_3d, the heads classify each person's pose among K classes.
    _C.MODEL.POSE3D_ON = False
    _C.MODEL.ROI_POSE3D_HEAD = CN()
    # Logits head, a name in ROI_POSE3D_HEAD_REGISTRY.
    _C.MODEL.ROI_POSE3D_HEAD.NAME = "Pose3DClassConvFCHead"
    # npz of K-means class centres (python -m densepose_ext.modeling.pose3d);
    # "" = OUTPUT_DIR/pose3d_classes.npz.
    _C.MODEL.ROI_POSE3D_HEAD.CLASSES_FILE = ""
    # Build a missing classes file from DATASETS.TRAIN (K-means with the keys below).
    _C.MODEL.ROI_POSE3D_HEAD.BUILD_CLASSES_IF_MISSING = True
    # Number of pose classes K; must equal the classes file's.
    _C.MODEL.ROI_POSE3D_HEAD.NUM_CLASSES = 100
    # k-means++ seed and Lloyd iteration cap used when the classes are built.
    _C.MODEL.ROI_POSE3D_HEAD.KMEANS_SEED = 0
    _C.MODEL.ROI_POSE3D_HEAD.KMEANS_MAX_ITER = 100
    # Classes ignore the rotation about the camera's vertical axis (False: viewpoint is part
    # of the class, as the image shows it); must equal the classes file's.
    _C.MODEL.ROI_POSE3D_HEAD.ALIGN_YAW = False
    # ROI pooler of the branch (type, output side, sampling points per bin).
    _C.MODEL.ROI_POSE3D_HEAD.POOLER_TYPE = "ROIAlignV2"
    _C.MODEL.ROI_POSE3D_HEAD.POOLER_RESOLUTION = 7
    _C.MODEL.ROI_POSE3D_HEAD.POOLER_SAMPLING_RATIO = 2
    # 3x3 convs before the fully connected layers, their channels and norm ("", "GN", ...).
    _C.MODEL.ROI_POSE3D_HEAD.NUM_CONV = 2
    _C.MODEL.ROI_POSE3D_HEAD.CONV_DIM = 256
    _C.MODEL.ROI_POSE3D_HEAD.NORM = ""
    # Fully connected layers before the K-way classifier and their width.
    _C.MODEL.ROI_POSE3D_HEAD.NUM_FC = 2
    _C.MODEL.ROI_POSE3D_HEAD.FC_DIM = 1024
    # Weight of the class cross-entropy.
    _C.MODEL.ROI_POSE3D_HEAD.LOSS_WEIGHT = 1.0
    # A proposal trains the branch if its IoU with its matched GT person is >= this.
    _C.MODEL.ROI_POSE3D_HEAD.FG_IOU_THRESHOLD = 0.7
    # Evaluation: a detection matches a GT person at IoU >= this (greedy by score).
    _C.MODEL.ROI_POSE3D_HEAD.EVAL_IOU_THRESHOLD = 0.5

    # Points per person and iteration drawn from its dense target (dp_dense_file); 0 = ignore.
    _C.INPUT.DENSEPOSE_DENSE_POINTS = 200

    # Share of every training batch drawn from each DATASETS.TRAIN dataset, e.g. (0.6, 0.4) for
    # labelled + pseudo-labelled images; () = detectron2's uniform sampling of their union.
    _C.DATASETS.TRAIN_RATIOS = ()

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
