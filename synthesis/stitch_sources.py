"""The source persons of stitched synthesis: their images, masks and part maps, loaded with a
cache.

With ``clean_background`` the colour a layer contributes outside its own person is the shared
background (:meth:`SourceLoader.background`): the torso source's image with its people filled
in from their surroundings, so other people of the source images do not appear; with part
labels a layer's person mask also drops the source's body parts that belong to other slots
(:data:`SLOT_PARTS`), outside the query body's limb envelope, so a source's other limbs do not
appear as ghosts. A source without DensePose labels gets approximate parts from its 2D
skeleton (:func:`skeleton_part_map`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from densepose_ext.body.parts import FINE_TO_COARSE
from densepose_ext.structures.coco_format import FRAME_SIZE, decode_dp_masks, segmentation_to_mask

from .stitch_assign import HAND_EXTENSION
from .stitch_index import TORSO_KEYPOINTS, SourcePoolError

__all__ = ["SLOT_PARTS", "skeleton_part_map", "fill_holes", "SourceRasters", "SourceLoader",
           "box_frame_to_image"]


#: slot -> coarse DensePose parts that belong to it (1 torso, 2/3 right/left hand, 4/5 left/right
#: foot, 6/7 upper leg right/left, 8/9 lower leg right/left, 10/11 upper arm left/right,
#: 12/13 lower arm left/right, 14 head)
SLOT_PARTS: Tuple[Tuple[int, ...], ...] = (
    (14,), (14,), (14,), (14,), (14,),  # nose, eyes, ears
    (1, 10), (1, 11), (10, 12), (11, 13), (12, 3), (13, 2),  # shoulders, elbows, wrists
    (1, 7), (1, 6), (7, 9), (6, 8), (9, 4), (8, 5),  # hips, knees, ankles
    (1,),  # torso (the neck lies inside the limb envelope, where every part is kept)
)


# COCO keypoint pairs -> coarse part of the half-segment at the first / second keypoint
_PART_EDGES = (
    (5, 7, 10, 10), (7, 9, 12, 12), (6, 8, 11, 11), (8, 10, 13, 13),  # arms
    (11, 13, 7, 7), (13, 15, 9, 9), (12, 14, 6, 6), (14, 16, 8, 8),  # legs
    (5, 6, 1, 1), (5, 11, 1, 1), (6, 12, 1, 1), (11, 12, 1, 1),  # torso
    (0, 1, 14, 14), (0, 2, 14, 14), (1, 2, 14, 14), (1, 3, 14, 14), (2, 4, 14, 14),  # face
    (3, 5, 14, 1), (4, 6, 14, 1),  # ear - shoulder
)


def skeleton_part_map(kps: np.ndarray, valid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Approximate coarse parts of a person without DensePose labels, from its 2D skeleton:
    each pixel of ``mask`` (h,w) takes the part of the nearest labelled limb segment (hands
    past the wrists, the neck, the torso quadrilateral). ``kps`` (17,2) are continuous
    coordinates in the mask's frame, ``valid`` (17,) says which are labelled."""
    kps = np.asarray(kps, dtype=np.float64)
    a, b, part = [], [], []
    for i, j, pi, pj in _PART_EDGES:
        if valid[i] and valid[j]:
            mid = 0.5 * (kps[i] + kps[j])
            a += [kps[i], mid]
            b += [mid, kps[j]]
            part += [pi, pj]
    for wrist, elbow, hand in ((9, 7, 3), (10, 8, 2)):
        if valid[wrist] and valid[elbow]:
            a.append(kps[wrist]), b.append(kps[wrist] + HAND_EXTENSION * (kps[wrist] - kps[elbow])), part.append(hand)
    if valid[[0, 5, 6]].all():
        neck = 0.5 * (kps[5] + kps[6])
        mid = 0.5 * (neck + kps[0])
        a += [neck, mid]
        b += [mid, kps[0]]
        part += [1, 14]
    h, w = mask.shape
    out = np.zeros((h, w), np.uint8)
    if not a:
        return out
    px = np.arange(w, dtype=np.float32)[None, :] + 0.5
    py = np.arange(h, dtype=np.float32)[:, None] + 0.5
    best = np.full((h, w), np.inf, np.float32)
    for m in range(len(a)):
        dx, dy = np.float32(b[m][0] - a[m][0]), np.float32(b[m][1] - a[m][1])
        rx, ry = px - np.float32(a[m][0]), py - np.float32(a[m][1])
        t = np.clip((rx * dx + ry * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        d2 = (rx - t * dx) ** 2 + (ry - t * dy) ** 2
        closer = d2 < best
        best = np.where(closer, d2, best)
        out[closer] = part[m]
    if valid[list(TORSO_KEYPOINTS)].all():
        torso = np.zeros((h, w), np.uint8)
        quad = kps[list(TORSO_KEYPOINTS)] - 0.5
        cv2.fillPoly(torso, [np.round(quad * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        out[torso > 0] = 1
    return out * mask.astype(bool)


def fill_holes(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Fill the ``holes`` (H,W bool) of an image from their surroundings by normalised box
    filtering at doubling sizes (smooth, fast; pixels outside the holes are unchanged)."""
    out = image.astype(np.float32)
    known = (~holes).astype(np.float32)
    if known.all():
        return out
    if not known.any():
        return np.broadcast_to(out.reshape(-1, out.shape[-1]).mean(0), out.shape).copy()
    todo = holes.copy()
    h, w = holes.shape
    k = 9
    while todo.any():
        num = cv2.blur(out * known[..., None], (k, k), borderType=cv2.BORDER_REFLECT_101)
        den = cv2.blur(known, (k, k), borderType=cv2.BORDER_REFLECT_101)
        ok = todo & (den > 1e-3)
        out[ok] = num[ok] / den[ok][:, None]
        todo &= ~ok
        if k > 2 * max(h, w):
            out[todo] = (out * known[..., None]).sum((0, 1)) / known.sum()
            break
        k = 2 * k + 1
    return out


class _LRU:
    """A small least-recently-used cache of computed values."""

    def __init__(self, size: int):
        self.size = max(1, int(size))
        self._data: "OrderedDict" = OrderedDict()

    def get(self, key, compute):
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        value = compute()
        self._data[key] = value
        if len(self._data) > self.size:
            self._data.popitem(last=False)
        return value


@dataclass
class SourceRasters:
    """Rasters of one source person, cropped to ``offset`` = (x, y) of the source image: RGB
    (h,w,3) uint8, person mask (h,w) float32, dense labels iuv (h,w,3) float32 (I, U, V) or
    None, coarse part map (h,w) uint8 or None, and ``parts`` (h,w) uint8: the coarse parts
    or, without DensePose labels, :func:`skeleton_part_map`'s estimate."""

    image: np.ndarray
    mask: np.ndarray
    iuv: Optional[np.ndarray]
    coarse: Optional[np.ndarray]
    offset: Tuple[int, int] = (0, 0)
    parts: Optional[np.ndarray] = None


class SourceLoader:
    """Loads the rasters of chosen source persons lazily, with LRU caches (decoded images and
    dense labels, cleaned backgrounds, per-person crops)."""

    def __init__(self, pool, cache_size: int = 64):
        self.pool = pool
        self._images = _LRU(cache_size)
        self._people = _LRU(4 * cache_size)
        self._backgrounds = _LRU(max(4, cache_size // 4))

    def _where(self, i: int) -> str:
        img = self.pool.images[int(self.pool.image[i])]
        return f"{self.pool.json_file}: annotation id={self.pool.annotation(i).get('id')} (image id={img['id']})"

    def _load_image(self, image_index: int) -> Tuple[np.ndarray, Optional[dict]]:
        rec = self.pool.images[image_index]
        bgr = cv2.imread(rec["file_name"], cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourcePoolError(f"{self.pool.json_file}: image id={rec['id']}: cannot read {rec['file_name']}")
        dense = None
        if rec["dense_file"]:
            try:
                with np.load(rec["dense_file"]) as z:
                    dense = {k: z[k] for k in ("I", "U", "V", "instance")}
            except (OSError, KeyError, ValueError) as e:
                raise SourcePoolError(f"{rec['dense_file']}: unreadable dense labels ({e})") from None
            if dense["I"].shape != bgr.shape[:2]:
                raise SourcePoolError(f"{rec['dense_file']}: labels {dense['I'].shape} do not match the "
                                      f"{bgr.shape[1]}x{bgr.shape[0]} image {rec['file_name']}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dense

    def image(self, image_index: int) -> Tuple[np.ndarray, Optional[dict]]:
        """RGB image and dense labels (dict I, U, V, instance, or None) of a pool image."""
        return self._images.get(int(image_index), lambda: self._load_image(int(image_index)))

    def _segmentation_mask(self, ann: dict, h: int, w: int, where: str) -> np.ndarray:
        segm = ann.get("segmentation")
        if not segm:
            raise SourcePoolError(f"{where}: no segmentation (a source person needs a mask)")
        try:
            return segmentation_to_mask(segm, h, w).astype(np.uint8)
        except ValueError as e:
            raise SourcePoolError(f"{where}: {e}") from None

    def rasters(self, i: int, crop: bool = True) -> SourceRasters:
        """Rasters of source person ``i`` (pool index); ``crop``: only around the person (enough
        when only person pixels are used), else the whole image."""
        return self._people.get((int(i), bool(crop)), lambda: self._rasters(int(i), bool(crop)))

    def _rasters(self, i: int, crop: bool) -> SourceRasters:
        rgb, dense = self.image(int(self.pool.image[i]))
        ann = self.pool.annotation(i)
        h, w = rgb.shape[:2]
        inst = None if dense is None else dense["instance"] == ann["id"]
        if inst is not None and inst.any():
            mask = inst
        else:
            inst = None
            mask = self._segmentation_mask(ann, h, w, self._where(i)).astype(bool)
        x0 = y0 = 0
        x1, y1 = w, h
        if crop and mask.any():
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            x0, y0 = max(int(cols[0]) - 2, 0), max(int(rows[0]) - 2, 0)
            x1, y1 = min(int(cols[-1]) + 3, w), min(int(rows[-1]) + 3, h)
        win = (slice(y0, y1), slice(x0, x1))
        m = mask[win]
        iuv = coarse = None
        if inst is not None:
            I = dense["I"][win] * m
            iuv = np.stack([I.astype(np.float32), dense["U"][win] * m, dense["V"][win] * m], -1)
            coarse = FINE_TO_COARSE[I].astype(np.uint8)
        elif "dp_masks" in ann:
            coarse = box_frame_to_image(ann, h, w, self._where(i))[win] * m
        parts = coarse
        if parts is None:
            parts = skeleton_part_map(self.pool.keypoints[i] - [x0, y0], self.pool.visibility[i] > 0, m)
        return SourceRasters(np.ascontiguousarray(rgb[win]), m.astype(np.float32), iuv, coarse, (x0, y0), parts)

    def background(self, image_index: int, dilate: int = 3) -> np.ndarray:
        """The pool image (float32 RGB) with every person (annotated or, with dense labels,
        any rendered one) filled in from the surroundings."""

        def compute() -> np.ndarray:
            rgb, dense = self.image(image_index)
            h, w = rgb.shape[:2]
            if dense is not None:
                holes = dense["I"] > 0
            else:
                holes = np.zeros((h, w), bool)
                rec = self.pool.images[image_index]
                for ann in rec["annotations"]:
                    if ann.get("segmentation"):
                        where = f"{self.pool.json_file}: annotation id={ann.get('id')} (image id={rec['id']})"
                        holes |= self._segmentation_mask(ann, h, w, where).astype(bool)
            if dilate > 0:
                holes = cv2.dilate(holes.astype(np.uint8), np.ones((2 * dilate + 1,) * 2, np.uint8)) > 0
            return fill_holes(rgb, holes)

        return self._backgrounds.get(int(image_index), compute)


def box_frame_to_image(ann: dict, h: int, w: int, where: str) -> np.ndarray:
    """The 14 coarse ``dp_masks`` of an annotation (256x256 box frame) as an (h,w) uint8 part
    map of the image (nearest sampling at pixel centres; 0 outside the box)."""
    x0, y0, bw, bh = (float(v) for v in ann["bbox"])
    try:
        frame = decode_dp_masks(ann["dp_masks"])
    except ValueError as e:
        raise SourcePoolError(f"{where}: {e}") from None
    out = np.zeros((h, w), np.uint8)
    cols = np.arange(max(0, int(np.floor(x0))), min(w, int(np.ceil(x0 + bw))))
    rows = np.arange(max(0, int(np.floor(y0))), min(h, int(np.ceil(y0 + bh))))
    fx = np.floor((cols + 0.5 - x0) * FRAME_SIZE / bw).astype(np.int64)
    fy = np.floor((rows + 0.5 - y0) * FRAME_SIZE / bh).astype(np.int64)
    okx, oky = (fx >= 0) & (fx < FRAME_SIZE), (fy >= 0) & (fy < FRAME_SIZE)
    out[np.ix_(rows[oky], cols[okx])] = frame[np.ix_(fy[oky], fx[okx])]
    return out
