"""The baseline end to end: keypoints of a dataset -> fits -> IUV results -> metrics, resumable.

Images are taken in the dataset's order and processed ``chunk`` at a time (all persons of a
chunk in one batched fit). ``DIR`` receives:

    fit_settings.json             settings; a resumed run must use the same ones
    chunks/chunk_00000.json       per chunk: its result records, the fitted SMPL parameters
                                  and fit quality of each person, and its fit / render times
    coco_densepose_results.json   all result records (the evaluator's results file)
    metrics.json                  GPS / GPSm AP, AUC10/20/30 (the project's evaluator), the fit's
                                  seconds per person, reprojection errors, and with ground-truth
                                  keypoints the root-aligned MPJPE against the data's 3D joints

Every file is written atomically; finished chunks are skipped when a run is resumed.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import create_small_table
from pycocotools.coco import COCO
from tqdm import tqdm

from densepose_ext.evaluation import evaluate_densepose_results, load_body_for_dataset
from densepose_ext.evaluation.evaluator import (NORMALIZATION_DESCRIPTIONS, RESULTS_FILE,
                                                json_safe)
from densepose_ext.evaluation.gt_preparation import gt_cache_file
from densepose_ext.evaluation.protocol import PROTOCOL_DESCRIPTIONS, check_protocol
from densepose_ext.utils import atomic_write, file_sha256
from distill.output_dir import claim_output_dir

from .camera import ASSUMED_FOV_DEG, assumed_focal_length
from .inputs import FittingError, PersonKeypoints, gt_keypoints, predicted_keypoints
from .optimize import BodyFitter, FitResult, FitSettings
from .prior import DEFAULT_PRIOR_POSES, PosePrior, training_poses
from .render import fit_score, render_fits

__all__ = ["FIT_VERSION", "SETTINGS_FILE", "METRICS_FILE", "chunk_path", "run_fitting"]

logger = logging.getLogger(__name__)

FIT_VERSION = "1"  # bump when a change alters the fits, so old output directories are refused
SETTINGS_FILE = "fit_settings.json"
METRICS_FILE = "metrics.json"
CHUNKS_DIR = "chunks"
NORMALIZATION = "coarse_part"


def chunk_path(out_dir, index: int) -> Path:
    return Path(out_dir) / CHUNKS_DIR / f"chunk_{index:05d}.json"


def _default_protocol(dataset: str) -> str:
    """The embedded world's data follow the renderer's conventions; other data the official
    evaluator's."""
    meta = MetadataCatalog.get(dataset)
    return "exact" if getattr(meta, "body_model", None) == "embedded" else "detectron2"


def _fit_chunk(fitter: BodyFitter, images: Sequence[dict], persons: Dict[object, List],
               seed: Sequence[int], protocol: str) -> dict:
    """Fit, render and describe the persons of ``images``."""
    people: List[PersonKeypoints] = [p for img in images for p in persons[img["image_id"]]]
    size = {img["image_id"]: (int(img["width"]), int(img["height"])) for img in images}
    start = time.perf_counter()
    if people:
        wh = np.array([size[p.image_id] for p in people], np.float64)
        kp = np.stack([p.keypoints for p in people])
        w = np.stack([p.weights for p in people])
        box = np.array([p.bbox for p in people], np.float64)
        labelled = np.where(w[..., None] > 0, kp, np.nan)
        extent = np.nanmax(labelled, axis=1) - np.nanmin(labelled, axis=1)
        scale = np.maximum(np.maximum(box[:, 2], box[:, 3]), extent.max(axis=1)).clip(8.0)
        focal = np.array([assumed_focal_length(*s) for s in wh])
        fits = fitter.fit(kp, w, focal, 0.5 * wh, scale, box[:, 3], seed=seed)
    else:
        fits = fitter.fit(np.zeros((0, 17, 2)), np.zeros((0, 17)), np.zeros(0), np.zeros((0, 2)),
                          np.zeros(0), np.zeros(0), seed=seed)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores = fit_score([p.score for p in people], fits.reprojection_rel)
    results = render_fits(fits, [p.image_id for p in people], images, scores, protocol)
    render_seconds = time.perf_counter() - start
    return {"image_ids": [img["image_id"] for img in images], "results": results,
            "persons": _describe_persons(people, fits),
            "fit_seconds": fit_seconds, "render_seconds": render_seconds}


def _describe_persons(people: List[PersonKeypoints], fits: FitResult) -> List[dict]:
    out = []
    for k, p in enumerate(people):
        entry = {"image_id": p.image_id, "source": p.source, "smpl": fits.person(k),
                 "loss": float(fits.loss[k]), "reprojection_px": float(fits.reprojection_px[k]),
                 "reprojection_rel": float(fits.reprojection_rel[k])}
        if p.joints_3d is not None and p.joints_3d.shape == fits.joints[k].shape:
            fit_rel = fits.joints[k] - fits.joints[k, :1]
            gt_rel = p.joints_3d - p.joints_3d[:1]
            entry["mpjpe_mm"] = float(1000 * np.linalg.norm(fit_rel - gt_rel, axis=1).mean())
        out.append(entry)
    return out


def _read_chunk(path: Path, image_ids: List) -> Optional[dict]:
    """A finished chunk's content, or None if it is not written yet."""
    if not path.is_file():
        return None
    try:
        chunk = json.loads(path.read_text(encoding="utf-8"))
        ok = chunk["image_ids"] == image_ids and isinstance(chunk["results"], list)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FittingError(f"{path}: unreadable chunk ({e}); delete it to fit it again") from None
    if not ok:
        raise FittingError(f"{path}: holds other images than this run's chunk; delete it or "
                           "write to another --out")
    return chunk


def _evaluate(dataset: str, results: List[dict], image_ids: List, protocol: str):
    json_file = MetadataCatalog.get(dataset).json_file
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(json_file)
    body = load_body_for_dataset(dataset)
    return evaluate_densepose_results(
        coco_gt, results, body, NORMALIZATION, img_ids=image_ids, source=json_file,
        protocol=protocol, gt_cache_file=str(gt_cache_file(json_file, protocol, body)))


def _summary(chunks: List[dict], skipped: int, num_images: int) -> "OrderedDict[str, float]":
    persons = [p for c in chunks for p in c["persons"]]
    n = len(persons)
    fit_s = sum(c["fit_seconds"] for c in chunks)
    render_s = sum(c["render_seconds"] for c in chunks)
    out = OrderedDict(num_images=num_images, num_persons_fitted=n, num_persons_skipped=skipped,
                      num_detections=sum(len(c["results"]) for c in chunks),
                      fit_seconds=fit_s, render_seconds=render_s,
                      seconds_per_person=fit_s / n if n else float("nan"),
                      seconds_per_person_with_render=(fit_s + render_s) / n if n else float("nan"))
    if n:
        out["reprojection_px_median"] = float(np.median([p["reprojection_px"] for p in persons]))
        out["reprojection_rel_median"] = float(np.median([p["reprojection_rel"] for p in persons]))
    mpjpe = [p["mpjpe_mm"] for p in persons if "mpjpe_mm" in p]
    if mpjpe:
        out["mpjpe_root_aligned_mm_mean"] = float(np.mean(mpjpe))
        out["mpjpe_root_aligned_mm_median"] = float(np.median(mpjpe))
    return out


def run_fitting(dataset: str, out_dir, keypoints: str = "gt", min_score: float = 0.05,
                iters: int = FitSettings.iters, chunk: int = 16, seed: int = 0,
                max_images: Optional[int] = None, prior_poses: str = DEFAULT_PRIOR_POSES,
                protocol: Optional[str] = None, progress: bool = True) -> dict:
    """Fit every person of ``dataset`` (its first ``max_images`` images) from ``keypoints``
    (``"gt"`` or a keypoint results json), write the results and evaluate them; returns the
    content of metrics.json. See the module docstring for the files."""
    if chunk < 1 or iters < 1 or (max_images is not None and max_images < 1):
        raise FittingError(f"chunk, iters and max_images must be >= 1, got {chunk}, {iters}, "
                           f"{max_images}")
    if dataset not in DatasetCatalog.list():
        raise FittingError(f"dataset {dataset!r} is not registered")
    protocol = check_protocol(protocol or _default_protocol(dataset))
    out_dir = Path(out_dir)
    dicts = DatasetCatalog.get(dataset)
    images = dicts[:max_images] if max_images else list(dicts)
    if keypoints == "gt":
        persons, skipped = gt_keypoints(images)
        source = {"keypoints": "gt"}
    else:
        path = Path(keypoints)
        persons, skipped = predicted_keypoints(path, images, min_score,
                                               [d["image_id"] for d in dicts])
        source = {"keypoints": str(path.resolve()), "keypoints_sha256": file_sha256(path),
                  "min_score": float(min_score)}
    prior = PosePrior.fit(training_poses(prior_poses, evaluated_dataset=dataset, seed=seed),
                          source=prior_poses)
    rigid = min(FitSettings.rigid_iters, iters)
    settings = FitSettings(iters=int(iters), rigid_iters=rigid)
    json_file = Path(MetadataCatalog.get(dataset).json_file)
    stat = json_file.stat()
    params = OrderedDict(
        fit_version=FIT_VERSION, dataset=dataset,
        dataset_json={"path": str(json_file.resolve()), "size": stat.st_size,
                      "mtime_ns": stat.st_mtime_ns},
        **source, max_images=max_images, chunk=int(chunk), seed=int(seed), protocol=protocol,
        prior=prior.describe(), camera_fov_deg=ASSUMED_FOV_DEG,
        **{f"fit.{k}": v for k, v in settings.to_dict().items()})
    claim_output_dir(out_dir, SETTINGS_FILE, params, list(params), FittingError, "model fits")

    fitter = BodyFitter(prior, settings)
    records = [{"image_id": d["image_id"], "width": d["width"], "height": d["height"]}
               for d in images]
    groups = [records[i:i + chunk] for i in range(0, len(records), chunk)]
    chunks = []
    bar = tqdm(total=len(records), disable=not progress, desc="fit", unit="img")
    for index, group in enumerate(groups):
        path = chunk_path(out_dir, index)
        ids = [r["image_id"] for r in group]
        done = _read_chunk(path, ids)
        if done is None:
            done = _fit_chunk(fitter, group, persons, seed=(seed, index),
                              protocol=protocol)
            with atomic_write(path, "w") as f:
                json.dump(done, f)
        chunks.append(done)
        bar.update(len(group))
    bar.close()

    results = [r for c in chunks for r in c["results"]]
    with atomic_write(out_dir / RESULTS_FILE, "w") as f:
        json.dump(results, f)
    image_ids = [r["image_id"] for r in records]
    densepose = _evaluate(dataset, results, image_ids, protocol)
    summary = _summary(chunks, skipped, len(records))
    metrics = OrderedDict(
        dataset=dataset, keypoints=source["keypoints"],
        protocol=OrderedDict(name=protocol, description=PROTOCOL_DESCRIPTIONS[protocol]),
        normalization=OrderedDict(name=NORMALIZATION,
                                  description=NORMALIZATION_DESCRIPTIONS[NORMALIZATION]),
        prior=prior.describe(), fit=summary, **densepose)
    with atomic_write(out_dir / METRICS_FILE, "w") as f:
        json.dump(json_safe(metrics), f, indent=2)
    headline = {k: densepose["densepose_summary"][k] for k in
                ("gps_ap", "gpsm_ap", "auc10", "auc20", "auc30")}
    headline["sec_per_person"] = summary["seconds_per_person"]
    logger.info("Model-fitting baseline on %s (%s keypoints, %s protocol):\n%s", dataset,
                keypoints, protocol, create_small_table(headline))
    return metrics
