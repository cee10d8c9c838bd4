"""Procedural SMPL-format body template: the surface (assembled with the rigging and cached by
:mod:`.assembly`).

The surface is the zero level set of a smooth union of round cones and ellipsoids laid along
the SMPL skeleton, meshed by marching cubes on the person's left half (x >= 0) and mirrored, so
the mesh is exactly left-right symmetric, closed and manifold. Coordinates: metres, y up, the
body faces +z, the person's left is +x, the **pelvis joint is at the origin** (soles at about
y = -0.95). The model has no pose correctives (``posedirs`` is zero).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
from scipy import sparse

from . import pose as _pose

__all__ = ["BodyTemplate", "TEMPLATE_VERSION", "NUM_BETAS", "SKELETON", "EPS", "body_field",
           "vertex_normals", "mesh_adjacency", "mesh_symmetric", "relax"]

#: bump by hand for changes the source hash would not see (e.g. dependency behaviour)
TEMPLATE_VERSION = "1"
NUM_BETAS = 10
NUM_POSE_BASIS = 207
GRID_SPACING = 0.0215  # marching-cubes voxel (m); sets the vertex count (~5000)
EPS = 1e-12


@dataclass
class BodyTemplate:
    """The body model in SMPL layout plus our DensePose part labels and symmetry."""

    vertices: np.ndarray  # (N, 3) float64 rest pose (T-pose)
    faces: np.ndarray  # (F, 3) int64, outward (counter-clockwise seen from outside)
    joints: np.ndarray  # (24, 3) float64 == J_regressor @ vertices
    parents: np.ndarray  # (24,) int64, SMPL tree, -1 for the root
    weights: np.ndarray  # (N, 24) float64 LBS weights, rows sum to 1
    J_regressor: np.ndarray  # (24, N) float64, rows >= 0 summing to 1
    shapedirs: np.ndarray  # (N, 3, 10) float64 shape blend directions (per unit beta)
    posedirs: np.ndarray  # (N, 3, 207) float64, all zero: no pose correctives
    face_part: np.ndarray  # (F,) int64 DensePose fine part 1..24
    mirror: np.ndarray  # (N,) int64: vertices[mirror] == vertices * [-1, 1, 1]
    face_mirror: np.ndarray  # (F,) int64: the mirror image of face f is face face_mirror[f]
    keypoint_vertices: Dict[str, int] = field(default_factory=dict)  # face landmarks etc.
    version: str = ""

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if not state["posedirs"].any():  # all zero: do not store 25 MB of zeros in the cache
            state["posedirs"] = state["posedirs"].shape
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["posedirs"], tuple):
            state["posedirs"] = np.zeros(state["posedirs"])
        self.__dict__.update(state)

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def height(self) -> float:
        """Rest-pose height (m): top of the head to the soles."""
        return float(np.ptp(self.vertices[:, 1]))


# ----------------------------------------------------------------------------- skeleton
# Designed joint positions (left and centre joints; right = mirrored), metres, soles at y = 0.
_LEFT_AND_CENTRE_JOINTS: Dict[str, Tuple[float, float, float]] = {
    "pelvis": (0.0, 0.950, -0.005),
    "left_hip": (0.088, 0.870, -0.005),
    "spine1": (0.0, 1.060, -0.015),
    "left_knee": (0.104, 0.490, 0.005),
    "spine2": (0.0, 1.185, -0.015),
    "left_ankle": (0.118, 0.085, -0.025),
    "spine3": (0.0, 1.250, -0.010),
    "left_foot": (0.126, 0.025, 0.105),
    "neck": (0.0, 1.470, -0.025),
    "left_collar": (0.075, 1.395, -0.015),
    "head": (0.0, 1.575, 0.000),
    "left_shoulder": (0.185, 1.405, -0.025),
    "left_elbow": (0.445, 1.405, -0.030),
    "left_wrist": (0.680, 1.405, -0.025),
    "left_hand": (0.770, 1.400, -0.025),
}


def _skeleton() -> np.ndarray:
    """(24, 3) designed joint positions (soles at y = 0), exactly mirror symmetric."""
    joints = np.zeros((_pose.NUM_JOINTS, 3))
    for j, name in enumerate(_pose.JOINT_NAMES):
        if name.startswith("right_"):
            joints[j] = np.array(_LEFT_AND_CENTRE_JOINTS[name.replace("right_", "left_")])
            joints[j, 0] *= -1.0
        else:
            joints[j] = _LEFT_AND_CENTRE_JOINTS[name]
    return joints


#: (24, 3) designed skeleton, soles at y = 0 (the template is shifted so the pelvis is at 0)
SKELETON = _skeleton()


# ----------------------------------------------------------------------------- primitives
@dataclass(frozen=True)
class _Primitive:
    """One solid of the body: a round cone (a->b, radii ra->rb) or an ellipsoid (centre a)."""

    kind: str  # "cone" | "ellipsoid"
    a: Tuple[float, float, float]
    b: Tuple[float, float, float]  # cone end, or ellipsoid radii
    ra: float = 0.0
    rb: float = 0.0
    blend: float = 0.02  # smooth-union radius (m) with what came before


def _mirror_point(p: Tuple[float, float, float]) -> Tuple[float, float, float]:
    return (-p[0], p[1], p[2])


def _primitives() -> List[_Primitive]:
    """The solids of the body, centre ones once, left ones followed by their mirror images."""
    J = {n: tuple(SKELETON[i]) for i, n in enumerate(_pose.JOINT_NAMES)}
    E, C = "ellipsoid", "cone"
    centre = [
        _Primitive(E, (0.0, 0.935, -0.012), (0.165, 0.125, 0.110), blend=0.0),  # pelvis
        _Primitive(E, (0.0, 1.075, -0.004), (0.145, 0.150, 0.102), blend=0.07),  # abdomen
        _Primitive(E, (0.0, 1.265, -0.010), (0.168, 0.150, 0.110), blend=0.07),  # chest
        _Primitive(E, (0.0, 1.370, -0.022), (0.165, 0.070, 0.088), blend=0.05),  # upper chest
        _Primitive(C, (0.0, 1.400, -0.030), (0.0, 1.560, -0.008), 0.058, 0.050, 0.04),  # neck
        _Primitive(E, (0.0, 1.640, 0.008), (0.077, 0.104, 0.095), blend=0.03),  # cranium
        _Primitive(E, (0.0, 1.588, 0.038), (0.058, 0.052, 0.060), blend=0.03),  # jaw
        _Primitive(E, (0.0, 1.628, 0.100), (0.014, 0.024, 0.018), blend=0.015),  # nose
    ]
    left = [
        _Primitive(E, (0.074, 1.635, 0.000), (0.014, 0.028, 0.020), blend=0.012),  # ear
        _Primitive(C, (0.070, 1.395, -0.025), (0.175, 1.405, -0.025), 0.060, 0.055, 0.05),
        _Primitive(C, J["left_shoulder"], J["left_elbow"], 0.052, 0.039, 0.04),  # upper arm
        _Primitive(C, J["left_elbow"], J["left_wrist"], 0.037, 0.027, 0.02),  # lower arm
        _Primitive(E, (0.757, 1.398, -0.025), (0.085, 0.022, 0.047), blend=0.02),  # mitten
        _Primitive(C, (0.710, 1.393, 0.012), (0.765, 1.391, 0.058), 0.015, 0.013, 0.015),
        _Primitive(E, (0.065, 0.905, -0.065), (0.080, 0.085, 0.065), blend=0.04),  # buttock
        _Primitive(C, J["left_hip"], J["left_knee"], 0.087, 0.055, 0.04),  # thigh
        _Primitive(C, J["left_knee"], J["left_ankle"], 0.052, 0.035, 0.02),  # shin
        _Primitive(E, (0.106, 0.355, -0.020), (0.048, 0.105, 0.050), blend=0.03),  # calf
        _Primitive(C, (0.118, 0.040, -0.045), (0.130, 0.028, 0.150), 0.040, 0.028, 0.025),
    ]
    out = list(centre)
    for p in left:
        out.append(p)
    for p in left:
        if p.kind == C:
            out.append(_Primitive(C, _mirror_point(p.a), _mirror_point(p.b), p.ra, p.rb, p.blend))
        else:
            out.append(_Primitive(E, _mirror_point(p.a), p.b, blend=p.blend))
    return out


def _sd_primitive(p: _Primitive, pts: np.ndarray) -> np.ndarray:
    """Approximate signed distance (negative inside) of points (P, 3) to one primitive."""
    a = np.asarray(p.a)
    if p.kind == "ellipsoid":
        r = np.asarray(p.b)
        q = pts - a
        k0 = np.linalg.norm(q / r, axis=1)
        k1 = np.linalg.norm(q / (r * r), axis=1)
        return k0 * (k0 - 1.0) / np.maximum(k1, EPS)
    b = np.asarray(p.b)
    ba = b - a
    t = np.clip((pts - a) @ ba / float(ba @ ba), 0.0, 1.0)
    d = np.linalg.norm(pts - a - t[:, None] * ba, axis=1)
    return d - (p.ra + (p.rb - p.ra) * t)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum with blend radius ``k`` (plain min when k == 0)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def body_field(pts: np.ndarray) -> np.ndarray:
    """Signed body field at points (P, 3) in soles-at-0 coordinates (negative inside)."""
    prims = _primitives()
    d = _sd_primitive(prims[0], pts)
    for p in prims[1:]:
        d = _smin(d, _sd_primitive(p, pts), p.blend)
    return d


# ----------------------------------------------------------------------------- meshing
def mesh_symmetric(spacing: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Marching cubes on the x >= 0 half, mirrored and welded on the x = 0 plane.

    Returns vertices, faces, the vertex mirror permutation and ``F_half``: faces
    ``[0, F_half)`` lie on the left (x >= 0), face ``f + F_half`` is the mirror of face ``f``.
    """
    from skimage.measure import marching_cubes  # heavy: only when the template is built

    lo = np.array([0.0, -0.03, -0.20])
    hi = np.array([0.90, 1.80, 0.26])
    n = np.ceil((hi - lo) / spacing).astype(int) + 1
    axes = [lo[i] + spacing * np.arange(n[i]) for i in range(3)]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")
    vol = body_field(np.stack([X.ravel(), Y.ravel(), Z.ravel()], 1)).reshape(X.shape)
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(spacing,) * 3,
                                        allow_degenerate=False)
    verts = verts + lo
    on_plane = verts[:, 0] == 0.0
    # orient outward: the closed full mesh must have positive signed volume; the half's
    # contribution has the same sign (the mirrored half adds the same amount)
    tri = verts[faces]
    if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() < 0:
        faces = faces[:, ::-1]
    nh = len(verts)
    # mirrored copy: plane vertices are shared, the others get new indices
    mirror_idx = np.where(on_plane, np.arange(nh), nh + np.cumsum(~on_plane) - 1)
    right = verts[~on_plane] * np.array([-1.0, 1.0, 1.0])
    all_verts = np.concatenate([verts, right], 0)
    faces_r = mirror_idx[faces][:, ::-1]
    all_faces = np.concatenate([faces, faces_r], 0).astype(np.int64)
    mirror = np.concatenate([mirror_idx, np.nonzero(~on_plane)[0]]).astype(np.int64)
    return all_verts, all_faces, mirror, len(faces)


def vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(N,3) area-weighted unit vertex normals of a triangle mesh."""
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), EPS)


def mesh_adjacency(f: np.ndarray, n: int) -> sparse.csr_matrix:
    """Symmetric 0/1 vertex adjacency matrix of a triangle mesh."""
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    a = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    a.data[:] = 1.0
    return a


def _project_to_surface(v: np.ndarray, steps: int = 3) -> np.ndarray:
    """Newton steps along the field gradient onto the zero level set."""
    e = 1e-4
    for _ in range(steps):
        d = body_field(v)
        g = np.stack([(body_field(v + e * ax) - body_field(v - e * ax)) / (2 * e)
                      for ax in np.eye(3)], 1)
        v = v - (d / np.maximum((g * g).sum(1), EPS))[:, None] * g
    return v


def relax(v: np.ndarray, f: np.ndarray, mirror: np.ndarray, iterations: int,
           spacing: float) -> np.ndarray:
    """Tangential Laplacian relaxation + reprojection: evens out marching-cubes slivers.

    The result stays exactly mirror symmetric; vertices keep their side of the x = 0 plane.
    """
    adj = mesh_adjacency(f, len(v))
    deg = np.asarray(adj.sum(1)).ravel()
    s = np.array([-1.0, 1.0, 1.0])
    x_floor = np.where(v[:, 0] > 0, np.minimum(np.abs(v[:, 0]), 0.3 * spacing) * 0.5, -np.inf)
    x_ceil = np.where(v[:, 0] < 0, -np.minimum(np.abs(v[:, 0]), 0.3 * spacing) * 0.5, np.inf)
    plane = v[:, 0] == 0.0
    for _ in range(iterations):
        n = vertex_normals(v, f)
        d = adj @ v / deg[:, None] - v
        d -= (d * n).sum(1, keepdims=True) * n
        v = _project_to_surface(v + 0.5 * d)
        v[:, 0] = np.clip(v[:, 0], x_floor, x_ceil)
        v[plane, 0] = 0.0
        v = 0.5 * (v + v[mirror] * s)
    return v
