"""Chart outputs -> per-box IUV maps, box <-> image pixel mapping, and the compact result format.

Box grid convention (used by everything in ``densepose_ext.evaluation``): a box (x0, y0, w, h)
in absolute image coordinates carries an IUV map of its integer size (hi, wi) =
:func:`box_grid_size`; grid cell (r, c) covers the image region
``[x0 + c*w/wi, x0 + (c+1)*w/wi) x [y0 + r*h/hi, y0 + (r+1)*h/hi)``. An image position is
looked up in the cell that contains it; an image pixel takes the value of the cell that
contains its centre. With integer boxes (as in DensePose-COCO) cells are exactly pixels.

This is the ``"exact"`` protocol's convention. Under the ``"detectron2"`` protocol (see
:mod:`.protocol`) a box map has ``int(w) x int(h)`` cells of one image pixel each, anchored at
the box corner (cell c covers ``[x0 + c, x0 + c + 1)``), and U, V are truncated to uint8.

Compact format (:mod:`densepose_ext.structures.coco_format`): ``encode_iuv_png`` stores a box
IUV as a base64 PNG of the uint8 image [I, round(255 U), round(255 V)] (RGB order), lossless
for I and within 1/(2*255) for U, V (lossless for the detectron2 protocol's maps, whose U, V
are multiples of 1/255).
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn import functional as F

from ..structures.coco_format import decode_iuv_png, decode_iuv_png_uint8, encode_iuv_png
from .protocol import check_protocol

__all__ = [
    "IUV",
    "box_grid_size",
    "chart_output_to_box_iuv",
    "instances_to_box_iuvs",
    "box_cells_at_points",
    "paste_box_map",
    "paste_iuv_in_image",
    "encode_iuv_png",
    "decode_iuv_png",
    "decode_iuv_png_uint8",
]

#: (I uint8 (h,w), U float32 (h,w), V float32 (h,w)); I = 0 is background.
IUV = Tuple[np.ndarray, np.ndarray, np.ndarray]
ArrayLike = Union[np.ndarray, torch.Tensor]


def box_grid_size(box_xywh: Sequence[float], protocol: str = "exact") -> Tuple[int, int]:
    """Integer size (hi, wi) of the IUV grid of a box, at least 1: its width/height rounded
    (``"exact"``) or truncated (``"detectron2"``, as the official converters do)."""
    w, h = float(box_xywh[2]), float(box_xywh[3])
    if check_protocol(protocol) == "detectron2":
        return max(int(h), 1), max(int(w), 1)
    return max(int(round(h)), 1), max(int(round(w)), 1)


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def chart_output_to_box_iuv(coarse_segm: ArrayLike, fine_segm: ArrayLike, u: ArrayLike,
                            v: ArrayLike, box_xywh: Sequence[float], protocol: str = "exact"
                            ) -> IUV:
    """IUV of one instance at its box's integer size from its (C,S,S) chart outputs.

    The S x S maps span the box; they are resized bilinearly to (hi, wi). A pixel is
    foreground where the coarse segmentation's argmax is 1. ``"exact"``: its part is the argmax
    of the fine segmentation over the 24 parts (channel 0 excluded, so the foreground is exactly
    the coarse one); U, V are that part's channels clipped to [0, 1]. ``"detectron2"``: its part
    is the argmax over all 25 channels (a foreground pixel whose background channel wins is
    background), and U, V are truncated to multiples of 1/255 as the official quantisation
    does. Background pixels get I = U = V = 0.
    """
    hi, wi = box_grid_size(box_xywh, protocol)
    coarse, fine, uu, vv = (_as_tensor(t).float() for t in (coarse_segm, fine_segm, u, v))
    if coarse.dim() != 3 or coarse.shape[0] != 2:
        raise ValueError(f"coarse_segm must be (2,S,S), got {tuple(coarse.shape)}")
    for name, t in (("fine_segm", fine), ("u", uu), ("v", vv)):
        if t.dim() != 3 or t.shape[0] != 25:
            raise ValueError(f"{name} must be (25,S,S), got {tuple(t.shape)}")
    if protocol == "detectron2":
        return _official_box_iuv(coarse, fine, uu, vv, hi, wi)
    stacked = torch.cat([coarse, fine, uu, vv], dim=0)[None]
    stacked = F.interpolate(stacked, size=(hi, wi), mode="bilinear", align_corners=False)[0]
    coarse, fine, uu, vv = torch.split(stacked, [2, 25, 25, 25], dim=0)
    foreground = coarse.argmax(dim=0) > 0
    part = fine[1:].argmax(dim=0) + 1
    part = torch.where(foreground, part, torch.zeros_like(part))
    index = part[None]
    U = torch.gather(uu, 0, index)[0].clamp(0.0, 1.0) * foreground
    V = torch.gather(vv, 0, index)[0].clamp(0.0, 1.0) * foreground
    return (part.to(torch.uint8).cpu().numpy(), U.cpu().numpy().astype(np.float32),
            V.cpu().numpy().astype(np.float32))


def _official_box_iuv(coarse: torch.Tensor, fine: torch.Tensor, u: torch.Tensor,
                      v: torch.Tensor, hi: int, wi: int) -> IUV:
    """The official chart-result conversion and uint8 quantisation, same operations (resize
    each output separately, labels = fine argmax x coarse foreground, UV of the label's
    channel, ``uint8(255 * uv)`` truncated); U, V returned as float32 multiples of 1/255."""
    def resize(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t[None], (hi, wi), mode="bilinear", align_corners=False)[0]

    foreground = resize(coarse).argmax(dim=0) > 0
    labels = resize(fine).argmax(dim=0) * foreground.long()
    index = labels[None]
    uv = torch.cat([torch.gather(resize(u), 0, index), torch.gather(resize(v), 0, index)])
    uv = torch.where((labels > 0)[None], uv, torch.zeros_like(uv))
    q = (uv * 255).clamp(0, 255).byte().numpy()
    return (labels.to(torch.uint8).numpy(), q[0].astype(np.float32) / np.float32(255.0),
            q[1].astype(np.float32) / np.float32(255.0))


def instances_to_box_iuvs(pred_densepose, boxes_xywh: np.ndarray, protocol: str = "exact"
                          ) -> List[IUV]:
    """Box IUVs of all instances of a chart output object (attributes coarse_segm, fine_segm,
    u, v with a leading instance dimension) for boxes (N,4) XYWH."""
    return [
        chart_output_to_box_iuv(pred_densepose.coarse_segm[k], pred_densepose.fine_segm[k],
                                pred_densepose.u[k], pred_densepose.v[k], boxes_xywh[k],
                                protocol)
        for k in range(len(boxes_xywh))
    ]


# ---------------------------------------------------------------------- box <-> image
def box_cells_at_points(x: np.ndarray, y: np.ndarray, box_xywh: Sequence[float],
                        grid_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid cells (rows, cols) of the box containing the image positions (x, y), and whether
    each position lies inside the box (rows/cols of outside positions are clamped, unusable)."""
    x0, y0, w, h = (float(c) for c in box_xywh)
    hi, wi = grid_hw
    fx = (np.asarray(x, np.float64) - x0) * (wi / max(w, 1e-9))
    fy = (np.asarray(y, np.float64) - y0) * (hi / max(h, 1e-9))
    cols, rows = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    inside = (cols >= 0) & (cols < wi) & (rows >= 0) & (rows < hi)
    return np.clip(rows, 0, hi - 1), np.clip(cols, 0, wi - 1), inside


def _pixel_span(start: float, size: float, cells: int, limit: int) -> Tuple[np.ndarray, np.ndarray]:
    """Image pixel indices along one axis whose centres lie in [start, start+size), and the
    grid cell of each."""
    first = max(math.ceil(start - 0.5), 0)
    last = min(math.ceil(start + size - 0.5), limit)
    pix = np.arange(first, max(last, first), dtype=np.int64)
    cell = np.floor((pix + 0.5 - start) * (cells / max(size, 1e-9))).astype(np.int64)
    if len(cell) and (cell[0] < 0 or cell[-1] >= cells):  # cells grow with pix
        keep = (cell >= 0) & (cell < cells)
        return pix[keep], cell[keep]
    return pix, cell


def paste_box_map(box_map: np.ndarray, box_xywh: Sequence[float], image_hw: Tuple[int, int],
                  fill=0) -> np.ndarray:
    """Paste a (hi,wi,...) box map into an image-size array: every image pixel whose centre
    lies in the box takes the value of the cell containing it; other pixels get ``fill``."""
    H, W = image_hw
    out = np.full((H, W) + box_map.shape[2:], fill, dtype=box_map.dtype)
    x0, y0, w, h = (float(c) for c in box_xywh)
    rows, rcell = _pixel_span(y0, h, box_map.shape[0], H)
    cols, ccell = _pixel_span(x0, w, box_map.shape[1], W)
    if len(rows) and len(cols):
        out[np.ix_(rows, cols)] = box_map[np.ix_(rcell, ccell)]
    return out


def paste_iuv_in_image(box_iuvs: Sequence[IUV], boxes_xywh: np.ndarray, scores: np.ndarray,
                       image_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray,
                                                           np.ndarray]:
    """Image-size (I, U, V, instance) maps of a set of instances; where instances overlap the
    higher score is on top. ``instance`` holds the instance index (-1: background)."""
    H, W = image_hw
    I_img = np.zeros((H, W), np.uint8)
    U_img = np.zeros((H, W), np.float32)
    V_img = np.zeros((H, W), np.float32)
    inst = np.full((H, W), -1, np.int32)
    order = np.argsort(np.asarray(scores, np.float64), kind="stable")  # low first, high on top
    for k in order:
        I, U, V = box_iuvs[k]
        packed = np.stack([I.astype(np.float32), U, V], axis=-1)
        pasted = paste_box_map(packed, boxes_xywh[k], image_hw)
        fg = pasted[..., 0] > 0
        I_img[fg] = pasted[..., 0][fg].astype(np.uint8)
        U_img[fg] = pasted[..., 1][fg]
        V_img[fg] = pasted[..., 2][fg]
        inst[fg] = k
    return I_img, U_img, V_img, inst
