"""Source pool and per-joint candidate search of stitched synthesis.

For every COCO keypoint ("joint") and for the torso, a *local neighbourhood* of keypoints is
fixed: the joint and its neighbours in the COCO skeleton, widened to the two-ring for limb ends
(a wrist alone with its elbow would align exactly with anything); a face keypoint's is itself
with the nose, eyes and shoulders (the face alone spans too few pixels to fix a scale). A source person matches a
query around a slot when its neighbourhood keypoints, mapped by the best similarity transform
``p -> a p + b`` (``a = s e^{i theta}`` as a complex number: scale s > 0, rotation
``|theta| <= max_rotation``, translation b), land on the query's.

Distance (dimensionless, in [0, 1]): the aligned least-squares residual divided by the query's
centred sum of squares. With x, y the centred neighbourhoods as complex vectors and
``c = <x/|x|, y/|y|>`` it is ``1 - max(0, |c| cos(arg c - theta*))^2`` with
``theta* = clip(arg c, +-max_rotation)``, and the fitted scale is
``s = |c| cos(arg c - theta*) |y| / |x|``. So each slot needs one complex matrix-vector product
with the pool's precomputed unit descriptors: the search is a single matrix op per slot over any
number of sources (no Python loop over sources); a 100k-person pool takes a few tens of
milliseconds per query on one core (tools/benchmark_stitch.py).

A source is a candidate for a slot only if every neighbourhood keypoint is labelled (v >= 1)
and the slot's own keypoint(s) are visible (v == 2): its pixels around that joint are pasted,
so they must show that joint, not an occluder. ``max_upscale`` excludes sources that would be
magnified more than that (blurry).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from densepose_ext.body.keypoints import COCO_KEYPOINT_NAMES, COCO_SKELETON
from densepose_ext.structures.densepose_data import check_densepose_annotation, check_rle

__all__ = ["SLOT_NAMES", "NUM_SLOTS", "TORSO_SLOT", "NEIGHBOURHOODS", "CENTRES", "SourcePoolError",
           "SourcePool", "load_source_pool", "LocalPoseIndex", "Matches", "local_distance", "match_misfit"]

NUM_KEYPOINTS = len(COCO_KEYPOINT_NAMES)
#: slots: one per COCO keypoint plus the torso (which also supplies pixels far from the body)
SLOT_NAMES: Tuple[str, ...] = tuple(COCO_KEYPOINT_NAMES) + ("torso",)
NUM_SLOTS = len(SLOT_NAMES)
TORSO_SLOT = NUM_SLOTS - 1
TORSO_KEYPOINTS = tuple(COCO_KEYPOINT_NAMES.index(n) for n in
                        ("left_shoulder", "right_shoulder", "right_hip", "left_hip"))


_FACE = tuple(range(5))  # nose, eyes, ears
_FACE_CONTEXT = tuple(COCO_KEYPOINT_NAMES.index(n) for n in
                      ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder"))


def _neighbourhoods() -> Tuple[Tuple[int, ...], ...]:
    adj: Dict[int, List[int]] = {k: [] for k in range(NUM_KEYPOINTS)}
    for a, b in COCO_SKELETON:
        adj[a - 1].append(b - 1)
        adj[b - 1].append(a - 1)
    out = []
    for k in range(NUM_KEYPOINTS):
        if k in _FACE:  # the face with the shoulders: a few pixels of face alone fix no scale
            ring = [k] + [m for m in _FACE_CONTEXT if m != k]
        else:
            ring = [k] + sorted(adj[k])
        if len(ring) < 3:  # limb end: add the two-ring along the limb
            ring += sorted({m for n in adj[k] for m in adj[n]} - set(ring))
        out.append(tuple(ring))
    out.append(TORSO_KEYPOINTS)
    return tuple(out)


#: slot -> keypoint indices of its local neighbourhood (its own keypoint first)
NEIGHBOURHOODS: Tuple[Tuple[int, ...], ...] = _neighbourhoods()
#: slot -> keypoints that must be visible (v == 2) in a candidate source
CENTRES: Tuple[Tuple[int, ...], ...] = tuple((k,) for k in range(NUM_KEYPOINTS)) + (TORSO_KEYPOINTS,)


class SourcePoolError(ValueError):
    """A source annotation file is unusable; the message names the file (and record)."""


@dataclass
class SourcePool:
    """Source persons: keypoints (N,17,2) continuous pixel coordinates, visibility (N,17),
    image (N,) index into ``images`` (id, file_name (absolute), width, height, dense_file or
    None, annotations: the raw records of that image), ann (N,) index of the person among its
    image's annotations; ``fingerprint`` hashes the annotation file's bytes; ``info`` is its
    COCO info object."""

    json_file: Path
    image_root: Path
    images: List[dict]
    keypoints: np.ndarray
    visibility: np.ndarray
    image: np.ndarray
    ann: np.ndarray
    fingerprint: str
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.keypoints))

    def annotation(self, i: int) -> dict:
        """The raw annotation record of source person ``i``."""
        return self.images[int(self.image[i])]["annotations"][int(self.ann[i])]


def _fail(json_file: Path, where: str, msg: str) -> SourcePoolError:
    return SourcePoolError(f"{json_file}: {where}: {msg}")


def _read_coco(json_file: Path) -> Tuple[dict, bytes]:
    try:
        raw = json_file.read_bytes()
        data = json.loads(raw)
    except FileNotFoundError:
        raise SourcePoolError(f"{json_file}: source annotation file not found") from None
    except (OSError, ValueError) as e:
        raise SourcePoolError(f"{json_file}: not a readable json file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise SourcePoolError(f"{json_file}: expected a COCO json object with 'images' and 'annotations' lists")
    return data, raw


def load_source_pool(json_file: Union[str, Path], image_root: Union[str, Path], min_height: float = 40.0,
                     min_keypoints: int = 6, check_images: bool = True) -> SourcePool:
    """Read a COCO keypoint (or DensePose-COCO) json as a source pool.

    Source persons are the annotations that are not crowds, have 17 keypoints with at least
    ``min_keypoints`` labelled and a box at least ``min_height`` pixels tall. Images, boxes,
    keypoints, ids, DensePose fields and the segmentations' structure (RLE size and counts) are
    validated here, their pixels when first decoded; a bad record raises a SourcePoolError naming
    the file and record. An image's exact dense labels
    ``<image_root>/../dense/<stem>.npz`` (the embedded renderer's) are used when present.
    """
    def is_id(x) -> bool:  # ints or strings; a list or dict id would fail later as a TypeError
        return (isinstance(x, int) and not isinstance(x, bool)) or isinstance(x, str)

    def short(x) -> str:
        text = repr(x)
        return text if len(text) <= 60 else text[:57] + "..."

    json_file, image_root = Path(json_file), Path(image_root)
    data, raw = _read_coco(json_file)
    images: List[dict] = []
    by_id: Dict[object, int] = {}
    for n, img in enumerate(data["images"]):
        where = f"images[{n}]"
        if not isinstance(img, dict) or any(k not in img for k in ("id", "file_name", "width", "height")):
            raise _fail(json_file, where, "needs id, file_name, width and height")
        if not is_id(img["id"]):
            raise _fail(json_file, where, f"id must be an int or a string, got "
                                          f"{type(img['id']).__name__} {short(img['id'])}")
        where = f"image id={img['id']} ({where})"
        for key in ("width", "height"):
            if not isinstance(img[key], int) or isinstance(img[key], bool) or img[key] <= 0:
                raise _fail(json_file, where, f"{key} must be a positive integer, got {short(img[key])}")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise _fail(json_file, where, f"file_name must be a non-empty string, got {short(img['file_name'])}")
        if img["id"] in by_id:
            raise _fail(json_file, f"image id={img['id']}", "duplicate image id")
        path = image_root / str(img["file_name"])
        if check_images and not path.is_file():
            raise _fail(json_file, f"image id={img['id']}", f"image file {path} does not exist")
        dense = image_root.parent / "dense" / (Path(str(img["file_name"])).stem + ".npz")
        by_id[img["id"]] = len(images)
        images.append({"id": img["id"], "file_name": str(path), "width": int(img["width"]),
                       "height": int(img["height"]), "dense_file": str(dense) if dense.is_file() else None,
                       "annotations": []})
    kps, img_idx, ann_idx = [], [], []
    for n, ann in enumerate(data["annotations"]):
        where = f"annotation id={ann.get('id', f'? (annotations[{n}])') if isinstance(ann, dict) else n}"
        if isinstance(ann, dict):
            for key in ("id", "image_id"):
                if key in ann and not is_id(ann[key]):
                    raise _fail(json_file, f"annotations[{n}]", f"{key} must be an int or a string, got "
                                                                f"{type(ann[key]).__name__} {short(ann[key])}")
        if not isinstance(ann, dict) or ann.get("image_id") not in by_id:
            raise _fail(json_file, where, "not an object with a known image_id")
        where += f" (image id={ann['image_id']})"
        i = by_id[ann["image_id"]]
        images[i]["annotations"].append(ann)
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise _fail(json_file, where, f"bbox must be [x, y, w, h] numbers, got {bbox!r}")
        if ann.get("iscrowd", 0) or "keypoints" not in ann or bbox[3] < min_height:
            continue
        try:
            k = np.asarray(ann["keypoints"], dtype=np.float64)
            if k.shape != (3 * NUM_KEYPOINTS,) or not np.isfinite(k).all() or not np.isin(k[2::3], (0, 1, 2)).all():
                raise ValueError(f"keypoints must be {NUM_KEYPOINTS} finite (x, y, v in 0..2) triples")
            check_densepose_annotation(ann)
            segm = ann.get("segmentation")
            if isinstance(segm, dict):  # RLE: its structure now, its pixels when decoded
                check_rle([("segmentation", segm)], images[i]["height"], images[i]["width"])
            elif segm is not None and not (isinstance(segm, list) and all(
                    isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                    and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p)
                    for p in segm)):
                raise ValueError(f"segmentation must be polygons (flat lists of >= 3 number pairs) "
                                 f"or RLE, got {short(segm)}")
        except (ValueError, TypeError) as e:
            raise _fail(json_file, where, str(e)) from None
        kps.append(k)
        img_idx.append(i)
        ann_idx.append(len(images[i]["annotations"]) - 1)
    k = np.asarray(kps, dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    vis = k[..., 2].astype(np.int8)
    keep = (vis > 0).sum(1) >= min_keypoints
    if not keep.any():
        raise SourcePoolError(f"{json_file}: no person with >= {min_keypoints} labelled keypoints "
                              f"and a box >= {min_height} px tall")
    # COCO keypoints are pixel indices (pixel centre = integer): +0.5 gives continuous coordinates
    return SourcePool(json_file=json_file, image_root=image_root, images=images, keypoints=k[keep, :, :2] + 0.5,
                      visibility=vis[keep], image=np.asarray(img_idx)[keep], ann=np.asarray(ann_idx)[keep],
                      fingerprint=hashlib.sha1(raw).hexdigest()[:16],
                      info=data.get("info") if isinstance(data.get("info"), dict) else {})


@dataclass
class Matches:
    """Chosen source per slot: source (S,) pool index, distance (S,), transform (S,2,3)
    mapping source continuous pixel coordinates to query ones, fallback (S,) bool: no source
    qualified for the slot, so it uses the torso's choice."""

    source: np.ndarray
    distance: np.ndarray
    transform: np.ndarray
    fallback: np.ndarray


def match_misfit(query: np.ndarray, matches: Matches) -> np.ndarray:
    """(S,) per slot, the RMS distance in pixels between the chosen source's aligned
    neighbourhood keypoints and the query's (17,2): ``sqrt(distance * |y|^2 / k)``, since the
    distance is the residual over the query neighbourhood's centred sum of squares |y|^2. A
    fallback slot (no candidate) counts as explaining nothing (distance 1)."""
    q = np.asarray(query, dtype=np.float64)
    out = np.zeros(NUM_SLOTS)
    for s, idx in enumerate(NEIGHBOURHOODS):
        y = q[list(idx)]
        spread = ((y - y.mean(0)) ** 2).sum() / len(idx)
        d = 1.0 if matches.fallback[s] or not np.isfinite(matches.distance[s]) else float(matches.distance[s])
        out[s] = np.sqrt(min(max(d, 0.0), 1.0) * spread)
    return out


def _complex(points: np.ndarray) -> np.ndarray:
    return points[..., 0] + 1j * points[..., 1]


def local_distance(src: np.ndarray, query: np.ndarray, max_rotation: float) -> Tuple[np.ndarray, np.ndarray]:
    """Aligned distance and transform of (..., k, 2) source neighbourhoods to a (k, 2) query.

    Returns (distance (...,), complex ``a`` (...,)); the transform is ``p -> a (p - mean_src)
    + mean_query``. The index uses it (float64) for the transform of each chosen source.
    """
    x = _complex(np.asarray(src, dtype=np.float64))
    y = _complex(np.asarray(query, dtype=np.float64))
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean()
    nx = np.linalg.norm(x, axis=-1)
    ny = np.linalg.norm(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (np.conj(x) * y).sum(-1) / (nx * ny)
        r, theta = _fit(c, max_rotation)
        scale = r * ny / nx
    return 1.0 - r ** 2, scale * np.exp(1j * theta)


def _fit(c: np.ndarray, max_rotation: float) -> Tuple[np.ndarray, np.ndarray]:
    """Best rotation within the limit and the resulting normalised correlation r >= 0."""
    phi = np.angle(c)
    theta = np.clip(phi, -max_rotation, max_rotation)
    r = np.maximum(np.abs(c) * np.cos(phi - theta), 0.0)
    return r, theta


class LocalPoseIndex:
    """Per-slot unit descriptors of a pool of 2D poses and the vectorised best-match search.

    Descriptors are stored per slot as one (N, 2k) float32 matrix [Re x, Im x] of the centred,
    unit-norm neighbourhoods, so the correlations with a query are one small matrix product
    per slot; the rotation limit and the scale limit are then closed-form elementwise tests.

    Args:
        keypoints: (N,17,2) source keypoints; visibility: (N,17) COCO visibility flags.
        max_rotation: largest rotation (radians) of a source around a joint.
        max_upscale: sources that would be magnified more than this are not candidates
            (None: no limit).
    """

    def __init__(self, keypoints: np.ndarray, visibility: np.ndarray, max_rotation: float = np.deg2rad(45.0),
                 max_upscale: Optional[float] = 3.0):
        kp = np.asarray(keypoints, dtype=np.float64)
        vis = np.asarray(visibility)
        if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 2) or vis.shape != kp.shape[:2]:
            raise ValueError(f"LocalPoseIndex: keypoints must be (N,17,2) and visibility (N,17), "
                             f"got {kp.shape} and {vis.shape}")
        if not 0.0 <= max_rotation <= np.pi:
            raise ValueError(f"LocalPoseIndex: max_rotation must be in [0, pi], got {max_rotation}")
        self.max_rotation = float(max_rotation)
        self.max_upscale = None if max_upscale is None else float(max_upscale)
        self.size = len(kp)
        self.keypoints = kp
        self.descriptors: List[np.ndarray] = []  # per slot (N,2k) float32 [Re, Im] of unit neighbourhoods
        self.norms: List[np.ndarray] = []  # per slot (N,) centred norm of the neighbourhood (pixels)
        self.means: List[np.ndarray] = []  # per slot (N,) complex centroid
        self.valid: List[np.ndarray] = []  # per slot (N,) bool: a candidate for this slot
        for idx, centre in zip(NEIGHBOURHOODS, CENTRES):
            z = _complex(kp[:, idx, :])
            mean = z.mean(1)
            zc = z - mean[:, None]
            norm = np.linalg.norm(zc, axis=1)
            ok = (vis[:, idx] >= 1).all(1) & (vis[:, centre] == 2).all(1) & (norm > 1e-6)
            unit = zc / np.where(norm > 1e-6, norm, 1.0)[:, None]
            self.descriptors.append(np.ascontiguousarray(np.concatenate([unit.real, unit.imag], 1), np.float32))
            self.norms.append(norm)
            self.means.append(mean)
            self.valid.append(ok)
        self._upscale_norms = [np.float32(self.max_upscale or 0.0) * n.astype(np.float32) for n in self.norms]

    def _correlations(self, slot: int, query: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
        """Re and Im of <x_unit, y_unit> (N,) for every source, and the query norm |y|."""
        idx = list(NEIGHBOURHOODS[slot])
        y = _complex(np.asarray(query, dtype=np.float64)[idx])
        y = y - y.mean()
        ny = float(np.linalg.norm(y))
        if ny < 1e-9:
            raise ValueError(f"query neighbourhood of {SLOT_NAMES[slot]} is degenerate (all points coincide)")
        y = y / ny
        k = len(idx)
        # conj(x) y = (xr yr + xi yi) + i (xr yi - xi yr)
        q = np.zeros((2 * k, 2), np.float32)
        q[:k, 0], q[k:, 0] = y.real, y.imag
        q[:k, 1], q[k:, 1] = y.imag, -y.real
        c = self.descriptors[slot] @ q
        return c[:, 0], c[:, 1], ny

    def _fit_r(self, slot: int, query: np.ndarray) -> Tuple[np.ndarray, float]:
        """Normalised correlation r (N,) float32 after the best allowed rotation (distance is
        1 - r^2; r <= 0: no alignment with a positive scale), and the query norm |y|."""
        c_re, c_im, ny = self._correlations(slot, query)
        cos_m, sin_m = np.float32(np.cos(self.max_rotation)), np.float32(np.sin(self.max_rotation))
        mag = np.sqrt(c_re * c_re + c_im * c_im)
        # |arg c| <= max_rotation: the free optimum |c|; else the limit angle: |c| cos(|arg c| - max)
        limited = c_re * cos_m + np.abs(c_im) * sin_m
        return np.where(c_re >= mag * cos_m, mag, limited), ny

    def slot_distances(self, slot: int, query: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """For (17,2) query keypoints: distance (N,) (inf where not a candidate) and the fitted
        scale (N,) of every source for one slot."""
        r, ny = self._fit_r(slot, query)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = r * ny / self.norms[slot]
        dist = np.where(self.valid[slot] & (r > 0), 1.0 - r.astype(np.float64) ** 2, np.inf)
        return dist, scale

    def _coefficient(self, slot: int, source: int, query: np.ndarray) -> complex:
        """The fitted ``a = s e^{i theta}`` of one source, in float64 from its keypoints."""
        idx = list(NEIGHBOURHOODS[slot])
        _, a = local_distance(self.keypoints[source, idx], query[idx], self.max_rotation)
        return complex(a)

    def search(self, query: np.ndarray, exclude: Optional[np.ndarray] = None) -> Matches:
        """Best source per slot for (17,2) query keypoints (continuous pixel coordinates).

        Ties go to the lowest pool index. A slot without any candidate first drops the
        ``max_upscale`` limit, then falls back to the torso's source; a pool without any
        torso candidate raises ValueError. ``exclude`` (N,) bool masks sources out.
        """
        q = np.asarray(query, dtype=np.float64)
        source = np.zeros(NUM_SLOTS, np.int64)
        distance = np.full(NUM_SLOTS, np.inf)
        fallback = np.zeros(NUM_SLOTS, bool)
        for s in range(NUM_SLOTS):
            r, ny = self._fit_r(s, q)
            ok = self.valid[s] & (r > 0)
            if exclude is not None:
                ok &= ~exclude
            if self.max_upscale is not None:  # scale r |y| / |x| within the limit
                capped = ok & (r * np.float32(ny) <= self._upscale_norms[s])
                if capped.any():
                    ok = capped
            best = int(np.argmax(np.where(ok, r, -1.0)))
            if not ok[best]:
                fallback[s] = True
                continue
            source[s], distance[s] = best, 1.0 - float(r[best]) ** 2
        if fallback[TORSO_SLOT]:
            raise ValueError("no source person has four visible torso keypoints (shoulders and hips)")
        transform = np.zeros((NUM_SLOTS, 2, 3))
        for s in range(NUM_SLOTS):
            if fallback[s]:
                source[s], transform[s] = source[TORSO_SLOT], 0.0
                continue
            a = self._coefficient(s, int(source[s]), q)
            b = _complex(q[list(NEIGHBOURHOODS[s])]).mean() - a * self.means[s][source[s]]
            transform[s] = [[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]]
        transform[fallback] = transform[TORSO_SLOT]
        return Matches(source=source, distance=distance, transform=transform, fallback=fallback)
