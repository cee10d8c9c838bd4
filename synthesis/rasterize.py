"""Vectorised z-buffer rasteriser for triangle meshes seen by a pinhole camera.

Returns, per pixel, which mesh and face is visible, the perspective-correct barycentric
coordinates of the pixel centre on that face, and its camera-space depth. Several meshes
(people) are rasterised together so that they occlude each other correctly.

Conventions (OpenCV): a world point X maps to camera coordinates ``x = R @ X + t`` with x to the
right, y down and z forward; its continuous image position is ``(u, v) = (K @ x)[:2] / z``.
Pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)`` and is sampled at its centre
``(col + 0.5, row + 0.5)``.

Algorithm: faces are projected, culled (behind the near plane, back-facing, off screen), and
bucketed by the size of their pixel bounding box. For each bucket every face is tested against
all candidate pixel centres of its box at once; covered candidates from all buckets are then
resolved with a scatter-min over depth (ties go to the lower global face index, so the result
is deterministic). There is no Python loop over faces or pixels, only over a handful of buckets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["Camera", "Fragments", "rasterize", "look_at_rotation"]

ArrayLike = Union[np.ndarray, torch.Tensor]

# Bounding-box side lengths (pixels) of the candidate grids; a face goes to the smallest size
# that holds its box. Steps of ~1.5x keep the wasted candidates per face small.
_BUCKET_SIDES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
                 1024, 1536, 2048, 3072, 4096)


@dataclass
class Camera:
    """Pinhole camera: intrinsics ``K`` (3,3), world-to-camera rotation ``R`` (3,3) and
    translation ``t`` (3,), image size in pixels. Units: metres and pixels."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 3) camera coordinates (z = depth along the view)."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def project(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(..., 3) world points -> continuous image coordinates (..., 2) and depth (...,)."""
        cam = self.world_to_camera(points)
        z = cam[..., 2]
        uvw = cam @ self.K.T
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = uvw[..., :2] / z[..., None]
        return uv, z

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t

    def to_dict(self) -> dict:
        """JSON-friendly ``{"K", "R", "t"}`` (lists of floats)."""
        return {"K": self.K.tolist(), "R": self.R.tolist(), "t": self.t.tolist()}


def look_at_rotation(forward: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """World-to-camera rotation for a camera looking along ``forward`` with world ``up`` up.

    Rows are the camera axes in world coordinates: x right, y down, z forward (OpenCV).
    """
    f = np.asarray(forward, dtype=np.float64)
    f = f / np.linalg.norm(f)
    right = np.cross(f, up)
    right = right / np.linalg.norm(right)
    down = np.cross(f, right)
    return np.stack([right, down, f])


@dataclass
class Fragments:
    """Per-pixel rasterisation result of an image of size (H, W).

    mesh:  (H, W) int64 index of the visible mesh, -1 for background.
    face:  (H, W) int64 index of the visible face within its mesh, -1 for background.
    bary:  (H, W, 3) float32 perspective-correct barycentrics of the pixel centre (0 background).
    depth: (H, W) float32 camera-space depth (z) of the visible surface, +inf for background.
    """

    mesh: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    depth: np.ndarray

    @property
    def foreground(self) -> np.ndarray:
        """(H, W) bool: pixels covered by any mesh."""
        return self.mesh >= 0


def _as_tensor(x: ArrayLike, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(dtype=dtype, device="cpu")
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def _stack_meshes(
    vertices: Sequence[ArrayLike], faces: Union[ArrayLike, Sequence[ArrayLike]]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate meshes: vertices (sumN,3), global faces (sumF,3), face->mesh, face offsets."""
    if isinstance(faces, (np.ndarray, torch.Tensor)):
        faces = [faces] * len(vertices)
    if len(faces) != len(vertices):
        raise ValueError(f"rasterize: got {len(vertices)} vertex arrays but {len(faces)} face arrays")
    verts_all: List[torch.Tensor] = []
    faces_all: List[torch.Tensor] = []
    mesh_of_face: List[torch.Tensor] = []
    face_offsets = [0]
    v_off = 0
    for i, (v, f) in enumerate(zip(vertices, faces)):
        v = _as_tensor(v, torch.float64)
        f = _as_tensor(f, torch.int64)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"rasterize: mesh {i} needs vertices (N,3) and faces (F,3), "
                             f"got {tuple(v.shape)} and {tuple(f.shape)}")
        verts_all.append(v)
        faces_all.append(f + v_off)
        mesh_of_face.append(torch.full((f.shape[0],), i, dtype=torch.int64))
        v_off += v.shape[0]
        face_offsets.append(face_offsets[-1] + f.shape[0])
    if not verts_all:
        return (torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.int64),
                torch.zeros(0, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))
    return (torch.cat(verts_all), torch.cat(faces_all), torch.cat(mesh_of_face),
            torch.tensor(face_offsets, dtype=torch.int64))


def rasterize(
    vertices: Sequence[ArrayLike],
    faces: Union[ArrayLike, Sequence[ArrayLike]],
    camera: Camera,
    cull_backfaces: bool = True,
    near: float = 1e-2,
) -> Fragments:
    """Rasterise several triangle meshes (world coordinates) into one image.

    Args:
        vertices: one (N_i, 3) array per mesh, world coordinates.
        faces: one (F_i, 3) int array per mesh, or a single array shared by all meshes.
        camera: the pinhole camera (gives the image size).
        cull_backfaces: skip faces whose front side (counter-clockwise winding seen from
            outside, i.e. outward normals) points away from the camera. Valid for closed meshes.
        near: faces with a vertex closer than this depth (metres) are dropped (no clipping).
    """
    H, W = int(camera.height), int(camera.width)
    verts, faces_g, mesh_of_face, face_offsets = _stack_meshes(vertices, faces)
    R = torch.as_tensor(camera.R, dtype=torch.float64)
    t = torch.as_tensor(camera.t, dtype=torch.float64)
    K = torch.as_tensor(camera.K, dtype=torch.float64)
    cam = verts @ R.T + t
    z = cam[:, 2]
    uv = (cam @ K.T)[:, :2] / z.clamp_min(near)[:, None]

    tri = cam[faces_g]  # (F,3,3) camera coords
    keep = (tri[:, :, 2] > near).all(dim=1)
    if cull_backfaces:
        normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        keep &= (normal * tri[:, 0]).sum(dim=1) < 0
    tri_uv = uv[faces_g]  # (F,3,2)
    lo = tri_uv.amin(dim=1)
    hi = tri_uv.amax(dim=1)
    # Pixel index ranges whose centres lie within the face's box.
    x0 = torch.ceil(lo[:, 0] - 0.5).clamp(min=0)
    y0 = torch.ceil(lo[:, 1] - 0.5).clamp(min=0)
    x1 = torch.floor(hi[:, 0] - 0.5).clamp(max=W - 1)
    y1 = torch.floor(hi[:, 1] - 0.5).clamp(max=H - 1)
    keep &= (x1 >= x0) & (y1 >= y0) & torch.isfinite(lo).all(dim=1) & torch.isfinite(hi).all(dim=1)
    fidx = torch.nonzero(keep).squeeze(1)

    depth_flat = torch.full((H * W,), float("inf"), dtype=torch.float64)
    face_flat = torch.full((H * W,), -1, dtype=torch.int64)
    bary_flat = torch.zeros((H * W, 3), dtype=torch.float64)
    if fidx.numel() > 0:
        x0i, y0i = x0[fidx].long(), y0[fidx].long()
        bw, bh = (x1[fidx].long() - x0i + 1), (y1[fidx].long() - y0i + 1)
        sides = torch.tensor(_BUCKET_SIDES, dtype=torch.int64)
        if int(max(bw.max(), bh.max())) > sides[-1]:
            raise ValueError(f"rasterize: a face spans more than {int(sides[-1])} pixels")
        kw = torch.searchsorted(sides, bw)  # smallest side >= box width
        kh = torch.searchsorted(sides, bh)
        key = kw * len(_BUCKET_SIDES) + kh
        cand_pix, cand_face, cand_b, cand_z = [], [], [], []
        for k in torch.unique(key).tolist():
            sel = torch.nonzero(key == k).squeeze(1)
            sw, sh = _BUCKET_SIDES[k // len(_BUCKET_SIDES)], _BUCKET_SIDES[k % len(_BUCKET_SIDES)]
            oy, ox = torch.meshgrid(torch.arange(sh), torch.arange(sw), indexing="ij")
            px = x0i[sel, None] + ox.reshape(1, -1)  # (Fb, S)
            py = y0i[sel, None] + oy.reshape(1, -1)
            valid = (px < (x0i[sel] + bw[sel])[:, None]) & (py < (y0i[sel] + bh[sel])[:, None])
            f = fidx[sel]
            b, zc, inside = _barycentrics(tri_uv[f], tri[f, :, 2], px + 0.5, py + 0.5)
            inside &= valid
            rows, cols = torch.nonzero(inside, as_tuple=True)
            cand_pix.append(py[rows, cols] * W + px[rows, cols])
            cand_face.append(f[rows])
            cand_b.append(b[rows, cols])
            cand_z.append(zc[rows, cols])
        pix = torch.cat(cand_pix)
        fid = torch.cat(cand_face)
        bcs = torch.cat(cand_b)
        zs = torch.cat(cand_z)
        depth_flat.scatter_reduce_(0, pix, zs, reduce="amin")
        win = zs == depth_flat[pix]
        best_face = torch.full((H * W,), torch.iinfo(torch.int64).max, dtype=torch.int64)
        best_face.scatter_reduce_(0, pix[win], fid[win], reduce="amin")
        win &= fid == best_face[pix]
        face_flat[pix[win]] = fid[win]
        bary_flat[pix[win]] = bcs[win]

    covered = face_flat >= 0
    mesh_flat = torch.full((H * W,), -1, dtype=torch.int64)
    mesh_flat[covered] = mesh_of_face[face_flat[covered]]
    local = face_flat.clone()
    local[covered] = face_flat[covered] - face_offsets[mesh_flat[covered]]
    return Fragments(
        mesh=mesh_flat.view(H, W).numpy(),
        face=local.view(H, W).numpy(),
        bary=bary_flat.view(H, W, 3).to(torch.float32).numpy(),
        depth=depth_flat.view(H, W).to(torch.float32).numpy(),
    )


def _barycentrics(
    tri_uv: torch.Tensor, tri_z: torch.Tensor, px: torch.Tensor, py: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Perspective-correct barycentrics of points (px, py) (Fb, S) in faces tri_uv (Fb,3,2).

    Returns bary (Fb,S,3), depth (Fb,S) and an inside mask (Fb,S). Screen-space weights are
    divided by the vertex depths and renormalised, which is exact for a pinhole projection.
    """
    a, b, c = tri_uv[:, 0, None, :], tri_uv[:, 1, None, :], tri_uv[:, 2, None, :]  # (Fb,1,2)
    area = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
    w0 = (b[..., 0] - px) * (c[..., 1] - py) - (b[..., 1] - py) * (c[..., 0] - px)
    w1 = (c[..., 0] - px) * (a[..., 1] - py) - (c[..., 1] - py) * (a[..., 0] - px)
    w2 = (a[..., 0] - px) * (b[..., 1] - py) - (a[..., 1] - py) * (b[..., 0] - px)
    nonzero = area.abs() > 1e-12
    inv_area = torch.where(nonzero, 1.0 / torch.where(nonzero, area, torch.ones_like(area)),
                           torch.zeros_like(area))
    screen = torch.stack([w0, w1, w2], dim=-1) * inv_area[..., None]  # (Fb,S,3)
    inside = (screen >= 0).all(dim=-1) & nonzero
    persp = screen / tri_z[:, None, :]
    total = persp.sum(dim=-1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    bary = persp / safe[..., None]
    depth = 1.0 / safe
    inside &= total > 0
    return bary, depth, inside
