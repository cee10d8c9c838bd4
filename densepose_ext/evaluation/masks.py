"""Person masks of GPSm: detection and GT masks placed in the image, and their IoU matrix.

A placed mask is a boolean block and the image position of its top-left pixel, already clipped
to the image, so masks never need image-size arrays of their own. The IoU of a (detection, GT)
pair is counted on the overlap of their blocks, with pycocotools' definition (intersection /
union; intersection / detection area for crowd GT; 0 when they do not intersect), so it equals
``pycocotools.mask.iou`` of the pasted masks.

Per protocol (:mod:`.protocol`):

- ``"exact"``: masks are pasted by pixel centres (:func:`.iuv.paste_box_map`): a detection's
  foreground I > 0 over its box; a GT person's union of ``dp_masks`` (256 x 256 frame over its
  box), else its ``segmentation``, else its box.
- ``"detectron2"``: the official evaluator's masks: blocks anchored at the truncated box
  corner, clipped to ``int(x + w)`` and the image; a GT person's mask is the union of its
  ``dp_masks`` zoomed bilinearly (``scipy.ndimage.zoom``, order 1, no prefilter) by
  ``max(w, 1) / 256`` and thresholded at 0.5, else its ``segmentation`` (polygons or RLE), else
  empty.
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_util
from scipy.ndimage import zoom

from ..structures.coco_format import (FRAME_SIZE, compressed_rle, dp_masks_union,
                                      segmentation_to_mask)
from .iuv import _pixel_span, box_grid_size
from .protocol import check_protocol

__all__ = ["PlacedMask", "place_exact", "place_official", "detection_mask", "detection_masks",
           "gt_mask", "gt_masks", "mask_iou_matrix", "box_iou_pairs"]

#: the official evaluator reads at most this many dp_masks entries
OFFICIAL_NUM_MASKS = 14


@dataclass
class PlacedMask:
    """A boolean block ``mask`` whose pixel (0, 0) is image pixel (top, left)."""

    mask: np.ndarray
    top: int
    left: int

    @property
    def bottom(self) -> int:
        return self.top + self.mask.shape[0]

    @property
    def right(self) -> int:
        return self.left + self.mask.shape[1]


def _empty() -> PlacedMask:
    return PlacedMask(np.zeros((0, 0), bool), 0, 0)


def place_exact(box_map: np.ndarray, box_xywh: Sequence[float], image_hw: Tuple[int, int]
                ) -> PlacedMask:
    """The block that :func:`.iuv.paste_box_map` writes for a boolean box map."""
    x0, y0, w, h = (float(c) for c in box_xywh)
    rspan = _run_span(y0, h, box_map.shape[0], image_hw[0])
    cspan = _run_span(x0, w, box_map.shape[1], image_hw[1])
    if rspan and cspan:  # consecutive cells along both axes: a slice, no index arrays
        (r0, rc, n_r), (c0, cc, n_c) = rspan, cspan
        if not n_r or not n_c:
            return _empty()
        block = box_map[rc:rc + n_r, cc:cc + n_c]
        return PlacedMask(block.astype(bool, copy=False), r0, c0)
    rows, rcell = _pixel_span(y0, h, box_map.shape[0], image_hw[0])
    cols, ccell = _pixel_span(x0, w, box_map.shape[1], image_hw[1])
    if not len(rows) or not len(cols):
        return _empty()
    block = box_map[_as_index(rcell)][:, _as_index(ccell)]
    return PlacedMask(block.astype(bool, copy=False), int(rows[0]), int(cols[0]))


def _run_span(start: float, size: float, cells: int, limit: int
              ) -> Optional[Tuple[int, int, int]]:
    """:func:`.iuv._pixel_span` as (first pixel, its cell, number of pixels) when all its
    pixels' cells are in range, so that :func:`_as_index` would make them a slice (same
    arithmetic and test, on the two end pixels only); None otherwise."""
    first = max(math.ceil(start - 0.5), 0)
    last = min(math.ceil(start + size - 0.5), limit)
    if last <= first:
        return first, 0, 0
    scale = cells / max(size, 1e-9)
    c_first = math.floor((first + 0.5 - start) * scale)
    c_last = math.floor((last - 1 + 0.5 - start) * scale)
    if c_first < 0 or c_last >= cells or c_last - c_first != last - 1 - first:
        return None
    return first, c_first, last - first


def _as_index(cells: np.ndarray):
    """A slice for consecutive cells (the common one-pixel-per-cell case), else the array."""
    if cells[-1] - cells[0] == len(cells) - 1:
        return slice(int(cells[0]), int(cells[-1]) + 1)
    return cells


def place_official(mask: np.ndarray, box_xywh: Sequence[float], image_hw: Tuple[int, int]
                   ) -> PlacedMask:
    """The official placement of a box mask: at (int(x), int(y)), clipped to the image and
    to ``int(x + w)``, ``int(y + h)`` and the mask's own size."""
    x, y, w, h = (float(c) for c in box_xywh)
    H, W = image_hw
    xi, yi = int(x), int(y)
    c0, c1 = max(xi, 0), min(int(x + w), W, xi + mask.shape[1])
    r0, r1 = max(yi, 0), min(int(y + h), H, yi + mask.shape[0])
    if r1 <= r0 or c1 <= c0:
        return _empty()
    return PlacedMask(mask[r0 - yi:r1 - yi, c0 - xi:c1 - xi].astype(bool), r0, c0)


def detection_mask(part_map: np.ndarray, box_xywh: Sequence[float],
                   image_hw: Tuple[int, int], protocol: str) -> PlacedMask:
    """Foreground (part > 0) of a detection's box map placed in the image."""
    if check_protocol(protocol) == "detectron2":
        return place_official(part_map > 0, box_xywh, image_hw)
    return place_exact(part_map > 0, box_xywh, image_hw)


def detection_masks(part_maps: Sequence[np.ndarray], boxes_xywh: np.ndarray,
                    image_hws: np.ndarray, protocol: str) -> List[PlacedMask]:
    """:func:`detection_mask` of many detections (boxes (N,4), image sizes (N,2)); the
    ``"exact"`` protocol's pixel spans are computed for all of them at once."""
    if check_protocol(protocol) == "detectron2" or not len(part_maps):
        return [detection_mask(m, b, hw, protocol)
                for m, b, hw in zip(part_maps, boxes_xywh, image_hws)]
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    hws = np.asarray(image_hws, np.int64).reshape(-1, 2)
    grid = np.array([m.shape for m in part_maps], np.int64).reshape(-1, 2)
    r0, ro, rcell = _pixel_spans(boxes[:, 1], boxes[:, 3], grid[:, 0], hws[:, 0])
    c0, co, ccell = _pixel_spans(boxes[:, 0], boxes[:, 2], grid[:, 1], hws[:, 1])
    # consecutive cells (one pixel per cell): a slice of the map, else a gather
    r_run = (np.diff(ro) == 0) | (rcell[np.maximum(ro[1:] - 1, 0)] - rcell[np.minimum(
        ro[:-1], max(len(rcell) - 1, 0))] == np.diff(ro) - 1) if len(rcell) else np.ones(
        len(ro) - 1, bool)
    c_run = (np.diff(co) == 0) | (ccell[np.maximum(co[1:] - 1, 0)] - ccell[np.minimum(
        co[:-1], max(len(ccell) - 1, 0))] == np.diff(co) - 1) if len(ccell) else np.ones(
        len(co) - 1, bool)
    out = []
    for k, m in enumerate(part_maps):
        a, b, i, j = int(ro[k]), int(ro[k + 1]), int(co[k]), int(co[k + 1])
        if a == b or i == j:
            out.append(_empty())
            continue
        rows = slice(int(rcell[a]), int(rcell[b - 1]) + 1) if r_run[k] else rcell[a:b]
        cols = slice(int(ccell[i]), int(ccell[j - 1]) + 1) if c_run[k] else ccell[i:j]
        block = m[rows] if r_run[k] else m.take(rows, axis=0)
        block = block[:, cols] if c_run[k] else block.take(cols, axis=1)
        out.append(PlacedMask(block > 0, int(r0[k]), int(c0[k])))
    return out


def _segmentation_mask(segm, image_hw: Tuple[int, int]) -> Optional[np.ndarray]:
    """Image-size bool mask of a COCO ``segmentation`` (polygons or RLE); None if empty."""
    return segmentation_to_mask(segm, *image_hw) if segm else None


def _official_zoom(frame: np.ndarray, box_xywh: Sequence[float]) -> np.ndarray:
    """The official GT mask in the box: bilinear zoom of the 0/1 frame, > 0.5."""
    _, _, w, h = box_xywh
    scale_x = float(max(w, 1)) / frame.shape[1]
    scale_y = float(max(h, 1)) / frame.shape[0]
    return zoom(frame.astype(np.float64), (scale_y, scale_x), order=1, prefilter=False) > 0.5


def gt_mask(ann: dict, image_hw: Tuple[int, int], protocol: str) -> PlacedMask:
    """A GT person's mask placed in the image (see the module docstring per protocol)."""
    box = ann["bbox"]
    if check_protocol(protocol) == "detectron2":
        if "dp_masks" in ann:
            frame = dp_masks_union(ann["dp_masks"] or [], OFFICIAL_NUM_MASKS)
            return place_official(_official_zoom(frame, box), box, image_hw)
        full = _segmentation_mask(ann.get("segmentation"), image_hw)
        return _empty() if full is None else PlacedMask(full, 0, 0)
    dp_masks = ann.get("dp_masks")
    if dp_masks and any(isinstance(m, dict) for m in dp_masks):
        return place_exact(dp_masks_union(dp_masks), box, image_hw)
    if ann.get("segmentation"):
        full = _segmentation_mask(ann["segmentation"], image_hw)
        if full is not None:
            return PlacedMask(full, 0, 0)
    return place_exact(np.ones(box_grid_size(box), bool), box, image_hw)


def _pixel_spans(start: np.ndarray, size: np.ndarray, cells: np.ndarray, limit: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`.iuv._pixel_span` of many boxes along one axis at once (same arithmetic): the
    first pixel of each (N,), the offsets (N+1,) of each box's cells in the concatenated cells
    of all boxes' pixels."""
    first = np.maximum(np.ceil(start - 0.5), 0).astype(np.int64)
    last = np.minimum(np.ceil(start + size - 0.5), limit).astype(np.int64)
    n = np.maximum(last - first, 0)
    owner = np.repeat(np.arange(len(n)), n)
    offsets = np.concatenate([[0], np.cumsum(n)])
    pix = np.arange(offsets[-1]) + (first - offsets[:-1])[owner]
    scale = cells / np.maximum(size, 1e-9)
    cell = np.floor((pix + 0.5 - start[owner]) * scale[owner]).astype(np.int64)
    keep = (cell >= 0) & (cell < cells[owner])
    if not keep.all():  # cells out of range only at a span's ends
        pix, cell, owner = pix[keep], cell[keep], owner[keep]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(n)))])
    first_kept = pix[np.minimum(offsets[:-1], max(len(pix) - 1, 0))] if len(pix) else first
    return first_kept, offsets, cell


def _dp_frames(anns: Sequence[dict], limit: Optional[int]) -> List[np.ndarray]:
    """:func:`dp_masks_union` of many annotations, the 256 x 256 unions decoded in one call
    (the frames are views of one bool array)."""
    merged, frames = [], [None] * len(anns)
    for k, ann in enumerate(anns):
        entries = (ann.get("dp_masks") or [])[:limit] if limit else (ann.get("dp_masks") or [])
        rles = [compressed_rle(m, FRAME_SIZE, FRAME_SIZE) for m in entries
                if isinstance(m, dict) and m]
        if not rles:
            frames[k] = np.zeros((FRAME_SIZE, FRAME_SIZE), bool)
            continue
        rle = mask_util.merge(rles, intersect=False) if len(rles) > 1 else rles[0]
        if list(rle["size"]) == [FRAME_SIZE, FRAME_SIZE]:
            merged.append((k, rle))
        else:
            frames[k] = mask_util.decode(rle) > 0
    # a few at a time (small arrays reuse freed memory; one large one costs page faults);
    # decode writes 0/1 bytes: a valid bool view of each (256, 256, n) Fortran array
    for c in range(0, len(merged), 32):
        chunk = merged[c:c + 32]
        block = mask_util.decode([rle for _, rle in chunk]).view(bool)
        for j, (k, _) in enumerate(chunk):
            frames[k] = block[:, :, j]
    return frames


def gt_masks(anns: Sequence[dict], image_hws: Sequence[Tuple[int, int]], protocol: str
             ) -> List[PlacedMask]:
    """:func:`gt_mask` of many GT persons (image sizes (N,2)): the ``dp_masks`` unions are
    decoded in one call and, under ``"exact"``, the pixel spans of all boxes computed at
    once. Same values as :func:`gt_mask` (which it falls back to for the other cases)."""
    official = check_protocol(protocol) == "detectron2"
    if official:
        dp = [k for k, a in enumerate(anns) if "dp_masks" in a]
    else:
        dp = [k for k, a in enumerate(anns)
              if a.get("dp_masks") and any(isinstance(m, dict) for m in a["dp_masks"])]
    out: List[Optional[PlacedMask]] = [None] * len(anns)
    frames = _dp_frames([anns[k] for k in dp], OFFICIAL_NUM_MASKS if official else None)
    if official:
        for k, frame in zip(dp, frames):
            box = anns[k]["bbox"]
            out[k] = place_official(_official_zoom(frame, box), box, image_hws[k])
    elif dp:
        boxes = np.array([anns[k]["bbox"] for k in dp], np.float64).reshape(-1, 4)
        hws = np.array([image_hws[k] for k in dp], np.int64).reshape(-1, 2)
        fh = np.array([f.shape for f in frames], np.int64).reshape(-1, 2)
        r0, ro, rcell = _pixel_spans(boxes[:, 1], boxes[:, 3], fh[:, 0], hws[:, 0])
        c0, co, ccell = _pixel_spans(boxes[:, 0], boxes[:, 2], fh[:, 1], hws[:, 1])
        for j, (k, frame) in enumerate(zip(dp, frames)):
            rows, cols = rcell[ro[j]:ro[j + 1]], ccell[co[j]:co[j + 1]]
            if not len(rows) or not len(cols):
                out[k] = _empty()
            else:
                # frame[rows][:, cols], gathered along the transposed (contiguous) frame
                block = frame.T.take(cols, axis=0).take(rows, axis=1).T
                out[k] = PlacedMask(block, int(r0[j]), int(c0[j]))
    for k, ann in enumerate(anns):
        if out[k] is None:
            out[k] = gt_mask(ann, image_hws[k], protocol)
    return out


def box_iou_pairs(dt_boxes: np.ndarray, gt_boxes: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Box IoU (N,) of (detection, GT) box pairs (N,4) XYWH each with pycocotools' ``bbIou``
    operations, so equal to ``pycocotools.mask.iou`` of the boxes bit for bit (intersection /
    detection area for crowd GT; 0 when they do not intersect)."""
    D, G = np.asarray(dt_boxes, np.float64), np.asarray(gt_boxes, np.float64)
    w = np.minimum(D[:, 2] + D[:, 0], G[:, 2] + G[:, 0]) - np.maximum(D[:, 0], G[:, 0])
    h = np.minimum(D[:, 3] + D[:, 1], G[:, 3] + G[:, 1]) - np.maximum(D[:, 1], G[:, 1])
    i = w * h
    da = D[:, 2] * D[:, 3]
    u = np.where(crowd, da, da + G[:, 2] * G[:, 3] - i)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), i / u, 0.0)


def mask_iou_matrix(dt_masks: Sequence[Optional[PlacedMask]],
                    gt_masks: Sequence[Optional[PlacedMask]], crowd: Sequence[int],
                    pairs: Optional[np.ndarray] = None) -> np.ndarray:
    """(D,G) IoU as ``pycocotools.mask.iou`` defines it, of placed masks: the GT masks are
    stacked on a canvas over their union box, and each detection's intersections with all of
    them are counted in one operation on the overlap of its block with that canvas.
    ``pairs`` (D,G) bool restricts the result to those pairs (0 elsewhere; masks of
    detections / persons in no such pair may be None)."""
    D, G = len(dt_masks), len(gt_masks)
    out = np.zeros((D, G))
    if not D or not G:
        return out
    if pairs is None:
        pairs = np.ones((D, G), bool)
    cols = [g for g in np.flatnonzero(pairs.any(axis=0)).tolist()
            if gt_masks[g] is not None and gt_masks[g].mask.size]
    if not cols:
        return out
    gms = [gt_masks[g] for g in cols]
    top, left = min(m.top for m in gms), min(m.left for m in gms)
    bottom, right = max(m.bottom for m in gms), max(m.right for m in gms)
    canvas = np.zeros((len(gms), bottom - top, right - left), bool)
    for j, m in enumerate(gms):
        canvas[j, m.top - top:m.bottom - top, m.left - left:m.right - left] = m.mask
    # count_nonzero without an axis is the fast one: once per block
    area_g = np.array([np.count_nonzero(m.mask) for m in gms], np.int64)
    inter = np.zeros((D, len(gms)), np.int64)
    area_d = np.zeros(D, np.int64)
    for d in np.flatnonzero(pairs[:, cols].any(axis=1)).tolist():
        dm = dt_masks[d]
        if dm is None or not dm.mask.size:
            continue
        t, lf = max(dm.top, top), max(dm.left, left)
        b, r = min(dm.bottom, bottom), min(dm.right, right)
        if b <= t or r <= lf:
            continue
        area_d[d] = np.count_nonzero(dm.mask)
        both = canvas[:, t - top:b - top, lf - left:r - left] & \
            dm.mask[None, t - dm.top:b - dm.top, lf - dm.left:r - dm.left]
        inter[d] = [np.count_nonzero(x) for x in both]
    crowd_c = np.asarray(crowd, bool)[cols]
    union = np.where(crowd_c[None, :], area_d[:, None], area_d[:, None] + area_g[None, :] - inter)
    hit = (inter > 0) & pairs[:, cols]
    out[:, cols] = np.where(hit, inter / np.maximum(union, 1), 0.0)
    return out
