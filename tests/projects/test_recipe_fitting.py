"""The ModelFitting project recipe: fitting predicted keypoints runs the keypoint model's
evaluation first and fits its file, every row is timed per ground-truth person (a fit of
predicted keypoints with its keypoint model's time), and the table's verdicts (accuracy higher
is better, seconds per person lower is better)."""
import argparse
import json
from pathlib import Path

SUMMARY = {"gps_ap": 5.0, "gpsm_ap": 9.0, "auc10": 0.1, "auc20": 0.2, "auc30": 0.3}


def _fake_run(calls):
    """A ``run_command`` that records the command and writes what the real one would."""
    def run(cmd, cwd, env=None):
        cmd = [str(c) for c in cmd]
        calls.append(cmd)
        out = Path(cmd[cmd.index("--out" if "--out" in cmd else "OUTPUT_DIR") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if "--eval-only" in cmd:
            (out / "log.txt").write_text(
                "d2.evaluation.evaluator INFO: Total inference pure compute time: 0:00:40 "
                "(0.250000 s / iter per device, on 1 devices)\n")
            (out / "eval_results.json").write_text(json.dumps({"densepose_summary": SUMMARY}))
        else:
            (out / "metrics.json").write_text(json.dumps({
                "densepose_summary": SUMMARY,
                "fit": {"num_images": 4, "fit_seconds": 6.0, "render_seconds": 1.0}}))
        return 1.0
    return run


def test_fit_of_predicted_keypoints_evaluates_the_kp_model_first(tmp_path, monkeypatch,
                                                                 project_recipe):
    recipe = project_recipe("ModelFitting")
    calls = []
    monkeypatch.setattr(recipe, "run_command", _fake_run(calls))
    monkeypatch.setattr(recipe, "persons_per_image", lambda dataset: 2.5)
    module = recipe._cascade_recipe()
    cascade = module.Recipe(tmp_path / "cascade", 400, "train", "test")
    kp_dir = tmp_path / "cascade" / "kp" / "seed1"
    kp_dir.mkdir(parents=True)
    (kp_dir / "model_final.pth").write_bytes(b"weights")
    # the cascade's kp row is recorded with its exact command, so it is not trained again
    monkeypatch.setattr(cascade, "train_row", lambda row, seed, keep_weights=False: {})
    r = recipe.Recipe(tmp_path / "fit", 200, "test", (module, cascade))
    record = r.fit("fit_pred", 1)

    evaluation, fit = calls
    assert "--eval-only" in evaluation
    assert evaluation[evaluation.index("MODEL.WEIGHTS") + 1] == str(kp_dir / "model_final.pth")
    assert evaluation[evaluation.index("--config-file") + 1].endswith("multitask_kp.yaml")
    keypoints = fit[fit.index("--keypoints") + 1]
    assert keypoints == str(tmp_path / "fit" / "kp" / "seed1" / "inference" / "test"
                            / "coco_instances_results.json")
    assert fit[fit.index("--seed") + 1] == "1" and fit[fit.index("--iters") + 1] == "200"
    assert record["metrics"]["auc10"] == 0.1 and record["fit"]["fit_seconds"] == 6.0
    kp = json.loads((tmp_path / "fit" / "kp" / "seed1" / "row.json").read_text())
    assert kp["s_per_image"] == 0.25 and kp["metrics"]["sec_per_person"] == 0.25 / 2.5

    # a second run finds both records; the fit from GT keypoints needs no network
    calls.clear()
    assert r.fit("fit_pred", 1)["metrics"] == record["metrics"]
    r.fit("fit_gt", 1)
    assert len(calls) == 1 and calls[0][calls[0].index("--keypoints") + 1] == "gt"


def test_fit_rows_are_timed_per_ground_truth_person_with_their_keypoint_model(project_recipe):
    recipe = project_recipe("ModelFitting")

    def rec(seed, **extra):
        return {"command": ["python", "x"], "seed": seed, "metrics": dict(SUMMARY), **extra}

    fit = {"num_images": 4, "fit_seconds": 6.0, "render_seconds": 1.0}
    rows = {"fit_gt": [rec(0, fit=fit)], "fit_pred": [rec(0, fit=fit), rec(1, fit=fit)],
            "kp": [rec(0, metrics={**SUMMARY, "sec_per_person": 0.25})]}
    timed = recipe.with_fit_times(rows, persons=2.5)
    # 7 s over 4 images of 2.5 persons; the kp model adds its own 0.25 s per person
    assert timed["fit_gt"][0]["metrics"]["sec_per_person"] == 7.0 / 10
    assert timed["fit_pred"][0]["metrics"]["sec_per_person"] == 7.0 / 10 + 0.25
    # seed 1's keypoint model is not recorded: its pipeline time is unknown, not the fit's alone
    assert timed["fit_pred"][1]["metrics"]["sec_per_person"] is None
    assert timed["kp"] == rows["kp"] and "sec_per_person" not in rows["fit_gt"][0]["metrics"]


def test_results_table_and_verdicts(tmp_path, project_recipe):
    recipe = project_recipe("ModelFitting")

    def recs(auc, sec):
        return [{"command": ["python", "x", str(s)], "seed": s,
                 "metrics": {**SUMMARY, "auc10": a, "sec_per_person": t}}
                for s, (a, t) in enumerate(zip(auc, sec))]

    rows = {"fit_gt": recs([0.70, 0.71, 0.69], [0.7, 0.8, 0.75]),
            "fit_pred": recs([0.05, 0.06, 0.05], [0.70, 0.72, 0.71]),
            "fcn_crop": recs([0.09, 0.10, 0.09], [0.05, 0.06, 0.05]),
            "rcnn": recs([0.04, 0.08, 0.06], [0.1, 0.1, 0.1])}
    args = argparse.Namespace(seeds=[0, 1, 2], fit_iters=200, test="densepose_embedded_val")
    text = recipe.write_results(tmp_path / "RESULTS.md", args, rows)
    assert (tmp_path / "RESULTS.md").read_text() == text
    lines = {tuple(c.strip() for c in line.split("|")[1:3]): line
             for line in text.splitlines() if line.startswith("| ")}
    fcn = "model fitting -> FCN (single-person crops)"
    assert lines[(fcn, "auc10")].rstrip().endswith("| reproduced |")
    assert lines[(fcn, "sec_per_person")].rstrip().endswith("| reproduced |")
    assert lines[("model fitting -> DensePose R-CNN", "auc10")].rstrip().endswith(
        "| not resolved at this budget |")
    by_row = {line.split("|")[1].strip(): line for line in text.splitlines()
              if line.startswith("| ")}
    assert "0.700 ± 0.010" in by_row["fit_gt"]
    assert by_row["fcn_crop"].rstrip().endswith("| 0.43 |")  # the paper's AUC10, same variant
    assert "not run" in by_row["kp"]
