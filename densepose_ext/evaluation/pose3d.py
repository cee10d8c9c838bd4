"""Evaluation of 3D-pose classification: MPJPE (mm), class accuracy and detection recall.

Detections are matched to ground-truth persons per image, greedily by score (each takes the
free GT person of highest IoU, if >= the threshold). On the matched persons that carry
``joints_3d``:

- ``mpjpe`` (headline): mean per-joint position error in mm between the predicted pose
  (``pred_pose3d``; class centre at the nominal body size) and the GT pose, both root-centred
  (and yaw-aligned when the classes are). This is the number a user of the pose gets.
- ``mpjpe_scale_norm``: the same in the classes' normalised frame, expressed in mm at the
  nominal body size: the GT pose divided by its own mean bone length, the prediction by the
  nominal one (it is made at that size; for a class centre this is the centre itself). The
  error of the pose alone, not of the person's size; its oracle is the K-means quantisation.
- ``mpjpe_oracle`` / ``mpjpe_oracle_scale_norm``: the same two for the GT's nearest class
  centre: the floor that K classes allow.
- ``mpjpe_mean_pose``: the headline MPJPE of the mean training pose (the classes file's)
  predicted for every matched person: a baseline that looks at no image.
- ``top1`` / ``top5`` (%): the GT's nearest class among the predicted 1 / 5 best classes.
- ``recall`` (%): GT persons with 3D joints that some detection matched.

Per person (``pose3d_per_person.json``, keyed by GT annotation id): whether it was detected and
its ``mpjpe``, ``mpjpe_oracle`` and ``mpjpe_mean_pose``, so that two models can be compared
on the persons both detect.
"""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils.logger import create_small_table

from densepose_ext.pose3d import NUM_JOINTS, PoseClasses, body_scale, joints_from_annotation

from ..utils import atomic_write
from .evaluator import gather_on_main

__all__ = ["METRICS_FILE", "PER_PERSON_FILE", "Pose3DEvaluator", "greedy_match", "pose3d_metrics",
           "person_errors", "evaluate_pose3d"]

logger = logging.getLogger(__name__)

METRICS_FILE = "pose3d_metrics.json"
PER_PERSON_FILE = "pose3d_per_person.json"
#: what the per-person errors measure (written with them)
PER_PERSON_PROTOCOL = ("MPJPE in mm over the 24 SMPL joints, both poses root-centred (pelvis), "
                       "the prediction at the nominal body size, the GT at its own; no alignment")
TOPK = 5


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (len(a), len(b)) of XYXY boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def greedy_match(pred_boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray,
                 iou_threshold: float = 0.5) -> np.ndarray:
    """For each detection (XYXY boxes) the index of its GT person, -1 if none: detections in
    decreasing score take the still free GT of highest IoU when that IoU >= the threshold."""
    match = np.full(len(pred_boxes), -1, dtype=np.int64)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return match
    iou = _box_iou(np.asarray(pred_boxes, np.float64), np.asarray(gt_boxes, np.float64))
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        g = int(np.argmax(iou[d]))
        if iou[d, g] >= iou_threshold:
            match[d] = g
            iou[:, g] = -1.0  # taken
    return match


def _joint_errors(gt: torch.Tensor, pred: torch.Tensor, classes: PoseClasses
                  ) -> Dict[str, torch.Tensor]:
    """(M, 24) joint errors in mm of matched pairs (GT camera-frame poses, predicted poses in
    the classes' frame), of the GT's nearest class centre and of the mean pose, plus each
    one's scale-normalised version and the GT's nearest class (M,)."""
    gt_rel = classes.canonical(gt)
    pred_rel = pred - pred[:, :1]  # predictions are in the classes' frame: root-centre only
    gt_at_nominal = gt_rel * (classes.nominal_scale / body_scale(gt_rel))[:, None, None]
    gt_class = classes.nearest(gt)[0]
    oracle = torch.as_tensor(classes.poses(gt_class.numpy()), dtype=torch.float64)
    out = {
        "mpjpe": (pred_rel - gt_rel).norm(dim=-1) * 1000.0,
        "mpjpe_scale_norm": (pred_rel - gt_at_nominal).norm(dim=-1) * 1000.0,
        "mpjpe_oracle": (oracle - gt_rel).norm(dim=-1) * 1000.0,
        "mpjpe_oracle_scale_norm": (oracle - gt_at_nominal).norm(dim=-1) * 1000.0,
        "gt_class": gt_class,
    }
    mean = classes.mean_pose_metres()
    if mean is not None:
        mean = torch.as_tensor(mean, dtype=torch.float64)
        out["mpjpe_mean_pose"] = ((mean - mean[:1])[None] - gt_rel).norm(dim=-1) * 1000.0
    return out


def _as_tensors(gt_joints, pred_poses) -> Tuple[torch.Tensor, torch.Tensor]:
    gt = torch.as_tensor(np.asarray(gt_joints, np.float64)).reshape(-1, NUM_JOINTS, 3)
    pred = torch.as_tensor(np.asarray(pred_poses, np.float64)).reshape(-1, NUM_JOINTS, 3)
    return gt, pred


def person_errors(gt_joints, pred_poses, classes: PoseClasses) -> Dict[str, np.ndarray]:
    """Per matched pair (M,) the MPJPE (mm) of the prediction, of the GT's nearest class centre
    and (when the classes know it) of the mean training pose; headline protocol."""
    gt, pred = _as_tensors(gt_joints, pred_poses)
    if len(gt) == 0:
        return {}
    err = _joint_errors(gt, pred, classes)
    return {k: err[k].mean(dim=1).numpy() for k in ("mpjpe", "mpjpe_oracle", "mpjpe_mean_pose")
            if k in err}


def pose3d_metrics(gt_joints, pred_poses, pred_topk, classes: PoseClasses,
                   num_gt: int) -> Dict[str, object]:
    """Metrics of matched pairs: GT camera-frame poses (M, 24, 3), predicted poses (M, 24, 3)
    in metres, predicted best classes (M, k) in decreasing probability; ``num_gt`` GT persons
    in all (for the recall). MPJPEs in mm, accuracies and recall in %; see the module doc."""
    gt, pred = _as_tensors(gt_joints, pred_poses)
    m = len(gt)
    topk = torch.as_tensor(np.asarray(pred_topk, np.int64)).reshape(m, -1 if m else 0)
    out: Dict[str, object] = OrderedDict(num_gt=int(num_gt), num_matched=m,
                                         recall=100.0 * m / num_gt if num_gt else float("nan"))
    mean_pose = classes.mean_pose is not None
    if m == 0:
        out.update(mpjpe=float("nan"), mpjpe_scale_norm=float("nan"),
                   mpjpe_oracle=float("nan"), mpjpe_oracle_scale_norm=float("nan"),
                   top1=float("nan"), top5=float("nan"))
        if mean_pose:
            out["mpjpe_mean_pose"] = float("nan")
        return out
    err = _joint_errors(gt, pred, classes)
    gt_class = err["gt_class"]
    out.update(
        mpjpe=float(err["mpjpe"].mean()),
        mpjpe_scale_norm=float(err["mpjpe_scale_norm"].mean()),
        mpjpe_oracle=float(err["mpjpe_oracle"].mean()),
        mpjpe_oracle_scale_norm=float(err["mpjpe_oracle_scale_norm"].mean()),
        top1=100.0 * float((topk[:, 0] == gt_class).double().mean()),
        top5=100.0 * float((topk[:, :TOPK] == gt_class[:, None]).any(dim=1).double().mean()),
    )
    if mean_pose:
        out["mpjpe_mean_pose"] = float(err["mpjpe_mean_pose"].mean())
    out["per_joint_mpjpe"] = [float(v) for v in err["mpjpe"].mean(dim=0)]
    return out


def _gt_by_image(dataset_dicts: List[dict]) -> Dict[int, dict]:
    """image id -> non-crowd GT boxes (G, 4) XYXY, joints (G, 24, 3) (NaN if absent) and
    annotation ids (G,)."""
    out = {}
    for record in dataset_dicts:
        anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = np.array([BoxMode.convert(list(a["bbox"]), a.get("bbox_mode", BoxMode.XYWH_ABS),
                                          BoxMode.XYXY_ABS) for a in anns],
                         dtype=np.float64).reshape(-1, 4)
        joints = np.full((len(anns), NUM_JOINTS, 3), np.nan)
        for i, ann in enumerate(anns):
            try:
                j = joints_from_annotation(ann)
            except ValueError as e:
                raise ValueError(f"{record.get('file_name', '?')} (image id={record['image_id']}) "
                                 f"annotation id={ann.get('id', '?')}: {e}") from None
            if j is not None:
                joints[i] = j
        out[record["image_id"]] = {"boxes": boxes, "joints": joints,
                                   "ids": [a.get("id") for a in anns]}
    return out


def _person_key(image_id, ids: Optional[Sequence], index: int) -> str:
    """A GT person's key: its annotation id, else ``<image id>/<index among the image's GT>``."""
    ann_id = ids[index] if ids is not None else None
    return str(ann_id) if ann_id is not None else f"{image_id}/{index}"


def evaluate_pose3d(gt: Dict[int, dict], predictions: List[dict], classes: PoseClasses,
                    iou_threshold: float = 0.5) -> Dict[str, object]:
    """Metrics of per-image predictions ({image_id, boxes XYXY, scores, poses, topk}) against
    ``gt`` (image id -> {boxes XYXY, joints, optional annotation ids}), over the predicted
    images; ``per_person`` holds every GT person with joints by annotation id: image_id,
    detected, and when detected its mpjpe, mpjpe_oracle (and mpjpe_mean_pose) in mm."""
    gt_j, pred_p, pred_k, keys = [], [], [], []
    per_person: Dict[str, dict] = OrderedDict()
    num_gt = 0
    for p in predictions:
        g = gt.get(p["image_id"])
        if g is None:
            raise KeyError(f"prediction for image id={p['image_id']}, which the dataset lacks")
        has_pose = np.isfinite(np.asarray(g["joints"])).all(axis=(1, 2))
        num_gt += int(has_pose.sum())
        for i in np.flatnonzero(has_pose):
            key = _person_key(p["image_id"], g.get("ids"), int(i))
            if key in per_person:
                raise ValueError(f"GT annotation id={key} occurs twice (image ids "
                                 f"{per_person[key]['image_id']} and {p['image_id']})")
            per_person[key] = {"image_id": p["image_id"], "detected": False}
        match = greedy_match(p["boxes"], p["scores"], g["boxes"], iou_threshold)
        matched = match >= 0
        matched[matched] = has_pose[match[matched]]
        det = np.flatnonzero(matched)
        if not len(det):  # images without a match add nothing (their width of topk may differ)
            continue
        gt_j.append(g["joints"][match[det]])
        pred_p.append(np.asarray(p["poses"]).reshape(-1, NUM_JOINTS, 3)[det])
        pred_k.append(np.asarray(p["topk"]).reshape(len(p["boxes"]), -1)[det])
        keys += [_person_key(p["image_id"], g.get("ids"), int(i)) for i in match[det]]
    k = max((x.shape[1] for x in pred_k), default=1)
    gt_all = np.concatenate(gt_j) if gt_j else np.zeros((0, NUM_JOINTS, 3))
    pred_all = np.concatenate(pred_p) if pred_p else np.zeros((0, NUM_JOINTS, 3))
    out = pose3d_metrics(gt_all, pred_all,
                         np.concatenate(pred_k) if pred_k else np.zeros((0, k), np.int64),
                         classes, num_gt)
    errors = person_errors(gt_all, pred_all, classes)
    for n, key in enumerate(keys):
        per_person[key].update(detected=True, **{m: float(v[n]) for m, v in errors.items()})
    out["per_person"] = per_person
    return out


class Pose3DEvaluator(DatasetEvaluator):
    """detectron2 evaluator of ``pred_pose3d`` / ``pred_pose3d_scores`` against ``joints_3d``.

    Returns ``{"pose3d": {mpjpe, mpjpe_scale_norm, mpjpe_oracle, mpjpe_oracle_scale_norm,
    mpjpe_mean_pose, top1, top5, recall, num_gt, num_matched}}`` and writes them (plus per-joint
    MPJPE and what defines the classes) to ``output_dir/pose3d_metrics.json``, and every GT
    person's errors by annotation id to ``output_dir/pose3d_per_person.json``.
    """

    def __init__(self, dataset_name: str, classes: PoseClasses, output_dir: Optional[str] = None,
                 distributed: bool = True, iou_threshold: float = 0.5,
                 classes_file: Optional[str] = None):
        self._dataset_name = dataset_name
        self._classes = classes
        self._classes_file = classes_file
        self._output_dir = output_dir
        self._distributed = distributed
        self._iou_threshold = float(iou_threshold)
        self._predictions: List[dict] = []

    def reset(self) -> None:
        self._predictions = []

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            inst = out["instances"].to("cpu") if "instances" in out else None
            record = {"image_id": inp["image_id"], "boxes": np.zeros((0, 4)),
                      "scores": np.zeros(0), "poses": np.zeros((0, NUM_JOINTS, 3)),
                      "topk": np.zeros((0, 1), np.int64)}
            if inst is not None and len(inst):
                if not (inst.has("pred_pose3d") and inst.has("pred_pose3d_scores")):
                    raise ValueError(f"image id={inp['image_id']}: predicted instances carry no "
                                     "pred_pose3d / pred_pose3d_scores (MODEL.POSE3D_ON with "
                                     "Pose3DClassROIHeads?)")
                probs = inst.pred_pose3d_scores
                k = min(TOPK, probs.shape[1])
                record.update(
                    boxes=inst.pred_boxes.tensor.numpy().astype(np.float64),
                    scores=inst.scores.numpy().astype(np.float64),
                    poses=inst.pred_pose3d.numpy().astype(np.float32),
                    topk=torch.topk(probs, k, dim=1).indices.numpy(),
                )
            self._predictions.append(record)

    def evaluate(self):
        predictions = gather_on_main(self._predictions, self._distributed)
        if predictions is None:
            return {}
        if not predictions:
            logger.warning("[Pose3DEvaluator] no predictions were processed")
            return {}
        gt = _gt_by_image(DatasetCatalog.get(self._dataset_name))
        metrics = evaluate_pose3d(gt, predictions, self._classes, self._iou_threshold)
        if not metrics["num_gt"]:
            raise ValueError(f"dataset {self._dataset_name!r} has no person with 'joints_3d': "
                             "3D-pose evaluation needs them")
        per_joint = metrics.pop("per_joint_mpjpe", None)
        per_person = metrics.pop("per_person")
        logger.info("3D-pose evaluation of %s (%d images, K=%d, IoU >= %.2f; MPJPE in mm, "
                    "headline 'mpjpe' = root-centred at the nominal body size):\n%s",
                    self._dataset_name, len(predictions), self._classes.num_classes,
                    self._iou_threshold, create_small_table(dict(metrics)))
        if self._output_dir:
            payload = OrderedDict(
                dataset=self._dataset_name,
                iou_threshold=self._iou_threshold,
                classes=OrderedDict(file=self._classes_file, k=self._classes.num_classes,
                                    digest=self._classes.digest,
                                    nominal_scale_m=self._classes.nominal_scale,
                                    align_yaw=self._classes.align_yaw),
                headline="mpjpe",
                metrics=_json_safe(dict(metrics)),
                per_joint_mpjpe=per_joint,
            )
            os.makedirs(self._output_dir, exist_ok=True)
            with atomic_write(os.path.join(self._output_dir, METRICS_FILE), "w") as f:
                json.dump(payload, f, indent=2)
            persons = OrderedDict(dataset=self._dataset_name, iou_threshold=self._iou_threshold,
                                  classes_digest=self._classes.digest,
                                  protocol=PER_PERSON_PROTOCOL, persons=per_person)
            with atomic_write(os.path.join(self._output_dir, PER_PERSON_FILE), "w") as f:
                json.dump(persons, f)
        return OrderedDict(pose3d=metrics)


def _json_safe(d: dict) -> dict:
    """nan -> None so the file is strict json."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}
