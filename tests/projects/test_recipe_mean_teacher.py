"""The MeanTeacher project recipe: its training command, reading teacher and student
evaluations from metrics.json, the table with verdicts, the plot, and a run on the mini split."""
import argparse
import json
import sys

import pytest

from toys import REPO

SCRIPT = REPO / "projects" / "MeanTeacher" / "run.py"


def _metrics_file(path, evals):
    lines = [{"iteration": 9, "total_loss": 1.0}]
    for it, teacher, student in evals:
        row = {"iteration": it, "bbox/AP": 50.0, "bbox_student/AP": 49.0}
        for k in ("gps_ap", "gpsm_ap", "auc10", "auc20", "auc30"):
            row[f"densepose_summary/{k}"] = teacher
            row[f"densepose_summary_student/{k}"] = student
        lines.append(row)
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")


def test_last_evaluation_and_series_of_teacher_and_student(tmp_path, project_recipe):
    recipe = project_recipe("MeanTeacher")
    _metrics_file(tmp_path / "metrics.json", [(249, 5.0, 4.0), (499, 8.0, 6.5)])
    assert recipe._last_eval(tmp_path / "metrics.json")["gps_ap"] == 8.0
    student = recipe._last_eval(tmp_path / "metrics.json", "_student")
    assert student["gps_ap"] == 6.5 and student["bbox_ap"] == 49.0
    series = recipe.eval_series(tmp_path / "metrics.json")
    assert series == {"teacher": [[249, 5.0], [499, 8.0]], "student": [[249, 4.0], [499, 6.5]]}


def test_mean_teacher_rows_train_on_labelled_and_unlabelled_images(tmp_path, monkeypatch,
                                                                   project_recipe):
    recipe = project_recipe("MeanTeacher")
    calls = []
    monkeypatch.setattr(recipe, "run_command", lambda cmd, cwd, env=None: calls.append(cmd) or 1.0)
    dd_module = recipe._distillation_recipe()
    dd = dd_module.Recipe(tmp_path / "dd", 400, "lab", "unl", "test")
    r = recipe.Recipe(tmp_path / "mt", 400, (dd_module, dd))
    decays = {}
    for row in ("mean_teacher", "mean_teacher_scaled", "pi_model"):
        out = tmp_path / "mt" / row / "seed0"
        out.mkdir(parents=True)
        _metrics_file(out / "metrics.json", [(399, 3.0, 2.0)])
        record = r.train_row(row, 0)
        cmd = record["command"]
        assert cmd[cmd.index("DATASETS.TRAIN") + 1] == '("lab", "unl")'
        assert cmd[cmd.index("MEAN_TEACHER.ENABLED") + 1] == "True"
        assert cmd[cmd.index("TEST.EVAL_PERIOD") + 1] == "100"
        assert record["metrics"]["gps_ap"] == 3.0 and record["student_metrics"]["gps_ap"] == 2.0
        decays[row] = [cmd[cmd.index(k) + 1] if k in cmd else None
                       for k in ("MEAN_TEACHER.EMA_DECAY", "MEAN_TEACHER.EMA_DECAY_RAMPUP")]
    # the paper's decays (config defaults); horizons of 20 and 2 steps; the Pi-model
    assert decays == {"mean_teacher": [None, None], "mean_teacher_scaled": ["0.95", "0.5"],
                      "pi_model": ["0.0", "0.0"]}
    # float literals even at decay 0 (the config refuses an int for a float key)
    assert recipe.scaled_decays(2) == ["MEAN_TEACHER.EMA_DECAY", "0.0",
                                       "MEAN_TEACHER.EMA_DECAY_RAMPUP", "0.0"]


def test_results_table_plot_and_verdicts(tmp_path, project_recipe):
    recipe = project_recipe("MeanTeacher")

    def rec(seed, gps, student=None):
        series = {"teacher": [[99, gps - 1], [199, gps]], "student": [[99, gps - 2], [199, gps]]}
        return {"command": ["python", "x", str(seed)], "minutes": 9.0, "seed": seed,
                "metrics": {"gps_ap": gps, "auc10": 0.2}, "series": series,
                "student_metrics": {"gps_ap": student if student is not None else gps}}

    rows = {"baseline": [rec(s, v) for s, v in enumerate([10.0, 10.1, 9.9])],
            "mean_teacher": [rec(s, v, v - 2) for s, v in enumerate([13.0, 13.1, 12.9])],
            "mean_teacher_scaled": [rec(s, v, v + 1) for s, v in enumerate([9.0, 9.1, 8.9])],
            "pi_model": [rec(s, v) for s, v in enumerate([11.0, 14.0, 12.0])]}
    for row in ("mean_teacher", "mean_teacher_scaled"):
        rows[f"{row}_student"] = [dict(r, metrics=r["student_metrics"]) for r in rows[row]]
    recipe.plot_series(tmp_path / "teacher_vs_student.png", rows)
    assert (tmp_path / "teacher_vs_student.png").stat().st_size > 5000
    args = argparse.Namespace(iters=200, seeds=[0, 1, 2])
    text = recipe.write_results(tmp_path / "RESULTS.md", args, rows, [["python", "x"]])
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    verdict = {line.split("|")[1].strip() + line.split("|")[2].strip(): line for line in lines}
    ends = {what: line.rstrip().rsplit("|", 2)[-2].strip() for what, line in verdict.items()}
    assert ends["supervised -> mean teacher (paper's decays)gps_ap"] == "reproduced"
    assert ends["student -> teacher (paper's decays)gps_ap"] == "reproduced"
    assert ends["Pi-model -> mean teacher (paper's decays)gps_ap"] == "not resolved at this budget"
    assert ends["supervised -> mean teacher (scaled decays)gps_ap"] == "opposite (> 2 SE)"
    assert ends["student -> teacher (scaled decays)gps_ap"] == "opposite (> 2 SE)"
    assert "| mean_teacher_scaled_student | the students of the `mean_teacher_scaled` runs | 3 | " \
        "(same runs) |" in text
    assert "MEAN_TEACHER.EMA_DECAY 0.95 MEAN_TEACHER.EMA_DECAY_RAMPUP 0.5" not in text
    assert "MEAN_TEACHER.EMA_DECAY 0.9 MEAN_TEACHER.EMA_DECAY_RAMPUP 0.0." in text  # 200 its
    assert "| distill_multi |" in text and "not run" in text


def test_report_only_runs_nothing_and_reports_the_recorded_steps(tmp_path, monkeypatch,
                                                                 project_recipe):
    recipe = project_recipe("MeanTeacher")
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(recipe, "run_command", lambda cmd, cwd, env=None: 1.0)
    dd_module = recipe._distillation_recipe()
    dd = dd_module.Recipe(tmp_path / "dd", 400, "densepose_embedded_train",
                          "densepose_embedded_unlabeled", "densepose_embedded_val",
                          tmp_path / "dd_records")
    out = tmp_path / "mt" / "mean_teacher" / "seed0"
    out.mkdir(parents=True)
    _metrics_file(out / "metrics.json", [(199, 4.0, 3.0), (399, 6.0, 5.0)])
    recipe.Recipe(tmp_path / "mt", 400, (dd_module, dd),
                  tmp_path / "mt_records").train_row("mean_teacher", 0)

    def refuse(*args, **kwargs):
        raise AssertionError("--report-only ran a step")

    monkeypatch.setattr(recipe, "run_command", refuse)
    monkeypatch.setattr(dd_module, "run_command", refuse)
    results = tmp_path / "RESULTS.md"
    recipe.main(["--report-only", "--seeds", "0", "--out", str(tmp_path / "mt"),
                 "--distillation-out", str(tmp_path / "dd"), "--results", str(results),
                 "--records", str(tmp_path / "mt_records"),
                 "--distillation-records", str(tmp_path / "dd_records")])
    lines = {line.split("|")[1].strip(): line for line in results.read_text().splitlines()
             if line.startswith("| ")}
    assert "| 1 |" in lines["mean_teacher"] and "| 6.0 (1 seed) |" in lines["mean_teacher"]
    assert "| 5.0 (1 seed) |" in lines["mean_teacher_student"]
    assert "not run" in lines["baseline"] and "not run" in lines["pi_model"]
    assert (tmp_path / "teacher_vs_student.png").is_file()


@pytest.mark.slow
def test_recipe_runs_on_the_mini_split(tmp_path):
    import subprocess

    results = tmp_path / "RESULTS.md"
    subprocess.run([sys.executable, str(SCRIPT), "--iters", "2", "--seeds", "0",
                    "--train", "densepose_embedded_mini", "--unlabeled",
                    "densepose_embedded_mini", "--test", "densepose_embedded_mini",
                    "--out", str(tmp_path / "mt"), "--distillation-out", str(tmp_path / "dd"),
                    "--results", str(results), "--records", str(tmp_path / "mt_records"),
                    "--distillation-records", str(tmp_path / "dd_records")],
                   check=True, cwd=REPO)
    text = results.read_text()
    assert "| mean_teacher |" in text and "| pi_model |" in text
    assert (tmp_path / "teacher_vs_student.png").is_file()
