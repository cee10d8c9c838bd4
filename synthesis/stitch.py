"""MoCap-guided stitched image synthesis: images of a query 3D pose pieced from real-pose sources.

For image k (rng = ``np.random.default_rng([seed, k])``): draw a 3D pose from a pose source
(:mod:`synthesis.pose_sources`), pose it with smplx, and view it with a random camera (upright,
random azimuth, elevation, roll and field of view; the person fills most of the frame). The
projected 17 COCO keypoints are the query. For every joint (and the torso) the source person
whose 2D pose is locally most similar after a similarity alignment is chosen
(:mod:`synthesis.stitch_index`), warped by that alignment, and the pieces are assigned to output
pixels along the query skeleton, by default weighing each piece by how well its source matched
(:mod:`synthesis.stitch_assign`), and blended by the local histogram of assignments
(:mod:`synthesis.stitch_blend`).

Output per image: the image; keypoints = the projected query (v = 2 inside the image, else
0); ``joints_3d`` (24 SMPL joints) and ``keypoints_3d`` (17 COCO) in the camera frame;
``smpl`` (betas, body_pose, global_orient, transl in the pose's world frame, plus ``pose_camera``:
the 72 pose values with the root orientation in the camera frame); the image ``camera``
{K, R, t}; the person box and mask = pixels where the blending-weighted warped source person
masks reach 0.5 (sum_u w_u m_u >= 0.5; with part labels a source's mask keeps only its slot's
body parts outside the query body's limb envelope), i.e. the pixels that actually show a source
person, not a render of the query body; and when every contributing source carries DensePose
labels, its points carried through the warps (kept where the output pixel is taken from that
piece and lies in the mask) in DensePose-COCO form, the coarse part masks, and with exact
source labels (the renderer's dense/) the dense I, U, V of the output in ``dense/``.

Layout of ``--out DIR`` (as :mod:`synthesis.render`): images/000001.jpg, dense/000001.npz,
.parts/params.json + per-image fragments, annotations.json and info.json assembled when all
images exist. Each image is written atomically and its fragment last, so a run resumes; shards
(``--shard i --num-shards n``) take the image indices i, i+n, ... and the last one to finish
assembles annotations.json (or any later run does).

CLI: ``python -m synthesis.stitch --out DIR --num-images N --seed S [--sources SRC_JSON
--images SRC_DIR] [--poses NAME_OR_NPZ] [--assignment {geometric,match}] [--shard i --num-shards n]``.
The default query poses are the training motions (``motions_train``): the held-out ones make
the ``densepose_embedded_mocap_test`` split.
"""
from __future__ import annotations

import argparse
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from densepose_ext.body.keypoints import COCO_KEYPOINT_NAMES, COCO_SKELETON
from densepose_ext.body.parts import FINE_TO_COARSE
from densepose_ext.body.shape import sample_betas
from densepose_ext.data import datasets_root
from densepose_ext.structures import FRAME_SIZE, mask_to_polygons
from densepose_ext.utils import atomic_write

from .annotate import annotation_id, box_frame_masks
from .embedded_datasets import EMBEDDED_SPLITS, ensure_embedded_split
from .pose_sequences import QueryPose
from .pose_sources import PoseSource, resolve_pose_source
from .rasterize import Camera, look_at_rotation
from .smpl_poser import PosedBodies, SMPLPoser
from .stitch_assign import ASSIGNMENT_RULES, DEFAULT_ASSIGNMENT
from .stitch_blend import blend_weights, composite, distinct_layers, layer_rois
from .stitch_index import (NUM_SLOTS, SLOT_NAMES, TORSO_SLOT, LocalPoseIndex, Matches, SourcePool,
                           load_source_pool, match_misfit)
from .stitch_sources import SLOT_PARTS, SourceLoader
from .stitch_warp import WarpedSource, warp_source

__all__ = ["STITCH_VERSION", "StitchConfig", "StitchResult", "Stitcher", "StitchParamsMismatch", "sample_camera",
           "stitch_dataset", "main"]

STITCH_VERSION = "1"
DEFAULT_POSES = "motions_train"  # the held-out motions ("motions_test") are the MoCap test split


class StitchParamsMismatch(ValueError):
    """A resumed output directory was started with other sources, poses or parameters."""


@dataclass(frozen=True)
class StitchConfig:
    """Synthesis parameters (stored with the output; a resumed run must use the same)."""

    width: int = 256
    height: int = 256
    max_rotation_deg: float = 45.0  # largest rotation of a source around a joint
    max_upscale: float = 3.0  # sources magnified more than this are not candidates
    radius: float = 0.12  # pixels farther than this x person size from the skeleton: background (torso source)
    thickness: float = 0.05  # limb half-width x person size: overlapping limbs are ordered by depth within it
    blend: float = 0.05  # blending box side as a fraction of the person size
    fill: Tuple[float, float] = (0.65, 0.9)  # person size / image size
    hfov_deg: Tuple[float, float] = (35.0, 60.0)
    elevation_deg: Tuple[float, float] = (-10.0, 30.0)  # camera above the person: positive
    roll_deg: float = 4.0  # std of the camera roll
    clean_background: bool = True  # sources contribute only their person over the torso source's cleaned background
    min_source_height: float = 40.0  # pixels; smaller source persons are not used
    assignment: str = DEFAULT_ASSIGNMENT  # pixel assignment rule (synthesis.stitch_assign.ASSIGNMENT_RULES)
    jpeg_quality: int = 95


def sample_camera(rng: np.random.Generator, vertices: np.ndarray, up: np.ndarray, cfg: StitchConfig) -> Camera:
    """A camera looking at the body (vertices (N,3), world frame) with world ``up`` up, so that
    the body's projected box fills ``cfg.fill`` of the image and is roughly centred."""
    W, H = cfg.width, cfg.height
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    yaw = rng.uniform(0.0, 2.0 * np.pi)
    elev = np.deg2rad(rng.uniform(*cfg.elevation_deg))
    roll = np.deg2rad(rng.normal(0.0, cfg.roll_deg))
    hfov = np.deg2rad(rng.uniform(*cfg.hfov_deg))
    fill = rng.uniform(*cfg.fill)
    jitter = rng.uniform(-1.0, 1.0, 2)
    ref = np.eye(3)[int(np.argmin(np.abs(up)))]
    h0 = np.cross(up, ref)
    h0 /= np.linalg.norm(h0)
    horiz = np.cos(yaw) * h0 + np.sin(yaw) * np.cross(up, h0)
    back = np.cos(elev) * horiz + np.sin(elev) * up  # from the body towards the camera
    c, s = np.cos(roll), np.sin(roll)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ look_at_rotation(-back, up)
    f = 0.5 * W / np.tan(0.5 * hfov)
    K = np.array([[f, 0.0, 0.5 * W], [0.0, f, 0.5 * H], [0.0, 0.0, 1.0]])
    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    local = (vertices - centre) @ R.T
    ext = local.max(0) - local.min(0)
    dist = f * max(ext[0] / W, ext[1] / H) / fill + 0.5 * ext[2]
    shift = np.zeros(2)
    for _ in range(3):  # scale, then centre, with the exact perspective projection
        cam = Camera(K=K, R=R, t=-R @ (centre + dist * back) + np.r_[shift, 0.0], width=W, height=H)
        uv, _ = cam.project(vertices)
        lo, hi = uv.min(0), uv.max(0)
        size = max((hi[0] - lo[0]) / W, (hi[1] - lo[1]) / H)
        dist *= size / fill
        cam = Camera(K=K, R=R, t=-R @ (centre + dist * back) + np.r_[shift, 0.0], width=W, height=H)
        uv, _ = cam.project(vertices)
        lo, hi = uv.min(0), uv.max(0)
        margin = 0.5 * (np.array([W, H]) - (hi - lo))
        target = 0.5 * np.array([W, H]) + 0.5 * jitter * np.maximum(margin, 0.0)
        shift -= (0.5 * (lo + hi) - target) * dist / f
    return Camera(K=K, R=R, t=-R @ (centre + dist * back) + np.r_[shift, 0.0], width=W, height=H)


@dataclass
class StitchResult:
    """One stitched image with everything that made it (for writing, tests and inspection)."""

    image: np.ndarray  # (H,W,3) uint8 RGB
    mask: np.ndarray  # (H,W) bool person mask
    keypoints_2d: np.ndarray  # (17,2) projected query keypoints (continuous pixel coordinates)
    camera: Camera
    query: QueryPose
    betas: np.ndarray
    body: PosedBodies  # world frame, batch of 1
    matches: Matches
    slot_layer: np.ndarray  # (18,) layer of every slot
    layer_slot: np.ndarray  # (L,) slot defining every layer
    labels: np.ndarray  # (H,W) layer assigned to each pixel
    weights: np.ndarray  # (H,W,L) blending weights
    layers: List[WarpedSource]
    background: Optional[np.ndarray]
    covered: np.ndarray  # (H,W) pixels covered by the query body's pieces
    dense: Optional[Dict[str, np.ndarray]] = None  # I, U, V of the output where known
    coarse: Optional[np.ndarray] = None  # (H,W) coarse part map of the output where known
    dp_points: Optional[Dict[str, np.ndarray]] = None  # x, y (continuous image coordinates), I, U, V


class Stitcher:
    """Synthesises stitched images from a source pool and a pose source (deterministic per
    (seed, index))."""

    def __init__(self, pool: SourcePool, poses: PoseSource, poser: Optional[SMPLPoser] = None,
                 config: StitchConfig = StitchConfig(), cache_size: int = 64):
        if config.assignment not in ASSIGNMENT_RULES:
            raise ValueError(f"unknown pixel assignment {config.assignment!r}; known: {', '.join(ASSIGNMENT_RULES)}")
        self.pool, self.poses, self.config = pool, poses, config
        self.poser = poser if poser is not None else SMPLPoser()
        self.index = LocalPoseIndex(pool.keypoints, pool.visibility, np.deg2rad(config.max_rotation_deg),
                                    config.max_upscale)
        self.loader = SourceLoader(pool, cache_size)

    def params(self, seed: int) -> Dict:
        """What determines the output (stored in the output directory to check resumption)."""
        return {"seed": int(seed), "version": STITCH_VERSION, "sources": self.pool.fingerprint,
                "poses": self.poses.describe(), "smpl_model": self.poser.fingerprint,
                "config": json.loads(json.dumps(asdict(self.config)))}

    def stitch(self, index: int, seed: int) -> StitchResult:
        """Synthesise image ``index`` (0-based) of the run with ``seed``."""
        cfg = self.config
        rng = np.random.default_rng([int(seed), int(index)])
        query = self.poses.sample(rng)
        betas = sample_betas(rng, 1)[0]
        if query.betas is not None:
            betas = query.betas
        body = self.poser.pose(query.pose[None], query.trans[None], betas[None])
        camera = sample_camera(rng, body.vertices[0], query.up, cfg)
        kp2d, depth = camera.project(body.keypoints[0])
        size = float(max(np.ptp(kp2d[:, 0]), np.ptp(kp2d[:, 1]), 1.0))

        matches = self.index.search(kp2d)
        layer_slot, slot_layer = distinct_layers(matches.source, matches.transform)
        assign = ASSIGNMENT_RULES[cfg.assignment]
        slot_labels, covered = assign(kp2d, cfg.height, cfg.width, cfg.radius * size, cfg.thickness * size,
                                      depth, misfit=match_misfit(kp2d, matches))
        labels = slot_layer[slot_labels]
        blend = max(1, int(round(cfg.blend * size)) | 1)
        weights = blend_weights(labels, len(layer_slot), blend)
        layers = [self._layer(matches, slot_layer, u, s, roi, covered)
                  for u, (s, roi) in enumerate(zip(layer_slot, layer_rois(labels, len(layer_slot), blend)))]
        background = None
        if cfg.clean_background:
            torso = int(matches.source[TORSO_SLOT])
            bg = self.loader.background(int(self.pool.image[torso]))
            background = warp_source(matches.transform[TORSO_SLOT], (0, 0, cfg.width, cfg.height), bg,
                                     np.zeros(bg.shape[:2], np.float32)).image
        colour = composite(weights, layers, background)
        image = np.clip(np.round(colour), 0, 255).astype(np.uint8)
        soft = np.zeros((cfg.height, cfg.width), np.float32)
        for u, layer in enumerate(layers):
            soft[layer.window] += weights[layer.window][..., u] * layer.mask
        result = StitchResult(image=image, mask=soft >= 0.5, keypoints_2d=kp2d, camera=camera, query=query,
                              betas=betas, body=body, matches=matches, slot_layer=slot_layer, layer_slot=layer_slot,
                              labels=labels, weights=weights, layers=layers, background=background, covered=covered)
        self._carry_densepose(result)
        return result

    def _layer(self, matches: Matches, slot_layer: np.ndarray, u: int, slot: int, roi, covered: np.ndarray):
        """Warp layer ``u`` (defined by ``slot``) into its region. The source's person counts only
        with the body parts of the layer's slots (DensePose parts, else estimated from its
        skeleton), or inside the query body: other limbs of the source near the stitched body
        would otherwise appear as ghosts."""
        r = self.loader.rasters(int(matches.source[slot]), crop=self.config.clean_background)
        layer = warp_source(matches.transform[slot], roi, r.image, r.mask, r.iuv, r.coarse, r.offset, r.parts)
        if layer.parts is not None:
            parts = sorted({p for s in np.flatnonzero(slot_layer == u) for p in SLOT_PARTS[s]})
            layer.mask *= np.isin(layer.parts, parts) | covered[layer.window]
        return layer

    def _carry_densepose(self, res: StitchResult) -> None:
        """DensePose labels of the output, when every layer's source carries them."""
        H, W = res.mask.shape
        dominant = np.argmax(res.weights, axis=-1)
        own = np.zeros((H, W), bool)  # the dominant layer's own person covers the pixel
        for u, layer in enumerate(res.layers):
            own[layer.window] |= (dominant[layer.window] == u) & (layer.mask >= 0.5)
        labelled = res.mask & own
        if all(layer.iuv is not None for layer in res.layers):
            iuv = np.zeros((H, W, 3), np.float32)
            for u, layer in enumerate(res.layers):
                sel = labelled[layer.window] & (dominant[layer.window] == u)
                iuv[layer.window][sel] = layer.iuv[sel]
            res.dense = {"I": np.round(iuv[..., 0]).astype(np.uint8), "U": iuv[..., 1], "V": iuv[..., 2]}
            res.coarse = FINE_TO_COARSE[res.dense["I"]].astype(np.uint8)
        elif all(layer.coarse is not None for layer in res.layers):
            res.coarse = np.zeros((H, W), np.uint8)
            for u, layer in enumerate(res.layers):
                sel = labelled[layer.window] & (dominant[layer.window] == u)
                res.coarse[layer.window][sel] = layer.coarse[sel]
        anns = [self.pool.annotation(int(res.matches.source[s])) for s in res.layer_slot]
        if res.coarse is None or not all("dp_x" in a for a in anns):
            return
        parts = {k: [] for k in ("x", "y", "I", "U", "V")}
        for u, (s, ann) in enumerate(zip(res.layer_slot, anns)):
            x0, y0, bw, bh = (float(v) for v in ann["bbox"])
            src = np.stack([x0 + np.asarray(ann["dp_x"], np.float64) * bw / FRAME_SIZE,
                            y0 + np.asarray(ann["dp_y"], np.float64) * bh / FRAME_SIZE], 1)
            p = src @ res.matches.transform[s][:, :2].T + res.matches.transform[s][:, 2]
            col, row = np.floor(p[:, 0]).astype(np.int64), np.floor(p[:, 1]).astype(np.int64)
            keep = (col >= 0) & (col < W) & (row >= 0) & (row < H)
            keep[keep] = (dominant[row[keep], col[keep]] == u) & labelled[row[keep], col[keep]]
            parts["x"].append(p[keep, 0]), parts["y"].append(p[keep, 1])
            for k in ("I", "U", "V"):
                parts[k].append(np.asarray(ann[f"dp_{k}"], np.float64)[keep])
        res.dp_points = {k: np.concatenate(v) for k, v in parts.items()}


# ---------------------------------------------------------------------------------------------
# records and files


def _r(x, nd: int) -> List:
    return [round(float(v), nd) for v in np.asarray(x, dtype=np.float64).ravel()]


def _dump(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _stem(image_id: int) -> str:
    return f"{image_id:06d}"


def make_records(res: StitchResult, image_id: int, pool: SourcePool) -> Tuple[Dict, List[Dict]]:
    """COCO image record and the person's annotation record (none if the mask is empty)."""
    cam = res.camera
    W, H = cam.width, cam.height
    image = {"id": int(image_id), "width": int(W), "height": int(H),
             "camera": {"K": np.round(cam.K, 6).tolist(), "R": np.round(cam.R, 9).tolist(),
                        "t": np.round(cam.t, 9).tolist()}}
    if not res.mask.any():
        return image, []
    uv = res.keypoints_2d
    _, z = cam.project(res.body.keypoints[0])
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    kps = np.zeros((len(uv), 3))
    kps[inside, :2] = np.maximum(uv[inside] - 0.5, 0.0)  # COCO pixel-index convention
    kps[inside, 2] = 2
    ys, xs = np.nonzero(res.mask)
    x0, y0 = int(xs.min()), int(ys.min())
    w, h = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
    pose_cam = res.query.pose.copy()
    pose_cam[:3] = (Rotation.from_matrix(cam.R) * Rotation.from_rotvec(res.query.pose[:3])).as_rotvec()
    ann = {
        "id": annotation_id(image_id, 0), "image_id": int(image_id), "category_id": 1, "iscrowd": 0,
        "area": float(res.mask.sum()), "bbox": [float(x0), float(y0), float(w), float(h)],
        "segmentation": mask_to_polygons(res.mask),
        "keypoints": [round(float(v), 2) if i % 3 != 2 else int(v) for i, v in enumerate(kps.ravel())],
        "num_keypoints": int(inside.sum()),
        "joints_3d": [_r(j, 5) for j in cam.world_to_camera(res.body.joints[0])],
        "keypoints_3d": [_r(j, 5) for j in cam.world_to_camera(res.body.keypoints[0])],
        "smpl": {"betas": _r(res.betas, 6), "body_pose": _r(res.query.pose[3:], 6),
                 "global_orient": _r(res.query.pose[:3], 6), "transl": _r(res.query.trans, 6),
                 "pose_camera": _r(pose_cam, 6)},
        "stitch": {"query": res.query.tag,
                   "sources": {SLOT_NAMES[s]: pool.annotation(int(res.matches.source[s])).get("id")
                               for s in range(NUM_SLOTS)}},
    }
    if res.dp_points is not None and res.coarse is not None:
        p = res.dp_points
        ann.update({"dp_x": _r((p["x"] - x0) * FRAME_SIZE / w, 4), "dp_y": _r((p["y"] - y0) * FRAME_SIZE / h, 4),
                    "dp_I": _r(p["I"], 1), "dp_U": _r(p["U"], 6), "dp_V": _r(p["V"], 6),
                    "dp_masks": box_frame_masks(np.where(res.mask, res.coarse, 0), x0, y0, w, h)})
    return image, [ann]


def _write_image(out_dir: Path, stitcher: Stitcher, index: int, seed: int) -> int:
    res = stitcher.stitch(index, seed)
    image_id = index + 1
    stem = _stem(image_id)
    image, anns = make_records(res, image_id, stitcher.pool)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(res.image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(stitcher.config.jpeg_quality)])
    if not ok:
        raise RuntimeError(f"stitch: JPEG encoding of image {image_id} failed")
    with atomic_write(out_dir / "images" / f"{stem}.jpg", "wb") as f:
        f.write(buf.tobytes())
    if res.dense is not None:
        inst = np.where(res.mask, anns[0]["id"] if anns else 0, 0).astype(np.int32)
        npz = io.BytesIO()
        np.savez_compressed(npz, I=res.dense["I"], U=res.dense["U"], V=res.dense["V"], instance=inst)
        with atomic_write(out_dir / "dense" / f"{stem}.npz", "wb") as f:
            f.write(npz.getvalue())
    image["file_name"] = f"{stem}.jpg"
    with atomic_write(out_dir / ".parts" / f"{stem}.json", "wb") as f:
        f.write(_dump({"image": image, "annotations": anns}))
    return image_id


def _is_done(out_dir: Path, image_id: int) -> bool:
    stem = _stem(image_id)
    return (out_dir / ".parts" / f"{stem}.json").is_file() and (out_dir / "images" / f"{stem}.jpg").is_file()


def _check_params(out_dir: Path, params: Dict) -> None:
    path = out_dir / ".parts" / "params.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise StitchParamsMismatch(f"{path}: unreadable parameters ({e})") from None
        diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
        if diff:
            desc = ", ".join(f"{k}: stored {old.get(k)!r} vs requested {params.get(k)!r}" for k in diff)
            raise StitchParamsMismatch(f"{out_dir}: this directory was stitched with other parameters ({desc}); "
                                       "use a new directory or the same parameters to resume")
        return
    with atomic_write(path, "wb") as f:
        f.write(_dump(params))


def assemble(out_dir: Path, num_images: int, params: Dict, pool: SourcePool) -> Path:
    """Write annotations.json (and info.json) from the fragments of images 1..num_images."""
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        path = out_dir / ".parts" / f"{_stem(image_id)}.json"
        try:
            frag = json.loads(path.read_bytes())
            images.append(frag["image"])
            annotations.extend(frag["annotations"])
        except (OSError, ValueError, KeyError) as e:
            raise StitchParamsMismatch(f"{path}: bad fragment of image {image_id} ({e}); delete it to redo") from None
    embedded = bool(pool.info.get("body"))  # the embedded renderer records its body model
    info = {"description": "densepose_ext stitched images (MoCap-guided synthesis)", "num_images": int(num_images),
            "body_model": "embedded" if embedded else "official", "sources_file": str(pool.json_file), **params}
    coco = {"info": info, "licenses": [], "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person",
                            "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": [list(e) for e in COCO_SKELETON]}]}
    path = out_dir / "annotations.json"
    with atomic_write(path, "wb") as f:
        f.write(_dump(coco))
    with atomic_write(out_dir / "info.json", "wb") as f:
        f.write(_dump(info))
    return path


def default_sources() -> Tuple[Path, Path]:
    """The embedded training split (rendered first if missing)."""
    split = EMBEDDED_SPLITS["densepose_embedded_train"]
    split_dir = datasets_root() / "densepose_embedded" / split.subdir
    return ensure_embedded_split(split_dir, split), split_dir / "images"


def stitch_dataset(out_dir, num_images: int, seed: int, sources: Optional[str] = None, images: Optional[str] = None,
                   poses=None, smpl_model: Optional[str] = None, config: StitchConfig = StitchConfig(),
                   shard: int = 0, num_shards: int = 1, progress: bool = True,
                   stitcher: Optional[Stitcher] = None) -> Optional[Path]:
    """Stitch (or resume) images ``shard::num_shards`` of ``num_images``; returns annotations.json
    once every image of the run exists, else None (other shards still to finish). ``poses``: a
    pose source spec (None: :data:`DEFAULT_POSES`)."""
    if num_images < 1:
        raise ValueError(f"stitch_dataset: num_images must be >= 1, got {num_images}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"stitch_dataset: shard must be in 0..{num_shards - 1}, got {shard}")
    out_dir = Path(out_dir)
    if stitcher is None:
        if sources is None:
            sources, default_images = default_sources()
            images = images or default_images
        sources = Path(sources)
        images = Path(images) if images is not None else sources.parent / "images"
        pool = load_source_pool(sources, images, min_height=config.min_source_height)
        poses = DEFAULT_POSES if poses is None else poses
        stitcher = Stitcher(pool, resolve_pose_source(poses), SMPLPoser(smpl_model), config)
    params = stitcher.params(seed)
    _check_params(out_dir, params)
    mine = range(shard, num_images, num_shards)
    todo = [k for k in mine if not _is_done(out_dir, k + 1)]

    desc = "stitch" if num_shards == 1 else f"stitch {shard}/{num_shards}"
    with tqdm(total=len(mine), initial=len(mine) - len(todo), disable=not progress, desc=desc, unit="img") as bar:
        for k in todo:
            _write_image(out_dir, stitcher, k, seed)
            bar.update(1)
    if all(_is_done(out_dir, k + 1) for k in range(num_images)):
        return assemble(out_dir, num_images, params, stitcher.pool)
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthesis.stitch", description=__doc__.split("\n")[0])
    parser.add_argument("--sources", default=None, help="COCO keypoint json of the source images "
                        "(default: the embedded training split)")
    parser.add_argument("--images", default=None, help="image directory of --sources (default: images/ beside it)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num-images", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--poses", default=DEFAULT_POSES, help="pose source name (motions_train, motions, "
                        "random, walk, ...) or a .npz sequence / directory of them (default: the training "
                        "motions; the held-out ones make the MoCap test split)")
    parser.add_argument("--assignment", choices=sorted(ASSIGNMENT_RULES), default=DEFAULT_ASSIGNMENT,
                        help="pixel assignment: 'match' weighs each piece by its source's match quality "
                        "(default), 'geometric' uses the distance to the query skeleton only")
    parser.add_argument("--smpl-model", default=None, help="SMPL model .pkl (default: the embedded body)")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--num-shards", type=int, default=1)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--no-progress", action="store_true")
    a = parser.parse_args(argv)
    cfg = StitchConfig(width=a.width, height=a.height, assignment=a.assignment)
    path = stitch_dataset(a.out, a.num_images, a.seed, a.sources, a.images, a.poses, a.smpl_model, cfg,
                          a.shard, a.num_shards, progress=not a.no_progress)
    if path is None:
        done = sum(_is_done(Path(a.out), k + 1) for k in range(a.num_images))
        print(f"shard {a.shard}/{a.num_shards} done; {a.num_images - done} images of other shards missing "
              "(annotations.json is written by the run that completes the set)")
    else:
        print(path)
    return 0


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
