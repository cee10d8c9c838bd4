"""Geodesic point similarity (GPS) between a detection's IUV and a person's annotated points.

For a detection d and a ground-truth person g with annotated points p:

    GPS(d, g) = mean_p exp(-e_p^2 / (2 kappa_p^2))

where e_p is the geodesic distance on the body surface between the GT surface point of p (its
(I,U,V) mapped to the nearest chart vertex of part I, ``BodyModel.iuv_to_vertex``) and the
predicted one (the detection's (I,U,V) at p's image position, mapped the same way). Points
outside the detection box or predicted as background have e_p = inf (contribute 0). Where p
sits in the image and how it is read from a detection's box map follow the evaluation
protocol (:mod:`.protocol`): ``"exact"`` x = x0 + dp_x * w / 256 read in the box cell that
contains it; ``"detectron2"`` x = x0 + dp_x * w / 255 read at ``int(x - box_x0)``.

Two normalisations, always named where a GPS number is reported:

- ``"paper"``: one kappa = 0.255 m for every point (Güler et al., CVPR 2018: e = 0.3 m gives
  GPS ~ 0.5).
- ``"coarse_part"``: kappa per coarse body part of the GT point, as the upstream DensePose
  evaluation (detectron2 ``projects/DensePose/densepose/evaluation/densepose_coco_evaluation.py``
  constants ``Mean_Distances`` and ``CoarseParts``): the 24 fine parts are grouped into 8
  regions with mean geodesic distances torso 0.351, hands 0.107, feet 0.126, upper legs 0.237,
  lower legs 0.173, upper arms 0.142, lower arms 0.128, head 0.150 (metres).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..structures.coco_format import FRAME_SIZE
from .iuv import IUV, box_cells_at_points
from .protocol import OFFICIAL_DP_SCALE, check_protocol

__all__ = [
    "NORMALIZATIONS",
    "PAPER_KAPPA",
    "COARSE_REGION_OF_PART",
    "COARSE_REGION_KAPPA",
    "point_kappa",
    "gps_from_errors",
    "GtPoints",
    "collect_gt_points",
    "prediction_errors",
    "gps_per_gt",
    "geodesic_point_similarity",
    "has_densepose",
    "errors_by_person",
    "point_cells",
    "quantized_point_errors",
    "official_point_similarity",
]

#: normalisation names accepted everywhere a GPS is computed
NORMALIZATIONS = ("paper", "coarse_part")
#: single kappa of the paper normalisation (metres)
PAPER_KAPPA = 0.255
#: fine part I (index 0..24) -> coarse region 1..8 of the upstream normalisation (0: none)
COARSE_REGION_OF_PART = np.array(
    [0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8], np.int64)
#: coarse region (index 0..8) -> kappa in metres (upstream "Mean_Distances"; index 0 unused)
COARSE_REGION_KAPPA = np.array(
    [0.0, 0.351, 0.107, 0.126, 0.237, 0.173, 0.142, 0.128, 0.150], np.float64)


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown GPS normalisation {normalization!r}; "
                         f"expected one of {NORMALIZATIONS}")


def point_kappa(I_gt: np.ndarray, normalization: str) -> np.ndarray:
    """kappa (P,) in metres of GT points with parts ``I_gt`` (1..24) under a normalisation."""
    _check_normalization(normalization)
    I_gt = np.asarray(I_gt, np.int64)
    if normalization == "paper":
        return np.full(I_gt.shape, PAPER_KAPPA)
    return COARSE_REGION_KAPPA[COARSE_REGION_OF_PART[I_gt]]


def gps_from_errors(errors: np.ndarray, I_gt: np.ndarray, normalization: str) -> np.ndarray:
    """Per-point similarity exp(-e^2 / 2 kappa^2) (P,); infinite errors give 0."""
    e = np.asarray(errors, np.float64)
    kappa = point_kappa(I_gt, normalization)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(-(e * e) / (2.0 * kappa * kappa))


@dataclass
class GtPoints:
    """Annotated points of the GT persons of one image, concatenated.

    Person k owns points ``offsets[k]:offsets[k+1]``; persons without DensePose points own none.
    """

    ann_ids: List[int]
    offsets: np.ndarray  # (G+1,) int64
    x: np.ndarray  # (P,) image x of each point
    y: np.ndarray  # (P,) image y
    I: np.ndarray  # (P,) int64 GT part 1..24
    vertex: np.ndarray  # (P,) geodesic-set vertex of the GT surface point

    @property
    def num_points(self) -> np.ndarray:
        """(G,) number of annotated points per person."""
        return np.diff(self.offsets)

    def person_slice(self, k: int) -> slice:
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))


def has_densepose(ann: dict) -> bool:
    """Whether a person annotation carries DensePose points."""
    return "dp_x" in ann and len(ann.get("dp_x") or []) > 0


def collect_gt_points(body, anns: Sequence[dict], source: str = "ground truth",
                      protocol: str = "exact") -> GtPoints:
    """:class:`GtPoints` of person annotations (DensePose-COCO records).

    Image position of a point (GT box x0, w; same for y): ``"exact"`` x = x0 + dp_x * w / 256,
    U, V clipped to [0, 1], nearest chart vertex by KD-tree; ``"detectron2"``
    x = dp_x * w / 255 + x0 (the official evaluator's operations, in its order), U, V as
    annotated, nearest chart vertex as its exhaustive search finds it.
    Raises ValueError naming ``source`` and the annotation id on malformed points.
    """
    official = check_protocol(protocol) == "detectron2"
    cols = {k: [] for k in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")}
    boxes, counts = [], []
    for ann in anns:
        if not has_densepose(ann):
            counts.append(0)
            continue
        try:
            lengths = {len(ann[k]) for k in cols}
            if len(lengths) != 1:
                raise ValueError(f"{_where(ann, source)}: dp_x, dp_y, dp_I, dp_U, dp_V differ "
                                 "in length")
            for k, values in cols.items():
                values.extend(ann[k])
            x0, y0, w, h = (float(c) for c in ann["bbox"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{_where(ann, source)}: malformed DensePose points ({e})") from None
        boxes.append((x0, y0, w, h))
        counts.append(lengths.pop())
    try:
        dp = {k: np.asarray(v, np.float64).ravel() for k, v in cols.items()}
    except (TypeError, ValueError) as e:
        bad = _first_malformed(anns)
        raise ValueError(f"{_where(bad, source)}: malformed DensePose points ({e})") from None
    n_pts = np.array([c for c, a in zip(counts, anns) if has_densepose(a)], np.int64)
    box = np.repeat(np.asarray(boxes, np.float64).reshape(-1, 4), n_pts, axis=0)
    I_all = np.rint(dp["dp_I"]).astype(np.int64)
    if len(I_all) and (I_all.min() < 1 or I_all.max() > 24):
        bad = int(np.flatnonzero((I_all < 1) | (I_all > 24))[0])
        owner = [a for a in anns if has_densepose(a)][int(np.searchsorted(
            np.cumsum(n_pts), bad, side="right"))]
        raise ValueError(f"{_where(owner, source)}: dp_I must lie in 1..24")
    x0, y0, w, h = box.T
    if official:
        x = dp["dp_x"] * w / OFFICIAL_DP_SCALE + x0
        y = dp["dp_y"] * h / OFFICIAL_DP_SCALE + y0
        U_all, V_all = dp["dp_U"], dp["dp_V"]
    else:
        x = x0 + dp["dp_x"] * w / FRAME_SIZE
        y = y0 + dp["dp_y"] * h / FRAME_SIZE
        U_all, V_all = np.clip(dp["dp_U"], 0.0, 1.0), np.clip(dp["dp_V"], 0.0, 1.0)
    if len(I_all):
        vertex = (body.iuv_to_vertex(I_all, U_all, V_all, ties="first") if official
                  else body.iuv_to_vertex(I_all, U_all, V_all))
    else:
        vertex = np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return GtPoints([a.get("id") for a in anns], offsets, x, y, I_all,
                    np.asarray(vertex, np.int64))


def _where(ann: dict, source: str) -> str:
    return f"{source}: annotation id={ann.get('id', '?')} (image id={ann.get('image_id', '?')})"


def _first_malformed(anns: Sequence[dict]) -> dict:
    """The first annotation whose point lists are not all numbers."""
    for ann in anns:
        if has_densepose(ann):
            try:
                for k in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V"):
                    np.asarray(ann[k], np.float64)
            except (TypeError, ValueError):
                return ann
    return anns[0] if anns else {}


def prediction_errors(body, gt: GtPoints, box_xywh: Sequence[float], iuv: IUV) -> np.ndarray:
    """Geodesic errors (P,) in metres of one detection (box + its box IUV) at all GT points;
    inf where the point is outside the box or predicted background."""
    I_box, U_box, V_box = iuv
    errors = np.full(len(gt.I), np.inf)
    if not len(gt.I):
        return errors
    rows, cols, inside = box_cells_at_points(gt.x, gt.y, box_xywh, I_box.shape[:2])
    I_pred = np.where(inside, I_box[rows, cols], 0).astype(np.int64)
    valid = (I_pred > 0) & (gt.vertex >= 0)
    if not valid.any():
        return errors
    sel = np.flatnonzero(valid)
    v_pred = body.iuv_to_vertex(I_pred[sel], U_box[rows[sel], cols[sel]],
                                V_box[rows[sel], cols[sel]])
    ok = v_pred >= 0
    errors[sel[ok]] = body.geodesic_distance(gt.vertex[sel[ok]], v_pred[ok])
    return errors


def gps_per_gt(errors: np.ndarray, gt: GtPoints, normalization: str) -> np.ndarray:
    """GPS (G,) of one detection with every GT person from its errors (P,) at all GT points;
    persons without points get 0. ``errors`` may be (D,P) for D detections -> (D,G)."""
    errors = np.asarray(errors, np.float64)
    sim = gps_from_errors(errors, gt.I, normalization)
    zero = np.zeros(sim.shape[:-1] + (1,))
    csum = np.concatenate([zero, np.cumsum(sim, axis=-1)], axis=-1)
    sums = csum[..., gt.offsets[1:]] - csum[..., gt.offsets[:-1]]
    return sums / np.maximum(gt.num_points, 1)


def geodesic_point_similarity(body, gt_ann: dict, box_xywh: Sequence[float], iuv: IUV,
                              normalization: str = "paper") -> Tuple[float, np.ndarray]:
    """GPS of one (detection, GT person) pair and the per-point geodesic errors (P,)."""
    gt = collect_gt_points(body, [gt_ann])
    errors = prediction_errors(body, gt, box_xywh, iuv)
    return float(gps_per_gt(errors, gt, normalization)[0]), errors


def errors_by_person(errors: np.ndarray, gt: GtPoints) -> Dict[int, np.ndarray]:
    """Split errors (P,) into {person index: errors of its points}."""
    return {k: errors[gt.person_slice(k)] for k in range(len(gt.ann_ids))}


# ---------------------------------------------------------------------- vectorised lookups
def point_cells(x: np.ndarray, y: np.ndarray, boxes: np.ndarray, grid_hw: np.ndarray,
                protocol: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box-map cells (rows, cols) at image positions, and whether each lies in the box, for
    arrays of (position, detection) pairs: x, y (N,), boxes (N,4) XYWH, grid_hw (N,2).

    ``"exact"``: the cell containing the position (as :func:`.iuv.box_cells_at_points`);
    ``"detectron2"``: ``int(x - box_x0)`` truncated toward zero (so positions less than a pixel
    left of or above the box read its first column / row, as upstream's do), inside when below
    ``int(w)``, ``int(h)``. Rows/cols of outside positions are clamped into the grid.
    """
    x0, y0, w, h = (boxes[:, k] for k in range(4))
    hi, wi = grid_hw[:, 0], grid_hw[:, 1]
    if check_protocol(protocol) == "detectron2":
        cols = (x - x0).astype(np.int64)
        rows = (y - y0).astype(np.int64)
        inside = (cols >= 0) & (rows >= 0) & (cols < w.astype(np.int64)) & \
                 (rows < h.astype(np.int64))
    else:
        cols = np.floor((x - x0) * (wi / np.maximum(w, 1e-9))).astype(np.int64)
        rows = np.floor((y - y0) * (hi / np.maximum(h, 1e-9))).astype(np.int64)
        inside = (cols >= 0) & (cols < wi) & (rows >= 0) & (rows < hi)
    return np.clip(rows, 0, hi - 1), np.clip(cols, 0, wi - 1), inside


def quantized_point_errors(body, gt_vertex: np.ndarray, I: np.ndarray, qu: np.ndarray,
                           qv: np.ndarray, protocol: str) -> Tuple[np.ndarray, np.ndarray]:
    """Geodesic errors (N,) between GT vertices and predictions stored as uint8 (I, 255 U,
    255 V), one table gather and one geodesic gather for all N; inf where the prediction is
    background, an unknown part, or the GT point has no vertex. Also returns the predicted
    vertex (N,) (-1: none).

    ``"exact"`` reads U = float32(qu) / 255 (what the decoded maps carry) with the KD-tree
    nearest vertex; ``"detectron2"`` reads U = qu / 255.0 with the exhaustive search's.
    """
    ties = "first" if check_protocol(protocol) == "detectron2" else "tree"
    table = body.quantized_vertex_table(ties)
    I = np.asarray(I, np.int64)
    known = (I >= 1) & (I < table.shape[0])
    v_pred = np.where(known, table[np.where(known, I, 0), qu, qv], -1).astype(np.int64)
    errors = np.full(len(I), np.inf)
    ok = np.flatnonzero((v_pred >= 0) & (gt_vertex >= 0))
    if len(ok):
        errors[ok] = body.geodesic_distance(gt_vertex[ok], v_pred[ok])
    return errors, v_pred


def official_point_similarity(errors: np.ndarray, I_gt: np.ndarray, normalization: str,
                              float32_pair: np.ndarray) -> np.ndarray:
    """Per-point similarity as the official evaluator rounds it: where all distances of a
    (detection, person) pair are float32 matrix entries (every point predicted, no zero
    distance), it squares them in float32 before dividing; elsewhere as
    :func:`gps_from_errors`. ``float32_pair`` (N,) flags the points of such pairs."""
    e = np.asarray(errors, np.float64)
    sq = e * e
    if float32_pair.any():
        e32 = e[float32_pair].astype(np.float32)
        sq[float32_pair] = (e32 * e32).astype(np.float64)
    kappa = point_kappa(I_gt, normalization)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(-sq / (2.0 * kappa * kappa))
