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
from typing import Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_util

from ..structures.densepose_data import FRAME_SIZE
from .iuv import _pixel_span, box_grid_size
from .protocol import check_protocol

__all__ = ["PlacedMask", "place_exact", "place_official", "detection_mask", "gt_mask",
           "dp_masks_union", "mask_iou_matrix"]

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


def _rle(obj: dict, h: int, w: int) -> dict:
    """A compressed RLE of a COCO RLE dict (compressed str/bytes, which pycocotools reads as
    they are, or uncompressed counts)."""
    if isinstance(obj["counts"], list):
        return mask_util.frPyObjects(obj, h, w)
    return obj


def dp_masks_union(dp_masks: Sequence, limit: Optional[int] = None) -> np.ndarray:
    """(256,256) bool union of the RLE entries of ``dp_masks`` (the first ``limit``)."""
    entries = list(dp_masks)[:limit] if limit else list(dp_masks)
    rles = [_rle(m, FRAME_SIZE, FRAME_SIZE) for m in entries if isinstance(m, dict) and m]
    if not rles:
        return np.zeros((FRAME_SIZE, FRAME_SIZE), bool)
    merged = mask_util.merge(rles, intersect=False) if len(rles) > 1 else rles[0]
    return mask_util.decode(merged) > 0


def _segmentation_mask(segm, image_hw: Tuple[int, int]) -> Optional[np.ndarray]:
    """Image-size bool mask of a COCO ``segmentation`` (polygons or RLE); None if empty."""
    H, W = image_hw
    if isinstance(segm, list) and segm:
        rle = mask_util.merge(mask_util.frPyObjects(segm, H, W))
    elif isinstance(segm, dict):
        rle = _rle(segm, H, W)
    else:
        return None
    return mask_util.decode(rle) > 0


def _official_zoom(frame: np.ndarray, box_xywh: Sequence[float]) -> np.ndarray:
    """The official GT mask in the box: bilinear zoom of the 0/1 frame, > 0.5."""
    from scipy.ndimage import zoom

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


def mask_iou_matrix(dt_masks: Sequence[Optional[PlacedMask]],
                    gt_masks: Sequence[Optional[PlacedMask]], crowd: Sequence[int],
                    pairs: Optional[np.ndarray] = None) -> np.ndarray:
    """(D,G) IoU as ``pycocotools.mask.iou`` defines it, of placed masks: intersections are
    counted on the overlap of the two blocks only, for the pairs whose blocks overlap.
    ``pairs`` (D,G) bool restricts the computation to those pairs (0 elsewhere; masks of
    detections / persons in no such pair may be None)."""
    D, G = len(dt_masks), len(gt_masks)
    out = np.zeros((D, G))
    if not D or not G:
        return out
    if pairs is None:
        pairs = np.ones((D, G), bool)
    area_d = [int(np.count_nonzero(m.mask)) if m is not None else 0 for m in dt_masks]
    area_g = [int(np.count_nonzero(m.mask)) if m is not None else 0 for m in gt_masks]
    for d, g in zip(*np.nonzero(pairs)):
        dm, gm = dt_masks[d], gt_masks[g]
        if not area_d[d] or not area_g[g]:
            continue
        top, left = max(dm.top, gm.top), max(dm.left, gm.left)
        bottom, right = min(dm.bottom, gm.bottom), min(dm.right, gm.right)
        if bottom <= top or right <= left:
            continue
        inter = np.count_nonzero(
            dm.mask[top - dm.top:bottom - dm.top, left - dm.left:right - dm.left]
            & gm.mask[top - gm.top:bottom - gm.top, left - gm.left:right - gm.left])
        if inter:
            union = area_d[d] if crowd[g] else area_d[d] + area_g[g] - inter
            out[d, g] = inter / union
    return out
