"""train_net.py end to end: a few iterations on the mini split, then --eval-only on the result."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from toys import REPO, embedded_split_dir

CONFIG = REPO / "configs" / "embedded" / "densepose_rcnn_R_18_GN_FPN.yaml"
SMALL = [
    "DATASETS.TRAIN", '("densepose_embedded_mini",)', "DATASETS.TEST", '("densepose_embedded_mini",)',
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2",
    "DATALOADER.NUM_WORKERS", "0",
]


def _run(args, cwd, config=CONFIG):
    proc = subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), "--config-file", str(config), *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_train_then_eval_only_gives_every_metric(tmp_path):
    out = tmp_path / "run"
    _run([*SMALL, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "OUTPUT_DIR", str(out)],
         cwd=REPO)
    assert (out / "model_final.pth").is_file() and (out / "model_0000001.pth").is_file()
    assert "densepose_summary" in json.loads((out / "eval_results.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    losses = {"loss_densepose_I", "loss_densepose_U", "loss_densepose_V", "loss_densepose_S"}
    train = [r for r in records if losses <= set(r)]
    assert train[-1]["iteration"] == 3
    assert all(r[k] == r[k] and abs(r[k]) < 1e6 for r in train for k in losses)  # finite
    assert list(out.glob("events.out.tfevents.*"))

    ev = tmp_path / "eval"
    _run(["--eval-only", *SMALL, "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(ev),
          "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(112, 128)", "TEST.AUG.MAX_SIZE", "160",
          "TEST.AUG.FLIP", "True"], cwd=REPO)
    metrics = json.loads(next(ev.glob("inference/*/densepose_metrics.json")).read_text())
    flat = json.dumps(metrics)
    for key in ("gps_ap", "gpsm_ap", "auc10", "auc20", "auc30"):
        assert f'"{key}"' in flat
    assert list(ev.glob("inference/*/coco_instances_results.json"))  # bbox AP input
    results = json.loads((ev / "eval_results.json").read_text())
    assert "AP" in results["bbox"]
    assert {"gps_ap", "gpsm_ap", "auc10", "auc20", "auc30"} <= set(results["densepose_summary"])
    # multi-transform inference (2 scales x flip) evaluated beside the plain model
    assert {"gps_ap", "auc10"} <= set(results["densepose_summary_TTA"])
    assert "AP" in results["bbox_TTA"] and list(ev.glob("inference_TTA/*/densepose_metrics.json"))


def test_apply_net_writes_overlays_and_results(tmp_path):
    """apply_net on two rendered images with a briefly trained model (score threshold 0)."""
    import cv2

    from densepose_ext.evaluation.iuv import decode_iuv_png

    out = tmp_path / "run"
    _run([*SMALL, "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out)], cwd=REPO)
    images = tmp_path / "images"
    images.mkdir()
    src = embedded_split_dir("densepose_embedded_mini") / "images"
    for name in ("000001.jpg", "000002.jpg"):
        (images / name).write_bytes((src / name).read_bytes())
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "apply_net.py"), "--config-file", str(CONFIG),
         "--weights", str(out / "model_final.pth"), str(images), "--out", str(tmp_path / "vis"),
         "--min-score", "0", "--opts", "INPUT.MIN_SIZE_TEST", "128"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "vis" / "results.json").read_text())
    assert [Path(r["file_name"]).name for r in results] == ["000001.jpg", "000002.jpg"]
    for r in results:
        img = cv2.imread(str(tmp_path / "vis" / Path(r["file_name"]).with_suffix(".png").name))
        assert img is not None and img.shape == (256, 256, 3)
        for det in r["detections"]:
            I, U, V = decode_iuv_png(det["densepose"]["iuv_png"])
            assert I.max() <= 24 and 0 <= U.min() and U.max() <= 1
            h, w = det["bbox"][3], det["bbox"][2]
            assert abs(I.shape[0] - h) <= 1 and abs(I.shape[1] - w) <= 1  # IUV at box size


@pytest.mark.parametrize("name", [
    "densepose_rcnn_R_18_GN_FPN_multitask_mask", "densepose_rcnn_R_18_GN_FPN_multitask_kp",
    "densepose_rcnn_R_18_GN_FPN_multitask_mask_kp", "densepose_rcnn_R_18_GN_FPN_cascade",
])
def test_multitask_and_cascade_configs_train_and_evaluate(tmp_path, name):
    """Two iterations of each embedded multi-task / cascade config, then its final evaluation:
    DensePose metrics plus the COCO AP of every enabled head."""
    config = REPO / "configs" / "embedded" / f"{name}.yaml"
    out = tmp_path / "run"
    _run([*SMALL, "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out)], cwd=REPO, config=config)
    results = json.loads((out / "eval_results.json").read_text())
    expected = {"bbox"} | ({"segm"} if "mask" in name or "cascade" in name else set()) | (
        {"keypoints"} if "kp" in name or "cascade" in name else set())
    assert expected <= set(results) and all("AP" in results[t] for t in expected)
    assert {"segm", "keypoints"} - expected - set(results) == {"segm", "keypoints"} - expected
    assert {"gps_ap", "auc10"} <= set(results["densepose_summary"])
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    losses = set(records[-1]) if "loss_densepose_I" in records[-1] else set(records[-2])
    if "cascade" in name:
        assert {"loss_mask_stage1", "loss_keypoint_stage1", "loss_densepose_U_stage1"} <= losses
