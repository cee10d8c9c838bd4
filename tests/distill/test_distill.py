"""Ground-truth interpolation: dense targets from a teacher (masked, PNG round trip, resumable),
the ``_interpolated`` dataset, dense points in the mapper (flips, masks) and target metrics."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.utils.events import EventStorage

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
import densepose_ext.modeling  # noqa: F401  (registers the ROI heads)
from densepose_ext.data import DensePoseDatasetError, DensePoseDatasetMapper
from densepose_ext.data.densepose_coco import load_densepose_coco_json
from densepose_ext.structures import DENSE_TARGET_KEY, DenseIUV, DensePoseData, decode_dp_masks
from distill import interpolate
from densepose_ext.data.interpolated import (
    InterpolatedDatasetError,
    read_params,
    register_all_interpolated,
    register_interpolated,
)
from distill.dense_targets import person_mask_in_frame
from distill.evaluate_targets import evaluate_targets
from distill.interpolate import (
    ExactTargets,
    InterpolationError,
    TeacherTargets,
    annotated_persons,
    interpolate_dataset,
)
from toys import REPO, toy_transform_data

CONFIG = REPO / "configs" / "embedded" / "densepose_rcnn_R_18_GN_FPN.yaml"
MINI = "densepose_embedded_mini"
TINY = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One compute thread: on a shared 2-core machine two threads contending with other jobs
    made the overfitting test 20x slower (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _model(opts=TINY, seed=0):
    from detectron2.modeling import build_model

    from densepose_ext.config import setup_densepose_cfg

    cfg = setup_densepose_cfg(str(CONFIG), opts)
    torch.manual_seed(seed)
    return build_model(cfg), cfg


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """`python -m distill.interpolate` (in process) with a random R-CNN teacher on mini."""
    root = tmp_path_factory.mktemp("teacher")
    model, _ = _model()
    weights = root / "teacher.pth"
    torch.save({"model": model.state_dict()}, weights)
    out = root / "out"
    summary = interpolate.main([
        "--config-file", str(CONFIG), "--weights", str(weights), "--dataset", MINI,
        "--out", str(out), "--no-progress", "--opts", *TINY])
    return out, summary


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    """The renderer's exact labels written as targets of mini, at the default location of a
    separate interpolation root."""
    root = tmp_path_factory.mktemp("interpolated")
    out = root / MINI
    summary = interpolate_dataset(MINI, out, ExactTargets(), "exact", progress=False)
    return out, summary


def _records_by_ann(out_dir):
    data = json.loads((out_dir / "annotations.json").read_text())
    return {a["id"]: a for a in data["annotations"]}


def _interpolated_records(out_dir):
    """Dataset dicts of an interpolation output (the mini images, targets from out_dir)."""
    return load_densepose_coco_json(out_dir / "annotations.json",
                                    MetadataCatalog.get(MINI).image_root)


def test_teacher_targets_are_zero_outside_the_gt_mask_and_labelled_inside(teacher_run):
    out, summary = teacher_run
    assert summary["persons"] == summary["written"] == 38 and summary["skipped"] == 0
    anns = _records_by_ann(out)
    assert all(DENSE_TARGET_KEY in a for a in anns.values())
    for a in anns.values():
        t = DenseIUV.from_png_file(out / a[DENSE_TARGET_KEY])
        assert t.size == 256
        mask = decode_dp_masks(a["dp_masks"]) > 0
        labelled = t.i.numpy() > 0
        assert (labelled == mask).all()  # a part inside, nothing outside
        assert (t.u.numpy()[~mask] == 0).all() and (t.v.numpy()[~mask] == 0).all()
    params = read_params(out)
    assert params["complete"] and params["teacher_id"].startswith("sha256:")


def test_written_png_round_trips_to_the_teacher_labels(teacher_run):
    """Targets computed again in memory equal the files: I exactly, U/V within the PNG's
    quantisation (1/510) plus float noise (the file came from a batch of 4 images)."""
    out, _ = teacher_run
    model, cfg = _model()
    model.eval()
    rec = DatasetCatalog.get(MINI)[0]
    anns = annotated_persons(rec)
    fresh = TeacherTargets(model, cfg)([(rec, anns)])[0]
    for a, t in zip(anns, fresh):
        on_disk = DenseIUV.from_png_file(out / "targets" / f"{a['id']}.png")
        assert torch.equal(on_disk.i, t.i)
        assert (on_disk.u - t.u).abs().max() <= 1 / 255
        assert (on_disk.v - t.v).abs().max() <= 1 / 255
        again = DenseIUV.from_png_bytes(t.to_png_bytes())
        assert torch.equal(again.i, t.i) and (again.u - t.u).abs().max() <= 0.5 / 255 + 1e-6


def test_teacher_grid_is_resampled_onto_the_gt_box_frame():
    """A teacher grid over another box than the target's (a GT box clipped to the image) is
    read at the target cells' image positions; outside the teacher box its border holds."""
    from densepose_ext.structures import DensePoseChartOutput
    from distill.dense_targets import chart_outputs_to_targets

    S, T = 8, 16
    fine = torch.zeros(1, 25, S, S)
    fine[0, 1, :, : S // 2] = 5.0  # part 1 on the left half of the teacher box
    fine[0, 2, :, S // 2:] = 5.0  # part 2 on the right half
    u = torch.linspace(0, 1, S).expand(1, 25, S, S).contiguous()  # U grows to the right
    out = DensePoseChartOutput(torch.zeros(1, 2, S, S), fine, u, torch.zeros(1, 25, S, S))
    mask = torch.ones(1, T, T, dtype=torch.bool)
    mask[0, 0, 0] = False
    same = chart_outputs_to_targets(out, mask, torch.tensor([[0.0, 0, 100, 100]]),
                                    torch.tensor([[0.0, 0, 100, 100]]))[0]
    assert (same.i[1:, : T // 2] == 1).all() and (same.i[:, T // 2:] == 2).all()
    assert same.i[0, 0] == 0 and same.u[0, 0] == 0  # outside the mask
    shifted = chart_outputs_to_targets(out, mask, torch.tensor([[0.0, 0, 100, 100]]),
                                       torch.tensor([[50.0, 0, 150, 100]]))[0]
    assert (shifted.i[1:] == 2).all()  # target cells see the right half, then its border
    assert torch.allclose(shifted.u[1:, T // 2:], torch.ones(T - 1, T // 2))
    assert torch.allclose(shifted.u[1:, : T // 2], same.u[1:, T // 2:])


def test_resume_skips_valid_targets_and_rewrites_broken_ones(exact_run, tmp_path):
    out = tmp_path / "exact"
    first = interpolate_dataset(MINI, out, ExactTargets(), "exact", progress=False)
    assert first["written"] == 38
    files = sorted((out / "targets").glob("*.png"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    files[0].write_bytes(b"truncated")  # an interrupted or damaged target
    files[1].unlink()
    again = interpolate_dataset(MINI, out, ExactTargets(), "exact", progress=False)
    assert again["written"] == 2 and again["skipped"] == 36
    assert all(p.stat().st_mtime_ns == stamps[p] for p in files[2:])
    assert DenseIUV.from_png_file(files[0]).size == 256
    # another source or size in the same directory is refused, naming the difference
    with pytest.raises(InterpolationError, match="size: 256 there, 128 now"):
        interpolate_dataset(MINI, out, ExactTargets(128), "exact", size=128, progress=False)


def test_interpolated_dataset_registers_in_a_fresh_process(exact_run):
    """A process that only knows the interpolation root gets `<dataset>_interpolated` with
    the source's images and metadata and the dense field on every annotated person."""
    out, _ = exact_run
    code = (
        "import json, synthesis.builtin_datasets\n"
        "from detectron2.data import DatasetCatalog, MetadataCatalog\n"
        f"recs = DatasetCatalog.get('{MINI}_interpolated')\n"
        f"m = MetadataCatalog.get('{MINI}_interpolated')\n"
        "anns = [a for r in recs for a in r['annotations']]\n"
        "print(json.dumps([len(recs), sum('dp_dense_file' in a for a in anns), m.body_model,\n"
        "    m.image_root, m.interpolated_from, recs[0]['file_name'], anns[0]['dp_dense_file']]))\n"
    )
    env = dict(os.environ, DENSEPOSE_INTERPOLATED_ROOT=str(out.parent))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n, n_dense, body, image_root, source, file_name, target = json.loads(
        proc.stdout.strip().splitlines()[-1])
    assert (n, n_dense, body, source) == (16, 38, "embedded", MINI)
    assert image_root == MetadataCatalog.get(MINI).image_root
    assert file_name.startswith(image_root) and Path(target).is_file()
    assert Path(target).parent == out / "targets"


def test_register_interpolated_and_its_errors(exact_run, tmp_path):
    out, _ = exact_run
    name = register_interpolated("densepose_test_distill_exact", out)
    recs = DatasetCatalog.get(name)
    ann = recs[0]["annotations"][0]
    assert Path(ann[DENSE_TARGET_KEY]).is_absolute() and "dp_x" in ann
    meta, source = MetadataCatalog.get(name), MetadataCatalog.get(MINI)
    assert meta.keypoint_flip_map == source.keypoint_flip_map and meta.body_model == "embedded"
    with pytest.raises(InterpolatedDatasetError, match="not a ground-truth interpolation output"):
        register_interpolated(None, tmp_path)
    # an unfinished run is not registered by the scan, and refused when named
    partial = tmp_path / "root" / "partial"
    partial.mkdir(parents=True)
    params = dict(read_params(out), complete=False)
    (partial / "interpolation.json").write_text(json.dumps(params))
    assert register_all_interpolated(tmp_path / "root") == []
    with pytest.raises(InterpolatedDatasetError, match="incomplete"):
        register_interpolated(None, partial)


def test_dense_target_field_is_validated_by_the_loader(exact_run, tmp_path):
    out, _ = exact_run
    data = json.loads((out / "annotations.json").read_text())
    data["annotations"][1][DENSE_TARGET_KEY] = "targets/missing.png"
    bad = out / "bad.json"  # beside the targets: relative paths resolve against the json
    bad.write_text(json.dumps(data))
    image_root = MetadataCatalog.get(MINI).image_root
    try:
        with pytest.raises(DensePoseDatasetError,
                           match=r"bad.json: annotation id=\d+ .*missing.png"):
            load_densepose_coco_json(bad, image_root)
        data["annotations"][1][DENSE_TARGET_KEY] = 7
        bad.write_text(json.dumps(data))
        with pytest.raises(DensePoseDatasetError, match="dp_dense_file must be a non-empty path"):
            load_densepose_coco_json(bad, image_root)
    finally:
        bad.unlink()


def _mapper(dense_points, flip):
    augs = [T.RandomFlip(prob=1.0, horizontal=True)] if flip else []
    return DensePoseDatasetMapper(True, augmentations=augs, image_format="BGR",
                                  transform_data=toy_transform_data(), dense_points=dense_points)


def test_flipped_dense_points_are_the_flipped_target(exact_run):
    """Every point drawn from the flipped target equals the flipped point of the unflipped
    target: position mirrored, (I, U, V) through the flip tables."""
    out, _ = exact_run
    rec = _interpolated_records(out)[0]
    td = toy_transform_data()
    data = _mapper(10 ** 6, flip=True)(rec)["instances"].gt_densepose
    for ann, d in zip(rec["annotations"], data):
        target = DenseIUV.from_png_file(ann[DENSE_TARGET_KEY])
        n_sparse = len(ann["dp_x"])
        assert len(d) == n_sparse + int((target.i > 0).sum())  # every labelled cell drawn
        assert d.dense is None  # passed on as points only
        x, y = d.x[n_sparse:], d.y[n_sparse:]
        rows = torch.floor(y).long()
        cols = 255 - torch.floor(x).long()  # the cell that was mirrored onto this one
        i, u, v = td.flip_iuv(target.i[rows, cols], target.u[rows, cols], target.v[rows, cols])
        assert torch.equal(d.i[n_sparse:], i)
        assert torch.allclose(d.u[n_sparse:], u) and torch.allclose(d.v[n_sparse:], v)
        assert torch.allclose(x, 256 - (cols.float() + 0.5))
        # the sparse points are flipped as before
        sparse = DensePoseData.from_annotation(ann).hflip(td)
        assert torch.allclose(d.x[:n_sparse], sparse.x) and torch.equal(d.i[:n_sparse], sparse.i)


@pytest.mark.parametrize("flip", [False, True])
def test_sampled_dense_points_lie_inside_the_mask(exact_run, flip):
    out, _ = exact_run
    recs = _interpolated_records(out)
    torch.manual_seed(0)
    for rec in recs[:4]:
        data = _mapper(50, flip)(rec)["instances"].gt_densepose
        for ann, d in zip(rec["annotations"], data):
            n_sparse = len(ann["dp_x"])
            assert len(d) == n_sparse + 50
            rows, cols = torch.floor(d.y).long(), torch.floor(d.x).long().clamp(max=255)
            assert (d.segm[rows[n_sparse:], cols[n_sparse:]] > 0).all()
            assert (d.i[n_sparse:] > 0).all()
            d.validate()
    # without dense points the targets are not even read
    plain = DensePoseDatasetMapper(True, augmentations=[], image_format="BGR", dense_points=0)
    d = plain(dict(recs[0], annotations=[dict(recs[0]["annotations"][0],
                                              **{DENSE_TARGET_KEY: "/nonexistent.png"})]))
    assert len(d["instances"].gt_densepose[0]) == len(recs[0]["annotations"][0]["dp_x"])


def test_bad_target_png_names_the_file_and_annotation(exact_run, tmp_path):
    out, _ = exact_run
    rec = _interpolated_records(out)[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    ann = dict(rec["annotations"][0], **{DENSE_TARGET_KEY: str(broken)})
    with pytest.raises(DensePoseDatasetError, match=r"annotation id=\d+: .*broken.png"):
        _mapper(10, flip=False)(dict(rec, annotations=[ann]))


def test_segmentation_mask_source_agrees_with_dp_masks():
    rec = DatasetCatalog.get(MINI)[0]
    for ann in annotated_persons(rec):
        hw = (rec["height"], rec["width"])
        a = person_mask_in_frame(ann, hw, 256, "dp_masks")
        b = person_mask_in_frame(ann, hw, 256, "segmentation")
        assert (a == b).mean() > 0.97  # polygons vs. the rendered mask: boundary cells only
        small = person_mask_in_frame(ann, hw, 64, "dp_masks")
        assert small.shape == (64, 64) and (small == a[2::4, 2::4]).all()


def test_training_step_on_interpolated_data_uses_dense_points(exact_run):
    out, _ = exact_run
    recs = _interpolated_records(out)
    model, _ = _model(TINY + ["INPUT.DENSEPOSE_DENSE_POINTS", "30"])
    mapper = DensePoseDatasetMapper(True, augmentations=[T.ResizeShortestEdge(128, 256)],
                                    image_format="BGR", dense_points=30)
    batch = [mapper(r) for r in recs[:2]]
    sparse = [len(a["dp_x"]) for r in recs[:2] for a in r["annotations"]]
    assert [len(d) for b in batch for d in b["instances"].gt_densepose] == [n + 30 for n in sparse]
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values()) and "loss_densepose_I" in losses


def test_teacher_trained_on_points_agrees_with_them_densely():
    """Briefly overfit the R-CNN DensePose branch on two images (their GT boxes are among the
    proposals); the dense labels it gives then match the annotated parts at most points."""
    model, cfg = _model(TINY + ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
                                "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
                                "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50"])
    recs = DatasetCatalog.get(MINI)[:2]
    mapper = DensePoseDatasetMapper(True, augmentations=[T.ResizeShortestEdge(128, 256)],
                                    image_format="BGR")
    batch = [mapper(r) for r in recs]
    for name, p in model.named_parameters():  # a fixed random backbone is enough to overfit
        p.requires_grad_(name.startswith("roi_heads.densepose"))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)

    def point_accuracy():
        model.eval()
        items = [(r, annotated_persons(r)) for r in recs]
        hits = []
        for (rec, anns), targets in zip(items, TeacherTargets(model, cfg)(items)):
            for a, t in zip(anns, targets):
                x = np.clip(np.floor(a["dp_x"]).astype(int), 0, 255)
                y = np.clip(np.floor(a["dp_y"]).astype(int), 0, 255)
                hits.append(t.i.numpy()[y, x] == np.asarray(a["dp_I"]))
        return np.concatenate(hits).mean()

    before = point_accuracy()
    model.train()
    with EventStorage(0):
        for _ in range(100):
            losses = model(batch)
            loss = sum(v for k, v in losses.items() if k.startswith("loss_densepose"))
            opt.zero_grad()
            loss.backward()
            opt.step()
    after = point_accuracy()
    assert before < 0.3 and after > 0.8, (before, after)  # measured: 0.03 -> 0.96


def test_evaluate_targets_exact_is_perfect_and_random_teacher_is_not(exact_run, teacher_run):
    metrics = evaluate_targets(MINI, exact_run[0])
    assert metrics["persons"] == 38 and metrics["persons_without_target"] == 0
    dense = metrics["dense"]
    assert dense["count"] > 10000
    assert dense["part_accuracy"] == 1.0 and dense["coverage"] == 1.0
    assert dense["auc10"] > 0.98  # U, V quantised to 1/255 move a few points to a neighbour
    assert metrics["points"]["part_accuracy"] == 1.0
    rand = evaluate_targets(MINI, teacher_run[0])
    assert rand["dense"]["coverage"] == 1.0
    assert rand["dense"]["part_accuracy"] < 0.3 and rand["dense"]["auc10"] < 0.3
