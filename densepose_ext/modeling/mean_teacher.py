"""Mean teacher for R-CNN DensePose models: a student trained on labelled images plus a
consistency cost to an exponential-moving-average teacher on every image of the batch.

:class:`MeanTeacherModel` wraps the student (the model a config builds) and a teacher of the
same architecture. In training, one forward computes:

- the student's supervised losses on the batch's labelled images (those with ``instances``;
  an unlabelled dataset's images carry none);
- the teacher's detections on a differently augmented view of every image (horizontal flip,
  scale jitter, colour noise, all applied to the student's view so the mapping between the two
  is known exactly); its boxes, mapped into the student's view, are the ROIs on which the
  student's box class probabilities, DensePose part probabilities and U/V, keypoint heatmaps
  and mask probabilities are pulled to the teacher's (:mod:`.consistency`), the teacher's
  box-frame outputs flipped back where its view was mirrored;
- the consistency weight ramps up with the paper's sigmoid-shaped schedule.

The teacher takes no gradients; :func:`.consistency.ema_update` moves it after every optimizer
step (``densepose_ext.engine.mean_teacher.MeanTeacherHook``). The wrapper's ``state_dict`` is
the student's, so checkpoints keep the plain model's layout; the trainer saves the teacher
beside it. In eval mode the wrapper is the student (``.teacher`` evaluates the teacher).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
from detectron2.data.detection_utils import create_keypoint_hflip_indices
from detectron2.structures import Boxes, ImageList
from detectron2.utils.events import get_event_storage
from torch import nn
from torch.nn import functional as F

from densepose_ext.structures import DensePoseChartOutput

from .consistency import (box_consistency, densepose_consistency, keypoint_consistency,
                          mask_consistency, sigmoid_rampup)
from .fcn.meta_arch import transform_data_loader
from .fcn.multiscale import flip_back, to_log_probs
from .test_time_augmentation import flip_keypoint_heatmaps

__all__ = ["ViewTransform", "MeanTeacherModel", "head_outputs"]


@dataclass
class ViewTransform:
    """How a teacher view was made from a student view: mirrored first, then resized."""

    flip: bool
    student_hw: Tuple[int, int]
    teacher_hw: Tuple[int, int]

    def boxes_to_student(self, boxes: torch.Tensor) -> torch.Tensor:
        """(R, 4) XYXY boxes of the teacher view -> the same image content in the student's."""
        (hs, ws), (ht, wt) = self.student_hw, self.teacher_hw
        out = boxes * boxes.new_tensor([ws / wt, hs / ht, ws / wt, hs / ht])
        if self.flip:
            out = torch.stack([ws - out[:, 2], out[:, 1], ws - out[:, 0], out[:, 3]], dim=1)
        return out


def make_teacher_view(image: torch.Tensor, flip: bool, scale: float, gain: torch.Tensor,
                      offset: torch.Tensor) -> Tuple[torch.Tensor, ViewTransform]:
    """(C, H, W) student image (0-255) -> (teacher view, its transform): mirrored if
    ``flip``, resized by ``scale``, then per channel ``x * gain + offset``, clipped to 0-255."""
    h, w = image.shape[-2:]
    x = image.float()
    if flip:
        x = x.flip(-1)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size != (h, w):
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
    x = (x * gain.view(-1, 1, 1) + offset.view(-1, 1, 1)).clamp(0.0, 255.0)
    return x, ViewTransform(flip, (h, w), size)


def head_outputs(model, features: Dict[str, torch.Tensor], boxes: List[Boxes]
                 ) -> Dict[str, object]:
    """Box-frame outputs of every enabled ROI head of ``model`` on given boxes (one Boxes per
    image): ``cls_logits`` (R, K+1), ``mask_logits``, ``keypoint_logits`` and ``densepose``
    (:class:`DensePoseChartOutput`), as the heads compute them before any post-processing."""
    heads = model.roi_heads
    out: Dict[str, object] = {}
    feats = [features[f] for f in heads.box_in_features]
    out["cls_logits"] = heads.box_predictor(heads.box_head(heads.box_pooler(feats, boxes)))[0]
    if getattr(heads, "mask_on", False):
        x = heads.mask_pooler([features[f] for f in heads.mask_in_features], boxes)
        out["mask_logits"] = heads.mask_head.layers(x)
    if getattr(heads, "keypoint_on", False):
        x = heads.keypoint_pooler([features[f] for f in heads.keypoint_in_features], boxes)
        out["keypoint_logits"] = heads.keypoint_head.layers(x)
    if getattr(heads, "densepose_on", False):
        out["densepose"] = heads.densepose_outputs(features, boxes)
    return out


def _flip_rows(values: torch.Tensor, flipped: torch.Tensor, mirrored: torch.Tensor
               ) -> torch.Tensor:
    """Rows of ``mirrored`` where ``flipped`` (R,) is set, else rows of ``values``."""
    return torch.where(flipped.view(-1, *([1] * (values.dim() - 1))), mirrored, values)


class MeanTeacherModel(nn.Module):
    """Student + EMA teacher of one R-CNN DensePose architecture (see the module docstring).

    Args:
        cfg: the config (``MEAN_TEACHER.*`` keys, keypoint flip map from ``DATASETS.TRAIN``).
        student: the model ``build_model(cfg)`` returned; the teacher starts as its copy.
    """

    def __init__(self, cfg, student: nn.Module):
        super().__init__()
        heads = getattr(student, "roi_heads", None)
        if heads is None or not hasattr(student, "proposal_generator"):
            raise ValueError("MEAN_TEACHER needs an R-CNN meta-architecture, got "
                             f"{type(student).__name__}")
        if getattr(heads, "densepose_on", False) and not hasattr(heads, "densepose_outputs"):
            raise ValueError(f"MEAN_TEACHER: ROI heads {type(heads).__name__} cannot give "
                             "DensePose outputs on given boxes (use DensePoseROIHeads)")
        mt = cfg.MEAN_TEACHER
        self.student = student
        self.teacher = copy.deepcopy(student)
        self.teacher.requires_grad_(False)
        self.weights = {"box": mt.BOX_WEIGHT, "mask": mt.MASK_WEIGHT,
                        "keypoint": mt.KEYPOINT_WEIGHT, "densepose": mt.DENSEPOSE_WEIGHT}
        self.max_weight = float(mt.CONSISTENCY_WEIGHT)
        self.rampup_iters = int(mt.RAMPUP_ITERS)
        self.score_thresh = float(mt.TEACHER_SCORE_THRESH)
        self.max_boxes = int(mt.TEACHER_MAX_BOXES)
        self.flip_prob = float(mt.VIEW.FLIP_PROB)
        self.scale_range = tuple(float(s) for s in mt.VIEW.SCALE_RANGE)
        self.color_noise = float(mt.VIEW.COLOR_NOISE)
        self.keypoint_flip_indices = None
        if getattr(heads, "keypoint_on", False):
            self.keypoint_flip_indices = create_keypoint_hflip_indices(cfg.DATASETS.TRAIN[:1])
        self._transform_data_loader = transform_data_loader(cfg)
        self._transform_data = None

    # -- the student's face -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.student.device

    def state_dict(self, *args, **kwargs):
        """The student's state dict (checkpoints keep the plain model's layout)."""
        return self.student.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True):
        """Load the student, and start the teacher from it (a checkpoint that carries a
        teacher loads that one next: the trainer registers it as a checkpointable)."""
        result = self.student.load_state_dict(state_dict, strict)
        self.teacher.load_state_dict(self.student.state_dict())
        return result

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher always predicts, never trains
        return self

    @property
    def transform_data(self):
        if self._transform_data is None:
            self._transform_data = self._transform_data_loader()
        return self._transform_data

    def forward(self, batched_inputs: List[dict]):
        if not self.training:
            return self.student(batched_inputs)
        return self.training_losses(batched_inputs)

    # -- training ---------------------------------------------------------------------------
    def consistency_weight(self, step: int) -> float:
        return self.max_weight * sigmoid_rampup(step, self.rampup_iters)

    def training_losses(self, batched_inputs: List[dict]) -> Dict[str, torch.Tensor]:
        """Supervised losses on the labelled images + weighted consistency costs on all."""
        student = self.student
        labelled = [i for i, d in enumerate(batched_inputs) if "instances" in d]
        if not labelled:
            raise ValueError("MEAN_TEACHER: a training batch has no labelled image; give the "
                             "labelled dataset a share of every batch (DATASETS.TRAIN_RATIOS)")
        images = student.preprocess_image(batched_inputs)
        features = student.backbone(images.tensor)
        sub_images = ImageList(images.tensor[labelled], [images.image_sizes[i] for i in labelled])
        sub_features = {k: v[labelled] for k, v in features.items()}
        gt = [batched_inputs[i]["instances"].to(self.device) for i in labelled]
        proposals, losses = student.proposal_generator(sub_images, sub_features, gt)
        _, detector_losses = student.roi_heads(sub_images, sub_features, proposals, gt)
        losses = {**losses, **detector_losses}

        boxes, targets = self.teacher_targets(batched_inputs)
        weight = self.consistency_weight(get_event_storage().iter)
        costs = self.consistency_costs(head_outputs(student, features, boxes), targets)
        losses.update({f"loss_consistency_{k}": weight * v for k, v in costs.items()})
        return losses

    def consistency_costs(self, student: Dict[str, object], teacher: Dict[str, object]
                          ) -> Dict[str, torch.Tensor]:
        """Per-task costs (each scaled by its ``MEAN_TEACHER.*_WEIGHT``)."""
        costs = {"box": box_consistency(student["cls_logits"], teacher["cls_logits"])}
        if "mask_logits" in student:
            costs["mask"] = mask_consistency(student["mask_logits"], teacher["mask_logits"])
        if "keypoint_logits" in student:
            costs["keypoint"] = keypoint_consistency(student["keypoint_logits"],
                                                     teacher["keypoint_logits"])
        out = {k: self.weights[k] * v for k, v in costs.items()}
        if "densepose" in student:
            for k, v in densepose_consistency(student["densepose"], teacher["densepose"]).items():
                out[f"densepose_{k}"] = self.weights["densepose"] * v
        return out

    def _random_views(self, batched_inputs: List[dict]):
        views, transforms = [], []
        lo, hi = self.scale_range
        for d in batched_inputs:
            image = d["image"].to(self.device)
            flip = bool(torch.rand(()) < self.flip_prob)
            scale = float(lo + (hi - lo) * torch.rand(()))
            c = image.shape[0]
            gain = 1.0 + self.color_noise * torch.randn(c, device=self.device)
            offset = 127.5 * self.color_noise * torch.randn(c, device=self.device)
            view, tfm = make_teacher_view(image, flip, scale, gain, offset)
            views.append({"image": view, "height": tfm.teacher_hw[0],
                          "width": tfm.teacher_hw[1]})
            transforms.append(tfm)
        return views, transforms

    @torch.no_grad()
    def teacher_targets(self, batched_inputs: List[dict]
                        ) -> Tuple[List[Boxes], Dict[str, object]]:
        """The teacher's detections on its views, as student-view boxes (one Boxes per image),
        and its box-frame outputs on them in the student's orientation."""
        teacher = self.teacher
        views, transforms = self._random_views(batched_inputs)
        images = teacher.preprocess_image(views)
        features = teacher.backbone(images.tensor)
        proposals, _ = teacher.proposal_generator(images, features, None)
        detections = teacher.roi_heads._forward_box(features, proposals)
        t_boxes, s_boxes, flipped = [], [], []
        for det, tfm in zip(detections, transforms):
            keep = det.scores >= self.score_thresh
            det = det[keep][: self.max_boxes]
            t_boxes.append(det.pred_boxes)
            s_boxes.append(Boxes(tfm.boxes_to_student(det.pred_boxes.tensor)))
            flipped.append(torch.full((len(det),), tfm.flip, dtype=torch.bool, device=self.device))
        out = head_outputs(teacher, features, t_boxes)
        flipped = torch.cat(flipped) if flipped else torch.zeros(0, dtype=torch.bool)
        if bool(flipped.any()):
            out = self._flip_back(out, flipped)
        return s_boxes, out

    def _flip_back(self, out: Dict[str, object], flipped: torch.Tensor) -> Dict[str, object]:
        """Outputs of ROIs seen mirrored -> the orientation of the student's view."""
        if "mask_logits" in out:
            m = out["mask_logits"]
            out["mask_logits"] = _flip_rows(m, flipped, m.flip(-1))
        if "keypoint_logits" in out:
            k = out["keypoint_logits"]
            mirrored = flip_keypoint_heatmaps(k, self.keypoint_flip_indices)
            out["keypoint_logits"] = _flip_rows(k, flipped, mirrored)
        if "densepose" in out:
            dp = to_log_probs(out["densepose"])
            mirrored = flip_back(dp, self.transform_data)
            out["densepose"] = DensePoseChartOutput(**{
                key: _flip_rows(getattr(dp, key), flipped, getattr(mirrored, key))
                for key in ("coarse_segm", "fine_segm", "u", "v")})
        return out
