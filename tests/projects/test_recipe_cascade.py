"""The DensePoseCascade project recipe: schedules, resumption records and RESULTS.md."""
import argparse
import json
import sys

import pytest

from toys import REPO

SCRIPT = REPO / "projects" / "DensePoseCascade" / "run.py"


def _record(seed=0, **metrics):
    base = {"gps_ap": 1.0, "gpsm_ap": 2.0, "auc10": 0.1, "auc20": 0.2, "auc30": 0.3,
            "bbox_ap": 20.0}
    return {"command": ["python", "train_net.py", "SEED", str(seed)], "minutes": 3.25,
            "seed": seed, "train_dataset": "densepose_embedded_train",
            "metrics": {**base, **metrics}}


def _seeds(key, values, **metrics):
    return [_record(seed, **{key: v}, **metrics) for seed, v in enumerate(values)]


def test_results_table_gives_mean_std_and_computed_verdicts(tmp_path, project_recipe):
    recipe = project_recipe("DensePoseCascade")
    rows = {
        # FCN clearly above R-CNN on AUC10: the paper's direction is contradicted
        "fcn": _seeds("auc10", [0.30, 0.31, 0.29]),
        "rcnn": _seeds("auc10", [0.10, 0.11, 0.09], gps_ap=5.0),
        # + keypoints: +3.0 with std 0.1 -> reproduced; + mask: +0.1 within noise
        "kp": _seeds("gps_ap", [7.9, 8.0, 8.1], keypoints_ap=12.5),
        "mask": _seeds("gps_ap", [4.0, 5.1, 6.2]),
        "cascade_kp": [_record(0, gps_ap=9.0)],  # one seed: never resolved
    }
    extra = {"timing": {"command": ["bench"], "stage1_images_per_s": 10.0,
                        "stage2_images_per_s": 8.0, "stage2_over_stage1_time": 1.25}}
    args = argparse.Namespace(iters=600, seeds=[0, 1, 2], train="densepose_embedded_train",
                              test="densepose_embedded_val")
    text = recipe.write_results(tmp_path / "RESULTS.md", args, rows, extra)
    assert (tmp_path / "RESULTS.md").read_text() == text
    lines = {line.split("|")[1].strip(): line for line in text.splitlines()
             if line.startswith("| ")}
    assert "| 0.300 ± 0.010 |" in lines["fcn"] and "| 0.250 |" in lines["fcn"]  # ours, paper
    assert "| 12.50 ± 0.00 |" in lines["kp"] and "| 3 |" in lines["kp"]
    assert "9.00 (1 seed)" in lines["cascade_kp"] and "| 56.0 |" in lines["cascade_kp"]
    assert "not run" in lines["cascade"] and "not run" in lines["interp"]
    assert lines["FCN -> R-CNN"].rstrip().endswith("| opposite (> 2 SE) |")
    assert lines["single task -> + keypoints"].rstrip().endswith("| reproduced |")
    assert "+3.00 ± 0.06" in lines["single task -> + keypoints"]
    assert lines["single task -> + mask"].rstrip().endswith("| not resolved at this budget |")
    assert lines["+ keypoints -> cascade with keypoints"].rstrip().endswith(
        "| not resolved at this budget |")
    assert lines["no cross links -> cross-task cascade"].rstrip().endswith("| – |")
    assert "coarse-part normalisation" in text and "**1.25x**" in text


def test_a_recorded_step_is_not_run_again_but_a_changed_one_is(tmp_path, monkeypatch, project_recipe):
    recipe = project_recipe("DensePoseCascade")
    calls = []
    monkeypatch.setattr(recipe, "run_command", lambda cmd, cwd, env=None: calls.append(cmd) or 0.5)
    r = recipe.Recipe(tmp_path, iters=600, train="a", test="b")
    out = tmp_path / "rcnn" / "seed1"
    out.mkdir(parents=True)
    (out / "eval_results.json").write_text(json.dumps(
        {"densepose_summary": {k: 0.5 for k in ("gps_ap", "gpsm_ap", "auc10", "auc20", "auc30")},
         "bbox": {"AP": 30.0}}))
    row = recipe.ROWS[recipe.ROW_NAMES.index("rcnn")]
    first = r.train_row(row, seed=1)
    assert len(calls) == 1 and first["metrics"]["bbox_ap"] == 30.0 and first["seed"] == 1
    # the run resumes from checkpoints; the record keeps the plain command
    assert "--resume" in calls[0] and "--resume" not in first["command"]
    assert "SEED" in first["command"] and first["command"][first["command"].index("SEED") + 1] == "1"
    assert r.train_row(row, seed=1) == first and len(calls) == 1  # same command: resumed
    with pytest.raises(RuntimeError, match="another command"):  # its checkpoints are refused
        (out / "last_checkpoint").write_text("model_0000099.pth")
        recipe.Recipe(tmp_path, iters=300, train="a", test="b").train_row(row, seed=1)
    (out / "last_checkpoint").unlink()
    recipe.Recipe(tmp_path, iters=300, train="a", test="b").train_row(row, seed=1)
    assert len(calls) == 2 and "300" in calls[-1]


def test_rows_have_their_paper_variants_and_configs(project_recipe):
    recipe = project_recipe("DensePoseCascade")
    rows = {r.name: r for r in recipe.ROWS}
    assert rows["cascade_kp"].paper == {"gps_ap": 56} and rows["cascade_mask"].paper == {"gps_ap": 53}
    assert all(r.config.is_file() for r in recipe.ROWS)
    assert ("MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP", "True") == rows["fcn_crop"].opts
    for before, after in [(c[2], c[3]) for c in recipe.COMPARISONS]:
        assert {before, after} <= set(rows) | {"cascade_stage1"}


@pytest.mark.slow
def test_recipe_runs_every_row_on_the_mini_split(tmp_path, project_recipe):
    import subprocess

    results = tmp_path / "RESULTS.md"
    subprocess.run([sys.executable, str(SCRIPT), "--iters", "2", "--seeds", "0", "--train",
                    "densepose_embedded_mini", "--test", "densepose_embedded_mini", "--out",
                    str(tmp_path / "out"), "--results", str(results), "--records",
                    str(tmp_path / "records")], check=True, cwd=REPO)
    text = results.read_text()
    assert "not run" not in text
    for name in (*project_recipe("DensePoseCascade").ROW_NAMES, "cascade_stage1"):
        assert f"| {name} |" in text
    assert "stage 2 costs" in text and "part accuracy" in text
