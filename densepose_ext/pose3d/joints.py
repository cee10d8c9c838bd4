"""3D joints of a person: reading them from annotations, mirroring, and the normalised frame.

A pose is the 24 SMPL joints in the camera frame (metres; x right, y down, z forward, as the
renderer writes ``joints_3d``). Pose classes and their metrics live in a *normalised* frame:
root-centred (pelvis at the origin) and divided by the person's mean bone length over the 23
bones of the SMPL tree. Bones are rigid under SMPL posing, so that measure depends on body size
only, never on the pose: classes then describe pose and viewpoint, not size. Optionally the
pose is also turned about the camera's vertical axis so the hips face the camera (yaw removed).
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple, Union

import numpy as np
import torch

from densepose_ext.body.pose import JOINT_NAMES, MIRROR_JOINTS, NUM_JOINTS, PARENTS

__all__ = [
    "JOINTS_KEY",
    "NUM_JOINTS",
    "ROOT_JOINT",
    "body_scale",
    "canonical_poses",
    "joints_from_annotation",
    "joints_from_annotations",
    "mirror_poses",
    "normalize_poses",
]

#: annotation key holding a person's (24, 3) camera-frame joints in metres
JOINTS_KEY = "joints_3d"
#: the root joint (pelvis) every pose is centred on
ROOT_JOINT = JOINT_NAMES.index("pelvis")
_LEFT_HIP = JOINT_NAMES.index("left_hip")
_RIGHT_HIP = JOINT_NAMES.index("right_hip")
_CHILDREN = torch.arange(1, NUM_JOINTS)
_PARENTS = torch.as_tensor(PARENTS[1:])

ArrayLike = Union[np.ndarray, torch.Tensor]


def joints_from_annotation(ann: dict) -> Optional[np.ndarray]:
    """(24, 3) float32 joints of one person annotation, None if it has none.

    Raises ValueError (the caller names file and record) for any other shape or non-finite value.
    """
    if JOINTS_KEY not in ann:
        return None
    try:
        joints = np.asarray(ann[JOINTS_KEY], dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{JOINTS_KEY} is not an array of numbers ({e})") from None
    if joints.shape != (NUM_JOINTS, 3):
        raise ValueError(f"{JOINTS_KEY} must have shape ({NUM_JOINTS}, 3), got {joints.shape}")
    if not np.isfinite(joints).all():
        raise ValueError(f"{JOINTS_KEY} has non-finite values")
    return joints


def joints_from_annotations(anns: Iterable[dict]) -> np.ndarray:
    """(N, 24, 3) float32 joints of N annotations; persons without joints get NaN rows."""
    rows = [joints_from_annotation(a) for a in anns]
    out = np.full((len(rows), NUM_JOINTS, 3), np.nan, dtype=np.float32)
    for i, joints in enumerate(rows):
        if joints is not None:
            out[i] = joints
    return out


def mirror_poses(joints: ArrayLike, axis: int = 0) -> ArrayLike:
    """Poses (..., 24, 3) as seen in the mirrored image: coordinate ``axis`` negated (0 = x for a
    horizontal flip, 1 = y for a vertical one) and left/right joints swapped. Any reflection
    swaps the body's sides, exactly as detectron2 swaps left/right keypoints on a flip."""
    if isinstance(joints, torch.Tensor):
        out = joints[..., torch.as_tensor(MIRROR_JOINTS, device=joints.device), :].clone()
    else:
        out = np.asarray(joints)[..., MIRROR_JOINTS, :].copy()
    out[..., axis] = -out[..., axis]
    return out


def body_scale(joints: torch.Tensor) -> torch.Tensor:
    """(...,) mean length of the 23 SMPL bones of poses (..., 24, 3): a pose-free size measure."""
    bones = joints[..., _CHILDREN.to(joints.device), :] - joints[..., _PARENTS.to(joints.device), :]
    return bones.norm(dim=-1).mean(dim=-1)


def _yaw_aligned(rel: torch.Tensor) -> torch.Tensor:
    """Root-centred poses turned about the camera y axis so the right-to-left hip vector
    points along +x (the person faces the camera)."""
    hip = rel[..., _LEFT_HIP, :] - rel[..., _RIGHT_HIP, :]
    n = torch.sqrt(hip[..., 0] ** 2 + hip[..., 2] ** 2).clamp_min(1e-12)
    c, s = (hip[..., 0] / n)[..., None], (hip[..., 2] / n)[..., None]
    x, y, z = rel.unbind(-1)
    return torch.stack([c * x + s * z, y, c * z - s * x], dim=-1)


def canonical_poses(joints: ArrayLike, align_yaw: bool = False) -> torch.Tensor:
    """Poses (..., 24, 3) root-centred (and yaw-aligned if asked), still in metres."""
    joints = torch.as_tensor(joints)
    rel = joints - joints[..., ROOT_JOINT: ROOT_JOINT + 1, :]
    return _yaw_aligned(rel) if align_yaw else rel


def normalize_poses(joints: ArrayLike, align_yaw: bool = False
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(normalised poses (..., 24, 3), scale (...,)): root-centred, optionally yaw-aligned,
    divided by :func:`body_scale`. Translation and size no longer matter; NaN poses stay NaN."""
    rel = canonical_poses(joints, align_yaw)
    scale = body_scale(rel)
    return rel / scale[..., None, None].clamp_min(1e-12), scale
