"""3D-pose classes: K-means centres of normalised training poses, saved with their provenance.

A class is a centre of the normalised pose space of :mod:`.joints` (root-centred, divided by
the mean bone length; viewpoint kept unless ``align_yaw``). The class of a person is the
nearest centre of its normalised pose; a class turns back into a pose in metres by the nominal
scale (the training persons' mean bone length). Poses of horizontally flipped images are
included (``mirror``) when training flips images, so every class has its mirror image. The
file also keeps the mean of the same normalised training poses: the "mean pose" baseline
predicts it for every person.

Building the classes of registered datasets (or of a config's training sets) is
:mod:`densepose_ext.modeling.pose3d.class_sets`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from densepose_ext.body.pose import JOINT_NAMES
from densepose_ext.utils import atomic_write

from .joints import (
    NUM_JOINTS,
    ROOT_JOINT,
    body_scale,
    canonical_poses,
    mirror_poses,
    normalize_poses,
)
from .kmeans import assign_to_centres, kmeans

__all__ = ["CLASSES_FORMAT_VERSION", "PoseClasses", "build_pose_classes"]

CLASSES_FORMAT_VERSION = 1
SCALE_MEASURE = "mean_bone_length"
#: provenance entries that must agree for an existing file to stand for a requested build


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
