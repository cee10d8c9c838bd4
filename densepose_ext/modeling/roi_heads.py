"""DensePose R-CNN ROI heads: detectron2's StandardROIHeads plus a DensePose branch."""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Boxes, Instances
from detectron2.structures.boxes import matched_pairwise_iou
from torch import nn

from densepose_ext.structures import DensePoseChartOutput

from .decoder import build_densepose_decoder, decoder_output_shape
from .densepose_head import build_densepose_head
from .inference import densepose_inference
from .losses import DensePoseChartLoss
from .predictor import DensePoseChartPredictor
from .unsupported import check_supported_config

__all__ = ["DensePoseROIHeads", "densepose_proposal_mask", "select_densepose_proposals"]


def densepose_proposal_mask(proposals: Instances, fg_iou_threshold: float) -> torch.Tensor:
    """Bool (R,): proposals whose matched GT person has DensePose and IoU >= the threshold."""
    device = proposals.proposal_boxes.device
    if len(proposals) == 0 or not proposals.has("gt_densepose"):
        return torch.zeros(len(proposals), dtype=torch.bool, device=device)
    iou = matched_pairwise_iou(proposals.proposal_boxes, proposals.gt_boxes)
    annotated = proposals.gt_densepose.is_annotated.to(iou.device)
    return annotated & (iou >= fg_iou_threshold)


def select_densepose_proposals(proposals: Instances, fg_iou_threshold: float) -> Instances:
    """Foreground proposals whose matched GT person has DensePose and IoU >= the threshold."""
    return proposals[densepose_proposal_mask(proposals, fg_iou_threshold)]


@ROI_HEADS_REGISTRY.register()
class DensePoseROIHeads(StandardROIHeads):
    """StandardROIHeads (box, optional mask / keypoint) with a DensePose chart branch.

    DensePose features come from ROIAlign on ``ROI_HEADS.IN_FEATURES`` or, with
    ``ROI_DENSEPOSE_HEAD.DECODER_ON`` (upstream's default), on the single map that
    :class:`~.decoder.DensePoseDecoder` merges them into; the conv-stack head
    (``ROI_DENSEPOSE_HEAD.NAME``) and :class:`DensePoseChartPredictor` turn them into
    ``pred_densepose`` (:class:`DensePoseChartOutput`) at inference and into
    ``loss_densepose_{I,U,V,S}`` in training. Module names (``decoder``, ``densepose_head``,
    ``densepose_predictor``) follow upstream DensePose so its checkpoints load.
    """

    @configurable
    def __init__(
        self,
        *,
        densepose_in_features: Optional[List[str]] = None,
        decoder: Optional[nn.Module] = None,
        densepose_pooler: Optional[ROIPooler] = None,
        densepose_head: Optional[nn.Module] = None,
        densepose_predictor: Optional[nn.Module] = None,
        densepose_losses: Optional[DensePoseChartLoss] = None,
        densepose_fg_iou_threshold: float = 0.7,
        **kwargs,
    ):
        """
        Args:
            densepose_in_features: feature maps read by DensePose; None disables the branch.
            decoder: module merging those maps into the one map pooled, or None (pool them).
            densepose_pooler, densepose_head, densepose_predictor: the branch's modules.
            densepose_losses: callable (outputs, proposals) -> dict of losses.
            densepose_fg_iou_threshold: minimum IoU of a training proposal with its GT.
            kwargs: arguments of :class:`StandardROIHeads`.
        """
        super().__init__(**kwargs)
        self.densepose_on = densepose_in_features is not None
        if self.densepose_on:
            self.densepose_in_features = densepose_in_features
            if decoder is not None:  # (attribute absent otherwise, as upstream's state dict)
                self.decoder = decoder
            self.densepose_pooler = densepose_pooler
            self.densepose_head = densepose_head
            self.densepose_predictor = densepose_predictor
            self.densepose_losses = densepose_losses
            self.densepose_fg_iou_threshold = densepose_fg_iou_threshold

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        if ret.get("mask_head") is not None:
            # detectron2 builds the mask head with weight 1; the multi-task recipes weigh it
            ret["mask_head"].loss_weight = float(cfg.MODEL.ROI_MASK_HEAD.LOSS_WEIGHT)
        ret.update(cls._init_densepose_head(cfg, input_shape))
        return ret

    @classmethod
    def _init_densepose_head(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        densepose_on = bool(cfg.MODEL.get("DENSEPOSE_ON", False))
        check_supported_config(cfg, densepose_on)
        if not densepose_on:
            return {}
        head_cfg = cfg.MODEL.ROI_DENSEPOSE_HEAD
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        resolution = head_cfg.POOLER_RESOLUTION
        expected = resolution * 2 * head_cfg.UP_SCALE
        if head_cfg.HEATMAP_SIZE != expected:
            raise ValueError(
                f"MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE={head_cfg.HEATMAP_SIZE} does not match "
                f"POOLER_RESOLUTION * 2 * UP_SCALE = {resolution} * 2 * {head_cfg.UP_SCALE} "
                f"= {expected}"
            )
        decoder = build_densepose_decoder(cfg, input_shape, in_features)
        pooled_shapes = (
            [decoder_output_shape(decoder)] if decoder is not None
            else [input_shape[f] for f in in_features]
        )
        channels = {s.channels for s in pooled_shapes}
        if len(channels) != 1:
            raise ValueError(f"DensePose input features {in_features} differ in channels")
        in_channels = channels.pop()
        pooler = ROIPooler(
            output_size=resolution,
            scales=tuple(1.0 / s.stride for s in pooled_shapes),
            sampling_ratio=head_cfg.POOLER_SAMPLING_RATIO,
            pooler_type=head_cfg.POOLER_TYPE,
        )
        head = build_densepose_head(cfg, in_channels)
        return {
            "densepose_in_features": in_features,
            "decoder": decoder,
            "densepose_pooler": pooler,
            "densepose_head": head,
            "densepose_predictor": DensePoseChartPredictor(cfg, head.n_out_channels),
            "densepose_losses": DensePoseChartLoss(cfg),
            "densepose_fg_iou_threshold": head_cfg.FG_IOU_THRESHOLD,
        }

    @property
    def densepose_modules(self) -> List[nn.Module]:
        """Modules of the DensePose branch with parameters (decoder when on, head, predictor)."""
        decoder = getattr(self, "decoder", None)
        return ([decoder] if decoder is not None else []) + [
            self.densepose_head, self.densepose_predictor]

    def _densepose_features(self, features: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """The maps the DensePose pooler reads: the decoder's output, or the input levels."""
        feats = [features[f] for f in self.densepose_in_features]
        decoder = getattr(self, "decoder", None)
        return [decoder(feats)] if decoder is not None else feats

    def densepose_outputs(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]
                          ) -> DensePoseChartOutput:
        """The branch's raw outputs (logits, U, V) on given boxes, one Boxes per image; used by
        consistency training, which compares them before any post-processing."""
        return self._predict(self._densepose_features(features), boxes)

    def _predict(self, feats: List[torch.Tensor], boxes: List[Boxes]) -> DensePoseChartOutput:
        return self.densepose_predictor(self.densepose_head(self.densepose_pooler(feats, boxes)))

    def _forward_densepose(
        self, features: Dict[str, torch.Tensor], instances: List[Instances]
    ) -> Union[Dict[str, torch.Tensor], List[Instances]]:
        """Training: DensePose losses on the sampled proposals. Inference: ``pred_densepose``
        on each detection (in place; returns the instances)."""
        if not self.densepose_on:
            return {} if self.training else instances
        if self.training:
            fg, _ = select_foreground_proposals(instances, self.num_classes)
            proposals = [select_densepose_proposals(p, self.densepose_fg_iou_threshold) for p in fg]
            boxes = [p.proposal_boxes for p in proposals]
            if sum(len(b) for b in boxes) == 0:
                return DensePoseChartLoss.zero_losses(self.densepose_modules)
            outputs = self._predict(self._densepose_features(features), boxes)
            return self.densepose_losses(outputs, proposals)
        boxes = [x.pred_boxes for x in instances]
        outputs = self._predict(self._densepose_features(features), boxes)
        densepose_inference(outputs, instances)
        return instances

    def forward(self, images, features, proposals, targets=None):
        """As :meth:`StandardROIHeads.forward`, plus the DensePose branch."""
        instances, losses = super().forward(images, features, proposals, targets)
        if self.training:
            losses.update(self._forward_densepose(features, instances))
        return instances, losses

    def forward_with_given_boxes(
        self, features: Dict[str, torch.Tensor], instances: List[Instances]
    ) -> List[Instances]:
        """Mask / keypoint outputs as upstream, plus ``pred_densepose``, for given boxes."""
        instances = super().forward_with_given_boxes(features, instances)
        return self._forward_densepose(features, instances)
