"""Pose class sets of registered datasets, built from their persons' 3D joints: for a config
(``MODEL.ROI_POSE3D_HEAD``) or by ``python tools/build_pose_classes.py``."""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.utils import comm

from densepose_ext.pose3d import PoseClasses, build_pose_classes, joints_from_annotation

__all__ = ["BUILD_KEYS", "build_class_set", "classes_file_for_cfg", "dataset_poses",
           "load_or_build_pose_classes"]

logger = logging.getLogger(__name__)

#: the provenance entries that say how a class set was built (same entries: same set)
BUILD_KEYS = ("datasets", "k", "seed", "mirror", "align_yaw", "max_iter")


def dataset_poses(dataset_names: Sequence[str]) -> Tuple[np.ndarray, Dict[str, int]]:
    """Camera-frame poses (N, 24, 3) of every non-crowd person with ``joints_3d`` in the
    registered datasets, and per-dataset counts (persons without 3D joints are counted)."""
    poses: List[np.ndarray] = []
    counts: Dict[str, int] = {}
    for name in dataset_names:
        found = missing = 0
        for record in DatasetCatalog.get(name):
            for ann in record.get("annotations", []):
                if ann.get("iscrowd", 0):
                    continue
                try:
                    joints = joints_from_annotation(ann)
                except ValueError as e:
                    raise ValueError(
                        f"dataset {name}: {record.get('file_name', '?')} (image id="
                        f"{record.get('image_id', '?')}) annotation id={ann.get('id', '?')}: {e}"
                    ) from None
                if joints is None:
                    missing += 1
                else:
                    poses.append(joints)
                    found += 1
        if missing:
            logger.info("dataset %s: %d persons without 3D joints are not used for pose classes",
                        name, missing)
        counts[name] = found
    if not poses:
        raise ValueError(f"datasets {list(dataset_names)} hold no person with 3D joints "
                         "('joints_3d'): pose classes cannot be built")
    return np.stack(poses), counts


def build_class_set(datasets: Sequence[str], k: int, seed: int = 0, mirror: bool = True,
                    align_yaw: bool = False, max_iter: int = 100) -> PoseClasses:
    """K-means pose classes of the registered ``datasets`` (see :func:`build_pose_classes`)."""
    poses, counts = dataset_poses(datasets)
    logger.info("Building %d pose classes from %d poses of %s (mirror=%s, align_yaw=%s)",
                k, len(poses), ", ".join(datasets), mirror, align_yaw)
    return build_pose_classes(poses, k, seed=seed, mirror=mirror, align_yaw=align_yaw,
                              max_iter=max_iter,
                              provenance={"datasets": list(datasets), "dataset_poses": counts})


def classes_file_for_cfg(cfg) -> str:
    """MODEL.ROI_POSE3D_HEAD.CLASSES_FILE, or OUTPUT_DIR/pose3d_classes.npz when it is empty."""
    path = cfg.MODEL.ROI_POSE3D_HEAD.CLASSES_FILE
    return path if path else os.path.join(cfg.OUTPUT_DIR, "pose3d_classes.npz")


def load_or_build_pose_classes(cfg) -> PoseClasses:
    """The pose classes a config names, built from DATASETS.TRAIN first if the file is missing
    and BUILD_CLASSES_IF_MISSING (deterministic: K-means seed and inputs come from the config).

    The file must have NUM_CLASSES classes and the config's ALIGN_YAW, else a clear error.
    """
    head = cfg.MODEL.ROI_POSE3D_HEAD
    path = classes_file_for_cfg(cfg)
    if not os.path.isfile(path):
        if not head.BUILD_CLASSES_IF_MISSING:
            raise FileNotFoundError(
                f"{path}: pose class file not found; build it with `python "
                f"tools/build_pose_classes.py --dataset D --k {head.NUM_CLASSES} "
                f"--out {path}` or set MODEL.ROI_POSE3D_HEAD.BUILD_CLASSES_IF_MISSING True")
        if comm.is_main_process():
            mirror = cfg.INPUT.RANDOM_FLIP == "horizontal"  # the flips training applies
            classes = build_class_set(list(cfg.DATASETS.TRAIN), head.NUM_CLASSES,
                                           head.KMEANS_SEED, mirror, head.ALIGN_YAW,
                                           head.KMEANS_MAX_ITER)
            classes.save(path)
            logger.info("Pose classes written to %s", path)
        comm.synchronize()
    classes = PoseClasses.load(path)
    if classes.num_classes != head.NUM_CLASSES:
        raise ValueError(f"{path}: {classes.num_classes} pose classes, but "
                         f"MODEL.ROI_POSE3D_HEAD.NUM_CLASSES is {head.NUM_CLASSES}")
    if classes.align_yaw != bool(head.ALIGN_YAW):
        raise ValueError(f"{path}: classes built with align_yaw={classes.align_yaw}, but "
                         f"MODEL.ROI_POSE3D_HEAD.ALIGN_YAW is {head.ALIGN_YAW}")
    return classes
