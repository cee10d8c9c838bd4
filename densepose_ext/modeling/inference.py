"""Attach DensePose predictions to detected instances."""
from __future__ import annotations

from typing import List

from detectron2.structures import Instances

from densepose_ext.structures import DensePoseChartOutput

__all__ = ["densepose_inference"]


def densepose_inference(outputs: DensePoseChartOutput, detections: List[Instances]) -> None:
    """Split ``outputs`` (predicted for all detections, image after image) per image and set
    each image's ``pred_densepose`` field (in place)."""
    sizes = [len(d) for d in detections]
    if sum(sizes) != len(outputs):
        raise ValueError(
            f"{len(outputs)} DensePose predictions for {sum(sizes)} detections ({sizes} per image)"
        )
    for det, out in zip(detections, outputs.split(sizes)):
        det.pred_densepose = out
