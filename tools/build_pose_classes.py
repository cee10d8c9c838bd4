#!/usr/bin/env python
"""K-means 3D-pose classes of registered datasets, written as an npz (with their provenance,
the nominal scale and the mean pose)::

    python tools/build_pose_classes.py --dataset densepose_embedded_train --k 100 \\
        --out output/pose3d_classes_K100.npz

A file that exists and was built with the same settings is kept (``--force`` rebuilds).
"""
import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import synthesis.builtin_datasets  # noqa: E402,F401  (registers the built-in datasets)
from densepose_ext.modeling.pose3d.class_sets import BUILD_KEYS, build_class_set  # noqa: E402
from densepose_ext.pose3d import PoseClasses  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> PoseClasses:
    parser = argparse.ArgumentParser(
        description="K-means 3D-pose classes of registered datasets, written as an npz.")
    parser.add_argument("--dataset", action="append", required=True,
                        help="registered dataset name (repeat for several)")
    parser.add_argument("--k", type=int, required=True, help="number of classes K")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--seed", type=int, default=0, help="k-means++ seed")
    parser.add_argument("--max-iter", type=int, default=100, help="Lloyd iterations at most")
    parser.add_argument("--no-mirror", action="store_true",
                        help="leave out the mirror images of the poses (training without flips)")
    parser.add_argument("--align-yaw", action="store_true",
                        help="remove the rotation about the vertical axis (classes ignore "
                             "viewpoint)")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out matches")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    wanted = dict(datasets=list(args.dataset), k=args.k, seed=args.seed,
                  mirror=not args.no_mirror, align_yaw=args.align_yaw, max_iter=args.max_iter)
    if Path(args.out).is_file() and not args.force:
        existing = PoseClasses.load(args.out)
        if existing.mean_pose is not None and all(
                existing.provenance.get(key) == wanted[key] for key in BUILD_KEYS):
            print(f"{args.out}: up to date ({existing.num_classes} classes); --force rebuilds")
            return existing
    classes = build_class_set(args.dataset, args.k, args.seed, not args.no_mirror,
                              args.align_yaw, args.max_iter)
    classes.save(args.out)
    p = classes.provenance
    print(json.dumps({"out": str(args.out), **{k: p[k] for k in (
        "k", "num_poses", "num_points", "iterations", "converged", "nominal_scale_m",
        "quantisation_mpjpe_mm", "mean_pose_mpjpe_mm", "class_sizes_min_max")}}, indent=2))
    return classes


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
