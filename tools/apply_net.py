#!/usr/bin/env python
"""Run a trained DensePose R-CNN on images and write IUV overlays and a json of results.

    python tools/apply_net.py --config-file C --weights W IMAGE_OR_DIR [...] --out DIR \
        [--min-score 0.5] [--opts KEY VALUE ...]

For every image: ``DIR/<stem>.png`` (detections with part colours, U/V iso-contours and boxes)
and one entry in ``DIR/results.json``: per detection its box (XYWH), score and the IUV in the
box as a PNG-encoded string (``densepose_ext.evaluation.decode_iuv_png`` reads it back).
"""
import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def list_images(inputs: List[str]) -> List[Path]:
    """Image files named on the command line or found (sorted) in the named directories."""
    files: List[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image or directory")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {inputs}")
    return files


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="model checkpoint (.pth or .pkl)")
    parser.add_argument("inputs", nargs="+", help="images and/or directories of images")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--min-score", type=float, default=0.5, help="detections to keep")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ... (must come last)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from detectron2.engine import DefaultPredictor

    import densepose_ext.modeling  # noqa: F401  (registers the ROI heads)
    from densepose_ext.config import setup_densepose_cfg
    from densepose_ext.evaluation.iuv import (
        encode_iuv_png,
        instances_to_box_iuvs,
        paste_iuv_in_image,
    )
    from densepose_ext.modeling.checkpoint import DensePoseCheckpointer
    from densepose_ext.utils import atomic_write
    from densepose_ext.vis.overlay import draw_iuv

    cfg = setup_densepose_cfg(args.config_file, args.opts)
    cfg.MODEL.WEIGHTS = ""  # loaded below, through the DensePose-aware checkpointer
    cfg.freeze()
    predictor = DefaultPredictor(cfg)
    DensePoseCheckpointer.from_config(cfg, predictor.model).load(args.weights)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in list_images(args.inputs):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: not a readable image")
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
    target = out / "results.json"
    with atomic_write(target, "w") as f:
        json.dump(results, f)
    print(f"wrote {len(results)} overlays and {target}")
    return target


if __name__ == "__main__":
    main()
