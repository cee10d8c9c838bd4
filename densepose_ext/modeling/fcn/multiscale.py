"""Multi-scale and flip testing of per-pixel DensePose maps.

Every run (a scale, optionally mirrored) gives maps that are brought back to the input image's
frame: resized bilinearly to its size and, for a mirrored run, flipped back with the part
relabelling and (U, V) symmetry tables of :class:`DensePoseTransformData`. The runs are then
merged: coarse and fine segmentation by averaging softmax probabilities (returned as log
probabilities, so they stay valid logits), U and V by averaging the values.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch.nn import functional as F

from densepose_ext.structures import DensePoseChartOutput, DensePoseTransformData

__all__ = [
    "flip_back",
    "merge_predictions",
    "resize_image",
    "resize_maps",
    "scaled_size",
    "to_log_probs",
]


def scaled_size(height: int, width: int, min_size: int, max_size: int) -> Tuple[int, int]:
    """Size with the shorter side ``min_size`` and the longer side at most ``max_size``
    (the rule of detectron2's ResizeShortestEdge)."""
    scale = min_size / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_image(image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(C, h, w) image -> float (C, H, W), bilinear (antialiased when shrinking)."""
    image = image.float()
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=True)[0]


def _apply(maps: DensePoseChartOutput, fn) -> DensePoseChartOutput:
    return DensePoseChartOutput(
        coarse_segm=fn(maps.coarse_segm), fine_segm=fn(maps.fine_segm), u=fn(maps.u), v=fn(maps.v)
    )


def resize_maps(maps: DensePoseChartOutput, size: Tuple[int, int]) -> DensePoseChartOutput:
    """Bilinear resize of (N, C, h, w) maps to ``size`` (unchanged when already that size)."""
    if tuple(maps.coarse_segm.shape[-2:]) == tuple(size):
        return maps
    return _apply(maps, lambda t: F.interpolate(t, size=tuple(size), mode="bilinear",
                                                align_corners=False))


def to_log_probs(maps: DensePoseChartOutput) -> DensePoseChartOutput:
    """Coarse and fine logits -> log probabilities (U, V unchanged)."""
    return DensePoseChartOutput(
        coarse_segm=F.log_softmax(maps.coarse_segm, dim=1),
        fine_segm=F.log_softmax(maps.fine_segm, dim=1), u=maps.u, v=maps.v,
    )


def flip_back(maps: DensePoseChartOutput, transform_data: DensePoseTransformData
              ) -> DensePoseChartOutput:
    """Maps predicted on a mirrored image -> maps of the original image.

    The maps are mirrored horizontally; fine channel q (part q of the mirrored person) becomes
    channel ``flip(q)``; the U, V predicted in channel q go through part q's symmetry tables
    and then to channel ``flip(q)``. Two coarse channels (person / background) are unchanged;
    15 coarse-part channels are permuted like the fine ones.
    """
    fine, u, v = (t.flip(-1) for t in (maps.fine_segm, maps.u, maps.v))
    n_channels = fine.shape[1]
    perm = transform_data.point_label_symmetries.to(fine.device)
    if n_channels != perm.numel():
        raise ValueError(f"flip tables cover {perm.numel()} fine channels, maps have {n_channels}")
    inverse = torch.argsort(perm)  # output channel p reads input channel inverse[p]
    parts = torch.arange(n_channels, device=fine.device).view(1, -1, 1, 1).expand_as(u)
    _, u_flip, v_flip = transform_data.to(fine.device).flip_iuv(parts, u, v)
    coarse = maps.coarse_segm.flip(-1)
    if coarse.shape[1] > 2:
        coarse = coarse[:, torch.argsort(transform_data.mask_label_symmetries.to(fine.device))]
    return DensePoseChartOutput(
        coarse_segm=coarse, fine_segm=fine[:, inverse],
        u=u_flip[:, inverse].to(u.dtype), v=v_flip[:, inverse].to(v.dtype),
    )


def merge_predictions(runs: Sequence[DensePoseChartOutput]) -> DensePoseChartOutput:
    """Merge runs given as log probabilities (coarse, fine) and U, V, all of one size.

    One run is returned as is; several give log(mean softmax) and mean U, V.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("merge_predictions needs at least one run")
    if len(runs) == 1:
        return runs[0]
    sizes = {tuple(r.coarse_segm.shape) + tuple(r.fine_segm.shape) for r in runs}
    if len(sizes) != 1:
        raise ValueError(f"runs to merge have different shapes: {sorted(sizes)}")

    def mean(tensors: List[torch.Tensor]) -> torch.Tensor:
        return torch.stack(tensors).mean(dim=0)

    def log_mean_prob(tensors: List[torch.Tensor]) -> torch.Tensor:
        return torch.logsumexp(torch.stack(tensors), dim=0) - torch.log(
            torch.tensor(float(len(tensors)), device=tensors[0].device)
        )

    return DensePoseChartOutput(
        coarse_segm=log_mean_prob([r.coarse_segm for r in runs]),
        fine_segm=log_mean_prob([r.fine_segm for r in runs]),
        u=mean([r.u for r in runs]), v=mean([r.v for r in runs]),
    )
