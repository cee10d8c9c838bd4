"""How good are dense targets? Compare them with exact labels and with the annotated points.

    python -m distill.evaluate_targets --dataset D --targets DIR [--out FILE.json]

``dense`` (datasets with the embedded renderer's exact dense IUV, ``dense/<image>.npz``):
every image pixel of every person with a target (its instance id in the exact map) is looked
up in the target cell containing the pixel centre and compared with the exact label there.
``points`` (any dataset): the same at the annotated DensePose points (for a teacher: the
points it was trained on, or held-out ones). For each: part accuracy (target part == true
part; unlabelled counts as wrong), coverage (fraction labelled) and pointwise AUC10/20/30 of
the geodesic error on the body surface between the true and the target surface point (each
(I, U, V) mapped to its part's nearest chart vertex, as GPS does; unlabelled = infinite).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.data.interpolated import ANNOTATIONS_FILE, read_params
from densepose_ext.evaluation.evaluator import load_body_for_dataset
from densepose_ext.evaluation.pointwise import auc_metrics
from densepose_ext.structures import DENSE_TARGET_KEY, FRAME_SIZE, DenseIUV, has_densepose
from densepose_ext.utils import atomic_write

__all__ = ["TargetErrors", "geodesic_errors", "evaluate_targets", "main"]

logger = logging.getLogger(__name__)


class TargetErrors:
    """Accumulates (part correct, labelled, geodesic error) over compared positions."""

    def __init__(self):
        self.correct: List[np.ndarray] = []
        self.labelled: List[np.ndarray] = []
        self.errors: List[np.ndarray] = []

    def add(self, correct: np.ndarray, labelled: np.ndarray, errors: np.ndarray) -> None:
        self.correct.append(correct)
        self.labelled.append(labelled)
        self.errors.append(errors)

    def summary(self) -> "OrderedDict[str, float]":
        cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0))
        correct, labelled, errors = cat(self.correct), cat(self.labelled), cat(self.errors)
        out = OrderedDict(count=int(len(correct)))
        if not len(correct):
            return out
        out["part_accuracy"] = float(correct.mean())
        out["coverage"] = float(labelled.mean())
        out.update(auc_metrics(errors))
        finite = errors[np.isfinite(errors)]
        out["median_error_cm"] = float(np.median(finite) * 100) if len(finite) else float("inf")
        return out


def geodesic_errors(body, I_true, U_true, V_true, I_pred, U_pred, V_pred) -> np.ndarray:
    """Geodesic distances (P,) in metres between true and predicted (I, U, V) surface points;
    inf where the prediction is unlabelled (I = 0) or maps to no vertex."""
    I_true = np.asarray(I_true, np.int64)
    I_pred = np.asarray(I_pred, np.int64)
    errors = np.full(len(I_true), np.inf)
    sel = np.flatnonzero(I_pred > 0)
    if not len(sel):
        return errors
    v_true = body.iuv_to_vertex(I_true[sel], np.asarray(U_true, np.float64)[sel],
                                np.asarray(V_true, np.float64)[sel])
    v_pred = body.iuv_to_vertex(I_pred[sel], np.asarray(U_pred, np.float64)[sel],
                                np.asarray(V_pred, np.float64)[sel])
    ok = (v_true >= 0) & (v_pred >= 0)
    errors[sel[ok]] = body.geodesic_distance(v_true[ok], v_pred[ok])
    return errors


def _target_map(targets_dir: Path) -> Dict[object, Path]:
    """Annotation id -> target path, from DIR/annotations.json."""
    path = targets_dir / ANNOTATIONS_FILE
    try:
        with open(path, "r", encoding="utf-8") as f:
            anns = json.load(f)["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a readable DensePose-COCO json with targets ({e})") from None
    return {a["id"]: targets_dir / a[DENSE_TARGET_KEY] for a in anns if DENSE_TARGET_KEY in a}


def _stack(targets: Sequence[DenseIUV]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.stack([t.i.numpy() for t in targets]), np.stack([t.u.numpy() for t in targets]),
            np.stack([t.v.numpy() for t in targets]))


def _cells(pos: np.ndarray, start: np.ndarray, extent: np.ndarray, size: int) -> np.ndarray:
    return np.clip(np.floor((pos - start) * size / np.maximum(extent, 1e-9)), 0, size - 1
                   ).astype(np.int64)


def _compare_dense(body, npz_path: str, anns: Sequence[dict], targets: Sequence[DenseIUV],
                   acc: TargetErrors) -> None:
    """Every pixel of the persons ``anns`` against their targets (vectorised per image)."""
    with np.load(npz_path) as npz:
        I, U, V, inst = (npz[k] for k in ("I", "U", "V", "instance"))
    ids = np.array([a["id"] for a in anns], np.int64)
    order = np.argsort(ids)
    ys, xs = np.nonzero(np.isin(inst, ids))
    k = order[np.searchsorted(ids[order], inst[ys, xs])]  # person of each pixel
    boxes = np.array([a["bbox"] for a in anns], np.float64)[k]
    TI, TU, TV = _stack(targets)
    size = TI.shape[-1]
    c = _cells(xs + 0.5, boxes[:, 0], boxes[:, 2], size)
    r = _cells(ys + 0.5, boxes[:, 1], boxes[:, 3], size)
    tI, tU, tV = TI[k, r, c], TU[k, r, c], TV[k, r, c]
    gI, gU, gV = I[ys, xs].astype(np.int64), U[ys, xs], V[ys, xs]
    acc.add(tI == gI, tI > 0, geodesic_errors(body, gI, gU, gV, tI, tU, tV))


def _compare_points(body, anns: Sequence[dict], targets: Sequence[DenseIUV],
                    acc: TargetErrors) -> None:
    """The annotated points of ``anns`` against their targets."""
    TI, TU, TV = _stack(targets)
    size = TI.shape[-1]
    counts = [len(a["dp_x"]) for a in anns]
    k = np.repeat(np.arange(len(anns)), counts)
    cat = (lambda key: np.concatenate([np.asarray(a[key], np.float64) for a in anns]))
    x, y = cat("dp_x"), cat("dp_y")
    c = _cells(x, 0.0, np.float64(FRAME_SIZE), size)
    r = _cells(y, 0.0, np.float64(FRAME_SIZE), size)
    tI, tU, tV = TI[k, r, c], TU[k, r, c], TV[k, r, c]
    gI = np.rint(cat("dp_I")).astype(np.int64)
    acc.add(tI == gI, tI > 0, geodesic_errors(body, gI, cat("dp_U"), cat("dp_V"), tI, tU, tV))


def evaluate_targets(dataset_name: str, targets_dir: os.PathLike, body=None,
                     max_images: Optional[int] = None) -> "OrderedDict[str, object]":
    """Metrics of the targets in ``targets_dir`` on ``dataset_name`` (see module docstring).

    ``body``: body model for geodesics (default: the one the dataset's metadata names).
    Persons without a target are counted (``persons_without_target``), not compared.
    """
    targets_dir = Path(targets_dir)
    params = read_params(targets_dir)
    if params["source_dataset"] != dataset_name:
        logger.warning("%s was made from %s, evaluated on %s", targets_dir,
                       params["source_dataset"], dataset_name)
    paths = _target_map(targets_dir)
    body = body if body is not None else load_body_for_dataset(dataset_name)
    records = DatasetCatalog.get(dataset_name)[:max_images]
    dense, points = TargetErrors(), TargetErrors()
    n_persons = n_missing = n_dense_images = 0
    for rec in records:
        anns = [a for a in rec["annotations"] if has_densepose(a) and not a.get("iscrowd", 0)]
        n_missing += sum(a["id"] not in paths for a in anns)
        anns = [a for a in anns if a["id"] in paths]
        if not anns:
            continue
        n_persons += len(anns)
        targets = [DenseIUV.from_png_file(paths[a["id"]]) for a in anns]
        if len({t.size for t in targets}) != 1:
            raise ValueError(f"{targets_dir}: targets of image id={rec['image_id']} differ in size")
        _compare_points(body, anns, targets, points)
        if rec.get("dense_file"):
            n_dense_images += 1
            _compare_dense(body, rec["dense_file"], anns, targets, dense)
    out = OrderedDict(dataset=dataset_name, targets=str(targets_dir),
                      teacher=params.get("teacher_id"), images=len(records), persons=n_persons,
                      persons_without_target=n_missing)
    if n_dense_images:
        out["dense"] = dense.summary()
    out["points"] = points.summary()
    return out


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m distill.evaluate_targets", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="registered dataset (ground truth)")
    parser.add_argument("--targets", required=True, help="interpolation output directory")
    parser.add_argument("--max-images", type=int, default=None, help="first N images only")
    parser.add_argument("--out", help="also write the metrics json here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        metrics = evaluate_targets(args.dataset, args.targets, max_images=args.max_images)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    text = json.dumps(metrics, indent=1)
    if args.out:
        with atomic_write(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return metrics


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
