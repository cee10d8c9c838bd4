"""A small procedural MoCap motion set (walk, run, reach, sit, squat, wave, ...) and its split
into training and held-out test motions.

Each motion is a smooth joint-angle curve through keyframes, clipped to the joint limits of
:mod:`densepose_ext.body.pose`. The set is split by action into training motions
(:data:`TRAIN_MOTIONS`) and held-out test motions (:data:`TEST_MOTIONS`, without the frames
that repeat a training pose: :func:`held_out_sequences`), so that a model can be tested on
MoCap poses its training queries never showed.

    python -m synthesis.motions --out DIR [--motions walk run] [--fps 30]

writes the set as ``.npz`` sequences (:mod:`synthesis.pose_sequences`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

from densepose_ext.body.pose import JOINT_NAMES, NUM_JOINTS, clip_to_limits, euler_to_pose

from .pose_sequences import (DEFAULT_FPS, POSE_DIM, PathLike, PoseSequence, PoseSourceError,
                             save_pose_npz)

__all__ = ["MOTIONS", "TRAIN_MOTIONS", "TEST_MOTIONS", "SAME_POSE_DEG", "motion_sequence",
           "write_motion_set", "pose_distance_deg", "held_out_sequences"]


_J = {n: i for i, n in enumerate(JOINT_NAMES)}


Key = Dict[str, Tuple[float, float, float]]


def _side(side: str, name: str, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Key:
    """Euler angles of ``<side>_<name>`` given in left-side terms; the right side is mirrored
    (a reflection x -> -x keeps the X angle and negates Y and Z), so one number means the same
    anatomical motion on both sides."""
    s = 1.0 if side == "left" else -1.0
    return {f"{side}_{name}": (x, s * y, s * z)}


def _both(name: str, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Key:
    return {**_side("left", name, x, y, z), **_side("right", name, x, y, z)}


def _pose(*parts: Key, base: bool = True) -> Key:
    """Merge keyframe parts over the neutral standing posture (arms lowered, slight bends)."""
    out: Key = {}
    if base:
        out.update(_both("shoulder", 0.0, 0.0, -1.25))
        out.update(_both("elbow", 0.0, -0.15, 0.0))
    for p in parts:
        out.update(p)
    return out


def _walk_keys(hip: float, knee: float, swing_knee: float, arm: float, elbow: float,
               lean: float) -> List[Key]:
    contact = lambda a, b: _pose(  # noqa: E731  left leg forward, right leg back
        _side(a, "hip", -hip), _side(a, "knee", 0.1), _side(b, "hip", 0.6 * hip), _side(b, "knee", knee),
        _side(a, "shoulder", arm, 0.0, -1.25), _side(b, "shoulder", -arm, 0.0, -1.25),
        _both("elbow", 0.0, -elbow, 0.0), {"spine1": (lean, 0.0, 0.0)})
    passing = lambda a, b: _pose(  # noqa: E731  a supports, b swings through
        _side(a, "hip", -0.05), _side(a, "knee", 0.15), _side(b, "hip", -0.5 * hip),
        _side(b, "knee", swing_knee), _both("elbow", 0.0, -elbow, 0.0), {"spine1": (lean, 0.0, 0.0)})
    return [contact("left", "right"), passing("right", "left"), contact("right", "left"),
            passing("left", "right")]


def _wave_keys() -> List[Key]:
    up = lambda e: _pose(_side("right", "shoulder", -1.2, 0.0, 0.3), _side("right", "elbow", 0.0, e, 0.0))  # noqa: E731
    return [up(-1.0), up(-1.8), up(-1.0), up(-1.8)]


@dataclass(frozen=True)
class Motion:
    """A procedural motion: keyframes (Euler angles per joint, left-side terms mirrored) at
    evenly spaced times, looped (cyclic) or played once; root speed along +z in m/s."""

    keys: Tuple[Key, ...]
    cyclic: bool
    duration: float
    speed: float = 0.0


_STAND = _pose()


#: name -> Motion; all y-up, facing +z, within the joint limits after clipping
MOTIONS: Dict[str, Motion] = {
    "walk": Motion(tuple(_walk_keys(0.45, 0.25, 0.95, 0.35, 0.3, 0.05)), True, 1.1, 1.3),
    "run": Motion(tuple(_walk_keys(0.8, 0.5, 1.9, 0.7, 1.4, 0.2)), True, 0.7, 3.0),
    "reach": Motion((_STAND, _pose(_side("left", "shoulder", 0.0, -1.3, 0.3), _side("left", "elbow"),
                                   {"spine1": (0.3, 0.1, 0.0), "spine2": (0.2, 0.0, 0.0)}),
                     _pose(_both("shoulder", 0.0, 0.0, 1.05), _both("elbow"), {"spine3": (-0.1, 0, 0)}),
                     _STAND), False, 3.0),
    "sit": Motion((_STAND, _pose(_both("hip", -1.5), _both("knee", 1.5), _both("shoulder", 0.0, -0.3, -1.2),
                                 _both("elbow", 0.0, -1.0, 0.0), {"spine1": (0.15, 0, 0)}),
                   _pose(_both("hip", -1.55, 0.0, 0.2), _both("knee", 1.6), _both("shoulder", 0.0, -0.2, -1.25),
                         _both("elbow", 0.0, -1.2, 0.0), {"neck": (0.25, 0.3, 0)}),
                   _STAND), True, 3.0),
    "squat": Motion((_STAND, _pose(_both("hip", -1.7, 0.0, 0.25), _both("knee", 2.1), _both("ankle", -0.3),
                                   _both("shoulder", 0.0, -1.3, 0.0), _both("elbow"),
                                   {"spine1": (0.4, 0, 0), "spine2": (0.2, 0, 0)})), True, 2.0),
    "wave": Motion(tuple(_wave_keys()), True, 1.2),
    "jumping_jack": Motion((_STAND, _pose(_both("shoulder", 0.0, 0.0, 1.05), _both("elbow", 0.0, -0.3, 0.0),
                                          _both("hip", 0.0, 0.0, 0.45), _both("ankle", 0.3))), True, 1.0),
    "bend": Motion((_STAND, _pose(_both("shoulder", 0.0, -0.9, -1.2), _both("knee", 0.35), _both("hip", -0.3),
                                  {"spine1": (0.5, 0, 0), "spine2": (0.4, 0, 0), "spine3": (0.3, 0, 0),
                                   "neck": (-0.3, 0, 0)})), True, 2.5),
    "kick": Motion((_STAND, _pose(_side("right", "hip", -0.6), _side("right", "knee", 1.6),
                                  _both("shoulder", 0.0, 0.0, -0.6)),
                    _pose(_side("right", "hip", -1.5), _side("right", "knee", 0.1), _side("right", "ankle", 0.5),
                          _both("shoulder", 0.0, 0.0, -0.4), {"spine1": (-0.2, 0, 0)}),
                    _STAND), False, 1.5),
}


def _catmull_rom(values: np.ndarray, t: np.ndarray, cyclic: bool) -> np.ndarray:
    """Interpolate keyframes ``values`` (K, ...) at even times 0..1 (cyclic: K keys over one
    period) at times ``t`` (n,) with a Catmull-Rom spline (C1, passes through every key)."""
    k = len(values)
    segs = k if cyclic else k - 1
    s = np.asarray(t) * segs
    i = np.clip(np.floor(s).astype(np.int64), 0, segs - 1)
    u = (s - i)[:, None, None]
    idx = np.stack([i - 1, i, i + 1, i + 2])
    idx = idx % k if cyclic else np.clip(idx, 0, k - 1)
    p0, p1, p2, p3 = (values[j] for j in idx)
    return 0.5 * ((2 * p1) + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                  + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3)


def motion_sequence(name: str, fps: float = DEFAULT_FPS, cycles: int = 2) -> PoseSequence:
    """The procedural motion ``name`` sampled at ``fps`` (cyclic motions: ``cycles`` periods)."""
    if name not in MOTIONS:
        raise PoseSourceError(f"unknown motion {name!r}; known: {', '.join(MOTIONS)}")
    m = MOTIONS[name]
    euler = np.zeros((len(m.keys), NUM_JOINTS, 3))
    for k, key in enumerate(m.keys):
        for joint, angles in key.items():
            euler[k, _J[joint]] = angles
    periods = cycles if m.cyclic else 1
    n = max(2, int(round(m.duration * fps * periods)))
    t = np.arange(n) / (n if m.cyclic else n - 1) * periods
    frames = _catmull_rom(euler, t % 1.0 if m.cyclic else t, m.cyclic)
    poses = clip_to_limits(euler_to_pose(frames))
    trans = np.zeros((n, 3))
    trans[:, 2] = m.speed * np.arange(n) / fps
    return PoseSequence(poses, trans, None, name=name, fps=fps)


def write_motion_set(out_dir: PathLike, names: Optional[Sequence[str]] = None, fps: float = DEFAULT_FPS) -> List[Path]:
    """Write the procedural motions (all, or ``names``) as ``<out_dir>/<name>.npz``."""
    return [save_pose_npz(motion_sequence(n, fps), Path(out_dir) / f"{n}.npz") for n in (names or list(MOTIONS))]


#: actions whose frames may be used for training (stitching queries)
TRAIN_MOTIONS: Tuple[str, ...] = ("walk", "reach", "sit", "jumping_jack", "bend", "kick")


#: held-out actions: the test split of unseen MoCap poses (each differs from every training
#: action; squat starts and ends standing, as several training actions do: those frames go)
TEST_MOTIONS: Tuple[str, ...] = ("run", "squat", "wave")


#: two frames show the same pose when every body joint's rotation differs by less than this
SAME_POSE_DEG = 10.0


def _joint_quaternions(poses: np.ndarray) -> np.ndarray:
    """(T, 23, 4) unit quaternions of the body joints (the root orientation is left out: the
    camera decides the view)."""
    poses = np.asarray(poses, dtype=np.float64)
    q = Rotation.from_rotvec(poses[:, 3:POSE_DIM].reshape(-1, 3)).as_quat()
    return q.reshape(len(poses), NUM_JOINTS - 1, 4)


def pose_distance_deg(poses_a: np.ndarray, poses_b: np.ndarray) -> np.ndarray:
    """(Ta, Tb) largest rotation angle (degrees) between corresponding body joints of every
    pair of frames of (Ta, 72) and (Tb, 72) axis-angle poses."""
    qa, qb = _joint_quaternions(poses_a), _joint_quaternions(poses_b)
    worst = np.zeros((len(qa), len(qb)))
    for j in range(qa.shape[1]):  # one (Ta, Tb) product per joint
        cos_half = np.clip(np.abs(qa[:, j] @ qb[:, j].T), 0.0, 1.0)
        np.maximum(worst, 2.0 * np.arccos(cos_half), out=worst)
    return np.degrees(worst)


def held_out_sequences(test: Sequence[PoseSequence], train: Sequence[PoseSequence],
                       min_deg: float = SAME_POSE_DEG) -> List[PoseSequence]:
    """The ``test`` sequences without their frames that show a pose of ``train`` (some frame
    within ``min_deg`` on every joint); kept frames keep their original frame numbers."""
    train_poses = np.concatenate([s.poses for s in train])
    out = []
    for seq in test:
        keep = np.flatnonzero(pose_distance_deg(seq.poses, train_poses).min(1) >= min_deg)
        if not len(keep):
            raise PoseSourceError(f"held-out motion {seq.name!r}: every frame repeats a training pose")
        ids = np.arange(len(seq)) if seq.frame_ids is None else seq.frame_ids
        out.append(PoseSequence(seq.poses[keep], seq.trans[keep], seq.betas, name=seq.name, fps=seq.fps,
                                frame_ids=ids[keep]))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthesis.motions",
                                     description="Write the procedural motion set as .npz pose sequences.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--motions", nargs="*", default=None, help=f"subset of {', '.join(MOTIONS)}")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS)
    a = parser.parse_args(argv)
    for p in write_motion_set(a.out, a.motions, a.fps):
        print(p)
    return 0


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
