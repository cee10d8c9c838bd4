"""The 17 COCO person keypoints on the body model: face points on the surface, body at joints.

Face keypoints (nose, eyes, ears) are fixed surface vertices of the head, chosen once when the
template is built (``BodyTemplate.keypoint_vertices``); shoulders, elbows, wrists, knees and
ankles are the SMPL joints; COCO hips sit a little lower and wider than SMPL hip joints (as
annotators mark them), so they are the hip joints pushed 25 % further from the pelvis.
"""
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .assembly import get_template
from .pose import JOINT_NAMES

__all__ = ["COCO_KEYPOINT_NAMES", "COCO_SKELETON", "COCO_FLIP_MAP", "COCO_FLIP_INDEX",
           "COCO_KEYPOINT_SOURCES", "keypoint_surface_vertex", "coco_keypoints"]

COCO_KEYPOINT_NAMES: Tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
#: limb connections, 1-based keypoint indices, as in the COCO person category
COCO_SKELETON: Tuple[Tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)
#: left/right keypoint name pairs swapped by a horizontal flip (detectron2's format)
COCO_FLIP_MAP: Tuple[Tuple[str, str], ...] = tuple(
    (n, n.replace("left_", "right_")) for n in COCO_KEYPOINT_NAMES if n.startswith("left_")
)
#: index permutation of the 17 keypoints under a horizontal flip
COCO_FLIP_INDEX = np.array(
    [COCO_KEYPOINT_NAMES.index(n.replace("left_", "#").replace("right_", "left_")
                               .replace("#", "right_")) for n in COCO_KEYPOINT_NAMES],
    dtype=np.int64,
)
_FACE = COCO_KEYPOINT_NAMES[:5]
_HIP_OFFSET = 0.25
#: keypoint -> ("vertex", name) for surface points or ("joint", SMPL joint index)
COCO_KEYPOINT_SOURCES: Dict[str, Tuple[str, object]] = {
    **{n: ("vertex", n) for n in _FACE},
    **{n: ("joint", JOINT_NAMES.index(n)) for n in COCO_KEYPOINT_NAMES[5:]
       if n in JOINT_NAMES},
    "left_hip": ("joint", JOINT_NAMES.index("left_hip")),
    "right_hip": ("joint", JOINT_NAMES.index("right_hip")),
}


def keypoint_surface_vertex(vertex_ids: Optional[Dict[str, int]] = None) -> np.ndarray:
    """(17,) int64: the mesh vertex of each surface keypoint, -1 for joint keypoints.

    A renderer marks a surface keypoint visible when its vertex is visible, and a joint
    keypoint by its own rule (e.g. the nearest body part being visible). ``vertex_ids``
    (name -> vertex) defaults to the built-in template's face landmarks.
    """
    if vertex_ids is None:
        vertex_ids = get_template().keypoint_vertices
    out = np.full(len(COCO_KEYPOINT_NAMES), -1, dtype=np.int64)
    for k, name in enumerate(_FACE):
        out[k] = int(vertex_ids[name])
    return out


def coco_keypoints(vertices, joints, vertex_ids: Optional[Dict[str, int]] = None):
    """COCO keypoints (B, 17, 3) from posed vertices (B, N, 3) and SMPL joints (B, 24, 3).

    Works on numpy arrays and torch tensors alike (returns the same kind).
    """
    surf = keypoint_surface_vertex(vertex_ids)[: len(_FACE)]
    j = {n: JOINT_NAMES.index(n) for n in JOINT_NAMES}
    parts = [vertices[:, int(i)] for i in surf]
    for name in COCO_KEYPOINT_NAMES[5:]:
        if name.endswith("_hip"):
            hip, pelvis = joints[:, j[name]], joints[:, j["pelvis"]]
            parts.append(hip + _HIP_OFFSET * (hip - pelvis))
        else:
            parts.append(joints[:, j[name]])
    if isinstance(vertices, np.ndarray):
        return np.stack(parts, axis=1)

    return torch.stack(parts, dim=1)
