"""Geodesic distances: metric properties, accuracy on a sphere, the Dijkstra baseline."""
import numpy as np
import pytest
import torch
import trimesh
from scipy.sparse.csgraph import floyd_warshall

from densepose_ext.body.geodesics import (
    TRIANGLE_TOLERANCE,
    edge_dijkstra,
    geodesics_from,
    metric_closure_,
    nearest_vertex,
    pairwise_geodesics,
    surface_point_distances,
)


def _unit_sphere(subdivisions: int = 3):
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(m.vertices, dtype=np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, np.asarray(m.faces, dtype=np.int64)


@pytest.fixture(scope="module")
def sphere():
    v, f = _unit_sphere()
    true = np.arccos(np.clip(v @ v.T, -1.0, 1.0))
    return v, f, pairwise_geodesics(v, f), true


def _triangle_violation(dist: np.ndarray, n_triples: int = 50000, seed: int = 0) -> float:
    a, b, c = np.random.default_rng(seed).integers(0, len(dist), (3, n_triples))
    return float(np.max(dist[a, c] - dist[a, b] - dist[b, c]))


def test_pairwise_is_symmetric_with_zero_diagonal(sphere):
    v, _, dist, _ = sphere
    assert dist.shape == (len(v), len(v)) and dist.dtype == np.float32
    assert np.array_equal(dist, dist.T)
    assert np.all(np.diag(dist) == 0)
    assert np.all(dist[~np.eye(len(v), dtype=bool)] > 0)


def test_triangle_inequality_holds(sphere):
    _, _, dist, _ = sphere
    assert _triangle_violation(dist) <= TRIANGLE_TOLERANCE * float(dist.max())


def test_raw_heat_method_violates_triangle_inequality_that_closure_repairs(sphere):
    v, f, _, _ = sphere
    raw = pairwise_geodesics(v, f, enforce_metric=False)
    assert np.array_equal(raw, raw.T)
    assert _triangle_violation(raw) > 10 * TRIANGLE_TOLERANCE * float(raw.max())


def test_sphere_accuracy_and_dijkstra_overestimates(sphere):
    v, f, dist, true = sphere
    far = true > 0.1
    rel = np.abs(dist - true)[far] / true[far]
    # 642-vertex icosphere: measured mean 1.8%, max 2.6% relative error
    assert rel.mean() < 0.03 and rel.max() < 0.05
    dij = edge_dijkstra(v, f).astype(np.float64)
    # edge paths are never shorter than geodesics on the mesh; the mesh's chords are at most
    # ~3 mm shorter than the sphere's arcs
    assert np.all(dij >= true - 0.005)
    rel_dij = (dij - true)[far] / true[far]
    assert rel_dij.mean() > 2 * rel.mean()


def test_geodesics_from_matches_pairwise_rows(sphere):
    v, f, dist, true = sphere
    src = np.array([0, 17, 300])
    rows = geodesics_from(v, f, src)
    assert rows.shape == (3, len(v)) and rows.dtype == np.float32
    assert np.all(rows[np.arange(3), src] == 0)
    # rows skip the symmetrisation and the metric closure: they differ by a few percent
    assert np.abs(rows - dist[src]).max() < 0.06
    assert np.abs(rows - true[src]).mean() < 0.03


def test_disconnected_components_are_infinitely_far():
    v, f = _unit_sphere(1)
    v2 = np.concatenate([v, v + [3.0, 0, 0]])
    f2 = np.concatenate([f, f + len(v)])
    dist = pairwise_geodesics(v2, f2)
    n = len(v)
    assert np.all(np.isinf(dist[:n, n:])) and np.all(np.isfinite(dist[:n, :n]))
    assert np.allclose(dist[:n, :n], dist[n:, n:], atol=1e-5)


def test_metric_closure_equals_floyd_warshall():
    rng = np.random.default_rng(1)
    w = rng.uniform(0.1, 2.0, (70, 70)).astype(np.float32)
    w = np.minimum(w, w.T)
    np.fill_diagonal(w, 0)
    got = metric_closure_(torch.from_numpy(w.copy()), block=16, row_chunk=24).numpy()
    assert np.allclose(got, floyd_warshall(w.astype(np.float64)), atol=1e-6)


def test_surface_point_distance_uses_nearest_vertices(sphere):
    v, f, dist, _ = sphere
    face = np.array([0, 5, 9])
    bary = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])
    nv = nearest_vertex(f, face, bary)
    assert np.array_equal(nv, [f[0, 0], f[5, 2], f[9, 1]])
    got = surface_point_distances(dist, f, face, bary, face[::-1], bary[::-1])
    assert np.allclose(got, dist[nv, nv[::-1]])


def test_bad_mesh_input_raises():
    v, f = _unit_sphere(1)
    with pytest.raises(ValueError, match="face indices"):
        pairwise_geodesics(v, f + 1000)
    with pytest.raises(ValueError, match=r"\(N,3\)"):
        geodesics_from(v[:, :2], f, [0])
    with pytest.raises(ValueError, match="source"):
        geodesics_from(v, f, [len(v)])


def test_body_geodesics_are_a_metric():
    from densepose_ext.body import get_body_model

    body = get_body_model()
    dist = body.geodesics
    assert dist.shape == (body.num_vertices,) * 2
    assert np.array_equal(dist, dist.T) and np.all(np.diag(dist) == 0)
    assert np.isfinite(dist).all()  # the body surface is connected
    assert _triangle_violation(dist) <= TRIANGLE_TOLERANCE * float(dist.max())
    # hand to hand along the arms and shoulders is longer than the arm span (~1.6 m)
    v = body.vertices
    left, right = np.argmax(v[:, 0]), np.argmin(v[:, 0])
    assert dist[left, right] > np.ptp(v[:, 0])
