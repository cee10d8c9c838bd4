"""DensePose configuration keys, added to a detectron2 config by :func:`add_densepose_config`.

Keys and defaults of the DensePose R-CNN head follow upstream detectron2 DensePose v0.6
(projects/DensePose/densepose/config.py), so configs written for it keep their meaning here;
every upstream key exists, and those selecting features not implemented here are refused at
model build (:mod:`densepose_ext.modeling.unsupported`). Defaults that differ from upstream's:
``ROI_DENSEPOSE_HEAD.NAME`` is "DensePoseV1ConvXHead" and ``POOLER_TYPE`` "ROIAlign" (upstream:
"" and "ROIAlignV2", both overridden by its base yaml to what our defaults are), and our own keys
(LOSS_GRID, ALLOW_PARTIAL_CHECKPOINT, DROP_POINTS_OUTSIDE_BOX, ...) have no upstream value.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

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
    # ROI pooler type (detectron2 ROIPooler). The default is upstream's R_50_FPN_s1x setting:
    # "ROIAlign" (legacy grid, no half-pixel shift); "ROIAlignV2" uses the half-pixel-aligned grid
    # (pinned by configs/embedded/*).
    _C.MODEL.ROI_DENSEPOSE_HEAD.POOLER_TYPE = "ROIAlign"
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
    # Where the training losses put the SxS output grid inside a proposal box of width w:
    # "upstream" = node k at x0 + k * w / S (detectron2 DensePose v0.6: points are bilinear
    # between nodes, the last node's value past it; the GT coarse mask is read at the nodes,
    # nearest); "pixel_centers" = cell k centred at x0 + (k + 0.5) * w / S (grid_sample with
    # align_corners=False, which matches ROIAlignV2; pinned by configs/embedded/*).
    _C.MODEL.ROI_DENSEPOSE_HEAD.LOSS_GRID = "upstream"
    # A coarse-segmentation branch trained from instance masks instead of DensePose masks
    # (upstream option; not implemented here: True is refused at model build).
    _C.MODEL.ROI_DENSEPOSE_HEAD.COARSE_SEGM_TRAINED_BY_MASKS = False

    # DensePose decoder (upstream's Panoptic-FPN style merge of ROI_HEADS.IN_FEATURES into one
    # map at DECODER_COMMON_STRIDE, module roi_heads.decoder): when on, the DensePose pooler
    # pools only that map. Upstream's default; configs/embedded/* turn it off.
    _C.MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON = True
    # Channels of the decoder's output map (its final 1x1 conv), i.e. of the pooled features.
    _C.MODEL.ROI_DENSEPOSE_HEAD.DECODER_NUM_CLASSES = 256
    # Channels of the decoder's 3x3 convs.
    _C.MODEL.ROI_DENSEPOSE_HEAD.DECODER_CONV_DIMS = 256
    # Normalisation of the decoder's 3x3 convs ("" = none, with bias; "GN", "BN", ...).
    _C.MODEL.ROI_DENSEPOSE_HEAD.DECODER_NORM = ""
    # Stride of the decoder's output; must be the stride of the first ROI_HEADS.IN_FEATURES map.
    _C.MODEL.ROI_DENSEPOSE_HEAD.DECODER_COMMON_STRIDE = 4
    # Loading a checkpoint that has DensePose (or decoder) tensors but leaves some of this
    # model's DensePose / decoder tensors missing, or some of its own unused, is an error
    # (DensePoseCheckpointer) unless this is True; then it is only a warning.
    _C.MODEL.ROI_DENSEPOSE_HEAD.ALLOW_PARTIAL_CHECKPOINT = False

    # --- Upstream keys kept so that every upstream DensePose config merges. Values other than
    # the defaults select features densepose_ext does not implement and are refused when the
    # model is built (densepose_ext.modeling.unsupported).
    # DeepLab head settings (upstream NAME "DensePoseDeepLabHead", not implemented here).
    _C.MODEL.ROI_DENSEPOSE_HEAD.DEEPLAB = CN()
    _C.MODEL.ROI_DENSEPOSE_HEAD.DEEPLAB.NORM = "GN"
    _C.MODEL.ROI_DENSEPOSE_HEAD.DEEPLAB.NONLOCAL_ON = 0
    # Upstream predictor / loss registry names. The chart ones are what this package builds
    # (the "WithConfidence" variants equal them while the confidences below are off).
    _C.MODEL.ROI_DENSEPOSE_HEAD.PREDICTOR_NAME = "DensePoseChartWithConfidencePredictor"
    _C.MODEL.ROI_DENSEPOSE_HEAD.LOSS_NAME = "DensePoseChartWithConfidenceLoss"
    # Confidence (variance) estimation of U/V and of the segmentation: only False is supported.
    _C.MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE = CN({"ENABLED": False})
    # Lower bound of the U/V confidences.
    _C.MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.EPSILON = 0.01
    # Residual model of the U/V confidences: "iid_iso" or "indep_aniso".
    _C.MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.TYPE = "iid_iso"
    _C.MODEL.ROI_DENSEPOSE_HEAD.SEGM_CONFIDENCE = CN({"ENABLED": False})
    # Lower bound of the segmentation confidences.
    _C.MODEL.ROI_DENSEPOSE_HEAD.SEGM_CONFIDENCE.EPSILON = 0.01
    # Continuous surface embeddings (CSE): upstream's embedding heads; only the defaults
    # (no embedders, cycle losses off) are supported.
    cse = _C.MODEL.ROI_DENSEPOSE_HEAD.CSE = CN()
    # Embedding dimension.
    cse.EMBED_SIZE = 16
    # Embedder per mesh name (empty: no CSE).
    cse.EMBEDDERS = CN(new_allowed=True)
    # Gaussian widths normalising embedding and geodesic distances.
    cse.EMBEDDING_DIST_GAUSS_SIGMA = 0.01
    cse.GEODESIC_DIST_GAUSS_SIGMA = 0.01
    # Weight and name ("EmbeddingLoss", "SoftEmbeddingLoss") of the embedding loss.
    cse.EMBED_LOSS_WEIGHT = 0.6
    cse.EMBED_LOSS_NAME = "EmbeddingLoss"
    # Learning-rate factors of the embedding features and of the mesh embeddings.
    cse.FEATURES_LR_FACTOR = 1.0
    cse.EMBEDDING_LR_FACTOR = 1.0
    # Shape-to-shape cycle loss: weight, norm, similarity temperature, vertex subset (<= 0: all).
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS = CN({"ENABLED": False})
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS.WEIGHT = 0.025
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS.NORM_P = 2
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS.TEMPERATURE = 0.05
    cse.SHAPE_TO_SHAPE_CYCLE_LOSS.MAX_NUM_VERTICES = 4936
    # Pixel-to-shape cycle loss: weight, norm, meshes used, pixels per instance (<= 0: all),
    # pixel-distance width and the two softmax temperatures.
    cse.PIX_TO_SHAPE_CYCLE_LOSS = CN({"ENABLED": False})
    cse.PIX_TO_SHAPE_CYCLE_LOSS.WEIGHT = 0.0001
    cse.PIX_TO_SHAPE_CYCLE_LOSS.NORM_P = 2
    cse.PIX_TO_SHAPE_CYCLE_LOSS.USE_ALL_MESHES_NOT_GT_ONLY = False
    cse.PIX_TO_SHAPE_CYCLE_LOSS.NUM_PIXELS_TO_SAMPLE = 100
    cse.PIX_TO_SHAPE_CYCLE_LOSS.PIXEL_SIGMA = 5.0
    cse.PIX_TO_SHAPE_CYCLE_LOSS.TEMPERATURE_PIXEL_TO_VERTEX = 0.05
    cse.PIX_TO_SHAPE_CYCLE_LOSS.TEMPERATURE_VERTEX_TO_PIXEL = 0.05
    # Rotation augmentation angles in training (upstream; only [0] = none is supported).
    _C.INPUT.ROTATION_ANGLES = [0]
    # Rotation test-time augmentation angles (upstream; only () is supported).
    _C.TEST.AUG.ROTATION_ANGLES = ()

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
    # npz of K-means class centres (python tools/build_pose_classes.py);
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

    # Mean teacher (densepose_ext.modeling.mean_teacher): an EMA teacher whose outputs on a
    # differently augmented view are consistency targets for the student on every image;
    # images of datasets without annotations get only the consistency cost.
    _C.MEAN_TEACHER = CN()
    _C.MEAN_TEACHER.ENABLED = False
    # Teacher EMA decay while the consistency weight ramps up, and after (the paper: 0.99,
    # 0.999); 0 and 0 make the teacher a copy of the student (the Pi-model control).
    _C.MEAN_TEACHER.EMA_DECAY_RAMPUP = 0.99
    _C.MEAN_TEACHER.EMA_DECAY = 0.999
    # Largest weight of the consistency costs, reached after RAMPUP_ITERS iterations along
    # exp(-5 (1 - t)^2) (0: no ramp-up).
    _C.MEAN_TEACHER.CONSISTENCY_WEIGHT = 1.0
    _C.MEAN_TEACHER.RAMPUP_ITERS = 1000
    # Per-task multipliers of the costs (box classes, masks, keypoint heatmaps, DensePose).
    _C.MEAN_TEACHER.BOX_WEIGHT = 1.0
    _C.MEAN_TEACHER.MASK_WEIGHT = 1.0
    _C.MEAN_TEACHER.KEYPOINT_WEIGHT = 1.0
    _C.MEAN_TEACHER.DENSEPOSE_WEIGHT = 1.0
    # Teacher detections with at least this score, at most this many per image, are the ROIs.
    _C.MEAN_TEACHER.TEACHER_SCORE_THRESH = 0.5
    _C.MEAN_TEACHER.TEACHER_MAX_BOXES = 20
    # The teacher's view of a training image: mirrored with this probability, resized by a
    # factor drawn from SCALE_RANGE, per-channel gain 1 + N(0, s) and offset 127.5 N(0, s).
    _C.MEAN_TEACHER.VIEW = CN()
    _C.MEAN_TEACHER.VIEW.FLIP_PROB = 0.5
    _C.MEAN_TEACHER.VIEW.SCALE_RANGE = (0.8, 1.2)
    _C.MEAN_TEACHER.VIEW.COLOR_NOISE = 0.1
    # Which model the evaluations measure: "teacher", "student" or "both" (student metrics
    # then carry a "_student" suffix).
    _C.MEAN_TEACHER.EVAL_MODEL = "teacher"

    # --- More upstream keys (merge only; non-defaults refused at model build, see above).
    # HRNet / HRFPN backbone settings (upstream's build_hrfpn_backbone, not implemented here).
    _C.MODEL.HRNET = CN()
    _C.MODEL.HRNET.STEM_INPLANES = 64
    # per stage: modules, branches, block type, blocks and channels per branch, fusion
    for stage, branches, modules in (("STAGE2", 2, 1), ("STAGE3", 3, 4), ("STAGE4", 4, 3)):
        node = _C.MODEL.HRNET[stage] = CN()
        node.NUM_MODULES = modules
        node.NUM_BRANCHES = branches
        node.BLOCK = "BASIC"
        node.NUM_BLOCKS = [4] * branches
        node.NUM_CHANNELS = [32 * 2**k for k in range(branches)]
        node.FUSE_METHOD = "SUM"
    _C.MODEL.HRNET.HRFPN = CN()
    _C.MODEL.HRNET.HRFPN.OUT_CHANNELS = 256
    # Bootstrapping on unlabelled data (upstream): extra datasets, model producing their labels.
    _C.BOOTSTRAP_DATASETS = []
    _C.BOOTSTRAP_MODEL = CN()
    _C.BOOTSTRAP_MODEL.WEIGHTS = ""
    _C.BOOTSTRAP_MODEL.DEVICE = "cuda"
    # Category remapping / whitelisting per dataset and class-to-mesh names (upstream, CSE).
    _C.DATASETS.CATEGORY_MAPS = CN(new_allowed=True)
    _C.DATASETS.WHITELISTED_CATEGORIES = CN(new_allowed=True)
    _C.DATASETS.CLASS_TO_MESH_NAME_MAPPING = CN(new_allowed=True)
    # Upstream evaluator options. TYPE "iou" (charts) and MIN_IOU_THRESHOLD 0.5 are what our
    # evaluator does; STORAGE ("none" / "ram" / "file") and DISTRIBUTED_INFERENCE only tune
    # upstream's memory use and are accepted and ignored.
    _C.DENSEPOSE_EVALUATION = CN()
    _C.DENSEPOSE_EVALUATION.TYPE = "iou"
    _C.DENSEPOSE_EVALUATION.STORAGE = "none"
    _C.DENSEPOSE_EVALUATION.MIN_IOU_THRESHOLD = 0.5
    _C.DENSEPOSE_EVALUATION.DISTRIBUTED_INFERENCE = True
    # Mesh-alignment evaluation of CSE models, and its meshes (unsupported).
    _C.DENSEPOSE_EVALUATION.EVALUATE_MESH_ALIGNMENT = False
    _C.DENSEPOSE_EVALUATION.MESH_ALIGNMENT_MESH_NAMES = []

    # Directory of the official DensePose data files (SMPL_subdiv.mat, Pdist_matrix.pkl,
    # SMPL_SUBDIV_TRANSFORM.mat, UV_symmetry_transforms.mat) used for flips and evaluation
    # instead of what the dataset metadata names; "" = follow the metadata.
    _C.DENSEPOSE_DATA_DIR = ""

    # DensePose evaluation protocol (densepose_ext.evaluation.protocol): "detectron2" is
    # bit-compatible with the official detectron2 v0.6 evaluator (points at dp/255, truncated
    # boxes, its ignore rules and GT masks); "exact" uses the renderer's pixel-centre
    # conventions, which the embedded datasets are rendered with (their configs pin it).
    if "DENSEPOSE_EVALUATION" not in _C:
        _C.DENSEPOSE_EVALUATION = CN()
    _C.DENSEPOSE_EVALUATION.PROTOCOL = "detectron2"
    return cfg


def get_densepose_cfg() -> CN:
    """A detectron2 default config with the DensePose keys added."""
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
