"""COCO greedy matching and accumulation, batched over images, thresholds and area ranges.

The rules are pycocotools' ``COCOeval.evaluateImg`` / ``accumulate`` (and the DensePose ignore
rules of :mod:`.densepose_coco_eval`), written as numpy operations over a leading batch axis of
"rows" (one row = one image under one similarity and one area range): the only Python loops
run over the detection rank (at most ``maxDets``), not over images or thresholds. Every value
is computed with the same floating-point operations as the per-image code, so results are
bitwise equal.

Layout: similarities are (B, D, G) with each row's GT already in matching order (regular
before ignored, stable) and ``-inf`` where a detection or GT slot is padding.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

__all__ = ["greedy_match", "official_box_rule", "accumulate"]


def _last_max(values: np.ndarray) -> np.ndarray:
    """Index of the largest value along the last axis, the later one on ties; -1 where all
    are -inf."""
    G = values.shape[-1]
    idx = G - 1 - np.argmax(values[..., ::-1], axis=-1)
    return np.where(np.max(values, axis=-1) > -np.inf, idx, -1)


def greedy_match(sim: np.ndarray, thresholds: Sequence[float], ignore: np.ndarray,
                 crowd: np.ndarray) -> np.ndarray:
    """COCO's greedy matching of every row at every threshold: (B,T,D) index of the GT each
    detection matches, -1 if none.

    Per threshold t, each detection in turn (score order) takes the available GT (crowds stay
    available) with the highest similarity >= t (the later one on ties), preferring regular
    GT: ignored ones only when no regular one qualifies. ``ignore``, ``crowd``: (B,G) bool.
    """
    B, D, G = sim.shape
    thr = np.minimum(np.asarray(thresholds, np.float64), 1 - 1e-10)
    out = np.full((B, len(thr), D), -1, np.int64)
    if not B or not G:
        return out
    taken = np.zeros((B, len(thr), G), bool)
    lowest = thr.min()
    for d in range(D):
        rows = np.flatnonzero((sim[:, d, :] >= lowest).any(axis=1))
        if not len(rows):
            continue
        s = sim[rows, d, :][:, None, :]  # (R,1,G)
        ig = ignore[rows][:, None, :]
        ok = (s >= thr[None, :, None]) & ~(taken[rows] & ~crowd[rows][:, None, :])
        choice = _last_max(np.where(ok & ~ig, s, -np.inf))
        choice = np.where(choice >= 0, choice, _last_max(np.where(ok & ig, s, -np.inf)))
        out[rows, :, d] = choice
        r, t = np.nonzero(choice >= 0)
        taken[rows[r], t, choice[r, t]] = True
    return out


def official_box_rule(box_iou: np.ndarray, match_last: np.ndarray, ignore: np.ndarray,
                      crowd: np.ndarray, min_iou: float) -> np.ndarray:
    """The official evaluator's box rule at the last threshold: (B,D) index of the GT whose
    ignore flag each detection takes (-1: none).

    Each detection unmatched at the last threshold (``match_last`` (B,D) == -1), in score
    order, takes the GT not matched there (crowds always) with the highest box IoU >=
    ``min_iou`` (the later one on ties); an ignored GT so taken counts as matched for the
    detections after it.
    """
    B, D, G = box_iou.shape
    out = np.full((B, D), -1, np.int64)
    if not B or not G:
        return out
    taken = np.zeros((B, G), bool)
    r, d = np.nonzero(match_last >= 0)
    taken[r, match_last[r, d]] = True
    for d in range(D):
        rows = np.flatnonzero((match_last[:, d] < 0) & (box_iou[:, d, :] >= min_iou).any(axis=1))
        if not len(rows):
            continue
        b = box_iou[rows, d, :]
        ok = (b >= min_iou) & ~(taken[rows] & ~crowd[rows])
        m = _last_max(np.where(ok, b, -np.inf))
        out[rows, d] = m
        hit = m >= 0
        hit[hit] = ignore[rows[hit], m[hit]]
        taken[rows[hit], m[hit]] = True
    return out


def accumulate(scores: np.ndarray, matched: np.ndarray, dt_ignore: np.ndarray,
               num_regular_gt: int, rec_thresholds: np.ndarray
               ) -> Tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``accumulate`` of one category, area range and maxDets: (T,R) precision
    and (T,) recall, or None, None when there is no regular GT (left at -1 there).

    ``scores`` (N,) of all detections of all images (each image's in its score order, images
    in order), ``matched`` / ``dt_ignore`` (T,N) bool.
    """
    if num_regular_gt == 0:
        return None, None
    T, n = matched.shape
    inds = np.argsort(-scores, kind="mergesort")
    dtm, dt_ig = matched[:, inds], dt_ignore[:, inds]
    tps = np.logical_and(dtm, np.logical_not(dt_ig))
    fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ig))
    tp = np.cumsum(tps, axis=1).astype(dtype=float)
    fp = np.cumsum(fps, axis=1).astype(dtype=float)
    R = len(rec_thresholds)
    if not n:
        return np.zeros((T, R)), np.zeros(T)
    rc = tp / num_regular_gt
    pr = tp / (fp + tp + np.spacing(1))
    recall = rc[:, -1]
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
    # pycocotools' searchsorted(rc[t], rec_thresholds, "left") per threshold (rows ascend)
    at = np.stack([np.searchsorted(row, rec_thresholds, side="left") for row in rc])  # (T,R)
    precision = np.where(at < n, np.take_along_axis(pr, np.minimum(at, n - 1), axis=1), 0.0)
    return precision, recall
