"""The DataDistillation project recipe: mixed-data student commands, verdicts, RESULTS.md and a
run of every step on the mini split."""
import argparse
import json
import sys

import pytest

from toys import REPO

SCRIPT = REPO / "projects" / "DataDistillation" / "run.py"


def _record(seed, **metrics):
    base = {"gps_ap": 10.0, "gpsm_ap": 12.0, "auc10": 0.2, "auc20": 0.3, "auc30": 0.4,
            "bbox_ap": 50.0, "segm_ap": 40.0, "keypoints_ap": 20.0}
    return {"command": ["python", "train_net.py", "SEED", str(seed)], "minutes": 10.0,
            "seed": seed, "metrics": {**base, **metrics}}


def test_results_give_mean_std_verdicts_and_the_label_tables(tmp_path, project_recipe):
    recipe = project_recipe("DataDistillation")
    rows = {
        "baseline": [_record(s, keypoints_ap=v) for s, v in enumerate([20.0, 20.1, 19.9])],
        "distill_single": [_record(s, gps_ap=v) for s, v in enumerate([9.0, 11.0, 13.0])],
        "distill_multi": [_record(s, keypoints_ap=v) for s, v in enumerate([23.0, 23.1, 22.9])],
    }
    metrics = {"gps_ap": 10.0, "auc10": 0.2, "bbox_ap": 50.0, "keypoints_ap": 20.0,
               "gpsm_ap": 1.0, "auc20": 0.3, "auc30": 0.4}
    tta = {"flip": {"command": ["tta"], "single": metrics, "multi": dict(metrics, gps_ap=11.0),
                    "single_s_per_image": 0.05, "multi_s_per_image": 0.11}}
    quality = {"command": ["q"], "scores": [
        {"multi_transform": False, "score_threshold": 0.7, "images": 10, "pseudo_persons": 20,
         "true_persons": 22, "box_precision": 0.9, "box_recall": 0.8,
         "keypoint_error_px_median": 2.5,
         "densepose_points": {"part_accuracy": 0.7, "auc10": 0.3}}]}
    args = argparse.Namespace(iters=1000, seeds=[0, 1, 2], train="densepose_embedded_train",
                              unlabeled="densepose_embedded_unlabeled",
                              test="densepose_embedded_val")
    text = recipe.write_results(tmp_path / "RESULTS.md", args, rows, tta, {}, quality)
    lines = {line.split("|")[1].strip(): line for line in text.splitlines()
             if line.startswith("| ")}
    assert "| 20.0 ± 0.1 |" in lines["baseline"] and "not run" in lines["oracle"]
    kp = [line for line in text.splitlines() if line.startswith("| baseline -> data")]
    assert kp[0].rstrip().endswith("| reproduced |") and "+3.0 ± 0.1" in kp[0]
    single_multi_gps = [line for line in text.splitlines()
                        if line.startswith("| single -> multi") and "gps_ap" in line][0]
    assert single_multi_gps.rstrip().endswith("| not resolved at this budget |")
    assert "| scales (256,) + flip | 11.0 |" in text and "| 0.110 |" in text
    assert "| single-transform | 0.700 | 2.00 (true 2.20) | 0.900 | 0.800 | 2.50 |" in text
    assert "protocol `exact`" in text


def test_students_mix_labelled_and_pseudo_labelled_images(tmp_path, monkeypatch,
                                                          project_recipe):
    recipe = project_recipe("DataDistillation")
    calls = []
    monkeypatch.setattr(recipe, "run_command",
                        lambda cmd, cwd, env=None: calls.append((cmd, env)) or 0.5)
    r = recipe.Recipe(tmp_path, 100, "lab", "unl", "test")
    prepared = []  # a student first has its label directory made (when it is gone)
    monkeypatch.setattr(r, "prepare_labels", prepared.append)
    for row in ("baseline", "distill_multi"):
        out = tmp_path / row / "seed1"
        out.mkdir(parents=True)
        (out / "eval_results.json").write_text(json.dumps(
            {"densepose_summary": {k: 0.5 for k in ("gps_ap", "gpsm_ap", "auc10", "auc20",
                                                    "auc30")}}))
    base = r.train_row("baseline", 1)
    student = r.train_row("distill_multi", 1)
    cmd = student["command"]
    assert cmd[cmd.index("DATASETS.TRAIN") + 1] == '("lab", "unl_pseudo")'
    assert cmd[cmd.index("DATASETS.TRAIN_RATIOS") + 1] == "(0.6, 0.4)"
    assert calls[1][1] == {"DENSEPOSE_PSEUDO_ROOT": str(tmp_path / "pseudo" / "multi")}
    assert prepared == [None, "multi"]
    assert "DATASETS.TRAIN_RATIOS" not in base["command"] and calls[0][1] == {}
    for c in (cmd, base["command"]):
        assert c[c.index("INPUT.DENSEPOSE_DENSE_POINTS") + 1] == "0"


def test_report_only_runs_nothing_and_reports_the_recorded_steps(tmp_path, monkeypatch,
                                                                 project_recipe):
    recipe = project_recipe("DataDistillation")
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(recipe, "run_command", lambda cmd, cwd, env=None: 0.5)
    out, records = tmp_path / "out", tmp_path / "records"
    seed_out = out / "baseline" / "seed0"
    seed_out.mkdir(parents=True)
    (seed_out / "eval_results.json").write_text(json.dumps(
        {"densepose_summary": {k: 0.25 for k in ("gps_ap", "gpsm_ap", "auc10", "auc20",
                                                 "auc30")}}))
    recipe.Recipe(out, 400, "densepose_embedded_train", "densepose_embedded_unlabeled",
                  "densepose_embedded_val", records).train_row("baseline", 0)

    def refuse(*args, **kwargs):
        raise AssertionError("--report-only ran a step")

    monkeypatch.setattr(recipe, "run_command", refuse)
    results = tmp_path / "RESULTS.md"
    recipe.main(["--report-only", "--seeds", "0", "--out", str(out), "--records", str(records),
                 "--results", str(results)])
    text = results.read_text()
    baseline = [line for line in text.splitlines() if line.startswith("| baseline |")][0]
    assert "| 1 |" in baseline and "| 0.250 (1 seed) |" in baseline
    assert "| distill_multi |" in text and "not run" in text
    assert "Multi-transform inference of the teacher" not in text


@pytest.mark.slow
def test_recipe_runs_every_step_on_the_mini_split(tmp_path):
    import subprocess

    results = tmp_path / "RESULTS.md"
    subprocess.run([sys.executable, str(SCRIPT), "--iters", "2", "--seeds", "0",
                    "--train", "densepose_embedded_mini", "--unlabeled",
                    "densepose_embedded_mini", "--test", "densepose_embedded_mini",
                    "--out", str(tmp_path / "out"), "--results", str(results),
                    "--records", str(tmp_path / "records")],
                   check=True, cwd=REPO)
    text = results.read_text()
    assert "not run" not in text
    assert "| oracle |" in text and "multi-transform |" in text and "s / image" in text
