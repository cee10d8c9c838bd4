#!/usr/bin/env python
"""Throughput of the embedded-dataset renderer on one CPU core (images/s, files included).

Renders ``--num-images`` images into a temporary directory with ``synthesis.render`` (scene
sampling, rasterisation, shading, annotation, JPEG/npz/json writing) after one warm-up image,
and prints a json line: {"images_per_s", "width", "height", "num_images", "vertices", ...}.
"""
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: must be set before numpy / torch load

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=30)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--max-people", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the json to this file")
    args = parser.parse_args()

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from synthesis.render import render_dataset, render_image
    from synthesis.scene import load_body_assets

    body = load_body_assets()
    for b in range(1, args.max_people + 1):  # warm-up: posing models of every batch size
        render_image(10_000 + b, args.seed, args.width, args.height, b, body)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = render_dataset(Path(tmp) / "bench", args.num_images, args.seed, args.width, args.height,
                              args.max_people, progress=False)
        seconds = time.perf_counter() - start
        coco = json.loads(path.read_bytes())
    result = {
        "images_per_s": round(args.num_images / seconds, 3),
        "seconds": round(seconds, 3),
        "width": args.width,
        "height": args.height,
        "num_images": args.num_images,
        "max_people": args.max_people,
        "annotations": len(coco["annotations"]),
        "vertices": body.num_vertices,
        "faces": int(len(body.faces)),
        "threads": torch.get_num_threads(),
    }
    text = json.dumps(result)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
