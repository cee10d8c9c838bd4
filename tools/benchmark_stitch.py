#!/usr/bin/env python
"""Throughput of stitched synthesis on one CPU core, and candidate-search time for a large pool.

1. Stitches ``--num-images`` images (256x256 by default) from the source pool (default: the
   embedded training split) with ``synthesis.stitch`` after a short warm-up, once in memory
   (``stitch``: pose, camera, search, warps, blending, DensePose transfer) and once written to
   a temporary directory (JPEG, dense npz, json fragments and assembly included).
2. Builds the per-joint search index of a synthetic pool of ``--pool-size`` 2D poses (random
   similarity transforms and perturbations of real query poses, random visibility) and times
   the best-match search of ``--queries`` queries.

Prints one json line: images_per_s, images_per_s_with_files, per-stage seconds, pool size,
index_build_s, search_ms_per_query, ...
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


def _synthetic_pool(rng, queries, n):
    """(n,17,2) keypoints: the queries under random similarity transforms plus noise, and (n,17)
    visibility with ~10 % unlabelled and ~15 % occluded keypoints."""
    import numpy as np

    base = queries[rng.integers(len(queries), size=n)]
    base = base - base.mean(1, keepdims=True)
    ang = rng.normal(0.0, 0.3, n)
    scale = rng.uniform(0.3, 1.5, n)
    c, s = np.cos(ang) * scale, np.sin(ang) * scale
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    kps = np.einsum("nij,nkj->nki", rot, base) + rng.uniform(50, 200, (n, 1, 2)) + rng.normal(0, 4.0, (n, 17, 2))
    vis = rng.choice([0, 1, 2], size=(n, 17), p=[0.1, 0.15, 0.75])
    return kps, vis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=40)
    parser.add_argument("--sources", default=None, help="COCO keypoint json (default: embedded train split)")
    parser.add_argument("--images", default=None)
    parser.add_argument("--poses", default="motions")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool-size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--output", default=None, help="also write the json to this file")
    args = parser.parse_args()

    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from synthesis.pose_sources import resolve_pose_source
    from synthesis.smpl_poser import SMPLPoser
    from synthesis.stitch import StitchConfig, Stitcher, default_sources, stitch_dataset
    from synthesis.stitch_index import LocalPoseIndex, load_source_pool

    sources, images = (Path(args.sources), Path(args.images or Path(args.sources).parent / "images")) \
        if args.sources else default_sources()
    t0 = time.perf_counter()
    pool = load_source_pool(sources, images)
    cfg = StitchConfig(width=args.size, height=args.size)
    stitcher = Stitcher(pool, resolve_pose_source(args.poses), SMPLPoser(), cfg)
    setup_s = time.perf_counter() - t0
    for k in range(3):  # warm-up: model loading, first caches
        stitcher.stitch(10_000 + k, args.seed)

    start = time.perf_counter()
    queries = []
    for k in range(args.num_images):
        queries.append(stitcher.stitch(k, args.seed).keypoints_2d)
    stitch_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        stitch_dataset(Path(tmp) / "bench", args.num_images, args.seed + 1, config=cfg, stitcher=stitcher,
                       progress=False)
        files_s = time.perf_counter() - start

    rng = np.random.default_rng(0)
    kps, vis = _synthetic_pool(rng, np.asarray(queries), args.pool_size)
    start = time.perf_counter()
    index = LocalPoseIndex(kps, vis)
    build_s = time.perf_counter() - start
    index.search(queries[0])  # warm-up
    start = time.perf_counter()
    for k in range(args.queries):
        index.search(queries[k % len(queries)])
    search_s = (time.perf_counter() - start) / args.queries
    result = {
        "images_per_s": round(args.num_images / stitch_s, 2),
        "images_per_s_with_files": round(args.num_images / files_s, 2),
        "seconds_per_image": round(stitch_s / args.num_images, 4),
        "width": args.size, "height": args.size, "num_images": args.num_images, "threads": 1,
        "source_pool": len(pool), "sources_file": str(sources), "poses": args.poses,
        "setup_s": round(setup_s, 2),
        "synthetic_pool_size": args.pool_size,
        "index_build_s": round(build_s, 3),
        "index_mb": round(sum(d.nbytes for d in index.descriptors) / 2 ** 20, 1),
        "search_ms_per_query": round(1000 * search_s, 2),
        "queries": args.queries,
    }
    line = json.dumps(result)
    print(line)
    if args.output:
        Path(args.output).write_text(line + "\n")


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
