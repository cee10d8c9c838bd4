"""Vectorised drawing of DensePose data on RGB images: part colours, U/V iso-contours, points,
mask outlines and keypoint skeletons. All functions take and return uint8 (H,W,3) RGB arrays
(a new array; the input is not modified)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ..body.charts import NUM_PARTS

__all__ = [
    "part_colors",
    "iso_contours",
    "draw_iuv",
    "draw_points",
    "draw_mask_outline",
    "draw_keypoints",
]

U_CONTOUR_COLOR = (255, 255, 255)
V_CONTOUR_COLOR = (20, 20, 20)


def part_colors(cmap: str = "gist_rainbow") -> np.ndarray:
    """(25,3) uint8 RGB colour per fine part label; row 0 (background) is black.

    Neighbouring labels get distant hues (labels are spread over the colormap by a stride
    coprime with 24), so the two halves of a segment are easy to tell apart.
    """
    import matplotlib  # heavy: only for the part colour map

    colormap = matplotlib.colormaps[cmap]
    order = (np.arange(NUM_PARTS) * 7) % NUM_PARTS  # 7 is coprime with 24: a permutation
    rgb = colormap(order / (NUM_PARTS - 1))[:, :3]
    colors = np.zeros((NUM_PARTS + 1, 3), dtype=np.uint8)
    colors[1:] = np.round(rgb * 255).astype(np.uint8)
    return colors


def iso_contours(values: np.ndarray, labels: np.ndarray, num_levels: int = 10) -> np.ndarray:
    """(H,W) bool: pixels where ``values`` (in [0,1]) crosses one of ``num_levels`` - 1 evenly
    spaced levels, only between neighbouring pixels of the same foreground label."""
    level = np.clip((values * num_levels).astype(np.int32), 0, num_levels - 1)
    fg = labels > 0
    edge = np.zeros(labels.shape, dtype=bool)
    same_x = fg[:, 1:] & (labels[:, 1:] == labels[:, :-1])
    same_y = fg[1:, :] & (labels[1:, :] == labels[:-1, :])
    edge[:, 1:] |= same_x & (level[:, 1:] != level[:, :-1])
    edge[1:, :] |= same_y & (level[1:, :] != level[:-1, :])
    return edge


def draw_iuv(
    image: np.ndarray,
    i: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    alpha: float = 0.55,
    num_levels: int = 10,
    colors: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Blend part colours over foreground pixels (I > 0) and draw U (light) and V (dark)
    iso-contours. ``i``, ``u``, ``v`` are (H,W) maps aligned with ``image``."""
    colors = part_colors() if colors is None else colors
    out = image.astype(np.float32)
    fg = i > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colors[i[fg]].astype(np.float32)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    out[iso_contours(u, i, num_levels)] = U_CONTOUR_COLOR
    out[iso_contours(v, i, num_levels)] = V_CONTOUR_COLOR
    return out


def _disk_offsets(radius: int) -> np.ndarray:
    r = int(max(radius, 0))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dx**2 + dy**2 <= r * r + r  # slightly fuller than a strict circle at small radii
    return np.stack([dx[keep], dy[keep]], axis=1)


def draw_points(
    image: np.ndarray,
    xy: np.ndarray,
    colors: np.ndarray,
    radius: int = 2,
    outline: Optional[Tuple[int, int, int]] = (0, 0, 0),
) -> np.ndarray:
    """Stamp filled disks of ``radius`` at image positions ``xy`` (P,2) with ``colors`` (P,3)
    (or one colour), optionally ringed by ``outline``; points outside the image are dropped."""
    out = image.copy()
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if not len(xy):
        return out
    colors = np.broadcast_to(np.asarray(colors, dtype=np.uint8), (len(xy), 3))
    h, w = out.shape[:2]
    centres = np.floor(xy).astype(np.int64)
    layers = [(radius, colors)]
    if outline is not None:
        layers.insert(0, (radius + 1, np.broadcast_to(np.asarray(outline, np.uint8), (len(xy), 3))))
    for r, col in layers:
        offs = _disk_offsets(r)
        px = centres[:, None, :] + offs[None, :, :]  # (P,K,2)
        col_k = np.broadcast_to(col[:, None, :], (len(xy), len(offs), 3))
        inside = (px[..., 0] >= 0) & (px[..., 0] < w) & (px[..., 1] >= 0) & (px[..., 1] < h)
        out[px[..., 1][inside], px[..., 0][inside]] = col_k[inside]
    return out


def draw_mask_outline(
    image: np.ndarray, mask: np.ndarray, color: Sequence[int] = (255, 255, 0), thickness: int = 1
) -> np.ndarray:
    """Colour the boundary pixels of the boolean ``mask`` (mask minus its erosion)."""
    out = image.copy()
    m = mask.astype(np.uint8)
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    border = (m > 0) & (cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) == 0)
    out[border] = np.asarray(color, dtype=np.uint8)
    return out


def draw_keypoints(
    image: np.ndarray,
    keypoints: np.ndarray,
    keypoint_names: Sequence[str],
    connection_rules: Sequence[Tuple[str, str, Tuple[int, int, int]]],
    radius: int = 2,
    thickness: int = 1,
    point_color: Tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Draw the skeleton (one line per connection rule with both ends labelled, v > 0) and the
    labelled keypoints of one person. ``keypoints`` is (K,3) [x, y, visibility]."""
    out = np.ascontiguousarray(image.copy())
    kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    index = {name: k for k, name in enumerate(keypoint_names)}
    for a, b, color in connection_rules:  # a dozen limbs at most: cv2 draws each line
        ka, kb = index[a], index[b]
        if kps[ka, 2] > 0 and kps[kb, 2] > 0:
            p0 = tuple(int(round(c)) for c in kps[ka, :2])
            p1 = tuple(int(round(c)) for c in kps[kb, :2])
            cv2.line(out, p0, p1, tuple(int(c) for c in color), thickness, cv2.LINE_AA)
    labelled = kps[:, 2] > 0
    return draw_points(out, kps[labelled, :2], np.asarray(point_color), radius=radius)
