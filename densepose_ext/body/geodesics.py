"""Geodesic distances on a closed triangle mesh (heat method + metric repair).

Method, per source vertex: the heat method (Crane et al. 2013) as implemented by potpourri3d
(one prefactored solve per source). Two documented repair steps turn these approximate
distances into a true metric:

1. *Euclidean lower bound*: the geodesic between two surface points is never shorter than the
   straight segment between them, so ``D = max(D_heat, |p_i - p_j|)``. The heat method
   underestimates short distances by up to ~15%; this removes most of that bias.
2. *Metric closure*: ``D <- shortest paths over the complete graph weighted by D`` (a blocked
   Floyd-Warshall in torch). Afterwards the triangle inequality holds up to float32 rounding
   (``D[a,c] <= D[a,b] + D[b,c] + 1e-5 * max(D)``).

On a unit icosphere (2562 vertices) this gives ~1.3% mean / ~2% max relative error against the
great-circle distance, versus ~6.7% mean / ~23% max for Dijkstra on mesh edges (which always
overestimates); see ``tools/benchmark_geodesics.py``.
"""
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components, dijkstra

__all__ = [
    "pairwise_geodesics",
    "geodesics_from",
    "edge_dijkstra",
    "metric_closure_",
    "nearest_vertex",
    "surface_point_distances",
    "TRIANGLE_TOLERANCE",
]

# Relative slack (times the largest finite distance) within which the triangle inequality holds.
TRIANGLE_TOLERANCE = 1e-5


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    v = np.ascontiguousarray(vertices, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (N,3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"faces must be (F,3) and non-empty, got {f.shape}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"face indices out of range [0, {len(v)})")
    return v, f


def _edge_graph(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """Symmetric sparse graph of mesh edges weighted by Euclidean length."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    w = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1)
    n = len(vertices)
    g = sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n))
    return (g + g.T).tocsr()


def _components(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Connected-component label per vertex (isolated vertices get their own label)."""
    return connected_components(_edge_graph(vertices, faces), directed=False)[1]


def _heat_rows(
    vertices: np.ndarray, faces: np.ndarray, sources: np.ndarray, t_coef: float
) -> np.ndarray:
    """Raw heat-method distances (S,N) float64; +inf between different components."""
    import potpourri3d as pp3d  # optional: only the heat-method geodesics need it

    n = len(vertices)
    labels = _components(vertices, faces)
    out = np.full((len(sources), n), np.inf)
    for comp in np.unique(labels[sources]):
        verts_c = np.flatnonzero(labels == comp)
        face_mask = labels[faces[:, 0]] == comp
        rows = np.flatnonzero(labels[sources] == comp)
        if not face_mask.any():  # isolated vertex: only its zero self-distance is defined
            out[rows, sources[rows]] = 0.0
            continue
        remap = np.full(n, -1, dtype=np.int64)
        remap[verts_c] = np.arange(len(verts_c))
        solver = pp3d.MeshHeatMethodDistanceSolver(
            vertices[verts_c], remap[faces[face_mask]], t_coef=t_coef
        )
        local = remap[sources[rows]]
        block = np.stack([solver.compute_distance(int(s)) for s in local])
        out[np.ix_(rows, verts_c)] = block
    return out


def _euclidean_rows(vertices: np.ndarray, sources: np.ndarray) -> np.ndarray:
    diff = vertices[sources][:, None, :] - vertices[None, :, :]
    return np.sqrt(np.einsum("snk,snk->sn", diff, diff))


def geodesics_from(
    vertices: np.ndarray,
    faces: np.ndarray,
    sources: Sequence[int],
    *,
    t_coef: float = 1.0,
) -> np.ndarray:
    """Distances (S,N) float32 from each source vertex to every vertex (heat method).

    Applies the Euclidean lower bound but not the metric closure (which needs all rows), so
    rows can differ slightly from :func:`pairwise_geodesics`. +inf across components.
    """
    v, f = _check_mesh(vertices, faces)
    src = np.asarray(sources, dtype=np.int64).reshape(-1)
    if len(src) and (src.min() < 0 or src.max() >= len(v)):
        raise ValueError(f"source indices out of range [0, {len(v)})")
    if len(src) == 0:
        return np.zeros((0, len(v)), dtype=np.float32)
    d = np.maximum(_heat_rows(v, f, src, t_coef), _euclidean_rows(v, src))
    d[np.arange(len(src)), src] = 0.0
    return d.astype(np.float32)


def metric_closure_(dist: torch.Tensor, block: int = 64, row_chunk: int = 256) -> torch.Tensor:
    """In-place all-pairs shortest paths over the complete graph weighted by ``dist``.

    Blocked Floyd-Warshall: pivots are processed ``block`` at a time, first on their own rows,
    then on cache-sized row chunks. Using already-relaxed pivot rows only shortens values to
    lengths of real paths, so the result equals the classical algorithm's.
    """
    n = dist.shape[0]
    for k0 in range(0, n, block):
        k1 = min(k0 + block, n)
        panel = dist[k0:k1]
        for k in range(k0, k1):
            torch.minimum(panel, panel[:, k : k + 1] + dist[k : k + 1], out=panel)
        for r0 in range(0, n, row_chunk):
            sub = dist[r0 : r0 + row_chunk]
            for k in range(k0, k1):
                torch.minimum(sub, sub[:, k : k + 1] + dist[k : k + 1], out=sub)
    return dist


def pairwise_geodesics(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    t_coef: float = 1.0,
    enforce_metric: bool = True,
) -> np.ndarray:
    """All-pairs geodesic distances (N,N) float32: exactly symmetric, zero diagonal.

    Heat method per source, symmetrised by averaging ``D`` and ``D.T``, bounded below by the
    Euclidean distance and, if ``enforce_metric``, closed under shortest paths so the triangle
    inequality holds (see module docstring). +inf between disconnected components.
    """
    v, f = _check_mesh(vertices, faces)
    n = len(v)
    d = _heat_rows(v, f, np.arange(n), t_coef)
    d = 0.5 * (d + d.T)
    d = np.maximum(d, _euclidean_rows(v, np.arange(n)))
    np.fill_diagonal(d, 0.0)
    t = torch.from_numpy(d.astype(np.float32))
    if enforce_metric:
        metric_closure_(t)
        t = torch.minimum(t, t.T)  # guard against last-bit asymmetry
        t.fill_diagonal_(0.0)
    return t.numpy()


def edge_dijkstra(
    vertices: np.ndarray, faces: np.ndarray, sources: Optional[Sequence[int]] = None
) -> np.ndarray:
    """Shortest paths along mesh edges (S,N) float32: a baseline that overestimates geodesics."""
    v, f = _check_mesh(vertices, faces)
    idx = None if sources is None else np.asarray(sources, dtype=np.int64)
    return dijkstra(_edge_graph(v, f), directed=False, indices=idx).astype(np.float32)


def nearest_vertex(faces: np.ndarray, face_idx: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Mesh vertex (P,) closest to surface points given as (face, barycentric): the corner with
    the largest barycentric weight."""
    faces = np.asarray(faces)
    corner = np.argmax(np.asarray(bary), axis=1)
    return faces[np.asarray(face_idx, dtype=np.int64), corner].astype(np.int64)


def surface_point_distances(
    dist: np.ndarray,
    faces: np.ndarray,
    face_a: np.ndarray,
    bary_a: np.ndarray,
    face_b: np.ndarray,
    bary_b: np.ndarray,
) -> np.ndarray:
    """Geodesic distance (P,) between surface points a and b, each snapped to its nearest
    mesh vertex and looked up in the (N,N) matrix ``dist`` (as DensePose's evaluation does)."""
    va = nearest_vertex(faces, face_a, bary_a)
    vb = nearest_vertex(faces, face_b, bary_b)
    return np.asarray(dist)[va, vb]
