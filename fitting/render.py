"""Fitted bodies -> their IUV -> DensePose result records the project's evaluator reads.

The fitted parameters are posed in full with smplx (the embedded body model, as the renderer
poses people), the persons of an image are rasterised together through the assumed camera (so
they occlude each other as the fits say) and the exact IUV of every pixel comes from the body's
charts (:func:`synthesis.annotate.dense_maps`). Each person's visible pixels become one
detection in the format of :func:`densepose_ext.evaluation.evaluator.instances_to_results`:
``image_id``, ``category_id``, ``bbox`` (XYWH, the visible pixels' box), ``score`` and
``densepose`` (the box IUV as a PNG and its grid size). Boxes are whole pixels, so a box cell is
exactly an image pixel under both evaluation protocols; under ``detectron2`` U and V are
truncated to multiples of 1/255 as its results are.
"""
from __future__ import annotations

import functools
from typing import List, Sequence

import numpy as np
import torch

from densepose_ext.body.body_model import get_body_model
from densepose_ext.body.pose import pose_body
from densepose_ext.body.smpl_io import load_smplx_model
from densepose_ext.evaluation import box_grid_size, check_protocol, encode_iuv_png
from synthesis.annotate import dense_maps
from synthesis.rasterize import Fragments, rasterize
from synthesis.scene import load_body_assets

from .camera import assumed_camera
from .optimize import FitResult

__all__ = ["FIT_SCORE_SCALE", "pose_vertices", "render_fits", "fit_score"]

#: relative reprojection error at which a fit's score halves
FIT_SCORE_SCALE = 0.05


@functools.lru_cache(maxsize=1)
def _smpl_model():
    return load_smplx_model(str(get_body_model().smpl_path), batch_size=1, dtype=torch.float64)


def pose_vertices(fits: FitResult) -> np.ndarray:
    """(P, N, 3) posed mesh vertices of the fits (camera frame, metres)."""
    if len(fits) == 0:
        return np.zeros((0, load_body_assets().num_vertices, 3))
    t = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        verts, _ = pose_body(_smpl_model(), t(fits.betas), t(fits.body_pose),
                             t(fits.global_orient), t(fits.transl))
    return verts.numpy()


def fit_score(base_score: np.ndarray, reprojection_rel: np.ndarray) -> np.ndarray:
    """Detection scores: the keypoints' score, lowered for fits that miss their keypoints
    (halved at a relative reprojection error of :data:`FIT_SCORE_SCALE`)."""
    miss = np.asarray(reprojection_rel, np.float64) / FIT_SCORE_SCALE
    return np.asarray(base_score, np.float64) / (1.0 + miss)


def _person_record(frags: Fragments, maps, k: int, image_id, score: float,
                   protocol: str) -> List[dict]:
    mask = frags.mesh == k
    if not mask.any():
        return []
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    box = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    inside = mask[y0:y1, x0:x1]
    part = np.where(inside, maps.I[y0:y1, x0:x1], 0).astype(np.uint8)
    u = np.where(inside, maps.U[y0:y1, x0:x1], 0.0).astype(np.float32)
    v = np.where(inside, maps.V[y0:y1, x0:x1], 0.0).astype(np.float32)
    if protocol == "detectron2":  # its results store uint8(255 * uv), truncated
        u, v = (np.floor(np.clip(c, 0, 1) * 255.0) / 255.0 for c in (u, v))
    hi, wi = box_grid_size(box, protocol)
    return [{"image_id": image_id, "category_id": 1, "bbox": box, "score": float(score),
             "densepose": {"iuv_png": encode_iuv_png(part, u, v), "box_size": [wi, hi]}}]


def render_fits(fits: FitResult, image_of_person: Sequence, images: Sequence[dict],
                scores: Sequence[float], protocol: str = "exact") -> List[dict]:
    """Result records of the fitted persons of ``images`` (dicts with image_id, width,
    height); person p belongs to image ``image_of_person[p]`` and gets ``scores[p]``. A person
    hidden entirely (by others or off the image) gives no record."""
    check_protocol(protocol)
    body = load_body_assets()
    verts = pose_vertices(fits)
    owner = np.asarray(list(image_of_person), dtype=object)
    results: List[dict] = []
    for image in images:
        members = np.flatnonzero(owner == image["image_id"])
        if not len(members):
            continue
        camera = assumed_camera(int(image["width"]), int(image["height"]))
        frags = rasterize([verts[p] for p in members], body.faces, camera)
        maps = dense_maps(frags, body)
        for k, p in enumerate(members):
            results += _person_record(frags, maps, k, image["image_id"], scores[p], protocol)
    return results
