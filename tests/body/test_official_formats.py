"""Official DensePose data files: write -> read round trips, the evaluator's condensed index,
clear errors on malformed files, and a body model built from the files."""
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
import trimesh
from scipy.spatial.distance import squareform

from densepose_ext.body import BodyModel, build_charts
from densepose_ext.body import official_formats as of


def _official_condensed_index(i: int, j: int, n: int) -> int:
    """The index arithmetic of DensePose's evaluator (getDistancesUV), for i != j."""
    if j > i:
        i, j = j, i
    i, j = n - i - 1, n - j - 1
    k = (n * (n - 1) / 2) - (n - i) * ((n - i) - 1) / 2 + j - i - 1
    return int((n * n - n) / 2 - k - 1)


def test_condensed_index_is_the_evaluators_not_squareforms():
    n = 9
    full = np.arange(n * n, dtype=np.float64).reshape(n, n)
    full = full + full.T
    np.fill_diagonal(full, 0)
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    k = of.condensed_index(i, j, n)
    assert all(_official_condensed_index(a, b, n) == c for a, b, c in zip(i, j, k))
    cond = of.square_to_condensed(full)
    assert cond.shape == (n * (n - 1) // 2,) and np.array_equal(cond[k], full[i, j])
    assert np.array_equal(of.condensed_to_square(cond, n), full)
    # scipy's squareform orders pairs differently: its vector would give wrong distances
    assert not np.array_equal(squareform(full)[k], full[i, j])


@pytest.fixture(scope="module")
def small_body():
    """A 162-vertex sphere with 24 latitude-band parts and random flip tables."""
    m = trimesh.creation.icosphere(subdivisions=2)
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    band = np.arccos(np.clip(v[f].mean(1)[:, 1] / np.linalg.norm(v[f].mean(1), axis=1), -1, 1))
    part = 1 + np.minimum((band / np.pi * 24).astype(int), 23)
    charts = build_charts(v, f, part)
    template = SimpleNamespace(vertices=v, faces=f, num_vertices=len(v))
    body = BodyModel(charts, template=template)
    rng = np.random.default_rng(0)
    body._uv_symmetry = (rng.random((24, 256, 256), dtype=np.float32),
                         rng.random((24, 256, 256), dtype=np.float32))
    return body


def test_every_official_file_round_trips(small_body, tmp_path):
    body, ch = small_body, small_body.charts
    paths = body.export(tmp_path)
    assert set(paths) == {of.SMPL_SUBDIV, of.SUBDIV_TRANSFORM, of.PDIST_MATRIX, of.UV_SYMMETRY}

    raw = scipy.io.loadmat(str(paths[of.SMPL_SUBDIV]))  # exactly what the evaluator does
    uv = np.array([raw["U_subdiv"], raw["V_subdiv"]]).squeeze()
    assert uv.shape == (2, ch.num_chart_vertices)
    assert raw["Part_ID_subdiv"].shape == (ch.num_chart_vertices, 1)

    subdiv = of.read_smpl_subdiv(paths[of.SMPL_SUBDIV])
    assert np.array_equal(subdiv["part"], ch.chart_part)
    assert np.array_equal(subdiv["uv"], ch.chart_uv)
    assert np.array_equal(subdiv["faces"], ch.chart_faces)
    assert np.array_equal(subdiv["vertex"], body.vertices[ch.chart_to_vertex])

    transform = of.read_subdiv_transform(paths[of.SUBDIV_TRANSFORM], ch.num_chart_vertices)
    assert np.array_equal(transform, ch.chart_to_vertex)
    assert scipy.io.loadmat(str(paths[of.SUBDIV_TRANSFORM]))["index"].min() == 1  # 1-based

    cond, n = of.read_pdist_matrix(paths[of.PDIST_MATRIX])
    with open(paths[of.PDIST_MATRIX], "rb") as fh:
        assert pickle.load(fh)["Pdist_matrix"].shape == (n * (n - 1) // 2, 1)
    assert n == body.num_vertices
    assert np.array_equal(of.condensed_to_square(cond, n), body.geodesics)

    u_t, v_t = of.read_uv_symmetry(paths[of.UV_SYMMETRY])
    raw = scipy.io.loadmat(str(paths[of.UV_SYMMETRY]))
    assert raw["U_transforms"].shape == (1, 24) and raw["U_transforms"][0, 3].shape == (256, 256)
    assert np.array_equal(u_t, body.uv_symmetry[0]) and np.array_equal(v_t, body.uv_symmetry[1])


def test_body_from_official_files_answers_like_the_original(small_body, tmp_path):
    small_body.export(tmp_path)
    loaded = BodyModel.from_official_files(tmp_path)
    assert loaded.template is None and loaded.num_vertices == small_body.num_vertices
    rng = np.random.default_rng(1)
    face, bary = rng.integers(0, len(small_body.faces), 300), rng.dirichlet([1, 1, 1], 300)
    I, U, V = small_body.surface_to_iuv(face, bary)
    va, vb = small_body.iuv_to_vertex(I, U, V), loaded.iuv_to_vertex(I, U, V)
    assert np.array_equal(va, vb)
    perm = rng.permutation(300)
    assert np.array_equal(loaded.geodesic_distance(vb, vb[perm]),
                          small_body.geodesic_distance(va, va[perm]))
    assert np.array_equal(loaded.iuv_to_surface(I, U, V)[0], small_body.iuv_to_surface(I, U, V)[0])
    files = of.DensePoseDataFiles.load(tmp_path, require_symmetry=True)
    assert np.array_equal(files.u_transforms, small_body.uv_symmetry[0])


def test_malformed_files_raise_one_clear_error(small_body, tmp_path):
    paths = small_body.export(tmp_path)
    subdiv = paths[of.SMPL_SUBDIV]
    data = scipy.io.loadmat(str(subdiv))
    del data["U_subdiv"]
    scipy.io.savemat(str(subdiv), {k: v for k, v in data.items() if not k.startswith("__")})
    with pytest.raises(of.OfficialFileError, match=r"SMPL_subdiv\.mat, key 'U_subdiv': missing"):
        of.read_smpl_subdiv(subdiv)
    with pytest.raises(of.OfficialFileError, match="SMPL_subdiv.mat"):
        BodyModel.from_official_files(tmp_path)

    transform = paths[of.SUBDIV_TRANSFORM]
    scipy.io.savemat(str(transform), {"index": np.ones((5, 2))})
    with pytest.raises(of.OfficialFileError, match=r"SMPL_SUBDIV_TRANSFORM\.mat, key 'index'"):
        of.read_subdiv_transform(transform)
    scipy.io.savemat(str(transform), {"index": np.ones((7, 1))})
    with pytest.raises(of.OfficialFileError, match="expected 10 entries"):
        of.read_subdiv_transform(transform, 10)

    pdist = paths[of.PDIST_MATRIX]
    with open(pdist, "wb") as fh:
        pickle.dump({"Pdist_matrix": np.zeros((7, 1))}, fh)
    with pytest.raises(of.OfficialFileError, match=r"Pdist_matrix\.pkl, key 'Pdist_matrix'"):
        of.read_pdist_matrix(pdist)
    pdist.write_bytes(b"not a pickle")
    with pytest.raises(of.OfficialFileError, match="Pdist_matrix.pkl: not a readable pickle"):
        of.read_pdist_matrix(pdist)

    sym = paths[of.UV_SYMMETRY]
    scipy.io.savemat(str(sym), {"U_transforms": np.zeros((256, 256)), "V_transforms": 0})
    with pytest.raises(of.OfficialFileError, match="key 'U_transforms'"):
        of.read_uv_symmetry(sym)
    sym.write_bytes(b"garbage")
    with pytest.raises(of.OfficialFileError, match="UV_symmetry_transforms.mat: not a readable"):
        of.read_uv_symmetry(sym)
    with pytest.raises(of.OfficialFileError, match="file not found"):
        of.read_uv_symmetry(tmp_path / "missing.mat")


def test_transform_index_beyond_pdist_vertices_is_rejected(small_body, tmp_path):
    paths = small_body.export(tmp_path)
    idx = small_body.charts.chart_to_vertex.copy()
    idx[0] = small_body.num_vertices + 3
    of.write_subdiv_transform(paths[of.SUBDIV_TRANSFORM], idx)
    with pytest.raises(of.OfficialFileError, match="exceeds"):
        of.DensePoseDataFiles.load(tmp_path)


def test_info_command_prints_counts(capsys):
    from densepose_ext.body.__main__ import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert '"chart_vertices"' in out and '"vertices"' in out


def test_embedded_body_export_round_trip(tmp_path):
    """Full body: geodesics (~50 s) and 256x256 flip tables (~40 s) on first use, then cached."""
    from densepose_ext.body import get_body_model
    from densepose_ext.body.__main__ import main

    body = get_body_model()
    assert main(["export", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "body_model.pkl").is_file()
    files = of.DensePoseDataFiles.load(tmp_path, require_symmetry=True)
    raw = scipy.io.loadmat(str(tmp_path / of.SMPL_SUBDIV))
    assert raw["Part_ID_subdiv"].dtype == np.uint8
    assert scipy.io.loadmat(str(tmp_path / of.SUBDIV_TRANSFORM))["index"].dtype == np.int32
    ch = body.charts
    assert np.array_equal(files.chart_part, ch.chart_part)
    assert np.array_equal(files.chart_uv, ch.chart_uv)
    assert np.array_equal(files.chart_to_vertex, ch.chart_to_vertex)
    assert np.array_equal(of.condensed_to_square(files.pdist, files.num_vertices), body.geodesics)
    assert np.array_equal(files.u_transforms, body.uv_symmetry[0])
    assert np.array_equal(files.v_transforms, body.uv_symmetry[1])
    loaded = BodyModel.from_official_files(tmp_path)
    a, b = np.arange(0, 4000, 7), np.arange(5, 4005, 7)
    assert np.array_equal(loaded.geodesic_distance(a, b), body.geodesic_distance(a, b))


def test_exported_files_have_official_dtypes_and_index_like_the_evaluator(small_body, tmp_path):
    """Read the files the way DensePose's evaluator does (plain loadmat / pickle, no casts) and
    run its lookups: part ids and indices must be integers usable as numpy indices."""
    body = small_body
    body.export(tmp_path)
    subdiv = scipy.io.loadmat(str(tmp_path / of.SMPL_SUBDIV))
    transform = scipy.io.loadmat(str(tmp_path / of.SUBDIV_TRANSFORM))["index"]
    with open(tmp_path / of.PDIST_MATRIX, "rb") as f:
        pdist = pickle.load(f, encoding="latin1")["Pdist_matrix"]
    m = body.num_chart_vertices
    assert subdiv["Part_ID_subdiv"].dtype == np.uint8 and subdiv["Part_ID_subdiv"].shape == (m, 1)
    for key in ("U_subdiv", "V_subdiv"):
        assert subdiv[key].dtype == np.float64 and subdiv[key].shape == (m, 1)
    assert subdiv["faces"].dtype == np.int32 and subdiv["faces"].min() == 1
    assert transform.dtype == np.int32 and transform.shape == (m, 1)
    assert pdist.dtype == np.float32 and pdist.ndim == 2 and pdist.shape[1] == 1
    sym = scipy.io.loadmat(str(tmp_path / of.UV_SYMMETRY))
    assert sym["U_transforms"].shape == (1, 24) and sym["U_transforms"][0, 3].shape == (256, 256)

    # the evaluator's closest-vertex search (per part, brute force) and index arithmetic
    from scipy.spatial.distance import cdist
    from densepose_ext.evaluation.gps import COARSE_REGION_KAPPA, COARSE_REGION_OF_PART

    part_ids = subdiv["Part_ID_subdiv"].squeeze()
    uv_all = np.array([subdiv["U_subdiv"], subdiv["V_subdiv"]]).squeeze()
    index = transform.squeeze()
    rng = np.random.default_rng(3)
    I = rng.integers(1, 25, 200)
    I = I[np.isin(I, part_ids)]
    U, V = rng.random(len(I)), rng.random(len(I))
    closest = np.zeros(len(I), np.int64)  # 1-based chart vertex
    for p in np.unique(I):
        members = np.flatnonzero(part_ids == p)
        d = cdist(uv_all[:, members].T, np.stack([U[I == p], V[I == p]], 1))
        closest[I == p] = members[np.argmin(d, axis=0)] + 1
    geodesic_vertex = index[closest - 1]  # 1-based, as the evaluator keeps them
    n = len(body.geodesics)
    other = np.roll(geodesic_vertex, 1)
    official = np.array([0.0 if a == b else pdist[_official_condensed_index(a - 1, b - 1, n)][0]
                         for a, b in zip(geodesic_vertex, other)])
    ours = body.geodesic_distance(body.iuv_to_vertex(I, U, V),
                                  np.roll(body.iuv_to_vertex(I, U, V), 1))
    np.testing.assert_allclose(official, ours, rtol=1e-6)
    # Mean_Distances[CoarseParts[Part_ids[...]]] needs integer part ids
    kappa = COARSE_REGION_KAPPA[COARSE_REGION_OF_PART[part_ids[closest - 1]]]
    assert np.array_equal(kappa, COARSE_REGION_KAPPA[COARSE_REGION_OF_PART[I]])


def test_writers_reject_non_integer_ids(tmp_path):
    with pytest.raises(ValueError, match="Part_ID_subdiv"):
        of.write_smpl_subdiv(tmp_path / of.SMPL_SUBDIV, np.array([1.5, 2.0]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="index"):
        of.write_subdiv_transform(tmp_path / of.SUBDIV_TRANSFORM, np.array([-3, 0]))
