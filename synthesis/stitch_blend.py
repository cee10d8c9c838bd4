"""Blending the warped layers of a stitched image.

The slot label of every output pixel comes from an assignment rule of
:mod:`synthesis.stitch_assign`. Slots choosing the same source with the same alignment share a
layer (:func:`distinct_layers`); the weight of layer u at a pixel is the fraction of pixels
labelled u in a ``blend`` x ``blend`` box around it (a box filter of the one-hot label maps),
so weights are non-negative, sum to 1, and equal one layer away from seams. Each layer is
warped (:mod:`synthesis.stitch_warp`) only inside :func:`layer_rois`, where its weight can be
non-zero, and :func:`composite` mixes them.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import cv2
import numpy as np

from .stitch_warp import WarpedSource

__all__ = ["blend_weights", "layer_rois", "composite", "distinct_layers"]


def blend_weights(labels: np.ndarray, num_labels: int, size: int) -> np.ndarray:
    """(H,W,L) float32 weights: the label histogram in a ``size`` x ``size`` box around each
    pixel (replicated borders), normalised to sum to 1."""
    onehot = (labels[..., None] == np.arange(num_labels)[None, None, :]).astype(np.float32)
    if size > 1:
        onehot = cv2.blur(onehot, (int(size), int(size)), borderType=cv2.BORDER_REPLICATE)
        if onehot.ndim == 2:
            onehot = onehot[..., None]
    onehot = np.maximum(onehot, 0.0)
    return onehot / onehot.sum(-1, keepdims=True)


def layer_rois(labels: np.ndarray, num_layers: int, blend: int) -> List[Tuple[int, int, int, int]]:
    """Per layer the box (x0, y0, x1, y1) holding every pixel where its blending weight can be
    non-zero: its labelled pixels grown by half the blending box."""
    H, W = labels.shape
    r = int(blend) // 2 + 1
    rois = []
    for u in range(num_layers):
        mine = labels == u
        rows, cols = np.flatnonzero(mine.any(1)), np.flatnonzero(mine.any(0))
        if len(rows) == 0:
            rois.append((0, 0, 0, 0))
            continue
        rois.append((max(int(cols[0]) - r, 0), max(int(rows[0]) - r, 0),
                     min(int(cols[-1]) + 1 + r, W), min(int(rows[-1]) + 1 + r, H)))
    return rois


def composite(weights: np.ndarray, layers: List[WarpedSource], background: Optional[np.ndarray]) -> np.ndarray:
    """Blended image (H,W,3) float32: sum_u w_u * C_u, where C_u is the warped layer or, with a
    ``background``, its person over the shared background: m_u * I_u + (1 - m_u) * B."""
    out = np.zeros(weights.shape[:2] + (3,), np.float32)
    for u, layer in enumerate(layers):
        win = layer.window
        colour = layer.image
        if background is not None:
            m = layer.mask[..., None]
            colour = m * colour + (1.0 - m) * background[win]
        out[win] += weights[win][..., u:u + 1] * colour
    return out


def distinct_layers(source: np.ndarray, transform: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Slots choosing the same source with the same transform share one warped layer.

    Returns the slot index that defines each layer (first-use order) and each slot's layer.
    """
    keys = [(int(s), np.round(t, 9).tobytes()) for s, t in zip(source, transform)]
    first: dict = {}
    slot_layer = np.array([first.setdefault(k, len(first)) for k in keys], dtype=np.int64)
    layer_slot = np.array([keys.index(k) for k in first], dtype=np.int64)
    return layer_slot, slot_layer
