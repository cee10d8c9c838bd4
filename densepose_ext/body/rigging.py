"""Rigging of the procedural body: bones, skinning weights, joint regressor and shape space.

Everything is computed from the rest-pose mesh and the designed skeleton (``SKELETON``), and
kept exactly left-right symmetric through the vertex ``mirror`` permutation.
"""
from typing import Tuple

import numpy as np
from scipy.optimize import nnls

from . import pose as _pose
from .template import EPS, NUM_BETAS, SKELETON, mesh_adjacency

__all__ = ["bones", "skinning_weights", "joint_regressor", "descendants",
           "shape_directions"]


def bones() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per joint the bone segment it rotates (start, end (24, 3)) and a nominal radius (24,)."""
    J = SKELETON
    idx = {n: i for i, n in enumerate(_pose.JOINT_NAMES)}
    start, end = J.copy(), J.copy()
    radius = np.zeros(len(J))
    # centre / left definitions: (end point, radius); right side mirrored below
    spec = {
        "pelvis": (None, 0.10), "spine1": (J[idx["spine2"]], 0.12),
        "spine2": (J[idx["spine3"]], 0.13), "spine3": (J[idx["neck"]], 0.12),
        "neck": (J[idx["head"]], 0.055), "head": (np.array([0.0, 1.70, 0.01]), 0.085),
        "left_hip": (J[idx["left_knee"]], 0.070), "left_knee": (J[idx["left_ankle"]], 0.045),
        "left_ankle": (J[idx["left_foot"]], 0.040),
        "left_foot": (np.array([0.130, 0.028, 0.170]), 0.028),
        "left_collar": (J[idx["left_shoulder"]], 0.060),
        "left_shoulder": (J[idx["left_elbow"]], 0.045),
        "left_elbow": (J[idx["left_wrist"]], 0.032), "left_wrist": (J[idx["left_hand"]], 0.025),
        "left_hand": (np.array([0.835, 1.398, -0.025]), 0.022),
    }
    for name, (e, r) in spec.items():
        i = idx[name]
        radius[i] = r
        if name == "pelvis":  # the pelvic girdle: a segment between the hips
            start[i] = J[idx["left_hip"]] * [-1, 1, 1] + [0, 0.03, 0]
            end[i] = J[idx["left_hip"]] + [0, 0.03, 0]
        else:
            end[i] = e
        if name.startswith("left_"):
            k = idx[name.replace("left_", "right_")]
            start[k], end[k], radius[k] = start[i] * [-1, 1, 1], end[i] * [-1, 1, 1], r
    return start, end, radius


def _project_onbones(v: np.ndarray, start: np.ndarray, end: np.ndarray
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Closest points on every bone (N, 24, 3) and their bone parameters t in [0, 1] (N, 24)."""
    d = end - start
    t = np.einsum("njk,jk->nj", v[:, None, :] - start[None], d) / np.maximum((d * d).sum(1), EPS)
    t = np.clip(t, 0.0, 1.0)
    return start[None] + t[..., None] * d[None], t


def skinning_weights(v: np.ndarray, f: np.ndarray, mirror: np.ndarray, blend: float = 0.05,
                      smooth_iterations: int = 6) -> np.ndarray:
    """Smooth LBS weights (N, 24) from surface distances to the bones, compact support.

    A bone gets weight phi((d - d_min) / blend) with d the distance to the bone minus its
    (tapered) radius and phi(t) = (1 - t)^2 (1 + 2 t) on [0, 1], 0 beyond; a few rounds of mesh
    averaging then soften the seams. Far-away bones keep exactly zero weight (so the other
    side of the body never follows a limb).
    """
    start, end, radius = bones()
    proj, t = _project_onbones(v, start, end)
    r_end = radius.copy()
    r_end[_pose.JOINT_NAMES.index("spine3")] = 0.07  # the chest narrows into the neck
    r = radius[None] + t * (r_end - radius)[None]
    d = np.linalg.norm(v[:, None, :] - proj, axis=2) - r
    t = np.clip((d - d.min(1, keepdims=True)) / blend, 0.0, 1.0)
    w = (1.0 - t) ** 2 * (1.0 + 2.0 * t)
    w = w / w.sum(1, keepdims=True)
    adj = mesh_adjacency(f, len(v))
    deg = np.asarray(adj.sum(1)).ravel()[:, None]
    for _ in range(smooth_iterations):
        w = 0.5 * w + 0.5 * (adj @ w) / deg
    w = 0.5 * (w + w[mirror][:, _pose.MIRROR_JOINTS])
    return w / w.sum(1, keepdims=True)


def joint_regressor(v: np.ndarray, mirror: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(24, N) non-negative, row-normalised weights over nearby vertices reproducing ``joints``.

    For each joint: NNLS over its k nearest surface vertices with a sum-to-one row and a small
    pull towards uniform weights (so a joint depends on a ring, not on two vertices); k grows
    until the joint is reproduced to 1e-4 m. Right joints reuse the mirrored left rows.
    """
    n = len(v)
    reg = np.zeros((len(joints), n))
    for j, name in enumerate(_pose.JOINT_NAMES):
        if name.startswith("right_"):
            continue
        dist = np.linalg.norm(v - joints[j], axis=1)
        for k in (24, 48, 96, 192, 384):
            nb = np.argsort(dist, kind="stable")[:k]
            s, mu = 100.0, 1e-2
            a = np.concatenate([s * v[nb].T, s * np.ones((1, k)), mu * np.eye(k)], 0)
            b = np.concatenate([s * joints[j], [s], np.full(k, mu / k)])
            w, _ = nnls(a, b, maxiter=50 * k)
            w = w / w.sum()
            if np.linalg.norm(w @ v[nb] - joints[j]) < 1e-4:
                break
        else:
            raise RuntimeError(f"joint regressor: cannot reproduce joint {name}")
        reg[j, nb] = w
        if name.startswith("left_"):
            reg[_pose.MIRROR_JOINTS[j], mirror] = reg[j]
        else:
            reg[j] = 0.5 * (reg[j] + reg[j, mirror])
    return reg


# ----------------------------------------------------------------------------- shape space
def descendants(j: int) -> np.ndarray:
    """Boolean mask of joint ``j`` and all joints below it in the tree."""
    mask = np.zeros(_pose.NUM_JOINTS, dtype=bool)
    mask[j] = True
    for k in range(_pose.NUM_JOINTS):  # parents precede children in SMPL order
        if _pose.PARENTS[k] >= 0 and mask[_pose.PARENTS[k]]:
            mask[k] = True
    return mask


def shape_directions(v: np.ndarray, w: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """(N, 3, 10) smooth shape directions per unit beta (betas in [-3, 3] stay plausible).

    0 overall size (height), 1 girth / weight, 2 limb length, 3 shoulder width, 4 hip width,
    5 belly, 6 leg-to-torso proportion, 7 head size, 8 chest depth, 9 limb muscularity.
    Built from joint displacements interpolated along the bones and radial offsets from the
    bone axes, both blended by the skinning weights, so each direction is smooth.
    """
    idx = {n: i for i, n in enumerate(_pose.JOINT_NAMES)}
    J = SKELETON
    start, end, _ = bones()
    proj, t = _project_onbones(v, start, end)
    radial = v[:, None, :] - proj  # (N, 24, 3) offset from each bone axis
    children = {j: [k for k in range(24) if _pose.PARENTS[k] == j] for j in range(24)}

    def follow(D: np.ndarray) -> np.ndarray:
        """Vertex field of joint displacements D (24, 3), interpolated along each bone."""
        E = np.stack([D[children[j][0]] if len(children[j]) == 1 else D[j] for j in range(24)])
        per_bone = D[None] + t[..., None] * (E - D)[None]
        return np.einsum("nj,njk->nk", w, per_bone)

    def swell(gain: np.ndarray, axes=(1.0, 1.0, 1.0)) -> np.ndarray:
        """Radial growth away from the bone axes with per-joint gains (24,)."""
        return np.einsum("nj,njk->nk", w * gain[None], radial) * np.asarray(axes)

    def gains(**kw: float) -> np.ndarray:
        g = np.zeros(24)
        for name, val in kw.items():
            for side in ("left_", "right_", ""):
                if side + name in idx:
                    g[idx[side + name]] = val
        return g

    def lengthen(names: Tuple[str, ...], frac: float) -> np.ndarray:
        """Joint displacements when the bones starting at ``names`` grow by ``frac``."""
        D = np.zeros((24, 3))
        for name in names:
            for side in ("left_", "right_"):
                j = idx[side + name]
                child = children[j][0]
                D[descendants(child)] += frac * (J[child] - J[j])
        return D

    dirs = np.zeros((len(v), 3, NUM_BETAS))
    dirs[:, :, 0] = 0.03 * v  # uniform size about the soles' centre: +-9 % at beta = +-3
    torso_g = gains(pelvis=1.0, spine1=1.2, spine2=1.1, spine3=0.9, neck=0.5, collar=0.7,
                    hip=0.9, knee=0.7, shoulder=0.8, elbow=0.7, head=0.15, ankle=0.3,
                    wrist=0.3, foot=0.2, hand=0.2)
    dirs[:, :, 1] = swell(0.07 * torso_g)
    dirs[:, :, 2] = follow(lengthen(("shoulder", "elbow", "hip", "knee"), 0.025))
    D = np.zeros((24, 3))
    D[descendants(idx["left_shoulder"])] = [0.012, 0, 0]
    D[descendants(idx["right_shoulder"])] = [-0.012, 0, 0]
    dirs[:, :, 3] = follow(D) + swell(0.08 * gains(spine3=1.0, collar=1.0), (1.0, 0.0, 0.0))
    D = np.zeros((24, 3))
    D[descendants(idx["left_hip"])] = [0.008, 0, 0]
    D[descendants(idx["right_hip"])] = [-0.008, 0, 0]
    dirs[:, :, 4] = follow(D) + swell(0.09 * gains(pelvis=1.0, hip=0.6), (1.0, 0.2, 0.3))
    front = np.clip(swell(gains(spine1=1.0, spine2=0.8, pelvis=0.5), (0, 0, 1.0)), 0, None)
    dirs[:, :, 5] = 0.12 * front
    D = lengthen(("hip", "knee"), 0.02)
    for name in ("spine1", "spine2", "spine3", "neck"):
        j = idx[name]
        D[descendants(children[j][0])] -= 0.04 * (J[children[j][0]] - J[j])
    dirs[:, :, 6] = follow(D)
    head_c = np.array([0.0, 1.63, 0.01])
    dirs[:, :, 7] = 0.035 * (v - head_c) * (w[:, [idx["head"]]] + 0.5 * w[:, [idx["neck"]]])
    dirs[:, :, 8] = swell(0.06 * gains(spine2=1.0, spine3=1.0, spine1=0.5), (0.2, 0.0, 1.0))
    dirs[:, :, 9] = swell(0.06 * gains(shoulder=1.0, elbow=0.8, hip=0.8, knee=1.0))
    # keep the soles on the floor (first order) and make every direction exactly symmetric
    soles = v[:, 1] < 0.01
    dirs[:, 1, 1:] -= dirs[soles, 1, 1:].mean(0)
    s = np.array([-1.0, 1.0, 1.0])[None, :, None]
    return 0.5 * (dirs + dirs[mirror] * s)
