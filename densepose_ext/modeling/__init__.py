"""DensePose modeling: R-CNN ROI heads and the fully convolutional DensePoseFCN (registered at
import), decoder, head, predictor, losses, inference, the checkpoint converter and the check
of upstream-only options; the 3D-pose class ROI heads (:mod:`.pose3d`)."""
from .cascade_roi_heads import (
    CascadeRefinement,
    DensePoseCascadeROIHeads,
    cascade_tasks,
    stage1_output_channels,
)
from .checkpoint import (
    DensePoseCheckpointer,
    DensePoseCheckpointError,
    convert_densepose_keys,
    is_densepose_key,
)
from .decoder import DensePoseDecoder, build_densepose_decoder
from .densepose_head import (
    ROI_DENSEPOSE_HEAD_REGISTRY,
    DensePoseV1ConvXHead,
    build_densepose_head,
)
from .fcn import DensePoseFCN
from .inference import densepose_inference
from .losses import LOSS_GRIDS, LOSS_NAMES, DensePoseChartLoss
from .pose3d import Pose3DClassROIHeads
from .predictor import DensePoseChartPredictor
from .roi_heads import DensePoseROIHeads, densepose_proposal_mask, select_densepose_proposals
from .unsupported import UnsupportedConfigError, check_supported_config

__all__ = [
    "LOSS_GRIDS",
    "LOSS_NAMES",
    "CascadeRefinement",
    "DensePoseCascadeROIHeads",
    "cascade_tasks",
    "densepose_proposal_mask",
    "stage1_output_channels",
    "ROI_DENSEPOSE_HEAD_REGISTRY",
    "DensePoseChartLoss",
    "DensePoseChartPredictor",
    "DensePoseFCN",
    "DensePoseCheckpointer",
    "DensePoseCheckpointError",
    "DensePoseDecoder",
    "DensePoseROIHeads",
    "DensePoseV1ConvXHead",
    "Pose3DClassROIHeads",
    "UnsupportedConfigError",
    "build_densepose_decoder",
    "build_densepose_head",
    "check_supported_config",
    "convert_densepose_keys",
    "densepose_inference",
    "is_densepose_key",
    "select_densepose_proposals",
]
