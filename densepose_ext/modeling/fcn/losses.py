"""Losses of the fully convolutional DensePose head against the per-person ground truth.

The head's maps (at its common stride) span the padded input image; the per-pixel outputs
are their bilinear upsampling. Every GT person's sparse points (box frame, see
:mod:`densepose_ext.modeling.point_sampling`) are moved to image coordinates and the maps are
sampled bilinearly there, directly at low resolution: this reads the same function as the
upsampled outputs (equal at every pixel centre, see :func:`.head.upsample_maps`) without
materialising 75 full-resolution channels. Conventions and weights are those of
:class:`densepose_ext.modeling.losses.DensePoseChartLoss`:

- ``loss_densepose_I``: fine part cross-entropy at the points, mean over all points of the
  batch, times PART_WEIGHTS;
- ``loss_densepose_U`` / ``_V``: smooth-L1 of the GT part's U / V channel, summed over points,
  times POINT_REGRESSION_WEIGHTS;
- ``loss_densepose_S``: per-pixel person / background cross-entropy, on the coarse logits
  upsampled to the input resolution, against the union of the GT person masks, mean over
  pixels, times INDEX_WEIGHTS.

Person masks come from ``gt_masks`` (polygons / bitmasks, present when the mapper loads them)
or else from the DensePose coarse mask pasted into the person's box. Inside the box of a person
with neither, pixels outside every other person's mask are ignored (the person is there but
its extent is unknown); so is the padding beyond the image.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.structures import BitMasks, Instances, PolygonMasks
from torch.nn import functional as F

from densepose_ext.structures import FRAME_SIZE, DensePoseChartOutput

from ..losses import LOSS_NAMES
from ..point_sampling import frame_to_image, image_to_box_normalized, pack_points, sample_at_points

__all__ = ["DensePoseFCNLoss", "paste_box_frame_masks", "person_segmentation_target"]

#: label of ignored pixels in the coarse target
IGNORE = -1


def paste_box_frame_masks(
    masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """(N, 256, 256) box-frame masks -> (N, height, width) image masks (nearest).

    Image pixel (c, r) takes the frame cell containing its centre (c + 0.5, r + 0.5); pixels
    whose centre lies outside the box are False.
    """
    n = masks.shape[0]
    if n == 0:
        return torch.zeros((0, height, width), dtype=torch.bool, device=masks.device)
    boxes = boxes.to(torch.float32)

    def axis(size: int, lo: torch.Tensor, hi: torch.Tensor):
        centres = torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5
        frame = (centres[None, :] - lo[:, None]) * FRAME_SIZE / (hi - lo).clamp(min=1e-6)[:, None]
        idx = torch.floor(frame)
        inside = (idx >= 0) & (idx < FRAME_SIZE)
        return idx.clamp(0, FRAME_SIZE - 1).long(), inside

    ix, in_x = axis(width, boxes[:, 0], boxes[:, 2])
    iy, in_y = axis(height, boxes[:, 1], boxes[:, 3])
    batch = torch.arange(n, device=masks.device)[:, None, None]
    pasted = masks.bool()[batch, iy[:, :, None], ix[:, None, :]]
    return pasted & in_y[:, :, None] & in_x[:, None, :]


def _box_region(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, height, width) bool: pixels whose centre lies inside each box."""
    xs = torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5
    in_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])
    in_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])
    return in_y[:, :, None] & in_x[:, None, :]


def _instance_masks(instances: Instances) -> Tuple[torch.Tensor, torch.Tensor]:
    """(N, h, w) person masks of one image and (N,) bool: which persons have one."""
    h, w = instances.image_size
    n = len(instances)
    device = instances.gt_boxes.device
    if instances.has("gt_masks"):
        gt_masks = instances.gt_masks
        if isinstance(gt_masks, PolygonMasks):
            gt_masks = BitMasks.from_polygon_masks(gt_masks, h, w)
        if not isinstance(gt_masks, BitMasks):
            raise TypeError(f"gt_masks must be PolygonMasks or BitMasks, got {type(gt_masks)}")
        masks = gt_masks.tensor.to(device).bool()[:, :h, :w]
        return masks, torch.ones(n, dtype=torch.bool, device=device)
    masks = torch.zeros((n, h, w), dtype=torch.bool, device=device)
    has_mask = torch.zeros(n, dtype=torch.bool, device=device)
    if instances.has("gt_densepose"):
        keep = [k for k, d in enumerate(instances.gt_densepose)
                if d is not None and d.segm is not None]
        if keep:
            segm = torch.stack([instances.gt_densepose[k].segm.to(device) > 0 for k in keep])
            idx = torch.tensor(keep, device=device)
            masks[idx] = paste_box_frame_masks(segm, instances.gt_boxes.tensor[idx], h, w)
            has_mask[idx] = True
    return masks, has_mask


def person_segmentation_target(instances: Instances, padded_size: Tuple[int, int]) -> torch.Tensor:
    """(H, W) long person target of one image on the padded grid: 1 person, 0 background,
    ``IGNORE`` for the padding and for unknown-extent persons (see the module docstring)."""
    h, w = instances.image_size
    device = instances.gt_boxes.device
    target = torch.full(tuple(padded_size), IGNORE, dtype=torch.long, device=device)
    image = torch.zeros((h, w), dtype=torch.long, device=device)
    if len(instances):
        masks, has_mask = _instance_masks(instances)
        person = masks.any(dim=0)
        if bool((~has_mask).any()):
            unknown = _box_region(instances.gt_boxes.tensor[~has_mask].float(), h, w).any(dim=0)
            image[unknown] = IGNORE
        image[person] = 1
    target[:h, :w] = image
    return target


class DensePoseFCNLoss:
    """Point and segmentation losses of per-pixel DensePose maps (module docstring)."""

    def __init__(self, part_weight: float = 1.0, point_regression_weight: float = 0.01,
                 index_weight: float = 5.0):
        self.w_part = float(part_weight)
        self.w_points = float(point_regression_weight)
        self.w_segm = float(index_weight)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> "DensePoseFCNLoss":
        head = cfg.MODEL.ROI_DENSEPOSE_HEAD
        return cls(head.PART_WEIGHTS, head.POINT_REGRESSION_WEIGHTS, head.INDEX_WEIGHTS)

    def __call__(
        self, maps: DensePoseChartOutput, instances: List[Instances],
        padded_size: Optional[Tuple[int, int]] = None,
    ) -> Dict[str, torch.Tensor]:
        """Losses of (B, C, h, w) ``maps`` spanning the padded input of ``padded_size``
        (default: the maps' own size) given each image's GT ``instances`` (gt_boxes, optional
        gt_densepose and gt_masks, in input coordinates)."""
        if len(maps) != len(instances):
            raise ValueError(f"{len(maps)} per-pixel predictions for {len(instances)} images")
        size = tuple(padded_size or maps.coarse_segm.shape[-2:])
        losses = self._point_losses(maps, instances, size)
        losses["loss_densepose_S"] = self._segm_loss(maps, instances, size)
        return losses

    def _sample_image_points(
        self, maps: DensePoseChartOutput, b: int, instances: Instances, size: Tuple[int, int]
    ) -> Optional[Tuple[torch.Tensor, ...]]:
        """(Q, C) fine logits, (Q,) U and V of the GT part, and the GT (i, u, v) at one
        image's annotated points; None without points."""
        if not instances.has("gt_densepose") or len(instances) == 0:
            return None
        keep = [k for k, d in enumerate(instances.gt_densepose) if d is not None and len(d)]
        if not keep:
            return None
        device = maps.device
        data = [instances.gt_densepose[k] for k in keep]
        gt_boxes = instances.gt_boxes.tensor[torch.tensor(keep, device=device)].float()
        pts = pack_points(data, device=device)
        x, y = frame_to_image(pts.x, pts.y, gt_boxes)
        height, width = size
        whole = torch.tensor([[0.0, 0.0, width, height]], device=device).expand(len(keep), 4)
        grid = image_to_box_normalized(x, y, whole)[pts.valid][None]  # (1, Q, 2)
        fine, u, v = (sample_at_points(t[b : b + 1], grid)[0].t()  # (Q, C) each
                      for t in (maps.fine_segm, maps.u, maps.v))
        i = pts.i[pts.valid]
        return (fine, u.gather(1, i[:, None])[:, 0], v.gather(1, i[:, None])[:, 0],
                i, pts.u[pts.valid], pts.v[pts.valid])

    def _point_losses(self, maps, instances, size) -> Dict[str, torch.Tensor]:
        per_image = [self._sample_image_points(maps, b, inst, size)
                     for b, inst in enumerate(instances)]
        per_image = [p for p in per_image if p is not None]
        if not per_image:
            zero = (maps.fine_segm.sum() + maps.u.sum() + maps.v.sum()) * 0.0
            return {k: zero for k in LOSS_NAMES[:3]}
        fine, u_est, v_est, i, u, v = (torch.cat(t) for t in zip(*per_image))
        return {
            "loss_densepose_I": F.cross_entropy(fine, i) * self.w_part,
            "loss_densepose_U": F.smooth_l1_loss(u_est, u, reduction="sum") * self.w_points,
            "loss_densepose_V": F.smooth_l1_loss(v_est, v, reduction="sum") * self.w_points,
        }

    def _segm_loss(self, maps, instances, size) -> torch.Tensor:
        target = torch.stack([person_segmentation_target(inst, size) for inst in instances])
        if not bool((target != IGNORE).any()):
            return maps.coarse_segm.sum() * 0.0
        coarse = maps.coarse_segm
        if tuple(coarse.shape[-2:]) != tuple(size):
            coarse = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
        return F.cross_entropy(coarse, target, ignore_index=IGNORE) * self.w_segm
