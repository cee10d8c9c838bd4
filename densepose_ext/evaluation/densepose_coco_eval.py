"""COCO-style AP/AR for DensePose with GPS or GPSm in place of IoU.

``DensePoseCOCOeval`` subclasses pycocotools' ``COCOeval``: only the similarity matrix
(``computeIoU``), the GT ignore flags and two DensePose-specific ignore rules change, so
matching, crowd handling and accumulation stay COCO's. Parameters follow the upstream DensePose
evaluation: thresholds 0.50:0.05:0.95, area ranges all / medium (32^2..96^2) / large (> 96^2),
maxDets 20.

Similarities (per detection d, GT person g), computed once per image by ``PairSimilarities``:

- GPS(d, g) (see :mod:`.gps`, normalisation ``"paper"`` or ``"coarse_part"``);
- GPSm(d, g) = sqrt(GPS(d, g) * maskIoU(d, g)) with the predicted person mask (the detection's
  foreground pasted into the image) and the GT mask (union of the 14 ``dp_masks`` in the GT box
  frame pasted at the GT box; the ``segmentation`` when there are no dp_masks; the box when
  there is neither).

Ignore rules (as upstream DensePose evaluation intends): GT persons without DensePose points are
ignored like crowds; an unmatched detection whose box overlaps such a person (or a crowd) with
box IoU >= 0.8 is ignored rather than counted as a false positive; in an image whose GT persons
all lack DensePose points every detection is ignored. An image without any GT person keeps
COCO semantics (its detections are false positives).
"""
from __future__ import annotations

import contextlib
import io
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..structures import decode_dp_masks
from .gps import NORMALIZATIONS, GtPoints, collect_gt_points, gps_per_gt, has_densepose
from .gps import prediction_errors
from .iuv import IUV, box_grid_size, decode_iuv_png, paste_box_map

__all__ = [
    "DensePoseEvaluationError",
    "METRIC_NAMES",
    "IGNORE_BOX_IOU",
    "ImagePairs",
    "PairSimilarities",
    "DensePoseCOCOeval",
    "build_coco_detections",
    "decode_detection_iuv",
]

#: AP/AR names reported, in order
METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
#: box IoU from which an unmatched detection of an ignored GT person is ignored (upstream: 0.8)
IGNORE_BOX_IOU = 0.8
MEASURES = ("gps", "gpsm")


class DensePoseEvaluationError(ValueError):
    """Malformed ground truth or detection record given to the DensePose evaluation."""


def decode_detection_iuv(dt: dict, source: str = "detections") -> IUV:
    """Box IUV of a result record ``{..., "densepose": {"iuv_png", "box_size": [w, h]}}``."""
    where = f"{source}: detection id={dt.get('id', '?')} (image id={dt.get('image_id', '?')})"
    dp = dt.get("densepose")
    if not isinstance(dp, dict) or "iuv_png" not in dp:
        raise DensePoseEvaluationError(f"{where}: missing 'densepose': {{'iuv_png': ...}}")
    try:
        iuv = decode_iuv_png(dp["iuv_png"])
    except ValueError as e:
        raise DensePoseEvaluationError(f"{where}: {e}") from None
    expected = tuple(dp.get("box_size", (iuv[0].shape[1], iuv[0].shape[0])))
    if (iuv[0].shape[1], iuv[0].shape[0]) != tuple(int(c) for c in expected):
        raise DensePoseEvaluationError(
            f"{where}: IUV map is {iuv[0].shape[1]}x{iuv[0].shape[0]}, box_size says {expected}")
    return iuv


def build_coco_detections(coco_gt: COCO, results: Sequence[dict],
                          source: str = "detections") -> COCO:
    """A COCO object of result records (image_id, category_id, bbox XYWH, score, densepose),
    with ids 1..N and area = box area; works for an empty list too."""
    anns = []
    for k, r in enumerate(results):
        where = f"{source}: record {k} (image id={r.get('image_id', '?')})"
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in r:
                raise DensePoseEvaluationError(f"{where}: missing {key!r}")
        if r["image_id"] not in coco_gt.imgs:
            raise DensePoseEvaluationError(f"{where}: image id is not in the ground truth")
        bbox = [float(c) for c in r["bbox"]]
        if len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0:
            raise DensePoseEvaluationError(f"{where}: bbox must be [x, y, w, h], got {r['bbox']}")
        anns.append(dict(r, id=k + 1, bbox=bbox, area=bbox[2] * bbox[3], iscrowd=0,
                         score=float(r["score"])))
    coco_dt = COCO()
    coco_dt.dataset = {"images": list(coco_gt.dataset.get("images", [])),
                       "categories": list(coco_gt.dataset.get("categories", [])),
                       "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt.createIndex()
    return coco_dt


@dataclass
class ImagePairs:
    """All (detection, GT person) similarities of one image and category."""

    dt_ids: List[int]
    gt_ids: List[int]
    gt_points: GtPoints
    errors: np.ndarray  # (D,P) geodesic errors of each detection at every GT point
    gps: Dict[str, np.ndarray]  # normalisation -> (D,G)
    mask_iou: np.ndarray  # (D,G)
    box_iou: np.ndarray  # (D,G)
    dt_index: Dict[int, int] = field(default_factory=dict)
    gt_index: Dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dt_index = {d: k for k, d in enumerate(self.dt_ids)}
        self.gt_index = {g: k for k, g in enumerate(self.gt_ids)}

    def gpsm(self, normalization: str) -> np.ndarray:
        """(D,G) sqrt(GPS x mask IoU)."""
        return np.sqrt(self.gps[normalization] * self.mask_iou)


def _sorted_detections(dts: Sequence[dict], max_dets: int) -> List[dict]:
    """Detections by decreasing score (stable, as COCOeval sorts them), top ``max_dets``."""
    order = np.argsort([-d["score"] for d in dts], kind="mergesort")
    return [dts[i] for i in order[:max_dets]]


class PairSimilarities:
    """Computes and caches :class:`ImagePairs` for every (image, category).

    Shared by the GPS and GPSm evaluations and the pointwise metrics, so each detection is
    decoded and each geodesic error computed once.
    """

    def __init__(self, body, coco_gt: COCO, coco_dt: COCO, max_dets: int = 20,
                 source: str = "ground truth"):
        self.body = body
        self.coco_gt = coco_gt
        self.coco_dt = coco_dt
        self.max_dets = max_dets
        self.source = source
        self._cache: Dict[Tuple[int, int], ImagePairs] = {}

    def image(self, img_id: int, cat_id: int) -> ImagePairs:
        key = (img_id, cat_id)
        if key not in self._cache:
            self._cache[key] = self._compute(img_id, cat_id)
        return self._cache[key]

    def _compute(self, img_id: int, cat_id: int) -> ImagePairs:
        gts = self.coco_gt.loadAnns(self.coco_gt.getAnnIds(imgIds=[img_id], catIds=[cat_id]))
        dts = _sorted_detections(
            self.coco_dt.loadAnns(self.coco_dt.getAnnIds(imgIds=[img_id], catIds=[cat_id])),
            self.max_dets)
        try:
            points = collect_gt_points(self.body, gts, self.source)
        except ValueError as e:
            raise DensePoseEvaluationError(str(e)) from None
        img = self.coco_gt.imgs[img_id]
        hw = (int(img["height"]), int(img["width"]))
        D, G = len(dts), len(gts)
        errors = np.full((D, len(points.I)), np.inf)
        dt_masks = []
        for k, dt in enumerate(dts):
            iuv = decode_detection_iuv(dt)
            errors[k] = prediction_errors(self.body, points, dt["bbox"], iuv)
            dt_masks.append(_encode_mask(paste_box_map(iuv[0] > 0, dt["bbox"], hw)))
        gps = {n: gps_per_gt(errors, points, n) for n in NORMALIZATIONS}
        if D and G:
            crowd = [int(g.get("iscrowd", 0)) for g in gts]
            gt_masks = [self._gt_mask(g, hw) for g in gts]
            mask_iou = np.asarray(mask_util.iou(dt_masks, gt_masks, crowd)).reshape(D, G)
            box_iou = np.asarray(mask_util.iou([d["bbox"] for d in dts],
                                               [g["bbox"] for g in gts], crowd)).reshape(D, G)
        else:
            mask_iou = np.zeros((D, G))
            box_iou = np.zeros((D, G))
        return ImagePairs([d["id"] for d in dts], [g["id"] for g in gts], points, errors, gps,
                          mask_iou, box_iou)

    def _gt_mask(self, gt: dict, hw: Tuple[int, int]) -> dict:
        """RLE of a GT person's mask in the image (dp_masks, else segmentation, else box)."""
        dp_masks = gt.get("dp_masks")
        if dp_masks and any(isinstance(m, dict) for m in dp_masks):
            frame = decode_dp_masks(dp_masks) > 0
            return _encode_mask(paste_box_map(frame, gt["bbox"], hw))
        if gt.get("segmentation"):
            return self.coco_gt.annToRLE(gt)
        box = np.ones(box_grid_size(gt["bbox"]), bool)
        return _encode_mask(paste_box_map(box, gt["bbox"], hw))


def _encode_mask(mask: np.ndarray) -> dict:
    return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))


class DensePoseCOCOeval(COCOeval):
    """COCOeval with GPS / GPSm as the similarity (see the module docstring).

    Args:
        coco_gt, coco_dt: COCO objects of the GT (DensePose-COCO) and of the detections
            (:func:`build_coco_detections`).
        pairs: the shared :class:`PairSimilarities` of these two.
        measure: ``"gps"`` or ``"gpsm"``.
        normalization: GPS normalisation, ``"paper"`` or ``"coarse_part"``.
    """

    def __init__(self, coco_gt: COCO, coco_dt: COCO, pairs: PairSimilarities,
                 measure: str = "gps", normalization: str = "coarse_part",
                 img_ids: Optional[Sequence[int]] = None):
        if measure not in MEASURES:
            raise ValueError(f"unknown measure {measure!r}; expected one of {MEASURES}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown GPS normalisation {normalization!r}; "
                             f"expected one of {NORMALIZATIONS}")
        super().__init__(coco_gt, coco_dt, iouType="bbox")
        self.pairs = pairs
        self.measure = measure
        self.normalization = normalization
        p = self.params
        p.iouThrs = np.linspace(0.5, 0.95, 10)
        p.maxDets = [pairs.max_dets]
        p.areaRng = [[0.0, 1e10], [32.0 ** 2, 96.0 ** 2], [96.0 ** 2, 1e10]]
        p.areaRngLbl = ["all", "medium", "large"]
        if img_ids is not None:
            p.imgIds = sorted(img_ids)

    def _prepare(self) -> None:
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = int(bool(g["ignore"]) or not has_densepose(g))

    def computeIoU(self, imgId, catId):  # noqa: N802 (COCOeval's name)
        gt = self._gts[imgId, catId]
        dt = self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return []
        dt = _sorted_detections(dt, self.params.maxDets[-1])
        pairs = self.pairs.image(imgId, catId)
        rows = [pairs.dt_index[d["id"]] for d in dt]
        cols = [pairs.gt_index[g["id"]] for g in gt]
        if self.measure == "gps":
            sim = pairs.gps[self.normalization]
        else:
            sim = pairs.gpsm(self.normalization)
        return sim[np.ix_(rows, cols)]

    def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802 (COCOeval's name)
        res = super().evaluateImg(imgId, catId, aRng, maxDet)
        if res is None or not len(res["dtIds"]) or not len(res["gtIds"]):
            return res
        pairs = self.pairs.image(imgId, catId)
        gts = {g["id"]: g for g in self._gts[imgId, catId]}
        flagged = np.array([bool(gts[g]["ignore"]) for g in res["gtIds"]])
        dt_ignore = np.asarray(res["dtIgnore"], bool)
        if flagged.all():
            dt_ignore[:] = True
        elif flagged.any():
            rows = [pairs.dt_index[d] for d in res["dtIds"]]
            cols = [pairs.gt_index[g] for g, f in zip(res["gtIds"], flagged) if f]
            near = (pairs.box_iou[np.ix_(rows, cols)] >= IGNORE_BOX_IOU).any(axis=1)
            dt_ignore |= (np.asarray(res["dtMatches"]) == 0) & near[None, :]
        res["dtIgnore"] = dt_ignore
        return res

    def run(self) -> "OrderedDict[str, float]":
        """evaluate() + accumulate() quietly; returns :meth:`metrics`."""
        with contextlib.redirect_stdout(io.StringIO()):
            self.evaluate()
            self.accumulate()
        return self.metrics()

    def metrics(self) -> "OrderedDict[str, float]":
        """AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl in percent (nan if undefined)."""
        p = self.params
        precision, recall = self.eval["precision"], self.eval["recall"]

        def mean(values: np.ndarray) -> float:
            valid = values[values > -1]
            return float(np.mean(valid) * 100.0) if valid.size else float("nan")

        def thr(t: Optional[float]) -> slice:
            if t is None:
                return slice(None)
            i = int(np.argmin(np.abs(p.iouThrs - t)))
            return slice(i, i + 1)

        area = {lbl: i for i, lbl in enumerate(p.areaRngLbl)}
        out = OrderedDict()
        for prefix, table in (("AP", precision), ("AR", recall)):
            for suffix, t, a in (("", None, "all"), ("50", 0.5, "all"), ("75", 0.75, "all"),
                                 ("m", None, "medium"), ("l", None, "large")):
                s = table[thr(t)]
                s = s[:, :, :, area[a], -1] if prefix == "AP" else s[:, :, area[a], -1]
                out[prefix + suffix] = mean(s)
        return out
