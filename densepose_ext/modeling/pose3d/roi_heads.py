"""ROI heads with a K-way 3D-pose classification branch (Rogez & Schmid's pose classifier).

Every person box gets the class of its 3D pose among K K-means centres of normalised training
poses (:mod:`.classes`); the class-centre pose is the 3D pose estimate. The heads extend
:class:`DensePoseROIHeads`, so box, mask, keypoint and (optionally) DensePose branches keep
working alongside.
"""
from __future__ import annotations

from typing import Dict, List

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Boxes, Instances
from detectron2.structures.boxes import matched_pairwise_iou
from detectron2.utils.events import get_event_storage
from torch import nn
from torch.nn import functional as F

from densepose_ext.pose3d import PoseClasses

from ..roi_heads import DensePoseROIHeads
from .class_sets import load_or_build_pose_classes
from .head import build_pose3d_head

__all__ = ["Pose3DClassROIHeads", "PoseClassCodebook", "pose3d_proposal_mask"]


def pose3d_proposal_mask(proposals: Instances, fg_iou_threshold: float) -> torch.Tensor:
    """Bool (R,): proposals whose matched GT person has a 3D pose and IoU >= the threshold."""
    device = proposals.proposal_boxes.device
    if len(proposals) == 0 or not proposals.has("gt_pose3d"):
        return torch.zeros(len(proposals), dtype=torch.bool, device=device)
    iou = matched_pairwise_iou(proposals.proposal_boxes, proposals.gt_boxes)
    has_pose = torch.isfinite(proposals.gt_pose3d).flatten(1).all(dim=1).to(device)
    return has_pose & (iou >= fg_iou_threshold)


class PoseClassCodebook(nn.Module):
    """The class centres as buffers: GT pose -> class (training target), class -> pose.

    The centres come from the classes file, not from checkpoints; a checkpoint stores the
    classes' digest and loading one trained with other classes raises an error instead of
    silently pairing its logits with the wrong poses.
    """

    def __init__(self, classes: PoseClasses):
        super().__init__()
        self.classes = classes
        self.register_buffer("centres", torch.as_tensor(classes.centres), persistent=False)
        digest = int(classes.digest[:15], 16)  # 60 bits: fits an int64 buffer
        self.register_buffer("digest", torch.tensor(digest, dtype=torch.int64))

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    def targets(self, gt_joints: torch.Tensor) -> torch.Tensor:
        """Nearest class (R,) of camera-frame GT poses (R, 24, 3)."""
        return self.classes.nearest(gt_joints.to(self.centres.device))[0]

    def decode(self, index: torch.Tensor) -> torch.Tensor:
        """Class-centre poses (R, 24, 3) in metres (root-centred, nominal body size)."""
        return self.centres[index] * self.classes.nominal_scale

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "digest")
        if saved is not None and int(saved) != int(self.digest):
            raise ValueError(
                "checkpoint was trained with other 3D-pose classes than the file the config "
                f"names (digest {int(saved):x} vs {int(self.digest):x}); set "
                "MODEL.ROI_POSE3D_HEAD.CLASSES_FILE to the training run's classes")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@ROI_HEADS_REGISTRY.register()
class Pose3DClassROIHeads(DensePoseROIHeads):
    """:class:`DensePoseROIHeads` plus a 3D-pose class branch.

    Training: proposals matched (IoU >= FG_IOU_THRESHOLD) to a GT person with ``gt_pose3d``
    are pooled, classified, and trained by cross-entropy against the nearest class of the GT
    pose (``loss_pose3d`` x LOSS_WEIGHT). Inference adds to every detection
    ``pred_pose3d_class`` (R,) int64, ``pred_pose3d_scores`` (R, K) class probabilities and
    ``pred_pose3d`` (R, 24, 3), the class-centre pose in metres, root (pelvis) at the origin,
    in the camera-frame orientation (yaw-aligned if the classes are).
    """

    @configurable
    def __init__(
        self,
        *,
        pose3d_in_features: List[str],
        pose3d_pooler: ROIPooler,
        pose3d_head: nn.Module,
        pose3d_codebook: PoseClassCodebook,
        pose3d_loss_weight: float = 1.0,
        pose3d_fg_iou_threshold: float = 0.7,
        **kwargs,
    ):
        """
        Args:
            pose3d_in_features: feature maps pooled for the branch.
            pose3d_pooler, pose3d_head: the branch's ROI pooler and logits head.
            pose3d_codebook: the class centres.
            pose3d_loss_weight: multiplier of the cross-entropy.
            pose3d_fg_iou_threshold: minimum IoU of a training proposal with its GT person.
            kwargs: arguments of :class:`DensePoseROIHeads`.
        """
        super().__init__(**kwargs)
        self.pose3d_in_features = pose3d_in_features
        self.pose3d_pooler = pose3d_pooler
        self.pose3d_head = pose3d_head
        self.pose3d_codebook = pose3d_codebook
        self.pose3d_loss_weight = pose3d_loss_weight
        self.pose3d_fg_iou_threshold = pose3d_fg_iou_threshold

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        if not cfg.MODEL.POSE3D_ON:
            raise ValueError("Pose3DClassROIHeads needs MODEL.POSE3D_ON True (it also makes the "
                             "data mapper provide gt_pose3d)")
        head = cfg.MODEL.ROI_POSE3D_HEAD
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"3D-pose input features {in_features} differ in channels")
        resolution = head.POOLER_RESOLUTION
        pooler = ROIPooler(
            output_size=resolution,
            scales=tuple(1.0 / input_shape[f].stride for f in in_features),
            sampling_ratio=head.POOLER_SAMPLING_RATIO,
            pooler_type=head.POOLER_TYPE,
        )
        codebook = PoseClassCodebook(load_or_build_pose_classes(cfg))
        shape = ShapeSpec(channels=channels.pop(), height=resolution, width=resolution)
        ret.update(
            pose3d_in_features=in_features,
            pose3d_pooler=pooler,
            pose3d_head=build_pose3d_head(cfg, shape, codebook.num_classes),
            pose3d_codebook=codebook,
            pose3d_loss_weight=float(head.LOSS_WEIGHT),
            pose3d_fg_iou_threshold=float(head.FG_IOU_THRESHOLD),
        )
        return ret

    def _logits(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        feats = [features[f] for f in self.pose3d_in_features]
        return self.pose3d_head(self.pose3d_pooler(feats, boxes))

    def _pose3d_loss(self, features: Dict[str, torch.Tensor], proposals: List[Instances]
                     ) -> Dict[str, torch.Tensor]:
        fg, _ = select_foreground_proposals(proposals, self.num_classes)
        fg = [p[pose3d_proposal_mask(p, self.pose3d_fg_iou_threshold)] for p in fg]
        if sum(len(p) for p in fg) == 0:
            # keep the branch in the graph so distributed replicas stay in step
            zero = sum(p.sum() for p in self.pose3d_head.parameters()) * 0.0
            return {"loss_pose3d": zero}
        logits = self._logits(features, [p.proposal_boxes for p in fg])
        targets = self.pose3d_codebook.targets(cat([p.gt_pose3d for p in fg]))
        loss = F.cross_entropy(logits, targets.to(logits.device))
        with torch.no_grad():
            accuracy = (logits.argmax(dim=1) == targets).float().mean()
        get_event_storage().put_scalar("pose3d/accuracy", float(accuracy))
        return {"loss_pose3d": loss * self.pose3d_loss_weight}

    def _pose3d_inference(self, features: Dict[str, torch.Tensor], instances: List[Instances]
                          ) -> List[Instances]:
        boxes = [x.pred_boxes for x in instances]
        k = self.pose3d_codebook.num_classes
        if sum(len(b) for b in boxes):
            probs = F.softmax(self._logits(features, boxes), dim=1)
        else:
            device = self.pose3d_codebook.centres.device
            probs = torch.zeros((0, k), device=device)
        index = probs.argmax(dim=1)
        poses = self.pose3d_codebook.decode(index.to(self.pose3d_codebook.centres.device))
        counts = [len(b) for b in boxes]
        for inst, p, i, pose in zip(instances, probs.split(counts), index.split(counts),
                                    poses.split(counts)):
            inst.pred_pose3d_scores = p
            inst.pred_pose3d_class = i
            inst.pred_pose3d = pose
        return instances

    def forward(self, images, features, proposals, targets=None):
        """As :class:`DensePoseROIHeads`, plus ``loss_pose3d`` in training."""
        instances, losses = super().forward(images, features, proposals, targets)
        if self.training:
            losses.update(self._pose3d_loss(features, instances))
        return instances, losses

    def forward_with_given_boxes(self, features: Dict[str, torch.Tensor],
                                 instances: List[Instances]) -> List[Instances]:
        """Mask / keypoint / DensePose outputs as the parent, plus the 3D-pose class fields."""
        instances = super().forward_with_given_boxes(features, instances)
        return self._pose3d_inference(features, instances)
