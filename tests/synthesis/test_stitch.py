"""Stitched synthesis: the query projection, per-joint best matches (against brute force), the
geometric and match-quality pixel assignments, blending weights, single-source pixels,
DensePose transfer, determinism, sharding, resumption, clear errors and dataset registration.
Sources: the embedded mini split or tiny synthetic pools."""
import json
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools import mask as mask_util

from densepose_ext.body.keypoints import COCO_KEYPOINT_NAMES
from synthesis.motions import TRAIN_MOTIONS
from synthesis.pose_sources import resolve_pose_source
from synthesis.smpl_poser import SMPLPoser
from synthesis.stitch import StitchConfig, Stitcher, StitchParamsMismatch, main, make_records, stitch_dataset
from synthesis.stitch_assign import assign_by_match, assign_geometric
from synthesis.stitch_blend import blend_weights
from synthesis.stitch_index import (
    CENTRES,
    NEIGHBOURHOODS,
    NUM_SLOTS,
    TORSO_SLOT,
    LocalPoseIndex,
    Matches,
    SourcePoolError,
    load_source_pool,
    local_distance,
    match_misfit,
)
from synthesis.stitched_datasets import register_all_stitched, register_stitched

SEED = 7
NUM = 5


@pytest.fixture(scope="module")
def mini():
    import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)

    DatasetCatalog.get("densepose_embedded_mini")
    meta = MetadataCatalog.get("densepose_embedded_mini")
    return Path(meta.json_file), Path(meta.image_root)


@pytest.fixture(scope="module")
def stitcher(mini):
    pool = load_source_pool(*mini)
    return Stitcher(pool, resolve_pose_source("motions"), SMPLPoser(), StitchConfig())


@pytest.fixture(scope="module")
def result(stitcher):
    return stitcher.stitch(3, SEED)


@pytest.fixture(scope="module")
def run_dir(stitcher, tmp_path_factory):
    out = tmp_path_factory.mktemp("stitch") / "full"
    assert stitch_dataset(out, NUM, SEED, stitcher=stitcher, progress=False) == out / "annotations.json"
    return out


def _files(d: Path):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and ".parts" not in p.parts}


# ------------------------------------------------------------------------------- projection


def test_keypoints_are_the_camera_projection_of_the_query(result, stitcher):
    cam = result.camera
    X = result.body.keypoints[0] @ cam.R.T + cam.t  # world -> camera
    uv = X @ cam.K.T
    np.testing.assert_allclose(result.keypoints_2d, uv[:, :2] / uv[:, 2:], atol=1e-9)
    image, (ann,) = make_records(result, 4, stitcher.pool)
    kps = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
    inside = kps[:, 2] == 2
    assert inside.sum() >= 12
    # the written record: COCO pixel-index keypoints (+0.5) = K @ keypoints_3d (camera frame)
    K = np.asarray(image["camera"]["K"])
    k3 = np.asarray(ann["keypoints_3d"])
    proj = k3 @ K.T
    np.testing.assert_allclose(kps[inside, :2] + 0.5, proj[inside, :2] / proj[inside, 2:], atol=0.01)
    j3 = np.asarray(ann["joints_3d"])
    R, t = np.asarray(image["camera"]["R"]), np.asarray(image["camera"]["t"])
    np.testing.assert_allclose(j3, result.body.joints[0] @ R.T + t, atol=1e-4)
    assert len(ann["smpl"]["pose_camera"]) == 72 and len(ann["smpl"]["body_pose"]) == 69


def test_person_fills_most_of_the_frame(stitcher):
    for k in range(4):
        res = stitcher.stitch(k, SEED)
        kp = res.keypoints_2d
        assert (kp >= 0).all() and (kp < 256).all()
        ys, xs = np.nonzero(res.mask)
        assert max(np.ptp(ys), np.ptp(xs)) > 0.45 * 256


# ------------------------------------------------------------------------------- search


#: an upright 2D skeleton (COCO order), left-right symmetric about x = 0
BASE = np.array([[0, -70], [-5, -75], [5, -75], [-12, -72], [12, -72], [-25, -50], [25, -50], [-35, -20],
                 [35, -20], [-40, 10], [40, 10], [-15, 10], [15, 10], [-17, 50], [17, 50], [-18, 90],
                 [18, 90]], dtype=np.float64)


def _synthetic_pool(rng, n):
    base = BASE
    ang = rng.normal(0, 0.6, n)
    sc = rng.uniform(0.5, 1.5, n)
    c, s = np.cos(ang) * sc, np.sin(ang) * sc
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    kps = np.einsum("nij,kj->nki", rot, base) + rng.uniform(80, 180, (n, 1, 2)) + rng.normal(0, 6, (n, 17, 2))
    vis = rng.choice([0, 1, 2], size=(n, 17), p=[0.1, 0.1, 0.8])
    query = base * 1.2 + 128 + rng.normal(0, 6, (17, 2))
    return kps, vis, query


def _brute_distance(src, dst, max_rotation):
    """Least-squares similarity fit of src (k,2) onto dst (k,2) with |rotation| <= max_rotation,
    by explicit search: exact linear least squares when unconstrained, a fine angle grid else."""
    if max_rotation >= np.pi:
        A = np.zeros((2 * len(src), 4))
        A[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))]
        A[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))]
        sol = np.linalg.lstsq(A, dst.ravel(), rcond=None)[0]
        best = ((A @ sol - dst.ravel()) ** 2).sum()
    else:
        xc, yc = src - src.mean(0), dst - dst.mean(0)
        th = np.linspace(-max_rotation, max_rotation, 2001)[:, None]
        xr = np.stack([np.cos(th) * xc[:, 0] - np.sin(th) * xc[:, 1],
                       np.sin(th) * xc[:, 0] + np.cos(th) * xc[:, 1]], -1)  # (angles, k, 2)
        s = np.maximum((xr * yc).sum((1, 2)) / (xr ** 2).sum((1, 2)), 0.0)
        best = ((s[:, None, None] * xr - yc) ** 2).sum((1, 2)).min()
    return best / ((dst - dst.mean(0)) ** 2).sum()


@pytest.mark.parametrize("max_rotation", [0.0, np.deg2rad(45), np.pi])
def test_chosen_source_minimises_local_distance(max_rotation):
    rng = np.random.default_rng(11)
    kps, vis, query = _synthetic_pool(rng, 120)
    index = LocalPoseIndex(kps, vis, max_rotation=max_rotation, max_upscale=None)
    m = index.search(query)
    for s in range(NUM_SLOTS):
        idx, centre = list(NEIGHBOURHOODS[s]), list(CENTRES[s])
        dist = np.array([_brute_distance(kps[i, idx], query[idx], max_rotation)
                         if (vis[i, idx] >= 1).all() and (vis[i, centre] == 2).all() else np.inf
                         for i in range(len(kps))])
        assert not m.fallback[s]
        assert np.isfinite(dist[m.source[s]]), "chose a source lacking a needed keypoint"
        assert dist[m.source[s]] <= dist.min() + 2e-4, (s, dist[m.source[s]], dist.min())
        assert abs(m.distance[s] - dist[m.source[s]]) < 2e-4
        # the returned transform realises that distance on the source's neighbourhood
        src = kps[m.source[s], idx]
        mapped = src @ m.transform[s][:, :2].T + m.transform[s][:, 2]
        resid = ((mapped - query[idx]) ** 2).sum() / ((query[idx] - query[idx].mean(0)) ** 2).sum()
        assert abs(resid - m.distance[s]) < 2e-4
        rot = np.arctan2(m.transform[s][1, 0], m.transform[s][0, 0])
        assert abs(rot) <= max_rotation + 1e-9


def test_unlabelled_sources_are_excluded_and_fallback_uses_torso():
    rng = np.random.default_rng(2)
    kps, vis, query = _synthetic_pool(rng, 40)
    vis[:, 9] = 0  # nobody has a left wrist
    vis[0] = 2  # ... except source 0
    m = LocalPoseIndex(kps, vis, max_upscale=None).search(query)
    assert m.source[9] == 0
    vis[0, 9] = 1  # occluded: not a candidate for its own slot
    m = LocalPoseIndex(kps, vis, max_upscale=None).search(query)
    assert m.fallback[9] and m.source[9] == m.source[TORSO_SLOT]
    np.testing.assert_array_equal(m.transform[9], m.transform[TORSO_SLOT])


def test_search_matches_on_the_mini_pool(stitcher, result):
    idx = stitcher.index
    m = idx.search(result.keypoints_2d)
    for s in (5, 9, TORSO_SLOT):
        d, _ = idx.slot_distances(s, result.keypoints_2d)
        assert d[m.source[s]] <= d.min() + 1e-6


# ------------------------------------------------------------------------------- blending


def test_blending_weights_are_a_partition_of_unity(result):
    w = result.weights
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    labels = np.random.default_rng(0).integers(0, 5, (40, 50))
    w2 = blend_weights(labels, 5, 7)
    assert (w2 >= 0).all() and np.allclose(w2.sum(-1), 1.0, atol=1e-6)
    # a pixel whose whole box has one label gets weight 1 for it
    labels[10:30, 10:30] = 3
    assert w2.shape == (40, 50, 5) and blend_weights(labels, 5, 7)[20, 20, 3] == 1.0


def test_assignment_is_kinematic(result):
    """A pixel on a limb takes that limb's joints, pixels far from the body the torso (both rules)."""
    kp = result.keypoints_2d
    misfit = match_misfit(kp, result.matches)
    geometric = assign_geometric(kp, 256, 256, radius=20.0, thickness=8.0)
    match = assign_by_match(kp, 256, 256, radius=20.0, thickness=8.0, misfit=misfit)
    mid_forearm = 0.5 * (kp[7] + kp[9])  # left elbow - left wrist
    for labels, covered in (geometric, match):
        assert labels[int(mid_forearm[1]), int(mid_forearm[0])] in (7, 9)
        assert labels[0, 0] == TORSO_SLOT or np.hypot(*(kp - 0.5).min(0)) < 20
        assert covered[int(mid_forearm[1]), int(mid_forearm[0])]
    np.testing.assert_array_equal(match[1], geometric[1])  # the query body is the query body
    # perfectly matched sources everywhere, the geometric rule's depth tolerance: the rules agree
    same = assign_by_match(kp, 256, 256, radius=20.0, thickness=8.0, misfit=np.zeros(NUM_SLOTS), level=1e-6)
    np.testing.assert_array_equal(same[0], geometric[0])


def _misfit(**slots):
    out = np.ones(NUM_SLOTS)
    for name, value in slots.items():
        out[COCO_KEYPOINT_NAMES.index(name)] = value
    return out


def test_match_assignment_gives_the_tie_to_the_better_match():
    """A pixel between the knees, equally near both lower legs (outside their thickness)."""
    kp = BASE + [128.5, 128.0]  # symmetric about the centre of pixel column 128
    row, col = 190, 128
    geo = [assign_geometric(kp, 256, 256, 30.0, 8.0, misfit=m)[0][row, col]
           for m in (_misfit(left_knee=6.0), _misfit(right_knee=6.0))]
    left, right = COCO_KEYPOINT_NAMES.index("left_knee"), COCO_KEYPOINT_NAMES.index("right_knee")
    assert geo == [left, left]  # a tie goes to the first piece whatever the match quality
    assert assign_by_match(kp, 256, 256, 30.0, 8.0, misfit=_misfit(left_knee=6.0))[0][row, col] == right
    assert assign_by_match(kp, 256, 256, 30.0, 8.0, misfit=_misfit(right_knee=6.0))[0][row, col] == left
    # nearer the left lower leg (13.5 vs 21.5 px), but its sources misfit by 20 px: they cede the pixel
    col = 124
    assert assign_geometric(kp, 256, 256, 30.0, 8.0)[0][row, col] == left
    poor = _misfit(left_knee=20.0, left_ankle=20.0)
    assert assign_by_match(kp, 256, 256, 30.0, 8.0, misfit=poor)[0][row, col] == right
    assert assign_by_match(kp, 256, 256, 30.0, 8.0, misfit=_misfit(left_knee=5.0))[0][row, col] == left


def test_match_assignment_keeps_the_occlusion_order():
    """A left forearm across the torso: in front, it keeps its pixels however badly matched;
    behind, the torso covers it under both rules."""
    kp = BASE + [128.0, 128.0]
    kp[COCO_KEYPOINT_NAMES.index("left_wrist")] = [128.0, 128.0]
    x, y = (0.25 * kp[7] + 0.75 * kp[9]).astype(int)  # on the forearm, inside the torso
    wrist = COCO_KEYPOINT_NAMES.index("left_wrist")
    bad = _misfit(left_wrist=50.0, left_elbow=50.0)
    for arm_depth, expected in ((2.0, wrist), (4.0, TORSO_SLOT)):
        depth = np.full(17, 3.0)
        depth[[7, 9]] = arm_depth
        assert assign_geometric(kp, 256, 256, 30.0, 8.0, depth)[0][y, x] == expected
        assert assign_by_match(kp, 256, 256, 30.0, 8.0, depth, misfit=bad)[0][y, x] == expected


def test_misfit_is_the_rms_pixel_residual_of_the_alignment():
    rng = np.random.default_rng(5)
    query = BASE * 1.3 + 128 + rng.normal(0, 3, (17, 2))
    source = BASE + 60 + rng.normal(0, 3, (17, 2))
    distance = np.zeros(NUM_SLOTS)
    for s, idx in enumerate(NEIGHBOURHOODS):
        distance[s] = local_distance(source[list(idx)], query[list(idx)], np.pi)[0]
    fallback = np.zeros(NUM_SLOTS, bool)
    fallback[3] = True
    misfit = match_misfit(query, Matches(np.zeros(NUM_SLOTS, np.int64), distance, np.zeros((NUM_SLOTS, 2, 3)),
                                         fallback))
    for s, idx in enumerate(NEIGHBOURHOODS):
        src, q = source[list(idx)], query[list(idx)]
        if s == 3:  # no candidate: the whole spread of the query neighbourhood
            assert misfit[s] == pytest.approx(np.sqrt(((q - q.mean(0)) ** 2).sum(1).mean()))
            continue
        _, a = local_distance(src, q, np.pi)
        z = (src[:, 0] + 1j * src[:, 1] - (src[:, 0] + 1j * src[:, 1]).mean()) * a + (q[:, 0] + 1j * q[:, 1]).mean()
        rms = np.sqrt(np.mean(np.abs(z - (q[:, 0] + 1j * q[:, 1])) ** 2))
        assert misfit[s] == pytest.approx(rms, rel=1e-6) and 0 < rms < 10


def test_assignment_rule_is_a_stitch_parameter(stitcher, result):
    geometric = Stitcher(stitcher.pool, stitcher.poses, stitcher.poser, StitchConfig(assignment="geometric"))
    other = geometric.stitch(3, SEED)
    assert other.query.tag == result.query.tag  # same query, camera and sources
    np.testing.assert_array_equal(other.keypoints_2d, result.keypoints_2d)
    np.testing.assert_array_equal(other.matches.source, result.matches.source)
    assert stitcher.config.assignment == "match"
    assert geometric.params(SEED)["config"]["assignment"] == "geometric"
    with pytest.raises(ValueError, match="unknown pixel assignment 'nearest'"):
        Stitcher(stitcher.pool, stitcher.poses, stitcher.poser, StitchConfig(assignment="nearest"))


def test_pixel_far_from_seams_takes_one_source(result, stitcher):
    w, res = result.weights, result
    single = w.max(-1) == 1.0
    checked = 0
    for u, layer in enumerate(res.layers):
        y0, x0 = layer.roi[1], layer.roi[0]
        ys, xs = np.nonzero(single[layer.window] & (w[layer.window][..., u] == 1.0) & (layer.mask == 1.0))
        if len(ys) == 0:
            continue
        # output colour = this layer's colour, which is the source image at the inverse warp
        np.testing.assert_array_equal(res.image[ys + y0, xs + x0], np.clip(np.round(layer.image[ys, xs]), 0, 255))
        slot = res.layer_slot[u]
        r = stitcher.loader.rasters(int(res.matches.source[slot]))
        T = res.matches.transform[slot]
        A, b = T[:, :2], T[:, 2]
        pts = np.stack([xs + x0 + 0.5, ys + y0 + 0.5], 1)
        src = (pts - b) @ np.linalg.inv(A).T - np.asarray(r.offset) - 0.5  # pixel-index coords in the crop
        x, y = src[:, 0], src[:, 1]
        ok = (x >= 0) & (y >= 0) & (x < r.image.shape[1] - 1) & (y < r.image.shape[0] - 1)
        xi, yi = np.floor(x[ok]).astype(int), np.floor(y[ok]).astype(int)
        fx, fy = (x[ok] - xi)[:, None], (y[ok] - yi)[:, None]
        im = r.image.astype(np.float64)
        bil = ((1 - fx) * (1 - fy) * im[yi, xi] + fx * (1 - fy) * im[yi, xi + 1]
               + (1 - fx) * fy * im[yi + 1, xi] + fx * fy * im[yi + 1, xi + 1])
        err = np.abs(res.image[ys[ok] + y0, xs[ok] + x0].astype(np.float64) - bil)
        assert np.median(err) <= 1.0 and err.max() <= 8.0
        checked += int(ok.sum())
    assert checked > 500


def test_densepose_points_lie_inside_the_mask(result, stitcher):
    image, (ann,) = make_records(result, 4, stitcher.pool)
    x0, y0, w, h = ann["bbox"]
    x = x0 + np.asarray(ann["dp_x"]) * w / 256
    y = y0 + np.asarray(ann["dp_y"]) * h / 256
    assert len(x) >= 20
    cols, rows = np.floor(x).astype(int), np.floor(y).astype(int)
    assert result.mask[rows, cols].all()
    rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], 256, 256))
    assert mask_util.decode(rle)[rows, cols].all()
    # the carried labels agree with the dense labels transferred by the same warps
    agree = result.dense["I"][rows, cols] == np.asarray(ann["dp_I"])
    assert agree.mean() > 0.9
    assert len(ann["dp_masks"]) == 14 and any(ann["dp_masks"])
    assert ann["area"] == result.mask.sum() and (result.dense["I"][~result.mask] == 0).all()


# ------------------------------------------------------------------------------- files


def test_same_seed_gives_identical_files(stitcher, run_dir, tmp_path):
    again = tmp_path / "again"
    stitch_dataset(again, NUM, SEED, stitcher=stitcher, progress=False)
    a, b = _files(run_dir), _files(again)
    assert set(a) == set(b) and all(a[k] == b[k] for k in a)
    assert sum(k.startswith("images/") for k in a) == NUM and sum(k.startswith("dense/") for k in a) == NUM
    other = tmp_path / "other"
    stitch_dataset(other, 2, SEED + 1, stitcher=stitcher, progress=False)
    assert _files(other)["images/000001.jpg"] != a["images/000001.jpg"]


def test_shards_partition_the_work(stitcher, run_dir, tmp_path):
    out = tmp_path / "sharded"
    assert stitch_dataset(out, NUM, SEED, stitcher=stitcher, shard=1, num_shards=2, progress=False) is None
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000002.jpg", "000004.jpg"]
    assert not (out / "annotations.json").exists()
    path = stitch_dataset(out, NUM, SEED, stitcher=stitcher, shard=0, num_shards=2, progress=False)
    assert path == out / "annotations.json"
    a, b = _files(run_dir), _files(out)
    assert set(a) == set(b) and all(a[k] == b[k] for k in a)


def test_resume_after_interruption(stitcher, run_dir, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    real = stitcher.stitch
    calls = []

    def flaky(index, seed):
        calls.append(index)
        if index == 2:
            raise KeyboardInterrupt
        return real(index, seed)

    monkeypatch.setattr(stitcher, "stitch", flaky)
    with pytest.raises(KeyboardInterrupt):
        stitch_dataset(out, NUM, SEED, stitcher=stitcher, progress=False)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000001.jpg", "000002.jpg"]
    assert not list(out.rglob("*.tmp")) and not (out / "annotations.json").exists()
    calls.clear()
    monkeypatch.setattr(stitcher, "stitch", real)
    stitch_dataset(out, NUM, SEED, stitcher=stitcher, progress=False)
    a, b = _files(run_dir), _files(out)
    assert set(a) == set(b) and all(a[k] == b[k] for k in a)
    with pytest.raises(StitchParamsMismatch, match="seed"):
        stitch_dataset(out, NUM, SEED + 1, stitcher=stitcher, progress=False)


def test_bad_source_json_names_the_file(mini, tmp_path):
    json_file, images = mini
    with pytest.raises(SourcePoolError, match="nope.json"):
        load_source_pool(tmp_path / "nope.json", images)
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(SourcePoolError, match="broken.json"):
        load_source_pool(bad, images)
    data = json.loads(json_file.read_text())
    ann = data["annotations"][1]
    ann["keypoints"] = ann["keypoints"][:50]
    bad.write_text(json.dumps(data))
    with pytest.raises(SourcePoolError) as e:
        load_source_pool(bad, images)
    assert "broken.json" in str(e.value) and f"annotation id={ann['id']}" in str(e.value)
    data["annotations"] = []
    bad.write_text(json.dumps(data))
    with pytest.raises(SourcePoolError, match="no person"):
        load_source_pool(bad, images)


def test_cli_and_dataset_registration(mini, tmp_path, monkeypatch):
    json_file, images = mini
    out = tmp_path / "stitched" / "demo"
    assert main(["--sources", str(json_file), "--images", str(images), "--out", str(out), "--num-images", "2",
                 "--seed", "1", "--no-progress"]) == 0
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["images"]) == 2 and coco["info"]["body_model"] == "embedded"
    assert coco["info"]["config"]["assignment"] == "match"
    assert coco["annotations"][0]["stitch"]["query"].split(":")[0] in TRAIN_MOTIONS  # default queries
    assert {"joints_3d", "keypoints_3d", "smpl", "dp_x", "segmentation"} <= set(coco["annotations"][0])
    assert register_all_stitched(tmp_path) == ["stitched_demo"]
    dicts = DatasetCatalog.get("stitched_demo")
    assert len(dicts) == 2 and dicts[0]["dense_file"].endswith("000001.npz")
    meta = MetadataCatalog.get("stitched_demo")
    assert len(meta.keypoint_names) == 17 and meta.body_model == "embedded" and meta.keypoint_flip_map

    from detectron2.data import transforms as T

    from densepose_ext.data import DensePoseDatasetMapper
    from toys import FLIP_INDICES

    mapper = DensePoseDatasetMapper(True, augmentations=[T.ResizeShortestEdge(128, 1000)], image_format="RGB",
                                    use_instance_mask=True, use_keypoint=True, keypoint_hflip_indices=FLIP_INDICES)
    inst = mapper(dicts[0])["instances"]
    assert len(inst) == 1 and inst.gt_keypoints.tensor.shape == (1, 17, 3) and inst.has("gt_densepose")
    register_stitched("stitched_again", out)
    assert len(DatasetCatalog.get("stitched_again")) == 2
    (out / "info.json").write_text("{not json")
    with pytest.raises(ValueError, match="info.json"):
        register_stitched("stitched_broken", out)
    for name in ("stitched_demo", "stitched_again"):
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_plain_coco_keypoint_sources(mini, tmp_path):
    """Sources without DensePose (a COCO keypoint json): masks from the segmentations, no
    DensePose fields in the output; pose sources given as .npz files."""
    json_file, images = mini
    data = json.loads(json_file.read_text())
    for ann in data["annotations"]:
        for k in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V", "dp_masks", "smpl", "joints_3d"):
            ann.pop(k, None)
    data.pop("info")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "images").symlink_to(images.absolute())  # no dense/ beside it
    src = tmp_path / "src" / "person_keypoints.json"
    src.write_text(json.dumps(data))
    from synthesis.motions import write_motion_set

    write_motion_set(tmp_path / "poses", ["wave"])
    out = tmp_path / "out"
    assert main(["--sources", str(src), "--out", str(out), "--num-images", "2", "--poses",
                 str(tmp_path / "poses" / "wave.npz"), "--assignment", "geometric", "--no-progress"]) == 0
    coco = json.loads((out / "annotations.json").read_text())
    ann = coco["annotations"][0]
    assert coco["info"]["config"]["assignment"] == "geometric"
    assert coco["info"]["body_model"] == "official" and ann["stitch"]["query"].startswith("wave:")
    assert "dp_x" not in ann and not (out / "dense").exists() and ann["area"] > 1000


def test_skeleton_part_map_follows_the_limbs():
    from synthesis.stitch_sources import skeleton_part_map

    kp = np.array([[50, 10], [47, 8], [53, 8], [44, 10], [56, 10], [40, 20], [60, 20], [30, 35], [70, 35],
                   [22, 50], [78, 50], [44, 50], [56, 50], [43, 70], [57, 70], [42, 90], [58, 90]], np.float64)
    valid = np.ones(17, bool)
    valid[4] = False  # an unlabelled keypoint adds no segment
    parts = skeleton_part_map(kp, valid, np.ones((100, 100), bool))
    at = lambda p: parts[int(p[1]), int(p[0])]  # noqa: E731
    assert at(0.5 * (kp[7] + kp[9])) == 12 and at(0.5 * (kp[8] + kp[10])) == 13  # lower arms
    assert at(0.5 * (kp[11] + kp[13])) == 7 and at(0.5 * (kp[14] + kp[16])) == 8  # upper leg l, lower leg r
    assert at([50, 35]) == 1 and at(kp[0]) == 14
    assert (skeleton_part_map(kp, valid, np.zeros((100, 100), bool)) == 0).all()
