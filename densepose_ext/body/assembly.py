"""Assembling the body template (surface, parts, rigging, face landmarks) and caching it.

:func:`get_template` builds the template once (deterministic; a few seconds) and keeps it on
disk, keyed by a hash of the code that defines it, so any edit of that code gives a new file.
"""
import hashlib
import logging
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Dict

import numpy as np

from ..utils import atomic_write, cache_dir
from . import pose as _pose
from .parts import assign_face_parts
from .rigging import joint_regressor, shape_directions, skinning_weights
from .template import (GRID_SPACING, NUM_POSE_BASIS, SKELETON, TEMPLATE_VERSION, BodyTemplate,
                       mesh_symmetric, relax)

logger = logging.getLogger(__name__)

__all__ = ["build_template", "get_template", "template_cache_path", "face_landmark_vertices"]


def face_landmark_vertices(vertices: np.ndarray, mirror: np.ndarray,
                           head_joint: np.ndarray) -> Dict[str, int]:
    """Pick the face keypoint vertices of a rest-pose template (done once, at build time).

    Nose: the most forward vertex on the symmetry plane above the head joint; left eye and
    left ear: the vertices nearest to typical offsets from the head joint; right ones are
    their mirror images, so the choice is exactly symmetric.
    """
    rel = vertices - np.asarray(head_joint)
    plane = np.flatnonzero((rel[:, 1] > -0.025) & (vertices[:, 0] == 0.0))
    nose = int(plane[np.argmax(rel[plane, 2])])
    left_eye = int(np.argmin(np.linalg.norm(rel - [0.032, 0.087, 0.10], axis=1)))
    left_ear = int(np.argmin(np.linalg.norm(rel - [0.09, 0.06, 0.0], axis=1)))
    return {"nose": nose, "left_eye": left_eye, "right_eye": int(mirror[left_eye]),
            "left_ear": left_ear, "right_ear": int(mirror[left_ear])}


def _source_hash() -> str:
    """Hash of the code that defines the template: any edit gives a new cache file."""
    h = hashlib.sha1(TEMPLATE_VERSION.encode())
    here = Path(__file__).resolve().parent
    for name in ("template.py", "rigging.py", "parts.py", "pose.py", "keypoints.py",
                 "assembly.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:12]


def build_template(spacing: float = GRID_SPACING, relax_iterations: int = 10) -> BodyTemplate:
    """Build the body template from scratch (deterministic; a few seconds)."""
    v, f, mirror, f_half = mesh_symmetric(spacing)
    v = relax(v, f, mirror, relax_iterations, spacing)
    face_mirror = np.concatenate([np.arange(f_half) + f_half, np.arange(f_half)])
    face_part = assign_face_parts(v, f, SKELETON, face_mirror)
    weights = skinning_weights(v, f, mirror)
    reg = joint_regressor(v, mirror, SKELETON)
    shapedirs = shape_directions(v, weights, mirror)
    joints = reg @ v
    shift = np.array([0.0, joints[0, 1], joints[0, 2]])  # pelvis joint -> origin
    v = v - shift
    joints = reg @ v
    joints[:, 0] = np.where(_pose.MIRROR_JOINTS == np.arange(24), 0.0, joints[:, 0])
    landmarks = face_landmark_vertices(v, mirror, joints[_pose.JOINT_NAMES.index("head")])
    return BodyTemplate(
        vertices=v, faces=f.astype(np.int64), joints=joints, parents=_pose.PARENTS.copy(),
        weights=weights, J_regressor=reg, shapedirs=shapedirs,
        posedirs=np.zeros((len(v), 3, NUM_POSE_BASIS)), face_part=face_part,
        mirror=mirror, face_mirror=face_mirror.astype(np.int64),
        keypoint_vertices=landmarks, version=f"{TEMPLATE_VERSION}-{_source_hash()}",
    )


def template_cache_path() -> Path:
    """Cache file of the current template code version."""
    return cache_dir() / "body" / f"template_v{TEMPLATE_VERSION}_{_source_hash()}.pkl"


@lru_cache(maxsize=1)
def get_template() -> BodyTemplate:
    """The body template, built once and cached on disk (pickled, written atomically)."""
    path = template_cache_path()
    if path.exists():
        try:
            with open(path, "rb") as fh:
                tpl = pickle.load(fh)
            if isinstance(tpl, BodyTemplate):
                return tpl
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
            logger.warning("Ignoring unreadable body template cache %s (%s)", path, e)
    logger.info("Building the body template (cached at %s)", path)
    tpl = build_template()
    with atomic_write(path, "wb") as fh:
        pickle.dump(tpl, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return tpl
