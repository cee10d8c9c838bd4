"""The model-fitting baseline: differentiable keypoints, the assumed camera, the training-only
pose prior, recovery of a known body from its projected keypoints, the resumable command and
its results in the evaluator's format, and clear errors for bad keypoint files."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO
from scipy.spatial.transform import Rotation

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.evaluation import decode_iuv_png, evaluate_densepose_results
from densepose_ext.evaluation.evaluator import RESULTS_FILE, load_body_for_dataset
from fitting import pipeline
from fitting.__main__ import _run, main
from fitting.body import KeypointBody
from fitting.camera import assumed_camera, assumed_focal_length, project
from fitting.inputs import FittingError, predicted_keypoints
from fitting.optimize import BodyFitter, FitSettings
from fitting.prior import DEFAULT_PRIOR_POSES, PosePrior, training_poses
from fitting.render import pose_vertices
from synthesis.annotate import dense_maps
from synthesis.rasterize import rasterize
from synthesis.scene import load_body_assets, sample_scene
from synthesis.smpl_poser import SMPLPoser
from toys import embedded_split_dir

MINI = "densepose_embedded_mini"
#: prior data of the fast tests: cheap to make and a training source (no held-out motion)
TEST_PRIOR = "motions_train"
# Floors of the recovery test (6 people of the renderer's distribution, the default 200 steps),
# from measurements with margin: root-aligned MPJPE 92 mm and same-part agreement on the true
# silhouette 0.85 for this test's people (98-134 mm and 0.82-0.87 for other seeds).
MAX_MPJPE_MM = 120.0
MIN_PART_AGREEMENT = 0.78


@pytest.fixture(scope="module")
def mini_dicts():
    embedded_split_dir(MINI)
    return DatasetCatalog.get(MINI)


def _people_in_camera(seed: int, n: int, size: int = 256):
    """``n`` people drawn as the renderer draws them, moved into their camera's frame: SMPL
    parameters (betas, body pose, global orient, transl) as seen by that camera."""
    body = load_body_assets()
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("betas", "body_pose", "global_orient", "transl")}
    for _ in range(n):
        scene = sample_scene(rng, body, size, size, max_people=1)
        person, cam = scene.people[0], scene.camera
        root = person.joints[0] - person.transl  # the rest root joint (orientation pivot)
        out["betas"].append(person.betas)
        out["body_pose"].append(person.body_pose)
        out["global_orient"].append(
            (Rotation.from_matrix(cam.R) * Rotation.from_rotvec(person.global_orient)).as_rotvec())
        out["transl"].append(cam.R @ (root + person.transl) + cam.t - root)
    return {k: np.asarray(v) for k, v in out.items()}


def test_keypoint_body_matches_the_posed_mesh():
    rng = np.random.default_rng(0)
    people = _people_in_camera(1, 3)
    people["betas"] = rng.normal(0, 1, people["betas"].shape)
    full = SMPLPoser().pose(np.concatenate([people["global_orient"], people["body_pose"]], 1),
                            people["transl"], people["betas"])
    body = KeypointBody(torch.float64)
    t = {k: torch.as_tensor(v) for k, v in people.items()}
    args = (t["betas"], t["body_pose"], t["global_orient"], t["transl"])
    np.testing.assert_allclose(body(*args).numpy(), full.keypoints, atol=1e-9)
    np.testing.assert_allclose(body.joints(*args).numpy(), full.joints, atol=1e-9)


def test_assumed_camera_depends_on_the_image_size_only():
    cam = assumed_camera(320, 240)
    assert cam.K[0, 2] == 160 and cam.K[1, 2] == 120 and cam.K[0, 0] == cam.K[1, 1]
    assert cam.K[0, 0] == pytest.approx(assumed_focal_length(240, 320))
    # 50 degrees across the longer side: inside the embedded renderer's 35-65 degree range
    assert 0.5 * 320 / np.tan(np.radians(32.5)) < cam.K[0, 0] < 0.5 * 320 / np.tan(np.radians(17.5))
    pts = np.array([[[0.3, -0.2, 3.0], [-0.5, 0.4, 5.0]]])
    uv, _ = cam.project(pts[0])
    got = project(torch.as_tensor(pts), torch.tensor([cam.K[0, 0]]), torch.tensor([[160.0, 120.0]]))
    np.testing.assert_allclose(got[0].numpy(), uv, atol=1e-9)


def test_prior_is_learnt_from_training_poses_only(tmp_path, mini_dicts):
    assert DEFAULT_PRIOR_POSES == "densepose_embedded_train"
    # a dataset's people: exactly its SMPL body poses, never another split's
    mini_json = MetadataCatalog.get(MINI).json_file
    anns = json.loads(open(mini_json).read())["annotations"]
    expected = np.array([a["smpl"]["body_pose"] for a in anns])
    poses = training_poses(MINI, evaluated_dataset="densepose_embedded_val")
    np.testing.assert_array_equal(poses, expected)
    prior = PosePrior.fit(poses, MINI)
    np.testing.assert_allclose(prior.mean, expected.mean(0))
    assert prior.num_poses == len(expected)
    assert (prior.lower <= expected.min(0)).all() and (prior.upper >= expected.max(0)).all()
    # the evaluated data and the held-out motions are refused
    with pytest.raises(ValueError, match="being evaluated"):
        training_poses(MINI, evaluated_dataset=MINI)
    for held_out in ("motions_test", "motions", "run"):
        with pytest.raises(ValueError, match="held-out"):
            training_poses(held_out)
    assert training_poses(TEST_PRIOR).shape[1] == 69
    # the Gaussian scores the mean pose best and its nll is the whitened half squared norm
    z = torch.as_tensor(np.stack([prior.mean, prior.mean + 0.3]))
    nll = prior.nll(z).numpy()
    assert nll[0] == pytest.approx(0.0, abs=1e-9) and nll[1] > 0
    assert prior.range_penalty(torch.as_tensor(expected)).abs().max() == 0


def test_fit_recovers_a_known_body_from_its_keypoints():
    """People drawn as the renderer draws them, projected by the assumed camera: the fit from
    their 17 keypoints alone recovers their joints and the parts they show."""
    size, n = 256, 6
    people = _people_in_camera(7, n, size)
    poser = SMPLPoser()
    truth = poser.pose(np.concatenate([people["global_orient"], people["body_pose"]], 1),
                       people["transl"], people["betas"])
    cam = assumed_camera(size, size)
    uv, _ = cam.project(truth.keypoints)
    extent = (uv.max(1) - uv.min(1)).max(1)
    prior = PosePrior.fit(training_poses("random"), "random")
    fits = BodyFitter(prior, FitSettings()).fit(
        uv, np.ones((n, 17)), np.full(n, cam.K[0, 0]), np.tile([size / 2, size / 2], (n, 1)),
        extent, uv[:, :, 1].max(1) - uv[:, :, 1].min(1), seed=0)
    assert np.median(fits.reprojection_px) < 1.5
    mpjpe = 1000 * np.linalg.norm((fits.joints - fits.joints[:, :1])
                                  - (truth.joints - truth.joints[:, :1]), axis=-1).mean()
    assert mpjpe < MAX_MPJPE_MM, mpjpe
    body = load_body_assets()
    fitted = pose_vertices(fits)
    agree = []
    for k in range(n):
        true_i = dense_maps(rasterize([truth.vertices[k]], body.faces, cam), body).I
        fit_i = dense_maps(rasterize([fitted[k]], body.faces, cam), body).I
        agree.append((fit_i[true_i > 0] == true_i[true_i > 0]).mean())
    assert np.mean(agree) > MIN_PART_AGREEMENT, agree


def test_fit_is_deterministic_and_per_person():
    people = _people_in_camera(3, 2)
    truth = SMPLPoser().pose(np.concatenate([people["global_orient"], people["body_pose"]], 1),
                             people["transl"], people["betas"])
    cam = assumed_camera(256, 256)
    uv, _ = cam.project(truth.keypoints)
    prior = PosePrior.fit(training_poses(TEST_PRIOR), TEST_PRIOR)
    fitter = BodyFitter(prior, FitSettings(iters=15, rigid_iters=10))
    args = (np.ones((2, 17)), np.full(2, cam.K[0, 0]), np.full((2, 2), 128.0), np.full(2, 150.0),
            np.full(2, 150.0))
    a = fitter.fit(uv, *args, seed=4)
    b = fitter.fit(uv, *args, seed=4)
    np.testing.assert_array_equal(a.body_pose, b.body_pose)
    # a person's fit does not depend on who else is in the batch
    alone = fitter.fit(uv[:1], *(x[:1] for x in args), seed=4)
    np.testing.assert_allclose(alone.body_pose[0], a.body_pose[0], atol=1e-4)


def _run_mini(out, **kwargs):
    opts = dict(keypoints="gt", iters=5, chunk=1, max_images=2, prior_poses=TEST_PRIOR,
                progress=False)
    opts.update(kwargs)
    return pipeline.run_fitting(MINI, out, **opts)


def test_resume_skips_finished_chunks_and_refuses_other_settings(tmp_path, mini_dicts,
                                                                 monkeypatch):
    out = tmp_path / "fit"
    first = _run_mini(out)
    chunk0, chunk1 = pipeline.chunk_path(out, 0), pipeline.chunk_path(out, 1)
    assert chunk0.is_file() and chunk1.is_file()
    before = chunk0.read_bytes()
    chunk1.unlink()  # as if the run had stopped after the first chunk
    calls = []
    real = pipeline._fit_chunk
    monkeypatch.setattr(pipeline, "_fit_chunk", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    again = _run_mini(out)
    assert [[img["image_id"] for img in c] for c in calls] == [[mini_dicts[1]["image_id"]]]
    assert chunk0.read_bytes() == before and chunk1.is_file()
    assert again["densepose_summary"] == first["densepose_summary"]
    with pytest.raises(FittingError, match="fit.iters"):
        _run_mini(out, iters=6)
    with pytest.raises(FittingError, match="chunk"):
        _run_mini(out, chunk=2)


def test_cli_on_mini_writes_results_the_evaluator_reads(tmp_path, mini_dicts, capsys):
    out = tmp_path / "cli"
    assert main(["--dataset", MINI, "--out", str(out), "--keypoints", "gt", "--max-images", "2",
                 "--iters", "10", "--chunk", "2", "--prior-poses", TEST_PRIOR,
                 "--no-progress"]) == 0
    assert "GPS AP" in capsys.readouterr().out
    results = json.loads((out / RESULTS_FILE).read_text())
    image_ids = [d["image_id"] for d in mini_dicts[:2]]
    num_gt = sum(len(d["annotations"]) for d in mini_dicts[:2])
    assert 0 < len(results) <= num_gt
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score", "densepose"}
        I, U, V = decode_iuv_png(r["densepose"]["iuv_png"])
        assert I.shape == (r["bbox"][3], r["bbox"][2]) and I.max() > 0
        assert r["densepose"]["box_size"] == [r["bbox"][2], r["bbox"][3]]
    metrics = json.loads((out / pipeline.METRICS_FILE).read_text())
    assert metrics["fit"]["num_persons_fitted"] == num_gt
    assert metrics["fit"]["seconds_per_person"] > 0
    assert metrics["protocol"]["name"] == "exact" and metrics["prior"]["source"] == TEST_PRIOR
    # the evaluator scores the written file unchanged, to the same numbers
    json_file = MetadataCatalog.get(MINI).json_file
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(json_file)
    again = evaluate_densepose_results(coco, results, load_body_for_dataset(MINI),
                                       img_ids=image_ids, protocol="exact")
    assert again["densepose_summary"]["gps_ap"] == pytest.approx(
        metrics["densepose_summary"]["gps_ap"])
    assert metrics["densepose_summary"]["auc10"] > 0.1


def _keypoint_results(dicts):
    """A keypoint model's results file made from the ground truth (COCO pixel indices)."""
    out = []
    for d in dicts:
        for a in d["annotations"]:
            kp = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
            kp[:, :2] -= 0.5
            kp[:, 2] = np.where(kp[:, 2] > 0, 0.8, 0.01)
            out.append({"image_id": d["image_id"], "category_id": 1, "bbox": list(a["bbox"]),
                        "score": 0.9, "keypoints": kp.ravel().tolist()})
    return out


def test_predicted_keypoints_are_matched_by_image_and_score(tmp_path, mini_dicts):
    records = _keypoint_results(mini_dicts[:3])
    records[0]["score"] = 0.01
    path = tmp_path / "coco_instances_results.json"
    path.write_text(json.dumps(records))
    persons, skipped = predicted_keypoints(path, mini_dicts[:2], min_score=0.05,
                                           all_image_ids=[d["image_id"] for d in mini_dicts])
    kept = [p for ps in persons.values() for p in ps]
    in_two = sum(len(d["annotations"]) for d in mini_dicts[:2])
    assert len(kept) + skipped == in_two - 1  # one below the score; the third image unused
    gt = {a["id"]: a for d in mini_dicts[:2] for a in d["annotations"]}
    first = persons[mini_dicts[0]["image_id"]][0]
    ann = list(gt.values())[first.source]
    np.testing.assert_allclose(first.keypoints, np.reshape(ann["keypoints"], (17, 3))[:, :2],
                               atol=1e-9)
    assert first.weights.max() == 1.0
    # end to end: the predicted persons are fitted and scored, the file's hash recorded
    metrics = _run_mini(tmp_path / "pred", keypoints=str(path), max_images=1, iters=3,
                        min_score=0.05)
    assert metrics["keypoints"] == str(path.resolve())
    assert metrics["fit"]["num_persons_fitted"] == len(persons[mini_dicts[0]["image_id"]])
    settings = json.loads((tmp_path / "pred" / pipeline.SETTINGS_FILE).read_text())
    assert len(settings["keypoints_sha256"]) == 64 and settings["min_score"] == 0.05


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read keypoint results"),
    (json.dumps({"image_id": 1}), "expected a list"),
    ("BAD_KEYPOINTS", r"record 1 \(image_id=.*keypoints must be a list of 51"),
    ("UNKNOWN_IMAGE", r"record 0 \(image_id=123456.*not in the dataset"),
])
def test_bad_keypoint_file_is_one_error_naming_it(tmp_path, mini_dicts, content, message):
    path = tmp_path / "kp_results.json"
    if content == "BAD_KEYPOINTS":
        records = _keypoint_results(mini_dicts[:1])
        records[1]["keypoints"] = records[1]["keypoints"][:50]
        content = json.dumps(records)
    elif content == "UNKNOWN_IMAGE":
        records = _keypoint_results(mini_dicts[:1])
        records[0]["image_id"] = 123456
        content = json.dumps(records)
    path.write_text(content)
    with pytest.raises(FittingError, match=message) as info:
        predicted_keypoints(path, mini_dicts, min_score=0.0)
    assert str(path) in str(info.value)


def test_cli_reports_a_corrupt_keypoint_file(tmp_path, mini_dicts, monkeypatch, capsys):
    path = tmp_path / "broken.json"
    path.write_text("[{\"image_id\": 1,")
    monkeypatch.setattr("sys.argv", ["fitting", "--dataset", MINI, "--out", str(tmp_path / "o"),
                                     "--keypoints", str(path), "--prior-poses", TEST_PRIOR])
    with pytest.raises(SystemExit) as info:
        _run()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and "Traceback" not in err
