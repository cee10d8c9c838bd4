"""Horizontal-flip symmetry of DensePose charts: UV transform tables and ``flip_iuv``.

Flipping an image mirrors the person (x -> -x in body coordinates): a point of part I with
chart coordinates (U,V) becomes a point of the mirrored part ``FLIP_PERMUTATION[I]``
with new (U,V). The UV part of that map is tabulated per (old) part on a 256x256 grid, in the
layout of DensePose's ``UV_symmetry_transforms.mat``: ``U_t[i][v_loc, u_loc]`` with
``u_loc = int(U * 255)``, ``v_loc = int(V * 255)`` and ``i = I - 1``.
"""
import logging
from typing import Dict, Optional, Tuple, Union

import numpy as np
from scipy.spatial import cKDTree

from .charts import NUM_PARTS, Charts
from .parts import FLIP_PERMUTATION

logger = logging.getLogger(__name__)

__all__ = [
    "closest_surface_points",
    "compute_uv_symmetry_transforms",
    "flip_iuv",
]


def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                          ) -> np.ndarray:
    """Barycentrics (...,3) of the point of triangle (a,b,c) closest to p; all (...,3).

    Voronoi-region test of the triangle's corners, edges and interior (Ericson, Real-Time
    Collision Detection, 5.1.5), evaluated for all regions at once and selected by priority.
    """
    def dot(x, y):
        return np.einsum("...d,...d->...", x, y)

    ab, ac = b - a, c - a
    d1, d2 = dot(ab, p - a), dot(ac, p - a)
    d3, d4 = dot(ab, p - b), dot(ac, p - b)
    d5, d6 = dot(ab, p - c), dot(ac, p - c)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def safe_div(x, y):
        return x / np.where(np.abs(y) > 1e-30, y, 1e-30)

    one, zero = np.ones_like(d1), np.zeros_like(d1)
    den = va + vb + vc
    v_in, w_in = safe_div(vb, den), safe_div(vc, den)
    out = np.stack([1.0 - v_in - w_in, v_in, w_in], axis=-1)
    t_bc = np.clip(safe_div(d4 - d3, (d4 - d3) + (d5 - d6)), 0, 1)
    t_ac = np.clip(safe_div(d2, d2 - d6), 0, 1)
    t_ab = np.clip(safe_div(d1, d1 - d3), 0, 1)
    regions = [  # lowest priority first; later entries overwrite earlier ones
        (((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)), (zero, 1 - t_bc, t_bc)),
        (((vb <= 0) & (d2 >= 0) & (d6 <= 0)), (1 - t_ac, zero, t_ac)),
        (((d6 >= 0) & (d5 <= d6)), (zero, zero, one)),
        (((vc <= 0) & (d1 >= 0) & (d3 <= 0)), (1 - t_ab, t_ab, zero)),
        (((d3 >= 0) & (d4 <= d3)), (zero, one, zero)),
        (((d1 <= 0) & (d2 <= 0)), (one, zero, zero)),
    ]
    for mask, weights in regions:
        out = np.where(mask[..., None], np.stack(weights, axis=-1), out)
    return out


def closest_surface_points(
    vertices: np.ndarray,
    faces: np.ndarray,
    points: np.ndarray,
    face_subset: Optional[np.ndarray] = None,
    k: int = 8,
    tree: Optional[cKDTree] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest surface point of each query point: (face index (P,), barycentrics (P,3),
    distance (P,)). Exact among the ``k`` faces (of ``face_subset`` if given) whose centroids
    are nearest, which is exact in practice for meshes of evenly sized triangles."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    subset = np.arange(len(faces)) if face_subset is None else np.asarray(face_subset)
    if tree is None:
        tree = cKDTree(vertices[faces[subset]].mean(axis=1))
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    kk = min(k, len(subset))
    _, cand = tree.query(points, k=kk)
    cand = subset[cand.reshape(len(points), kk)]
    tri = vertices[faces[cand]]  # (P,k,3,3)
    q = points[:, None, :]
    bary = _closest_on_triangles(q, tri[:, :, 0], tri[:, :, 1], tri[:, :, 2])
    closest = np.einsum("pkc,pkcd->pkd", bary, tri)
    dist = np.linalg.norm(closest - q, axis=-1)
    best = np.argmin(dist, axis=1)
    rows = np.arange(len(points))
    return cand[rows, best], bary[rows, best], dist[rows, best]


def _grid_coords(resolution: int) -> np.ndarray:
    """Chart coordinate sampled for each grid cell: the cell centre, clipped to [0,1]."""
    return np.minimum((np.arange(resolution) + 0.5) / (resolution - 1), 1.0)


def compute_uv_symmetry_transforms(
    vertices: np.ndarray,
    faces: np.ndarray,
    charts: Charts,
    resolution: int = 256,
    return_stats: bool = False,
    mismatch_tolerance: float = 1e-5,
) -> Union[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, Dict[str, float]]]:
    """UV flip tables ``(U_transforms, V_transforms)``, each (24, R, R) float32.

    For each part and grid cell: the cell's chart point -> surface point -> its mirror image
    (x -> -x) -> nearest surface point of the mirrored part -> that point's (U,V). A cell
    counts as a *mismatch* when some other part's surface is closer to the mirrored point than
    the mirrored part's by more than ``mismatch_tolerance`` (m): a sign that the part labels
    are not mirror-symmetric. With ``return_stats`` the counts come back as a dict.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    grid = _grid_coords(resolution)
    uu, vv = np.meshgrid(grid, grid)  # row index = v_loc, column index = u_loc
    uu, vv = uu.reshape(-1), vv.reshape(-1)
    u_t = np.zeros((NUM_PARTS, resolution, resolution), dtype=np.float32)
    v_t = np.zeros_like(u_t)
    all_tree = cKDTree(vertices[faces].mean(axis=1))
    mismatches, max_dist = 0, 0.0
    for part in range(1, NUM_PARTS + 1):
        target = int(FLIP_PERMUTATION[part])
        target_faces = np.flatnonzero(charts.face_part == target)
        if not np.any(charts.face_part == part) or len(target_faces) == 0:
            continue
        face_idx, bary = charts.iuv_to_surface(np.full(len(uu), part), uu, vv)
        pts = charts.surface_points(face_idx, bary, vertices) * np.array([-1.0, 1.0, 1.0])
        f2, b2, d_target = closest_surface_points(vertices, faces, pts, target_faces)
        _, _, d_any = closest_surface_points(vertices, faces, pts, tree=all_tree)
        mismatches += int(np.sum(d_any < d_target - mismatch_tolerance))
        max_dist = max(max_dist, float(d_target.max()))
        _, u2, v2 = charts.surface_to_iuv(f2, b2)
        u_t[part - 1] = u2.reshape(resolution, resolution)
        v_t[part - 1] = v2.reshape(resolution, resolution)
    logger.info("UV symmetry: %d of %d grid cells mirror into another part",
                mismatches, NUM_PARTS * resolution * resolution)
    if return_stats:
        stats = {"mismatches": mismatches, "cells": NUM_PARTS * resolution * resolution,
                 "max_mirror_distance": max_dist}
        return u_t, v_t, stats
    return u_t, v_t


def flip_iuv(I: np.ndarray, U: np.ndarray, V: np.ndarray, U_transforms: np.ndarray,
             V_transforms: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(I, U, V) of the mirror-image points, elementwise for arrays of any shape.

    ``U_transforms``/``V_transforms`` are (24, R, R) tables (see module docstring); background
    (I == 0) stays background with U = V = 0.
    """
    I_arr = np.asarray(I)
    i = (np.rint(I_arr) if I_arr.dtype.kind == "f" else I_arr).astype(np.int64)
    if i.size and (i.min() < 0 or i.max() > NUM_PARTS):
        raise ValueError(f"part labels must lie in 0..{NUM_PARTS}, got [{i.min()}, {i.max()}]")
    res = U_transforms.shape[-1]
    u_loc = np.clip((np.asarray(U, np.float64) * (res - 1)).astype(np.int64), 0, res - 1)
    v_loc = np.clip((np.asarray(V, np.float64) * (res - 1)).astype(np.int64), 0, res - 1)
    cell = np.maximum(i - 1, 0)
    fg = i > 0
    u_new = np.where(fg, U_transforms[cell, v_loc, u_loc], 0.0)
    v_new = np.where(fg, V_transforms[cell, v_loc, u_loc], 0.0)
    return FLIP_PERMUTATION[i], u_new, v_new
