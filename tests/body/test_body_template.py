"""Tests of the procedural SMPL-format body template, its parts, SMPL file I/O, poses, keypoints."""
import pickle

import numpy as np
import pytest
import torch
import trimesh
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from densepose_ext.body import keypoints as K
from densepose_ext.body import parts as P
from densepose_ext.body import pose as PO
from densepose_ext.body import smpl_io as S
from densepose_ext.body.assembly import get_template, template_cache_path
from densepose_ext.body.template import SKELETON

JI = {n: i for i, n in enumerate(PO.JOINT_NAMES)}


@pytest.fixture(scope="session")
def tpl():
    return get_template()


@pytest.fixture(scope="session")
def smpl_path(tpl, tmp_path_factory):
    return S.write_smpl_pickle(tpl, tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.pkl")


@pytest.fixture(scope="session")
def model(smpl_path):
    return S.load_smplx_model(smpl_path, batch_size=2)


def _self_intersections(v: np.ndarray, f: np.ndarray) -> int:
    """Number of (edge, triangle) crossings between faces that share no vertex."""
    tri = v[f]
    cent = tri.mean(1)
    reach = np.linalg.norm(tri - cent[:, None], axis=2).max()
    pairs = cKDTree(cent).query_pairs(2 * reach, output_type="ndarray")
    share = (f[pairs[:, 0], :, None] == f[pairs[:, 1], None, :]).any((1, 2))
    pairs = pairs[~share]
    hits = 0
    for a, b in ((pairs[:, 0], pairs[:, 1]), (pairs[:, 1], pairs[:, 0])):
        for e0, e1 in ((0, 1), (1, 2), (2, 0)):
            p, d = tri[a, e0], tri[a, e1] - tri[a, e0]
            t0, t1, t2 = tri[b, 0], tri[b, 1], tri[b, 2]
            e_1, e_2 = t1 - t0, t2 - t0
            h = np.cross(d, e_2)
            det = (e_1 * h).sum(1)
            ok = np.abs(det) > 1e-15
            inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
            s = p - t0
            u = (s * h).sum(1) * inv
            q = np.cross(s, e_1)
            w = (d * q).sum(1) * inv
            t = (e_2 * q).sum(1) * inv
            hit = ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0) & (t < 1)
            hits += int(hit.sum())
    return hits


# ----------------------------------------------------------------------------- geometry
def test_mesh_is_one_closed_oriented_manifold(tpl):
    v, f = tpl.vertices, tpl.faces
    assert v.dtype == np.float64 and f.dtype == np.int64 and f.min() == 0
    assert 3000 <= len(v) <= 6000
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == 2
    assert len(mesh.split(only_watertight=False)) == 1
    assert mesh.volume > 0.04  # outward normals: positive signed volume of a ~60 l body
    # every undirected edge in exactly two faces, each direction once (consistent winding)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)
    und, counts = np.unique(np.sort(directed, 1), axis=0, return_counts=True)
    assert np.all(counts == 2)
    assert len(v) - len(und) + len(f) == 2
    assert mesh.area_faces.min() > 1e-7


def test_no_self_intersections(tpl):
    assert _self_intersections(tpl.vertices, tpl.faces) == 0


def test_size_and_frame(tpl):
    v, j = tpl.vertices, tpl.joints
    assert 1.6 <= tpl.height <= 1.9
    np.testing.assert_allclose(j[JI["pelvis"]], 0.0, atol=1e-9)  # pelvis at the origin
    assert j[JI["head"], 1] > j[JI["neck"], 1] > j[JI["pelvis"], 1] > j[JI["left_knee"], 1]
    assert j[JI["left_wrist"], 0] > 0.5 and j[JI["right_wrist"], 0] < -0.5  # T-pose, left +x
    nose = v[tpl.keypoint_vertices["nose"]]
    assert nose[2] > 0.1 and abs(nose[0]) < 1e-12  # faces +z
    assert -1.0 < v[:, 1].min() < -0.9  # soles


def test_mirror_symmetry(tpl):
    v, m = tpl.vertices, tpl.mirror
    assert np.array_equal(np.sort(m), np.arange(len(v))) and np.array_equal(m[m], np.arange(len(v)))
    np.testing.assert_allclose(v[m], v * [-1, 1, 1], atol=1e-6)
    # mirrored faces are faces (with reversed orientation)
    fm = m[tpl.faces][:, ::-1]
    key = lambda a: {tuple(np.roll(r, -int(np.argmin(r)))) for r in a}  # noqa: E731
    assert key(fm) == key(tpl.faces)
    np.testing.assert_allclose(tpl.weights[m][:, PO.MIRROR_JOINTS], tpl.weights, atol=1e-12)
    np.testing.assert_allclose(tpl.joints[PO.MIRROR_JOINTS], tpl.joints * [-1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(tpl.shapedirs[m], tpl.shapedirs * np.array([-1, 1, 1])[:, None],
                               atol=1e-9)


# ----------------------------------------------------------------------------- skinning / joints
def test_skinning_weights(tpl):
    w = tpl.weights
    assert w.shape == (len(tpl.vertices), 24) and w.min() >= 0
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-9)
    e = np.concatenate([tpl.faces[:, [0, 1]], tpl.faces[:, [1, 2]]])
    assert np.abs(w[e[:, 0]] - w[e[:, 1]]).max() < 0.35  # smooth: no hard seams
    # wrist vertices follow the elbow; far-away vertices have exactly zero weight for it
    le = JI["left_elbow"]
    assert w[tpl.vertices[:, 0] < 0.2, le].max() == 0.0
    mid = np.argmin(np.linalg.norm(tpl.vertices - tpl.joints[[le, JI["left_wrist"]]].mean(0),
                                   axis=1))
    assert w[mid, le] > 0.9


def test_joint_regressor(tpl):
    r = tpl.J_regressor
    assert r.shape == (24, len(tpl.vertices)) and r.min() >= 0
    np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(r @ tpl.vertices, tpl.joints, atol=1e-6)
    design = SKELETON - SKELETON[0] * [0, 1, 1]
    np.testing.assert_allclose(tpl.joints, design, atol=1e-3)
    assert np.all((r > 0).sum(1) >= 4)  # a ring of vertices, not one


def test_shape_directions(tpl):
    v, sd = tpl.vertices, tpl.shapedirs
    assert sd.shape == (len(v), 3, 10) and np.any(sd != 0, axis=(0, 1)).all()
    assert tpl.posedirs.shape == (len(v), 3, 207) and not tpl.posedirs.any()

    def body(b, s):
        return v + s * sd[:, :, b]

    h = [np.ptp(body(0, s)[:, 1]) for s in (-3, 3)]
    assert h[1] - h[0] > 0.2 and 1.5 < h[0] and h[1] < 2.0
    vol = [trimesh.Trimesh(body(1, s), tpl.faces, process=False).volume for s in (-3, 3)]
    assert vol[1] > 1.5 * vol[0]
    span = [np.ptp(body(2, s)[:, 0]) for s in (-3, 3)]
    assert span[1] - span[0] > 0.1
    sh = JI["left_shoulder"]
    widths = [(tpl.J_regressor @ body(3, s))[sh, 0] for s in (-3, 3)]
    assert widths[1] - widths[0] > 0.05
    for b in range(10):  # plausible bodies: moderate, smooth displacements
        assert np.abs(3 * sd[:, :, b]).max() < 0.2
        e = tpl.faces[:, [0, 1]]
        assert np.linalg.norm(sd[e[:, 0], :, b] - sd[e[:, 1], :, b], axis=1).max() < 0.01
    for b in range(10):  # still one closed mesh without flipped faces at beta = +-3
        for s in (-3, 3):
            mesh = trimesh.Trimesh(body(b, s), tpl.faces, process=False)
            assert mesh.volume > 0.03


# ----------------------------------------------------------------------------- parts
def test_parts_connected_and_mirror_consistent(tpl):
    fp = tpl.face_part
    assert fp.dtype == np.int64 and fp.shape == (len(tpl.faces),)
    assert set(np.unique(fp)) == set(range(1, 25))
    adj = P.face_adjacency(tpl.faces)
    for p in range(1, 25):
        idx = np.flatnonzero(fp == p)
        n, _ = connected_components(adj[idx][:, idx], directed=False)
        assert n == 1, f"part {p} ({P.PART_NAMES[p]}) has {n} regions"
    np.testing.assert_array_equal(fp[tpl.face_mirror], P.FLIP_PERMUTATION[fp])
    assert np.array_equal(P.flip_parts(P.flip_parts(fp)), fp)
    cent = tpl.vertices[tpl.faces].mean(1)
    means = {p: cent[fp == p].mean(0) for p in range(1, 25)}
    assert means[4][0] > tpl.joints[JI["left_wrist"], 0]  # left hand at +x beyond the wrist
    assert means[3][0] < tpl.joints[JI["right_wrist"], 0]
    assert means[5][0] > 0 and means[5][1] < tpl.joints[JI["left_ankle"], 1]  # left foot
    assert means[24][0] > 0 and means[23][0] < 0 and means[24][1] > tpl.joints[JI["neck"], 1]
    assert means[2][2] > means[1][2] and means[10][2] > means[8][2]  # front vs back halves
    assert means[17][2] > means[15][2] and means[14][2] > means[12][2]
    assert P.FINE_TO_COARSE[4] == 3 and P.FINE_TO_COARSE[23] == P.FINE_TO_COARSE[24] == 14


# ----------------------------------------------------------------------------- SMPL files / smplx
def test_smpl_pickle_round_trip(tpl, smpl_path):
    with open(smpl_path, "rb") as fh:
        raw = pickle.load(fh)
    assert raw["f"].dtype == np.uint32 and raw["kintree_table"].dtype == np.uint32
    assert raw["kintree_table"][0, 0] == 4294967295 and raw["bs_style"] == "lbs"
    assert raw["J_regressor"].format == "csc"
    d = S.read_smpl_pickle(smpl_path)
    np.testing.assert_array_equal(d["v_template"], tpl.vertices)
    np.testing.assert_array_equal(d["f"], tpl.faces)
    np.testing.assert_array_equal(d["weights"], tpl.weights)
    np.testing.assert_array_equal(d["J_regressor"], tpl.J_regressor)
    np.testing.assert_array_equal(d["shapedirs"], tpl.shapedirs)
    np.testing.assert_array_equal(d["J"], tpl.joints)
    np.testing.assert_array_equal(d["kintree_table"][1], np.arange(24))
    np.testing.assert_array_equal(d["kintree_table"][0, 1:], tpl.parents[1:])


def test_smpl_pickle_bad_input(tmp_path, smpl_path):
    with open(smpl_path, "rb") as fh:
        raw = pickle.load(fh)
    del raw["weights"]
    bad = tmp_path / "no_weights.pkl"
    bad.write_bytes(pickle.dumps(raw, protocol=2))
    with pytest.raises(S.SmplFileError, match=r"no_weights\.pkl.*weights"):
        S.read_smpl_pickle(bad)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(S.SmplFileError, match=r"junk\.pkl"):
        S.read_smpl_pickle(junk)


def test_smplx_zero_pose_and_elbow_bend(tpl, model):
    v0 = torch.tensor(tpl.vertices, dtype=torch.float32)
    body_pose = torch.zeros(2, 69)
    le = JI["left_elbow"]
    body_pose[1, (le - 1) * 3 + 1] = -1.5  # flex the left elbow: forearm comes forward
    verts, joints = PO.pose_body(model, body_pose=body_pose)
    assert verts.shape == (2, len(v0), 3) and joints.shape == (2, 24, 3)
    assert torch.allclose(verts[0], v0, atol=1e-5)
    assert torch.allclose(joints[0], torch.tensor(tpl.joints, dtype=torch.float32), atol=1e-5)
    moved = (verts[1] - verts[0]).norm(dim=1)
    wrist = JI["left_wrist"]
    assert (joints[1, wrist] - joints[0, wrist]).norm() > 0.2
    assert joints[1, wrist, 2] > joints[0, wrist, 2] + 0.15
    assert moved[v0[:, 0] < 0].max() < 1e-6  # the other side does not move
    assert moved[v0[:, 1] < -0.1].max() < 1e-6  # legs do not move
    assert moved[v0[:, 0] > tpl.joints[wrist, 0]].min() > 0.1  # the hand follows


def test_smplx_shape_and_translation(tpl, model):
    betas = torch.zeros(2, 10)
    betas[1, 0] = 2.0
    transl = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    verts, joints = PO.pose_body(model, betas=betas, transl=transl)
    h0 = np.ptp(verts[0, :, 1].numpy())
    h1 = np.ptp(verts[1, :, 1].numpy())
    assert h1 > h0 + 0.05
    # joints follow the shape through the regressor
    expect = torch.tensor(tpl.J_regressor, dtype=torch.float32) @ (verts[1] - transl[1])
    assert torch.allclose(joints[1] - transl[1], expect, atol=1e-4)


# ----------------------------------------------------------------------------- poses
def test_sample_poses_within_limits_and_deterministic():
    poses = PO.sample_poses(np.random.default_rng(0), 200)
    assert poses.shape == (200, 72)
    np.testing.assert_array_equal(poses, PO.sample_poses(np.random.default_rng(0), 200))
    assert np.all(poses[:, :3] == 0)
    e = PO.pose_to_euler(poses)
    lo, hi = PO.JOINT_LIMITS[..., 0], PO.JOINT_LIMITS[..., 1]
    assert np.all(e >= lo - 1e-6) and np.all(e <= hi + 1e-6)
    knee = e[:, JI["left_knee"], 0]
    assert knee.min() >= -1e-6 and knee.max() > 0.5  # knees bend one way only
    # right limits mirror the left ones
    np.testing.assert_allclose(PO.JOINT_LIMITS[JI["right_elbow"], 1],
                               -PO.JOINT_LIMITS[JI["left_elbow"], 1, ::-1])


def test_clip_to_limits():
    bad = np.zeros((1, 72))
    bad[0, JI["left_knee"] * 3] = -1.0  # knee hyper-extension
    bad[0, :3] = [0.3, 0.0, 0.0]  # root is free
    out = PO.clip_to_limits(bad)
    e = PO.pose_to_euler(out)
    assert abs(e[0, JI["left_knee"], 0]) < 1e-9
    np.testing.assert_allclose(out[0, :3], [0.3, 0, 0], atol=1e-9)
    ok = PO.sample_poses(np.random.default_rng(1), 20, scale=0.5)
    np.testing.assert_allclose(PO.clip_to_limits(ok), ok, atol=1e-9)


# ----------------------------------------------------------------------------- keypoints
def test_coco_keypoints(tpl, model):
    assert len(K.COCO_KEYPOINT_NAMES) == 17 and len(K.COCO_SKELETON) == 19
    assert K.COCO_FLIP_INDEX[K.COCO_KEYPOINT_NAMES.index("left_eye")] == 2
    kp = K.coco_keypoints(tpl.vertices[None], tpl.joints[None])[0]
    names = {n: kp[i] for i, n in enumerate(K.COCO_KEYPOINT_NAMES)}
    assert names["nose"][2] > names["left_ear"][2]
    assert names["left_eye"][0] > 0 > names["right_eye"][0]
    assert names["left_eye"][1] > names["left_shoulder"][1] > names["left_hip"][1]
    assert names["left_hip"][1] > names["left_knee"][1] > names["left_ankle"][1]
    np.testing.assert_allclose(kp[K.COCO_FLIP_INDEX], kp * [-1, 1, 1], atol=1e-6)
    surf = K.keypoint_surface_vertex()
    assert np.all(surf[:5] >= 0) and np.all(surf[5:] == -1)
    head = np.isin(tpl.face_part[np.isin(tpl.faces, surf[:5]).any(1)], [23, 24])
    assert head.all()  # face keypoints lie on the head parts
    verts, joints = PO.pose_body(model)
    kt = K.coco_keypoints(verts, joints)
    assert isinstance(kt, torch.Tensor) and kt.shape == (2, 17, 3)
    np.testing.assert_allclose(kt[0].numpy(), kp, atol=1e-5)


def test_template_cache(tpl):
    path = template_cache_path()
    assert path.exists() and path.parent.name == "body" and tpl.version in path.name.replace(
        "template_v", "").replace("_", "-").replace(".pkl", "")
    assert get_template() is tpl
