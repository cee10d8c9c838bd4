#!/usr/bin/env python
"""The embedded end-to-end demo: fine-tune DensePose R-CNN from the model zoo's pretrained
backbone on the rendered data, evaluate it against its starting point, and draw its predictions.

    python tools/demo.py [--out output/demo] [--config-file C] [--iters 1400] [--seed 0]
        [--opts KEY VALUE ...]

The config's schedule is shrunk to ``--iters`` (its LR steps kept at the same fractions) so that
the demo fits half an hour on a 2-core CPU; ``--iters 0`` trains the config's own schedule.
Writes ``OUT/metrics.json`` (gps_ap, gpsm_ap, auc10, auc20, auc30, bbox_ap of the trained
model, the same before training, i.e. the config's MODEL.WEIGHTS with an untrained DensePose
head, and the training time), ``OUT/model/`` (checkpoints, metrics.json, tensorboard events)
and ``OUT/overlays/`` (predictions on validation images). The embedded splits must exist
(``make data``) or are rendered on first use.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "embedded" / "densepose_rcnn_R_18_GN_FPN.yaml"
DEFAULT_ITERS = 1400


def demo_schedule(config_file: str, iters: int, seed: int) -> List[str]:
    """``train_net.py`` overrides that shrink the config's schedule to ``iters`` (LR steps at the
    config's fractions of it, one checkpoint halfway and one at the end) and fix the seed; with
    ``iters`` 0 only the seed is set."""
    from densepose_ext.config import setup_densepose_cfg

    if iters < 0:
        raise ValueError(f"--iters must be >= 0, got {iters}")
    opts = ["SEED", str(seed)]
    if iters == 0:
        return opts
    solver = setup_densepose_cfg(config_file).SOLVER
    steps = tuple(int(round(s * iters / solver.MAX_ITER)) for s in solver.STEPS)
    steps = tuple(s for s in steps if 0 < s < iters)
    return [*opts, "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", str(steps),
            "SOLVER.WARMUP_ITERS", str(min(solver.WARMUP_ITERS, iters)),
            "SOLVER.CHECKPOINT_PERIOD", str(max(1, iters // 2))]


def run(cmd) -> None:
    """Run a command with its output streaming through; a failure ends the demo with the
    command's exit status (its own error message is already printed)."""
    print("+", " ".join(map(str, cmd)), flush=True)
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO)
    if proc.returncode:
        print(f"error: demo step failed (exit status {proc.returncode}): "
              f"{' '.join(map(str, cmd))}", file=sys.stderr, flush=True)
        sys.exit(proc.returncode)


def read_metrics(eval_dir: Path) -> dict:
    """The demo's headline numbers from the ``eval_results.json`` of a train_net run."""
    from densepose_ext.evaluation import HEADLINE_KEYS, read_headline_metrics

    metrics = read_headline_metrics(eval_dir)
    return {**{k: metrics[k] for k in HEADLINE_KEYS}, "bbox_ap": metrics["bbox_ap"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="output/demo")
    parser.add_argument("--config-file", default=str(DEFAULT_CONFIG))
    parser.add_argument("--iters", type=int, default=DEFAULT_ITERS,
                        help="training iterations (0: the config's own schedule)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-overlays", type=int, default=4)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args(argv)
    out = (REPO / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    train_net = [sys.executable, REPO / "train_net.py", "--config-file", args.config_file]
    schedule = demo_schedule(args.config_file, args.iters, args.seed)

    start = time.perf_counter()
    run([*train_net, *schedule, *args.opts, "OUTPUT_DIR", out / "model"])  # evaluates after
    train_min = (time.perf_counter() - start) / 60  # training + its final evaluation
    weights = out / "model" / "model_final.pth"
    run([*train_net, "--eval-only", *args.opts, "OUTPUT_DIR", out / "eval_before_training"])

    from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: F401

    import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)

    val = sorted(Path(MetadataCatalog.get("densepose_embedded_val").image_root).glob("*.jpg"))
    run([sys.executable, REPO / "tools" / "apply_net.py", "--config-file", args.config_file,
         "--weights", weights, *val[: args.num_overlays], "--out", out / "overlays",
         *(["--opts", *args.opts] if args.opts else [])])

    report = {**read_metrics(out / "model"),
              "before_training": read_metrics(out / "eval_before_training"),
              "train_and_eval_minutes": round(train_min, 2), "config": args.config_file,
              "schedule": schedule,
              "demo_minutes": round((time.perf_counter() - start) / 60, 2),
              "overlays": str(out / "overlays")}
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
