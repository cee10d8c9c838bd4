"""Cross-task cascade ROI heads: a second stage refines every task from the first stage's outputs.

Stage 1 is the multi-task DensePose R-CNN (DensePose, and the mask / keypoint heads when on).
Stage 2 of task t takes t's pooled ROI features concatenated with stage-1 outputs brought to
that pooler's resolution: the outputs of *all* tasks (DensePose coarse/fine segmentation and
U/V, mask logits, keypoint heatmaps) with ``CROSS_TASK``, or only t's own without (the DensePose
paper's control). A 1x1 conv fuses them back to the pooled width, and a head of the task's own
architecture predicts again. Both stages are trained; inference returns ``TEST_STAGE``.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec, cat
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads.keypoint_head import (
    build_keypoint_head,
    keypoint_rcnn_inference,
    keypoint_rcnn_loss,
)
from detectron2.modeling.roi_heads.mask_head import (
    build_mask_head,
    mask_rcnn_inference,
    mask_rcnn_loss,
)
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Instances
from torch import nn
from torch.nn import functional as F

from densepose_ext.structures import DensePoseChartOutput

from .densepose_head import build_densepose_head, init_kaiming
from .inference import densepose_inference
from .losses import LOSS_NAMES
from .predictor import DensePoseChartPredictor
from .roi_heads import DensePoseROIHeads, densepose_proposal_mask

__all__ = [
    "CASCADE_TASKS",
    "CascadeRefinement",
    "DensePoseCascadeROIHeads",
    "cascade_tasks",
    "resize_roi_maps",
    "stage1_output_channels",
]

#: tasks in the order their stage-1 outputs are concatenated
CASCADE_TASKS = ("densepose", "mask", "keypoint")


def cascade_tasks(cfg: CfgNode) -> List[str]:
    """Tasks of the cascade for ``cfg`` (DensePose always, mask / keypoints when on)."""
    on = {"densepose": True, "mask": cfg.MODEL.MASK_ON, "keypoint": cfg.MODEL.KEYPOINT_ON}
    return [t for t in CASCADE_TASKS if on[t]]


def stage1_output_channels(cfg: CfgNode) -> Dict[str, int]:
    """Channels of each task's stage-1 output map as fed to stage 2."""
    head = cfg.MODEL.ROI_DENSEPOSE_HEAD
    mask_classes = 1 if cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK else cfg.MODEL.ROI_HEADS.NUM_CLASSES
    return {
        "densepose": head.NUM_COARSE_SEGM_CHANNELS + 3 * (head.NUM_PATCHES + 1),
        "mask": mask_classes,
        "keypoint": cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS,
    }


def resize_roi_maps(x: torch.Tensor, size: int) -> torch.Tensor:
    """Per-ROI maps (R, C, H, W) -> (R, C, size, size), bilinear (area-averaged when shrinking)."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shrink)


class CascadeRefinement(nn.Module):
    """Stage 2 of one task: 1x1 fusion of [pooled features, stage-1 maps] then the task head."""

    def __init__(self, in_channels: int, out_channels: int, head: nn.Module,
                 predictor: Optional[nn.Module] = None):
        super().__init__()
        self.in_channels = in_channels
        self.fuse = Conv2d(in_channels, out_channels, kernel_size=1)
        init_kaiming(self.fuse)
        self.head = head
        self.predictor = predictor

    def forward(self, pooled: torch.Tensor, stage1_maps: List[torch.Tensor]):
        size = pooled.shape[-1]
        x = cat([pooled] + [resize_roi_maps(m, size) for m in stage1_maps], dim=1)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"stage 2 expects {self.in_channels} input channels, got {x.shape[1]}")
        x = F.relu(self.fuse(x))
        if self.predictor is not None:  # DensePose: conv head + chart predictor
            return self.predictor(self.head(x))
        return self.head.layers(x)  # detectron2 mask / keypoint head: logits


def _densepose_maps(out: DensePoseChartOutput) -> torch.Tensor:
    return cat([out.coarse_segm, out.fine_segm, out.u, out.v], dim=1)


def _visible_keypoint_mask(proposals: Instances) -> torch.Tensor:
    """Bool (R,): proposals whose GT has a visible keypoint inside the proposal box."""
    kps = proposals.gt_keypoints.tensor  # (R, K, 3)
    box = proposals.proposal_boxes.tensor[:, None, :]
    x, y = kps[..., 0], kps[..., 1]
    inside = (x >= box[..., 0]) & (x <= box[..., 2]) & (y >= box[..., 1]) & (y <= box[..., 3])
    return ((kps[..., 2] >= 1) & inside).any(dim=1)


@ROI_HEADS_REGISTRY.register()
class DensePoseCascadeROIHeads(DensePoseROIHeads):
    """Multi-task DensePose R-CNN with a cross-task refinement stage (DensePose paper, Sec. 4.3).

    Stage-1 modules keep the single-stage names (``densepose_head``, ``mask_head``, ...), so a
    multi-task checkpoint initialises stage 1; stage 2 lives under ``cascade.<task>``.
    Training runs every task's two stages on the same foreground proposals and takes each loss
    on that task's trainable subset (DensePose-annotated / visible keypoints / all for masks);
    stage-1 losses carry the suffix ``_stage1``.
    """

    @configurable
    def __init__(
        self,
        *,
        cascade: nn.ModuleDict,
        cascade_inputs: Dict[str, List[str]],
        stage1_loss_weight: float = 1.0,
        test_stage: int = 2,
        **kwargs,
    ):
        """
        Args:
            cascade: stage-2 module (:class:`CascadeRefinement`) per task.
            cascade_inputs: for each task, the tasks whose stage-1 outputs its stage 2 sees.
            stage1_loss_weight: multiplier of the stage-1 losses.
            test_stage: 1 or 2, the stage whose outputs inference returns.
            kwargs: arguments of :class:`DensePoseROIHeads`.
        """
        super().__init__(**kwargs)
        if not self.densepose_on:
            raise ValueError("DensePoseCascadeROIHeads needs MODEL.DENSEPOSE_ON")
        if test_stage not in (1, 2):
            raise ValueError(f"MODEL.ROI_CASCADE_HEAD.TEST_STAGE must be 1 or 2, got {test_stage}")
        self.cascade = cascade
        self.cascade_inputs = cascade_inputs
        self.stage1_loss_weight = stage1_loss_weight
        self.test_stage = test_stage

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        tasks = cascade_tasks(cfg)
        channels = stage1_output_channels(cfg)
        cross = cfg.MODEL.ROI_CASCADE_HEAD.CROSS_TASK
        inputs = {t: (list(tasks) if cross else [t]) for t in tasks}
        pooled_channels = input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels
        decoder = ret.get("decoder")
        # DensePose pools the decoder's output when it is on (mask / keypoints: the FPN levels)
        dp_channels = decoder.out_channels if decoder is not None else pooled_channels
        stages = nn.ModuleDict()
        for task in tasks:
            if task == "densepose":
                in_channels = dp_channels + sum(channels[t] for t in inputs[task])
                head = build_densepose_head(cfg, dp_channels)
                predictor = DensePoseChartPredictor(cfg, head.n_out_channels)
                stages[task] = CascadeRefinement(in_channels, dp_channels, head, predictor)
                continue
            in_channels = pooled_channels + sum(channels[t] for t in inputs[task])
            resolution = (cfg.MODEL.ROI_MASK_HEAD if task == "mask"
                          else cfg.MODEL.ROI_KEYPOINT_HEAD).POOLER_RESOLUTION
            shape = ShapeSpec(channels=pooled_channels, height=resolution, width=resolution)
            build = build_mask_head if task == "mask" else build_keypoint_head
            stages[task] = CascadeRefinement(in_channels, pooled_channels, build(cfg, shape))
        ret.update(
            cascade=stages,
            cascade_inputs=inputs,
            stage1_loss_weight=float(cfg.MODEL.ROI_CASCADE_HEAD.STAGE1_LOSS_WEIGHT),
            test_stage=int(cfg.MODEL.ROI_CASCADE_HEAD.TEST_STAGE),
        )
        return ret

    # ---------------------------------------------------------------- both stages
    def _pool(self, features: Dict[str, torch.Tensor], boxes) -> Dict[str, torch.Tensor]:
        """Pooled ROI features of every task (each with its own pooler; DensePose's reads the
        decoder's output when DECODER_ON)."""
        pooled = {"densepose": self.densepose_pooler(self._densepose_features(features), boxes)}
        if self.mask_on:
            pooled["mask"] = self.mask_pooler([features[f] for f in self.mask_in_features], boxes)
        if self.keypoint_on:
            pooled["keypoint"] = self.keypoint_pooler(
                [features[f] for f in self.keypoint_in_features], boxes)
        return pooled

    def _run_cascade(self, features: Dict[str, torch.Tensor], boxes, stages: int):
        """Outputs of stage 1 and (if ``stages`` is 2) stage 2: two dicts task -> output
        (DensePoseChartOutput for DensePose, logits for mask / keypoints)."""
        pooled = self._pool(features, boxes)
        first = {"densepose": self.densepose_predictor(self.densepose_head(pooled["densepose"]))}
        if self.mask_on:
            first["mask"] = self.mask_head.layers(pooled["mask"])
        if self.keypoint_on:
            first["keypoint"] = self.keypoint_head.layers(pooled["keypoint"])
        if stages == 1:
            return first, None
        maps = {t: _densepose_maps(o) if t == "densepose" else o for t, o in first.items()}
        second = {
            task: self.cascade[task](pooled[task], [maps[t] for t in self.cascade_inputs[task]])
            for task in first
        }
        return first, second

    # ---------------------------------------------------------------- training
    def _task_losses(self, outputs: dict, fg: List[Instances], suffix: str) -> Dict[str, torch.Tensor]:
        """Each task's loss on its trainable subset of the foreground proposals ``fg``."""
        losses = {}
        dp_keep = [densepose_proposal_mask(p, self.densepose_fg_iou_threshold) for p in fg]
        dp_out = outputs["densepose"]
        keep = cat(dp_keep)
        if bool(keep.any()):
            dp_losses = self.densepose_losses(dp_out[keep], [p[k] for p, k in zip(fg, dp_keep)])
        else:
            dp_losses = self.densepose_losses.zero_losses_from_outputs(dp_out)
        losses.update(dp_losses)
        if self.mask_on:
            losses["loss_mask"] = mask_rcnn_loss(outputs["mask"], fg) * self.mask_head.loss_weight
        if self.keypoint_on:
            kp_keep = [_visible_keypoint_mask(p) for p in fg]
            keep = cat(kp_keep)
            head = self.keypoint_head
            normalizer = (None if head.loss_normalizer == "visible"
                          else len(fg) * head.loss_normalizer)
            if bool(keep.any()):
                loss = keypoint_rcnn_loss(outputs["keypoint"][keep],
                                          [p[k] for p, k in zip(fg, kp_keep)], normalizer)
            else:
                loss = outputs["keypoint"].sum() * 0.0
            losses["loss_keypoint"] = loss * head.loss_weight
        return {k + suffix: v for k, v in losses.items()}

    def _forward_cascade_train(self, features, proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        fg, _ = select_foreground_proposals(proposals, self.num_classes)
        boxes = [p.proposal_boxes for p in fg]
        if sum(len(b) for b in boxes) == 0:
            # keep every parameter in the graph so distributed replicas stay in step
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            names = self._loss_names()
            return {k: zero for k in names + [n + "_stage1" for n in names]}
        first, second = self._run_cascade(features, boxes, stages=2)
        losses = {k: v * self.stage1_loss_weight
                  for k, v in self._task_losses(first, fg, "_stage1").items()}
        losses.update(self._task_losses(second, fg, ""))
        return losses

    def _loss_names(self) -> List[str]:
        names = list(LOSS_NAMES)
        if self.mask_on:
            names.append("loss_mask")
        if self.keypoint_on:
            names.append("loss_keypoint")
        return names

    # ---------------------------------------------------------------- inference
    def _forward_cascade_inference(self, features, instances: List[Instances]) -> List[Instances]:
        boxes = [x.pred_boxes for x in instances]
        first, second = self._run_cascade(features, boxes, stages=self.test_stage)
        out = second if self.test_stage == 2 else first
        densepose_inference(out["densepose"], instances)
        if self.mask_on:
            mask_rcnn_inference(out["mask"], instances)
        if self.keypoint_on:
            keypoint_rcnn_inference(out["keypoint"], instances)
        return instances

    def forward(self, images, features, proposals, targets=None):
        """Boxes as :class:`StandardROIHeads`; DensePose, masks and keypoints by the cascade."""
        del images
        if self.training:
            assert targets, "'targets' argument is required during training"
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses = self._forward_box(features, proposals)
            losses.update(self._forward_cascade_train(features, proposals))
            return proposals, losses
        instances = self._forward_box(features, proposals)
        return self._forward_cascade_inference(features, instances), {}

    def forward_with_given_boxes(self, features, instances: List[Instances]) -> List[Instances]:
        """DensePose, mask and keypoint outputs of the cascade for given detections."""
        assert not self.training
        assert instances[0].has("pred_boxes") and instances[0].has("pred_classes")
        return self._forward_cascade_inference(features, instances)
