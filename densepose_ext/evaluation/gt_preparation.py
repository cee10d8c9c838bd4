"""The ground-truth side of a DensePose evaluation, prepared once and kept.

What the evaluation needs of a GT person does not depend on the detections: its annotated
points placed in the image (with their nearest chart vertex on the body) and its placed person
mask (for GPSm). An evaluation prepares the persons of its images once and keeps them, keyed by
the GT object and the body (both held weakly), the protocol and the source name, so that
evaluating the same ground truth again in the same process (periodic evaluation during
training, teacher and student, several inference settings) only reads them. Given a cache
file (:func:`gt_cache_file`: named by the GT json's path, size and modification time, the
protocol, the body's charts and this code), they are also written there and read back by
later processes, as detectron2's COCO evaluator keeps its converted ground truth. Values are
those :func:`.gps.collect_gt_points` and :func:`.masks.gt_masks` give; a GT object is taken
as loaded (COCO's are not changed after loading).
"""
from __future__ import annotations

import hashlib
import logging
import os
import weakref
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..utils import atomic_write, cache_dir
from .gps import GtPoints, collect_gt_points
from .masks import PlacedMask, gt_mask, gt_masks

__all__ = ["GtPreparation", "gt_preparation", "gt_cache_file"]

logger = logging.getLogger(__name__)

#: GT object -> body -> {(protocol, source): GtPreparation}
_PREPARED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: body -> hash of what GT points are mapped with (its charts)
_BODY_KEYS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: the code whose results a cache file holds: any edit gives other file names
_CODE = ("gps.py", "masks.py", "gt_preparation.py")


class GtPreparation:
    """Points and masks of GT persons, by annotation id, made on first request (and kept in
    ``cache_file`` when given)."""

    def __init__(self, body, protocol: str, source: str, error: type = ValueError,
                 cache_file: Optional[Path] = None):
        self.body, self.protocol, self.source, self.error = body, protocol, source, error
        self.cache_file = None if cache_file is None else Path(cache_file)
        # annotation id -> (x, y, I, vertex) of its points, and its placed mask (None: no points)
        self._points: Dict[int, Tuple[np.ndarray, ...]] = {}
        self._masks: Dict[int, Optional[PlacedMask]] = {}
        if self.cache_file is not None and self.cache_file.is_file():
            self._read(self.cache_file)

    def get(self, gts: Sequence[dict], image_hws: Sequence[Tuple[int, int]]
            ) -> Tuple[GtPoints, List[Optional[PlacedMask]]]:
        """:class:`.gps.GtPoints` of ``gts`` (in their order) and their placed masks (None
        for persons without points: GPSm needs a mask only where GPS > 0)."""
        new = [k for k, g in enumerate(gts) if g["id"] not in self._points]
        if new:
            self._prepare([gts[k] for k in new], [image_hws[k] for k in new])
            if self.cache_file is not None:
                self._write(self.cache_file)
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

    # ------------------------------------------------------------------------- cache file
    def _write(self, path: Path) -> None:
        """Everything prepared so far as one npz (concatenated arrays with offsets)."""
        ids = list(self._points)
        pts = [self._points[i] for i in ids]
        masks = [self._masks[i] for i in ids]
        blocks = [m.mask.ravel() for m in masks if m is not None]
        arrays = dict(
            ids=np.array(ids, np.int64),
            point_counts=np.array([len(p[0]) for p in pts], np.int64),
            **{name: np.concatenate([p[f] for p in pts]) if pts else np.zeros(0)
               for f, name in enumerate(("x", "y", "I", "vertex"))},
            has_mask=np.array([m is not None for m in masks], bool),
            mask_boxes=np.array([(m.top, m.left, *m.mask.shape) for m in masks if m is not None],
                                np.int64).reshape(-1, 4),
            mask_bits=np.packbits(np.concatenate(blocks)) if blocks else np.zeros(0, np.uint8))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            np.savez(f, **arrays)

    def _read(self, path: Path) -> None:
        try:
            with np.load(path) as z:
                a = {k: z[k] for k in z.files}
            starts = np.concatenate([[0], np.cumsum(a["point_counts"])])
            boxes = a["mask_boxes"]
            sizes = boxes[:, 2] * boxes[:, 3]
            bits = np.unpackbits(a["mask_bits"], count=int(sizes.sum())).astype(bool)
            bit_starts = np.concatenate([[0], np.cumsum(sizes)])
        except (OSError, ValueError, KeyError) as e:
            logger.warning("Ignoring the unreadable evaluation cache %s (%s)", path, e)
            return
        m = 0
        for k, ann_id in enumerate(a["ids"].tolist()):
            s = slice(int(starts[k]), int(starts[k + 1]))
            self._points[ann_id] = (a["x"][s], a["y"][s], a["I"][s], a["vertex"][s])
            if a["has_mask"][k]:
                top, left, h, w = (int(v) for v in boxes[m])
                block = bits[bit_starts[m]:bit_starts[m + 1]].reshape(h, w)
                self._masks[ann_id] = PlacedMask(block, top, left)
                m += 1
            else:
                self._masks[ann_id] = None


def _body_key(body) -> str:
    """Hash of the body's charts (what GT points are mapped to vertices with)."""
    if body not in _BODY_KEYS:
        h = hashlib.sha1()
        for arr in (body.charts.chart_part, body.charts.chart_uv, body.charts.chart_to_vertex):
            h.update(np.ascontiguousarray(arr).tobytes())
        _BODY_KEYS[body] = h.hexdigest()
    return _BODY_KEYS[body]


def gt_cache_file(json_file: str, protocol: str, body) -> Path:
    """Where the prepared ground truth of ``json_file`` is kept: under the cache directory,
    named by the file's absolute path, size and modification time, the protocol, the body's
    charts and this code (so a changed file, body or code is prepared anew)."""
    st = os.stat(json_file)
    h = hashlib.sha1(f"{os.path.abspath(json_file)}|{st.st_size}|{st.st_mtime_ns}|{protocol}|"
                     f"{_body_key(body)}".encode())
    here = Path(__file__).resolve().parent
    for name in _CODE:
        h.update((here / name).read_bytes())
    return cache_dir() / "evaluation" / f"gt_{h.hexdigest()[:20]}.npz"


def gt_preparation(coco_gt, body, protocol: str, source: str, error: type = ValueError,
                   cache_file: Optional[Path] = None) -> GtPreparation:
    """The process's :class:`GtPreparation` of ``coco_gt`` for this body, protocol and source
    (``error``: the exception type of a malformed mask; ``cache_file``: see the module)."""
    per_body = _PREPARED.setdefault(coco_gt, weakref.WeakKeyDictionary()).setdefault(body, {})
    if (protocol, source) not in per_body:
        per_body[protocol, source] = GtPreparation(body, protocol, source, error, cache_file)
    return per_body[protocol, source]
