"""COCO polygons of binary masks, drawn so that pycocotools rasterises them back exactly."""
from __future__ import annotations

from typing import List

import cv2
import numpy as np

__all__ = ["mask_to_polygons"]


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons of the outer contours of a binary mask.

    Contours are traced on the mask upsampled 2x, so vertices sit a quarter pixel inside the
    outer pixel edges: COCO's polygon rasteriser (pycocotools) then gives back every pixel of
    the mask, where a contour through the boundary pixel centres would drop about half of the
    boundary pixels (a large loss on thin limbs). Holes cannot be expressed (COCO polygons are
    united) and are filled.
    """
    up = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if len(c) < 3:
            continue
        polys.append([float(x) for x in ((c.reshape(-1, 2) + 0.5) * 0.5).ravel()])
    return polys
