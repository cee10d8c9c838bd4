"""SMPL kinematic tree, human joint-rotation limits, random plausible poses and posing via smplx.

Rotations are local axis-angle vectors (SMPL convention); limits are given as intrinsic Euler
angles ``"XYZ"`` in radians, in the rest (T-pose) frame: x = person's left, y = up, z = forward.
"""
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation

__all__ = [
    "JOINT_NAMES",
    "PARENTS",
    "NUM_JOINTS",
    "JOINT_LIMITS",
    "MIRROR_JOINTS",
    "sample_poses",
    "clip_to_limits",
    "pose_to_euler",
    "euler_to_pose",
    "pose_body",
]

JOINT_NAMES: Tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
NUM_JOINTS = len(JOINT_NAMES)
PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21],
    dtype=np.int64,
)
#: joint index -> index of its left/right counterpart (centre joints map to themselves)
MIRROR_JOINTS = np.array(
    [JOINT_NAMES.index(n.replace("left_", "#").replace("right_", "left_").replace("#", "right_"))
     for n in JOINT_NAMES],
    dtype=np.int64,
)

# (min, max) per Euler axis X, Y, Z for the centre and LEFT joints; right joints are mirrored
# (a reflection x -> -x keeps the X angle and negates the Y and Z angles).
# Signs: knee flexion +X moves the foot back; hip flexion -X moves the leg forward; left elbow
# flexion -Y brings the forearm forward; left shoulder -Z lowers the arm; left wrist -Z bends
# the (palm-down) hand down; ankle +X points the toes down.
_LEFT_AND_CENTRE_LIMITS: Dict[str, Tuple[Tuple[float, float], ...]] = {
    "pelvis": ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0)),  # root: set by callers (global_orient)
    "spine1": ((-0.25, 0.50), (-0.30, 0.30), (-0.25, 0.25)),
    "spine2": ((-0.20, 0.40), (-0.25, 0.25), (-0.20, 0.20)),
    "spine3": ((-0.15, 0.30), (-0.20, 0.20), (-0.15, 0.15)),
    "neck": ((-0.40, 0.50), (-0.60, 0.60), (-0.35, 0.35)),
    "head": ((-0.30, 0.30), (-0.45, 0.45), (-0.25, 0.25)),
    "left_hip": ((-1.80, 0.45), (-0.50, 0.50), (-0.30, 0.80)),
    "left_knee": ((0.00, 2.20), (-0.10, 0.10), (-0.05, 0.05)),
    "left_ankle": ((-0.35, 0.70), (-0.25, 0.25), (-0.25, 0.25)),
    "left_foot": ((-0.50, 0.25), (-0.05, 0.05), (-0.05, 0.05)),
    "left_collar": ((-0.15, 0.15), (-0.30, 0.15), (-0.15, 0.35)),
    "left_shoulder": ((-1.20, 1.20), (-1.50, 0.60), (-1.40, 1.10)),
    "left_elbow": ((-0.80, 0.80), (-2.40, 0.00), (-0.05, 0.05)),
    "left_wrist": ((-0.60, 0.60), (-0.40, 0.40), (-1.00, 0.80)),
    "left_hand": ((-0.10, 0.10), (-0.10, 0.10), (-1.00, 0.15)),
}


def _build_limits() -> np.ndarray:
    """(24, 3, 2) array of Euler-XYZ (min, max) per joint, right side mirrored from the left."""
    limits = np.zeros((NUM_JOINTS, 3, 2))
    for j, name in enumerate(JOINT_NAMES):
        if name.startswith("right_"):
            lo_hi = np.array(_LEFT_AND_CENTRE_LIMITS[name.replace("right_", "left_")])
            lo_hi[1:] = -lo_hi[1:, ::-1]
        else:
            lo_hi = np.array(_LEFT_AND_CENTRE_LIMITS[name])
        limits[j] = lo_hi
    return limits


#: (24, 3, 2) per-joint (min, max) Euler XYZ angles in radians; every range contains 0.
JOINT_LIMITS = _build_limits()


def euler_to_pose(euler: np.ndarray) -> np.ndarray:
    """(n, 24, 3) intrinsic Euler XYZ angles -> (n, 72) axis-angle pose vectors."""
    euler = np.asarray(euler, dtype=np.float64)
    n = euler.shape[0]
    rotvec = Rotation.from_euler("XYZ", euler.reshape(-1, 3)).as_rotvec()
    return rotvec.reshape(n, NUM_JOINTS * 3)


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def _violation(euler: np.ndarray) -> np.ndarray:
    """(n, 24) total amount by which Euler angles leave :data:`JOINT_LIMITS`."""
    lo, hi = JOINT_LIMITS[None, ..., 0], JOINT_LIMITS[None, ..., 1]
    return (np.maximum(lo - euler, 0) + np.maximum(euler - hi, 0)).sum(-1)


def pose_to_euler(pose: np.ndarray) -> np.ndarray:
    """(n, 72) axis-angle pose vectors -> (n, 24, 3) intrinsic Euler XYZ angles.

    A rotation has two XYZ angle triples, (x, y, z) and (x + pi, pi - y, z + pi); per joint
    the one closer to the joint's limits is returned (elbow and knee flexion exceed pi / 2).
    """
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
    n = pose.shape[0]
    e1 = Rotation.from_rotvec(pose.reshape(-1, 3)).as_euler("XYZ").reshape(n, NUM_JOINTS, 3)
    e2 = _wrap(np.stack([e1[..., 0] + np.pi, np.pi - e1[..., 1], e1[..., 2] + np.pi], -1))
    use2 = _violation(e2) < _violation(e1) - 1e-12
    return np.where(use2[..., None], e2, e1)


def sample_poses(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    """Draw ``n`` random poses (n, 72) axis-angle within :data:`JOINT_LIMITS`.

    Each Euler angle is ``t * max`` (t >= 0) or ``-t * min`` (t < 0) with ``t`` a normal of
    std ``0.45 * scale`` truncated to [-1, 1]: poses concentrate near the rest pose, one-sided
    joints (knees, elbows) are straight about half the time, and ``scale`` < 1 gives calmer
    poses. The root orientation (joint 0) is zero; callers set ``global_orient`` themselves.
    """
    if n < 0:
        raise ValueError(f"sample_poses: n must be >= 0, got {n}")
    t = np.clip(rng.normal(0.0, 0.45 * float(scale), size=(n, NUM_JOINTS, 3)), -1.0, 1.0)
    lo, hi = JOINT_LIMITS[None, ..., 0], JOINT_LIMITS[None, ..., 1]
    euler = np.where(t >= 0, t * hi, -t * lo)
    euler[:, 0] = 0.0
    return euler_to_pose(euler)


def clip_to_limits(pose: np.ndarray) -> np.ndarray:
    """Project (n, 72) axis-angle poses onto the joint limits (clipping their Euler angles)."""
    pose = np.asarray(pose, dtype=np.float64)
    squeeze = pose.ndim == 1
    euler = pose_to_euler(pose.reshape(-1, NUM_JOINTS * 3))
    root = euler[:, 0].copy()
    euler = np.clip(euler, JOINT_LIMITS[None, ..., 0], JOINT_LIMITS[None, ..., 1])
    euler[:, 0] = root  # the root orientation is free
    out = euler_to_pose(euler)
    return out[0] if squeeze else out


def pose_body(
    model,
    betas: Optional["torch.Tensor"] = None,  # noqa: F821
    body_pose: Optional["torch.Tensor"] = None,  # noqa: F821
    global_orient: Optional["torch.Tensor"] = None,  # noqa: F821
    transl: Optional["torch.Tensor"] = None,  # noqa: F821
) -> Tuple["torch.Tensor", "torch.Tensor"]:  # noqa: F821
    """Pose an ``smplx.SMPL`` model by LBS: returns vertices (B, N, 3) and joints (B, 24, 3).

    ``body_pose`` is (B, 69) (joints 1..23) or a full (B, 72) pose whose first 3 values are
    used as ``global_orient`` when that is not given. Missing inputs default to zeros of the
    model's batch size, dtype and device.
    """
    ref = model.v_template
    def _zeros(d: int, b: int) -> torch.Tensor:
        return torch.zeros(b, d, dtype=ref.dtype, device=ref.device)

    tensors = [t for t in (betas, body_pose, global_orient, transl) if t is not None]
    batch = tensors[0].shape[0] if tensors else model.batch_size
    if body_pose is not None and body_pose.shape[-1] == NUM_JOINTS * 3:
        if global_orient is None:
            global_orient = body_pose[:, :3]
        body_pose = body_pose[:, 3:]
    betas = _zeros(model.num_betas, batch) if betas is None else betas
    body_pose = _zeros((NUM_JOINTS - 1) * 3, batch) if body_pose is None else body_pose
    global_orient = _zeros(3, batch) if global_orient is None else global_orient
    transl = _zeros(3, batch) if transl is None else transl
    out = model(
        betas=betas.to(ref), body_pose=body_pose.to(ref),
        global_orient=global_orient.to(ref), transl=transl.to(ref), return_verts=True,
    )
    return out.vertices, out.joints[:, :NUM_JOINTS]
