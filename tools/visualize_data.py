#!/usr/bin/env python
"""Draw DensePose ground truth of a dataset as a PNG grid.

Each image is shown as panels (``--panels``), by default two side by side: the image with
instance mask outlines and COCO keypoints + skeleton, and the image with the part-colour overlay
and U/V iso-contours of the exact dense IUV (embedded data; when available) under the annotated
DensePose points coloured by part.

Examples:
    python tools/visualize_data.py --dataset densepose_embedded_mini --num 8 --out grid.png
    python tools/visualize_data.py --json ann.json --image-root images/ --out grid.png

Annotations drawn over the wrong picture would mislead: every chosen image must lie inside the
image root (``--image-root``, or the dataset's ``image_root``), decode completely and have the
json's width and height, else the tool stops with an error naming the json, image id and file.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densepose_ext.utils import atomic_write  # noqa: E402


class VisualizeDataError(ValueError):
    """A chosen record whose image cannot be drawn faithfully (outside the root, unreadable,
    or of another size than the json says)."""


def check_record_image(record: dict, image_root: Optional[str], source: str) -> None:
    """Refuse an image outside ``image_root``, one that does not decode completely, or one
    whose (EXIF-oriented) size differs from the record's ``width`` / ``height``."""
    from PIL import Image, ImageOps

    path = Path(record["file_name"])
    where = f"{source}: image id {record.get('image_id')!r} ({path})"
    if image_root:
        root = Path(image_root).resolve()
        if root not in path.resolve().parents:
            raise VisualizeDataError(f"{where}: outside the image root {root}")
    try:
        with Image.open(path) as im:
            im.load()  # decodes everything: a truncated file raises here
            width, height = ImageOps.exif_transpose(im).size
    except Exception as e:  # noqa: BLE001 (any decoding failure means nothing to draw on)
        raise VisualizeDataError(f"{where}: not a readable image ({type(e).__name__}: {e})") from e
    expected = (record.get("width"), record.get("height"))
    if None not in expected and (width, height) != expected:
        raise VisualizeDataError(
            f"{where}: the image is {width}x{height} but the json says "
            f"{expected[0]}x{expected[1]}; annotations would be drawn misaligned")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="registered dataset name, e.g. densepose_embedded_mini")
    src.add_argument("--json", help="any DensePose-COCO annotation file (needs --image-root)")
    parser.add_argument("--image-root", help="directory of the images of --json")
    parser.add_argument("--num", type=int, default=8, help="number of images (default 8)")
    parser.add_argument("--cols", type=int, default=4, help="grid columns (default 4)")
    parser.add_argument("--cell", type=int, default=256, help="cell side in pixels (default 256)")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                        help="pick images at random with this seed (default: the first ones)")
    parser.add_argument("--panels", nargs="+", default=["masks+keypoints", "iuv+points"],
                        help="one panel per item, each '+'-joined layers from: "
                        "iuv, masks, keypoints, points (default: masks+keypoints iuv+points)")
    parser.add_argument("--out", required=True, help="output PNG path")
    args = parser.parse_args(argv)
    if args.json and not args.image_root:
        parser.error("--json needs --image-root")
    if args.num < 1 or args.cols < 1 or not 16 <= args.cell <= 4096:
        parser.error(f"--num and --cols must be >= 1 and --cell in 16..4096, got --num "
                     f"{args.num} --cols {args.cols} --cell {args.cell}")
    if args.json and not Path(args.json).is_file():
        parser.error(f"--json {args.json}: no such file")
    if args.image_root and not Path(args.image_root).is_dir():
        parser.error(f"--image-root {args.image_root}: no such directory")
    from densepose_ext.vis.dataset_vis import LAYERS

    for panel in args.panels:
        unknown = sorted(set(panel.split("+")) - set(LAYERS))
        if unknown:
            parser.error(f"--panels {panel}: unknown layers {unknown}; choose from {list(LAYERS)}")
    return args


def main(argv: Optional[List[str]] = None) -> Path:
    """Write the grid and return its path."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
    from densepose_ext.data import load_densepose_coco_json
    from densepose_ext.vis import draw_dataset_dict, make_grid

    if args.dataset:
        if args.dataset not in DatasetCatalog.list():
            raise VisualizeDataError(f"--dataset {args.dataset}: no such registered dataset")
        records = DatasetCatalog.get(args.dataset)
        meta = MetadataCatalog.get(args.dataset)
        names, rules = meta.get("keypoint_names"), meta.get("keypoint_connection_rules")
        image_root, source = meta.get("image_root"), meta.get("json_file") or args.dataset
    else:
        from detectron2.data.datasets.builtin_meta import (
            COCO_PERSON_KEYPOINT_NAMES,
            KEYPOINT_CONNECTION_RULES,
        )

        records = load_densepose_coco_json(args.json, args.image_root)
        names, rules = COCO_PERSON_KEYPOINT_NAMES, KEYPOINT_CONNECTION_RULES
        image_root, source = args.image_root, args.json
    if not records:
        raise VisualizeDataError(f"{source}: the dataset has no images")
    order = np.arange(len(records))
    if args.shuffle is not None:
        order = np.random.default_rng(args.shuffle).permutation(len(records))
    chosen = [records[k] for k in order[: args.num]]
    for record in chosen:
        check_record_image(record, image_root, str(source))
    panels = [p.split("+") for p in args.panels]
    cells = [
        np.hstack([draw_dataset_dict(r, names, rules, max_size=args.cell, show=p) for p in panels])
        for r in chosen
    ]
    grid = make_grid(cells, args.cols, (args.cell, args.cell * len(panels)),
                     titles=[f"id {r['image_id']}" for r in chosen])
    out = Path(args.out)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {out}")
    with atomic_write(out, "wb") as f:
        f.write(png.tobytes())
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]}, {len(chosen)} images)")
    return out


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
