"""How good are pseudo-labels? Score them against the exact labels of the same images.

    python -m distill.evaluate_pseudo_labels --pseudo DIR [DIR ...] [--truth-dataset NAME]
        [--out FILE.json]

For every pseudo-label directory (``python -m distill.pseudo_label``; e.g. one made with
single-transform and one with multi-transform inference), against the true annotations of its
images (default: the json on disk of the dataset it was made from; for
``densepose_embedded_unlabeled`` the renderer's labels, which its registration hides):

- boxes: pseudo persons matched one-to-one to true persons (greedy by score, box IoU >= 0.5);
  precision = matched / pseudo persons, recall = matched / true persons;
- keypoints (matched persons, keypoints labelled on both sides): pixel error, mean and median;
- DensePose points (every point of every pseudo person, placed at image pixel
  floor(x0 + dp_x * w / 256) like the renderer's points): part accuracy and AUC10/20/30 of the
  geodesic error against the exact dense labels at that pixel; a point on another person, on
  the background or of an unmatched pseudo person counts as wrong (error inf).
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.data import MetadataCatalog
from pycocotools import mask as mask_util

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.data.densepose_coco import load_densepose_coco_json
from densepose_ext.data.pseudo_labeled import ANNOTATIONS_FILE, read_pseudo_params
from densepose_ext.evaluation.evaluator import load_body_for_dataset
from densepose_ext.structures import FRAME_SIZE
from densepose_ext.utils import atomic_write

from .evaluate_targets import TargetErrors, geodesic_errors

__all__ = ["MATCH_IOU", "match_persons", "evaluate_pseudo_labels", "main"]

logger = logging.getLogger(__name__)

#: box IoU from which a pseudo person and a true person are the same person
MATCH_IOU = 0.5


def match_persons(pseudo: Sequence[dict], truth: Sequence[dict]) -> np.ndarray:
    """(len(pseudo),) index of the matched true person or -1: greedy in decreasing pseudo
    score, each true person used once, box IoU >= :data:`MATCH_IOU`."""
    out = np.full(len(pseudo), -1, np.int64)
    if not len(pseudo) or not len(truth):
        return out
    iou = np.asarray(mask_util.iou([p["bbox"] for p in pseudo], [t["bbox"] for t in truth],
                                   [0] * len(truth))).reshape(len(pseudo), len(truth))
    used = np.zeros(len(truth), bool)
    for k in np.argsort([-p.get("score", 1.0) for p in pseudo], kind="stable"):
        cand = np.where(used, -1.0, iou[k])
        best = int(np.argmax(cand))
        if cand[best] >= MATCH_IOU:
            out[k] = best
            used[best] = True
    return out


def _keypoint_errors(p: dict, t: dict) -> np.ndarray:
    if "keypoints" not in p or "keypoints" not in t:
        return np.zeros(0)
    a = np.asarray(p["keypoints"], np.float64).reshape(-1, 3)
    b = np.asarray(t["keypoints"], np.float64).reshape(-1, 3)
    both = (a[:, 2] > 0) & (b[:, 2] > 0)
    return np.linalg.norm(a[both, :2] - b[both, :2], axis=1)


def _point_errors(body, p: dict, truth_id: Optional[int], dense: Dict[str, np.ndarray],
                  acc: TargetErrors) -> None:
    """One pseudo person's DensePose points against the exact labels at their pixels."""
    x0, y0, w, h = (float(c) for c in p["bbox"])
    x = np.asarray(p["dp_x"], np.float64)
    y = np.asarray(p["dp_y"], np.float64)
    H, W = dense["I"].shape
    cols = np.clip(np.floor(x0 + x * w / FRAME_SIZE).astype(np.int64), 0, W - 1)
    rows = np.clip(np.floor(y0 + y * h / FRAME_SIZE).astype(np.int64), 0, H - 1)
    pI = np.asarray(p["dp_I"], np.int64)
    on_person = (dense["instance"][rows, cols] == truth_id) if truth_id is not None else \
        np.zeros(len(x), bool)
    gI = np.where(on_person, dense["I"][rows, cols], 0).astype(np.int64)
    errors = np.full(len(x), np.inf)
    sel = np.flatnonzero(gI > 0)
    if len(sel):
        errors[sel] = geodesic_errors(body, gI[sel], dense["U"][rows[sel], cols[sel]],
                                      dense["V"][rows[sel], cols[sel]], pI[sel],
                                      np.asarray(p["dp_U"])[sel], np.asarray(p["dp_V"])[sel])
    acc.add(pI == gI, gI > 0, errors)


def evaluate_pseudo_labels(pseudo_dir, truth_dataset: Optional[str] = None,
                           body=None) -> "OrderedDict[str, object]":
    """The metrics of the module docstring for one pseudo-label directory."""
    pseudo_dir = Path(pseudo_dir)
    params = read_pseudo_params(pseudo_dir)
    if truth_dataset is None:
        source = params["source"]
        if not source.startswith("dataset:"):
            raise ValueError(f"{pseudo_dir}: made from {source}; give --truth-dataset")
        truth_dataset = source[len("dataset:"):]
    meta = MetadataCatalog.get(truth_dataset)
    truth = {r["image_id"]: r for r in load_densepose_coco_json(meta.json_file, meta.image_root)}
    pseudo = load_densepose_coco_json(pseudo_dir / ANNOTATIONS_FILE, params["image_root"])
    body = body if body is not None else load_body_for_dataset(truth_dataset)
    points = TargetErrors()
    n_pseudo = n_true = n_matched = 0
    kp_errors: List[np.ndarray] = []
    for rec in pseudo:
        if rec["image_id"] not in truth:
            raise ValueError(f"{pseudo_dir}: image id {rec['image_id']} is not in "
                             f"{truth_dataset}")
        true_rec = truth[rec["image_id"]]
        gts = [a for a in true_rec["annotations"] if not a.get("iscrowd", 0)]
        anns = rec["annotations"]
        match = match_persons(anns, gts)
        n_pseudo += len(anns)
        n_true += len(gts)
        n_matched += int((match >= 0).sum())
        kp_errors += [_keypoint_errors(a, gts[m]) for a, m in zip(anns, match) if m >= 0]
        with_points = [(a, m) for a, m in zip(anns, match) if "dp_x" in a]
        if not with_points:
            continue
        if not true_rec.get("dense_file"):
            raise ValueError(f"{truth_dataset}: image id {rec['image_id']} has no exact dense "
                             "labels to score DensePose points against")
        with np.load(true_rec["dense_file"]) as npz:
            dense = {k: npz[k] for k in ("I", "U", "V", "instance")}
        for a, m in with_points:
            _point_errors(body, a, gts[m]["id"] if m >= 0 else None, dense, points)
    kp = np.concatenate(kp_errors) if kp_errors else np.zeros(0)
    out = OrderedDict(pseudo_labels=str(pseudo_dir), truth=truth_dataset,
                      multi_transform=params.get("multi_transform"),
                      score_threshold=params.get("score_threshold"), images=len(pseudo),
                      pseudo_persons=n_pseudo, true_persons=n_true,
                      box_precision=n_matched / max(n_pseudo, 1),
                      box_recall=n_matched / max(n_true, 1),
                      keypoints_compared=int(len(kp)),
                      keypoint_error_px_mean=float(kp.mean()) if len(kp) else float("nan"),
                      keypoint_error_px_median=float(np.median(kp)) if len(kp) else float("nan"))
    out["densepose_points"] = points.summary()
    return out


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    parser = argparse.ArgumentParser(prog="python -m distill.evaluate_pseudo_labels",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--pseudo", nargs="+", required=True, help="pseudo-label directories")
    parser.add_argument("--truth-dataset", help="dataset with the true labels (default: the "
                                                "one each directory was made from)")
    parser.add_argument("--out", help="also write the metrics json here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        results = [evaluate_pseudo_labels(d, args.truth_dataset) for d in args.pseudo]
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    text = json.dumps(results, indent=1)
    if args.out:
        with atomic_write(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
