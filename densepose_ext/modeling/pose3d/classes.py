"""3D-pose classes: K-means centres of normalised training poses, saved with their provenance.

A class is a centre of the normalised pose space of :mod:`.joints` (root-centred, divided by
the mean bone length; viewpoint kept unless ``align_yaw``). The class of a person is the
nearest centre of its normalised pose; a class turns back into a pose in metres by the nominal
scale (the training persons' mean bone length). Poses of horizontally flipped images are
included (``mirror``) when training flips images, so every class has its mirror image. The
file also keeps the mean of the same normalised training poses: the "mean pose" baseline
predicts it for every person.

Command line (builds the classes of registered datasets; ``-m
densepose_ext.modeling.pose3d.classes`` runs the same code)::

    python -m densepose_ext.modeling.pose3d --dataset densepose_embedded_train \\
        --k 100 --out output/pose3d_classes_K100.npz
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from densepose_ext.body.pose import JOINT_NAMES
from densepose_ext.utils import atomic_write

from .joints import (
    NUM_JOINTS,
    ROOT_JOINT,
    body_scale,
    canonical_poses,
    joints_from_annotation,
    mirror_poses,
    normalize_poses,
)
from .kmeans import assign_to_centres, kmeans

__all__ = [
    "CLASSES_FORMAT_VERSION",
    "PoseClasses",
    "build_pose_classes",
    "classes_file_for_cfg",
    "dataset_poses",
    "load_or_build_pose_classes",
    "main",
]

logger = logging.getLogger(__name__)

CLASSES_FORMAT_VERSION = 1
SCALE_MEASURE = "mean_bone_length"
#: provenance entries that must agree for an existing file to stand for a requested build
_BUILD_KEYS = ("datasets", "k", "seed", "mirror", "align_yaw", "max_iter")


@dataclass
class PoseClasses:
    """K class centres (K, 24, 3) in the normalised frame, with what is needed to use them;
    ``mean_pose`` (24, 3): the mean normalised training pose (None in files that predate it)."""

    centres: np.ndarray
    nominal_scale: float
    align_yaw: bool = False
    provenance: Dict = field(default_factory=dict)
    mean_pose: Optional[np.ndarray] = None

    def __post_init__(self):
        self.centres = np.ascontiguousarray(self.centres, dtype=np.float32)
        if self.centres.ndim != 3 or self.centres.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(f"class centres must have shape (K, {NUM_JOINTS}, 3), "
                             f"got {self.centres.shape}")
        if not (np.isfinite(self.centres).all() and self.nominal_scale > 0):
            raise ValueError("class centres must be finite and the nominal scale positive")
        if self.mean_pose is not None:
            self.mean_pose = np.ascontiguousarray(self.mean_pose, dtype=np.float32)
            if self.mean_pose.shape != (NUM_JOINTS, 3) or not np.isfinite(self.mean_pose).all():
                raise ValueError(f"the mean pose must be finite with shape ({NUM_JOINTS}, 3), "
                                 f"got {self.mean_pose.shape}")
        self.nominal_scale = float(self.nominal_scale)
        self.align_yaw = bool(self.align_yaw)

    @property
    def num_classes(self) -> int:
        return int(self.centres.shape[0])

    @property
    def digest(self) -> str:
        """Hex sha256 of what defines the classes (centres, scale, frame)."""
        h = hashlib.sha256(self.centres.tobytes())
        h.update(f"{self.nominal_scale:.9g}|{int(self.align_yaw)}".encode())
        return h.hexdigest()

    def normalize(self, joints) -> torch.Tensor:
        """Camera-frame poses (..., 24, 3) -> the classes' normalised frame."""
        return normalize_poses(joints, self.align_yaw)[0]

    def canonical(self, joints) -> torch.Tensor:
        """Camera-frame poses (..., 24, 3) -> root-centred (yaw-aligned if the classes are),
        in metres: the frame in which class poses are compared with ground truth."""
        return canonical_poses(joints, self.align_yaw)

    def nearest(self, joints) -> Tuple[torch.Tensor, torch.Tensor]:
        """(class index (N,), squared distance (N,)) of camera-frame poses (N, 24, 3)."""
        x = self.normalize(joints)
        centres = torch.as_tensor(self.centres, device=x.device, dtype=x.dtype)
        return assign_to_centres(x.reshape(len(x), -1), centres.reshape(self.num_classes, -1))

    def poses(self, index) -> np.ndarray:
        """Class poses (..., 24, 3) in metres (centres times the nominal scale)."""
        return self.centres[np.asarray(index)] * self.nominal_scale

    def mean_pose_metres(self) -> Optional[np.ndarray]:
        """The mean training pose (24, 3) in metres at the nominal scale, None if unknown."""
        return None if self.mean_pose is None else self.mean_pose * self.nominal_scale

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write an npz (atomically): centres, nominal_scale, align_yaw, joint_names, the
        provenance as json and, when known, the mean pose."""
        extra = {} if self.mean_pose is None else {"mean_pose": self.mean_pose}
        with atomic_write(path, "wb") as f:
            np.savez(
                f,
                **extra,
                centres=self.centres,
                nominal_scale=np.float64(self.nominal_scale),
                align_yaw=np.bool_(self.align_yaw),
                format_version=np.int64(CLASSES_FORMAT_VERSION),
                scale_measure=np.str_(SCALE_MEASURE),
                root_joint=np.str_(JOINT_NAMES[ROOT_JOINT]),
                joint_names=np.array(JOINT_NAMES),
                provenance=np.str_(json.dumps(self.provenance, sort_keys=True)),
            )

    @classmethod
    def load(cls, path) -> "PoseClasses":
        """Read a file written by :meth:`save`; one clear error naming the file if it is not."""
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["format_version"])
                if version != CLASSES_FORMAT_VERSION:
                    raise ValueError(f"format version {version}, expected {CLASSES_FORMAT_VERSION}")
                if str(data["scale_measure"]) != SCALE_MEASURE:
                    raise ValueError(f"scale measure {data['scale_measure']}, expected "
                                     f"{SCALE_MEASURE}")
                if tuple(str(n) for n in data["joint_names"]) != JOINT_NAMES:
                    raise ValueError("joint names differ from the 24 SMPL joints")
                return cls(centres=data["centres"], nominal_scale=float(data["nominal_scale"]),
                           align_yaw=bool(data["align_yaw"]),
                           provenance=json.loads(str(data["provenance"])),
                           mean_pose=data["mean_pose"] if "mean_pose" in data.files else None)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: pose class file not found") from None
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"{path}: not a valid pose class file ({e})") from None


def build_pose_classes(poses: np.ndarray, k: int, seed: int = 0, mirror: bool = True,
                       align_yaw: bool = False, max_iter: int = 100,
                       provenance: Optional[Dict] = None) -> PoseClasses:
    """K-means classes of camera-frame poses (N, 24, 3) (with their mirror images if
    ``mirror``), and the mean of the same normalised poses. The provenance records the inputs
    and the fit (inertia, iterations, the training poses' mean distance to their centre in mm
    at the nominal scale, and to the mean pose)."""
    poses = torch.as_tensor(np.asarray(poses), dtype=torch.float64)
    if poses.dim() != 3 or poses.shape[1:] != (NUM_JOINTS, 3) or len(poses) == 0:
        raise ValueError(f"poses must have shape (N>0, {NUM_JOINTS}, 3), got {tuple(poses.shape)}")
    if not bool(torch.isfinite(poses).all()):
        raise ValueError("poses have non-finite values")
    nominal = float(body_scale(poses).mean())
    points = torch.cat([poses, mirror_poses(poses)]) if mirror else poses
    x = normalize_poses(points, align_yaw)[0].reshape(len(points), -1)
    fit = kmeans(x, k, seed=seed, max_iter=max_iter)
    residual = (x - fit.centres[fit.assignments]).view(len(x), NUM_JOINTS, 3).norm(dim=-1)
    mean = x.mean(dim=0)
    spread = (x - mean).view(len(x), NUM_JOINTS, 3).norm(dim=-1)
    record = dict(provenance or {})
    record.update(
        k=int(k), seed=int(seed), mirror=bool(mirror), align_yaw=bool(align_yaw),
        max_iter=int(max_iter), num_poses=int(len(poses)), num_points=int(len(points)),
        inertia=fit.inertia, iterations=fit.iterations, converged=fit.converged,
        nominal_scale_m=nominal, scale_measure=SCALE_MEASURE,
        quantisation_mpjpe_mm=float(residual.mean()) * nominal * 1000.0,
        mean_pose_mpjpe_mm=float(spread.mean()) * nominal * 1000.0,
        class_sizes_min_max=[int(c) for c in _min_max(torch.bincount(fit.assignments,
                                                                     minlength=k))],
    )
    centres = fit.centres.view(k, NUM_JOINTS, 3).float().numpy()
    return PoseClasses(centres=centres, nominal_scale=nominal, align_yaw=align_yaw,
                       provenance=record, mean_pose=mean.view(NUM_JOINTS, 3).float().numpy())


def _min_max(x: torch.Tensor) -> Tuple[int, int]:
    return int(x.min()), int(x.max())


def dataset_poses(dataset_names: Sequence[str]) -> Tuple[np.ndarray, Dict[str, int]]:
    """Camera-frame poses (N, 24, 3) of every non-crowd person with ``joints_3d`` in the
    registered datasets, and per-dataset counts (persons without 3D joints are counted)."""
    from detectron2.data import DatasetCatalog

    import densepose_ext.data  # noqa: F401  (registers the datasets)

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


def _build_from_datasets(datasets: Sequence[str], k: int, seed: int, mirror: bool,
                         align_yaw: bool, max_iter: int) -> PoseClasses:
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
    from detectron2.utils import comm

    head = cfg.MODEL.ROI_POSE3D_HEAD
    path = classes_file_for_cfg(cfg)
    if not os.path.isfile(path):
        if not head.BUILD_CLASSES_IF_MISSING:
            raise FileNotFoundError(
                f"{path}: pose class file not found; build it with `python -m "
                f"densepose_ext.modeling.pose3d --dataset D --k {head.NUM_CLASSES} "
                f"--out {path}` or set MODEL.ROI_POSE3D_HEAD.BUILD_CLASSES_IF_MISSING True")
        if comm.is_main_process():
            mirror = cfg.INPUT.RANDOM_FLIP == "horizontal"  # the flips training applies
            classes = _build_from_datasets(list(cfg.DATASETS.TRAIN), head.NUM_CLASSES,
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


def main(argv: Optional[Sequence[str]] = None) -> PoseClasses:
    parser = argparse.ArgumentParser(
        description="K-means 3D-pose classes of registered datasets, written as an npz.")
    parser.add_argument("--dataset", action="append", required=True,
                        help="registered dataset name (repeat for several)")
    parser.add_argument("--k", type=int, required=True, help="number of classes K")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--seed", type=int, default=0, help="k-means++ seed")
    parser.add_argument("--max-iter", type=int, default=100, help="Lloyd iterations at most")
    parser.add_argument("--no-mirror", action="store_true",
                        help="leave out the mirror images of the poses (training without flips)")
    parser.add_argument("--align-yaw", action="store_true",
                        help="remove the rotation about the vertical axis (classes ignore "
                             "viewpoint)")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out matches")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    wanted = dict(datasets=list(args.dataset), k=args.k, seed=args.seed,
                  mirror=not args.no_mirror, align_yaw=args.align_yaw, max_iter=args.max_iter)
    if Path(args.out).is_file() and not args.force:
        existing = PoseClasses.load(args.out)
        if existing.mean_pose is not None and all(
                existing.provenance.get(key) == wanted[key] for key in _BUILD_KEYS):
            print(f"{args.out}: up to date ({existing.num_classes} classes); --force rebuilds")
            return existing
    classes = _build_from_datasets(args.dataset, args.k, args.seed, not args.no_mirror,
                                   args.align_yaw, args.max_iter)
    classes.save(args.out)
    p = classes.provenance
    print(json.dumps({"out": str(args.out), **{k: p[k] for k in (
        "k", "num_poses", "num_points", "iterations", "converged", "nominal_scale_m",
        "quantisation_mpjpe_mm", "mean_pose_mpjpe_mm", "class_sizes_min_max")}}, indent=2))
    return classes


if __name__ == "__main__":
    main()
