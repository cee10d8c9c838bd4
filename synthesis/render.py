"""Render the embedded DensePose-COCO dataset: images, exact dense IUV and annotations.

Layout written under ``out_dir``::

    images/000001.jpg        RGB images
    dense/000001.npz         I uint8 (H,W), U, V float32 (H,W), instance int32 (H,W)
                             (annotation id, 0 = background or person without a record)
    annotations.json         COCO dict: info, licenses, images (+ camera), annotations,
                             categories (person with COCO keypoints and skeleton)
    .parts/params.json       rendering parameters (a resumed run must use the same)
    .parts/000001.json       per-image fragment: image record + its annotations

Image ``i`` (1-based id) is drawn from ``np.random.default_rng([seed, i - 1])`` so any image
can be re-rendered alone. Each finished image writes its files atomically, the fragment last,
so an interrupted run resumes where it stopped; annotations.json is assembled from the
fragments in id order with sorted keys, so the same seed gives a byte-identical file.

People take joint-limited random body poses by default; ``poses`` (a pose source of
:mod:`synthesis.pose_sources`: ``motions``, one motion's name, a MoCap ``.npz`` file or directory)
draws them from MoCap frames instead, e.g. for test images of poses a random-pose training set
lacks.

CLI: ``python -m synthesis.render --out DIR --num-images N --seed S [--width W --height H
--max-people P --workers K --poses SOURCE]``.
"""
from __future__ import annotations

import argparse
import functools
import io
import json
import multiprocessing as mp
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

from densepose_ext.utils import atomic_write, torch_single_thread

from .annotate import MAX_PEOPLE_PER_IMAGE, annotate_scene, dense_maps
from .pose_sources import resolve_pose_source
from .rasterize import rasterize
from .scene import BodyAssets, load_body_assets, sample_scene
from .texture import Lighting, compose_image, render_background, sample_outfit, shade_people

__all__ = ["RENDERER_VERSION", "RenderParamsMismatch", "RenderShrinkRefused", "render_image", "render_dataset",
           "outdated_reason", "main"]

RENDERER_VERSION = "1"
MAX_SIDE = 8192  # largest image side the renderer accepts


class RenderParamsMismatch(ValueError):
    """A resumed dataset directory was started with different rendering parameters."""


class FragmentError(ValueError):
    """A per-image fragment of a dataset directory cannot be read."""


class RenderShrinkRefused(ValueError):
    """A rerun asked for fewer images than the dataset directory already holds."""


def _rendered_ids(out_dir: Path) -> List[int]:
    """Ids of the images with a fragment in ``out_dir/.parts`` (finished images), sorted."""
    parts = out_dir / ".parts"
    if not parts.is_dir():
        return []
    return sorted(int(p.stem) for p in parts.glob("*.json") if p.stem.isdigit())


def _check_no_shrink(out_dir: Path, num_images: int) -> None:
    """Refuse a rerun that would drop images already rendered into ``out_dir``: its
    annotations.json would silently hold fewer images than before."""
    beyond = [i for i in _rendered_ids(out_dir) if i > num_images]
    if beyond:
        raise RenderShrinkRefused(
            f"{out_dir}: holds rendered images up to id {beyond[-1]} ({len(beyond)} beyond the "
            f"{num_images} requested); a rerun never shrinks a dataset: ask for "
            f"--num-images {beyond[-1]} or more, or render into a new directory")


def _check_render_args(num_images: int, seed: int, width: int, height: int, max_people: int,
                       jpeg_quality: int, workers: int) -> None:
    """ValueError naming the first argument out of its range."""
    checks = [
        (num_images >= 1, f"num_images must be >= 1, got {num_images}"),
        (seed >= 0, f"seed must be >= 0, got {seed}"),
        (1 <= max_people <= MAX_PEOPLE_PER_IMAGE,
         f"max_people must be in 1..{MAX_PEOPLE_PER_IMAGE}, got {max_people}"),
        (16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE,
         f"image size {width}x{height} is out of range: each side in 16..{MAX_SIDE}"),
        (1 <= jpeg_quality <= 100, f"jpeg_quality must be in 1..100, got {jpeg_quality}"),
        (workers >= 1, f"workers must be >= 1, got {workers}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"render_dataset: {message}")


@functools.lru_cache(maxsize=4)
def _pose_source(spec: str):
    return resolve_pose_source(spec)


def _pose_sampler(spec: Optional[str]):
    """``(rng, n) -> (n, 72)`` drawing from the pose source ``spec``; None for random poses."""
    if spec is None:
        return None
    source = _pose_source(str(spec))
    return lambda rng, n: np.stack([source.sample(rng).pose for _ in range(n)])


def render_image(index: int, seed: int, width: int, height: int, max_people: int,
                 body: Optional[BodyAssets] = None,
                 poses: Optional[str] = None) -> Tuple[np.ndarray, Dict[str, np.ndarray], Dict, List[Dict]]:
    """Render image ``index`` (0-based; image id = index + 1); body poses from the pose source
    ``poses`` when given.

    Returns the RGB image (H,W,3) uint8, the dense maps {I, U, V, instance}, the COCO image
    record (without file name) and the annotation records.
    """
    body = body if body is not None else load_body_assets()
    with torch_single_thread():
        return _render_image(index, seed, width, height, max_people, body, poses)


def _render_image(index: int, seed: int, width: int, height: int, max_people: int, body: BodyAssets,
                  poses: Optional[str] = None) -> Tuple[np.ndarray, Dict[str, np.ndarray], Dict, List[Dict]]:
    rng = np.random.default_rng([int(seed), int(index)])
    image_id = int(index) + 1
    scene = sample_scene(rng, body, width, height, max_people, pose_sampler=_pose_sampler(poses))
    frags = rasterize([p.vertices for p in scene.people], body.faces, scene.camera)
    outfits = [sample_outfit(rng) for _ in scene.people]
    light = Lighting.sample(rng)
    eyes = [int(body.keypoint_vertex[i]) for i, n in enumerate(body.keypoint_names)
            if n.endswith("_eye") and body.keypoint_vertex[i] >= 0]
    people_rgb = shade_people(frags, [p.vertices for p in scene.people], body.faces, body.regions,
                              outfits, scene.camera, light, eye_vertices=eyes)
    background = render_background(rng, scene.camera, scene.ground_xz())
    rgb = compose_image(rng, background, people_rgb, frags.foreground)
    maps = dense_maps(frags, body)
    records, instance = annotate_scene(rng, scene, frags, maps, body, image_id)
    cam = scene.camera
    image = {"id": image_id, "width": int(width), "height": int(height),
             "camera": {"K": np.round(cam.K, 6).tolist(), "R": np.round(cam.R, 9).tolist(),
                        "t": np.round(cam.t, 9).tolist()}}
    dense = {"I": maps.I, "U": maps.U, "V": maps.V, "instance": instance}
    return rgb, dense, image, records


def _file_stem(image_id: int) -> str:
    return f"{image_id:06d}"


def _params(seed: int, width: int, height: int, max_people: int, jpeg_quality: int, body: BodyAssets,
            poses: Optional[str] = None) -> Dict:
    params = {"seed": int(seed), "width": int(width), "height": int(height), "max_people": int(max_people),
              "jpeg_quality": int(jpeg_quality), "renderer_version": RENDERER_VERSION, "body": body.fingerprint}
    if poses is not None:  # absent for random poses, so those datasets keep their parameters
        params["poses"] = _pose_source(str(poses)).describe()
    return params


def _dump(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _render_and_write(out_dir: Path, index: int, seed: int, width: int, height: int, max_people: int,
                      jpeg_quality: int, poses: Optional[str] = None) -> int:
    """Render one image and write image, dense maps and fragment (in that order) atomically."""
    rgb, dense, image, records = render_image(index, seed, width, height, max_people, poses=poses)
    stem = _file_stem(image["id"])
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError(f"render: JPEG encoding of image {image['id']} failed")
    with atomic_write(out_dir / "images" / f"{stem}.jpg", "wb") as f:
        f.write(buf.tobytes())
    npz = io.BytesIO()
    np.savez_compressed(npz, **dense)
    with atomic_write(out_dir / "dense" / f"{stem}.npz", "wb") as f:
        f.write(npz.getvalue())
    image["file_name"] = f"{stem}.jpg"
    with atomic_write(out_dir / ".parts" / f"{stem}.json", "wb") as f:
        f.write(_dump({"image": image, "annotations": records}))
    return image["id"]


def _worker_init() -> None:
    torch.set_num_threads(1)


def _worker(args: Tuple) -> int:
    return _render_and_write(*args)


def _is_done(out_dir: Path, image_id: int) -> bool:
    stem = _file_stem(image_id)
    return all(p.is_file() for p in (out_dir / ".parts" / f"{stem}.json", out_dir / "images" / f"{stem}.jpg",
                                     out_dir / "dense" / f"{stem}.npz"))


def _params_diff(out_dir: Path, params: Dict) -> Optional[str]:
    """How the stored parameters of ``out_dir`` differ from ``params`` (None: same or none)."""
    path = out_dir / ".parts" / "params.json"
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RenderParamsMismatch(f"{path}: unreadable rendering parameters ({e})") from e
    diff = {k: (old.get(k), params.get(k)) for k in set(old) | set(params) if old.get(k) != params.get(k)}
    if not diff:
        return None
    return ", ".join(f"{k}: stored {a!r} vs requested {b!r}" for k, (a, b) in sorted(diff.items()))


def _check_params(out_dir: Path, params: Dict) -> None:
    desc = _params_diff(out_dir, params)
    if desc:
        raise RenderParamsMismatch(
            f"{out_dir}: this dataset directory was rendered with other parameters ({desc}); "
            f"use a new directory or the same parameters to resume")
    path = out_dir / ".parts" / "params.json"
    if not path.is_file():
        with atomic_write(path, "wb") as f:
            f.write(_dump(params))


def outdated_reason(out_dir, seed: int, width: int = 256, height: int = 256, max_people: int = 4,
                    jpeg_quality: int = 95, poses: Optional[str] = None) -> Optional[str]:
    """Why the dataset in ``out_dir`` differs from what these parameters (and the current body
    model and renderer version) would render now; None if it is current or not started."""
    params = _params(seed, width, height, max_people, jpeg_quality, load_body_assets(), poses)
    return _params_diff(Path(out_dir), params)


def _load_fragment(out_dir: Path, image_id: int) -> Dict:
    path = out_dir / ".parts" / f"{_file_stem(image_id)}.json"
    try:
        frag = json.loads(path.read_bytes())
        if frag["image"]["id"] != image_id:
            raise ValueError(f"holds image id {frag['image']['id']}, expected {image_id}")
        return frag
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FragmentError(f"{path}: bad fragment of image {image_id} ({e}); delete it to re-render") from e


def assemble_annotations(out_dir: Path, num_images: int, body: BodyAssets, params: Dict) -> Path:
    """Write annotations.json from the fragments of images 1..num_images (atomic, stable)."""
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        frag = _load_fragment(out_dir, image_id)
        images.append(frag["image"])
        annotations.extend(frag["annotations"])
    coco = {
        "info": {"description": "densepose_ext embedded DensePose-COCO (procedurally rendered)",
                 "version": RENDERER_VERSION, "seed": params["seed"], "width": params["width"],
                 "height": params["height"], "max_people": params["max_people"], "body": params["body"],
                 "num_images": int(num_images), **({"poses": params["poses"]} if "poses" in params else {})},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": list(body.keypoint_names), "skeleton": body.skeleton}],
    }
    path = out_dir / "annotations.json"
    with atomic_write(path, "wb") as f:
        f.write(_dump(coco))
    return path


def render_dataset(out_dir, num_images: int, seed: int, width: int = 256, height: int = 256,
                   max_people: int = 4, jpeg_quality: int = 95, progress: bool = True,
                   workers: int = 1, poses: Optional[str] = None) -> Path:
    """Render (or resume rendering) a dataset of ``num_images`` images; returns annotations.json.

    A directory can be extended later with more images (same other parameters), never shrunk:
    fewer images than it holds is a :class:`RenderShrinkRefused`. Arguments out of range are a
    ValueError naming them.
    """
    _check_render_args(num_images, seed, width, height, max_people, jpeg_quality, workers)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"render_dataset: {out_dir} exists and is not a directory")
    body = load_body_assets()
    params = _params(seed, width, height, max_people, jpeg_quality, body, poses)
    _check_params(out_dir, params)
    _check_no_shrink(out_dir, num_images)
    todo = [i for i in range(num_images) if not _is_done(out_dir, i + 1)]
    jobs = [(out_dir, i, seed, width, height, max_people, jpeg_quality, poses) for i in todo]

    bar = tqdm(total=num_images, initial=num_images - len(todo), disable=not progress,
               desc="render", unit="img")
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            for _ in pool.imap_unordered(_worker, jobs):
                bar.update(1)
    else:
        for job in jobs:
            _worker(job)
            bar.update(1)
    bar.close()
    return assemble_annotations(out_dir, num_images, body, params)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthesis.render", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--num-images", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the dataset")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--max-people", type=int, default=4, help="people per image: 1..max")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--poses", default=None,
                        help="pose source of the people (motions, a motion name, a MoCap .npz file or "
                             "directory); default: joint-limited random poses")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    a = parser.parse_args(argv)
    try:
        _check_render_args(a.num_images, a.seed, a.width, a.height, a.max_people, a.jpeg_quality, a.workers)
    except ValueError as e:
        parser.error(str(e).replace("render_dataset: ", "").replace("_", "-"))
    path = render_dataset(a.out, a.num_images, a.seed, a.width, a.height, a.max_people, a.jpeg_quality,
                          progress=not a.no_progress, workers=a.workers, poses=a.poses)
    print(path)
    return 0


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
