"""The 24 DensePose fine parts on the body template's faces, and related label tables.

Segments are cut from the rest (T-pose) geometry by planes through the SMPL joints (arms along
+-x, legs along -y), then every segment is split into two halves:

* torso and limbs: the lower-numbered part of a pair is the BACK half (z below the bone axis),
  the higher-numbered one the FRONT half (e.g. 1 torso back, 2 torso front, 15 upper arm left
  back, 17 upper arm left front);
* head: 23 is the person's RIGHT half (x < 0), 24 the LEFT half (x > 0), which is why a
  horizontal flip swaps 23 and 24.

Labels are computed on the left half of the mesh and mirrored, so they are exactly
mirror-consistent; every part is one edge-connected region.
"""
from typing import Dict, Tuple

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from .pose import JOINT_NAMES

__all__ = [
    "PART_NAMES",
    "FLIP_PERMUTATION",
    "FINE_TO_COARSE",
    "COARSE_FLIP_PERMUTATION",
    "COARSE_PART_NAMES",
    "assign_face_parts",
    "face_adjacency",
    "flip_parts",
]

#: fine part id (1..24) -> name
PART_NAMES: Dict[int, str] = {
    1: "torso_back", 2: "torso_front", 3: "right_hand", 4: "left_hand", 5: "left_foot",
    6: "right_foot", 7: "upper_leg_right_back", 8: "upper_leg_left_back",
    9: "upper_leg_right_front", 10: "upper_leg_left_front", 11: "lower_leg_right_back",
    12: "lower_leg_left_back", 13: "lower_leg_right_front", 14: "lower_leg_left_front",
    15: "upper_arm_left_back", 16: "upper_arm_right_back", 17: "upper_arm_left_front",
    18: "upper_arm_right_front", 19: "lower_arm_left_back", 20: "lower_arm_right_back",
    21: "lower_arm_left_front", 22: "lower_arm_right_front", 23: "head_right", 24: "head_left",
}

#: index = fine part (0..24, 0 background) -> part after a horizontal (left/right) flip
FLIP_PERMUTATION = np.array(
    [0, 1, 2, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19, 22, 21, 24, 23],
    dtype=np.int64,
)

#: index = fine part (0..24) -> coarse part of ``dp_masks`` (1..14, 0 background)
FINE_TO_COARSE = np.array(
    [0, 1, 1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 14],
    dtype=np.int64,
)

#: index = coarse part (0..14) -> coarse part after a horizontal flip
COARSE_FLIP_PERMUTATION = np.array(
    [0, 1, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 14], dtype=np.int64
)

COARSE_PART_NAMES: Dict[int, str] = {
    1: "torso", 2: "right_hand", 3: "left_hand", 4: "left_foot", 5: "right_foot",
    6: "upper_leg_right", 7: "upper_leg_left", 8: "lower_leg_right", 9: "lower_leg_left",
    10: "upper_arm_left", 11: "upper_arm_right", 12: "lower_arm_left", 13: "lower_arm_right",
    14: "head",
}

# left-side (back, front) fine parts per limb segment; the torso is (1, 2)
_LEFT_SEGMENTS: Dict[str, Tuple[int, int]] = {
    "upper_arm": (15, 17), "lower_arm": (19, 21), "upper_leg": (8, 10), "lower_leg": (12, 14),
}


def flip_parts(parts: np.ndarray) -> np.ndarray:
    """Fine part labels after a horizontal flip (0 stays background)."""
    return FLIP_PERMUTATION[np.asarray(parts, dtype=np.int64)]


def face_adjacency(faces: np.ndarray) -> sparse.csr_matrix:
    """(F, F) 0/1 matrix: faces sharing an edge (a closed manifold gives 3 per face)."""
    faces = np.asarray(faces, dtype=np.int64)
    n = int(faces.max()) + 1
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    key = np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])
    owner = np.tile(np.arange(len(faces)), 3)
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    same = np.nonzero(key[1:] == key[:-1])[0]
    i, j = owner[same], owner[same + 1]
    a = sparse.coo_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])),
                          shape=(len(faces),) * 2).tocsr()
    a.data[:] = 1.0
    return a


def _segment_left(c: np.ndarray, J: np.ndarray) -> np.ndarray:
    """Fine part of left-half face centroids ``c`` (K, 3) given joints ``J`` (24, 3)."""
    j = {n: J[i] for i, n in enumerate(JOINT_NAMES)}
    x, y, z = c[:, 0], c[:, 1], c[:, 2]
    part = np.zeros(len(c), dtype=np.int64)

    # torso (default): back/front about the spine's z at that height
    spine = np.stack([j["pelvis"], j["spine1"], j["spine2"], j["spine3"], j["neck"]])
    z_axis = np.interp(y, spine[:, 1], spine[:, 2])
    part[:] = np.where(z > z_axis, 2, 1)

    # legs: below the groin line rising from the crotch to the side of the hip
    crotch_y = j["left_hip"][1] - 0.07
    leg = y < crotch_y + 0.9 * x
    bone_z = np.interp(-y, -np.array([j["left_hip"][1], j["left_knee"][1], j["left_ankle"][1]]),
                       np.array([j["left_hip"][2], j["left_knee"][2], j["left_ankle"][2]]))
    front = z > bone_z
    upper = leg & (y >= j["left_knee"][1])
    lower = leg & (y < j["left_knee"][1]) & (y >= j["left_ankle"][1] + 0.005)
    foot = leg & (y < j["left_ankle"][1] + 0.005)
    part[upper] = np.where(front[upper], *_LEFT_SEGMENTS["upper_leg"][::-1])
    part[lower] = np.where(front[lower], *_LEFT_SEGMENTS["lower_leg"][::-1])
    part[foot] = 5

    # arms: lateral of the shoulder joint, at shoulder height
    arm = (x > j["left_shoulder"][0] - 0.01) & (y > j["left_shoulder"][1] - 0.15)
    arm_z = np.interp(x, [j["left_shoulder"][0], j["left_elbow"][0], j["left_wrist"][0]],
                      [j["left_shoulder"][2], j["left_elbow"][2], j["left_wrist"][2]])
    front = z > arm_z
    ua = arm & (x < j["left_elbow"][0])
    la = arm & (x >= j["left_elbow"][0]) & (x < j["left_wrist"][0])
    part[ua] = np.where(front[ua], *_LEFT_SEGMENTS["upper_arm"][::-1])
    part[la] = np.where(front[la], *_LEFT_SEGMENTS["lower_arm"][::-1])
    part[arm & (x >= j["left_wrist"][0])] = 4

    # head (with the upper neck): above the neck joint, inside the neck's width
    head = (y > j["neck"][1]) & (x < 0.5 * (j["left_collar"][0] + j["left_shoulder"][0]))
    part[head & ~arm] = 24
    return part


def _make_connected(part: np.ndarray, adj: sparse.csr_matrix, left: np.ndarray,
                    face_mirror: np.ndarray, max_passes: int = 20) -> np.ndarray:
    """Give every part one connected region: stray islands join their main neighbour part."""
    part = part.copy()
    src = adj.tocoo()
    for _ in range(max_passes):
        changed = False
        for p in range(1, 25):
            faces = np.nonzero(part == p)[0]
            if len(faces) == 0:
                continue
            sub = adj[faces][:, faces]
            n, lab = connected_components(sub, directed=False)
            if n <= 1:
                continue
            keep = np.argmax(np.bincount(lab))
            stray = faces[lab != keep]
            stray = stray[left[stray]]  # decide on the left, mirror below
            # majority label among neighbours of each stray face, other than p
            mask = np.isin(src.row, stray) & (part[src.col] != p)
            votes = sparse.coo_matrix((np.ones(mask.sum()), (src.row[mask], part[src.col[mask]])),
                                      shape=(len(part), 25)).tocsr()
            best = np.asarray(votes[stray].argmax(1)).ravel()
            ok = np.asarray(votes[stray].max(1).todense()).ravel() > 0
            part[stray[ok]] = best[ok]
            changed |= bool(ok.any())
            part[face_mirror[left]] = FLIP_PERMUTATION[part[left]]
        if not changed:
            break
    return part


def assign_face_parts(vertices: np.ndarray, faces: np.ndarray, joints: np.ndarray,
                      face_mirror: np.ndarray) -> np.ndarray:
    """DensePose fine part (F,) int64 in 1..24 of every face of a rest-pose (T-pose) mesh.

    ``face_mirror[f]`` is the mirror image of face ``f``; faces with centroid x > 0 are
    labelled geometrically and their mirror images get the flipped label.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    cent = vertices[faces].mean(1)
    left = cent[:, 0] > 0
    if not np.array_equal(left[face_mirror], ~left) or np.any(cent[:, 0] == 0):
        raise ValueError("assign_face_parts: faces must lie on one side of x = 0 and "
                         "face_mirror must map each side onto the other")
    part = np.zeros(len(faces), dtype=np.int64)
    part[left] = _segment_left(cent[left], np.asarray(joints, dtype=np.float64))
    part[face_mirror[left]] = FLIP_PERMUTATION[part[left]]
    part = _make_connected(part, face_adjacency(faces), left, face_mirror)
    if part.min() < 1:
        raise RuntimeError("assign_face_parts: some faces were left unlabelled")
    return part
