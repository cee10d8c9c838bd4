"""Pose sequences in the common MoCap ``.npz`` layout, read and written.

``poses`` (T, >=72) axis-angle (only the first 72 columns, the SMPL body joints, are used),
``trans`` (T, 3), optional ``betas`` (>= 1 values; the model uses as many as it has).
Sequences keep their world frame; their "up" axis (y for SMPL-style data, z for many MoCap
archives) is estimated from the root orientations (:func:`estimate_up_axis`), so cameras stay
upright.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from scipy.spatial.transform import Rotation

from densepose_ext.body.pose import NUM_JOINTS
from densepose_ext.utils import atomic_write

__all__ = ["POSE_DIM", "DEFAULT_FPS", "PoseSourceError", "PoseSequence", "QueryPose",
           "estimate_up_axis", "load_pose_npz", "save_pose_npz"]


POSE_DIM = NUM_JOINTS * 3


DEFAULT_FPS = 30.0


PathLike = Union[str, Path]


class PoseSourceError(ValueError):
    """A pose file or pose source name is unusable; the message names the file or name."""


@dataclass
class PoseSequence:
    """SMPL parameters over time: poses (T,72) axis-angle, trans (T,3), betas (B,) or None;
    ``frame_ids`` (T,): the frame numbers of the original sequence when frames were removed
    (None: 0..T-1), used in query tags."""

    poses: np.ndarray
    trans: np.ndarray
    betas: Optional[np.ndarray] = None
    name: str = ""
    fps: float = DEFAULT_FPS
    frame_ids: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.poses = np.asarray(self.poses, dtype=np.float64)
        self.trans = np.asarray(self.trans, dtype=np.float64)
        if self.betas is not None:
            self.betas = np.asarray(self.betas, dtype=np.float64).ravel()
        if self.poses.ndim != 2 or self.poses.shape[1] != POSE_DIM:
            raise ValueError(f"pose sequence {self.name!r}: poses must be (T, {POSE_DIM}), got {self.poses.shape}")
        if self.trans.shape != (len(self.poses), 3):
            raise ValueError(f"pose sequence {self.name!r}: trans must be ({len(self.poses)}, 3), "
                             f"got {self.trans.shape}")
        if self.frame_ids is not None:
            self.frame_ids = np.asarray(self.frame_ids, dtype=np.int64)
            if self.frame_ids.shape != (len(self.poses),):
                raise ValueError(f"pose sequence {self.name!r}: frame_ids must be ({len(self.poses)},), "
                                 f"got {self.frame_ids.shape}")

    def frame_id(self, t: int) -> int:
        """Frame number in the original sequence of frame ``t``."""
        return int(t if self.frame_ids is None else self.frame_ids[t])

    def __len__(self) -> int:
        return int(len(self.poses))


@dataclass
class QueryPose:
    """One pose to synthesise: pose (72,), trans (3,), betas (B,) or None, the world up axis
    (3,) of its sequence, and a tag saying where it came from (e.g. ``walk:17``)."""

    pose: np.ndarray
    trans: np.ndarray
    betas: Optional[np.ndarray]
    up: np.ndarray
    tag: str


def estimate_up_axis(poses: np.ndarray) -> np.ndarray:
    """World "up" of a sequence: the mean of the root-rotated body up vector (SMPL +y), snapped
    to the nearest signed coordinate axis when within 30 degrees of it (MoCap archives are y-up
    or z-up; a handful of lying frames does not tilt the camera)."""
    up = Rotation.from_rotvec(np.asarray(poses, dtype=np.float64)[:, :3]).apply([0.0, 1.0, 0.0]).mean(0)
    n = np.linalg.norm(up)
    if n < 1e-6:
        return np.array([0.0, 1.0, 0.0])
    up = up / n
    k = int(np.argmax(np.abs(up)))
    if abs(up[k]) >= np.cos(np.deg2rad(30.0)):
        snapped = np.zeros(3)
        snapped[k] = np.sign(up[k])
        return snapped
    return up


def load_pose_npz(path: PathLike) -> PoseSequence:
    """Read a sequence in the common ``.npz`` layout; PoseSourceError naming the file if bad."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            missing = [k for k in ("poses", "trans") if k not in keys]
            if missing:
                raise PoseSourceError(f"{path}: missing array(s) {', '.join(missing)} "
                                      f"(found {', '.join(sorted(keys)) or 'none'})")
            poses = np.asarray(data["poses"], dtype=np.float64)
            trans = np.asarray(data["trans"], dtype=np.float64)
            betas = np.asarray(data["betas"], dtype=np.float64).ravel() if "betas" in keys else None
            rate_key = next((n for n in ("mocap_framerate", "mocap_frame_rate", "fps") if n in keys), None)
            fps = float(np.asarray(data[rate_key]).ravel()[0]) if rate_key else DEFAULT_FPS
    except PoseSourceError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise PoseSourceError(f"{path}: not a readable .npz pose file ({e})") from None
    if poses.ndim != 2 or poses.shape[1] < POSE_DIM:
        raise PoseSourceError(f"{path}: 'poses' must be (T, >= {POSE_DIM}) axis-angle, got {poses.shape}")
    if len(poses) == 0:
        raise PoseSourceError(f"{path}: 'poses' has no frames")
    if trans.shape != (len(poses), 3):
        raise PoseSourceError(f"{path}: 'trans' must be ({len(poses)}, 3) to match 'poses', got {trans.shape}")
    if betas is not None and betas.size == 0:
        raise PoseSourceError(f"{path}: 'betas' is empty")
    for key, arr in (("poses", poses), ("trans", trans), ("betas", betas)):
        if arr is not None and not np.isfinite(arr).all():
            bad = int(np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)))[0, 0])
            raise PoseSourceError(f"{path}: '{key}' has a non-finite value (row {bad})")
    return PoseSequence(poses[:, :POSE_DIM], trans, betas, name=path.stem, fps=fps)


def save_pose_npz(seq: PoseSequence, path: PathLike) -> Path:
    """Write ``seq`` in the common ``.npz`` layout (poses, trans, betas, mocap_framerate), atomically."""
    path = Path(path)
    arrays = {"poses": seq.poses, "trans": seq.trans, "mocap_framerate": np.array(seq.fps)}
    if seq.betas is not None:
        arrays["betas"] = seq.betas
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return path
