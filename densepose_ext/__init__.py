"""densepose_ext: a Detectron2 extension for dense human pose (see README.md).

Importing the package registers its meta-architectures and ROI heads with detectron2 and the
``densepose_ext://`` model-zoo names with the checkpointer, and gives the public API, as
``import densepose`` does for detectron2's DensePose project::

    from densepose_ext import add_densepose_config, DensePoseDatasetMapper, Trainer
"""
from . import model_zoo  # noqa: F401  (registers the densepose_ext:// checkpoint names)
from .config import add_densepose_config, get_densepose_cfg, setup_densepose_cfg
from .data import (
    DensePoseDatasetError,
    DensePoseDatasetMapper,
    load_densepose_coco_json,
    register_dataset,
    register_densepose_coco,
    register_interpolated,
    register_pseudo_labeled,
)
from .engine import Trainer
from .evaluation import DensePoseEvaluator
from .modeling import (
    DensePoseCascadeROIHeads,
    DensePoseCheckpointer,
    DensePoseFCN,
    DensePoseROIHeads,
    Pose3DClassROIHeads,
)
from .structures import DensePoseData, DensePoseList, DensePoseTransformData

__all__ = [
    "DensePoseCascadeROIHeads",
    "DensePoseCheckpointer",
    "DensePoseData",
    "DensePoseDatasetError",
    "DensePoseDatasetMapper",
    "DensePoseEvaluator",
    "DensePoseFCN",
    "DensePoseList",
    "DensePoseROIHeads",
    "DensePoseTransformData",
    "Pose3DClassROIHeads",
    "Trainer",
    "add_densepose_config",
    "get_densepose_cfg",
    "load_densepose_coco_json",
    "register_dataset",
    "register_densepose_coco",
    "register_interpolated",
    "register_pseudo_labeled",
    "setup_densepose_cfg",
]
