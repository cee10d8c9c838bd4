"""End-to-end checks of the embedded DensePose-COCO renderer (synthesis/)."""
import json
import shutil

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from synthesis.annotate import FINE_TO_COARSE, MIN_VISIBLE_AREA
from synthesis.render import RenderParamsMismatch, main, render_dataset, render_image
from synthesis.scene import load_body_assets
from synthesis.texture import SHIRT, SHOES, BodyRegions, classify_garments, sample_outfit

NUM_IMAGES, SIZE, SEED = 6, 128, 7


@pytest.fixture(scope="session")
def body():
    return load_body_assets()


@pytest.fixture(scope="session")
def dataset(tmp_path_factory, body):
    out = tmp_path_factory.mktemp("embedded") / "data"
    path = render_dataset(out, NUM_IMAGES, SEED, width=SIZE, height=SIZE, max_people=4, progress=False)
    coco = json.loads(path.read_bytes())
    dense = {img["id"]: dict(np.load(out / "dense" / img["file_name"].replace(".jpg", ".npz")))
             for img in coco["images"]}
    return out, coco, dense


def _anns(coco):
    assert coco["annotations"], "the test dataset should contain annotated people"
    return coco["annotations"]


def test_layout_and_records(dataset, body):
    out, coco, dense = dataset
    assert [im["id"] for im in coco["images"]] == list(range(1, NUM_IMAGES + 1))
    for im in coco["images"]:
        assert (out / "images" / im["file_name"]).is_file()
        assert (im["width"], im["height"]) == (SIZE, SIZE)
        K, R = np.array(im["camera"]["K"]), np.array(im["camera"]["R"])
        assert K.shape == (3, 3) and np.allclose(R @ R.T, np.eye(3), atol=1e-6) and len(im["camera"]["t"]) == 3
        d = dense[im["id"]]
        assert d["I"].dtype == np.uint8 and d["I"].shape == (SIZE, SIZE) and d["I"].max() <= 24
        assert d["U"].dtype == np.float32 and d["V"].dtype == np.float32 and d["instance"].dtype == np.int32
        assert ((d["U"] >= 0) & (d["U"] <= 1) & (d["V"] >= 0) & (d["V"] <= 1)).all()
        assert (d["I"][d["instance"] > 0] > 0).all()  # annotated pixels lie on a body
    ids = [a["id"] for a in _anns(coco)]
    assert len(set(ids)) == len(ids)
    cat = coco["categories"][0]
    assert cat["id"] == 1 and cat["name"] == "person" and len(cat["keypoints"]) == 17
    for a in _anns(coco):
        assert a["category_id"] == 1 and a["iscrowd"] == 0 and a["area"] >= MIN_VISIBLE_AREA
        assert len(a["smpl"]["betas"]) == 10 and len(a["smpl"]["body_pose"]) == 69
        assert np.array(a["joints_3d"]).shape == (24, 3) and (np.array(a["joints_3d"])[:, 2] > 0).all()


def test_instance_map_matches_annotations(dataset):
    _, coco, dense = dataset
    for im in coco["images"]:
        inst = dense[im["id"]]["instance"]
        ann_ids = {a["id"] for a in coco["annotations"] if a["image_id"] == im["id"]}
        assert set(np.unique(inst[inst > 0]).tolist()) == ann_ids


def test_bbox_and_area_tight_around_visible_mask(dataset):
    _, coco, dense = dataset
    for a in _anns(coco):
        ys, xs = np.nonzero(dense[a["image_id"]]["instance"] == a["id"])
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert a["area"] == len(ys)


def test_pycocotools_loads_and_polygons_match_mask(dataset):
    out, coco_dict, dense = dataset
    coco = COCO(str(out / "annotations.json"))
    assert sorted(coco.getImgIds()) == list(range(1, NUM_IMAGES + 1))
    for ann in coco.loadAnns(coco.getAnnIds()):
        m = coco.annToMask(ann).astype(bool)
        vis = dense[ann["image_id"]]["instance"] == ann["id"]
        assert m.shape == vis.shape
        assert (m & vis).sum() / vis.sum() > 0.9  # polygons cover the visible mask ...
        assert (m & vis).sum() / (m | vis).sum() > 0.75  # ... without much spill (holes fill)
        assert all(len(p) >= 6 for p in ann["segmentation"])


def test_dp_points_are_exact_dense_iuv_inside_visible_mask(dataset):
    _, coco, dense = dataset
    for a in _anns(coco):
        n = len(a["dp_x"])
        assert 0 < n <= 100 and all(len(a[k]) == n for k in ("dp_y", "dp_I", "dp_U", "dp_V"))
        x0, y0, w, h = a["bbox"]
        dx, dy = np.array(a["dp_x"]), np.array(a["dp_y"])
        assert (dx >= 0).all() and (dx < 256).all() and (dy >= 0).all() and (dy < 256).all()
        col = np.floor(x0 + dx * w / 256).astype(int)
        row = np.floor(y0 + dy * h / 256).astype(int)
        d = dense[a["image_id"]]
        assert (d["instance"][row, col] == a["id"]).all()
        np.testing.assert_array_equal(np.array(a["dp_I"]), d["I"][row, col])
        np.testing.assert_allclose(a["dp_U"], d["U"][row, col], atol=1e-5)
        np.testing.assert_allclose(a["dp_V"], d["V"][row, col], atol=1e-5)
        assert len(set(zip(row.tolist(), col.tolist()))) == n  # distinct pixels
    # Larger persons get more points, up to the cap.
    big = max(_anns(coco), key=lambda a: a["area"])
    assert len(big["dp_x"]) >= min(100, big["area"] // 32)


def test_dp_masks_decode_and_match_points(dataset):
    _, coco, dense = dataset
    for a in _anns(coco):
        masks = a["dp_masks"]
        assert len(masks) == 14
        frame = np.zeros((256, 256), np.uint8)
        for c, rle in enumerate(masks, start=1):
            if rle == []:
                continue
            assert rle["size"] == [256, 256] and isinstance(rle["counts"], str)
            m = mask_util.decode(rle)
            assert m.shape == (256, 256) and m.any() and not (frame[m > 0]).any()  # disjoint
            frame[m > 0] = c
        assert frame.any()
        cells = frame[np.floor(a["dp_y"]).astype(int), np.floor(a["dp_x"]).astype(int)]
        np.testing.assert_array_equal(cells, FINE_TO_COARSE[np.array(a["dp_I"], dtype=int)])


def test_keypoint_visibility_consistent_with_instance_map(dataset):
    _, coco, dense = dataset
    seen = set()
    for a in _anns(coco):
        kp = np.array(a["keypoints"], dtype=float).reshape(17, 3)
        v = kp[:, 2]
        assert set(v.tolist()) <= {0, 1, 2} and a["num_keypoints"] == int((v > 0).sum())
        assert (kp[v == 0, :2] == 0).all()
        inst = dense[a["image_id"]]["instance"]
        fg = dense[a["image_id"]]["I"] > 0
        for x, y, vis in kp[v > 0]:
            assert 0 <= x < SIZE and 0 <= y < SIZE
            r, c = int(y + 0.5), int(x + 0.5)  # COCO pixel-index convention
            win = (slice(max(r - 2, 0), r + 3), slice(max(c - 2, 0), c + 3))
            if vis == 2:  # visible: this person is seen right there
                assert (inst[win] == a["id"]).any()
            else:  # occluded: something (another person or itself) is in front
                assert fg[win].any()
            seen.add(int(vis))
        # Body keypoints are SMPL joints: the stored camera and joints_3d reproduce them.
        K = np.array(coco["images"][a["image_id"] - 1]["camera"]["K"])
        j = np.array(a["joints_3d"])
        uv = (j @ K.T)[:, :2] / j[:, 2:]
        for k, joint in ((5, 16), (8, 19), (15, 7)):  # left shoulder, right elbow, left ankle
            if v[k] > 0:
                np.testing.assert_allclose(kp[k, :2], np.maximum(uv[joint] - 0.5, 0), atol=0.02)
    assert 2 in seen


def test_smpl_parameters_repose_the_person(dataset, body):
    _, coco, _ = dataset
    a = _anns(coco)[0]
    im = coco["images"][a["image_id"] - 1]
    s = {k: np.array(v)[None] for k, v in a["smpl"].items()}
    _, joints = body.pose(s["betas"], s["body_pose"], s["global_orient"], s["transl"])
    cam = joints[0] @ np.array(im["camera"]["R"]).T + np.array(im["camera"]["t"])
    np.testing.assert_allclose(cam, a["joints_3d"], atol=2e-3)


def test_single_image_rerender_matches_dataset(dataset, body):
    out, coco, dense = dataset
    rgb, d, image, records = render_image(2, SEED, SIZE, SIZE, 4, body)
    frag = json.loads((out / ".parts" / "000003.json").read_bytes())
    assert json.loads(json.dumps(records)) == frag["annotations"]
    np.testing.assert_array_equal(d["I"], dense[3]["I"])
    np.testing.assert_array_equal(d["instance"], dense[3]["instance"])
    assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8 and rgb.std() > 5


def test_same_seed_byte_identical_and_resume(dataset, tmp_path):
    out, _, _ = dataset
    other = tmp_path / "again"
    assert main(["--out", str(other), "--num-images", str(NUM_IMAGES), "--seed", str(SEED),
                 "--width", str(SIZE), "--height", str(SIZE), "--no-progress"]) == 0
    reference = (out / "annotations.json").read_bytes()
    assert (other / "annotations.json").read_bytes() == reference
    for name in ("000001.jpg", "000004.jpg"):
        assert (other / "images" / name).read_bytes() == (out / "images" / name).read_bytes()
    # Resume: drop one finished image's fragment; only that image is rendered again.
    kept = (other / ".parts" / "000001.json").stat().st_mtime_ns
    (other / ".parts" / "000004.json").unlink()
    (other / "annotations.json").unlink()
    render_dataset(other, NUM_IMAGES, SEED, width=SIZE, height=SIZE, progress=False)
    assert (other / "annotations.json").read_bytes() == reference
    assert (other / ".parts" / "000001.json").stat().st_mtime_ns == kept


def test_resume_with_other_parameters_is_refused(dataset, tmp_path):
    out, _, _ = dataset
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with pytest.raises(RenderParamsMismatch, match="seed"):
        render_dataset(copy, NUM_IMAGES, SEED + 1, width=SIZE, height=SIZE, progress=False)
    with pytest.raises(RenderParamsMismatch, match=str(copy)):
        render_dataset(copy, NUM_IMAGES, SEED, width=SIZE + 8, height=SIZE, progress=False)
    with pytest.raises(RenderParamsMismatch, match="poses"):
        render_dataset(copy, NUM_IMAGES, SEED, width=SIZE, height=SIZE, progress=False, poses="sit")


def test_people_take_the_poses_of_a_pose_source(body, tmp_path):
    from synthesis.motions import motion_sequence

    frames = motion_sequence("sit").poses[:, 3:]
    path = render_dataset(tmp_path / "sit", 2, SEED, width=SIZE, height=SIZE, max_people=2,
                          progress=False, poses="sit")
    coco = json.loads(path.read_bytes())
    assert coco["info"]["poses"].startswith("sit:")
    anns = _anns(coco)
    for a in anns:  # every person's body pose is a frame of the motion (to json rounding)
        err = np.abs(frames - np.array(a["smpl"]["body_pose"])[None]).max(axis=1)
        assert err.min() < 1e-5
    # the same scene randomness with random poses gives other poses
    _, _, _, random_records = render_image(0, SEED, SIZE, SIZE, 2, body)
    assert not np.allclose(random_records[0]["smpl"]["body_pose"], anns[0]["smpl"]["body_pose"])


def test_garments_follow_geometry_not_parts(body):
    """Sleeves get longer with the sleeve parameter; shoes sit on the feet; shirts span parts."""
    regions: BodyRegions = body.regions
    n = body.num_vertices
    one_hot_faces = np.arange(n)[:, None].repeat(3, 1)
    attrs = regions.interpolate(one_hot_faces, np.arange(n), np.tile([1.0, 0.0, 0.0], (n, 1)))
    outfit = sample_outfit(np.random.default_rng(0))
    counts = []
    for sleeve in (0.05, 0.5, 1.0):
        outfit.sleeve = sleeve
        counts.append(int((classify_garments(attrs, outfit, regions.waist_span) == SHIRT).sum()))
    assert counts[0] < counts[1] < counts[2]
    labels = classify_garments(attrs, outfit, regions.waist_span)
    feet = body.rest_vertices[:, 1] < body.rest_vertices[:, 1].min() + 0.03
    assert (labels[feet] == SHOES).mean() > 0.9


@pytest.mark.slow
def test_parallel_workers_give_identical_dataset(dataset, tmp_path):
    out, _, _ = dataset
    path = render_dataset(tmp_path / "par", NUM_IMAGES, SEED, width=SIZE, height=SIZE, progress=False, workers=2)
    assert path.read_bytes() == (out / "annotations.json").read_bytes()
