"""DensePose evaluation: GPS (both normalisations), GPS/GPSm AP via COCOeval, pointwise AUC and
the detectron2 evaluator end to end on the embedded mini split."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from densepose_ext.evaluation import (
    COARSE_REGION_KAPPA,
    PAPER_KAPPA,
    DensePoseEvaluationError,
    auc,
    auc_metrics,
    best_gps_point_errors,
    build_coco_detections,
    collect_gt_points,
    encode_iuv_png,
    error_curve,
    evaluate_densepose_results,
    geodesic_point_similarity,
    gps_per_gt,
    point_kappa,
    prediction_errors,
)

BOX = (10.0, 20.0, 64.0, 48.0)  # integer box: grid cells are exactly image pixels


@pytest.fixture(scope="module")
def body():
    from densepose_ext.body import get_body_model

    return get_body_model()


def _chart_points(body, n, seed=0, part=None):
    """(I, U, V) of n distinct chart vertices (optionally of one part), U/V on the 1/255 grid
    so that the PNG result format carries them exactly."""
    ch = body.charts
    pool = np.flatnonzero(ch.chart_part == part) if part else np.arange(ch.num_chart_vertices)
    ids = np.random.default_rng(seed).choice(pool, n, replace=False)
    uv = np.round(ch.chart_uv[ids] * 255) / 255
    return ch.chart_part[ids].astype(np.int64), uv[:, 0], uv[:, 1]


def _gt_ann(I, U, V, box=BOX, seed=0, ann_id=1, image_id=1):
    """A DensePose-COCO person whose points sit at distinct pixel centres of the box."""
    x0, y0, w, h = box
    cells = np.random.default_rng(seed).choice(int(w) * int(h), len(I), replace=False)
    rows, cols = np.divmod(cells, int(w))
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "bbox": list(box), "area": float(w * h),
        "dp_x": ((cols + 0.5) * 256 / w).tolist(), "dp_y": ((rows + 0.5) * 256 / h).tolist(),
        "dp_I": I.astype(float).tolist(), "dp_U": U.tolist(), "dp_V": V.tolist(),
    }, rows, cols


def _box_iuv(shape, rows, cols, I, U, V, fill_part=0):
    """Box IUV with the given values at (rows, cols); other cells get part ``fill_part``."""
    Ib = np.full(shape, fill_part, np.uint8)
    Ub = np.full(shape, 0.5 if fill_part else 0.0, np.float32)
    Vb = Ub.copy()
    Ib[rows, cols], Ub[rows, cols], Vb[rows, cols] = I, U, V
    return Ib, Ub, Vb


# ---------------------------------------------------------------------- GPS
def test_perfect_prediction_gps_is_one(body):
    I, U, V = _chart_points(body, 60)
    ann, rows, cols = _gt_ann(I, U, V)
    iuv = _box_iuv((48, 64), rows, cols, I, U, V)
    for norm in ("paper", "coarse_part"):
        gps, errors = geodesic_point_similarity(body, ann, BOX, iuv, norm)
        assert gps == pytest.approx(1.0, abs=1e-12) and np.all(errors == 0)


@pytest.mark.parametrize("target", [0.05, 0.15, 0.30])
def test_shifted_prediction_gives_analytic_gps(body, target):
    """Predicted surface points at a known geodesic distance d from the GT ones:
    GPS = mean exp(-d^2 / 2 kappa^2) with kappa = 0.255 (paper) or the coarse-part table."""
    ch, geo = body.charts, body.geodesics
    I, U, V = _chart_points(body, 40, seed=1)
    ann, rows, cols = _gt_ann(I, U, V, seed=1)
    gt_vert = body.iuv_to_vertex(I, U, V)
    # for each GT vertex the chart vertex whose mesh vertex is closest to `target` metres away
    dist = geo[gt_vert][:, ch.chart_to_vertex]  # (P, M)
    pick = np.argmin(np.abs(dist - target), axis=1)
    pI, pU, pV = ch.chart_part[pick], ch.chart_uv[pick, 0], ch.chart_uv[pick, 1]
    pred_vert = body.iuv_to_vertex(pI, pU, pV)
    d = geo[gt_vert, pred_vert]
    assert np.all(np.abs(d - target) < 0.01)  # the body is dense enough to shift by ~target
    iuv = _box_iuv((48, 64), rows, cols, pI, pU, pV)
    gps, errors = geodesic_point_similarity(body, ann, BOX, iuv, "paper")
    np.testing.assert_allclose(errors, d, rtol=1e-6)
    assert gps == pytest.approx(np.mean(np.exp(-d ** 2 / (2 * 0.255 ** 2))), rel=1e-6)
    assert gps == pytest.approx(np.exp(-target ** 2 / (2 * 0.255 ** 2)), abs=0.02)
    gps_c, _ = geodesic_point_similarity(body, ann, BOX, iuv, "coarse_part")
    kappa = COARSE_REGION_KAPPA[np.array([0, 1, 1, 2, 2, 3, 3] + [4] * 4 + [5] * 4 + [6] * 4
                                         + [7] * 4 + [8, 8])[I]]
    assert gps_c == pytest.approx(np.mean(np.exp(-d ** 2 / (2 * kappa ** 2))), rel=1e-6)


def test_paper_kappa_gives_half_at_30cm():
    assert np.exp(-0.3 ** 2 / (2 * PAPER_KAPPA ** 2)) == pytest.approx(0.5, abs=0.002)


def test_coarse_part_kappa_table():
    """Upstream constants: torso .351, hands .107, feet .126, upper legs .237, lower legs .173,
    upper arms .142, lower arms .128, head .150."""
    parts = np.array([1, 2, 3, 4, 5, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 24])
    expected = [.351, .351, .107, .107, .126, .126, .237, .237, .173, .173, .142, .142, .128,
                .128, .150, .150]
    np.testing.assert_allclose(point_kappa(parts, "coarse_part"), expected)
    np.testing.assert_allclose(point_kappa(parts, "paper"), 0.255)
    with pytest.raises(ValueError, match="normalisation"):
        point_kappa(parts, "upstream")


def test_background_prediction_gives_zero(body):
    I, U, V = _chart_points(body, 30)
    ann, _, _ = _gt_ann(I, U, V)
    empty = (np.zeros((48, 64), np.uint8), np.zeros((48, 64), np.float32),
             np.zeros((48, 64), np.float32))
    gps, errors = geodesic_point_similarity(body, ann, BOX, empty, "paper")
    assert gps == 0.0 and np.all(np.isinf(errors))


def test_points_outside_detection_box_are_infinite(body):
    """A detection box covering only the left half of the person: right-half points are inf."""
    I, U, V = _chart_points(body, 50, seed=2)
    ann, rows, cols = _gt_ann(I, U, V, seed=2)
    half = (BOX[0], BOX[1], 32.0, BOX[3])
    left = cols < 32
    iuv = _box_iuv((48, 32), rows[left], cols[left], I[left], U[left], V[left])
    gps, errors = geodesic_point_similarity(body, ann, half, iuv, "paper")
    assert np.all(errors[left] == 0) and np.all(np.isinf(errors[~left]))
    assert gps == pytest.approx(left.mean())


def test_gps_matrix_for_several_people(body):
    """(D,G) GPS of two detections against two persons (one of them without points)."""
    I, U, V = _chart_points(body, 20, seed=3)
    a1, rows, cols = _gt_ann(I, U, V, seed=3, ann_id=1)
    a2 = {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 100, 30, 30], "iscrowd": 0}
    gt = collect_gt_points(body, [a1, a2])
    assert gt.num_points.tolist() == [20, 0]
    good = _box_iuv((48, 64), rows, cols, I, U, V)
    errs = np.stack([prediction_errors(body, gt, BOX, good),
                     prediction_errors(body, gt, (200, 200, 10, 10), good)])
    np.testing.assert_allclose(gps_per_gt(errs, gt, "paper"), [[1, 0], [0, 0]])


def test_bad_gt_points_name_the_record(body):
    ann, _, _ = _gt_ann(*_chart_points(body, 5))
    ann["dp_I"][0] = 30.0
    with pytest.raises(ValueError, match=r"my.json: annotation id=1 .*dp_I"):
        collect_gt_points(body, [ann], source="my.json")


# ---------------------------------------------------------------------- pointwise AUC
def test_auc_of_known_errors():
    e = np.full(10, 0.05)
    assert auc(e, 0.10) == pytest.approx(0.5) and auc(e, 0.20) == pytest.approx(0.75)
    m = auc_metrics(np.array([0.05, np.inf]))
    assert m["auc10"] == pytest.approx(0.25) and m["auc30"] == pytest.approx((1 - 1 / 6) / 2)
    assert auc(np.zeros(3), 0.1) == 1.0
    np.testing.assert_allclose(error_curve([0.0, 0.1, 0.2, np.inf], [0.0, 0.1, 0.15, 1.0]),
                               [0.0, 0.25, 0.5, 0.75])
    with pytest.raises(ValueError):
        auc(np.array([-0.1]), 0.1)


def test_auc_is_exact_integral_of_step_function():
    e = np.random.default_rng(0).uniform(0, 0.4, 200)
    t = np.linspace(0, 0.2, 200001)
    numeric = np.trapezoid(error_curve(e, t), t) / 0.2
    assert auc(e, 0.2) == pytest.approx(numeric, abs=1e-5)


def test_pointwise_uses_best_gps_detection_per_person():
    errors = np.array([[0.1, 0.1, 0.5, np.inf], [0.3, 0.3, 0.0, 0.0]])  # D=2, P=4
    gps = np.array([[0.9, 0.0], [0.2, 0.0]])  # person 2 (2 points) has GPS 0 with both
    out = best_gps_point_errors(errors, gps, np.array([2, 2]))
    np.testing.assert_allclose(out, [0.1, 0.1, np.inf, np.inf])
    assert np.all(np.isinf(best_gps_point_errors(np.zeros((0, 3)), np.zeros((0, 1)), [3])))


# ---------------------------------------------------------------------- AP / AR
def _coco(images, anns):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": 1, "name": "person"}]}
    coco.createIndex()
    return coco


def _result(image_id, box, iuv, score):
    return {"image_id": image_id, "category_id": 1, "bbox": list(box), "score": score,
            "densepose": {"iuv_png": encode_iuv_png(*iuv), "box_size": [iuv[0].shape[1],
                                                                         iuv[0].shape[0]]}}


@pytest.fixture(scope="module")
def toy_eval(body):
    """Two images, three DensePose persons, one person without DensePose; perfect
    detections filling their boxes (mask IoU 1 with the box-shaped GT masks)."""
    images = [{"id": i, "width": 320, "height": 240, "file_name": f"{i}.jpg"} for i in (1, 2)]
    boxes = [(10.0, 20.0, 64.0, 48.0), (150.0, 60.0, 100.0, 120.0), (40.0, 30.0, 120.0, 150.0)]
    anns, results = [], []
    for k, (img, box) in enumerate(zip((1, 1, 2), boxes)):
        I, U, V = _chart_points(body, 40, seed=10 + k)
        ann, rows, cols = _gt_ann(I, U, V, box=box, seed=k, ann_id=k + 1, image_id=img)
        anns.append(ann)
        iuv = _box_iuv((int(box[3]), int(box[2])), rows, cols, I, U, V, fill_part=1)
        results.append(_result(img, box, iuv, 0.9 - 0.1 * k))
    # a person without DensePose annotation, detected with the highest score
    plain = {"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 0,
             "bbox": [200.0, 40.0, 80.0, 160.0], "area": 80.0 * 160}
    anns.append(plain)
    plain_iuv = _box_iuv((160, 80), [], [], [], [], [], fill_part=1)
    results.append(_result(2, (202.0, 42.0, 78.0, 156.0), plain_iuv, 0.99))
    return _coco(images, anns), results


def test_perfect_detections_give_ap_100(body, toy_eval):
    coco_gt, results = toy_eval
    out = evaluate_densepose_results(coco_gt, results, body, "paper", protocol="exact")
    for task in ("densepose_gps", "densepose_gpsm", "densepose_gps_coarse_part"):
        assert out[task]["AP"] == pytest.approx(100.0), task
        assert out[task]["AP50"] == pytest.approx(100.0) and out[task]["AR"] == pytest.approx(100)
    # person 1 (64x48) is medium, the two others large
    assert out["densepose_gps"]["APm"] == pytest.approx(100.0)
    assert out["densepose_gps"]["APl"] == pytest.approx(100.0)
    s = out["densepose_summary"]
    assert s["gps_ap"] == s["gps_ap_paper"] == pytest.approx(100.0) and s["num_points"] == 120
    assert s["auc10"] == s["auc20"] == s["auc30"] == 1.0


def test_missed_person_halves_recall(body, toy_eval):
    coco_gt, results = toy_eval
    # keep only the detection of person 1 (image 1) and the non-DensePose one
    out = evaluate_densepose_results(coco_gt, [results[0], results[3]], body, "paper",
                                     protocol="exact")
    gps = out["densepose_gps"]
    assert gps["AR"] == pytest.approx(100 / 3)
    assert gps["AP"] == pytest.approx(100 * 34 / 101)  # precision 1 up to recall 1/3
    assert out["densepose_pointwise"]["auc10"] == pytest.approx(1 / 3)


def test_background_detections_are_false_positives(body, toy_eval):
    coco_gt, results = toy_eval
    bad = json.loads(json.dumps(results))
    empty = _box_iuv((48, 64), [], [], [], [], [])
    bad.append(_result(1, (10.0, 20.0, 64.0, 48.0), empty, 0.95))  # highest DensePose score
    out = evaluate_densepose_results(coco_gt, bad, body, "paper", protocol="exact")
    assert out["densepose_gps"]["AR"] == pytest.approx(100.0)
    assert out["densepose_gps"]["AP"] < 100.0


def test_empty_results_and_bad_records(body, toy_eval):
    coco_gt, results = toy_eval
    out = evaluate_densepose_results(coco_gt, [], body, protocol="exact")
    assert out["densepose_gps"]["AP"] == 0.0 and out["densepose_pointwise"]["auc10"] == 0.0
    broken = dict(results[0], densepose={"iuv_png": "not base64!"})
    with pytest.raises(DensePoseEvaluationError, match="detection id=1 .*base64"):
        evaluate_densepose_results(coco_gt, [broken], body, protocol="exact")
    with pytest.raises(DensePoseEvaluationError, match="not in the ground truth"):
        build_coco_detections(coco_gt, [dict(results[0], image_id=99)])


def test_ground_truth_is_prepared_once_per_process_and_gives_the_same_numbers(body, toy_eval,
                                                                           monkeypatch):
    from densepose_ext.evaluation import gt_preparation as prep

    coco_gt, results = toy_eval
    fresh = _coco(coco_gt.dataset["images"], coco_gt.dataset["annotations"])  # nothing prepared
    calls = []
    collect = prep.collect_gt_points
    monkeypatch.setattr(prep, "collect_gt_points",
                        lambda body, anns, *a: calls.append([x["id"] for x in anns])
                        or collect(body, anns, *a))
    first = evaluate_densepose_results(fresh, results, body, "paper", protocol="exact")
    again = evaluate_densepose_results(fresh, results[:2], body, "paper", protocol="exact")
    assert calls == [[1, 2, 3, 4]]  # the second evaluation reads what the first prepared
    evaluate_densepose_results(fresh, results, body, "paper", protocol="detectron2")
    assert len(calls) == 2  # another protocol places points otherwise: prepared anew
    assert first == evaluate_densepose_results(coco_gt, results, body, "paper", protocol="exact")
    assert again["densepose_gps"]["AR"] == pytest.approx(200 / 3)  # two of three persons found


def test_prepared_ground_truth_is_kept_in_its_cache_file(body, toy_eval, tmp_path, monkeypatch):
    import os

    from densepose_ext.evaluation import gt_preparation as prep

    coco_gt, results = toy_eval
    fresh = lambda: _coco(coco_gt.dataset["images"], coco_gt.dataset["annotations"])  # noqa: E731
    calls = []
    collect = prep.collect_gt_points
    monkeypatch.setattr(prep, "collect_gt_points",
                        lambda body, anns, *a: calls.append(len(anns)) or collect(body, anns, *a))
    path = tmp_path / "gt.npz"
    first = evaluate_densepose_results(fresh(), results, body, "paper", protocol="exact",
                                       gt_cache_file=str(path))
    assert path.is_file() and calls == [4]
    # a new GT object (a new process) reads the file: same numbers, nothing prepared
    again = evaluate_densepose_results(fresh(), results, body, "paper", protocol="exact",
                                       gt_cache_file=str(path))
    assert again == first and calls == [4]
    path.write_bytes(b"not an npz")  # an unreadable file is ignored and written anew
    assert evaluate_densepose_results(fresh(), results, body, "paper", protocol="exact",
                                      gt_cache_file=str(path)) == first and calls == [4, 4]
    # the file name follows the GT file, the protocol and the body
    js = tmp_path / "gt.json"
    js.write_text("{}")
    name = prep.gt_cache_file(str(js), "exact", body)
    assert name == prep.gt_cache_file(str(js), "exact", body)
    assert name != prep.gt_cache_file(str(js), "detectron2", body)
    os.utime(js, ns=(1, 1))
    assert name != prep.gt_cache_file(str(js), "exact", body)


# ---------------------------------------------------------------------- evaluator end to end
class _ChartOutput(SimpleNamespace):
    def __len__(self):
        return len(self.coarse_segm)


def _perfect_outputs(record):
    """Instances whose chart outputs reproduce the renderer's exact dense IUV of every
    annotated person: square boxes of one side S per image anchored at the GT box corner, so
    that the S x S maps are the box grid itself (the bilinear resize is the identity)."""
    from detectron2.structures import Boxes, Instances

    dense = np.load(record["dense_file"])
    I_img, U_img, V_img, inst = dense["I"], dense["U"], dense["V"], dense["instance"]
    H, W = I_img.shape
    anns = [a for a in record["annotations"] if "dp_x" in a]
    S = int(max(max(a["bbox"][2], a["bbox"][3]) for a in anns))
    n = len(anns)
    coarse, fine = torch.zeros(n, 2, S, S), torch.zeros(n, 25, S, S)
    u, v = torch.zeros(n, 25, S, S), torch.zeros(n, 25, S, S)
    boxes = []
    for k, a in enumerate(anns):
        x0, y0 = int(a["bbox"][0]), int(a["bbox"][1])
        rr, cc = np.meshgrid(np.arange(y0, y0 + S), np.arange(x0, x0 + S), indexing="ij")
        ok = (rr < H) & (cc < W)
        rr, cc = np.minimum(rr, H - 1), np.minimum(cc, W - 1)
        fg = ok & (inst[rr, cc] == a["id"])
        part = np.where(fg, I_img[rr, cc], 0)
        coarse[k, 1] = torch.from_numpy(fg.astype(np.float32))
        fine[k] = torch.nn.functional.one_hot(torch.from_numpy(part.astype(np.int64)), 25
                                              ).permute(2, 0, 1).float()
        u[k] = torch.from_numpy(U_img[rr, cc])[None].expand(25, S, S)
        v[k] = torch.from_numpy(V_img[rr, cc])[None].expand(25, S, S)
        boxes.append([x0, y0, x0 + S, y0 + S])
    instances = Instances((H, W), pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                          scores=torch.linspace(0.9, 0.5, n), pred_classes=torch.zeros(n).long())
    instances.pred_densepose = _ChartOutput(coarse_segm=coarse, fine_segm=fine, u=u, v=v)
    return {"instances": instances}


def test_evaluator_end_to_end_on_embedded_mini(body, tmp_path):
    from detectron2.data import DatasetCatalog

    import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
    from densepose_ext.evaluation import DensePoseEvaluator

    dicts = DatasetCatalog.get("densepose_embedded_mini")
    dicts = [d for d in dicts if any("dp_x" in a for a in d["annotations"])]
    assert len(dicts) >= 4 and all("dense_file" in d for d in dicts)
    evaluator = DensePoseEvaluator("densepose_embedded_mini", output_dir=str(tmp_path),
                                   body_model=body, protocol="exact")  # rendered data
    evaluator.reset()
    for d in dicts:
        evaluator.process([{"image_id": d["image_id"]}], [_perfect_outputs(d)])
    out = evaluator.evaluate()
    s = out["densepose_summary"]
    assert evaluator.normalization == "coarse_part"
    # exact up to the 1/255 UV quantisation of the result format
    assert s["gps_ap"] >= 99 and s["gps_ap_paper"] >= 99 and s["gpsm_ap"] >= 95
    assert s["auc10"] >= 0.97 and s["auc30"] >= s["auc10"]
    for key in ("gps_ap", "gpsm_ap", "auc10", "auc20", "auc30"):
        assert np.isfinite(s[key])
    metrics = json.loads((tmp_path / "densepose_metrics.json").read_text())
    assert metrics["normalization"]["name"] == "coarse_part"
    assert metrics["protocol"]["name"] == "exact"
    assert metrics["densepose_summary"]["gps_ap"] == pytest.approx(s["gps_ap"])
    saved = json.loads((tmp_path / "coco_densepose_results.json").read_text())
    assert len(saved) == sum(len([a for a in d["annotations"] if "dp_x" in a]) for d in dicts)
    assert set(saved[0]) == {"image_id", "category_id", "bbox", "score", "densepose"}
    assert saved[0]["category_id"] == 1


def test_evaluator_uses_official_data_files_from_metadata(body, toy_eval, tmp_path):
    """A dataset whose metadata names a densepose_data_dir is evaluated with the geodesics of
    those official files (here: the embedded body exported in that format)."""
    from detectron2.data import MetadataCatalog

    from densepose_ext.evaluation import DensePoseEvaluator, load_body_for_dataset

    coco_gt, results = toy_eval
    json_file = tmp_path / "gt.json"
    json_file.write_text(json.dumps(coco_gt.dataset))
    body.export(tmp_path / "densepose_data")
    name = "densepose_test_eval_official"
    MetadataCatalog.get(name).set(json_file=str(json_file),
                                  densepose_data_dir=str(tmp_path / "densepose_data"),
                                  thing_dataset_id_to_contiguous_id={1: 0})
    try:
        official = load_body_for_dataset(name)
        assert official is not body and official.num_vertices == body.num_vertices
        evaluator = DensePoseEvaluator(name, distributed=False, normalization="paper",
                                       protocol="exact")
        evaluator._predictions = [{"image_id": i, "results": [r for r in results
                                                             if r["image_id"] == i]}
                                  for i in (1, 2)]
        out = evaluator.evaluate()
        assert out["densepose_gps"]["AP"] == pytest.approx(100.0)
        assert out["densepose_summary"]["gps_ap_coarse_part"] == pytest.approx(100.0)
    finally:
        MetadataCatalog.remove(name)


def test_evaluator_needs_json_file():
    from detectron2.data import MetadataCatalog

    from densepose_ext.evaluation import DensePoseEvaluator

    MetadataCatalog.get("densepose_test_eval_nojson").set(thing_classes=["person"])
    try:
        with pytest.raises(DensePoseEvaluationError, match="json_file"):
            DensePoseEvaluator("densepose_test_eval_nojson")
        with pytest.raises(ValueError, match="normalisation"):
            DensePoseEvaluator("densepose_test_eval_nojson", normalization="kappa")
    finally:
        MetadataCatalog.remove("densepose_test_eval_nojson")
