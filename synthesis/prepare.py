"""Render the embedded DensePose-COCO splits (if missing) and print a summary of each.

    python -m synthesis.prepare [--splits train val] [--workers 2]

Splits land under ``$DETECTRON2_DATASETS/densepose_embedded/<split>/``; an interrupted run
resumes, and a split already on disk is only summarised.
"""
import argparse
import json
import logging
import os
from pathlib import Path

from densepose_ext.data import datasets_root

from .embedded_datasets import EMBEDDED_SPLITS, ensure_embedded_split


def summarize(json_file: Path) -> dict:
    """Image / person / DensePose-point counts of one DensePose-COCO json."""
    data = json.loads(Path(json_file).read_text())
    anns = data["annotations"]
    dp = [a for a in anns if "dp_I" in a]
    return {
        "json": str(json_file),
        "images": len(data["images"]),
        "persons": len(anns),
        "persons_with_densepose": len(dp),
        "densepose_points": sum(len(a["dp_I"]) for a in dp),
    }


def main(argv=None) -> None:
    subdirs = {s.subdir: name for name, s in EMBEDDED_SPLITS.items()}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=sorted(subdirs))
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="renderer processes"
    )
    parser.add_argument(
        "--rerender-outdated", action="store_true",
        help="re-render splits made by another renderer version or body model",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = datasets_root()
    for sub in args.splits:
        split = EMBEDDED_SPLITS[subdirs[sub]]
        json_file = ensure_embedded_split(
            (root / "densepose_embedded" / sub).absolute(), split, workers=args.workers,
            rerender_outdated=args.rerender_outdated,
        )
        print(json.dumps({"dataset": subdirs[sub], **summarize(json_file)}))


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
