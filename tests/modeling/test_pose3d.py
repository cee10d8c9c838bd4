"""3D-pose classification: K-means classes, the normalised pose frame, Pose3DClassROIHeads,
gt_pose3d through the mapper's flips, the MPJPE / accuracy evaluation and train_net end to end."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import densepose_ext.modeling  # noqa: F401  (registers Pose3DClassROIHeads)
from densepose_ext.body.keypoints import COCO_FLIP_INDEX, COCO_KEYPOINT_NAMES
from densepose_ext.body.pose import JOINT_NAMES
from densepose_ext.data import DensePoseDatasetError, DensePoseDatasetMapper
from densepose_ext.evaluation.pose3d import evaluate_pose3d, greedy_match
from densepose_ext.modeling.pose3d import load_or_build_pose_classes
from densepose_ext.pose3d import (PoseClasses, body_scale, build_pose_classes, kmeans, mirror_poses,
                                  normalize_poses)
from toys import REPO, embedded_split_dir, shrunk_cfg

MINI = embedded_split_dir("densepose_embedded_mini")
CONFIG = REPO / "configs" / "embedded" / "pose3d_class_R_18_GN_FPN.yaml"
K = 8


@pytest.fixture(scope="module")
def mini_json():
    return json.loads((MINI / "annotations.json").read_text())


@pytest.fixture(scope="module")
def mini_poses(mini_json):
    return np.array([a["joints_3d"] for a in mini_json["annotations"]], dtype=np.float64)


@pytest.fixture(scope="module")
def classes_main(tool_script):
    """``python tools/build_pose_classes.py``'s main."""
    return tool_script("build_pose_classes").main


@pytest.fixture(scope="module")
def classes_file(tmp_path_factory, classes_main):
    out = tmp_path_factory.mktemp("classes") / f"mini_K{K}.npz"
    classes_main(["--dataset", "densepose_embedded_mini", "--k", str(K), "--out", str(out)])
    return out


def tiny_cfg(classes_file, *opts):
    """The embedded pose3d config shrunk for tests (narrow heads, K=8 mini classes)."""
    return shrunk_cfg(CONFIG, "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
                      "MODEL.RPN.POST_NMS_TOPK_TRAIN", 64, "MODEL.RPN.POST_NMS_TOPK_TEST", 32,
                      "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
                      "MODEL.ROI_POSE3D_HEAD.CLASSES_FILE", str(classes_file),
                      "MODEL.ROI_POSE3D_HEAD.NUM_CLASSES", K,
                      "MODEL.ROI_POSE3D_HEAD.CONV_DIM", 32, "MODEL.ROI_POSE3D_HEAD.FC_DIM", 64,
                      "DATASETS.TRAIN", ("densepose_embedded_mini",), *opts)


# ---------------------------------------------------------------------------- k-means
def test_kmeans_finds_known_clusters_and_is_seeded():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([m + 0.1 * rng.standard_normal((20, 2)) for m in means])
    fit = kmeans(torch.as_tensor(x), 3, seed=1)
    assert fit.converged
    order = np.argsort(fit.centres[:, 0].numpy() + 100 * fit.centres[:, 1].numpy())
    expected = np.stack([x[i * 20:(i + 1) * 20].mean(0) for i in range(3)])
    np.testing.assert_allclose(fit.centres.numpy()[order], expected, atol=1e-9)
    labels = fit.assignments.numpy()
    assert all(len(set(labels[i * 20:(i + 1) * 20])) == 1 for i in range(3))
    assert len(set(labels)) == 3
    inertia = sum(((x[labels == c] - fit.centres.numpy()[c]) ** 2).sum() for c in range(3))
    assert fit.inertia == pytest.approx(inertia)
    again = kmeans(torch.as_tensor(x), 3, seed=1)
    assert torch.equal(again.centres, fit.centres) and torch.equal(again.assignments,
                                                                   fit.assignments)
    with pytest.raises(ValueError, match="K <= number of points"):
        kmeans(torch.as_tensor(x[:2]), 3)
    with pytest.raises(ValueError, match="distinct points"):
        kmeans(torch.zeros(5, 2, dtype=torch.float64), 2)


# ---------------------------------------------------------------------------- pose frame
def test_normalisation_ignores_translation_and_size(mini_poses):
    poses = torch.as_tensor(mini_poses)
    norm, scale = normalize_poses(poses)
    assert torch.allclose(norm[:, 0], torch.zeros(3, dtype=norm.dtype))  # root at origin
    assert torch.allclose(body_scale(norm), torch.ones(len(norm), dtype=norm.dtype))
    moved = poses * 1.3 + torch.tensor([0.4, -2.0, 5.0], dtype=poses.dtype)
    norm2, scale2 = normalize_poses(moved)
    assert torch.allclose(norm2, norm, atol=1e-10) and torch.allclose(scale2, 1.3 * scale)
    # yaw alignment: the same pose turned about the vertical axis gives one aligned pose
    a = 0.7
    rot = torch.tensor([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]],
                       dtype=poses.dtype)
    aligned, _ = normalize_poses(poses, align_yaw=True)
    aligned_rot, _ = normalize_poses(poses @ rot.T, align_yaw=True)
    assert torch.allclose(aligned, aligned_rot, atol=1e-9)
    hip = aligned[:, JOINT_NAMES.index("left_hip")] - aligned[:, JOINT_NAMES.index("right_hip")]
    assert torch.allclose(hip[:, 2], torch.zeros(len(hip), dtype=hip.dtype), atol=1e-9)
    assert bool((hip[:, 0] > 0).all())
    # mirroring: sides swap, twice is the identity, size is kept
    m = mirror_poses(poses)
    lw, rw = JOINT_NAMES.index("left_wrist"), JOINT_NAMES.index("right_wrist")
    assert torch.equal(m[:, lw, 0], -poses[:, rw, 0]) and torch.equal(mirror_poses(m), poses)
    assert torch.allclose(body_scale(m), body_scale(poses))


def test_classes_file_round_trip_and_checks(classes_file, classes_main, mini_poses, tmp_path):
    classes = PoseClasses.load(classes_file)
    assert classes.num_classes == K and classes.centres.shape == (K, 24, 3)
    p = classes.provenance
    assert p["datasets"] == ["densepose_embedded_mini"] and p["num_poses"] == len(mini_poses)
    assert p["mirror"] and p["num_points"] == 2 * len(mini_poses)
    assert classes.nominal_scale == pytest.approx(float(body_scale(torch.as_tensor(mini_poses))
                                                        .mean()))
    # the mean pose: mean of the normalised poses and their mirror images (root at the origin)
    both = torch.as_tensor(mini_poses)
    expected = normalize_poses(torch.cat([both, mirror_poses(both)]))[0].mean(0).numpy()
    np.testing.assert_allclose(classes.mean_pose, expected, atol=1e-6)
    np.testing.assert_allclose(classes.mean_pose_metres()[0], 0.0, atol=1e-7)
    assert p["quantisation_mpjpe_mm"] < p["mean_pose_mpjpe_mm"]  # K classes beat one mean
    # a file without a mean pose (written before it existed) still loads
    old = PoseClasses(classes.centres, classes.nominal_scale, provenance=p)
    old.save(tmp_path / "old.npz")
    loaded = PoseClasses.load(tmp_path / "old.npz")
    assert loaded.mean_pose is None and loaded.mean_pose_metres() is None
    assert loaded.digest == classes.digest
    # same inputs -> same classes; the file is what the builder gives
    built = build_pose_classes(mini_poses.astype(np.float32), K, seed=0)  # as read from json
    np.testing.assert_array_equal(built.centres, classes.centres)
    assert built.digest == classes.digest
    # nearest class is invariant to translation and size of the person
    idx = classes.nearest(mini_poses)[0]
    assert torch.equal(classes.nearest(mini_poses * 0.8 + 1.0)[0], idx)
    # the CLI leaves an up-to-date file alone
    classes_main(["--dataset", "densepose_embedded_mini", "--k", str(K),
                  "--out", str(classes_file)])
    # config checks: K must match; a missing file is refused when building is off
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        load_or_build_pose_classes(tiny_cfg(classes_file, "MODEL.ROI_POSE3D_HEAD.NUM_CLASSES", 9))
    with pytest.raises(FileNotFoundError, match="tools/build_pose_classes.py --dataset"):
        load_or_build_pose_classes(tiny_cfg(
            tmp_path / "absent.npz", "MODEL.ROI_POSE3D_HEAD.BUILD_CLASSES_IF_MISSING", False))
    bad = tmp_path / "bad.npz"
    np.savez(bad, centres=np.zeros((2, 24, 3)))
    with pytest.raises(ValueError, match="bad.npz: not a valid pose class file"):
        PoseClasses.load(bad)


# ---------------------------------------------------------------------------- mapper
def _mapper(flip: bool):
    augs = [T.ResizeTransform(256, 256, 128, 128)] + ([T.HFlipTransform(128)] if flip else [])
    return DensePoseDatasetMapper(
        True, augmentations=augs, use_densepose=False, use_keypoint=True,
        keypoint_hflip_indices=COCO_FLIP_INDEX, use_pose3d=True)


def _project(joints, K_):
    uvw = joints @ K_.T
    return uvw[..., :2] / uvw[..., 2:]


@pytest.mark.parametrize("flip", [False, True])
def test_gt_pose3d_follows_the_image_flip(mini_json, flip):
    """Mirrored gt_pose3d projected with the mirrored camera lands on the flipped keypoints."""
    from detectron2.data import DatasetCatalog

    record = DatasetCatalog.get("densepose_embedded_mini")[0]
    camera = next(i["camera"] for i in mini_json["images"] if i["id"] == record["image_id"])
    out = _mapper(flip)(record)["instances"]
    joints = out.gt_pose3d.double().numpy()
    originals = np.array([a["joints_3d"] for a in record["annotations"]])
    assert joints.shape == originals.shape
    K_ = np.array(camera["K"])
    if flip:
        K_[0, 2] = 256 - K_[0, 2]  # the flipped image's principal point
        np.testing.assert_allclose(joints, mirror_poses(originals), atol=1e-5)
    else:
        np.testing.assert_allclose(joints, originals, atol=1e-5)
    kps = out.gt_keypoints.tensor.double().numpy()
    names = [n for n in COCO_KEYPOINT_NAMES[5:] if not n.endswith("_hip")]
    kp_idx = [COCO_KEYPOINT_NAMES.index(n) for n in names]
    uv = _project(joints[:, [JOINT_NAMES.index(n) for n in names]], K_) * 0.5  # 256 -> 128
    np.testing.assert_allclose(uv, kps[:, kp_idx, :2], atol=0.05)


def test_bad_joints_name_the_record():
    from detectron2.data import DatasetCatalog

    record = DatasetCatalog.get("densepose_embedded_mini")[0]
    record["annotations"][0]["joints_3d"] = [[0.0, 0.0, 1.0]] * 23
    with pytest.raises(DensePoseDatasetError, match=r"000001.jpg.*annotation id=.*joints_3d"):
        _mapper(False)(record)


# ---------------------------------------------------------------------------- heads
def test_head_outputs_per_detection(classes_file):
    from detectron2.data import DatasetCatalog

    torch.manual_seed(0)
    model = build_model(tiny_cfg(classes_file)).eval()
    record = DatasetCatalog.get("densepose_embedded_mini")[0]
    image = DensePoseDatasetMapper(False, augmentations=[T.ResizeTransform(256, 256, 128, 128)],
                                   use_densepose=False)(record)["image"]
    boxes = Instances((128, 128), pred_boxes=Boxes(torch.tensor([[10.0, 5, 60, 120],
                                                                 [50, 20, 100, 110],
                                                                 [0, 0, 128, 128]])),
                      pred_classes=torch.zeros(3, dtype=torch.long))
    with torch.no_grad():
        inst = model.inference([{"image": image, "height": 128, "width": 128}],
                               detected_instances=[boxes])[0]["instances"]
    assert inst.pred_pose3d.shape == (3, 24, 3) and inst.pred_pose3d_scores.shape == (3, K)
    assert inst.pred_pose3d_class.dtype == torch.int64
    assert torch.allclose(inst.pred_pose3d_scores.sum(1), torch.ones(3), atol=1e-5)
    assert torch.equal(inst.pred_pose3d_class, inst.pred_pose3d_scores.argmax(1))
    classes = PoseClasses.load(classes_file)
    expected = classes.poses(inst.pred_pose3d_class.numpy())
    np.testing.assert_allclose(inst.pred_pose3d.numpy(), expected, rtol=1e-6)
    assert torch.allclose(inst.pred_pose3d[:, 0], torch.zeros(3, 3))  # root-centred
    # a checkpoint of other classes is refused
    state = model.state_dict()
    state["roi_heads.pose3d_codebook.digest"] = state["roi_heads.pose3d_codebook.digest"] + 1
    with pytest.raises(ValueError, match="other 3D-pose classes"):
        model.load_state_dict(state)


def test_loss_falls_when_overfitting_mini_images(classes_file):
    from detectron2.data import DatasetCatalog

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model(tiny_cfg(classes_file)).train()
    mapper = DensePoseDatasetMapper(True, augmentations=[T.ResizeTransform(256, 256, 128, 128)],
                                    use_densepose=False, use_pose3d=True)
    batch = [mapper(r) for r in DatasetCatalog.get("densepose_embedded_mini")[:3]]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        with EventStorage():
            loss = model(batch)
        opt.zero_grad()
        sum(loss.values()).backward()
        opt.step()
        losses.append(float(loss["loss_pose3d"].detach()))
    assert losses[0] == pytest.approx(np.log(K), rel=0.2)  # near-uniform at first
    assert np.mean(losses[-5:]) < 0.3 * losses[0], losses


# ---------------------------------------------------------------------------- evaluation
def test_greedy_match_takes_detections_by_score():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=float)
    det = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [21, 0, 31, 10], [50, 50, 60, 60]], float)
    assert greedy_match(det, np.array([0.5, 0.9, 0.8, 0.99]), gt).tolist() == [-1, 0, 1, -1]
    assert greedy_match(det, np.array([0.9, 0.5, 0.8, 0.99]), gt).tolist() == [0, -1, 1, -1]


def test_mpjpe_known_answers(classes_file, mini_poses):
    classes = PoseClasses.load(classes_file)
    gt_joints = mini_poses[:2]
    boxes = np.array([[0, 0, 50, 100], [60, 0, 110, 100]], float)
    gt = {1: {"boxes": boxes, "joints": gt_joints, "ids": [101, 102]}}
    gt_class = classes.nearest(gt_joints)[0].numpy()
    topk = np.stack([gt_class, (gt_class + 1) % K], axis=1)

    def run(poses, topk=topk, det_boxes=boxes):
        pred = [{"image_id": 1, "boxes": det_boxes, "scores": np.array([0.9, 0.8])[:len(det_boxes)],
                 "poses": poses, "topk": topk[:len(det_boxes)]}]
        return evaluate_pose3d(gt, pred, classes)

    root = gt_joints[:, :1]
    rel = gt_joints - root
    to_nominal = classes.nominal_scale / body_scale(torch.as_tensor(rel)).numpy()[:, None, None]
    perfect = run(gt_joints)
    assert perfect["mpjpe"] == pytest.approx(0, abs=1e-9)
    assert list(perfect["per_person"]) == ["101", "102"]  # keyed by GT annotation id
    assert all(p["detected"] and p["image_id"] == 1 and p["mpjpe"] == pytest.approx(0, abs=1e-9)
               for p in perfect["per_person"].values())
    # scale-normalised: the GT is taken at the nominal body size, the prediction as it is
    size_error = np.linalg.norm(rel * (1 - to_nominal), axis=-1).mean() * 1000
    assert perfect["mpjpe_scale_norm"] == pytest.approx(size_error, rel=1e-6)
    assert perfect["top1"] == 100 and perfect["top5"] == 100 and perfect["recall"] == 100
    # one non-root joint 0.1 m off: 100 mm / 24 joints; translation does not matter
    moved = gt_joints + 3.0
    moved[:, JOINT_NAMES.index("left_wrist"), 1] += 0.1
    assert run(moved)["mpjpe"] == pytest.approx(100 / 24, rel=1e-6)
    # 10% larger about the root: 10% of the mean joint distance to the root
    bigger = run(root + 1.1 * rel)
    assert bigger["mpjpe"] == pytest.approx(
        0.1 * np.linalg.norm(rel, axis=-1).mean() * 1000, rel=1e-6)
    # the right pose at the nominal body size: scale-normalised error 0
    assert run(rel * to_nominal)["mpjpe_scale_norm"] == pytest.approx(0, abs=1e-6)
    # the class-centre poses: MPJPE equals the oracle's; top-5 but not top-1 with shifted ranks
    centres = run(classes.poses(gt_class), topk=topk[:, ::-1])
    assert centres["mpjpe"] == pytest.approx(centres["mpjpe_oracle"], rel=1e-6)
    for p in centres["per_person"].values():
        assert p["mpjpe"] == pytest.approx(p["mpjpe_oracle"], rel=1e-6)
    # the mean training pose for everyone: the mean-pose baseline, per person and overall
    mean = run(np.stack([classes.mean_pose_metres()] * 2) + 2.0)
    expected = np.linalg.norm(classes.mean_pose_metres()[None] - rel, axis=-1).mean(1) * 1000
    assert mean["mpjpe"] == pytest.approx(mean["mpjpe_mean_pose"], rel=1e-6)
    assert mean["mpjpe_mean_pose"] == pytest.approx(expected.mean(), rel=1e-6)
    assert [p["mpjpe_mean_pose"] for p in mean["per_person"].values()] == pytest.approx(expected)
    assert perfect["mpjpe_mean_pose"] == mean["mpjpe_mean_pose"]  # it does not depend on the model
    assert centres["mpjpe_scale_norm"] == pytest.approx(centres["mpjpe_oracle_scale_norm"],
                                                        rel=1e-6)
    assert centres["top1"] == 0 and centres["top5"] == 100
    # one GT person missed: recall 50 %, metrics on the matched one
    half = run(gt_joints[:1], det_boxes=boxes[:1])
    assert half["recall"] == 50 and half["num_matched"] == 1 and half["mpjpe"] == pytest.approx(0)
    assert half["per_person"]["102"] == {"image_id": 1, "detected": False}
    # no detection matches: recall 0, errors undefined (NaN), no crash
    none = run(gt_joints[:1], det_boxes=np.array([[200, 200, 210, 210]], float))
    assert none["recall"] == 0 and none["num_matched"] == 0 and np.isnan(none["mpjpe"])
    # images without detections (top-k of width 1) or without people beside a normal one
    gt[2] = {"boxes": boxes, "joints": gt_joints}
    gt[3] = {"boxes": np.zeros((0, 4)), "joints": np.zeros((0, 24, 3))}
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "poses": np.zeros((0, 24, 3)),
             "topk": np.zeros((0, 1), np.int64)}
    pred = [{"image_id": 1, "boxes": boxes, "scores": np.array([0.9, 0.8]), "poses": gt_joints,
             "topk": np.tile(topk[:, :1], (1, 5))}, {"image_id": 2, **empty},
            {"image_id": 3, **empty, "boxes": boxes[:1], "scores": np.ones(1),
             "poses": gt_joints[:1], "topk": np.zeros((1, 5), np.int64)}]
    mixed = evaluate_pose3d(gt, pred, classes)
    assert mixed["num_gt"] == 4 and mixed["recall"] == 50 and mixed["mpjpe"] == pytest.approx(0)
    # records without ids are keyed <image id>/<index>; a repeated id is an error
    assert list(mixed["per_person"]) == ["101", "102", "2/0", "2/1"]
    gt[2]["ids"] = [101, 7]
    with pytest.raises(ValueError, match="annotation id=101 occurs twice"):
        evaluate_pose3d(gt, pred[:2], classes)


# ---------------------------------------------------------------------------- end to end
def test_train_net_two_iterations_reports_pose3d_metrics(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), "--config-file", str(CONFIG),
         "DATASETS.TRAIN", '("densepose_embedded_mini",)',
         "DATASETS.TEST", '("densepose_embedded_mini",)',
         "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128",
         "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_ITER", "2",
         "MODEL.ROI_POSE3D_HEAD.NUM_CLASSES", str(K), "OUTPUT_DIR", str(out),
         "MODEL.WEIGHTS", ""],  # the pipeline, not the model zoo's backbone, is under test
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert PoseClasses.load(out / "pose3d_classes.npz").num_classes == K  # built on first use
    results = json.loads((out / "eval_results.json").read_text())
    keys = {"mpjpe", "mpjpe_scale_norm", "mpjpe_oracle", "top1", "top5", "recall", "num_gt"}
    assert keys <= set(results["pose3d"]) and "AP" in results["bbox"]
    assert results["pose3d"]["num_gt"] == 38
    metrics = json.loads(next(out.glob("inference/*/pose3d_metrics.json")).read_text())
    assert metrics["headline"] == "mpjpe" and metrics["classes"]["k"] == K
    assert "mpjpe_mean_pose" in results["pose3d"]
    persons = json.loads(next(out.glob("inference/*/pose3d_per_person.json")).read_text())
    mini_ids = {str(a["id"]) for a in json.loads((MINI / "annotations.json").read_text())["annotations"]}
    assert set(persons["persons"]) == mini_ids and persons["classes_digest"] == metrics["classes"]["digest"]
    detected = [p for p in persons["persons"].values() if p["detected"]]
    assert len(detected) == results["pose3d"]["num_matched"]
    assert all(p["mpjpe"] > 0 and p["mpjpe_oracle"] > 0 for p in detected)
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any("loss_pose3d" in r for r in records)
