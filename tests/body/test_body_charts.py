"""DensePose charts of the embedded body: coverage, UV range, IUV <-> surface round trips, and
horizontal-flip symmetry."""
import numpy as np
import pytest
import trimesh

from densepose_ext.body import (
    FLIP_PERMUTATION,
    build_charts,
    compute_uv_symmetry_transforms,
    flip_iuv,
    get_body_model,
)
from densepose_ext.body.symmetry import closest_surface_points

FOLDED_PARTS = [3, 4, 5, 6]  # hands and feet: closed blobs whose 2D MDS chart folds over


@pytest.fixture(scope="session")
def body():
    return get_body_model()


@pytest.fixture(scope="session")
def symmetry64(body):
    """Flip tables at 64x64 (the 256x256 ones take ~40 s; tested in the slow export test)."""
    t = body.template
    return compute_uv_symmetry_transforms(t.vertices, t.faces, body.charts, resolution=64,
                                          return_stats=True)


def _random_surface_points(n_faces: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_faces, n), rng.dirichlet([1.0, 1.0, 1.0], n)


def test_charts_cover_every_face_with_one_part(body):
    ch, t = body.charts, body.template
    assert ch.face_part.shape == (len(t.faces),)
    assert set(np.unique(ch.face_part)) == set(range(1, 25))
    assert np.array_equal(ch.mesh_faces(), t.faces)  # chart faces are the mesh faces
    assert np.array_equal(ch.chart_part[ch.chart_faces], np.repeat(ch.face_part[:, None], 3, 1))
    pairs = ch.chart_part * t.num_vertices + ch.chart_to_vertex
    assert len(np.unique(pairs)) == ch.num_chart_vertices  # one chart vertex per (part, vertex)
    assert body.num_vertices <= ch.num_chart_vertices < 2 * body.num_vertices
    assert set(np.unique(ch.chart_to_vertex)) == set(range(t.num_vertices))


def test_uv_fill_unit_square_per_part(body):
    ch = body.charts
    assert ch.chart_uv.min() >= 0 and ch.chart_uv.max() <= 1
    for part in range(1, 25):
        uv = ch.chart_uv[ch.chart_part == part]
        assert np.allclose(uv.min(0), 0) and np.allclose(uv.max(0), 1), part


def test_mirrored_parts_have_mirrored_charts(body):
    """A left part and its right mirror image get the same (U,V) at mirrored vertices."""
    ch, mirror = body.charts, body.template.mirror
    for part in (3, 7, 11, 15, 19, 23):
        other = FLIP_PERMUTATION[part]
        ids = np.flatnonzero(ch.chart_part == part)
        lookup = {v: i for i, v in zip(np.flatnonzero(ch.chart_part == other),
                                       ch.chart_to_vertex[ch.chart_part == other])}
        twin = np.array([lookup[v] for v in mirror[ch.chart_to_vertex[ids]]])
        assert np.abs(ch.chart_uv[ids] - ch.chart_uv[twin]).max() < 1e-3, part


def test_surface_iuv_surface_round_trip(body):
    face, bary = _random_surface_points(len(body.template.faces), 20000)
    I, U, V = body.surface_to_iuv(face, bary)
    assert np.array_equal(I, body.charts.face_part[face])
    assert U.min() >= 0 and U.max() <= 1 and V.min() >= 0 and V.max() <= 1
    face2, bary2 = body.iuv_to_surface(I, U, V)
    assert np.allclose(bary2.sum(1), 1) and bary2.min() >= 0
    assert np.array_equal(body.charts.face_part[face2], I)
    err = np.linalg.norm(body.surface_points(face, bary) - body.surface_points(face2, bary2),
                         axis=1)
    flat = ~np.isin(I, FOLDED_PARTS)
    # measured: exact (< 1e-9 m) on the 20 unfolded parts; hands/feet mean ~1.4 cm, max ~9 cm
    assert np.percentile(err[flat], 99.9) < 1e-6
    assert err[~flat].mean() < 0.03 and err.max() < 0.2
    np.testing.assert_allclose(body.surface_to_iuv(face2, bary2)[1], U, atol=1e-9)


def test_iuv_outside_the_chart_snaps_to_its_boundary(body):
    I = np.full(5, 7)
    U = np.array([-0.5, 1.5, 0.5, 0.0, 1.0])
    V = np.array([0.5, 0.5, -2.0, 0.0, 1.0])
    face, bary = body.iuv_to_surface(I, U, V)
    assert np.all(body.charts.face_part[face] == 7) and np.allclose(bary.sum(1), 1)
    f_bad, _ = body.iuv_to_surface(np.array([0, 25]), np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    assert np.all(f_bad == -1)
    with pytest.raises(ValueError, match="same number"):
        body.iuv_to_surface(np.array([1, 2]), np.array([0.5]), np.array([0.5, 0.5]))


def test_iuv_to_vertex_returns_chart_vertices(body):
    ch = body.charts
    ids = np.random.default_rng(2).choice(ch.num_chart_vertices, 500, replace=False)
    vert = body.iuv_to_vertex(ch.chart_part[ids], ch.chart_uv[ids, 0], ch.chart_uv[ids, 1])
    # exact UV of a chart vertex gives that vertex unless another shares its UV (a fold)
    same = np.all(np.isclose(ch.chart_uv[ids][:, None], ch.chart_uv[None]), -1).sum(1) == 1
    assert np.array_equal(vert[same], ch.chart_to_vertex[ids][same])
    assert body.iuv_to_vertex(np.array([0]), np.array([0.5]), np.array([0.5]))[0] == -1


def test_build_charts_on_any_labelled_mesh():
    m = trimesh.creation.capsule(height=1.0, radius=0.3, count=[16, 16])
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    c = v[f].mean(1)
    part = 1 + np.minimum(((c[:, 2] - v[:, 2].min()) / np.ptp(v[:, 2]) * 24).astype(int), 23)
    ch = build_charts(v, f, part)
    assert ch.chart_uv.min() >= 0 and ch.chart_uv.max() <= 1
    face, bary = _random_surface_points(len(f), 2000, seed=3)
    I, U, V = ch.surface_to_iuv(face, bary)
    face2, bary2 = ch.iuv_to_surface(I, U, V)
    assert np.array_equal(ch.face_part[face2], I)
    with pytest.raises(ValueError, match="1..24"):
        build_charts(v, f, np.zeros(len(f)))
    with pytest.raises(ValueError, match="one label per face"):
        build_charts(v, f, part[:-1])


def test_closest_surface_points_lie_on_the_surface(body):
    t = body.template
    face, bary = _random_surface_points(len(t.faces), 3000, seed=4)
    pts = body.surface_points(face, bary)
    f2, b2, d = closest_surface_points(t.vertices, t.faces, pts)
    assert d.max() < 1e-9 and np.allclose(body.surface_points(f2, b2), pts, atol=1e-9)


def test_symmetry_tables_have_no_part_mismatch(symmetry64):
    u_t, v_t, stats = symmetry64
    assert u_t.shape == v_t.shape == (24, 64, 64) and u_t.dtype == np.float32
    assert stats["mismatches"] == 0 and stats["max_mirror_distance"] < 1e-6
    assert u_t.min() >= 0 and u_t.max() <= 1 and v_t.min() >= 0 and v_t.max() <= 1


def test_flip_twice_is_identity_and_flip_mirrors_in_3d(body, symmetry64):
    u_t, v_t, _ = symmetry64
    face, bary = _random_surface_points(len(body.template.faces), 20000, seed=5)
    I, U, V = body.surface_to_iuv(face, bary)
    I2, U2, V2 = flip_iuv(I, U, V, u_t, v_t)
    assert np.array_equal(I2, FLIP_PERMUTATION[I])
    I3, U3, V3 = flip_iuv(I2, U2, V2, u_t, v_t)
    assert np.array_equal(I3, I)
    # two look-ups on a 64-cell grid: error within ~2 cells (measured mean ~0.004)
    assert np.abs(U3 - U).mean() < 0.01 and np.abs(V3 - V).mean() < 0.01
    assert np.abs(U3 - U).max() < 3 / 63 and np.abs(V3 - V).max() < 3 / 63
    face2, bary2 = body.iuv_to_surface(I2, U2, V2)
    mirrored = body.surface_points(face, bary) * np.array([-1.0, 1.0, 1.0])
    err = np.linalg.norm(body.surface_points(face2, bary2) - mirrored, axis=1)
    flat = ~np.isin(I, FOLDED_PARTS)
    assert np.median(err[flat]) < 0.01 and err[flat].max() < 0.05


def test_flip_iuv_keeps_background_and_shapes(symmetry64):
    u_t, v_t, _ = symmetry64
    I = np.array([[0, 1], [23, 24]], dtype=np.float32)
    U = np.full((2, 2), 0.5)
    I2, U2, V2 = flip_iuv(I, U, U, u_t, v_t)
    assert I2.shape == U2.shape == V2.shape == (2, 2)
    assert np.array_equal(I2, [[0, 1], [24, 23]]) and U2[0, 0] == 0 and V2[0, 0] == 0
    with pytest.raises(ValueError, match="0..24"):
        flip_iuv(np.array([25]), np.array([0.5]), np.array([0.5]), u_t, v_t)
