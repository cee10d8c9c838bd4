"""Headline numbers from the ``eval_results.json`` that ``train_net.py`` writes."""
import json
from pathlib import Path
from typing import Dict, Union

HEADLINE_KEYS = ("gps_ap", "gpsm_ap", "auc10", "auc20", "auc30")
# detectron2 COCOEvaluator task -> headline key of its AP
TASK_AP_KEYS = {"bbox": "bbox_ap", "segm": "segm_ap", "keypoints": "keypoints_ap"}


def read_headline_metrics(output_dir: Union[str, Path]) -> Dict[str, float]:
    """GPS AP, GPSm AP, AUC10/20/30 and the AP of every COCO task evaluated (bbox, segm,
    keypoints) from ``output_dir/eval_results.json``; a clear error if it is absent or lacks
    the DensePose summary."""
    path = Path(output_dir) / "eval_results.json"
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; did the train_net.py run evaluate?") from None
    except ValueError as e:
        raise ValueError(f"{path}: not valid json ({e})") from None
    if "densepose_summary" not in results and len(results) == 1:
        results = next(iter(results.values()))  # {dataset: metrics} when several were tested
    try:
        return headline_metrics(results)
    except KeyError as e:
        raise KeyError(f"{path}: {e.args[0]}") from None


def headline_metrics(results: dict) -> Dict[str, float]:
    """The headline numbers of one dataset's evaluation results ({task: metrics}); e.g. the
    ``<dataset>_TTA`` entry that ``train_net.py --eval-only`` adds under ``TEST.AUG``."""
    if "densepose_summary" not in results:
        raise KeyError(f"no densepose_summary (tasks: {sorted(results)})")
    out = {k: float(results["densepose_summary"][k]) for k in HEADLINE_KEYS}
    for task, key in TASK_AP_KEYS.items():
        if task in results:
            out[key] = float(results[task]["AP"])
    return out
