"""3D pose sources for stitched synthesis: MoCap ``.npz`` sequences, random poses, procedural
motions.

A pose source yields SMPL parameters (72 axis-angle pose values, a translation, optional
shape) one query at a time. Three kinds exist, selected by name in :data:`POSE_SOURCES` or by
path (:func:`resolve_pose_source`):

- **sequences** (:mod:`synthesis.pose_sequences`): a ``.npz`` file or a directory of them;
- **random** poses within the joint limits of :mod:`densepose_ext.body.pose`;
- the **procedural motion set** (:mod:`synthesis.motions`), the default: ``motions`` (all),
  ``motions_train`` (the training actions) and ``motions_test`` (the held-out actions).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple, Union

import numpy as np

from densepose_ext.body.pose import sample_poses

from .motions import (MOTIONS, SAME_POSE_DEG, TEST_MOTIONS, TRAIN_MOTIONS, held_out_sequences,
                      motion_sequence, pose_distance_deg)
from .pose_sequences import (PoseSequence, PoseSourceError, QueryPose, estimate_up_axis,
                             load_pose_npz)

__all__ = ["PoseSource", "SequencePoseSource", "RandomPoseSource", "POSE_SOURCES", "shared_frames",
           "resolve_pose_source"]


def _motion_split(held_out: bool) -> "SequencePoseSource":
    train = [motion_sequence(n) for n in TRAIN_MOTIONS]
    if not held_out:
        return SequencePoseSource(train, name="motions_train")
    test = held_out_sequences([motion_sequence(n) for n in TEST_MOTIONS], train)
    return SequencePoseSource(test, name="motions_test")


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
