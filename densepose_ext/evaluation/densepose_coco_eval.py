"""COCO-style AP/AR for DensePose with GPS or GPSm in place of IoU.

``DensePoseCOCOeval`` subclasses pycocotools' ``COCOeval``: the similarity, the GT ignore flags,
the per-image matching and the DensePose-specific ignore rules are ours; accumulation stays
COCO's. Parameters follow the upstream DensePose evaluation: thresholds 0.50:0.05:0.95, area
ranges all / medium (32^2..96^2) / large (> 96^2), maxDets 20.

Similarities (per detection d, GT person g), computed once for all images by
``PairSimilarities`` (one vectorised pass over every (detection, GT point) pair):

- GPS(d, g) (see :mod:`.gps`, normalisation ``"paper"`` or ``"coarse_part"``);
- GPSm(d, g) = sqrt(GPS(d, g) * maskIoU(d, g)) with the predicted person mask (the detection's
  foreground placed in the image) and the GT person's mask (see :mod:`.masks`).

Matching is COCO's greedy matching (by score, best available GT at or above each threshold,
regular GT before ignored GT). Ignore rules depend on the protocol (:mod:`.protocol`):

- ``"detectron2"`` (the official evaluator's): a GT person without ``dp_x`` is ignored, as is
  one outside the area range; if all GT persons of an image are ignored (or it has none), all
  its detections are ignored; a detection unmatched at the last threshold (0.95) whose box
  overlaps a GT person not yet matched there (crowds always) with box IoU >= 0.8 (the highest
  such, the later one on ties) takes that person's ignore flag at every threshold, and is
  matched to it at the last threshold when the person is ignored.
- ``"exact"``: GT persons without DensePose points, and crowds, are ignored; an unmatched
  detection whose box overlaps such a person with box IoU >= 0.8 is ignored; in an image whose
  GT persons all lack points every detection is ignored; an image without any GT person keeps
  COCO semantics (its detections are false positives).

In both, an unmatched detection outside the area range is ignored (COCO).
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval, Params

from ..structures.coco_format import decode_iuv_png_uint8
from .gps import (
    NORMALIZATIONS,
    GtPoints,
    gps_from_errors,
    has_densepose,
    official_point_similarity,
    quantized_point_errors,
)
from .gt_preparation import gt_preparation
from .iuv import IUV
from .masks import box_iou_pairs, detection_masks, mask_iou_matrix
from .matching import accumulate, greedy_match, official_box_rule
from .protocol import check_protocol

__all__ = [
    "DensePoseEvaluationError",
    "METRIC_NAMES",
    "IGNORE_BOX_IOU",
    "ImagePairs",
    "PairSimilarities",
    "DensePoseCOCOeval",
    "build_coco_detections",
    "decode_detection_iuv",
    "decode_detection_maps",
    "evaluate_ap",
]

logger = logging.getLogger(__name__)

#: AP/AR names reported, in order
METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
#: box IoU from which an unmatched detection of an ignored GT person is ignored (upstream: 0.8)
IGNORE_BOX_IOU = 0.8
MEASURES = ("gps", "gpsm")
#: record key under which in-process callers may hand over a detection's decoded uint8 maps
#: (I, 255 U, 255 V), sparing the PNG decode; never written to files
DECODED_KEY = "_iuv_uint8"


class DensePoseEvaluationError(ValueError):
    """Malformed ground truth or detection record given to the DensePose evaluation."""


def decode_detection_maps(dt: dict, source: str = "detections"
                          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored uint8 maps (I, 255 U, 255 V) of a result record
    ``{..., "densepose": {"iuv_png", "box_size": [w, h]}}`` (decoded once; see DECODED_KEY)."""
    def where() -> str:
        return f"{source}: detection id={dt.get('id', '?')} (image id={dt.get('image_id', '?')})"

    maps = dt.get(DECODED_KEY)
    dp = dt.get("densepose")
    if maps is None:
        if not isinstance(dp, dict) or "iuv_png" not in dp:
            raise DensePoseEvaluationError(f"{where()}: missing 'densepose': {{'iuv_png': ...}}")
        try:
            maps = decode_iuv_png_uint8(dp["iuv_png"])
        except ValueError as e:
            raise DensePoseEvaluationError(f"{where()}: {e}") from None
    h, w = maps[0].shape
    expected = tuple((dp or {}).get("box_size", (w, h)))
    if (w, h) != tuple(int(c) for c in expected):
        raise DensePoseEvaluationError(
            f"{where()}: IUV map is {w}x{h}, box_size says {expected}")
    return maps


def _decode_all(dts: Sequence[dict]) -> Callable[[], List[Tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]]]:
    """Starts :func:`decode_detection_maps` of many records and returns the function that
    waits for their maps. PNG decoding (which releases the GIL) runs on a few threads when
    there are many, while the caller goes on with the ground truth."""
    workers = min(4, os.cpu_count() or 1)
    todo = sum(DECODED_KEY not in d for d in dts)
    if todo < 64 or workers < 2:
        return lambda: [decode_detection_maps(d) for d in dts]
    pool = ThreadPoolExecutor(workers)
    chunks = [dts[k:k + 32] for k in range(0, len(dts), 32)]
    futures = [pool.submit(lambda c: [decode_detection_maps(d) for d in c], c) for c in chunks]
    pool.shutdown(wait=False)

    def result():
        return [m for f in futures for m in f.result()]

    return result


def decode_detection_iuv(dt: dict, source: str = "detections") -> IUV:
    """Box IUV (I uint8, U float32, V float32) of a result record."""
    I, qu, qv = decode_detection_maps(dt, source)
    return I, qu.astype(np.float32) / 255.0, qv.astype(np.float32) / 255.0


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
    mask_iou: np.ndarray  # (D,G), of the pairs with GPS > 0 (0 elsewhere)
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


def _sub_points(points: GtPoints, g0: int, g1: int) -> GtPoints:
    """The persons g0..g1-1 of ``points`` as their own :class:`GtPoints`."""
    p0, p1 = int(points.offsets[g0]), int(points.offsets[g1])
    return GtPoints(points.ann_ids[g0:g1], points.offsets[g0:g1 + 1] - p0, points.x[p0:p1],
                    points.y[p0:p1], points.I[p0:p1], points.vertex[p0:p1])


def _segment_sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sums of values[starts[k]:ends[k]] (0 for empty segments) of segments that tile
    ``values`` in order (each non-empty one ends where the next non-empty one starts)."""
    out = np.zeros(len(starts))
    full = np.flatnonzero(ends > starts)
    if len(full):
        out[full] = np.add.reduceat(values, starts[full])
    return out


def _read_maps(maps, det: np.ndarray, rows: np.ndarray, cols: np.ndarray, width: np.ndarray,
               chunk: int = 64) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The uint8 maps (I, 255 U, 255 V) of detections ``det`` (ascending) at cells (rows,
    cols); ``width`` (D,) of every detection's map. The maps are flattened a few detections at
    a time (small buffers reuse freed memory; one large one costs page faults)."""
    out = [np.zeros(len(det), np.uint8) for _ in range(3)]
    bounds = np.searchsorted(det, np.arange(0, len(maps) + chunk, chunk))
    for k, c0 in enumerate(range(0, len(maps), chunk)):
        a, b = int(bounds[k]), int(bounds[k + 1])
        if a == b:
            continue
        part = maps[c0:c0 + chunk]
        first = np.concatenate([[0], np.cumsum([m[0].size for m in part])])
        at = first[det[a:b] - c0] + rows[a:b] * width[det[a:b]] + cols[a:b]
        for c in range(3):
            out[c][a:b] = np.concatenate([m[c].ravel() for m in part])[at]
    return out[0], out[1], out[2]


class PairSimilarities:
    """Computes and caches :class:`ImagePairs` for every (image, category).

    Shared by the GPS and GPSm evaluations and the pointwise metrics. :meth:`compute` handles
    many images at once: every detection is decoded once, and the box-map reads, closest-vertex
    lookups (one gather in a per-part table of the uint8 U, V grid) and geodesic reads of all
    (detection, GT point) pairs of all images are single vectorised operations.
    """

    def __init__(self, body, coco_gt: COCO, coco_dt: COCO, max_dets: int = 20,
                 source: str = "ground truth", protocol: str = "exact",
                 gt_cache_file: Optional[str] = None):
        """``gt_cache_file``: where the prepared ground truth is kept between processes
        (:func:`.gt_preparation.gt_cache_file`); None keeps it in this process only."""
        self.body = body
        self.gt_cache_file = gt_cache_file
        self.coco_gt = coco_gt
        self.coco_dt = coco_dt
        self.max_dets = max_dets
        self.source = source
        self.protocol = check_protocol(protocol)
        self._cache: Dict[Tuple[int, int], ImagePairs] = {}

    def image(self, img_id: int, cat_id: int) -> ImagePairs:
        key = (img_id, cat_id)
        if key not in self._cache:
            self.compute([key])
        return self._cache[key]

    def compute(self, keys: Iterable[Tuple[int, int]]) -> None:
        """Fill the cache for all (image id, category id) ``keys`` in one pass."""
        keys = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if not keys:
            return
        # what COCO.getAnnIds / loadAnns return for one image and category, in their order
        gt_index, dt_index = self.coco_gt.imgToAnns, self.coco_dt.imgToAnns
        gts_of = [[a for a in gt_index.get(i, ()) if a["category_id"] == c] for i, c in keys]
        dts_of = [_sorted_detections([a for a in dt_index.get(i, ()) if a["category_id"] == c],
                                     self.max_dets) for i, c in keys]
        all_gts = [g for gts in gts_of for g in gts]
        all_dts = [d for dts in dts_of for d in dts]
        image_hw = [self._image_hw(i) for i, _ in keys]
        gt_hw = [hw for hw, gts in zip(image_hw, gts_of) for _ in gts]
        n_g = np.array([len(g) for g in gts_of], np.int64)
        n_d = np.array([len(d) for d in dts_of], np.int64)
        dt_boxes = np.array([d["bbox"] for d in all_dts], np.float64).reshape(-1, 4)
        decoded = _decode_all(all_dts)
        try:
            points, gt_masks = gt_preparation(
                self.coco_gt, self.body, self.protocol, self.source, DensePoseEvaluationError,
                self.gt_cache_file).get(all_gts, gt_hw)
        finally:
            maps = decoded()
        v = self._pair_values(n_d, n_g, points, maps, dt_boxes)
        g_first, d_first, p_first, s_first = v["g_first"], v["d_first"], v["p_first"], v["s_first"]

        # box IoU of every (detection, person) pair; mask IoU of those with GPS > 0
        gt_boxes = np.array([g["bbox"] for g in all_gts], np.float64).reshape(-1, 4)
        crowd = np.array([int(g.get("iscrowd", 0)) for g in all_gts], np.int64)
        seg_det, seg_gt = v["seg_det"], v["seg_gt"]
        box_iou = box_iou_pairs(dt_boxes[seg_det], gt_boxes[seg_gt], crowd[seg_gt] > 0)
        need = np.logical_or.reduce([g > 0 for g in v["gps"].values()])
        dt_need = np.zeros(len(all_dts), bool)
        dt_need[seg_det[need]] = True
        dt_hw = np.repeat(np.array(image_hw, np.int64).reshape(-1, 2), n_d, axis=0)
        idx = np.flatnonzero(dt_need)
        dt_masks: List = [None] * len(all_dts)
        for j, m in zip(idx.tolist(), detection_masks([maps[j][0] for j in idx], dt_boxes[idx],
                                                      dt_hw[idx], self.protocol)):
            dt_masks[j] = m

        for k, key in enumerate(keys):
            D, G = int(n_d[k]), int(n_g[k])
            g0, d0, s0, s1 = g_first[k], d_first[k], s_first[k], s_first[k + 1]
            sub = _sub_points(points, g0, g0 + G)
            err = v["errors"][p_first[k]:p_first[k] + D * len(sub.I)].reshape(D, len(sub.I))
            gps = {n: v["gps"][n][s0:s1].reshape(D, G) for n in NORMALIZATIONS}
            pair_need = need[s0:s1].reshape(D, G)
            mask_iou = (mask_iou_matrix(dt_masks[d0:d0 + D], gt_masks[g0:g0 + G],
                                        crowd[g0:g0 + G], pair_need)
                        if pair_need.any() else np.zeros((D, G)))
            self._cache[key] = ImagePairs([d["id"] for d in dts_of[k]],
                                          [g["id"] for g in gts_of[k]], sub, err, gps, mask_iou,
                                          box_iou[s0:s1].reshape(D, G))

    def _pair_values(self, n_d: np.ndarray, n_g: np.ndarray, points: GtPoints, maps,
                     boxes: np.ndarray) -> dict:
        """Errors of all (detection, GT point) pairs, laid out image by image, detection-major
        (``errors``, image k's from ``p_first[k]``), and the GPS of every (detection, person)
        pair under each normalisation (``gps``: name -> (S,), image by image, detection-major;
        ``seg_det``, ``seg_gt``: their global detection and person indices; image k's from
        ``s_first[k]``)."""
        official = self.protocol == "detectron2"
        K = len(n_d)
        g_first = np.concatenate([[0], np.cumsum(n_g)]).astype(np.int64)
        d_first = np.concatenate([[0], np.cumsum(n_d)]).astype(np.int64)
        pt_first = points.offsets[g_first]  # first point of each image
        n_p = np.diff(pt_first)
        img_of_det = np.repeat(np.arange(K), n_d)
        np_det = n_p[img_of_det]  # points (pairs) of each detection
        pair_first = np.concatenate([[0], np.cumsum(np_det)]).astype(np.int64)
        total = int(pair_first[-1])
        # pair -> (global detection, global point)
        det = np.repeat(np.arange(len(np_det)), np_det)
        pt = np.arange(total) - np.repeat(pair_first[:-1] - pt_first[img_of_det], np_det)

        # box-map cells at the points (as gps.point_cells, with per-detection factors)
        grid = np.array([m[0].shape for m in maps], np.int64).reshape(-1, 2)
        x0, y0, w, h = (boxes[:, c] for c in range(4))
        dx, dy = points.x[pt] - x0[det], points.y[pt] - y0[det]
        if official:
            cols, rows = dx.astype(np.int64), dy.astype(np.int64)
            inside = ((cols >= 0) & (rows >= 0) & (cols < w.astype(np.int64)[det])
                      & (rows < h.astype(np.int64)[det]))
        else:
            cols = np.floor(dx * (grid[:, 1] / np.maximum(w, 1e-9))[det]).astype(np.int64)
            rows = np.floor(dy * (grid[:, 0] / np.maximum(h, 1e-9))[det]).astype(np.int64)
            inside = (cols >= 0) & (cols < grid[det, 1]) & (rows >= 0) & (rows < grid[det, 0])
        sel = np.flatnonzero(inside)
        del dx, dy
        I_sel, qu, qv = _read_maps(maps, det[sel], rows[sel], cols[sel], grid[:, 1])
        fg = I_sel > 0  # pairs read on the foreground: the only ones with a vertex
        sel = sel[fg]
        err_sel, v_sel = quantized_point_errors(self.body, points.vertex[pt[sel]], I_sel[fg],
                                                qu[fg], qv[fg], self.protocol)
        errors = np.full(total, np.inf)
        errors[sel] = err_sel

        # (detection, person) segments: image k, detection d, person g
        n_s = n_d * n_g
        s_first = np.concatenate([[0], np.cumsum(n_s)]).astype(np.int64)
        seg_img = np.repeat(np.arange(K), n_s)
        local = np.arange(int(s_first[-1])) - s_first[seg_img]
        seg_det = d_first[seg_img] + local // np.maximum(n_g[seg_img], 1)
        seg_gt = g_first[seg_img] + local % np.maximum(n_g[seg_img], 1)
        n_pts = np.diff(points.offsets)
        starts = pair_first[seg_det] + points.offsets[seg_gt] - pt_first[seg_img]
        counts = n_pts[seg_gt]
        ends = starts + counts
        counts = counts.astype(np.float64)
        fin = sel[np.isfinite(err_sel)]  # similarity 0 elsewhere
        I_fin = points.I[pt[fin]]
        if official:
            # the official evaluator squares in float32 when a pair's distances all are
            # float32 matrix entries (every point predicted, none at distance 0)
            regular = np.zeros(total)
            regular[sel] = (np.isfinite(err_sel) & (v_sel != points.vertex[pt[sel]]))
            seg_of_pair = np.repeat(np.arange(len(starts)), ends - starts)
            f32 = (_segment_sums(regular, starts, ends) == counts)[seg_of_pair[fin]]
        gps = {}
        for norm in NORMALIZATIONS:
            sim = np.zeros(total)
            if official:
                sim[fin] = official_point_similarity(errors[fin], I_fin, norm, f32)
            else:
                sim[fin] = gps_from_errors(errors[fin], I_fin, norm)
            gps[norm] = _segment_sums(sim, starts, ends) / np.maximum(counts, 1)
        return {"errors": errors, "gps": gps, "seg_det": seg_det, "seg_gt": seg_gt,
                "g_first": g_first, "d_first": d_first, "p_first": pair_first[d_first],
                "s_first": s_first}

    def _image_hw(self, img_id: int) -> Tuple[int, int]:
        img = self.coco_gt.imgs[img_id]
        return int(img["height"]), int(img["width"])


class DensePoseCOCOeval(COCOeval):
    """COCOeval with GPS / GPSm as the similarity (see the module docstring).

    Args:
        coco_gt, coco_dt: COCO objects of the GT (DensePose-COCO) and of the detections
            (:func:`build_coco_detections`).
        pairs: the shared :class:`PairSimilarities` of these two (its protocol decides the
            ignore rules).
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
        self.protocol = pairs.protocol
        self.measure = measure
        self.normalization = normalization
        p = self.params
        p.iouThrs = np.linspace(0.5, 0.95, 10)
        p.maxDets = [pairs.max_dets]
        p.areaRng = [[0.0, 1e10], [32.0 ** 2, 96.0 ** 2], [96.0 ** 2, 1e10]]
        p.areaRngLbl = ["all", "medium", "large"]
        if img_ids is not None:
            p.imgIds = sorted(img_ids)
        self._matches: Dict[tuple, tuple] = {}

    def _prepare(self) -> None:
        super()._prepare()
        official = self.protocol == "detectron2"
        for gts in self._gts.values():
            for g in gts:
                if official:
                    g["ignore"] = int("dp_x" not in g)
                else:
                    g["ignore"] = int(bool(g["ignore"]) or not has_densepose(g))

    def evaluate(self) -> None:
        """Per-image matching of every image, category and area range into ``evalImgs``
        (pycocotools' layout, read by its ``accumulate``)."""
        p = self.params
        p.imgIds = list(np.unique(p.imgIds))
        p.catIds = list(np.unique(p.catIds)) if p.useCats else [-1]
        p.maxDets = sorted(p.maxDets)
        self._prepare()
        self.pairs.compute((i, c) for i in p.imgIds for c in p.catIds)
        self._images, self._matches = {}, {}
        self._thresholds = p.iouThrs.tolist()
        max_det = p.maxDets[-1]
        self.evalImgs = [self.evaluateImg(i, c, a, max_det)
                         for c in p.catIds for a in p.areaRng for i in p.imgIds]
        self._paramsEval = copy.deepcopy(p)

    def computeIoU(self, imgId, catId):  # noqa: N802 (COCOeval's name)
        gt = self._gts[imgId, catId]
        dt = self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return []
        dt = _sorted_detections(dt, self.params.maxDets[-1])
        pairs = self.pairs.image(imgId, catId)
        rows = [pairs.dt_index[d["id"]] for d in dt]
        cols = [pairs.gt_index[g["id"]] for g in gt]
        return self._similarity(pairs)[np.ix_(rows, cols)]

    def _similarity(self, pairs: ImagePairs) -> np.ndarray:
        if self.measure == "gps":
            return pairs.gps[self.normalization]
        return pairs.gpsm(self.normalization)

    def _image(self, imgId, catId, maxDet) -> dict:
        """What the matching of one image needs whatever the area range (cached)."""
        key = (imgId, catId, maxDet)
        if key not in self._images:
            gts, dts = self._gts[imgId, catId], _sorted_detections(self._dts[imgId, catId], maxDet)
            info = {"dts": dts, "dt_ids": [d["id"] for d in dts],
                    "dt_area": [d["area"] for d in dts],
                    "base_ignore": [bool(g["ignore"]) for g in gts],
                    "crowd": [bool(g.get("iscrowd", 0)) for g in gts]}
            if dts and gts:
                pairs = self.pairs.image(imgId, catId)
                rows = [pairs.dt_index[i] for i in info["dt_ids"]]
                cols = [pairs.gt_index[g["id"]] for g in gts]
                info["sim"] = self._similarity(pairs)[np.ix_(rows, cols)]
                info["box_iou"] = pairs.box_iou[np.ix_(rows, cols)]
            self._images[key] = info
        return self._images[key]

    def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802 (COCOeval's name)
        gts = self._gts[imgId, catId]
        if not gts and not self._dts[imgId, catId]:
            return None
        info = self._image(imgId, catId, maxDet)
        lo, hi = aRng
        ignore = [b or g["area"] < lo or g["area"] > hi
                  for b, g in zip(info["base_ignore"], gts)]
        order = sorted(range(len(gts)), key=ignore.__getitem__)  # stable: regular first
        key = (imgId, catId, maxDet, tuple(ignore))
        if key not in self._matches:
            self._matches[key] = self._match(info, gts, order, ignore)
        dtm, gtm, dt_ignore = self._matches[key]
        outside = [a < lo or a > hi for a in info["dt_area"]]
        if any(outside):
            dt_ignore = dt_ignore | ((dtm == 0) & np.array(outside, bool)[None, :])
        return {
            "image_id": imgId, "category_id": catId, "aRng": aRng, "maxDet": maxDet,
            "dtIds": info["dt_ids"], "gtIds": [gts[i]["id"] for i in order],
            "dtMatches": dtm, "gtMatches": gtm, "dtScores": [d["score"] for d in info["dts"]],
            "gtIgnore": np.array([ignore[i] for i in order], bool), "dtIgnore": dt_ignore,
        }

    def _match(self, info: dict, gts: List[dict], order: List[int], ignore_unsorted):
        """(dtm (T,D) matched GT ids, gtm (T,G) matched detection ids, dtIgnore (T,D)) of
        one image (GT in ``order``) under this protocol's rules, before the detection area
        rule (the rules of :mod:`.matching` on a batch of one)."""
        T, D, G = len(self.params.iouThrs), len(info["dts"]), len(gts)
        dtm, gtm = np.zeros((T, D)), np.zeros((T, G))
        dt_ignore = np.zeros((T, D), bool)
        ignore = np.array([ignore_unsorted[i] for i in order], bool)
        official = self.protocol == "detectron2"
        if official and ignore.all():
            dt_ignore[:] = True  # no regular GT: nothing here counts
            return dtm, gtm, dt_ignore
        if not D or not G:
            return dtm, gtm, dt_ignore
        crowd = np.array([info["crowd"][i] for i in order], bool)
        gt_ids = np.array([gts[i]["id"] for i in order], np.float64)
        dt_ids = np.array(info["dt_ids"], np.float64)
        box_iou = info["box_iou"][:, order]
        match = greedy_match(info["sim"][None][:, :, order], self._thresholds, ignore[None],
                             crowd[None])[0]
        t_idx, d_idx = np.nonzero(match >= 0)
        g_idx = match[t_idx, d_idx]
        dtm[t_idx, d_idx] = gt_ids[g_idx]
        gtm[t_idx, g_idx] = dt_ids[d_idx]
        dt_ignore[t_idx, d_idx] = ignore[g_idx]
        if official:
            rule = official_box_rule(box_iou[None], match[None, -1], ignore[None], crowd[None],
                                     IGNORE_BOX_IOU)[0]
            d_idx = np.flatnonzero(rule >= 0)
            g_idx = rule[d_idx]
            dt_ignore[:, d_idx] = ignore[g_idx]
            d_idx, g_idx = d_idx[ignore[g_idx]], g_idx[ignore[g_idx]]
            dtm[-1, d_idx] = gt_ids[g_idx]
            gtm[-1, g_idx] = dt_ids[d_idx]
        else:
            flagged = np.array([info["base_ignore"][i] for i in order], bool)
            if flagged.all():
                dt_ignore[:] = True
            elif flagged.any():
                near = (box_iou[:, flagged] >= IGNORE_BOX_IOU).any(axis=1)
                dt_ignore |= (dtm == 0) & near[None, :]
        return dtm, gtm, dt_ignore

    def run(self) -> "OrderedDict[str, float]":
        """evaluate() + accumulate() quietly; returns :meth:`metrics`."""
        with contextlib.redirect_stdout(io.StringIO()):
            self.evaluate()
            self.accumulate()
        return self.metrics()

    def metrics(self) -> "OrderedDict[str, float]":
        """AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl in percent (nan if undefined)."""
        return _metrics(self.params, self.eval["precision"], self.eval["recall"])


def _params(max_dets: int, img_ids: Sequence[int], cat_ids: Sequence[int]) -> Params:
    """COCO parameters of the DensePose evaluation (see the module docstring)."""
    p = Params(iouType="bbox")
    p.iouThrs = np.linspace(0.5, 0.95, 10)
    p.maxDets = [max_dets]
    p.areaRng = [[0.0, 1e10], [32.0 ** 2, 96.0 ** 2], [96.0 ** 2, 1e10]]
    p.areaRngLbl = ["all", "medium", "large"]
    p.imgIds = sorted(set(img_ids))
    p.catIds = sorted(set(cat_ids))
    return p


def _metrics(p: Params, precision: np.ndarray, recall: np.ndarray) -> "OrderedDict[str, float]":
    """AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl in percent (nan if undefined) of
    pycocotools' precision (T,R,K,A,M) and recall (T,K,A,M) tables."""

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


def _padded(blocks: List[np.ndarray], shape: Tuple[int, ...], fill, dtype) -> np.ndarray:
    """Stack of arrays of at most ``shape`` each, padded with ``fill``."""
    out = np.full((len(blocks),) + shape, fill, dtype)
    for k, b in enumerate(blocks):
        out[(k,) + tuple(slice(0, n) for n in b.shape)] = b
    return out


def evaluate_ap(coco_gt: COCO, coco_dt: COCO, pairs: PairSimilarities,
                variants: Sequence[Tuple[str, str]], img_ids: Sequence[int]
                ) -> Dict[Tuple[str, str], "OrderedDict[str, float]"]:
    """AP/AR of several (measure, normalisation) ``variants`` at once: what
    ``DensePoseCOCOeval(..., measure, normalization, img_ids).run()`` returns for each, with
    the matching of every image, threshold, area range and variant batched
    (:mod:`.matching`) and pycocotools' accumulation vectorised."""
    protocol = pairs.protocol
    official = protocol == "detectron2"
    p = _params(pairs.max_dets, img_ids, coco_gt.getCatIds())
    keys = [(i, c) for c in p.catIds for i in p.imgIds]
    pairs.compute(keys)
    images = [pairs.image(i, c) for i, c in keys]
    gts = [[coco_gt.anns[g] for g in pp.gt_ids] for pp in images]
    dts = [[coco_dt.anns[d] for d in pp.dt_ids] for pp in images]
    N, V, A, T = len(keys), len(variants), len(p.areaRng), len(p.iouThrs)
    Dm = max([len(d) for d in dts], default=0)
    Gm = max([len(g) for g in gts], default=0)

    def gt_values(fn, fill, dtype):
        return _padded([np.array([fn(g) for g in gg], dtype) for gg in gts], (Gm,), fill, dtype)

    def dt_values(fn, fill, dtype):
        return _padded([np.array([fn(d) for d in dd], dtype) for dd in dts], (Dm,), fill, dtype)

    gt_pad = gt_values(lambda g: False, True, bool)
    if official:
        base = gt_values(lambda g: "dp_x" not in g, True, bool)
    else:
        base = gt_values(lambda g: bool(g.get("iscrowd", 0)) or not has_densepose(g), True, bool)
    crowd = gt_values(lambda g: bool(g.get("iscrowd", 0)), False, bool)
    gt_area = gt_values(lambda g: g["area"], 0.0, np.float64)
    gt_id = gt_values(lambda g: g["id"], 0, np.int64)
    dt_valid = dt_values(lambda d: True, False, bool)
    dt_area = dt_values(lambda d: d["area"], 0.0, np.float64)
    dt_score = dt_values(lambda d: d["score"], 0.0, np.float64)
    box_iou = _padded([pp.box_iou for pp in images], (Dm, Gm), -np.inf, np.float64)
    sims = np.stack([_padded([pp.gps[n] if m == "gps" else pp.gpsm(n) for pp in images],
                             (Dm, Gm), -np.inf, np.float64) for m, n in variants])

    # per area range: GT ignore flags and matching order (regular, ignored, padding)
    lo = np.array([a[0] for a in p.areaRng])[:, None, None]
    hi = np.array([a[1] for a in p.areaRng])[:, None, None]
    ignore = base[None] | (gt_area[None] < lo) | (gt_area[None] > hi)  # (A,N,G)
    order = np.argsort(ignore.astype(np.int8) + 2 * gt_pad[None], axis=-1, kind="stable")

    def in_order(x):  # (A,N,G) values of (N,G) GT in each area range's order
        return np.take_along_axis(np.broadcast_to(x, (A,) + x.shape), order, axis=-1)

    ignore, crowd_o, pad_o = (np.take_along_axis(ignore, order, -1), in_order(crowd),
                              in_order(gt_pad))
    id_o, base_o = in_order(gt_id), in_order(base)
    biou = np.take_along_axis(np.broadcast_to(box_iou[None], (A, N, Dm, Gm)),
                              order[:, :, None, :], axis=-1)
    sim = np.take_along_axis(np.broadcast_to(sims[:, None], (V, A, N, Dm, Gm)),
                             np.broadcast_to(order[None, :, :, None, :], (V, A, N, Dm, Gm)),
                             axis=-1)
    skip = (ignore | pad_o).all(axis=-1) if official else np.zeros((A, N), bool)  # (A,N)
    sim = np.where(skip[None, :, :, None, None], -np.inf, sim)
    biou = np.where(skip[:, :, None, None], -np.inf, biou)

    B = V * A * N
    rows = lambda x: np.broadcast_to(x, (V,) + x.shape).reshape((B,) + x.shape[2:])  # noqa
    ig_b, crowd_b = rows(ignore), rows(crowd_o)
    match = greedy_match(sim.reshape(B, Dm, Gm), p.iouThrs.tolist(), ig_b, crowd_b)
    r_idx = np.arange(B)[:, None, None]
    dt_ignore = np.where(match >= 0, ig_b[r_idx, np.maximum(match, 0)[:, :, :]], False)
    biou_b = rows(biou)
    id_b = rows(id_o)
    matched = (match >= 0) & (id_b[r_idx, np.maximum(match, 0)] != 0)
    if official:
        rule = official_box_rule(biou_b, match[:, -1], ig_b, crowd_b, IGNORE_BOX_IOU)
        b, d = np.nonzero(rule >= 0)
        g = rule[b, d]
        dt_ignore[b, :, d] = ig_b[b, g][:, None]
        hit = ig_b[b, g]
        matched[b[hit], -1, d[hit]] = id_b[b[hit], g[hit]] != 0
        dt_ignore |= rows(skip[:, :, None, None] & np.ones((1, 1, T, Dm), bool))
    else:
        flagged = rows(base_o & ~pad_o)
        real = rows(~pad_o).any(axis=-1)  # (B,)
        near = ((biou_b >= IGNORE_BOX_IOU) & flagged[:, None, :]).any(axis=-1)  # (B,D)
        dt_ignore |= ~matched & near[:, None, :]
        dt_ignore[real & (flagged == rows(~pad_o)).all(axis=-1)] = True
    outside = (dt_area[None] < lo) | (dt_area[None] > hi)  # (A,N,D)
    dt_ignore |= ~matched & rows(outside)[:, None, :]

    # accumulation per variant, category and area range
    shape = (V, A, len(p.catIds), N // max(len(p.catIds), 1))
    matched = matched.reshape(shape + (T, Dm))
    dt_ignore = dt_ignore.reshape(shape + (T, Dm))
    regular = (~ignore & ~pad_o).reshape((A,) + shape[2:] + (Gm,)).sum(axis=(-1, -2))  # (A,K)
    valid = dt_valid.reshape(shape[2:] + (Dm,))
    R, K = len(p.recThrs), len(p.catIds)
    out = {}
    for v, variant in enumerate(variants):
        precision = -np.ones((T, R, K, A, 1))
        recall = -np.ones((T, K, A, 1))
        for k in range(K):
            sel = valid[k].ravel()
            scores = dt_score.reshape(shape[2:] + (Dm,))[k].ravel()[sel]
            for a in range(A):
                flat = lambda x: x[v, a, k].transpose(1, 0, 2).reshape(T, -1)[:, sel]  # noqa
                pr, rc = accumulate(scores, flat(matched), flat(dt_ignore),
                                    int(regular[a, k]), p.recThrs)
                if pr is not None:
                    precision[:, :, k, a, 0], recall[:, k, a, 0] = pr, rc
        out[tuple(variant)] = _metrics(p, precision, recall)
    return out
