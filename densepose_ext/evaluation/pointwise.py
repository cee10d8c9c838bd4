"""Pointwise evaluation: the fraction of annotated points within a geodesic error, and its AUC.

f(t) = fraction of all annotated GT points whose geodesic error is < t, and

    AUC_a = (1/a) * integral_0^a f(t) dt = mean_p max(0, 1 - e_p / a)

(exact for the step function f: each point contributes the length of [e_p, a] over a). Points
without a prediction count with e = inf (contribute 0). Reported for a = 0.10, 0.20, 0.30 m as
auc10, auc20, auc30 (fractions in [0, 1]).

Which detection predicts a GT person's points: the detection of the same image with the
highest GPS (paper normalisation, kappa = 0.255 m) with that person, among the image's top
``maxDets`` detections by score; a person no detection overlaps (GPS 0 for all) has all its
points at inf. Choosing by GPS rather than by the AP matching keeps the pointwise numbers
independent of scores and thresholds: they measure the correspondence quality of the best
available prediction per person, like the paper's pointwise curves.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable, Sequence

import numpy as np

__all__ = ["AUC_THRESHOLDS", "auc", "auc_metrics", "error_curve", "best_gps_point_errors"]

#: upper limits a (metres) of the reported AUC_a, with their metric names
AUC_THRESHOLDS: Dict[str, float] = OrderedDict(auc10=0.10, auc20=0.20, auc30=0.30)


def auc(errors: np.ndarray, a: float) -> float:
    """AUC_a of geodesic errors (metres; inf allowed) = (1/a) * integral_0^a f(t) dt."""
    if a <= 0:
        raise ValueError(f"AUC limit must be positive, got {a}")
    e = np.asarray(errors, np.float64).ravel()
    if e.size == 0:
        return float("nan")
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("geodesic errors must be non-negative numbers (inf allowed)")
    return float(np.mean(np.clip(1.0 - e / a, 0.0, 1.0)))


def auc_metrics(errors: np.ndarray) -> Dict[str, float]:
    """{auc10, auc20, auc30} of the errors."""
    return OrderedDict((name, auc(errors, a)) for name, a in AUC_THRESHOLDS.items())


def error_curve(errors: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """f(t) = fraction of errors < t at each threshold t (for plots)."""
    e = np.sort(np.asarray(errors, np.float64).ravel())
    if e.size == 0:
        return np.full(len(thresholds), np.nan)
    return np.searchsorted(e, np.asarray(thresholds, np.float64), side="left") / e.size


def best_gps_point_errors(errors: np.ndarray, gps: np.ndarray, num_points: np.ndarray
                          ) -> np.ndarray:
    """Errors of every GT point under its person's best detection.

    Args:
        errors: (D,P) errors of D detections at the P points of the image's persons.
        gps: (D,G) GPS of each detection with each person (selection criterion).
        num_points: (G,) points per person (persons own consecutive runs of P).
    Returns:
        (P,) errors; a person with no detection or GPS 0 with all of them gets inf.
    """
    num_points = np.asarray(num_points, np.int64)
    P = int(num_points.sum())
    if errors.shape[0] == 0 or P == 0:
        return np.full(P, np.inf)
    best = np.argmax(gps, axis=0)  # (G,)
    matched = gps[best, np.arange(len(best))] > 0
    owner = np.repeat(np.arange(len(num_points)), num_points)  # (P,) person of each point
    out = errors[best[owner], np.arange(P)]
    return np.where(matched[owner], out, np.inf)


def concatenate_errors(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """Concatenate per-image error arrays (empty input -> empty array)."""
    chunks = [np.asarray(c, np.float64).ravel() for c in chunks]
    return np.concatenate(chunks) if chunks else np.zeros(0)
