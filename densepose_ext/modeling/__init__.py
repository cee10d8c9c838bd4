"""DensePose R-CNN modeling: ROI heads (registered at import), head, predictor, losses,
inference and the checkpoint converter."""
from .checkpoint import DensePoseCheckpointer, convert_densepose_keys, is_densepose_key
from .densepose_head import (
    ROI_DENSEPOSE_HEAD_REGISTRY,
    DensePoseV1ConvXHead,
    build_densepose_head,
)
from .inference import densepose_inference
from .losses import LOSS_NAMES, DensePoseChartLoss
from .predictor import DensePoseChartPredictor
from .roi_heads import DensePoseROIHeads, select_densepose_proposals

__all__ = [
    "LOSS_NAMES",
    "ROI_DENSEPOSE_HEAD_REGISTRY",
    "DensePoseChartLoss",
    "DensePoseChartPredictor",
    "DensePoseCheckpointer",
    "DensePoseROIHeads",
    "DensePoseV1ConvXHead",
    "build_densepose_head",
    "convert_densepose_keys",
    "densepose_inference",
    "is_densepose_key",
    "select_densepose_proposals",
]
