"""Warping a source person into a stitched image.

Each layer is its source warped by its similarity transform (cv2.warpAffine: image and person
mask bilinear, DensePose labels nearest), only inside the region where its blending weight can
be non-zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

__all__ = ["to_pixel_index_affine", "WarpedSource", "warp_source"]


def to_pixel_index_affine(transform: np.ndarray) -> np.ndarray:
    """A (2,3) map of continuous coordinates as the equivalent map of pixel indices (what
    OpenCV warps use: the centre of pixel (c, r) is (c, r), i.e. continuous minus 0.5)."""
    m = np.array(transform, dtype=np.float64)
    m[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return m


@dataclass
class WarpedSource:
    """One layer in the output frame, inside its region ``roi`` = (x0, y0, x1, y1): image
    (h,w,3) float32, person mask (h,w) float32 in [0,1], and when known the dense labels
    ``iuv`` (h,w,3) float32 (I, U, V; nearest), the coarse part map (h,w) uint8, and ``parts``
    (h,w) uint8: the coarse parts, or where the source has none, their skeleton estimate."""

    roi: Tuple[int, int, int, int]
    image: np.ndarray
    mask: np.ndarray
    iuv: Optional[np.ndarray] = None
    coarse: Optional[np.ndarray] = None
    parts: Optional[np.ndarray] = None

    @property
    def window(self) -> Tuple[slice, slice]:
        x0, y0, x1, y1 = self.roi
        return slice(y0, y1), slice(x0, x1)


def warp_source(transform: np.ndarray, roi: Tuple[int, int, int, int], image: np.ndarray, mask: np.ndarray,
                iuv: Optional[np.ndarray] = None, coarse: Optional[np.ndarray] = None,
                offset: Tuple[float, float] = (0.0, 0.0), parts: Optional[np.ndarray] = None) -> WarpedSource:
    """Warp one source's rasters by ``transform`` (continuous source -> output coordinates)
    into the output region ``roi``; ``offset`` is the rasters' origin in the source image."""
    x0, y0, x1, y1 = roi
    t = np.array(transform, dtype=np.float64)
    t[:, 2] += t[:, :2] @ np.asarray(offset, np.float64) - np.array([x0, y0], np.float64)
    m = to_pixel_index_affine(t)
    size = (max(x1 - x0, 0), max(y1 - y0, 0))
    if size[0] == 0 or size[1] == 0:
        e = np.zeros((size[1], size[0]), np.float32)
        labels = lambda x: None if x is None else np.zeros(e.shape + x.shape[2:], x.dtype)  # noqa: E731
        return WarpedSource(roi, np.zeros(e.shape + (3,), np.float32), e, labels(iuv), labels(coarse), labels(parts))
    img = cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    msk = cv2.warpAffine(mask.astype(np.float32), m, size, flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def nearest(x):
        return None if x is None else cv2.warpAffine(x, m, size, flags=cv2.INTER_NEAREST,
                                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    return WarpedSource(roi, img.astype(np.float32).reshape(size[1], size[0], -1), np.clip(msk, 0.0, 1.0),
                        nearest(iuv), nearest(coarse), nearest(parts))
