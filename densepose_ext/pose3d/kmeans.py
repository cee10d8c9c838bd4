"""K-means (Lloyd's algorithm with k-means++ seeding) on torch tensors, seeded and vectorised.

Distances are computed in row chunks (||x||^2 - 2 x.c + ||c||^2), so 100k points x 5000
centres fit in memory; centre updates are one scatter-add. Runs on the points' device.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Tuple

import torch

__all__ = ["KMeansResult", "assign_to_centres", "kmeans", "kmeans_plusplus"]

logger = logging.getLogger(__name__)

#: distance-matrix elements computed at once
_CHUNK_ELEMENTS = 1 << 22


@dataclass
class KMeansResult:
    """Centres (K, D), assignments (N,), inertia (sum of squared distances) and iterations."""

    centres: torch.Tensor
    assignments: torch.Tensor
    inertia: float
    iterations: int
    converged: bool


def _sq_distances(x: torch.Tensor, centres: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ centres.T) + c_sq[None, :]
    return d.clamp_min_(0.0)


def assign_to_centres(x: torch.Tensor, centres: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(index (N,) of the nearest centre, its squared distance (N,)) for points x (N, D)."""
    n, k = x.shape[0], centres.shape[0]
    idx = torch.empty(n, dtype=torch.long, device=x.device)
    dist = torch.empty(n, dtype=x.dtype, device=x.device)
    c_sq = (centres * centres).sum(1)
    step = max(1, _CHUNK_ELEMENTS // max(k, 1))
    for start in range(0, n, step):
        d = _sq_distances(x[start: start + step], centres, c_sq)
        dist[start: start + step], idx[start: start + step] = d.min(dim=1)
    return idx, dist


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: the first centre uniformly at random, each next one with probability
    proportional to the squared distance to the nearest centre chosen so far. (K, D)."""
    n = x.shape[0]
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = int(torch.randint(n, (1,), generator=generator))
    nearest = ((x - x[chosen[0]]) ** 2).sum(1)
    for j in range(1, k):
        total = float(nearest.sum())
        if not total > 0.0:
            raise ValueError(f"only {j} distinct points among {n}: cannot seed {k} centres")
        # sampling by inverse CDF with one uniform draw (deterministic for a seed on any device)
        u = float(torch.rand(1, generator=generator, dtype=torch.float64)) * total
        pick = int(torch.searchsorted(torch.cumsum(nearest.double(), 0).cpu(),
                                      torch.tensor([u], dtype=torch.float64)))
        pick = min(pick, n - 1)
        chosen[j] = pick
        nearest = torch.minimum(nearest, ((x - x[pick]) ** 2).sum(1))
    return x[chosen.to(x.device)].clone()


def kmeans(x: torch.Tensor, k: int, seed: int = 0, max_iter: int = 100,
           tol: float = 1e-6) -> KMeansResult:
    """Cluster points x (N, D) into k groups.

    k-means++ seeding from ``seed``, then Lloyd iterations until no assignment changes, the
    relative inertia gain falls below ``tol``, or ``max_iter``. A cluster left empty takes the
    point currently farthest from its centre, so every centre stays in use. Same input and
    seed -> same result.
    """
    if x.dim() != 2:
        raise ValueError(f"k-means expects points (N, D), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= K <= number of points, got K={k}, N={n}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("k-means input has non-finite values")
    generator = torch.Generator().manual_seed(int(seed))
    centres = kmeans_plusplus(x, k, generator)
    assignments, dist = assign_to_centres(x, centres)
    inertia = float(dist.sum())
    converged = False
    it = 0
    dims = x.shape[1]
    for it in range(1, max_iter + 1):
        sums = torch.zeros(k * dims, dtype=x.dtype, device=x.device)
        flat = (assignments[:, None] * dims + torch.arange(dims, device=x.device)).reshape(-1)
        sums.index_add_(0, flat, x.reshape(-1))
        counts = torch.bincount(assignments, minlength=k)
        empty = torch.nonzero(counts == 0).flatten()
        centres = sums.view(k, dims) / counts.clamp_min(1)[:, None].to(x.dtype)
        if len(empty):  # re-seed empty clusters with the worst-fitted points
            far = torch.argsort(dist, descending=True, stable=True)[: len(empty)]
            centres[empty] = x[far]
        new_assignments, dist = assign_to_centres(x, centres)
        new_inertia = float(dist.sum())
        changed = int((new_assignments != assignments).sum())
        gain = (inertia - new_inertia) / max(inertia, 1e-300)
        assignments, inertia = new_assignments, new_inertia
        if changed == 0 or (len(empty) == 0 and 0 <= gain < tol):
            converged = True
            break
    if not converged:
        logger.warning("k-means (K=%d, N=%d) stopped after %d iterations without converging",
                       k, n, max_iter)
    return KMeansResult(centres=centres, assignments=assignments, inertia=inertia,
                        iterations=it, converged=converged)
