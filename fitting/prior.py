"""Priors of the fit: a Gaussian over body poses and the range of each pose value, both learnt
from training poses, and an L2 shape regulariser.

The Gaussian cannot say that a knee bends one way only or that a hip flexes far forward but
little backward; the range penalty can: it is zero inside the span of each of the 69 axis-angle
values over the training poses (widened by ``margin``) and grows quadratically outside.
Both are fitted to the 69 body-pose axis-angle values of *training* poses only:
the SMPL parameters stored with a training dataset's people (the embedded splits keep them
under ``smpl``), or a pose source of :mod:`synthesis.pose_sources` that holds no held-out
motion. :func:`training_poses` refuses the dataset being evaluated and the held-out motions, so
that the baseline never sees the poses it is scored on.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from densepose_ext.body.pose import NUM_JOINTS, sample_poses
from densepose_ext.body.shape import BETA_STD

__all__ = ["DEFAULT_PRIOR_POSES", "HELD_OUT_POSE_SOURCES", "PosePrior", "training_poses",
           "shape_penalty"]

#: where the default prior's poses come from: the people of the embedded training split
DEFAULT_PRIOR_POSES = "densepose_embedded_train"
#: random poses drawn for a prior from the ``random`` pose source
RANDOM_PRIOR_SAMPLES = 20000
BODY_POSE_DIM = (NUM_JOINTS - 1) * 3


def _held_out_sources() -> Tuple[str, ...]:
    from synthesis.motions import TEST_MOTIONS

    return ("motions", "motions_test") + tuple(TEST_MOTIONS)


#: pose-source names that hold held-out (test) motions, refused as prior data
HELD_OUT_POSE_SOURCES = _held_out_sources()


@dataclass
class PosePrior:
    """Prior over body poses (69 axis-angle values): a Gaussian, ``nll(p) = 0.5 |W (p -
    mean)|^2`` with ``W`` the whitening matrix of the (slightly regularised) covariance, and
    the per-value range [lower, upper]."""

    mean: np.ndarray
    whiten: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    source: str
    num_poses: int

    @classmethod
    def fit(cls, poses: np.ndarray, source: str, ridge: float = 1e-4,
            margin: float = 0.05) -> "PosePrior":
        """Fit to (n, 69) body poses (or (n, 72) full poses: the root is dropped); ``ridge``
        (rad^2) is added to the covariance's diagonal so joints the poses never move stay
        finite; the ranges are the poses' extremes widened by ``margin`` (rad)."""
        poses = np.asarray(poses, dtype=np.float64)
        if poses.ndim != 2 or poses.shape[1] not in (BODY_POSE_DIM, BODY_POSE_DIM + 3):
            raise ValueError(f"{source}: poses must be (n, {BODY_POSE_DIM}) or "
                             f"(n, {BODY_POSE_DIM + 3}), got {poses.shape}")
        poses = poses[:, -BODY_POSE_DIM:]
        if len(poses) < 2 or not np.isfinite(poses).all():
            raise ValueError(f"{source}: a pose prior needs at least 2 finite poses, "
                             f"got {len(poses)}")
        mean = poses.mean(axis=0)
        cov = np.cov(poses, rowvar=False) + ridge * np.eye(BODY_POSE_DIM)
        whiten = np.linalg.inv(np.linalg.cholesky(cov))  # W cov W^T = I
        return cls(mean=mean, whiten=whiten, lower=poses.min(axis=0) - margin,
                   upper=poses.max(axis=0) + margin, source=source, num_poses=int(len(poses)))

    def nll(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B,) negative log-likelihood (up to a constant) of (B, 69) body poses."""
        mean = torch.as_tensor(self.mean, dtype=body_pose.dtype)
        whiten = torch.as_tensor(self.whiten, dtype=body_pose.dtype)
        z = (body_pose - mean) @ whiten.T
        return 0.5 * (z * z).sum(dim=1)

    def range_penalty(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B,) squared distance (rad^2) of (B, 69) body poses outside the training ranges."""
        lower = torch.as_tensor(self.lower, dtype=body_pose.dtype)
        upper = torch.as_tensor(self.upper, dtype=body_pose.dtype)
        out = torch.relu(lower - body_pose) + torch.relu(body_pose - upper)
        return (out * out).sum(dim=1)

    @property
    def fingerprint(self) -> str:
        """Hash of the prior's numbers (a resumed fit must use the same prior)."""
        h = hashlib.sha1()
        for a in (self.mean, self.whiten, self.lower, self.upper):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {"source": self.source, "num_poses": self.num_poses,
                "fingerprint": self.fingerprint}


def _dataset_poses(name: str) -> np.ndarray:
    """Body poses of the people of a registered dataset whose records keep ``smpl``."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    json_file = getattr(MetadataCatalog.get(name), "json_file", None)
    if not json_file:
        raise ValueError(f"dataset {name!r} has no json_file in its metadata: cannot read "
                         "its people's poses for the pose prior")
    if not Path(json_file).is_file():
        DatasetCatalog.get(name)  # an embedded split is rendered on first use
    try:
        data = json.loads(Path(json_file).read_text(encoding="utf-8"))
        anns = data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{json_file}: cannot read annotations for the pose prior ({e})") from e
    poses = []
    for index, ann in enumerate(anns):
        smpl = ann.get("smpl") if isinstance(ann, dict) else None
        if smpl is None:
            continue
        pose = np.asarray(smpl.get("body_pose", ()), dtype=np.float64).ravel()
        if pose.shape != (BODY_POSE_DIM,) or not np.isfinite(pose).all():
            raise ValueError(f"{json_file}: annotation id={ann.get('id')} (annotations[{index}]): "
                             f"smpl.body_pose must be {BODY_POSE_DIM} finite numbers")
        poses.append(pose)
    if not poses:
        raise ValueError(f"{json_file}: no annotation of dataset {name!r} has SMPL parameters "
                         "('smpl'); choose a dataset that keeps them or a pose source")
    return np.stack(poses)


def training_poses(source: str, evaluated_dataset: Optional[str] = None,
                   seed: int = 0) -> np.ndarray:
    """(n, 69) training body poses from ``source``: a registered dataset with SMPL parameters
    (e.g. :data:`DEFAULT_PRIOR_POSES`), a pose-source name (``motions_train``, ``random``, a
    training motion) or MoCap ``.npz`` sequences (a file or a directory). Refuses
    ``evaluated_dataset`` itself and the held-out motions."""
    from detectron2.data import DatasetCatalog

    from synthesis.pose_sources import POSE_SOURCES, RandomPoseSource, resolve_pose_source

    if evaluated_dataset is not None and source == evaluated_dataset:
        raise ValueError(f"pose prior: {source!r} is the dataset being evaluated; the prior "
                         "must be learnt from training poses only")
    if source in HELD_OUT_POSE_SOURCES:
        raise ValueError(f"pose prior: pose source {source!r} holds held-out test motions; "
                         "use a training source (e.g. motions_train)")
    if source in DatasetCatalog.list():
        return _dataset_poses(source)
    if source not in POSE_SOURCES and not Path(source).exists():
        raise ValueError(f"pose prior: {source!r} is neither a registered dataset, a pose "
                         f"source ({', '.join(sorted(POSE_SOURCES))}) nor a MoCap .npz file "
                         "or directory")
    pose_source = resolve_pose_source(source)
    if isinstance(pose_source, RandomPoseSource):  # its distribution, drawn all at once
        poses = sample_poses(np.random.default_rng(seed), RANDOM_PRIOR_SAMPLES, pose_source.scale)
    else:
        poses = pose_source.frames()[0]
    return np.asarray(poses, dtype=np.float64)[:, 3:]


def shape_penalty(betas: torch.Tensor) -> torch.Tensor:
    """(B,) squared norm of the shape coefficients in units of the training shapes' spread."""
    return ((betas / BETA_STD) ** 2).sum(dim=1)
