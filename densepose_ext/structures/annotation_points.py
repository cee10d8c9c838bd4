"""Where DensePose-COCO-style annotations put their points on a person.

DensePose-COCO annotators were shown each body part region with roughly evenly spread points;
the count per person grows with its visible area (up to about 100) and is split over the parts
in proportion to their areas. The embedded renderer and the pseudo-labeller place their points
the same way, so that both look like the real annotations to a model and to the evaluator.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["MAX_POINTS", "PIXELS_PER_POINT", "num_annotation_points", "sample_annotation_points"]

#: most DensePose points of one person
MAX_POINTS = 100
#: a person gets at most (visible area in pixels) / PIXELS_PER_POINT points
PIXELS_PER_POINT = 16


def num_annotation_points(area_pixels: float) -> int:
    """Points of a person whose visible area is ``area_pixels`` image pixels (>= 1)."""
    return int(min(MAX_POINTS, max(1, int(area_pixels) // PIXELS_PER_POINT)))


def _allocate(areas: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` points over parts proportionally to area (largest remainder)."""
    share = total * areas / areas.sum()
    n = np.floor(share).astype(np.int64)
    rest = total - n.sum()
    if rest > 0:
        n[np.argsort(-(share - n), kind="stable")[:rest]] += 1
    return n


def _grid_sample(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, n: int) -> np.ndarray:
    """Indices of ~n roughly equidistant pixels among (ys, xs): one per cell of a jittered grid.

    The grid spacing makes about n cells; in each cell the pixel nearest its centre is taken,
    and if more cells than n are hit, the fullest cells are kept.
    """
    if n <= 0 or len(ys) == 0:
        return np.zeros(0, np.int64)
    if n >= len(ys):
        return np.arange(len(ys))
    s = np.sqrt(len(ys) / n)
    oy, ox = rng.uniform(0, s, 2)
    cy, cx = np.floor((ys + oy) / s), np.floor((xs + ox) / s)
    cell = (cy * 1_000_003 + cx).astype(np.int64)
    dist = (ys + 0.5 + oy - (cy + 0.5) * s) ** 2 + (xs + 0.5 + ox - (cx + 0.5) * s) ** 2
    order = np.lexsort((dist, cell))
    cells, first, counts = np.unique(cell[order], return_index=True, return_counts=True)
    picks = order[first]
    if len(picks) > n:
        keep = np.lexsort((rng.random(len(picks)), -counts))[:n]
        picks = np.sort(picks[keep])
    return picks


def sample_annotation_points(rng: np.random.Generator, part_map: np.ndarray, mask: np.ndarray,
                             total: int) -> Tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of ``total`` points of one person on ``part_map`` (fine parts) inside
    ``mask``: per part, a count proportional to its area on a jittered grid."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    parts = part_map[ys, xs]
    labels, areas = np.unique(parts, return_counts=True)
    counts = _allocate(areas.astype(np.float64), int(total))
    rows, cols = [], []
    for lab, n in zip(labels, counts):
        sel = np.nonzero(parts == lab)[0]
        pick = sel[_grid_sample(rng, ys[sel], xs[sel], int(n))]
        rows.append(ys[pick])
        cols.append(xs[pick])
    return np.concatenate(rows), np.concatenate(cols)
