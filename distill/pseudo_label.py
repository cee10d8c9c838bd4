"""Data distillation's labeller: a trained model annotates unlabelled images.

    python -m distill.pseudo_label --config-file C --weights W (--dataset NAME | --images DIR)
        [--out DIR] [--multi-transform] [--shard i --num-shards n] [--score-threshold T]
        [--opts KEY VALUE ...]

The model (DensePose R-CNN, multi-task or cascade; with ``--multi-transform`` under the
multi-transform inference of ``TEST.AUG``: scales and flip, outputs mapped back and averaged)
runs on every image. Each detection becomes a DensePose-COCO person: box, mask (the mask
head's, else DensePose's foreground), 17 keypoints, DensePose points sampled from its dense
prediction as DensePose-COCO places them (:mod:`densepose_ext.structures.annotation_points`),
the 14 coarse ``dp_masks`` and the dense IUV itself as ``dp_dense_file`` (T x T over the box,
the target ground-truth interpolation trains from).

Selection, as in Radosavovic et al. (2018): one score threshold for all images, chosen so that
the mean number of pseudo-annotated persons per image equals the labelled set's
(``--labelled-dataset``, default the config's first ``DATASETS.TRAIN``); ``--score-threshold``
or ``--persons-per-image`` override it. A person's keypoints are kept only if at least
``--min-keypoints`` of them score ``--keypoint-threshold`` or more (heatmap logit); otherwise it
carries no keypoints.

DIR (default ``$DENSEPOSE_PSEUDO_ROOT/<name>``, i.e. ``datasets/pseudo_labeled/<name>``;
name = the dataset or the image folder's name) gets ``pseudo_label.json`` (settings),
``detections/<image id>.json`` and ``targets/<image id>_<k>.png`` per image, and, once every
image of every shard is done, ``annotations.json`` (images referenced, not copied). It is then
registered as ``<name>_pseudo`` in every process that imports the built-in datasets
(:mod:`synthesis.builtin_datasets`, :mod:`densepose_ext.data.pseudo_labeled`). Files are
written atomically; a rerun skips finished images;
shards (image k goes to shard k mod n) may run in parallel, in any order, and the last one to
finish writes the dataset. Deterministic: same inputs, same files.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from PIL import Image
from torch.nn import functional as F

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.body.parts import FINE_TO_COARSE
from densepose_ext.data.pseudo_labeled import (ANNOTATIONS_FILE, DETECTIONS_DIR, PARAMS_FILE,
                                               PSEUDO_SUFFIX, TARGETS_DIR, pseudo_root)
from densepose_ext.modeling.test_time_augmentation import DensePoseRCNNWithTTA
from densepose_ext.structures import (FRAME_SIZE, DenseIUV, encode_dp_masks, mask_to_polygons,
                                      num_annotation_points, sample_annotation_points)
from densepose_ext.utils import atomic_write, file_sha256

from .dense_targets import chart_outputs_to_targets, read_valid_target, write_target
from .interpolate import _progress, build_teacher
from .output_dir import claim_output_dir

__all__ = [
    "PseudoLabelError",
    "image_folder_records",
    "PseudoLabeller",
    "select_score_threshold",
    "persons_per_image",
    "detection_to_annotation",
    "label_images",
    "finalize",
    "main",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: settings a resumed run or another shard must share with the run that started DIR
_IDENTITY_KEYS = ("source", "image_root", "model_id", "config_file", "opts", "multi_transform",
                  "transforms", "target_size", "min_score", "num_shards")
_SAFE_ID = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-"


class PseudoLabelError(ValueError):
    """Pseudo-labelling cannot proceed; the message names the file / record / directory."""


# --------------------------------------------------------------------------- image sources
def image_folder_records(image_dir: os.PathLike) -> List[dict]:
    """Records (file_name, image_id 1..N in sorted file order, height, width) of the images
    directly in ``image_dir``; an unreadable image is an error naming it."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise PseudoLabelError(f"{image_dir}: not a directory")
    files = sorted(p for p in image_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise PseudoLabelError(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    records = []
    for k, path in enumerate(files):
        try:
            with Image.open(path) as im:
                width, height = im.size
        except (OSError, ValueError) as e:
            raise PseudoLabelError(f"{path}: unreadable image ({e})") from None
        records.append({"file_name": str(path.absolute()), "image_id": k + 1,
                        "height": height, "width": width})
    return records


def _image_key(record: dict) -> str:
    key = str(record.get("image_id", ""))
    if not key or any(c not in _SAFE_ID for c in key):
        raise PseudoLabelError(f"{record.get('file_name')}: image id {key!r} cannot name a file")
    return key


# --------------------------------------------------------------------------- the labeller
class PseudoLabeller:
    """Runs a model (optionally under multi-transform inference) on one image and returns its
    detections with dense targets.

    Args:
        model: detectron2 R-CNN in eval mode with a DensePose head (mask / keypoint optional).
        cfg: its config (INPUT.FORMAT, test resize, TEST.AUG).
        multi_transform: wrap ``model`` in :class:`DensePoseRCNNWithTTA`.
        target_size: side T of the dense targets.
    """

    def __init__(self, model, cfg, multi_transform: bool = False, target_size: int = FRAME_SIZE):

        self.cfg = cfg
        self.image_format = cfg.INPUT.FORMAT
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.multi_transform = multi_transform
        self.model = DensePoseRCNNWithTTA(cfg, model) if multi_transform else model
        self.target_size = int(target_size)
        self._read = utils.read_image

    def transforms(self) -> dict:
        """The inference transforms, recorded with the labels."""
        if not self.multi_transform:
            return {"min_size": self.cfg.INPUT.MIN_SIZE_TEST,
                    "max_size": self.cfg.INPUT.MAX_SIZE_TEST, "flip": False}
        return {"min_sizes": list(self.cfg.TEST.AUG.MIN_SIZES),
                "max_size": self.cfg.TEST.AUG.MAX_SIZE, "flip": bool(self.cfg.TEST.AUG.FLIP)}

    @torch.no_grad()
    def __call__(self, record: dict) -> Tuple[List[dict], List[Optional[DenseIUV]]]:
        """(detections, their dense targets) of one image; boxes XYWH in image pixels."""
        try:
            image = self._read(record["file_name"], format=self.image_format)
        except (OSError, ValueError, SyntaxError) as e:
            raise PseudoLabelError(f"{record['file_name']}: cannot read image: {e}") from None
        h, w = image.shape[:2]
        if (h, w) != (record["height"], record["width"]):
            raise PseudoLabelError(f"{record['file_name']}: image is {w}x{h}, its record says "
                                   f"{record['width']}x{record['height']}")
        if self.multi_transform:
            chw = image
        else:
            chw = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(chw.transpose(2, 0, 1)))
        out = self.model([{"image": tensor, "height": h, "width": w}])[0]["instances"].to("cpu")
        return self._detections(out, (h, w))

    def _detections(self, inst, hw) -> Tuple[List[dict], List[Optional[DenseIUV]]]:
        boxes = inst.pred_boxes.tensor.double()
        n, size = len(inst), self.target_size
        targets: List[Optional[DenseIUV]] = [None] * n
        fg_pasted = None
        if inst.has("pred_densepose") and n:
            dp = inst.pred_densepose
            coarse = F.interpolate(dp.coarse_segm.float(), size=(size, size), mode="bilinear",
                                   align_corners=False)
            masks = coarse.argmax(dim=1) > 0
            targets = chart_outputs_to_targets(dp, masks, boxes.float(), boxes.float())
            if not inst.has("pred_masks"):
                fg_pasted = _paste_frames(masks, boxes, hw)
        dets = []
        for k in range(n):
            x0, y0, x1, y1 = (float(c) for c in boxes[k])
            det = {"bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(inst.scores[k])}
            if inst.has("pred_masks"):
                mask = inst.pred_masks[k].reshape(hw).numpy().astype(bool)
            elif fg_pasted is not None:
                mask = fg_pasted[k]
            else:
                mask = None
            if mask is not None:  # polygons: detectron2's default INPUT.MASK_FORMAT
                det["segmentation"] = mask_to_polygons(mask)
                det["mask_area"] = int(mask.sum())
            if inst.has("pred_keypoints"):
                kp = inst.pred_keypoints[k].double().numpy().copy()
                kp[:, :2] -= 0.5  # continuous coordinates -> COCO's pixel-index convention
                det["keypoints"] = [[round(float(v), 3) for v in row] for row in kp]
            dets.append(det)
        return dets, targets


def _paste_frames(masks: torch.Tensor, boxes: torch.Tensor, hw) -> np.ndarray:
    """(N,H,W) bool: T x T box-frame masks pasted into the image (nearest cell per pixel)."""
    h, w = hw
    n, t = masks.shape[0], masks.shape[-1]
    out = np.zeros((n, h, w), bool)
    cx, cy = np.arange(w) + 0.5, np.arange(h) + 0.5
    for k in range(n):  # one vectorised paste per person
        x0, y0, x1, y1 = (float(c) for c in boxes[k])
        cols = np.floor((cx - x0) * t / max(x1 - x0, 1e-6)).astype(np.int64)
        rows = np.floor((cy - y0) * t / max(y1 - y0, 1e-6)).astype(np.int64)
        inx, iny = (cols >= 0) & (cols < t), (rows >= 0) & (rows < t)
        frame = masks[k].numpy()
        out[k][np.ix_(iny, inx)] = frame[np.ix_(rows[iny], cols[inx])]
    return out


# --------------------------------------------------------------------------- selection
def persons_per_image(records: Sequence[dict]) -> float:
    """Mean number of (non-crowd) person annotations per image of a labelled dataset."""
    if not records:
        raise PseudoLabelError("the labelled dataset is empty")
    count = sum(sum(1 for a in r.get("annotations", []) if not a.get("iscrowd", 0))
                for r in records)
    return count / len(records)


def select_score_threshold(scores: Sequence[float], num_images: int, per_image: float) -> float:
    """The score threshold t keeping round(per_image x num_images) detections of ``scores``
    (all images together): the score of the last one kept; ties at t are all kept. With fewer
    detections than that, every detection is kept (t = the lowest score)."""
    s = np.sort(np.asarray(scores, np.float64))[::-1]
    if not len(s):
        return float("inf")
    keep = int(round(per_image * num_images))
    if keep <= 0:
        return float(np.nextafter(s[0], np.inf))
    return float(s[min(keep, len(s)) - 1])


def detection_to_annotation(det: dict, target: Optional[DenseIUV], image_id, ann_id: int,
                            rng: np.random.Generator, min_keypoints: int,
                            keypoint_threshold: float, target_file: Optional[str]) -> dict:
    """A DensePose-COCO person record of one kept detection."""
    x0, y0, bw, bh = det["bbox"]
    ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
           "bbox": [round(float(c), 3) for c in det["bbox"]], "score": det["score"]}
    if "segmentation" in det:
        ann["segmentation"] = det["segmentation"]
        ann["area"] = float(det["mask_area"])
    else:
        ann["area"] = float(bw * bh)
    kps = det.get("keypoints")
    if kps is not None:  # all zero (COCO's "no keypoints") unless enough are confident
        kp = np.asarray(kps, np.float64)
        confident = kp[:, 2] >= keypoint_threshold
        if confident.sum() < min_keypoints:
            confident[:] = False
        flat = np.where(confident[:, None], np.column_stack([kp[:, :2], np.full(len(kp), 2)]),
                        0.0)
        ann["keypoints"] = [round(float(v), 2) if i % 3 != 2 else int(v)
                            for i, v in enumerate(flat.ravel())]
        ann["num_keypoints"] = int(confident.sum())
    if target is not None and bool((target.i > 0).any()):
        t = target.size
        I = target.i.numpy()
        cell_area = bw * bh / (t * t)
        total = num_annotation_points((I > 0).sum() * cell_area)
        rows, cols = sample_annotation_points(rng, I, I > 0, total)
        scale = FRAME_SIZE / t
        ann["dp_x"] = [round(float(v), 4) for v in (cols + 0.5) * scale]
        ann["dp_y"] = [round(float(v), 4) for v in (rows + 0.5) * scale]
        ann["dp_I"] = [int(v) for v in I[rows, cols]]
        ann["dp_U"] = [round(float(v), 5) for v in target.u.numpy()[rows, cols]]
        ann["dp_V"] = [round(float(v), 5) for v in target.v.numpy()[rows, cols]]
        g = np.floor((np.arange(FRAME_SIZE) + 0.5) * t / FRAME_SIZE).astype(np.int64)
        ann["dp_masks"] = encode_dp_masks(FINE_TO_COARSE[I[g[:, None], g[None, :]]])
        if target_file:
            ann["dp_dense_file"] = target_file
    return ann


# --------------------------------------------------------------------------- runs
def _read_done(out_dir: Path, key: str, size: int) -> Optional[dict]:
    """The detections file of an image if it and all its targets are complete, else None."""
    path = out_dir / DETECTIONS_DIR / f"{key}.json"
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for det in done.get("detections", []):
        if det.get("target") and read_valid_target(out_dir / det["target"], size) is None:
            return None
    return done


def label_images(labeller: PseudoLabeller, records: Sequence[dict], image_root: str,
                 out_dir: Path, shard: int = 0, num_shards: int = 1, min_score: float = 0.05,
                 progress: bool = True) -> Dict[str, int]:
    """Detections and targets of this shard's images into ``out_dir`` (finished ones skipped)."""
    mine = [r for k, r in enumerate(records) if k % num_shards == shard]
    todo = [r for r in mine if _read_done(out_dir, _image_key(r), labeller.target_size) is None]
    logger.info("shard %d/%d: %d images, %d already labelled", shard, num_shards, len(mine),
                len(mine) - len(todo))
    (out_dir / DETECTIONS_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / TARGETS_DIR).mkdir(parents=True, exist_ok=True)
    bar = _progress(len(todo), f"pseudo-labelling shard {shard}", progress)
    n_dets = 0
    for rec in todo:
        key = _image_key(rec)
        dets, targets = labeller(rec)
        kept = []
        for k, (det, target) in enumerate(zip(dets, targets)):
            if det["score"] < min_score:
                continue
            if target is not None:
                det["target"] = f"{TARGETS_DIR}/{key}_{k}.png"
                write_target(out_dir / det["target"], target)
            kept.append(det)
        n_dets += len(kept)
        entry = {"image_id": rec["image_id"], "height": rec["height"], "width": rec["width"],
                 "file_name": os.path.relpath(rec["file_name"], image_root), "detections": kept}
        with atomic_write(out_dir / DETECTIONS_DIR / f"{key}.json", "w") as f:
            json.dump(entry, f, separators=(",", ":"))
        bar.update(1)
    bar.close()
    return {"images": len(mine), "labelled_now": len(todo), "detections_now": n_dets}


def finalize(out_dir: Path, records: Sequence[dict], params: dict, per_image: Optional[float],
             score_threshold: Optional[float], min_keypoints: int, keypoint_threshold: float,
             keypoint_names: Sequence[str] = ()) -> Optional[dict]:
    """Select the kept detections and write ``annotations.json``; None while images of other
    shards are still missing."""
    size = params["target_size"]
    done = []
    for rec in records:
        entry = _read_done(out_dir, _image_key(rec), size)
        if entry is None:
            return None
        done.append(entry)
    scores = [d["score"] for e in done for d in e["detections"]]
    if score_threshold is None:
        score_threshold = select_score_threshold(scores, len(done), per_image)
    images, anns = [], []
    for entry in done:
        images.append({k: entry[k] for k in ("file_name", "height", "width")}
                      | {"id": entry["image_id"]})
        for k, det in enumerate(entry["detections"]):
            if det["score"] < score_threshold:
                continue
            target = DenseIUV.from_png_file(out_dir / det["target"]) if det.get("target") else None
            rng = np.random.default_rng([params["seed"], len(images), k])
            anns.append(detection_to_annotation(
                det, target, entry["image_id"], len(anns) + 1, rng, min_keypoints,
                keypoint_threshold, det.get("target")))
    category = {"id": 1, "name": "person", "supercategory": "person"}
    if keypoint_names:
        category["keypoints"] = list(keypoint_names)
    summary = {"score_threshold": score_threshold, "persons_per_image_target": per_image,
               "images": len(images), "persons": len(anns),
               "persons_per_image": len(anns) / max(len(images), 1),
               "with_keypoints": sum(a.get("num_keypoints", 0) > 0 for a in anns),
               "with_densepose": sum("dp_x" in a for a in anns),
               "min_keypoints": min_keypoints, "keypoint_threshold": keypoint_threshold}
    data = {"info": {"pseudo_labels": {k: params[k] for k in _IDENTITY_KEYS} | summary},
            "images": images, "categories": [category], "annotations": anns}
    with atomic_write(out_dir / ANNOTATIONS_FILE, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    params = dict(params, complete=True, **summary)
    with atomic_write(out_dir / PARAMS_FILE, "w") as f:
        json.dump(params, f, indent=1, sort_keys=True)
    return summary


# --------------------------------------------------------------------------- command line
def _source(args) -> Tuple[str, List[dict], str, Optional[str]]:
    """(source description, records, image root, dataset whose metadata the labels take)."""
    if args.dataset:
        if args.dataset not in DatasetCatalog.list():
            raise PseudoLabelError(f"dataset {args.dataset!r} is not registered")
        records = DatasetCatalog.get(args.dataset)
        root = MetadataCatalog.get(args.dataset).get("image_root", None)
        if not root:
            root = os.path.commonpath([os.path.dirname(r["file_name"]) for r in records])
        return f"dataset:{args.dataset}", records, str(Path(root).absolute()), args.dataset
    records = image_folder_records(args.images)
    return f"images:{Path(args.images).absolute()}", records, str(Path(args.images).absolute()), None


def main(argv: Optional[Sequence[str]] = None) -> Optional[dict]:
    parser = argparse.ArgumentParser(prog="python -m distill.pseudo_label",
                                     description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="registered dataset whose images are labelled")
    src.add_argument("--images", help="folder of images to label")
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="trained checkpoint (.pth / .pkl)")
    parser.add_argument("--out", help=f"output directory (default {pseudo_root()}/NAME)")
    parser.add_argument("--multi-transform", action="store_true",
                        help="multi-transform inference (TEST.AUG scales and flip)")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--num-shards", type=int, default=1)
    parser.add_argument("--labelled-dataset",
                        help="dataset whose persons per image the selection matches "
                             "(default: the config's first DATASETS.TRAIN)")
    parser.add_argument("--persons-per-image", type=float,
                        help="target mean persons per image (overrides --labelled-dataset)")
    parser.add_argument("--score-threshold", type=float, help="fixed score threshold")
    parser.add_argument("--min-score", type=float, default=0.05,
                        help="detections below this are not stored at all")
    parser.add_argument("--min-keypoints", type=int, default=8,
                        help="keypoints scoring >= --keypoint-threshold a person needs to keep "
                             "its keypoints")
    parser.add_argument("--keypoint-threshold", type=float, default=0.0,
                        help="keypoint heatmap logit a keypoint needs to count as confident")
    parser.add_argument("--target-size", type=int, default=FRAME_SIZE)
    parser.add_argument("--seed", type=int, default=0, help="seed of the DensePose point sampling")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ... (must come last)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not 0 <= args.shard < args.num_shards:
        parser.error(f"--shard must lie in [0, {args.num_shards})")
    try:
        source, records, image_root, meta_name = _source(args)
        model, cfg = build_teacher(args.config_file, args.weights, args.opts)
        labelled = args.labelled_dataset or (cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else None)
        per_image = args.persons_per_image
        if per_image is None and args.score_threshold is None:
            if labelled is None or labelled not in DatasetCatalog.list():
                raise PseudoLabelError(f"labelled dataset {labelled!r} is not registered; give "
                                       "--labelled-dataset, --persons-per-image or "
                                       "--score-threshold")
            per_image = persons_per_image(DatasetCatalog.get(labelled))
            logger.info("%s has %.3f persons per image: the selection keeps as many", labelled,
                        per_image)
        labeller = PseudoLabeller(model, cfg, args.multi_transform, args.target_size)
        name = args.dataset or Path(args.images).absolute().name
        out_dir = Path(args.out) if args.out else pseudo_root() / name
        out_dir = out_dir.absolute()
        params = {
            "name": out_dir.name + PSEUDO_SUFFIX, "source": source, "image_root": image_root,
            "metadata_dataset": meta_name or labelled,
            "model_id": "sha256:" + file_sha256(args.weights),
            "config_file": str(Path(args.config_file).absolute()), "opts": list(args.opts),
            "multi_transform": bool(args.multi_transform), "transforms": labeller.transforms(),
            "target_size": int(args.target_size), "min_score": float(args.min_score),
            "num_shards": int(args.num_shards), "seed": int(args.seed), "complete": False,
        }
        claim_output_dir(out_dir, PARAMS_FILE, params, _IDENTITY_KEYS, PseudoLabelError,
                         "pseudo-labels", rewrite=False)
        stats = label_images(labeller, records, image_root, out_dir, args.shard,
                             args.num_shards, args.min_score, not args.no_progress)
        meta = MetadataCatalog.get(params["metadata_dataset"]) if params["metadata_dataset"] \
            else None
        summary = finalize(out_dir, records, params, per_image, args.score_threshold,
                           args.min_keypoints, args.keypoint_threshold,
                           meta.get("keypoint_names", ()) if meta is not None else ())
    except PseudoLabelError as e:
        parser.exit(2, f"error: {e}\n")
    result = {"out_dir": str(out_dir), "shard": args.shard, **stats}
    if summary is None:
        result["note"] = "other shards still have images to label; the last one writes the dataset"
    else:
        result.update(summary, dataset=params["name"])
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
