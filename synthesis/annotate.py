"""DensePose-COCO annotation records from rendered maps.

For every person whose visible area reaches ``MIN_VISIBLE_AREA`` pixels we build a record like
the real DensePose-COCO files: visible-mask bbox, polygons, area, 17 keypoints with
visibility, ~100 DensePose points sampled evenly per part (exact I, U, V at their pixels) and
the 14 coarse part masks in the 256x256 box frame. Persons below the minimum get no record;
their pixels keep their IUV in the dense maps with instance id 0 ("not annotated").

Box frame: a point (dp_x, dp_y) in [0, 256) maps to the image position
``x = x0 + dp_x * w / 256`` (same for y); every sampled point sits at the centre of its pixel,
so ``(floor(x), floor(y))`` is the pixel it was read from.

Extra fields (the real data lacks them): ``smpl`` (betas, body_pose, global_orient, transl in
the world frame) and ``joints_3d`` (24x3 SMPL joints in camera coordinates, metres).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from densepose_ext.body.parts import FINE_TO_COARSE
from densepose_ext.structures import (FRAME_SIZE, encode_dp_masks, mask_to_polygons,
                                      num_annotation_points, sample_annotation_points)

from .rasterize import Camera, Fragments
from .scene import BodyAssets, Scene

__all__ = ["MIN_VISIBLE_AREA", "FINE_TO_COARSE", "DenseMaps", "dense_maps", "annotate_scene",
           "annotation_id", "box_frame_masks", "MAX_PEOPLE_PER_IMAGE"]

MIN_VISIBLE_AREA = 100  # pixels; smaller visible persons get no annotation record
SURFACE_DEPTH_TOL = 0.03  # metres: a surface keypoint within this of the z-buffer is visible
SELF_OCCLUSION_MARGIN = 0.2  # metres: a joint is self-occluded if its own surface is further in front
NEAREST_SURFACE_K = 12  # surface vertices checked around a joint keypoint
MAX_PEOPLE_PER_IMAGE = 99  # annotation ids are image_id * 100 + person index (1-based)


def annotation_id(image_id: int, person_index: int) -> int:
    """Deterministic annotation id of person ``person_index`` (0-based) in image ``image_id``."""
    return int(image_id) * (MAX_PEOPLE_PER_IMAGE + 1) + int(person_index) + 1


@dataclass
class DenseMaps:
    """Exact per-pixel DensePose labels: I (H,W) uint8 in 0..24, U, V (H,W) float32."""

    I: np.ndarray
    U: np.ndarray
    V: np.ndarray


def dense_maps(frags: Fragments, body: BodyAssets) -> DenseMaps:
    """IUV of the visible surface at every pixel (0 on background)."""
    H, W = frags.mesh.shape
    I = np.zeros((H, W), np.uint8)
    U = np.zeros((H, W), np.float32)
    V = np.zeros((H, W), np.float32)
    fg = frags.mesh >= 0
    if fg.any():
        i, u, v = body.surface_to_iuv(frags.face[fg], frags.bary[fg].astype(np.float64))
        I[fg] = np.asarray(i, dtype=np.uint8)
        U[fg] = u
        V[fg] = v
    return DenseMaps(I=I, U=U, V=V)


def box_frame_masks(coarse: np.ndarray, x0: int, y0: int, w: int, h: int) -> List:
    """14 coarse part masks of the box resampled (nearest) to 256x256, as COCO RLE or []."""
    g = (np.arange(FRAME_SIZE) + 0.5) / FRAME_SIZE
    cols = np.clip(np.floor(x0 + g * w).astype(np.int64), x0, x0 + w - 1)
    rows = np.clip(np.floor(y0 + g * h).astype(np.int64), y0, y0 + h - 1)
    return encode_dp_masks(coarse[rows[:, None], cols[None, :]])


def keypoint_visibility(
    body: BodyAssets, frags: Fragments, camera: Camera, person: int, vertices: np.ndarray,
    joints: np.ndarray,
) -> np.ndarray:
    """(17,3) COCO keypoints [x, y, v] of one person (image pixels; v in {0,1,2}).

    Coordinates follow COCO's convention of pixel indices (the centre of pixel (c, r) is
    (c, r)), i.e. the continuous projection minus 0.5, which is what detectron2's loader undoes.

    v = 0 (and x = y = 0) outside the image; surface keypoints (face) are visible when their
    depth matches the z-buffer; joint keypoints are visible when the pixel shows this person
    with its surface at most SELF_OCCLUSION_MARGIN in front of the joint, or when one of the
    joint's nearest surface vertices is itself unoccluded; otherwise v = 1.
    """
    H, W = frags.mesh.shape
    kp = body.coco_keypoints(vertices[None], joints[None])[0]
    uv, z = camera.project(kp)
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    col = np.clip(np.floor(np.nan_to_num(uv[:, 0])).astype(np.int64), 0, W - 1)
    row = np.clip(np.floor(np.nan_to_num(uv[:, 1])).astype(np.int64), 0, H - 1)
    zbuf = frags.depth[row, col].astype(np.float64)
    surface = body.keypoint_vertex >= 0
    vis_surface = zbuf >= z - SURFACE_DEPTH_TOL
    own = (frags.mesh[row, col] == person) & (zbuf >= z - SELF_OCCLUSION_MARGIN)
    # Nearest surface vertices of each keypoint: visible if any of them is unoccluded.
    d = np.linalg.norm(vertices[None, :, :] - kp[:, None, :], axis=2)
    near = np.argpartition(d, NEAREST_SURFACE_K, axis=1)[:, :NEAREST_SURFACE_K]
    nuv, nz = camera.project(vertices[near])
    ninside = (nz > 0) & (nuv[..., 0] >= 0) & (nuv[..., 0] < W) & (nuv[..., 1] >= 0) & (nuv[..., 1] < H)
    nc = np.clip(np.floor(np.nan_to_num(nuv[..., 0])).astype(np.int64), 0, W - 1)
    nr = np.clip(np.floor(np.nan_to_num(nuv[..., 1])).astype(np.int64), 0, H - 1)
    nvis = ninside & (frags.mesh[nr, nc] == person) & (frags.depth[nr, nc] >= nz - SURFACE_DEPTH_TOL)
    vis_joint = own | nvis.any(axis=1)
    visible = np.where(surface, vis_surface, vis_joint)
    v = np.where(inside, np.where(visible, 2, 1), 0)
    out = np.zeros((len(kp), 3))
    out[:, 0] = np.where(inside, np.maximum(uv[:, 0] - 0.5, 0.0), 0.0)
    out[:, 1] = np.where(inside, np.maximum(uv[:, 1] - 0.5, 0.0), 0.0)
    out[:, 2] = v
    return out


def _r(x: np.ndarray, nd: int) -> List:
    """Round to ``nd`` decimals and convert to plain Python floats (stable JSON)."""
    return [round(float(v), nd) for v in np.asarray(x, dtype=np.float64).ravel()]


def annotate_scene(
    rng: np.random.Generator, scene: Scene, frags: Fragments, maps: DenseMaps, body: BodyAssets,
    image_id: int,
) -> Tuple[List[Dict], np.ndarray]:
    """Annotation records of the visible people and the (H,W) int32 instance-id map."""
    camera = scene.camera
    instance = np.zeros(frags.mesh.shape, np.int32)
    coarse_all = FINE_TO_COARSE[maps.I]
    records: List[Dict] = []
    for k, person in enumerate(scene.people):
        mask = frags.mesh == k
        area = int(mask.sum())
        if area < MIN_VISIBLE_AREA:
            continue
        polys = mask_to_polygons(mask)
        if not polys:
            continue
        aid = annotation_id(image_id, k)
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        w, h = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
        kps = keypoint_visibility(body, frags, camera, k, person.vertices, person.joints)
        rows, cols = sample_annotation_points(rng, maps.I, mask, num_annotation_points(len(ys)))
        coarse = np.where(mask, coarse_all, 0)
        records.append({
            "id": aid,
            "image_id": int(image_id),
            "category_id": 1,
            "iscrowd": 0,
            "area": float(area),
            "bbox": [float(x0), float(y0), float(w), float(h)],
            "segmentation": polys,
            "keypoints": [round(float(v), 2) if i % 3 != 2 else int(v) for i, v in enumerate(kps.ravel())],
            "num_keypoints": int((kps[:, 2] > 0).sum()),
            "dp_x": _r((cols + 0.5 - x0) * FRAME_SIZE / w, 4),
            "dp_y": _r((rows + 0.5 - y0) * FRAME_SIZE / h, 4),
            "dp_I": _r(maps.I[rows, cols], 1),
            "dp_U": _r(maps.U[rows, cols], 6),
            "dp_V": _r(maps.V[rows, cols], 6),
            "dp_masks": box_frame_masks(coarse, x0, y0, w, h),
            "smpl": {key: _r(val, 6) for key, val in person.smpl_dict().items()},
            "joints_3d": [_r(j, 5) for j in camera.world_to_camera(person.joints)],
        })
        instance[mask] = aid
    return records, instance
