"""The MoCapSynthesis project recipe: its training commands, resumption and RESULTS.md."""
import argparse
from pathlib import Path

from detectron2.config import get_cfg


def _args(tmp_path, **kw):
    base = dict(iters=1000, seed=0, num_stitched=1200, k=100, poses="motions",
                out=str(tmp_path / "out"), results=str(tmp_path / "RESULTS.md"))
    return argparse.Namespace(**{**base, **kw})


def _metrics(mpjpe):
    return {"mpjpe": mpjpe, "top1": 12.5, "mpjpe_oracle": 140.0, "recall": 80.0}


def test_dataset_tuples_parse_as_config_overrides(project_recipe):
    recipe = project_recipe("MoCapSynthesis")
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.TRAIN", recipe._names(["a", "stitched_b"]),
                         "DATASETS.TEST", recipe._names(["c"])])
    assert cfg.DATASETS.TRAIN == ("a", "stitched_b") and cfg.DATASETS.TEST == ("c",)
    assert recipe.stitched_name("motions") == "mocap_motions"
    assert recipe.stitched_name("/data/cmu/01_01.npz") == "mocap_01_01"


def test_rows_differ_only_in_training_data_and_are_not_rerun(tmp_path, monkeypatch, project_recipe):
    recipe = project_recipe("MoCapSynthesis")
    calls = []

    def fake_run(cmd, cwd, env=None):
        calls.append(cmd)
        out = Path(cmd[cmd.index("OUTPUT_DIR") + 1])
        for name, _ in recipe.TEST_SETS:
            path = out / "inference" / name / "pose3d_metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text('{"metrics": {"mpjpe": 200.0}}')
        return 0.5

    monkeypatch.setattr(recipe, "run_command", fake_run)
    r = recipe.Recipe(_args(tmp_path))
    a, b = (r.train_row(row) for row in recipe.ROWS)
    assert len(calls) == 2 and all("--resume" in c for c in calls)
    diff = [(x, y) for x, y in zip(a["command"], b["command"]) if x != y]
    assert diff == [('("densepose_embedded_train",)',
                     '("densepose_embedded_train", "stitched_mocap_motions",)'),
                    (str(tmp_path / "out" / "renders"), str(tmp_path / "out" / "renders_stitched"))]
    assert a["metrics"]["densepose_embedded_mocap_test"]["mpjpe"] == 200.0
    assert r.train_row(recipe.ROWS[0]) == a and len(calls) == 2  # recorded: not run again


def test_results_table(tmp_path, project_recipe):
    recipe = project_recipe("MoCapSynthesis")
    args = _args(tmp_path)
    names = [n for n, _ in recipe.TEST_SETS]
    rows = {"renders": {"command": ["python", "train_net.py"], "minutes": 10.0,
                        "train": ["densepose_embedded_train"],
                        "metrics": {names[0]: _metrics(250.0), names[1]: _metrics(200.0)}},
            "renders_stitched": {"command": ["python", "train_net.py"], "minutes": 11.0,
                                 "train": ["densepose_embedded_train", "stitched_mocap_motions"],
                                 "metrics": {names[0]: _metrics(225.0), names[1]: _metrics(210.0)}}}
    stitch = {"command": ["python", "-m", "synthesis.stitch"], "minutes": 3.0,
              "dataset": "stitched_mocap_motions", "images": 1200, "persons": 1200}
    text = recipe.write_results(Path(args.results), args, rows, stitch, "sheet.png")
    assert Path(args.results).read_text() == text
    row_b = next(line for line in text.splitlines() if line.startswith("| (b)"))
    assert "**225.0** | 12.5 | 140.0 | 80.0 | **210.0**" in row_b
    assert "250.0 -> 225.0 mm (-25.0 mm, -10.0%)" in text
    assert "200.0 -> 210.0 mm (+10.0 mm, +5.0%)" in text
    assert "![stitched images](sheet.png)" in text
    # a row not run yet is listed as such
    text = recipe.write_results(Path(args.results), args, {"renders": rows["renders"]}, stitch, None)
    assert "| (b) renders + stitched | – | not run |" in text and "MPJPE change" not in text
