"""The ground-truth side of a DensePose evaluation, prepared once per process.

What the evaluation needs of a GT person does not depend on the detections: its annotated
points placed in the image (with their nearest chart vertex on the body) and its placed person
mask (for GPSm). An evaluation prepares the persons of its images once and keeps them, keyed by
the GT object and the body (both held weakly), the protocol and the source name, so that
evaluating the same ground truth again in the same process (periodic evaluation during
training, teacher and student, several inference settings) only reads them. Values are those
:func:`.gps.collect_gt_points` and :func:`.masks.gt_masks` give; a GT object is taken as
loaded (COCO's are not changed after loading).
"""
from __future__ import annotations

import weakref
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .gps import GtPoints, collect_gt_points
from .masks import PlacedMask, gt_mask, gt_masks

__all__ = ["GtPreparation", "gt_preparation"]

#: GT object -> body -> {(protocol, source): GtPreparation}
_PREPARED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class GtPreparation:
    """Points and masks of GT persons, by annotation id, made on first request."""

    def __init__(self, body, protocol: str, source: str, error: type = ValueError):
        self.body, self.protocol, self.source, self.error = body, protocol, source, error
        # annotation id -> (x, y, I, vertex) of its points, and its placed mask (None: no points)
        self._points: Dict[int, Tuple[np.ndarray, ...]] = {}
        self._masks: Dict[int, Optional[PlacedMask]] = {}

    def get(self, gts: Sequence[dict], image_hws: Sequence[Tuple[int, int]]
            ) -> Tuple[GtPoints, List[Optional[PlacedMask]]]:
        """:class:`.gps.GtPoints` of ``gts`` (in their order) and their placed masks (None
        for persons without points: GPSm needs a mask only where GPS > 0)."""
        new = [k for k, g in enumerate(gts) if g["id"] not in self._points]
        if new:
            self._prepare([gts[k] for k in new], [image_hws[k] for k in new])
        pieces = [self._points[g["id"]] for g in gts]
        counts = np.array([len(p[0]) for p in pieces], np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        fields = [np.concatenate([p[f] for p in pieces]) if pieces else np.zeros(0)
                  for f in range(4)]
        points = GtPoints([g["id"] for g in gts], offsets, fields[0], fields[1],
                          fields[2].astype(np.int64), fields[3].astype(np.int64))
        return points, [self._masks[g["id"]] for g in gts]

    def _prepare(self, gts: List[dict], image_hws: List[Tuple[int, int]]) -> None:
        points = collect_gt_points(self.body, gts, self.source, self.protocol)
        for k, g in enumerate(gts):
            s = points.person_slice(k)
            self._points[g["id"]] = (points.x[s], points.y[s], points.I[s], points.vertex[s])
        wanted = np.flatnonzero(np.diff(points.offsets) > 0).tolist()
        try:
            made = gt_masks([gts[k] for k in wanted], [image_hws[k] for k in wanted],
                            self.protocol)
        except (ValueError, TypeError, KeyError):
            made = [self._mask(gts[k], image_hws[k]) for k in wanted]  # names the culprit
        for g in gts:
            self._masks[g["id"]] = None
        for k, m in zip(wanted, made):
            self._masks[gts[k]["id"]] = m

    def _mask(self, gt: dict, hw: Tuple[int, int]) -> PlacedMask:
        try:
            return gt_mask(gt, hw, self.protocol)
        except (ValueError, TypeError, KeyError) as e:
            raise self.error(
                f"{self.source}: annotation id={gt.get('id', '?')}: bad mask ({e})") from None


def gt_preparation(coco_gt, body, protocol: str, source: str,
                   error: type = ValueError) -> GtPreparation:
    """The process's :class:`GtPreparation` of ``coco_gt`` for this body, protocol and source
    (``error``: the exception type of a malformed mask)."""
    per_body = _PREPARED.setdefault(coco_gt, weakref.WeakKeyDictionary()).setdefault(body, {})
    if (protocol, source) not in per_body:
        per_body[protocol, source] = GtPreparation(body, protocol, source, error)
    return per_body[protocol, source]
