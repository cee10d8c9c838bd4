#!/usr/bin/env python
"""Build the embedded model zoo's pretrained network (MODEL_ZOO.md) from nothing.

    python tools/pretrain_model_zoo.py [--out model_zoo/R_18_GN_FPN_pretrain.pth] [KEY VALUE ...]

1. trains ``configs/embedded/keypoint_mask_rcnn_R_18_GN_FPN_pretrain.yaml`` with
   ``train_net.py --resume`` (re-running the command continues an interrupted run; the
   pretraining split is rendered on first use), which ends with its bbox / mask / keypoint
   evaluation on ``densepose_embedded_val``;
2. exports the backbone, RPN and box head in fp16 to the model-zoo file, with the command,
   iterations, wall time and metrics inside it and beside it (``<file>.json``).
Trailing ``KEY VALUE`` pairs go to ``train_net.py`` (and into the recorded command).
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from densepose_ext.config import setup_densepose_cfg  # noqa: E402
from densepose_ext.engine.recipe import claim_output_dir, save_record  # noqa: E402
from densepose_ext.model_zoo import MODEL_ZOO, export_pretrained, model_zoo_dir  # noqa: E402

ENTRY = MODEL_ZOO["R_18_GN_FPN_pretrain.pth"]
SEGMENTS = "pretrain_segments.json"  # wall time of every (resumed) training run, in OUTPUT_DIR


def _train(command, out_dir: Path) -> float:
    """Run (or resume) the training; return the summed wall minutes of all its runs."""
    record_file = out_dir / SEGMENTS
    segments = json.loads(record_file.read_text()) if record_file.is_file() else []
    if not (out_dir / "eval_results.json").is_file():
        started, start = time.strftime("%Y-%m-%d %H:%M"), time.perf_counter()
        try:
            subprocess.run(command, cwd=REPO, check=True)
        finally:  # an interrupted run still counts the time it spent
            segments.append({"started": started,
                             "minutes": round((time.perf_counter() - start) / 60, 2)})
            save_record(record_file, segments)
    return sum(s["minutes"] for s in segments)


def _headline(results: dict) -> dict:
    """bbox / segm / keypoint AP (COCO protocol, percent) of the final evaluation."""
    return {f"{task}_AP": round(results[task]["AP"], 2)
            for task in ("bbox", "segm", "keypoints") if task in results}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(model_zoo_dir() / ENTRY.file_name))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="train_net.py KEY VALUE overrides")
    args = parser.parse_args(argv)
    cfg = setup_densepose_cfg(str(REPO / ENTRY.config), args.opts)
    out_dir = Path(cfg.OUTPUT_DIR)
    if not out_dir.is_absolute():
        out_dir = REPO / out_dir
    train = [sys.executable, "train_net.py", "--config-file", ENTRY.config, *args.opts]
    claim_output_dir(out_dir, train)
    minutes = _train([*train[:2], "--resume", *train[2:]], out_dir)

    results = json.loads((out_dir / "eval_results.json").read_text())
    meta = {
        "command": " ".join(["python", *train[1:]]),
        "config": ENTRY.config,
        "train_dataset": list(cfg.DATASETS.TRAIN),
        "eval_dataset": list(cfg.DATASETS.TEST),
        "iterations": cfg.SOLVER.MAX_ITER,
        "images_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        "train_wall_minutes": round(minutes, 1),
        "metrics": _headline(results),
    }
    checkpoint = torch.load(out_dir / "model_final.pth", map_location="cpu", weights_only=False)
    counts = export_pretrained(checkpoint, args.out, ENTRY, meta)
    meta["tensors"] = counts
    meta["megabytes"] = round(Path(args.out).stat().st_size / 2**20, 1)
    save_record(Path(args.out).with_suffix(".json"), meta)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
