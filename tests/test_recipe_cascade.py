"""The DensePoseCascade project recipe: schedules, resumption records and RESULTS.md."""
import argparse
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "projects" / "DensePoseCascade" / "run.py"


def _record(**metrics):
    base = {"gps_ap": 1.0, "gpsm_ap": 2.0, "auc10": 0.1, "auc20": 0.2, "auc30": 0.3,
            "bbox_ap": 20.0}
    return {"command": ["python", "train_net.py"], "minutes": 3.25,
            "train_dataset": "densepose_embedded_train", "metrics": {**base, **metrics}}


def test_results_table_marks_directions_and_rows_not_run(tmp_path, project_recipe):
    recipe = project_recipe("DensePoseCascade")
    rows = {"fcn": _record(auc10=0.11), "rcnn": _record(auc10=0.10, gps_ap=5.0),
            "kp": _record(gps_ap=6.0, keypoints_ap=12.5), "mask": _record(gps_ap=4.0)}
    extra = {"timing": {"command": ["bench"], "stage1_images_per_s": 10.0,
                        "stage2_images_per_s": 8.0, "stage2_over_stage1_time": 1.25}}
    args = argparse.Namespace(iters=600, seed=0, train="densepose_embedded_train",
                              test="densepose_embedded_val")
    text = recipe.write_results(tmp_path / "RESULTS.md", args, rows, extra)
    assert (tmp_path / "RESULTS.md").read_text() == text
    lines = {line.split("|")[1].strip(): line for line in text.splitlines()
             if line.startswith("| ")}
    assert "| 0.110 |" in lines["fcn"] and "| 0.250 |" in lines["fcn"]  # ours, paper
    assert "| 12.5 |" in lines["kp"]
    assert "not run" in lines["cascade"] and "not run" in lines["interp"]
    # FCN (0.11) beat R-CNN (0.10): the paper's direction does not hold
    assert lines["FCN -> R-CNN"].rstrip().endswith("| **no** |")
    assert lines["single task -> + keypoints"].rstrip().endswith("| yes |")
    assert lines["single task -> + mask"].rstrip().endswith("| **no** |")
    assert lines["no cross links -> cross-task cascade"].rstrip().endswith("| – |")
    assert "**1.25x**" in text


def test_a_recorded_step_is_not_run_again_but_a_changed_one_is(tmp_path, monkeypatch, project_recipe):
    recipe = project_recipe("DensePoseCascade")
    calls = []
    monkeypatch.setattr(recipe, "run_command", lambda cmd, cwd, env=None: calls.append(cmd) or 0.5)
    r = recipe.Recipe(tmp_path, iters=600, seed=0, train="a", test="b")
    out = tmp_path / "rcnn"
    out.mkdir()
    (out / "eval_results.json").write_text(json.dumps(
        {"densepose_summary": {k: 0.5 for k in ("gps_ap", "gpsm_ap", "auc10", "auc20", "auc30")},
         "bbox": {"AP": 30.0}}))
    row = recipe.ROWS[recipe.ROW_NAMES.index("rcnn")]
    first = r.train_row(row)
    assert len(calls) == 1 and first["metrics"]["bbox_ap"] == 30.0
    # the run resumes from checkpoints; the record keeps the plain command
    assert "--resume" in calls[0] and "--resume" not in first["command"]
    assert r.train_row(row) == first and len(calls) == 1  # same command: resumed
    recipe.Recipe(tmp_path, iters=300, seed=0, train="a", test="b").train_row(row)
    assert len(calls) == 2 and "300" in calls[-1]


@pytest.mark.slow
def test_recipe_runs_every_row_on_the_mini_split(tmp_path, project_recipe):
    import subprocess

    results = tmp_path / "RESULTS.md"
    subprocess.run([sys.executable, str(SCRIPT), "--iters", "2", "--train",
                    "densepose_embedded_mini", "--test", "densepose_embedded_mini", "--out",
                    str(tmp_path / "out"), "--results", str(results)], check=True, cwd=REPO)
    text = results.read_text()
    assert "not run" not in text
    for name in (*project_recipe("DensePoseCascade").ROW_NAMES, "cascade_stage1"):
        assert f"| {name} |" in text
    assert "stage 2 costs" in text and "part accuracy" in text
