"""Per-pixel DensePose maps -> per-instance outputs, as the R-CNN head would give them.

Person instances are the connected components (8-connectivity) of the predicted person mask
(person probability > 0.5). A component's box spans its pixels, its score is the mean person
probability over its pixels. Each box's :class:`DensePoseChartOutput` is the image-level map
resampled bilinearly at the centres of an SxS grid spanning the box (the R-CNN grid
convention), so evaluation and visualisation read it unchanged. Touching or overlapping
persons merge into one component: the known limit of a non-regional model.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from densepose_ext.structures import DensePoseChartOutput

__all__ = ["crop_maps_to_boxes", "person_components"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def person_components(
    person_prob: torch.Tensor, min_area: int = 1, max_instances: int = -1,
    threshold: float = 0.5,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Boxes and scores of the connected components of ``person_prob > threshold``.

    Args:
        person_prob: (H, W) person probabilities.
        min_area: components with fewer pixels are dropped.
        max_instances: keep at most this many (highest scores); < 0 keeps all.
    Returns:
        boxes (K, 4) float XYXY in pixel-edge coordinates (a component covering columns
        c0..c1 spans x in [c0, c1 + 1)), scores (K,), sorted by decreasing score; on the
        device of ``person_prob``.
    """
    device = person_prob.device
    prob = person_prob.detach().float().cpu().numpy()
    labels, n = ndimage.label(prob > threshold, structure=_EIGHT_CONNECTED)
    if n == 0:
        return torch.zeros((0, 4), device=device), torch.zeros((0,), device=device)
    flat = labels.ravel()
    areas = np.bincount(flat, minlength=n + 1)[1:]
    sums = np.bincount(flat, weights=prob.ravel(), minlength=n + 1)[1:]
    slices = ndimage.find_objects(labels)  # one (rows, cols) slice pair per component
    boxes = np.array([[sx.start, sy.start, sx.stop, sy.stop] for sy, sx in slices], np.float32)
    scores = (sums / np.maximum(areas, 1)).astype(np.float32)
    keep = np.nonzero(areas >= min_area)[0]
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if max_instances >= 0:
        keep = keep[:max_instances]
    return (torch.from_numpy(boxes[keep]).to(device),
            torch.from_numpy(scores[keep]).to(device))


def crop_maps_to_boxes(
    maps: DensePoseChartOutput, boxes: torch.Tensor, size: int
) -> DensePoseChartOutput:
    """Resample one image's (1, C, H, W) maps onto an SxS grid inside each of (N, 4) boxes.

    Boxes are XYXY in the maps' pixel coordinates (pixel (c, r) covers [c, c+1) x [r, r+1));
    grid cell (r, c) of a box samples the position (x0 + (c + 0.5) w / S, y0 + (r + 0.5) h / S)
    bilinearly; positions beyond the maps take the border value. Returns N-instance outputs.
    """
    if len(maps) != 1:
        raise ValueError(f"crop_maps_to_boxes takes the maps of one image, got {len(maps)}")
    tensors = (maps.coarse_segm, maps.fine_segm, maps.u, maps.v)
    channels = [t.shape[1] for t in tensors]
    stacked = torch.cat(tensors, dim=1)
    height, width = stacked.shape[-2:]
    n = boxes.shape[0]
    if n == 0:
        crops = stacked.new_zeros((0, stacked.shape[1], size, size))
    else:
        boxes = boxes.to(device=stacked.device, dtype=stacked.dtype)
        k = (torch.arange(size, device=stacked.device, dtype=stacked.dtype) + 0.5) / size
        xs = boxes[:, 0:1] + k[None] * (boxes[:, 2:3] - boxes[:, 0:1])  # (N, S)
        ys = boxes[:, 1:2] + k[None] * (boxes[:, 3:4] - boxes[:, 1:2])
        gx = (2.0 * xs / width - 1.0)[:, None, :].expand(n, size, size)
        gy = (2.0 * ys / height - 1.0)[:, :, None].expand(n, size, size)
        grid = torch.stack([gx, gy], dim=3).reshape(1, n * size, size, 2)
        out = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)  # (1, C, N*S, S)
        crops = out.reshape(stacked.shape[1], n, size, size).permute(1, 0, 2, 3)
    coarse, fine, u, v = torch.split(crops, channels, dim=1)
    return DensePoseChartOutput(coarse_segm=coarse, fine_segm=fine, u=u, v=v)
