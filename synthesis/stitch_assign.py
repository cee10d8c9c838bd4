"""Pixel assignment of stitched synthesis: which slot's source supplies each output pixel.

The query's 2D skeleton is cut into owned pieces: every COCO limb segment is split at its
midpoint and each half belongs to the slot of the keypoint at its end (a hand piece extends the
forearm past the wrist); the torso quadrilateral (shoulders, hips), its sides and the lower neck
belong to the torso slot. Two rules turn the pieces into a label per pixel (kinematically
constrained: a pixel only ever goes to a piece near it, by occlusion order of the query body):

- ``geometric``: a pixel within a limb's thickness of one or more pieces takes the front-most
  of them by the query's 3D depth; other pixels take the nearest piece within ``radius``;
  pixels farther away belong to the torso slot. The sources' match quality plays no part.
- ``match`` (default): as the method says, the similarities decide which image is most
  relevant. A piece's cost at a pixel is ``sqrt(d^2 + e^2)``: ``d`` its distance to the
  pixel, ``e`` its slot's *misfit*, the RMS distance (pixels) between the chosen source's
  aligned keypoints around that joint and the query's
  (:func:`~synthesis.stitch_index.match_misfit`). Since the source's own limb lies about
  ``e`` from the query's, the cost is the expected distance from the pixel to the limb the
  source actually shows: where several
  pieces compete (between limbs, at the seams along a limb, where limbs cross at one depth)
  the better-matched source wins, and a poorly matched source cedes the pixels near its
  piece to a well-matched neighbour; far from other pieces, or where depth orders the pieces
  clearly (more than :data:`LEVEL_DEPTH` apart), the geometry decides as in ``geometric``.
  It is the default because it is the method's rule and because a misplaced source limb
  otherwise paints its pixels where the query has none (ghost limbs, broken silhouettes).

Every rule has the signature of :func:`assign_geometric` and is selected by name from
:data:`ASSIGNMENT_RULES` (``python -m synthesis.stitch --assignment``).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from densepose_ext.body.keypoints import COCO_KEYPOINT_NAMES, COCO_SKELETON

from .stitch_index import NUM_SLOTS, TORSO_KEYPOINTS, TORSO_SLOT

__all__ = ["HAND_EXTENSION", "LEVEL_DEPTH", "ASSIGNMENT_RULES", "DEFAULT_ASSIGNMENT", "skeleton_pieces",
           "assign_geometric", "assign_by_match"]

_KP = {n: i for i, n in enumerate(COCO_KEYPOINT_NAMES)}
HAND_EXTENSION = 0.35  # hand piece length as a fraction of the forearm
HEAD_THICKNESS = 1.6  # head pieces are this much thicker than limbs
#: metres: pieces whose depths at a pixel differ by less (about a limb's radius: their axes
#: cannot say which surface is in front) are level, and the match rule's cost decides
LEVEL_DEPTH = 0.05
_TORSO_EDGES = {frozenset((a, b)) for a, b in zip(TORSO_KEYPOINTS, TORSO_KEYPOINTS[1:] + TORSO_KEYPOINTS[:1])}


def skeleton_pieces(kps: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Owned segments of a skeleton given as (17,D) points (x, y[, depth]): start (M,D),
    end (M,D), owner slot (M,)."""
    kps = np.asarray(kps, dtype=np.float64)
    a, b, owner = [], [], []
    for i, j in COCO_SKELETON:
        i, j = i - 1, j - 1
        if frozenset((i, j)) in _TORSO_EDGES:
            a.append(kps[i]), b.append(kps[j]), owner.append(TORSO_SLOT)
            continue
        mid = 0.5 * (kps[i] + kps[j])
        a += [kps[i], mid]
        b += [mid, kps[j]]
        owner += [i, j]
    for wrist, elbow in (("left_wrist", "left_elbow"), ("right_wrist", "right_elbow")):
        w, e = kps[_KP[wrist]], kps[_KP[elbow]]
        a.append(w), b.append(w + HAND_EXTENSION * (w - e)), owner.append(_KP[wrist])
    # neck: from the shoulders' midpoint (torso) to the nose (head)
    neck = 0.5 * (kps[_KP["left_shoulder"]] + kps[_KP["right_shoulder"]])
    nose = kps[_KP["nose"]]
    mid = 0.5 * (neck + nose)
    a += [neck, mid]
    b += [mid, nose]
    owner += [TORSO_SLOT, _KP["nose"]]
    return np.asarray(a), np.asarray(b), np.asarray(owner, dtype=np.int64)


def _torso_quad(pts: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, np.float32]:
    """(H,W) bool inside the torso quadrilateral of (17,3) points, and its mean depth."""
    torso = np.zeros((height, width), np.uint8)
    quad = pts[list(TORSO_KEYPOINTS), :2] - 0.5  # to pixel-index coordinates
    cv2.fillPoly(torso, [np.round(quad * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return torso > 0, np.float32(pts[list(TORSO_KEYPOINTS), 2].mean())


def assign_geometric(kps: np.ndarray, height: int, width: int, radius: float, thickness: float,
                     depth: Optional[np.ndarray] = None,
                     misfit: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(H,W) slot label of every pixel for (17,2) query keypoints (continuous coordinates), and
    the (H,W) bool map of pixels covered by the query body (within ``thickness`` of a piece or
    inside the torso).

    A pixel within ``thickness`` of one or more pieces (or inside the torso quadrilateral)
    takes the front-most of them by the keypoints' camera ``depth`` (17,) (an arm in front of
    the torso wins there, one behind it loses; without depths: the nearest); else the nearest
    piece within ``radius``; else the torso slot. Head pieces are 1.6x as thick. The match
    quality (``misfit``) is not used.
    """
    z = np.zeros(len(kps)) if depth is None else np.asarray(depth, dtype=np.float64)
    pts = np.concatenate([np.asarray(kps, dtype=np.float64)[:, :2], z[:, None]], 1)
    a, b, owner = skeleton_pieces(pts)
    head = owner < _KP["left_shoulder"]
    near_d2 = np.full((height, width), np.inf, np.float32)
    near_lab = np.full((height, width), TORSO_SLOT, np.int64)
    front_z = np.full((height, width), np.inf, np.float32)
    front_lab = np.full((height, width), -1, np.int64)
    front_d2 = np.full((height, width), np.inf, np.float32)
    reach = max(radius, HEAD_THICKNESS * thickness)
    for m in range(len(a)):
        lo = np.floor(np.minimum(a[m, :2], b[m, :2]) - reach).astype(int)
        hi = np.ceil(np.maximum(a[m, :2], b[m, :2]) + reach).astype(int)
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], width), min(hi[1], height)
        if x0 >= x1 or y0 >= y1:
            continue
        px = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - np.float32(a[m, 0])
        py = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - np.float32(a[m, 1])
        dx, dy = np.float32(b[m, 0] - a[m, 0]), np.float32(b[m, 1] - a[m, 1])
        t = np.clip((px * dx + py * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        d2 = (px - t * dx) ** 2 + (py - t * dy) ** 2
        zz = np.float32(a[m, 2]) + t * np.float32(b[m, 2] - a[m, 2])
        win = (slice(y0, y1), slice(x0, x1))
        closer = d2 < near_d2[win]
        near_d2[win] = np.where(closer, d2, near_d2[win])
        near_lab[win] = np.where(closer, owner[m], near_lab[win])
        thick = thickness * (HEAD_THICKNESS if head[m] else 1.0)
        fz, fd2 = front_z[win], front_d2[win]
        # in front, or (nearly) level and nearer in the image
        wins = (d2 <= thick * thick) & ((zz < fz - 1e-6) | ((np.abs(zz - fz) <= 1e-6) & (d2 < fd2)))
        front_z[win] = np.where(wins, zz, fz)
        front_d2[win] = np.where(wins, d2, fd2)
        front_lab[win] = np.where(wins, owner[m], front_lab[win])
    torso, torso_z = _torso_quad(pts, height, width)
    in_torso = torso & ((front_lab < 0) | (torso_z < front_z))
    front_lab[in_torso] = TORSO_SLOT
    label = np.where(near_d2 <= radius * radius, near_lab, TORSO_SLOT)
    covered = front_lab >= 0
    return np.where(covered, front_lab, label), covered


def _piece_fields(a: np.ndarray, b: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Squared pixel distance (M,H,W) from every pixel centre to each segment a[m] -> b[m]
    ((M,3): x, y, depth) and the segment's depth (M,H,W) at the nearest point."""
    f = lambda x: np.asarray(x, np.float32)[:, None, None]  # noqa: E731
    ax, ay, az = f(a[:, 0]), f(a[:, 1]), f(a[:, 2])
    dx, dy, dz = f(b[:, 0] - a[:, 0]), f(b[:, 1] - a[:, 1]), f(b[:, 2] - a[:, 2])
    px = np.arange(width, dtype=np.float32)[None, None, :] + np.float32(0.5) - ax
    py = np.arange(height, dtype=np.float32)[None, :, None] + np.float32(0.5) - ay
    t = np.clip((px * dx + py * dy) / np.maximum(dx * dx + dy * dy, np.float32(1e-12)), 0.0, 1.0)
    d2 = (px - t * dx) ** 2 + (py - t * dy) ** 2
    return d2, az + t * dz


def assign_by_match(kps: np.ndarray, height: int, width: int, radius: float, thickness: float,
                    depth: Optional[np.ndarray] = None, misfit: Optional[np.ndarray] = None,
                    level: float = LEVEL_DEPTH) -> Tuple[np.ndarray, np.ndarray]:
    """The ``match`` rule: (H,W) slot label of every pixel and the (H,W) bool map of pixels
    covered by the query body (as :func:`assign_geometric`: within ``thickness`` of a piece,
    head pieces 1.6x, or inside the torso).

    ``misfit`` (18,): per slot, the RMS pixel distance of its chosen source's aligned
    neighbourhood from the query's. A piece's cost at a pixel is ``sqrt(d^2 + misfit^2)``.
    A covered pixel takes, among the pieces covering it whose depth is within ``level`` of the
    front-most one, the cheapest; the torso slot when the pixel is inside the torso and the
    torso is in front of those pieces by more than ``level`` (or no piece covers it). Other
    pixels take the cheapest piece within ``radius``, else the torso slot.
    """
    if misfit is None:
        raise ValueError("assign_by_match: the match rule needs each slot's misfit")
    misfit = np.asarray(misfit, dtype=np.float64)
    if misfit.shape != (NUM_SLOTS,) or not (misfit >= 0).all():
        raise ValueError(f"assign_by_match: misfit must be ({NUM_SLOTS},) non-negative pixels, got {misfit}")
    z = np.zeros(len(kps)) if depth is None else np.asarray(depth, dtype=np.float64)
    pts = np.concatenate([np.asarray(kps, dtype=np.float64)[:, :2], z[:, None]], 1)
    a, b, owner = skeleton_pieces(pts)
    thick = np.where(owner < _KP["left_shoulder"], HEAD_THICKNESS, 1.0) * thickness
    d2, zz = _piece_fields(a, b, height, width)
    cost2 = d2 + (misfit[owner] ** 2).astype(np.float32)[:, None, None]
    on_piece = d2 <= (thick * thick).astype(np.float32)[:, None, None]
    front = np.where(on_piece, zz, np.inf).min(0)
    level_pieces = on_piece & (zz <= front + np.float32(level))
    on_label = owner[np.where(level_pieces, cost2, np.inf).argmin(0)]
    near = d2 <= np.float32(radius * radius)
    near_label = np.where(near.any(0), owner[np.where(near, cost2, np.inf).argmin(0)], TORSO_SLOT)
    in_torso, torso_z = _torso_quad(pts, height, width)
    covered_by_piece = on_piece.any(0)
    labels = np.where(covered_by_piece, on_label, near_label)
    labels[in_torso & (~covered_by_piece | (torso_z < front - np.float32(level)))] = TORSO_SLOT
    return labels, covered_by_piece | in_torso


#: rule name -> function (kps, height, width, radius, thickness, depth, misfit) -> (labels, covered)
ASSIGNMENT_RULES: Dict[str, Callable[..., Tuple[np.ndarray, np.ndarray]]] = {
    "geometric": assign_geometric,
    "match": assign_by_match,
}
DEFAULT_ASSIGNMENT = "match"
