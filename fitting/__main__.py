"""Model-fitting baseline: fit the 3D body to 2D keypoints and score its IUV as DensePose.

    python -m fitting --dataset D --out DIR [--keypoints gt | --keypoints RESULTS.json]
        [--min-score S] [--iters N] [--chunk K] [--seed S] [--max-images M]
        [--prior-poses SOURCE] [--protocol exact|detectron2] [--no-progress]

``--keypoints gt`` fits the dataset's ground-truth keypoints; a path fits the keypoints of a
keypoint model's ``coco_instances_results.json`` (detectron2's COCOEvaluator output), matched
to the images by ``image_id``, detections with ``score >= --min-score``. The pose prior is
learnt from ``--prior-poses`` (a training dataset with SMPL parameters, default
``densepose_embedded_train``, or a training pose source such as ``motions_train``). DIR gets
the settings, per-chunk results (a rerun resumes and skips finished chunks; other settings are
refused), ``coco_densepose_results.json`` and ``metrics.json`` (see :mod:`fitting.pipeline`).
Datasets are those of :mod:`synthesis.builtin_datasets` (under ``$DETECTRON2_DATASETS``).
"""
from __future__ import annotations

import argparse
import logging
from typing import Optional, Sequence

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    from .optimize import FitSettings
    from .prior import DEFAULT_PRIOR_POSES

    p = argparse.ArgumentParser(prog="python -m fitting", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="registered dataset to fit and evaluate")
    p.add_argument("--out", required=True, help="output directory (resumable)")
    p.add_argument("--keypoints", default="gt",
                   help="'gt' or a keypoint model's coco_instances_results.json")
    p.add_argument("--min-score", type=float, default=0.05,
                   help="keep predicted persons with at least this detection score")
    p.add_argument("--iters", type=int, default=FitSettings.iters,
                   help="optimisation steps over all parameters (after the rigid start)")
    p.add_argument("--chunk", type=int, default=16, help="images fitted together")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting orientations")
    p.add_argument("--max-images", type=int, default=None, help="fit the first M images only")
    p.add_argument("--prior-poses", default=DEFAULT_PRIOR_POSES,
                   help="training poses of the pose prior: a dataset or a pose source")
    p.add_argument("--protocol", choices=("exact", "detectron2"), default=None,
                   help="evaluation protocol (default: exact for the embedded datasets)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)

    from .pipeline import run_fitting

    metrics = run_fitting(args.dataset, args.out, keypoints=args.keypoints,
                          min_score=args.min_score, iters=args.iters, chunk=args.chunk,
                          seed=args.seed, max_images=args.max_images,
                          prior_poses=args.prior_poses, protocol=args.protocol,
                          progress=not args.no_progress)
    s = metrics["densepose_summary"]
    print(f"GPS AP {s['gps_ap']:.1f}  GPSm AP {s['gpsm_ap']:.1f}  AUC10 {s['auc10']:.3f}  "
          f"AUC20 {s['auc20']:.3f}  AUC30 {s['auc30']:.3f}  "
          f"s/person {metrics['fit']['seconds_per_person']:.2f}  -> {args.out}")
    return 0


def _run() -> None:
    """Run :func:`main` as a program: bad input is one ``error:`` line and exit status 2."""
    from densepose_ext.utils.cli import run_cli

    run_cli(main)


if __name__ == "__main__":
    _run()
