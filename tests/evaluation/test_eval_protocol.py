"""Evaluation protocols: the ``detectron2`` protocol against the official evaluator's formulas
(written out independently here), its ignore rules on constructed cases, its quantisation and
GT masks, and the vectorised pair computation against the per-pair one for both protocols.

``build_fixture`` is importable: the same GT and predictions were also run through the real
detectron2 v0.6 evaluator outside CI (see the evaluation paragraph of README.md).
"""
import json

import numpy as np
import pytest
import scipy.spatial.distance as ssd
import torch
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy.ndimage import zoom

from densepose_ext.body.parts import flip_parts
from densepose_ext.evaluation import (
    COARSE_REGION_KAPPA,
    COARSE_REGION_OF_PART,
    PairSimilarities,
    build_coco_detections,
    chart_output_to_box_iuv,
    collect_gt_points,
    decode_iuv_png,
    encode_iuv_png,
    evaluate_densepose_results,
    gps_per_gt,
    prediction_errors,
)
from densepose_ext.evaluation.densepose_coco_eval import decode_detection_iuv

H = W = 256
METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


@pytest.fixture(scope="module")
def body():
    from densepose_ext.body import get_body_model

    return get_body_model()


# ---------------------------------------------------------------------- fixture
def _rle(mask: np.ndarray) -> dict:
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode("ascii")}


def _person(body, rng, box):
    """Image-space truth of one person: (I, qU, qV) uint8 maps (H,W) on an ellipse in its box,
    parts in horizontal bands of random chart parts; and its dp_masks (two 256x256 halves)."""
    x0, y0, w, h = box
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    inside = ((xx - x0 - w / 2) / (w / 2)) ** 2 + ((yy - y0 - h / 2) / (h / 2)) ** 2 < 0.9
    parts = rng.choice(np.arange(1, 25), 6, replace=False)
    band = np.clip(((yy - y0) / h * 6).astype(int), 0, 5)
    I = np.where(inside, parts[band], 0).astype(np.uint8)
    qu = np.where(inside, rng.integers(0, 256, (H, W)), 0).astype(np.uint8)
    qv = np.where(inside, rng.integers(0, 256, (H, W)), 0).astype(np.uint8)
    fy, fx = np.mgrid[0:256, 0:256] + 0.5
    frame = ((fx - 128) / 128) ** 2 + ((fy - 128) / 128) ** 2 < 0.9
    masks = [[] for _ in range(14)]
    masks[0], masks[1] = _rle(frame & (fy < 128)), _rle(frame & (fy >= 128))
    return I, qu, qv, masks


def _gt_record(ann_id, img_id, box, truth, masks, rng, n=40):
    """GT person with n points at fg pixels of its truth, dp_x in the official 0..255 frame."""
    I, qu, qv = truth
    x0, y0, w, h = box
    rows, cols = np.nonzero(I)
    pick = rng.choice(len(rows), n, replace=False)
    r, c = rows[pick], cols[pick]
    fx, fy = rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.9, n)
    return {
        "id": ann_id, "image_id": img_id, "category_id": 1, "iscrowd": 0,
        "bbox": list(box), "area": float(w * h),
        "dp_x": ((c + fx - x0) * 255.0 / w).tolist(), "dp_y": ((r + fy - y0) * 255.0 / h).tolist(),
        "dp_I": I[r, c].astype(float).tolist(), "dp_U": (qu[r, c] / 255.0).tolist(),
        "dp_V": (qv[r, c] / 255.0).tolist(), "dp_masks": masks,
    }


def _detection(img_id, box, truth, score, uv_noise=0, swap=False, rng=None):
    """A result record whose box map (int(h) x int(w), detectron2 protocol) reads the image
    truth at the box's pixels, optionally with U/V noise or left/right part swaps."""
    I, qu, qv = truth
    x0, y0, w, h = box
    hi, wi = max(int(h), 1), max(int(w), 1)
    rr = np.clip(np.floor(y0 + np.arange(hi) + 0.5).astype(int), 0, H - 1)
    cc = np.clip(np.floor(x0 + np.arange(wi) + 0.5).astype(int), 0, W - 1)
    Ib, ub, vb = (m[np.ix_(rr, cc)].astype(np.int64) for m in (I, qu, qv))
    if uv_noise:
        ub = np.clip(ub + rng.integers(-uv_noise, uv_noise + 1, ub.shape), 0, 255)
        vb = np.clip(vb + rng.integers(-uv_noise, uv_noise + 1, vb.shape), 0, 255)
    if swap:
        Ib = np.where(Ib > 0, flip_parts(Ib), 0)
    fg = Ib > 0
    return {"image_id": img_id, "category_id": 1, "bbox": [float(c) for c in box],
            "score": float(score),
            "densepose": {"iuv_png": encode_iuv_png(Ib.astype(np.uint8), ub * fg / 255.0,
                                                    vb * fg / 255.0), "box_size": [wi, hi]}}


def build_fixture(body, seed=0):
    """(GT dataset dict, result records): perfect detections, U/V noise of several sizes, part
    swaps, missed persons, duplicates, false positives, images without persons, a person
    without DensePose points, non-integer boxes of medium and large persons."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    person_boxes = {
        1: [(20.0, 30.0, 60.0, 110.0), (140.0, 40.0, 80.0, 150.0)],
        2: [(30.4, 20.7, 70.6, 120.3)],
        3: [(50.2, 60.9, 40.3, 90.5), (130.6, 20.2, 100.1, 200.8)],
        4: [(10.0, 10.0, 45.0, 45.0), (100.5, 100.5, 120.2, 140.7)],
        5: [(60.3, 40.1, 110.4, 180.6)],
        6: [],
        7: [],
        8: [(40.7, 30.2, 90.9, 170.4), (150.0, 60.0, 60.0, 100.0)],
    }
    noise = {1: [0, 0], 2: [3], 3: [10, 30], 4: [0, 80], 5: [10], 8: [3, 0]}
    ann_id = 1
    for img_id, boxes in person_boxes.items():
        images.append({"id": img_id, "width": W, "height": H, "file_name": f"{img_id}.jpg"})
        for k, box in enumerate(boxes):
            I, qu, qv, masks = _person(body, rng, box)
            anns.append(_gt_record(ann_id, img_id, box, (I, qu, qv), masks, rng))
            missed = (img_id, k) in ((3, 1), (8, 1))
            if not missed:
                jitter = (0.0, 0.0) if img_id == 1 else tuple(rng.uniform(-2, 2, 2))
                dbox = (box[0] + jitter[0], box[1] + jitter[1], box[2], box[3])
                results.append(_detection(img_id, dbox, (I, qu, qv), 0.9 - 0.05 * len(results),
                                          uv_noise=noise[img_id][k], swap=(img_id == 5),
                                          rng=rng))
            if (img_id, k) in ((2, 0), (4, 1)):  # duplicate, lower score, noisier
                results.append(_detection(img_id, box, (I, qu, qv), 0.3, uv_noise=40, rng=rng))
            ann_id += 1
    # false positives: a background box in image 2, detections in the empty images 6 and 7
    blank = (np.zeros((H, W), np.uint8),) * 3
    empty_like = _person(body, rng, (150.0, 150.0, 60.0, 80.0))[:3]
    results.append(_detection(2, (150.0, 150.0, 60.0, 80.0), empty_like, 0.95))
    results.append(_detection(6, (20.0, 20.0, 50.0, 100.0), empty_like, 0.8))
    results.append(_detection(7, (120.0, 60.0, 80.0, 120.0), empty_like, 0.99))
    results.append(_detection(7, (10.0, 10.0, 30.0, 30.0), blank, 0.2))
    # a person without DensePose points (ignored) with a close detection, in image 4
    anns.append({"id": ann_id, "image_id": 4, "category_id": 1, "iscrowd": 0,
                 "bbox": [180.0, 10.0, 60.0, 80.0], "area": 4800.0,
                 "segmentation": [[180, 10, 240, 10, 240, 90, 180, 90]]})
    results.append(_detection(4, (181.0, 11.0, 59.0, 78.0), empty_like, 0.85))
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person"}]}
    return gt, results


def _coco(dataset) -> COCO:
    coco = COCO()
    coco.dataset = json.loads(json.dumps(dataset))
    coco.createIndex()
    return coco


# ---------------------------------------------------------------------- reference
def _closest_vertex(body, I, U, V):
    """Official closest-vertex search: per part, the first chart vertex at the smallest
    Euclidean UV distance (scipy cdist + argmin), mapped to the geodesic vertex set."""
    ch = body.charts
    out = np.full(len(I), -1)
    for part in range(1, 25):
        sel = np.asarray(I) == part
        if sel.any():
            ids = np.flatnonzero(ch.chart_part == part)
            D = ssd.cdist(ch.chart_uv[ids], np.stack([U[sel], V[sel]], 1))
            out[sel] = ch.chart_to_vertex[ids[np.argmin(D, axis=0)]]
    return out


def _official_box_mask(mask, box, hw):
    """Official placement of a box mask at the truncated corner, as an image-size array."""
    x, y, w, h = box
    img = np.zeros(hw, np.uint8)
    x0, x1 = max(int(x), 0), min(int(x + w), hw[1], int(x) + mask.shape[1])
    y0, y1 = max(int(y), 0), min(int(y + h), hw[0], int(y) + mask.shape[0])
    img[y0:y1, x0:x1] = mask[y0 - int(y):y1 - int(y), x0 - int(x):x1 - int(x)]
    return img


def _official_gt_mask(gt, hw):
    if "dp_masks" in gt:
        frame = np.zeros((256, 256))
        for i, m in enumerate(gt["dp_masks"][:14]):
            if m:
                frame[mask_util.decode({"size": m["size"],
                                        "counts": m["counts"].encode()}) > 0] = i + 1
        frame = np.minimum(frame, 1.0)
        _, _, w, h = gt["bbox"]
        z = zoom(frame, (max(h, 1) / 256.0, max(w, 1) / 256.0), order=1, prefilter=False)
        return _official_box_mask((z > 0.5).astype(np.uint8), gt["bbox"], hw)
    rle = mask_util.merge(mask_util.frPyObjects(gt["segmentation"], *hw))
    return mask_util.decode(rle)


def reference_similarities(body, gt_coco, dt_coco, img_id):
    """(GPS, GPSm, box IoU) (D,G) of one image with the official formulas, D in score order."""
    gts = gt_coco.loadAnns(gt_coco.getAnnIds(imgIds=[img_id]))
    dts = dt_coco.loadAnns(dt_coco.getAnnIds(imgIds=[img_id]))
    dts = [dts[i] for i in np.argsort([-d["score"] for d in dts], kind="mergesort")[:20]]
    gps = np.zeros((len(dts), len(gts)))
    for j, g in enumerate(gts):
        if "dp_x" not in g:
            continue
        x0, y0, w, h = g["bbox"]
        I_gt = np.array(g["dp_I"]).astype(int)
        v_gt = _closest_vertex(body, I_gt, np.array(g["dp_U"]), np.array(g["dp_V"]))
        kappa = COARSE_REGION_KAPPA[COARSE_REGION_OF_PART[I_gt]]
        for i, d in enumerate(dts):
            I, U, V = decode_detection_iuv(d)
            qu, qv = np.round(U * 255), np.round(V * 255)
            px = (np.array(g["dp_x"]) * w / 255.0 + x0 - d["bbox"][0]).astype(int)
            py = (np.array(g["dp_y"]) * h / 255.0 + y0 - d["bbox"][1]).astype(int)
            out = (px < 0) | (py < 0) | (px >= int(d["bbox"][2])) | (py >= int(d["bbox"][3]))
            px[out], py[out] = 0, 0
            I_p = np.where(out, 0, I[py, px]).astype(int)
            v_p = _closest_vertex(body, I_p, qu[py, px] / 255.0, qv[py, px] / 255.0)
            dist = np.where(v_p >= 0, body.geodesics[v_gt, np.maximum(v_p, 0)], np.inf)
            dist = np.where(v_p == v_gt, 0.0, dist)
            if np.isfinite(dist).all() and (v_p != v_gt).all():
                dist = dist.astype(np.float32)  # the official list holds float32 entries only
            gps[i, j] = np.mean(np.exp(-dist ** 2 / (2 * kappa ** 2))) if not out.all() else 0
    hw = (gt_coco.imgs[img_id]["height"], gt_coco.imgs[img_id]["width"])
    enc = [mask_util.encode(np.asfortranarray(m)) for m in
           [_official_box_mask((decode_detection_iuv(d)[0] > 0).astype(np.uint8), d["bbox"], hw)
            for d in dts] + [_official_gt_mask(g, hw) for g in gts]]
    crowd = [0] * len(gts)
    miou = np.asarray(mask_util.iou(enc[:len(dts)], enc[len(dts):], crowd)).reshape(gps.shape) \
        if dts and gts else np.zeros(gps.shape)
    biou = np.asarray(mask_util.iou([d["bbox"] for d in dts], [g["bbox"] for g in gts],
                                    crowd)).reshape(gps.shape) if dts and gts else gps * 0
    return gps, np.sqrt(gps * miou), biou


class _ReferenceEval(COCOeval):
    """pycocotools' matching with reference similarities and the official ignore rules."""

    def __init__(self, gt, dt, sims):
        super().__init__(gt, dt, iouType="bbox")
        self.sims = sims  # img -> (sim, box_iou)
        p = self.params
        p.iouThrs = np.linspace(0.5, 0.95, 10)
        p.maxDets = [20]
        p.areaRng = [[0.0, 1e10], [32.0 ** 2, 96.0 ** 2], [96.0 ** 2, 1e10]]
        p.areaRngLbl = ["all", "medium", "large"]

    def _prepare(self):
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = int("dp_x" not in g)  # official: no dp_x -> ignored

    def computeIoU(self, imgId, catId):  # noqa: N802
        return self.sims[imgId][0] if self._gts[imgId, catId] and self._dts[imgId, catId] else []

    def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802
        res = super().evaluateImg(imgId, catId, aRng, maxDet)
        if res is None:
            return res
        gt_ig = res["gtIgnore"].astype(bool)
        if gt_ig.all():  # no regular GT (or none at all): every detection ignored
            res["dtIgnore"] = np.ones_like(res["dtIgnore"], bool)
        gts = {g["id"]: g for g in self._gts[imgId, catId]}
        cols = [list(gts).index(g) for g in res["gtIds"]]
        if len(res["dtIds"]) and len(cols):
            biou = self.sims[imgId][1][:, cols]
            dtm, gtm, dt_ig = res["dtMatches"], res["gtMatches"], res["dtIgnore"]
            for d in range(len(res["dtIds"])):  # box rule at the last threshold
                if dtm[-1, d]:
                    continue
                best, m = 0.8, -1
                for g in range(len(cols)):
                    if gtm[-1, g] > 0 and not gts[res["gtIds"][g]]["iscrowd"]:
                        continue
                    if biou[d, g] >= best:
                        best, m = biou[d, g], g
                if m > -1:
                    dt_ig[:, d] = gt_ig[m]
                    if gt_ig[m]:
                        dtm[-1, d], gtm[-1, m] = res["gtIds"][m], res["dtIds"][d]
            # the official area rule uses the final matches
            dts = sorted(self._dts[imgId, catId], key=lambda x: -x["score"])[:maxDet]
            area = np.array([d_["area"] for d_ in dts])
            out = (area < aRng[0]) | (area > aRng[1])
            res["dtIgnore"] = dt_ig | ((dtm == 0) & out[None, :])
        return res

    def metrics(self):
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            self.evaluate()
            self.accumulate()
        prec, rec = self.eval["precision"], self.eval["recall"]
        out = {}
        for name, t, a in (("", None, 0), ("50", 0, 0), ("75", 5, 0), ("m", None, 1),
                           ("l", None, 2)):
            sl = slice(None) if t is None else slice(t, t + 1)
            for pre, tab in (("AP", prec[sl, :, :, a, -1]), ("AR", rec[sl, :, a, -1])):
                v = tab[tab > -1]
                out[pre + name] = float(v.mean() * 100) if v.size else float("nan")
        return out


@pytest.fixture(scope="module")
def fixture(body):
    gt, results = build_fixture(body)
    gt_coco = _coco(gt)
    dt_coco = build_coco_detections(gt_coco, results)
    refs = {i: reference_similarities(body, gt_coco, dt_coco, i) for i in gt_coco.getImgIds()}
    return gt, results, refs


# ---------------------------------------------------------------------- known answers
def test_pair_similarities_equal_official_formulas(body, fixture):
    gt, results, refs = fixture
    gt_coco = _coco(gt)
    pairs = PairSimilarities(body, gt_coco, build_coco_detections(gt_coco, results),
                             protocol="detectron2")
    pairs.compute((i, 1) for i in gt_coco.getImgIds())
    for img_id, (gps, gpsm, biou) in refs.items():
        pp = pairs.image(img_id, 1)
        np.testing.assert_allclose(pp.gps["coarse_part"], gps, atol=1e-9, err_msg=str(img_id))
        np.testing.assert_allclose(pp.gpsm("coarse_part"), gpsm, atol=1e-9, err_msg=str(img_id))
        np.testing.assert_allclose(pp.box_iou, biou, atol=1e-12)
    # the fixture covers the intended range of similarities
    all_gps = np.concatenate([r[0].ravel() for r in refs.values()])
    assert (all_gps == 1.0).any() and ((all_gps > 0.5) & (all_gps < 0.95)).any()
    assert ((all_gps > 0) & (all_gps < 0.5)).any()


@pytest.mark.parametrize("measure", ["gps", "gpsm"])
def test_ap_ar_equal_official_formulas(body, fixture, measure):
    gt, results, refs = fixture
    out = evaluate_densepose_results(_coco(gt), results, body, "coarse_part",
                                     protocol="detectron2")
    k = 0 if measure == "gps" else 1
    ref = _ReferenceEval(_coco(gt), build_coco_detections(_coco(gt), results),
                         {i: (r[k], r[2]) for i, r in refs.items()}).metrics()
    got = out[f"densepose_{measure}"]
    for name in METRICS:
        assert got[name] == pytest.approx(ref[name], abs=1e-6, nan_ok=True), name
    assert 0 < got["AP"] < 100 and got["APm"] != got["APl"]


# ---------------------------------------------------------------------- ignore rules
def _one_image(anns, images=(1,)):
    return _coco({"images": [{"id": i, "width": W, "height": H} for i in images],
                  "annotations": anns, "categories": [{"id": 1, "name": "person"}]})


def _simple_person(body, ann_id=1, img_id=1, box=(40.0, 40.0, 100.0, 150.0), seed=3):
    rng = np.random.default_rng(seed)
    I, qu, qv, masks = _person(body, rng, box)
    return _gt_record(ann_id, img_id, box, (I, qu, qv), masks, rng), (I, qu, qv)


def test_detections_in_images_without_persons(body):
    ann, truth = _simple_person(body)
    gt = _one_image([ann], images=(1, 2))
    good = _detection(1, ann["bbox"], truth, 0.5)
    stray = _detection(2, (10.0, 10.0, 50.0, 50.0), truth, 0.9)  # image 2 has no person
    d2 = evaluate_densepose_results(gt, [good, stray], body, protocol="detectron2")
    ex = evaluate_densepose_results(gt, [good, stray], body, protocol="exact")
    assert d2["densepose_gps"]["AP"] == pytest.approx(100.0)  # ignored, as upstream
    assert ex["densepose_gps"]["AP50"] < 100.0  # a false positive under COCO semantics


def test_box_iou_rule_for_persons_without_points(body):
    ann, truth = _simple_person(body)
    plain = {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "bbox": [150.0, 20.0, 80.0, 120.0], "area": 9600.0}
    gt = _one_image([ann, plain])
    good = _detection(1, ann["bbox"], truth, 0.5)
    close = _detection(1, (152.0, 22.0, 78.0, 117.0), truth, 0.9)  # box IoU ~0.93
    far = _detection(1, (150.0, 60.0, 80.0, 120.0), truth, 0.9)  # box IoU ~0.5
    for protocol in ("detectron2", "exact"):
        ok = evaluate_densepose_results(gt, [good, close], body, protocol=protocol)
        bad = evaluate_densepose_results(gt, [good, far], body, protocol=protocol)
        assert ok["densepose_gps"]["AP50"] == pytest.approx(100.0), protocol
        assert bad["densepose_gps"]["AP50"] == pytest.approx(50.0), protocol


def test_area_ranges_ignore_images_without_persons_in_range(body):
    """APm: an image whose only person is large has no person in the medium range, so its
    (even wrong) detections are ignored under the official rules."""
    medium, t1 = _simple_person(body, 1, 1, box=(40.0, 40.0, 50.0, 90.0))  # 4500 px
    large, t2 = _simple_person(body, 2, 2, box=(40.0, 40.0, 120.0, 180.0), seed=4)
    gt = _one_image([medium, large], images=(1, 2))
    dets = [_detection(1, medium["bbox"], t1, 0.5),
            _detection(2, (150.0, 10.0, 50.0, 90.0), t2, 0.9)]  # wrong, medium-sized box
    d2 = evaluate_densepose_results(gt, dets, body, protocol="detectron2")
    ex = evaluate_densepose_results(gt, dets, body, protocol="exact")
    assert d2["densepose_gps"]["APm"] == pytest.approx(100.0)
    assert ex["densepose_gps"]["APm"] < 100.0


# ---------------------------------------------------------------------- conventions
def test_point_placement_and_truncation(body):
    """dp_x = 255 maps to x0 + w (official /255) rather than a pixel centre; reads truncate."""
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10.6, 20.0, 51.0, 10.0],
           "dp_x": [255.0, 0.0], "dp_y": [0.0, 127.5], "dp_I": [1, 1], "dp_U": [0.5, 0.5],
           "dp_V": [0.5, 0.5], "area": 510.0}
    d2 = collect_gt_points(body, [ann], protocol="detectron2")
    ex = collect_gt_points(body, [ann], protocol="exact")
    np.testing.assert_allclose(d2.x, [61.6, 10.6])
    np.testing.assert_allclose(ex.x, [10.6 + 255 * 51 / 256, 10.6])
    np.testing.assert_allclose(d2.y, [20.0, 25.0])
    from densepose_ext.evaluation.gps import point_cells

    boxes = np.array([[10.6, 20.0, 51.0, 10.0]] * 2)
    rows, cols, inside = point_cells(d2.x, d2.y, boxes, np.array([[10, 51]] * 2), "detectron2")
    assert cols.tolist() == [50, 0] and rows.tolist() == [0, 5]
    assert inside.tolist() == [False, True]  # int(61.6 - 10.6) = 51 = int(w): outside
    # less than a pixel left of the box still reads column 0 (truncation toward zero)
    _, cols, inside = point_cells(np.array([10.2]), np.array([21.0]),
                                  np.array([[10.6, 20.0, 51.0, 10.0]]),
                                  np.array([[10, 51]]), "detectron2")
    assert cols.tolist() == [0] and inside.tolist() == [True]


def test_official_quantisation_and_fine_background():
    S = 4
    coarse = torch.zeros(2, S, S)
    coarse[1] = 1.0  # all foreground
    fine = torch.zeros(25, S, S)
    fine[3] = 1.0
    fine[0, 0, 0] = 5.0  # the background channel wins at one cell
    u = torch.full((25, S, S), 0.9999)
    v = torch.full((25, S, S), 0.50195)  # 128.0 / 255 ~ 0.50196: truncates to 127
    I, U, V = chart_output_to_box_iuv(coarse, fine, u, v, (0.0, 0.0, 4.9, 4.2),
                                      protocol="detectron2")
    assert I.shape == (4, 4)  # int(h) x int(w)
    assert I[0, 0] == 0 and (I.ravel()[1:] == 3).all()
    assert np.round(U[1, 1] * 255) == 254 and np.round(V[1, 1] * 255) == 127
    assert U[0, 0] == 0 and V[0, 0] == 0
    I2, U2, V2 = decode_iuv_png(encode_iuv_png(I, U, V))  # stored losslessly
    np.testing.assert_array_equal(I2, I)
    np.testing.assert_allclose(U2, U, atol=1e-7)
    Ie, Ue, _ = chart_output_to_box_iuv(coarse, fine, u, v, (0.0, 0.0, 4.9, 4.2))
    assert Ie.shape == (4, 5) and Ie[0, 0] == 3 and np.round(Ue[1, 1] * 255) == 255


def test_gt_mask_is_the_official_bilinear_zoom(body):
    from densepose_ext.evaluation.masks import gt_mask

    ann, _ = _simple_person(body, box=(30.7, 41.2, 77.5, 133.9))
    m = gt_mask(ann, (H, W), "detectron2")
    full = np.zeros((H, W), bool)
    full[m.top:m.bottom, m.left:m.right] = m.mask
    np.testing.assert_array_equal(full, _official_gt_mask(ann, (H, W)) > 0)
    e = gt_mask(ann, (H, W), "exact")
    assert e.mask.sum() != m.mask.sum()  # nearest-neighbour pasting differs


def test_quantized_vertex_table_is_the_exhaustive_search(body):
    table = body.quantized_vertex_table("first")
    rng = np.random.default_rng(0)
    I = rng.integers(1, 25, 3000)
    qu, qv = rng.integers(0, 256, 3000), rng.integers(0, 256, 3000)
    np.testing.assert_array_equal(table[I, qu, qv],
                                  _closest_vertex(body, I, qu / 255.0, qv / 255.0))
    tree = body.quantized_vertex_table("tree")
    np.testing.assert_array_equal(
        tree[I, qu, qv], body.iuv_to_vertex(I, (qu.astype(np.float32) / 255.0),
                                            (qv.astype(np.float32) / 255.0)))


# ---------------------------------------------------------------------- vectorised == per pair
def test_vectorised_pairs_equal_per_pair_exact_protocol(body, fixture):
    """The batched computation gives the per-detection path's numbers (exact protocol)."""
    gt, results, _ = fixture
    gt_coco = _coco(gt)
    dt_coco = build_coco_detections(gt_coco, results)
    pairs = PairSimilarities(body, gt_coco, dt_coco, protocol="exact")
    pairs.compute((i, 1) for i in gt_coco.getImgIds())
    for img_id in gt_coco.getImgIds():
        pp = pairs.image(img_id, 1)
        gts = gt_coco.loadAnns(gt_coco.getAnnIds(imgIds=[img_id]))
        points = collect_gt_points(body, gts)
        dts = [dt_coco.anns[i] for i in pp.dt_ids]
        errors = np.stack([prediction_errors(body, points, d["bbox"], decode_detection_iuv(d))
                           for d in dts]) if dts else np.zeros((0, len(points.I)))
        np.testing.assert_array_equal(pp.errors, errors)
        for norm in ("paper", "coarse_part"):
            np.testing.assert_allclose(pp.gps[norm], gps_per_gt(errors, points, norm),
                                       rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- batched == per image
def _reference_greedy_match(sim, thresholds, gt_ignore, crowd):
    """The per-image, per-threshold matching the batched one replaced (COCO's loop)."""
    D, G = sim.shape
    out = np.full((len(thresholds), D), -1, np.int64)
    for ti, t in enumerate(thresholds):
        t = min(t, 1 - 1e-10)
        taken = [False] * G
        for d in range(D):
            best, m = t, -1
            for g in range(G):
                if taken[g] and not crowd[g]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break
                if sim[d, g] < best:
                    continue
                best, m = sim[d, g], g
            if m > -1:
                taken[m] = True
                out[ti, d] = m
    return out


def test_batched_matching_equals_per_image_matching():
    from densepose_ext.evaluation.matching import greedy_match

    rng = np.random.default_rng(0)
    thresholds = np.linspace(0.5, 0.95, 10).tolist()
    for _ in range(300):
        B, D, G = rng.integers(1, 4), rng.integers(0, 8), rng.integers(1, 6)
        # coarse values make ties frequent
        sim = np.round(rng.uniform(0.3, 1.0, (B, D, G)) * rng.choice([10, 1000]), 0)
        sim /= sim.max() if sim.size and sim.max() > 0 else 1
        ignore = np.sort(rng.random((B, G)) < 0.3, axis=1)  # regular first
        crowd = rng.random((B, G)) < 0.2
        got = greedy_match(sim, thresholds, ignore, crowd)
        for b in range(B):
            np.testing.assert_array_equal(
                got[b], _reference_greedy_match(sim[b], thresholds, ignore[b], crowd[b]))


@pytest.mark.parametrize("protocol", ["detectron2", "exact"])
def test_batched_ap_equals_cocoeval_accumulation(body, fixture, protocol):
    """evaluate_ap (batched matching, vectorised accumulation) == DensePoseCOCOeval with
    pycocotools' accumulate, bitwise, for every measure and normalisation."""
    from densepose_ext.evaluation import DensePoseCOCOeval
    from densepose_ext.evaluation.densepose_coco_eval import evaluate_ap

    gt, results, _ = fixture
    gt_coco = _coco(gt)
    dt_coco = build_coco_detections(gt_coco, results[::2] + results[1::3])
    pairs = PairSimilarities(body, gt_coco, dt_coco, protocol=protocol)
    img_ids = gt_coco.getImgIds()
    variants = [(m, n) for n in ("paper", "coarse_part") for m in ("gps", "gpsm")]
    got = evaluate_ap(gt_coco, dt_coco, pairs, variants, img_ids)
    for m, n in variants:
        ref = DensePoseCOCOeval(gt_coco, dt_coco, pairs, m, n, img_ids=img_ids).run()
        assert json.dumps(got[m, n]) == json.dumps(ref), (m, n)
