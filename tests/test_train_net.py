"""train_net.py end to end: a few iterations on the mini split, then --eval-only on the result."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "embedded" / "densepose_rcnn_R_50_FPN.yaml"
SMALL = [
    "DATASETS.TRAIN", '("densepose_embedded_mini",)', "DATASETS.TEST", '("densepose_embedded_mini",)',
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2",
    "DATALOADER.NUM_WORKERS", "0",
]


def _run(args, cwd):
    proc = subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), "--config-file", str(CONFIG), *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_train_then_eval_only_gives_every_metric(tmp_path):
    out = tmp_path / "run"
    _run([*SMALL, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "OUTPUT_DIR", str(out)],
         cwd=REPO)
    assert (out / "model_final.pth").is_file() and (out / "model_0000001.pth").is_file()
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    losses = {"loss_densepose_I", "loss_densepose_U", "loss_densepose_V", "loss_densepose_S"}
    train = [r for r in records if losses <= set(r)]
    assert train[-1]["iteration"] == 3
    assert all(r[k] == r[k] and abs(r[k]) < 1e6 for r in train for k in losses)  # finite
    assert list(out.glob("events.out.tfevents.*"))

    ev = tmp_path / "eval"
    _run(["--eval-only", *SMALL, "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(ev)],
         cwd=REPO)
    metrics = json.loads(next(ev.glob("inference/*/densepose_metrics.json")).read_text())
    flat = json.dumps(metrics)
    for key in ("gps_ap", "gpsm_ap", "auc10", "auc20", "auc30"):
        assert f'"{key}"' in flat
    assert list(ev.glob("inference/*/coco_instances_results.json"))  # bbox AP input
