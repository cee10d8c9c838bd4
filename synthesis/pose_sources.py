"""3D pose sources for stitched synthesis: MoCap ``.npz`` sequences, random poses, procedural motions.

A pose source yields SMPL parameters (72 axis-angle pose values, a translation, optional
shape) one query at a time. Three kinds exist, selected by name in :data:`POSE_SOURCES` or by
path (:func:`resolve_pose_source`):

- **sequences** in the common MoCap ``.npz`` layout: ``poses`` (T, >=72) axis-angle (only the
  first 72 columns, the SMPL body joints, are used), ``trans`` (T, 3), optional ``betas``
  (>= 1 values; the model uses as many as it has). A file or a directory of files;
- **random** poses within the joint limits of :mod:`densepose_ext.body.pose`;
- a small **procedural motion set** (walk, run, reach, sit, squat, wave, ...): smooth
  joint-angle curves through keyframes, clipped to the joint limits. It is the default, and
  :func:`write_motion_set` writes it in the ``.npz`` layout. It is split by action into
  training motions (``motions_train``: :data:`TRAIN_MOTIONS`) and held-out test motions
  (``motions_test``: :data:`TEST_MOTIONS` without the frames that repeat a training pose,
  see :func:`held_out_sequences`), so that a model can be tested on MoCap poses its
  training queries never showed; ``motions`` is all of them.

:class:`SMPLPoser` poses parameters with smplx and any SMPL-format model (the embedded one by
default, a real SMPL ``.pkl`` by path) into vertices, the 24 SMPL joints and the 17 COCO
keypoints in 3D. Sequences keep their world frame; their "up" axis (y for SMPL-style data,
z for many MoCap archives) is estimated from the root orientations, so cameras stay upright.
"""
from __future__ import annotations

import argparse
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy.spatial.transform import Rotation

from densepose_ext.body.pose import NUM_JOINTS, JOINT_NAMES, clip_to_limits, euler_to_pose, sample_poses
from densepose_ext.utils import atomic_write

__all__ = ["PoseSourceError", "PoseSequence", "QueryPose", "PoseSource", "SequencePoseSource",
           "RandomPoseSource", "PosedBodies", "SMPLPoser", "MOTIONS", "TRAIN_MOTIONS", "TEST_MOTIONS",
           "SAME_POSE_DEG", "POSE_SOURCES", "load_pose_npz", "save_pose_npz", "motion_sequence",
           "write_motion_set", "pose_distance_deg", "held_out_sequences", "shared_frames",
           "resolve_pose_source", "estimate_up_axis"]

POSE_DIM = NUM_JOINTS * 3
DEFAULT_FPS = 30.0
SMPL_FACE_VERTICES = {"nose": 332, "left_eye": 2800, "right_eye": 6260, "left_ear": 583, "right_ear": 4071}
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


# ---------------------------------------------------------------------------------------------
# .npz files


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


# ---------------------------------------------------------------------------------------------
# procedural motions

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


# ---------------------------------------------------------------------------------------------
# the training / held-out split of the motion set

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


def _motion_split(held_out: bool) -> "SequencePoseSource":
    train = [motion_sequence(n) for n in TRAIN_MOTIONS]
    if not held_out:
        return SequencePoseSource(train, name="motions_train")
    test = held_out_sequences([motion_sequence(n) for n in TEST_MOTIONS], train)
    return SequencePoseSource(test, name="motions_test")


# ---------------------------------------------------------------------------------------------
# sources


class PoseSource:
    """Draws query poses; ``sample(rng)`` must depend only on the generator's state."""

    name = "pose source"

    def sample(self, rng: np.random.Generator) -> QueryPose:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        """A stable description (stored with generated data to detect a changed source)."""
        return self.name


class SequencePoseSource(PoseSource):
    """Uniform draws over all frames of one or more sequences."""

    def __init__(self, sequences: Sequence[PoseSequence], name: str = "sequences"):
        if not sequences:
            raise PoseSourceError(f"{name}: no pose sequences")
        self.sequences = list(sequences)
        self.name = name
        self._ups = [estimate_up_axis(s.poses) for s in self.sequences]
        self._offsets = np.cumsum([0] + [len(s) for s in self.sequences])

    @property
    def num_frames(self) -> int:
        return int(self._offsets[-1])

    def sample(self, rng: np.random.Generator) -> QueryPose:
        k = int(rng.integers(self.num_frames))
        s = int(np.searchsorted(self._offsets, k, side="right") - 1)
        t = k - int(self._offsets[s])
        seq = self.sequences[s]
        return QueryPose(seq.poses[t].copy(), seq.trans[t].copy(), None if seq.betas is None else seq.betas.copy(),
                         self._ups[s].copy(), f"{seq.name}:{seq.frame_id(t)}")

    def frames(self) -> Tuple[np.ndarray, List[str]]:
        """Every frame: poses (F, 72) and their tags (``name:frame``, as :meth:`sample` gives)."""
        poses = np.concatenate([s.poses for s in self.sequences])
        tags = [f"{s.name}:{s.frame_id(t)}" for s in self.sequences for t in range(len(s))]
        return poses, tags

    def describe(self) -> str:
        import hashlib

        h = hashlib.sha1()
        for s in self.sequences:
            h.update(s.name.encode())
            h.update(np.ascontiguousarray(s.poses).tobytes() + np.ascontiguousarray(s.trans).tobytes())
            if s.betas is not None:
                h.update(np.ascontiguousarray(s.betas).tobytes())
        return f"{self.name}:{h.hexdigest()[:16]}"


class RandomPoseSource(PoseSource):
    """Random poses within the joint limits (upright root, y-up, no translation)."""

    name = "random"

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def sample(self, rng: np.random.Generator) -> QueryPose:
        pose = sample_poses(rng, 1, self.scale)[0]
        return QueryPose(pose, np.zeros(3), None, np.array([0.0, 1.0, 0.0]), "random")

    def describe(self) -> str:
        return f"random:scale={self.scale}"


def _npz_source(path: Path) -> SequencePoseSource:
    files = sorted(path.rglob("*.npz")) if path.is_dir() else [path]
    if not files:
        raise PoseSourceError(f"{path}: no .npz pose files in this directory")
    return SequencePoseSource([load_pose_npz(f) for f in files], name=str(path))


def shared_frames(a: SequencePoseSource, b: SequencePoseSource,
                  min_deg: float = SAME_POSE_DEG) -> List[Tuple[str, str]]:
    """Frames of ``a`` that show a pose of ``b``: (tag in a, tag of its nearest frame in b)
    for every frame of ``a`` within ``min_deg`` of some frame of ``b`` on every joint."""
    pa, ta = a.frames()
    pb, tb = b.frames()
    dist = pose_distance_deg(pa, pb)
    nearest = dist.argmin(1)
    return [(ta[i], tb[nearest[i]]) for i in np.flatnonzero(dist.min(1) < min_deg)]


#: name -> factory of a PoseSource: "motions" (all procedural motions), "motions_train" /
#: "motions_test" (the training actions / the held-out ones), each motion by name, "random"
POSE_SOURCES: Dict[str, Callable[[], PoseSource]] = {
    "motions": lambda: SequencePoseSource([motion_sequence(n) for n in MOTIONS], name="motions"),
    "motions_train": lambda: _motion_split(held_out=False),
    "motions_test": lambda: _motion_split(held_out=True),
    "random": RandomPoseSource,
    **{n: (lambda n=n: SequencePoseSource([motion_sequence(n)], name=n)) for n in MOTIONS},
}


def resolve_pose_source(spec: Union[str, Path, PoseSource, None]) -> PoseSource:
    """A PoseSource from a name in :data:`POSE_SOURCES`, a ``.npz`` file or a directory of them."""
    if spec is None:
        spec = "motions"
    if isinstance(spec, PoseSource):
        return spec
    if str(spec) in POSE_SOURCES:
        return POSE_SOURCES[str(spec)]()
    path = Path(spec)
    if path.exists():
        return _npz_source(path)
    raise PoseSourceError(f"{spec}: neither a pose file/directory nor a pose source name "
                          f"({', '.join(POSE_SOURCES)})")


# ---------------------------------------------------------------------------------------------
# posing


@dataclass
class PosedBodies:
    """Posed bodies in the pose's world frame (metres): vertices (B,N,3), SMPL joints (B,24,3),
    COCO keypoints (B,17,3)."""

    vertices: np.ndarray
    joints: np.ndarray
    keypoints: np.ndarray


class SMPLPoser:
    """Poses SMPL parameters with smplx and a SMPL-format model (float64, one thread's worth).

    ``model_path`` None uses the embedded body model; a real SMPL ``.pkl`` (6890 vertices) uses
    the standard SMPL face vertices for the nose, eyes and ears.
    """

    def __init__(self, model_path: Optional[PathLike] = None):
        from densepose_ext.body.body_model import get_body_model

        if model_path is None:
            bm = get_body_model()
            self.model_path = Path(bm.smpl_path)
            self.face_vertices = dict(bm.template.keypoint_vertices)
        else:
            self.model_path = Path(model_path)
            if not self.model_path.is_file():
                raise PoseSourceError(f"{self.model_path}: SMPL model file not found")
            self.face_vertices = None  # decided once the model is loaded
        self._models: Dict[int, object] = {}

    def _model(self, batch: int):
        if batch not in self._models:
            import torch

            from densepose_ext.body.smpl_io import load_smplx_model

            model = load_smplx_model(str(self.model_path), batch_size=batch, dtype=torch.float64)
            if self.face_vertices is None:
                n = int(model.v_template.shape[0])
                if n != 6890:
                    raise PoseSourceError(f"{self.model_path}: {n} vertices; only the embedded model and "
                                          "6890-vertex SMPL models have known face keypoints")
                self.face_vertices = dict(SMPL_FACE_VERTICES)
            self._models[batch] = model
        return self._models[batch]

    @property
    def fingerprint(self) -> str:
        """Hash of the model file (results depend on the exact model)."""
        import hashlib

        return hashlib.sha1(self.model_path.read_bytes()).hexdigest()[:16]

    @property
    def num_betas(self) -> int:
        return int(self._model(1).num_betas)

    def pose(self, poses: np.ndarray, trans: Optional[np.ndarray] = None,
             betas: Optional[np.ndarray] = None) -> PosedBodies:
        """Pose (B,72) parameters with (B,3) translations and (B,K) or (K,) shapes (extra
        shape values beyond the model's are ignored, missing ones are 0)."""
        import torch

        from densepose_ext.body.keypoints import coco_keypoints
        from densepose_ext.body.pose import pose_body

        poses = np.atleast_2d(np.asarray(poses, dtype=np.float64))
        b = len(poses)
        trans = np.zeros((b, 3)) if trans is None else np.broadcast_to(np.asarray(trans, np.float64), (b, 3))
        model = self._model(b)
        nb = int(model.num_betas)
        full = np.zeros((b, nb))
        if betas is not None:
            betas = np.atleast_2d(np.asarray(betas, dtype=np.float64))
            m = min(nb, betas.shape[1])
            full[:, :m] = np.broadcast_to(betas[:, :m], (b, m))
        t = lambda x: torch.tensor(np.asarray(x), dtype=torch.float64)  # noqa: E731
        with torch.no_grad():
            v, j = pose_body(model, t(full), t(poses[:, 3:]), t(poses[:, :3]), t(trans))
        v, j = v.numpy(), j.numpy()
        return PosedBodies(v, j, coco_keypoints(v, j, vertex_ids=self.face_vertices))

    def pose_sequence(self, seq: PoseSequence, chunk: int = 256) -> PosedBodies:
        """Pose every frame of ``seq`` (in chunks of ``chunk`` frames)."""
        parts = [self.pose(seq.poses[i:i + chunk], seq.trans[i:i + chunk], seq.betas)
                 for i in range(0, len(seq), chunk)]
        fields = ("vertices", "joints", "keypoints")
        return PosedBodies(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthesis.pose_sources",
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
