"""Posing SMPL parameters into bodies for stitched synthesis.

:class:`SMPLPoser` poses parameters with smplx and any SMPL-format model (the embedded one by
default, a real SMPL ``.pkl`` by path) into vertices, the 24 SMPL joints and the 17 COCO
keypoints in 3D (:class:`PosedBodies`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from densepose_ext.body.body_model import get_body_model
from densepose_ext.body.keypoints import coco_keypoints
from densepose_ext.body.pose import pose_body
from densepose_ext.body.smpl_io import load_smplx_model

from .pose_sequences import PathLike, PoseSequence, PoseSourceError

__all__ = ["PosedBodies", "SMPLPoser"]


SMPL_FACE_VERTICES = {"nose": 332, "left_eye": 2800, "right_eye": 6260, "left_ear": 583, "right_ear": 4071}


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
        return hashlib.sha1(self.model_path.read_bytes()).hexdigest()[:16]

    @property
    def num_betas(self) -> int:
        return int(self._model(1).num_betas)

    def pose(self, poses: np.ndarray, trans: Optional[np.ndarray] = None,
             betas: Optional[np.ndarray] = None) -> PosedBodies:
        """Pose (B,72) parameters with (B,3) translations and (B,K) or (K,) shapes (extra
        shape values beyond the model's are ignored, missing ones are 0)."""
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
