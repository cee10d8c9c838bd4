#!/usr/bin/env python
"""Run a trained DensePose R-CNN on images and write IUV overlays and a json of results.

    python tools/apply_net.py --config-file C --weights W IMAGE_OR_DIR [...] --out DIR \
        [--min-score 0.5] [--opts KEY VALUE ...]

For every image: ``DIR/<stem>.png`` (detections with part colours, U/V iso-contours and boxes)
and one entry in ``DIR/results.json``: per detection its box (XYWH), score and the IUV in the
box as a PNG-encoded string (``densepose_ext.evaluation.decode_iuv_png`` reads it back).

The tool refuses to mislead: ``--weights ""``, or a checkpoint none of whose tensors (or none
of whose DensePose tensors) fit the model, is an error unless ``--allow-random-weights`` (an
untrained run, e.g. to time the model). An image that does not decode completely (missing,
truncated, corrupt) gets ``{"file_name", "error"}`` in results.json and the others go on; the
run then ends with an error naming the failed images (exit status 2). results.json is
rewritten atomically as images finish (at most every few seconds, and at the end, also when
the run is interrupted by an exception), so finished work is never lost.
"""
import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
SAVE_EVERY_S = 5.0  # results.json is rewritten at most this often while images finish


class ApplyNetError(ValueError):
    """Bad weights or inputs of apply_net (reported as ``error: <message>``, exit status 2)."""


def list_images(inputs: List[str]) -> List[Path]:
    """Image files named on the command line or found (sorted) in the named directories.

    Two images with the same stem would write the same overlay: refused.
    """
    files: List[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir()
                            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image or directory")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {inputs}")
    stems: Dict[str, Path] = {}
    for path in files:
        other = stems.setdefault(path.stem, path)
        if other != path:
            raise ApplyNetError(f"{other} and {path} would both write {path.stem}.png: "
                                "rename one or run them into different --out directories")
    return files


def check_weights(checkpointer, model, weights: str) -> None:
    """Refuse a checkpoint that leaves the model (or its DensePose branch) untrained."""
    from densepose_ext.modeling.checkpoint import is_densepose_key

    incompatible = checkpointer.incompatible
    missing = set(incompatible.missing_keys if incompatible is not None else [])
    keys = [k for k in model.state_dict() if not k.endswith(("pixel_mean", "pixel_std"))]
    loaded = [k for k in keys if k not in missing]
    if not loaded:
        raise ApplyNetError(
            f"--weights {weights}: none of the checkpoint's tensors match the model (all "
            f"{len(keys)} missing; another architecture or config?). Pass "
            "--allow-random-weights to run an untrained model on purpose.")
    dp = [k for k in keys if is_densepose_key(k)]
    if dp and not any(k in loaded for k in dp):
        raise ApplyNetError(
            f"--weights {weights}: the checkpoint has no DensePose tensors for this model, so "
            "the IUV outputs would be untrained. Pass --allow-random-weights to run it anyway.")


def read_bgr(path: Path) -> np.ndarray:
    """The image as BGR uint8, decoded completely (a truncated or corrupt file raises)."""
    from detectron2.data.detection_utils import read_image

    try:
        return np.ascontiguousarray(read_image(str(path), format="BGR"))
    except Exception as e:  # noqa: BLE001 (any decoding failure is recorded for this image)
        raise ApplyNetError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="model checkpoint (.pth or .pkl)")
    parser.add_argument("--allow-random-weights", action="store_true",
                        help="run even when --weights is empty or does not fit the model "
                        "(untrained outputs)")
    parser.add_argument("inputs", nargs="+", help="images and/or directories of images")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--min-score", type=float, default=0.5,
                        help="detections to keep (0..1, default 0.5)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ... (must come last)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.min_score <= 1.0:
        parser.error(f"--min-score must be in 0..1, got {args.min_score}")
    if not args.weights and not args.allow_random_weights:
        parser.error('--weights "" would run an untrained model; give a checkpoint or pass '
                     "--allow-random-weights")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    images = list_images(args.inputs)

    from detectron2.engine import DefaultPredictor

    import densepose_ext.modeling  # noqa: F401  (registers the ROI heads)
    from densepose_ext.evaluation.iuv import (
        encode_iuv_png,
        instances_to_box_iuvs,
        paste_iuv_in_image,
    )
    from densepose_ext.modeling.checkpoint import DensePoseCheckpointer
    from densepose_ext.utils import atomic_write
    from densepose_ext.utils.cli import load_config
    from densepose_ext.vis.overlay import draw_iuv

    cfg = load_config(args.config_file, args.opts)
    cfg.MODEL.WEIGHTS = ""  # loaded below, through the DensePose-aware checkpointer
    cfg.freeze()
    predictor = DefaultPredictor(cfg)
    if args.weights:
        checkpointer = DensePoseCheckpointer.from_config(cfg, predictor.model)
        checkpointer.load(args.weights)
        if not args.allow_random_weights:
            check_weights(checkpointer, predictor.model, args.weights)
    else:
        logging.warning("--allow-random-weights: running an UNTRAINED model")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "results.json"
    results: List[dict] = []
    failed: List[str] = []

    def save() -> None:
        with atomic_write(target, "w") as f:
            json.dump(results, f)

    last_save = time.monotonic()
    try:
        for path in images:
            try:
                bgr = read_bgr(path)
            except ApplyNetError as e:
                logging.error("%s", e)
                results.append({"file_name": str(path), "error": str(e)})
                failed.append(str(path))
                continue
            with torch.no_grad():
                inst = predictor(bgr)["instances"].to("cpu")
            inst = inst[inst.scores >= args.min_score]
            boxes = inst.pred_boxes.tensor.numpy().copy()
            boxes[:, 2:] -= boxes[:, :2]  # XYXY -> XYWH
            scores = inst.scores.numpy()
            iuvs = instances_to_box_iuvs(inst.pred_densepose, boxes) if len(inst) else []
            I, U, V, _ = paste_iuv_in_image(iuvs, boxes, scores, bgr.shape[:2])
            rgb = draw_iuv(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), I.astype(np.int64), U, V)
            for x, y, w, h in boxes.round().astype(int):
                cv2.rectangle(rgb, (x, y), (x + w, y + h), (255, 255, 255), 1)
            ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError(f"{path}: PNG encoding of the overlay failed")
            with atomic_write(out / f"{path.stem}.png", "wb") as f:
                f.write(png.tobytes())
            results.append({
                "file_name": str(path),
                "detections": [
                    {"bbox": [round(float(c), 2) for c in box], "score": round(float(s), 4),
                     "densepose": {"iuv_png": encode_iuv_png(*iuv)}}
                    for box, s, iuv in zip(boxes, scores, iuvs)
                ],
            })
            logging.info("%s: %d people", path, len(inst))
            if time.monotonic() - last_save >= SAVE_EVERY_S:
                save()
                last_save = time.monotonic()
    finally:
        save()  # what is done, also when a later image raised
    done = len(results) - len(failed)
    print(f"wrote {done} overlays and {target}")
    if failed:
        raise ApplyNetError(
            f"{len(failed)} of {len(images)} images could not be read ({', '.join(failed[:5])}"
            f"{', ...' if len(failed) > 5 else ''}); each is recorded with its error in {target}")
    return target


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
