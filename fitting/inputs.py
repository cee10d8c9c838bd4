"""The 2D keypoints the fit starts from: a dataset's ground truth or a keypoint model's results.

Both become :class:`PersonKeypoints` in continuous pixel coordinates (COCO stores integer pixel
indices; like detectron2's loaders we add 0.5) with a weight per keypoint:

- ground truth (``"gt"``): every non-crowd person of the dataset's records; a labelled keypoint
  (v = 1 or 2) weighs 1, an unlabelled one 0;
- predictions (a ``coco_instances_results.json`` of detectron2's COCOEvaluator run with a
  keypoint model): detections with ``score >= min_score``; a keypoint weighs its confidence
  divided by the highest of its person (detectron2's scores are not probabilities).

A person with fewer than ``MIN_KEYPOINTS`` weighted keypoints cannot be fitted and is counted
as skipped. A results file that cannot be read or holds a malformed record is a
:class:`FittingError` naming the file and the record.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from densepose_ext.body.keypoints import COCO_KEYPOINT_NAMES

__all__ = ["FittingError", "MIN_KEYPOINTS", "PersonKeypoints", "gt_keypoints",
           "predicted_keypoints"]

NUM_KEYPOINTS = len(COCO_KEYPOINT_NAMES)
#: persons with fewer weighted keypoints are not fitted
MIN_KEYPOINTS = 3


class FittingError(ValueError):
    """Bad input or output directory of the model-fitting baseline; names the file / record."""


@dataclass
class PersonKeypoints:
    """One person to fit: keypoints (17, 2) continuous pixels, weights (17,), box XYWH,
    a score, where it came from (annotation id or result record index) and, for ground-truth
    persons that carry them, the 24 SMPL joints in the true camera frame (metres)."""

    image_id: object
    source: int
    keypoints: np.ndarray
    weights: np.ndarray
    bbox: Tuple[float, float, float, float]
    score: float
    joints_3d: Optional[np.ndarray] = None

    @property
    def num_keypoints(self) -> int:
        return int((self.weights > 0).sum())


def _group(persons: List[PersonKeypoints], image_ids: Sequence) -> Tuple[Dict, int]:
    out: Dict[object, List[PersonKeypoints]] = {i: [] for i in image_ids}
    skipped = 0
    for p in persons:
        if p.num_keypoints < MIN_KEYPOINTS:
            skipped += 1
        else:
            out[p.image_id].append(p)
    return out, skipped


def gt_keypoints(dataset_dicts: Sequence[dict]) -> Tuple[Dict[object, List[PersonKeypoints]], int]:
    """Ground-truth persons of detectron2 dataset dicts (keypoints already continuous, as the
    project's loader gives them), grouped by image id; and how many were skipped."""
    persons = []
    for record in dataset_dicts:
        for ann in record.get("annotations", []):
            if ann.get("iscrowd", 0) or "keypoints" not in ann:
                continue
            kp = np.asarray(ann["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
            joints = ann.get("joints_3d")
            persons.append(PersonKeypoints(
                image_id=record["image_id"], source=int(ann.get("id", len(persons))),
                keypoints=kp[:, :2].copy(), weights=(kp[:, 2] > 0).astype(np.float64),
                bbox=tuple(float(c) for c in ann["bbox"]), score=1.0,
                joints_3d=None if joints is None else np.asarray(joints, np.float64)))
    return _group(persons, [r["image_id"] for r in dataset_dicts])


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_record(path: Path, index: int, rec, known_images) -> None:
    where = f"{path}: record {index}"
    if not isinstance(rec, dict):
        raise FittingError(f"{where}: expected an object, got {type(rec).__name__}")
    where += f" (image_id={rec.get('image_id', '?')!r})"
    for key in ("image_id", "keypoints", "bbox", "score"):
        if key not in rec:
            raise FittingError(f"{where}: missing {key!r} (is this a keypoint model's "
                               "coco_instances_results.json?)")
    if rec["image_id"] not in known_images:
        raise FittingError(f"{where}: image id is not in the dataset")
    kp = rec["keypoints"]
    if not isinstance(kp, list) or len(kp) != 3 * NUM_KEYPOINTS:
        n = len(kp) if isinstance(kp, list) else type(kp).__name__
        raise FittingError(f"{where}: keypoints must be a list of {3 * NUM_KEYPOINTS} numbers "
                           f"(17 x [x, y, score]), got {n}")
    bad = [k for k, v in enumerate(kp) if not _number(v)]
    if bad:
        raise FittingError(f"{where}: keypoints[{bad[0]}] is {kp[bad[0]]!r}, not a finite number")
    box = rec["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_number(c) for c in box):
        raise FittingError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {box!r}")
    if not _number(rec["score"]):
        raise FittingError(f"{where}: score must be a finite number, got {rec['score']!r}")


def predicted_keypoints(path, dataset_dicts: Sequence[dict], min_score: float,
                        all_image_ids: Optional[Sequence] = None
                        ) -> Tuple[Dict[object, List[PersonKeypoints]], int]:
    """Detections of a keypoint results file for the images of ``dataset_dicts`` with
    ``score >= min_score``, grouped by image id; and how many were skipped. Every record is
    checked, also those below the score or of other images, whose ids must be in
    ``all_image_ids`` (the whole dataset when fitting a part of it; default: those of
    ``dataset_dicts``)."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise FittingError(f"{path}: cannot read keypoint results ({e})") from None
    if not isinstance(records, list):
        raise FittingError(f"{path}: expected a list of result records, got "
                           f"{type(records).__name__}")
    wanted = {r["image_id"] for r in dataset_dicts}
    known = wanted if all_image_ids is None else set(all_image_ids)
    persons = []
    for index, rec in enumerate(records):
        _check_record(path, index, rec, known)
        if rec["image_id"] not in wanted or rec["score"] < min_score:
            continue
        kp = np.asarray(rec["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
        conf = np.clip(kp[:, 2], 0.0, None)
        weights = conf / conf.max() if conf.max() > 0 else conf
        persons.append(PersonKeypoints(
            image_id=rec["image_id"], source=index, keypoints=kp[:, :2] + 0.5,
            weights=weights, bbox=tuple(float(c) for c in rec["bbox"]),
            score=float(rec["score"])))
    return _group(persons, [r["image_id"] for r in dataset_dicts])
