"""DensePose chart losses: fine parts and U, V at the annotated points, coarse segmentation."""
from __future__ import annotations

from typing import Dict, Iterable, List

import torch
from detectron2.config import CfgNode
from detectron2.structures import Instances
from torch import nn
from torch.nn import functional as F

from densepose_ext.structures import DensePoseChartOutput

from .point_sampling import (
    frame_to_grid_nodes,
    frame_to_image,
    image_to_box_normalized,
    pack_points,
    resample_segm_to_boxes,
    resample_segm_to_nodes,
    sample_at_grid_nodes,
    sample_at_points,
)

__all__ = ["DensePoseChartLoss", "LOSS_NAMES", "LOSS_GRIDS"]

LOSS_NAMES = ("loss_densepose_I", "loss_densepose_U", "loss_densepose_V", "loss_densepose_S")
#: values of MODEL.ROI_DENSEPOSE_HEAD.LOSS_GRID (see :mod:`.point_sampling`)
LOSS_GRIDS = ("upstream", "pixel_centers")


class DensePoseChartLoss:
    """Losses of :class:`DensePoseChartOutput` against the sparse DensePose ground truth.

    - ``loss_densepose_I``: cross-entropy of the fine part (25-way) at the points, mean over
      points, times PART_WEIGHTS;
    - ``loss_densepose_U`` / ``_V``: smooth-L1 (beta 1) of the GT part's U / V channel at the
      points (of a body part, label > 0), summed over points (as upstream), times
      POINT_REGRESSION_WEIGHTS;
    - ``loss_densepose_S``: cross-entropy of the coarse segmentation against the GT coarse mask
      resampled into each proposal's grid (2-way person/background or 15-way parts), mean
      over cells, times INDEX_WEIGHTS.
    Predictions are sampled bilinearly at the points; where the SxS grid sits in the box is
    ``LOSS_GRID`` ("upstream": detectron2 DensePose's formulas; "pixel_centers"), see
    :mod:`.point_sampling`.
    """

    def __init__(self, cfg: CfgNode):
        head_cfg = cfg.MODEL.ROI_DENSEPOSE_HEAD
        self.w_part = float(head_cfg.PART_WEIGHTS)
        self.w_points = float(head_cfg.POINT_REGRESSION_WEIGHTS)
        self.w_segm = float(head_cfg.INDEX_WEIGHTS)
        self.n_coarse = int(head_cfg.NUM_COARSE_SEGM_CHANNELS)
        self.drop_outside = bool(head_cfg.DROP_POINTS_OUTSIDE_BOX)
        self.grid = str(head_cfg.LOSS_GRID)
        if self.grid not in LOSS_GRIDS:
            raise ValueError(
                f"MODEL.ROI_DENSEPOSE_HEAD.LOSS_GRID must be one of {LOSS_GRIDS}, got {self.grid!r}"
            )

    def __call__(
        self, outputs: DensePoseChartOutput, proposals: List[Instances]
    ) -> Dict[str, torch.Tensor]:
        """Losses for ``outputs`` predicted on ``proposals`` (concatenated in order).

        Each proposal needs ``proposal_boxes``, ``gt_boxes`` and a non-None ``gt_densepose``.
        """
        proposals = [p for p in proposals if len(p)]
        if not proposals:
            return self.zero_losses_from_outputs(outputs)
        boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
        gt_boxes = torch.cat([p.gt_boxes.tensor for p in proposals])
        data = [d for p in proposals for d in p.gt_densepose]
        if len(data) != len(outputs) or any(d is None for d in data):
            raise ValueError(
                f"DensePose losses need one annotated GT per prediction: got {len(outputs)} "
                f"predictions for {len(data)} proposals "
                f"({sum(d is None for d in data)} without DensePose)"
            )
        losses = self._point_losses(outputs, data, boxes, gt_boxes)
        losses["loss_densepose_S"] = self._segm_loss(outputs, data, boxes, gt_boxes)
        return losses

    def _sample(self, outputs, pts, boxes, gt_boxes):
        """(fine, u, v) sampled at the points, each (N, C, P), and the (N, P) points used."""
        maps = (outputs.fine_segm, outputs.u, outputs.v)
        if self.grid == "upstream":
            size = outputs.fine_segm.shape[-1]
            gx, gy, inside = frame_to_grid_nodes(
                pts.x, pts.y, gt_boxes, boxes, size, clamp=not self.drop_outside)
            valid = pts.valid & inside
            return tuple(sample_at_grid_nodes(m, gx, gy) for m in maps), valid
        x_img, y_img = frame_to_image(pts.x, pts.y, gt_boxes)
        grid = image_to_box_normalized(x_img, y_img, boxes)
        valid = pts.valid
        if self.drop_outside:
            valid = valid & (grid.abs() <= 1.0).all(dim=2)
        else:
            grid = grid.clamp(-1.0, 1.0)
        return tuple(sample_at_points(m, grid) for m in maps), valid

    def _point_losses(self, outputs, data, boxes, gt_boxes) -> Dict[str, torch.Tensor]:
        pts = pack_points(data, device=boxes.device)
        (fine, u, v), valid = self._sample(outputs, pts, boxes, gt_boxes)  # (N, C, P) each
        if not bool(valid.any()):
            zero = self.zero_losses_from_outputs(outputs)
            return {k: zero[k] for k in LOSS_NAMES[:3]}
        parts = pts.i.unsqueeze(1)  # (N, 1, P)
        on_body = valid & (pts.i > 0)  # U/V of body-part points only (all of them in our data)
        u_est = u.gather(1, parts).squeeze(1)[on_body]
        v_est = v.gather(1, parts).squeeze(1)[on_body]
        fine_est = fine.permute(0, 2, 1)[valid]  # (Q, C)
        return {
            "loss_densepose_I": F.cross_entropy(fine_est, pts.i[valid]) * self.w_part,
            "loss_densepose_U": F.smooth_l1_loss(u_est, pts.u[on_body], reduction="sum")
            * self.w_points,
            "loss_densepose_V": F.smooth_l1_loss(v_est, pts.v[on_body], reduction="sum")
            * self.w_points,
        }

    def _segm_loss(self, outputs, data, boxes, gt_boxes) -> torch.Tensor:
        has_segm = torch.tensor([d.segm is not None for d in data], device=boxes.device)
        if not bool(has_segm.any()):
            return outputs.coarse_segm.sum() * 0.0
        keep = has_segm.nonzero().flatten()
        segm = torch.stack([d.segm.to(boxes.device) for d in data if d.segm is not None])
        size = outputs.coarse_segm.shape[-1]
        resample = resample_segm_to_nodes if self.grid == "upstream" else resample_segm_to_boxes
        labels = resample(segm, gt_boxes[keep], boxes[keep], size)
        if self.n_coarse == 2:
            labels = (labels > 0).long()
        return F.cross_entropy(outputs.coarse_segm[keep], labels) * self.w_segm

    @staticmethod
    def zero_losses_from_outputs(outputs: DensePoseChartOutput) -> Dict[str, torch.Tensor]:
        """Zero losses connected to every output (and so to every parameter that made them)."""
        zero = (
            outputs.coarse_segm.sum() + outputs.fine_segm.sum() + outputs.u.sum() + outputs.v.sum()
        ) * 0.0
        return {k: zero for k in LOSS_NAMES}

    @staticmethod
    def zero_losses(modules: Iterable[nn.Module]) -> Dict[str, torch.Tensor]:
        """Zero losses that depend on every parameter of ``modules``.

        Used when a batch has no DensePose proposal, so that every replica of a distributed
        run still sees gradients for the DensePose parameters and does not wait forever.
        """
        params = [p for m in modules for p in m.parameters()]
        zero = sum(p.sum() for p in params) * 0.0
        return {k: zero for k in LOSS_NAMES}
