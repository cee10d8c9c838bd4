"""Refuse, at model build, upstream DensePose options that densepose_ext does not implement.

Every upstream v0.6 key exists in our config (:func:`densepose_ext.config.add_densepose_config`)
so that upstream yaml files merge; a config that turns on one of the features behind those
keys (confidence estimation, CSE embeddings, DeepLab / HRNet, bootstrapping, ...) would
otherwise be silently trained or evaluated without it, so building the model raises one
error naming every such key.
"""
from __future__ import annotations

from typing import Callable, List, Tuple

from detectron2.config import CfgNode

from .densepose_head import ROI_DENSEPOSE_HEAD_REGISTRY

__all__ = ["UnsupportedConfigError", "SUPPORTED_PREDICTORS", "SUPPORTED_LOSSES",
           "unsupported_options", "check_supported_config"]

#: upstream predictor / loss names that mean our chart predictor and loss (the confidence
#: variants are identical to them while UV_CONFIDENCE and SEGM_CONFIDENCE are off)
SUPPORTED_PREDICTORS = ("DensePoseChartPredictor", "DensePoseChartWithConfidencePredictor")
SUPPORTED_LOSSES = ("DensePoseChartLoss", "DensePoseChartWithConfidenceLoss")


class UnsupportedConfigError(ValueError):
    """A config enables an upstream DensePose feature that densepose_ext does not implement."""


def _get(cfg: CfgNode, path: str):
    node = cfg
    for part in path.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            return None
        node = node[part]
    return node


# (key, test of an acceptable value, what densepose_ext accepts); checked when DensePose is on
_HEAD_RULES: Tuple[Tuple[str, Callable[[object], bool], str], ...] = (
    ("MODEL.ROI_DENSEPOSE_HEAD.NAME", lambda v: v in ROI_DENSEPOSE_HEAD_REGISTRY,
     "a head of ROI_DENSEPOSE_HEAD_REGISTRY, e.g. DensePoseV1ConvXHead (no DeepLab head)"),
    ("MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.ENABLED", lambda v: not v, "False"),
    ("MODEL.ROI_DENSEPOSE_HEAD.SEGM_CONFIDENCE.ENABLED", lambda v: not v, "False"),
    ("MODEL.ROI_DENSEPOSE_HEAD.COARSE_SEGM_TRAINED_BY_MASKS", lambda v: not v, "False"),
    ("MODEL.ROI_DENSEPOSE_HEAD.PREDICTOR_NAME", lambda v: v in SUPPORTED_PREDICTORS,
     " or ".join(SUPPORTED_PREDICTORS)),
    ("MODEL.ROI_DENSEPOSE_HEAD.LOSS_NAME", lambda v: v in SUPPORTED_LOSSES,
     " or ".join(SUPPORTED_LOSSES)),
    ("MODEL.ROI_DENSEPOSE_HEAD.CSE.EMBEDDERS", lambda v: not v, "empty (no CSE embedders)"),
    ("MODEL.ROI_DENSEPOSE_HEAD.CSE.SHAPE_TO_SHAPE_CYCLE_LOSS.ENABLED", lambda v: not v, "False"),
    ("MODEL.ROI_DENSEPOSE_HEAD.CSE.PIX_TO_SHAPE_CYCLE_LOSS.ENABLED", lambda v: not v, "False"),
)
# checked whatever the heads: data, evaluation and backbone options
_GLOBAL_RULES: Tuple[Tuple[str, Callable[[object], bool], str], ...] = (
    ("MODEL.BACKBONE.NAME", lambda v: v != "build_hrfpn_backbone",
     "a detectron2 backbone (HRNet / HRFPN is not implemented)"),
    ("INPUT.ROTATION_ANGLES", lambda v: list(v) == [0], "[0]"),
    ("TEST.AUG.ROTATION_ANGLES", lambda v: len(v) == 0, "()"),
    ("BOOTSTRAP_DATASETS", lambda v: len(v) == 0, "[]"),
    ("DATASETS.CATEGORY_MAPS", lambda v: not v, "empty"),
    ("DATASETS.WHITELISTED_CATEGORIES", lambda v: not v, "empty"),
    ("DATASETS.CLASS_TO_MESH_NAME_MAPPING", lambda v: not v, "empty"),
    ("DENSEPOSE_EVALUATION.TYPE", lambda v: v == "iou", '"iou"'),
    ("DENSEPOSE_EVALUATION.MIN_IOU_THRESHOLD", lambda v: float(v) == 0.5, "0.5"),
    ("DENSEPOSE_EVALUATION.EVALUATE_MESH_ALIGNMENT", lambda v: not v, "False"),
)


def unsupported_options(cfg: CfgNode, densepose_on: bool = True) -> List[str]:
    """One line ``KEY=value is not supported ... (supported: ...)`` per unsupported option set.

    Keys missing from ``cfg`` (a config without :func:`add_densepose_config`) are skipped.
    """
    rules = (_HEAD_RULES if densepose_on else ()) + _GLOBAL_RULES
    lines = []
    for key, ok, supported in rules:
        value = _get(cfg, key)
        if value is not None and not ok(value):
            lines.append(f"{key}={value!r} is not supported by densepose_ext "
                         f"(supported: {supported})")
    return lines


def check_supported_config(cfg: CfgNode, densepose_on: bool = True) -> None:
    """Raise :class:`UnsupportedConfigError` naming every unsupported option set in ``cfg``."""
    lines = unsupported_options(cfg, densepose_on)
    if lines:
        raise UnsupportedConfigError(
            "; ".join(lines) + ". These upstream detectron2 DensePose features are not "
            "implemented here: reset the keys to the supported values."
        )
