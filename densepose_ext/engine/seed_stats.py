"""Statistics of recipe rows run with several seeds: mean ± std and the verdict of a comparison.

A comparison of two rows is "reproduced" only when the difference of their seed means lies in
the claimed direction and exceeds twice its standard error (Welch: the two rows' seeds are
independent runs). A difference within two standard errors is "not resolved at this budget";
one beyond them in the other direction is "opposite (> 2 SE)". With fewer than :data:`MIN_SEEDS`
seeds in either row nothing is resolved: a claim needs at least three runs a side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

__all__ = ["REPRODUCED", "NOT_RESOLVED", "OPPOSITE", "MIN_SEEDS", "SeedStats", "Comparison",
           "compare_rows", "format_mean_std", "VERDICT_RULE", "comparison_cells"]

REPRODUCED = "reproduced"
NOT_RESOLVED = "not resolved at this budget"
OPPOSITE = "opposite (> 2 SE)"
#: seeds each row needs before a comparison can be resolved either way
MIN_SEEDS = 3


@dataclass(frozen=True)
class SeedStats:
    """Mean and sample standard deviation (n - 1) of one metric over a row's seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "SeedStats":
        values = [float(v) for v in values]
        if not values:
            raise ValueError("no values: the row has no finished seed")
        n = len(values)
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        return cls(mean, math.sqrt(var), n)


@dataclass(frozen=True)
class Comparison:
    """``after - before`` of the seed means, its standard error and the verdict."""

    before: SeedStats
    after: SeedStats
    difference: float
    standard_error: Optional[float]  # None with a single seed on a side
    verdict: str


def compare_rows(before: Sequence[float], after: Sequence[float],
                 higher_is_better: bool = True) -> Comparison:
    """Verdict on the claim "``after`` is better than ``before``" from per-seed values."""
    b, a = SeedStats.of(before), SeedStats.of(after)
    diff = a.mean - b.mean
    if b.n < 2 or a.n < 2:
        return Comparison(b, a, diff, None, NOT_RESOLVED)
    se = math.sqrt(b.std ** 2 / b.n + a.std ** 2 / a.n)
    if b.n < MIN_SEEDS or a.n < MIN_SEEDS:
        return Comparison(b, a, diff, se, NOT_RESOLVED)
    gain = diff if higher_is_better else -diff
    if gain > 2 * se:
        verdict = REPRODUCED
    elif gain < -2 * se:
        verdict = OPPOSITE
    else:
        verdict = NOT_RESOLVED
    return Comparison(b, a, diff, se, verdict)


def format_mean_std(values: Sequence[float], digits: int = 2) -> str:
    """``"12.34 ± 0.56"`` over the seeds (a single seed shows its value and ``(1 seed)``)."""
    s = SeedStats.of(values)
    if s.n == 1:
        return f"{s.mean:.{digits}f} (1 seed)"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"


#: how a recipe's RESULTS.md states the verdict rule above its comparison table
VERDICT_RULE = ("Verdict: **reproduced** when the mean difference over the seeds lies in the "
                "paper's direction and exceeds twice its standard error (Welch); **not resolved "
                "at this budget** within two standard errors; **opposite (> 2 SE)** beyond them "
                "the other way.")


def comparison_cells(before: Sequence[float], after: Sequence[float], digits: int,
                     higher_is_better: bool = True) -> Tuple[str, str, str]:
    """Table cells of the claim "``after`` beats ``before``": ("b ± s -> a ± s",
    "difference ± SE", verdict); ("not run", "–", "–") when a side has no seed."""
    if not before or not after:
        return "not run", "–", "–"
    c = compare_rows(before, after, higher_is_better)
    se = "–" if c.standard_error is None else f"{c.standard_error:.{digits}f}"
    measured = f"{format_mean_std(before, digits)} -> {format_mean_std(after, digits)}"
    return measured, f"{c.difference:+.{digits}f} ± {se}", c.verdict
