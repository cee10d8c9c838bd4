"""Dense IUV targets of annotated persons: teacher outputs or exact labels -> box-frame grids.

A target is a :class:`~densepose_ext.structures.DenseIUV` on a T x T grid over the person's
GT box (cell (r, c) centred at image position (x0 + (c + 0.5) w / T, y0 + (r + 0.5) h / T)),
labelled only inside the GT person mask and 0 elsewhere. On disk it is the PNG of
:meth:`DenseIUV.to_png_bytes` (RGB = I, round(255 U), round(255 V)).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn import functional as F

from densepose_ext.structures import FRAME_SIZE, DenseIUV, decode_dp_masks, segmentation_to_mask
from densepose_ext.utils import atomic_write

__all__ = [
    "MASK_SOURCES",
    "frame_cell_centres",
    "person_mask_in_frame",
    "chart_outputs_to_targets",
    "exact_target",
    "write_target",
    "read_valid_target",
]

#: Where the GT person mask of a target comes from: the 14 coarse ``dp_masks`` (box frame) or
#: the person's ``segmentation`` (polygons / RLE in the image).
MASK_SOURCES = ("dp_masks", "segmentation")


def frame_cell_centres(box_xywh: Sequence[float], size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Image x (T,) and y (T,) of the centres of a T x T grid over a box."""
    x0, y0, w, h = (float(c) for c in box_xywh)
    g = (np.arange(size, dtype=np.float64) + 0.5) / size
    return x0 + g * w, y0 + g * h


def _image_pixels(box_xywh: Sequence[float], size: int, image_hw: Tuple[int, int]
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Row (T,) and column (T,) of the image pixel containing each grid cell's centre."""
    xs, ys = frame_cell_centres(box_xywh, size)
    H, W = image_hw
    cols = np.clip(np.floor(xs).astype(np.int64), 0, W - 1)
    rows = np.clip(np.floor(ys).astype(np.int64), 0, H - 1)
    return rows, cols


def person_mask_in_frame(ann: dict, image_hw: Tuple[int, int], size: int = FRAME_SIZE,
                         source: str = "dp_masks") -> np.ndarray:
    """(T,T) bool GT person mask on the target grid of an annotation (nearest resampling).

    ``source`` "dp_masks": union of the 14 coarse part masks (256x256 box frame);
    "segmentation": the person's image mask, read at the cell centres.
    Raises ValueError when the annotation lacks the chosen source.
    """
    if source == "dp_masks":
        if "dp_masks" not in ann:
            raise ValueError("no dp_masks to take the person mask from")
        frame = decode_dp_masks(ann["dp_masks"]) > 0
        if size == FRAME_SIZE:
            return frame
        idx = np.floor((np.arange(size) + 0.5) * FRAME_SIZE / size).astype(np.int64)
        return frame[idx[:, None], idx[None, :]]
    if source == "segmentation":
        if "segmentation" not in ann:
            raise ValueError("no segmentation to take the person mask from")
        image_mask = segmentation_to_mask(ann["segmentation"], *image_hw)
        rows, cols = _image_pixels(ann["bbox"], size, image_hw)
        return image_mask[rows[:, None], cols[None, :]]
    raise ValueError(f"unknown mask source {source!r}; expected one of {MASK_SOURCES}")


def _box_grid(grid_boxes: torch.Tensor, target_boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, T, T, 2) ``grid_sample`` coordinates, in each grid box, of the cell centres of a
    T x T grid over each target box (boxes (N, 4) XYXY, image coordinates)."""
    g = (torch.arange(size, dtype=torch.float64) + 0.5) / size

    def axis(lo, hi, glo, ghi):
        pos = lo[:, None] + g[None, :] * (hi - lo)[:, None]
        return 2.0 * (pos - glo[:, None]) / (ghi - glo).clamp(min=1e-6)[:, None] - 1.0

    tb, gb = target_boxes.double(), grid_boxes.double()
    gx = axis(tb[:, 0], tb[:, 2], gb[:, 0], gb[:, 2])  # (N, T)
    gy = axis(tb[:, 1], tb[:, 3], gb[:, 1], gb[:, 3])
    n = len(tb)
    return torch.stack([gx[:, None, :].expand(n, size, size),
                        gy[:, :, None].expand(n, size, size)], dim=-1).float()


def chart_outputs_to_targets(pred_densepose, masks: torch.Tensor, grid_boxes: torch.Tensor,
                             target_boxes: torch.Tensor, chunk: int = 8) -> list:
    """Dense targets of N persons from a teacher's chart outputs.

    ``pred_densepose`` has (N, C, S, S) ``fine_segm``, ``u``, ``v``, each S x S grid spanning
    ``grid_boxes[k]`` (the box the teacher was given; the grid of
    :class:`~densepose_ext.structures.DensePoseChartOutput`); ``masks`` is (N, T, T) bool on
    the target grid over ``target_boxes`` (the GT boxes; both (N, 4) XYXY in the same image
    coordinates). Outputs are sampled bilinearly at the target cell centres; inside the mask
    the label is the argmax over the 24 part channels (the GT mask, not the teacher, says
    where the person is) with that part's U, V clipped to [0, 1]; outside it is 0. Processed
    ``chunk`` persons at a time to bound memory (3 x 25 x T x T floats per person).
    """
    masks = torch.as_tensor(masks, dtype=torch.bool)
    n, size = len(masks), int(masks.shape[-1])
    if len(pred_densepose.fine_segm) != n or len(grid_boxes) != n or len(target_boxes) != n:
        raise ValueError(f"{len(pred_densepose.fine_segm)} teacher outputs, {len(grid_boxes)} "
                         f"grid boxes and {len(target_boxes)} target boxes for {n} persons")
    grid = _box_grid(torch.as_tensor(grid_boxes).cpu(), torch.as_tensor(target_boxes).cpu(),
                     size)
    out = []
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        fine, u, v = (getattr(pred_densepose, k)[sl].float() for k in ("fine_segm", "u", "v"))
        c = fine.shape[1]
        stacked = F.grid_sample(torch.cat([fine, u, v], dim=1), grid[sl].to(fine.device),
                                mode="bilinear", padding_mode="border", align_corners=False)
        fine, u, v = torch.split(stacked, [c, c, c], dim=1)
        part = fine[:, 1:].argmax(dim=1, keepdim=True) + 1  # (n, 1, T, T)
        m = masks[sl].to(part.device)
        U = torch.gather(u, 1, part)[:, 0].clamp(0.0, 1.0) * m
        V = torch.gather(v, 1, part)[:, 0].clamp(0.0, 1.0) * m
        I = part[:, 0] * m
        out += [DenseIUV(I[k].cpu(), U[k].cpu(), V[k].cpu()) for k in range(len(I))]
    return out


def exact_target(dense: dict, ann: dict, mask: np.ndarray) -> DenseIUV:
    """Target of one person from exact image-size labels (the embedded renderer's ``dense``
    npz: I, U, V, instance): each cell takes the pixel containing its centre, where that
    pixel shows this person (instance == annotation id) and the cell is inside ``mask``."""
    I_img = np.asarray(dense["I"])
    rows, cols = _image_pixels(ann["bbox"], mask.shape[0], I_img.shape)
    sel = np.ix_(rows, cols)
    keep = mask & (np.asarray(dense["instance"])[sel] == ann["id"])
    I = np.where(keep, I_img[sel], 0).astype(np.int64)
    U = np.where(keep, np.asarray(dense["U"])[sel], 0.0).astype(np.float32)
    V = np.where(keep, np.asarray(dense["V"])[sel], 0.0).astype(np.float32)
    return DenseIUV(torch.from_numpy(I), torch.from_numpy(U), torch.from_numpy(V))


def write_target(path: Union[str, os.PathLike], target: DenseIUV) -> None:
    """Write a target PNG atomically (readers never see a partial file)."""
    data = target.to_png_bytes()
    with atomic_write(path, "wb") as f:
        f.write(data)


def read_valid_target(path: Union[str, os.PathLike], size: int) -> Optional[DenseIUV]:
    """The target at ``path`` if it exists, decodes and has the expected size, else None
    (a resumed run then writes it again)."""
    if not os.path.isfile(path):
        return None
    try:
        target = DenseIUV.from_png_file(path)
    except ValueError:
        return None
    return target if target.size == size else None
