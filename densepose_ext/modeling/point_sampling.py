"""Geometry shared by the DensePose losses: GT points and masks into proposal-box grids.

Pixel convention (same as ROIAlignV2 and the DensePose-COCO files): image coordinates are
continuous, pixel (c, r) covers [c, c+1) x [r, r+1) and its centre is (c + 0.5, r + 0.5).
A DensePose point (x, y) of the 256x256 frame of a GT box (x0, y0, x1, y1) lies at image
position (x0 + x * w / 256, y0 + y * h / 256).

Two placements of the SxS prediction grid in a proposal box of width w are provided
(``MODEL.ROI_DENSEPOSE_HEAD.LOSS_GRID``):

- "pixel_centers": the cells tile the box, cell k's centre is at x0 + (k + 0.5) * w / S;
  sampling with ``grid_sample(align_corners=False)`` at normalised coordinate
  2 * (x - x0) / w - 1 is exact (:func:`image_to_box_normalized`, :func:`sample_at_points`,
  :func:`resample_segm_to_boxes`);
- "upstream" (detectron2 DensePose v0.6): value k sits at the node x0 + k * w / S; a point at
  node coordinate g = (x - x0) * S / w takes the bilinear mix of nodes floor(g) and floor(g) + 1,
  and points past the last node (g in [S - 1, S)) take its value; points count when
  0 <= x - x0 < w; the GT coarse mask is read, nearest, at the nodes
  (:func:`frame_to_grid_nodes`, :func:`sample_at_grid_nodes`, :func:`resample_segm_to_nodes`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

from densepose_ext.structures import FRAME_SIZE, DensePoseData

__all__ = [
    "PackedPoints",
    "pack_points",
    "frame_to_image",
    "image_to_box_normalized",
    "sample_at_points",
    "resample_segm_to_boxes",
    "frame_to_grid_nodes",
    "sample_at_grid_nodes",
    "resample_segm_to_nodes",
]


class PackedPoints:
    """Points of N instances padded to a common length P.

    Attributes: x, y (N, P) float in the GT box frame; i (N, P) long (0 in padding);
    u, v (N, P) float; valid (N, P) bool (False for padding).
    """

    def __init__(self, x, y, i, u, v, valid):
        self.x, self.y, self.i, self.u, self.v, self.valid = x, y, i, u, v, valid


def pack_points(
    data: Sequence[DensePoseData], device: Optional[torch.device] = None
) -> PackedPoints:
    """Stack the points of several persons into padded (N, P) tensors."""
    n = len(data)
    p = max((len(d) for d in data), default=0)
    device = device if device is not None else (data[0].device if n else torch.device("cpu"))
    x = torch.zeros((n, p), device=device)
    y, u, v = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)
    i = torch.zeros((n, p), dtype=torch.long, device=device)
    valid = torch.zeros((n, p), dtype=torch.bool, device=device)
    for k, d in enumerate(data):  # one copy per instance, not per point
        m = len(d)
        x[k, :m], y[k, :m], i[k, :m] = d.x.to(device), d.y.to(device), d.i.to(device)
        u[k, :m], v[k, :m] = d.u.to(device), d.v.to(device)
        valid[k, :m] = True
    return PackedPoints(x, y, i, u, v, valid)


def frame_to_image(
    x: torch.Tensor, y: torch.Tensor, gt_boxes: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(N, P) box-frame coordinates -> image coordinates, given (N, 4) XYXY GT boxes."""
    x0, y0, x1, y1 = gt_boxes.unbind(dim=1)
    scale_x = (x1 - x0)[:, None] / FRAME_SIZE
    scale_y = (y1 - y0)[:, None] / FRAME_SIZE
    return x0[:, None] + x * scale_x, y0[:, None] + y * scale_y


def image_to_box_normalized(
    x: torch.Tensor, y: torch.Tensor, boxes: torch.Tensor
) -> torch.Tensor:
    """(N, P) image coordinates -> (N, P, 2) coordinates in [-1, 1] across (N, 4) XYXY boxes.

    -1 / +1 are the box edges (``grid_sample`` with ``align_corners=False``).
    """
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    w = (x1 - x0).clamp(min=1e-6)[:, None]
    h = (y1 - y0).clamp(min=1e-6)[:, None]
    gx = 2.0 * (x - x0[:, None]) / w - 1.0
    gy = 2.0 * (y - y0[:, None]) / h - 1.0
    return torch.stack([gx, gy], dim=2)


def sample_at_points(pred: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of (N, C, S, S) maps at (N, P, 2) normalised points -> (N, C, P).

    Points between the outermost cell centres and the box edge take the border value.
    """
    if grid.shape[1] == 0:
        return pred.new_zeros((pred.shape[0], pred.shape[1], 0))
    out = F.grid_sample(
        pred, grid.unsqueeze(2).to(pred.dtype), mode="bilinear", padding_mode="border",
        align_corners=False,
    )
    return out.squeeze(3)


def resample_segm_to_boxes(
    segm: torch.Tensor, gt_boxes: torch.Tensor, boxes: torch.Tensor, size: int
) -> torch.Tensor:
    """Nearest resampling of (N, 256, 256) GT-box-frame label maps onto each box's SxS grid.

    Returns (N, S, S) long labels; cells whose centre falls outside the GT box are 0.
    """
    n = segm.shape[0]
    if n == 0:
        return torch.zeros((0, size, size), dtype=torch.long, device=segm.device)
    centres = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5) / size

    def axis(lo: torch.Tensor, hi: torch.Tensor, glo: torch.Tensor, ghi: torch.Tensor):
        pos = lo[:, None] + centres[None, :] * (hi - lo)[:, None]  # image coords of centres
        frame = (pos - glo[:, None]) * FRAME_SIZE / (ghi - glo).clamp(min=1e-6)[:, None]
        idx = torch.floor(frame)
        inside = (idx >= 0) & (idx < FRAME_SIZE)
        return idx.clamp(0, FRAME_SIZE - 1).long(), inside

    ix, in_x = axis(boxes[:, 0], boxes[:, 2], gt_boxes[:, 0], gt_boxes[:, 2])
    iy, in_y = axis(boxes[:, 1], boxes[:, 3], gt_boxes[:, 1], gt_boxes[:, 3])
    batch = torch.arange(n, device=segm.device)[:, None, None]
    labels = segm[batch, iy[:, :, None], ix[:, None, :]].long()
    return labels * (in_y[:, :, None] & in_x[:, None, :])


# ------------------------------------------------------------------ "upstream" grid placement
def frame_to_grid_nodes(
    x: torch.Tensor, y: torch.Tensor, gt_boxes: torch.Tensor, boxes: torch.Tensor, size: int,
    clamp: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, P) box-frame points -> node coordinates (gx, gy) in each proposal's SxS grid.

    Node k of a box (x0, y0, x1, y1) is at image x0 + k * w / S. Returns gx, gy (N, P) float
    and ``inside`` (N, P) bool: 0 <= x - x0 < w and 0 <= y - y0 < h. With ``clamp`` the
    points are first moved onto the box (edges included). Arithmetic as upstream's.
    """

    def axis(v, g0, g1, b0, b1):
        g_size, b_size = (g1 - g0)[:, None], (b1 - b0)[:, None]
        pos = g0[:, None] + v * g_size / FRAME_SIZE  # image position
        offset = pos - b0[:, None]
        if clamp:
            offset = torch.minimum(offset.clamp(min=0.0), b_size)
        inside = (offset >= 0) & (offset < b_size)
        return offset * size / b_size, inside

    gx, in_x = axis(x, gt_boxes[:, 0], gt_boxes[:, 2], boxes[:, 0], boxes[:, 2])
    gy, in_y = axis(y, gt_boxes[:, 1], gt_boxes[:, 3], boxes[:, 1], boxes[:, 3])
    return gx, gy, in_x & in_y


def _node_weights(g: torch.Tensor, size: int):
    """Lower / upper node (clamped to the grid) and the upper node's weight, as upstream."""
    lo = g.floor().long().clamp(min=0, max=size - 1)
    hi = (lo + 1).clamp(max=size - 1)
    w = torch.min(hi.to(g.dtype), g) - lo.to(g.dtype)
    return lo, hi, w


def sample_at_grid_nodes(pred: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of (N, C, S, S) maps at (N, P) node coordinates -> (N, C, P).

    Meaningful for points with 0 <= g < S (see :func:`frame_to_grid_nodes`).
    """
    n, c, h, w = pred.shape
    x_lo, x_hi, x_w = _node_weights(gx, w)
    y_lo, y_hi, y_w = _node_weights(gy, h)
    flat = pred.flatten(2)

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return flat.gather(2, (yi * w + xi)[:, None, :].expand(n, c, -1))

    x_w, y_w = x_w[:, None, :].to(pred.dtype), y_w[:, None, :].to(pred.dtype)
    return (
        at(y_lo, x_lo) * ((1.0 - x_w) * (1.0 - y_w))
        + at(y_lo, x_hi) * (x_w * (1.0 - y_w))
        + at(y_hi, x_lo) * ((1.0 - x_w) * y_w)
        + at(y_hi, x_hi) * (x_w * y_w)
    )


def resample_segm_to_nodes(
    segm: torch.Tensor, gt_boxes: torch.Tensor, boxes: torch.Tensor, size: int
) -> torch.Tensor:
    """Nearest resampling of (N, 256, 256) GT-box-frame label maps at each box's SxS nodes.

    Node (k, j) is image point (x0 + k * w / S, y0 + j * h / S); the frame is read with
    ``grid_sample(align_corners=True)`` (frame pixel 0 at the GT box's left edge, pixel 255 at
    its right edge), 0 outside. Returns (N, S, S) long labels.
    """
    n = segm.shape[0]
    if n == 0:
        return torch.zeros((0, size, size), dtype=torch.long, device=segm.device)
    src_x0, src_y0 = gt_boxes[:, 0], gt_boxes[:, 1]
    src_w, src_h = gt_boxes[:, 2] - src_x0, gt_boxes[:, 3] - src_y0
    dst_x0, dst_y0 = boxes[:, 0], boxes[:, 1]
    dst_w, dst_h = boxes[:, 2] - dst_x0, boxes[:, 3] - dst_y0
    # the box's edges in the GT box's [-1, 1] coordinates
    left, right = 2 * (dst_x0 - src_x0) / src_w - 1, 2 * (dst_x0 + dst_w - src_x0) / src_w - 1
    top, bottom = 2 * (dst_y0 - src_y0) / src_h - 1, 2 * (dst_y0 + dst_h - src_y0) / src_h - 1
    steps = torch.arange(size, device=boxes.device, dtype=torch.float32) / size
    gx = (steps[None, None, :] * (right - left)[:, None, None] + left[:, None, None])
    gy = (steps[None, :, None] * (bottom - top)[:, None, None] + top[:, None, None])
    grid = torch.stack((gx.expand(n, size, size), gy.expand(n, size, size)), dim=3)
    out = F.grid_sample(segm[:, None].float(), grid.float(), mode="nearest",
                        padding_mode="zeros", align_corners=True)
    return out[:, 0].long()
