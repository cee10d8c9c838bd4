"""Geodesic point similarity (GPS) between a detection's IUV and a person's annotated points.

For a detection d and a ground-truth person g with annotated points p:

    GPS(d, g) = mean_p exp(-e_p^2 / (2 kappa_p^2))

where e_p is the geodesic distance on the body surface between the GT surface point of p (its
(I,U,V) mapped to the nearest chart vertex of part I, ``BodyModel.iuv_to_vertex``) and the
predicted one (the detection's (I,U,V) at p's image position, mapped the same way). Points
outside the detection box or predicted as background have e_p = inf (contribute 0).

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

from .iuv import IUV, box_cells_at_points

__all__ = [
    "NORMALIZATIONS",
    "PAPER_KAPPA",
    "COARSE_REGION_OF_PART",
    "COARSE_REGION_KAPPA",
    "DP_FRAME",
    "point_kappa",
    "gps_from_errors",
    "GtPoints",
    "collect_gt_points",
    "prediction_errors",
    "gps_per_gt",
    "geodesic_point_similarity",
    "has_densepose",
    "errors_by_person",
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
#: side of the DensePose-COCO box frame of dp_x / dp_y
DP_FRAME = 256.0


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


def collect_gt_points(body, anns: Sequence[dict], source: str = "ground truth") -> GtPoints:
    """:class:`GtPoints` of person annotations (DensePose-COCO records).

    Image position of a point: x = x0 + dp_x * w / 256 (GT box x0, w), same for y.
    Raises ValueError naming ``source`` and the annotation id on malformed points.
    """
    xs, ys, Is, Us, Vs, counts = [], [], [], [], [], []
    for ann in anns:
        if not has_densepose(ann):
            counts.append(0)
            continue
        where = (f"{source}: annotation id={ann.get('id', '?')} "
                 f"(image id={ann.get('image_id', '?')})")
        try:
            cols = [np.asarray(ann[k], np.float64).ravel()
                    for k in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: malformed DensePose points ({e})") from None
        n = len(cols[0])
        if any(len(c) != n for c in cols):
            raise ValueError(f"{where}: dp_x, dp_y, dp_I, dp_U, dp_V differ in length")
        I = np.rint(cols[2]).astype(np.int64)
        if n and (I.min() < 1 or I.max() > 24):
            raise ValueError(f"{where}: dp_I must lie in 1..24")
        x0, y0, w, h = (float(c) for c in ann["bbox"])
        xs.append(x0 + cols[0] * w / DP_FRAME)
        ys.append(y0 + cols[1] * h / DP_FRAME)
        Is.append(I)
        Us.append(np.clip(cols[3], 0.0, 1.0))
        Vs.append(np.clip(cols[4], 0.0, 1.0))
        counts.append(n)

    def cat(parts: list, dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    I_all = cat(Is, np.int64)
    vertex = (body.iuv_to_vertex(I_all, cat(Us, np.float64), cat(Vs, np.float64))
              if len(I_all) else np.zeros(0, np.int64))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return GtPoints([a.get("id") for a in anns], offsets, cat(xs, np.float64),
                    cat(ys, np.float64), I_all, np.asarray(vertex, np.int64))


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
