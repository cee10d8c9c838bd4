"""The DensePose-COCO file format in one place: its constants, the person segmentation and
``dp_masks`` codecs, and the IUV PNG codec of dense labels and compact results.

Every reader and writer of the format (the dataset loader, the evaluator, the renderer, the
stitcher, the pseudo-labeller, the visualisers) goes through these functions, so they agree on
the edge cases: polygons, uncompressed and compressed RLE (text or bytes counts), absent parts.
"""
from __future__ import annotations

import base64
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_util

from ..body.charts import NUM_PARTS

__all__ = [
    "FRAME_SIZE",
    "NUM_FINE_PARTS",
    "NUM_COARSE_PARTS",
    "compressed_rle",
    "segmentation_to_mask",
    "dp_masks_union",
    "mask_to_polygons",
    "encode_dp_masks",
    "decode_dp_masks",
    "encode_iuv_png",
    "decode_iuv_png",
    "decode_iuv_png_uint8",
]

#: Side of the box frame in which ``dp_x``/``dp_y`` and the ``dp_masks`` are given.
FRAME_SIZE = 256
#: Fine body parts (``dp_I`` 1..24) and coarse parts (``dp_masks``, 14 masks).
NUM_FINE_PARTS = NUM_PARTS
NUM_COARSE_PARTS = 14


def compressed_rle(rle: dict, height: int, width: int) -> dict:
    """A COCO RLE dict (uncompressed counts, or compressed as text or bytes) in a form
    ``pycocotools.mask`` reads: compressed ones as they are, uncompressed ones compressed."""
    if isinstance(rle["counts"], list):  # uncompressed RLE
        return mask_util.frPyObjects(rle, height, width)
    return rle


def segmentation_to_mask(segm, height: int, width: int) -> np.ndarray:
    """(height, width) bool mask of a COCO ``segmentation``: polygons (their union; an empty
    list is an empty mask), uncompressed RLE or compressed RLE. A malformed value raises
    ``ValueError`` (callers add the file and record)."""
    try:
        if isinstance(segm, list):
            if not segm:
                return np.zeros((height, width), bool)
            rle = mask_util.merge(mask_util.frPyObjects(
                [[float(x) for x in poly] for poly in segm], height, width))
        else:
            rle = compressed_rle(segm, height, width)
        mask = mask_util.decode(rle)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise ValueError(f"bad segmentation ({type(e).__name__}: {e})") from None
    if mask.shape[:2] != (height, width):
        raise ValueError(f"segmentation size {mask.shape[:2]} is not the image size "
                         f"{(height, width)}")
    return mask.reshape(height, width).astype(bool)


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons of the outer contours of a binary mask.

    Contours are traced on the mask upsampled 2x, so vertices sit a quarter pixel inside the
    outer pixel edges: COCO's polygon rasteriser (pycocotools) then gives back every pixel of
    the mask, where a contour through the boundary pixel centres would drop about half of the
    boundary pixels (a large loss on thin limbs). Holes cannot be expressed (COCO polygons are
    united) and are filled.
    """
    up = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if len(c) < 3:
            continue
        polys.append([float(x) for x in ((c.reshape(-1, 2) + 0.5) * 0.5).ravel()])
    return polys


def encode_dp_masks(coarse: np.ndarray) -> List:
    """The 14 ``dp_masks`` (COCO RLE with text counts, ``[]`` for an absent part) of a
    (256,256) coarse label map (0 = background, 1..14); the inverse of
    :func:`decode_dp_masks`."""
    coarse = np.asarray(coarse)
    if coarse.shape != (FRAME_SIZE, FRAME_SIZE):
        raise ValueError(f"coarse label map must be {FRAME_SIZE}x{FRAME_SIZE}, got {coarse.shape}")
    out: List = []
    for c in range(1, NUM_COARSE_PARTS + 1):
        m = coarse == c
        if not m.any():
            out.append([])
            continue
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        out.append({"size": [int(rle["size"][0]), int(rle["size"][1])],
                    "counts": rle["counts"].decode("ascii")})
    return out


def decode_dp_masks(dp_masks: Sequence) -> np.ndarray:
    """(256,256) uint8 coarse label map (0 = background, 1..14) from the 14 ``dp_masks``.

    Where masks overlap the LATER part wins (the annotation files do not promise disjoint
    masks). All masks are decoded in one pycocotools call. A malformed or wrongly sized mask
    raises ``ValueError`` naming its index.
    """
    rles, labels = [], []
    for k, rle in enumerate(dp_masks):
        if not isinstance(rle, dict):
            continue
        try:
            rles.append(compressed_rle(rle, FRAME_SIZE, FRAME_SIZE))
            size = tuple(rles[-1]["size"])
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise ValueError(f"bad dp_masks[{k}] ({type(e).__name__}: {e})") from None
        if size != (FRAME_SIZE, FRAME_SIZE):
            raise ValueError(f"dp_masks[{k}] is {size}, expected {(FRAME_SIZE, FRAME_SIZE)}")
        labels.append(k + 1)
    if not rles:
        return np.zeros((FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    try:
        masks = mask_util.decode(rles)  # (256, 256, n), 0/1
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad dp_masks ({type(e).__name__}: {e})") from None
    # part k+1 where its mask is set, the largest (= latest) label where several are
    return (masks * np.asarray(labels, dtype=np.uint8)).max(axis=2)


def dp_masks_union(dp_masks: Sequence, limit: Optional[int] = None) -> np.ndarray:
    """(256,256) bool person mask: the union of the ``dp_masks`` entries (the first ``limit``),
    merged in RLE form and decoded once."""
    entries = list(dp_masks)[:limit] if limit else list(dp_masks)
    rles = [compressed_rle(m, FRAME_SIZE, FRAME_SIZE) for m in entries
            if isinstance(m, dict) and m]
    if not rles:
        return np.zeros((FRAME_SIZE, FRAME_SIZE), bool)
    merged = mask_util.merge(rles, intersect=False) if len(rles) > 1 else rles[0]
    return mask_util.decode(merged) > 0


def encode_iuv_png(I: np.ndarray, U: np.ndarray, V: np.ndarray) -> str:
    """Base64 PNG of the uint8 image [I, round(255 U), round(255 V)] (RGB channel order):
    lossless for I, within 1/(2*255) for U and V."""
    I = np.asarray(I)
    if I.ndim != 2 or I.shape != np.shape(U) or I.shape != np.shape(V):
        raise ValueError(f"I, U, V must be equal-size 2D maps, got {I.shape}, "
                         f"{np.shape(U)}, {np.shape(V)}")
    if I.size and (I.min() < 0 or I.max() > 255):
        raise ValueError("part labels I must lie in [0, 255]")
    q = [np.round(np.clip(np.asarray(c, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
         for c in (U, V)]
    bgr = np.stack([q[1], q[0], I.astype(np.uint8)], axis=-1)  # OpenCV writes BGR
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError("PNG encoding of an IUV map failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def decode_iuv_png(data: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_iuv_png`: (I uint8, U float32, V float32)."""
    I, qu, qv = decode_iuv_png_uint8(data)
    return I, qu.astype(np.float32) / 255.0, qv.astype(np.float32) / 255.0


def decode_iuv_png_uint8(data: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored uint8 maps (I, 255 U, 255 V) of :func:`encode_iuv_png`'s PNG."""
    try:
        raw = np.frombuffer(base64.b64decode(data, validate=True), np.uint8)
    except (ValueError, TypeError) as e:
        raise ValueError(f"IUV data is not valid base64: {e}") from None
    bgr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError("IUV data is not a 3-channel PNG image")
    return bgr[..., 2].copy(), bgr[..., 1].copy(), bgr[..., 0].copy()
