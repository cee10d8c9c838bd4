"""The MoCapSynthesis project recipe: held-out test motions, its data and training commands (one
class set, seeds, resumption) and RESULTS.md (common persons, baselines, verdicts)."""
import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from detectron2.config import get_cfg

from synthesis.embedded_datasets import EMBEDDED_SPLITS
from densepose_ext.engine.recipe import seed_dir
from densepose_ext.engine.seed_stats import NOT_RESOLVED, OPPOSITE, REPRODUCED
from synthesis.motions import SAME_POSE_DEG, TEST_MOTIONS, TRAIN_MOTIONS, pose_distance_deg
from synthesis.pose_sources import resolve_pose_source, shared_frames


def _args(tmp_path, **kw):
    base = dict(iters=2000, seeds=[0, 1, 2], num_stitched=1200, k=100, poses="motions_train",
                out=str(tmp_path / "out"), results=str(tmp_path / "RESULTS.md"),
                records=str(tmp_path / "records"))
    return argparse.Namespace(**{**base, **kw})


def test_dataset_tuples_parse_as_config_overrides(project_recipe):
    recipe = project_recipe("MoCapSynthesis")
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.TRAIN", recipe._names(["a", "stitched_b"]),
                         "DATASETS.TEST", recipe._names(["c"])])
    assert cfg.DATASETS.TRAIN == ("a", "stitched_b") and cfg.DATASETS.TEST == ("c",)
    assert recipe.stitched_name("motions_train", "match") == "mocap_motions_train_match"
    assert recipe.stitched_name("/data/cmu/01_01.npz", "geometric") == "mocap_01_01_geometric"


def test_test_split_and_stitching_queries_share_no_motion_and_no_frame(project_recipe):
    recipe = project_recipe("MoCapSynthesis")
    test_spec = EMBEDDED_SPLITS[recipe.MOCAP_TEST].poses
    assert (test_spec, recipe.DEFAULT_POSES) == ("motions_test", "motions_train")
    test, queries = resolve_pose_source(test_spec), resolve_pose_source(recipe.DEFAULT_POSES)
    assert {s.name for s in test.sequences} == set(TEST_MOTIONS)
    assert {s.name for s in queries.sequences} == set(TRAIN_MOTIONS)
    assert not {s.name for s in test.sequences} & {s.name for s in queries.sequences}
    assert shared_frames(test, queries) == [] and shared_frames(queries, test) == []
    assert pose_distance_deg(test.frames()[0], queries.frames()[0]).min() >= SAME_POSE_DEG
    # what the test split renders: held-out motions only
    tags = {test.sample(np.random.default_rng([4, i])).tag.split(":")[0] for i in range(40)}
    assert tags <= set(TEST_MOTIONS)
    # the recipe refuses queries that overlap the test split
    recipe.check_held_out("motions_train")
    recipe.check_held_out("random")
    with pytest.raises(ValueError, match="share motions run, squat, wave"):
        recipe.check_held_out("motions")
    with pytest.raises(ValueError, match="share motions squat"):
        recipe.check_held_out("squat")


def _fake_runs(recipe, monkeypatch, detected):
    """run_command that writes what each step would: stitched sets, the classes file, and per
    row the evaluation files (``detected(row, seed)`` -> detected annotation ids)."""
    calls = []

    def fake_run(cmd, cwd, env=None):
        cmd = [str(c) for c in cmd]
        calls.append(cmd)
        if "synthesis.stitch" in cmd:
            out = Path(cmd[cmd.index("--out") + 1])
            out.mkdir(parents=True)
            (out / "annotations.json").write_text(json.dumps({"images": [{}] * 3, "annotations": [{}] * 2}))
        elif "tools/build_pose_classes.py" in cmd:
            from densepose_ext.pose3d import build_pose_classes

            poses = np.random.default_rng(0).normal(0, 0.3, (40, 24, 3))
            build_pose_classes(poses, 4).save(cmd[cmd.index("--out") + 1])
        elif "train_net.py" in cmd:
            out = Path(cmd[cmd.index("OUTPUT_DIR") + 1])
            row, seed = out.parent.name, int(cmd[cmd.index("SEED") + 1])
            for name, _ in recipe.TEST_SETS:
                folder = out / "inference" / name
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "pose3d_metrics.json").write_text(json.dumps({"metrics": {"mpjpe": 200.0}}))
                errors = {"mpjpe_oracle": 50.0, "mpjpe_mean_pose": 300.0}
                persons = {str(i): {"image_id": 1, "detected": False} for i in range(1, 5)}
                for i in detected(row, seed):
                    persons[str(i)].update(detected=True, mpjpe=100.0 + i, **errors)
                (folder / "pose3d_per_person.json").write_text(json.dumps({"persons": persons}))
        return 0.5

    monkeypatch.setattr(recipe, "run_command", fake_run)
    return calls


def test_data_steps_stitch_the_same_queries_under_both_rules(tmp_path, monkeypatch, project_recipe):
    recipe = project_recipe("MoCapSynthesis")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    calls = _fake_runs(recipe, monkeypatch, lambda row, seed: set())
    r = recipe.Recipe(_args(tmp_path))
    prepare = r.prepare()
    assert [c["command"][3:] for c in prepare] == [["--splits", "train", "val"],
                                                  ["--splits", "mocap_test", "--rerender-outdated"]]
    geo, match = r.stitch("geometric"), r.stitch("match")
    diff = [(x, y) for x, y in zip(geo["command"], match["command"]) if x != y]
    assert diff == [(str(tmp_path / "datasets" / "stitched" / "mocap_motions_train_geometric"),
                     str(tmp_path / "datasets" / "stitched" / "mocap_motions_train_match")),
                    ("geometric", "match")]
    c = geo["command"]
    assert c[c.index("--poses") + 1] == "motions_train" and c[c.index("--seed") + 1] == "0"
    assert geo["dataset"] == "stitched_mocap_motions_train_geometric" and geo["images"] == 3
    classes = r.classes()
    assert classes["command"][-6:] == ["--dataset", "densepose_embedded_train", "--k", "100", "--out",
                                       str(tmp_path / "out" / "pose3d_classes_K100.npz")]
    assert classes["mean_pose_mpjpe_mm"] > 0 and len(classes["digest"]) == 64
    sheet = tmp_path / "sheet_match.png"
    r.contact_sheet("match", sheet)
    n = len(calls)
    assert r.stitch("match") == match and r.classes() == classes and len(calls) == n  # recorded
    r.contact_sheet("match", sheet)  # the picture was never written: drawn again
    assert len(calls) == n + 1 and "stitched_mocap_motions_train_match" in calls[-1]


def test_rows_share_one_class_set_and_differ_only_in_training_data(tmp_path, monkeypatch, project_recipe):
    recipe = project_recipe("MoCapSynthesis")
    calls = _fake_runs(recipe, monkeypatch, lambda row, seed: {1, 2, 3})
    r = recipe.Recipe(_args(tmp_path))
    prepared = []  # a row first has what it reads made (when it is gone): classes, its images
    monkeypatch.setattr(r, "classes", lambda keep_file: prepared.append(("classes", keep_file)))
    monkeypatch.setattr(r, "stitch", lambda a, keep_images: prepared.append((a, keep_images)))
    recs = {(row.name, seed): r.train_row(row, seed) for seed in (0, 1) for row in recipe.ROWS}
    assert len(calls) == 6 and all("--resume" in c for c in calls)
    assert prepared == 2 * [("classes", True), ("classes", True), ("geometric", True),
                            ("classes", True), ("match", True)]
    classes_file = str(tmp_path / "out" / "pose3d_classes_K100.npz")
    for (name, seed), rec in recs.items():
        c = rec["command"]
        assert c[c.index("MODEL.ROI_POSE3D_HEAD.CLASSES_FILE") + 1] == classes_file
        assert c[c.index("MODEL.ROI_POSE3D_HEAD.BUILD_CLASSES_IF_MISSING") + 1] == "False"
        assert c[c.index("OUTPUT_DIR") + 1] == str(seed_dir(tmp_path / "out", name, seed))
        assert "MODEL.WEIGHTS" not in c and rec["seed"] == seed
    a, b, c = (recs[(row.name, 0)] for row in recipe.ROWS)
    diff = [(x, y) for x, y in zip(a["command"], c["command"]) if x != y]
    assert diff == [('("densepose_embedded_train",)',
                     '("densepose_embedded_train", "stitched_mocap_motions_train_match",)'),
                    (str(seed_dir(tmp_path / "out", "renders", 0)),
                     str(seed_dir(tmp_path / "out", "stitched_match", 0)))]
    assert b["train"] == ["densepose_embedded_train", "stitched_mocap_motions_train_geometric"]
    seeds = [(x, y) for x, y in zip(a["command"], recs[("renders", 1)]["command"]) if x != y]
    assert [x for x, _ in seeds] == ["0", str(tmp_path / "out" / "renders" / "seed0")]  # SEED and OUTPUT_DIR
    # the record keeps every detected person's errors by annotation id
    persons = a["persons"][recipe.MOCAP_TEST]
    assert persons == {"1": [101.0, 50.0, 300.0], "2": [102.0, 50.0, 300.0], "3": [103.0, 50.0, 300.0]}
    assert r.train_row(recipe.ROWS[0], 0) == a and len(calls) == 6  # recorded: not run again


def _row(name, seed, persons, recall, test_sets):
    """A row record: ``persons`` (test set -> {id: (mpjpe, oracle, mean pose)})."""
    return {"command": ["python", "train_net.py", name, str(seed)], "minutes": 10.0, "seed": seed,
            "train": ["densepose_embedded_train"] + ([f"stitched_{name}"] if name != "renders" else []),
            "metrics": {t: {"mpjpe": 200.0 + seed, "top1": 5.0, "recall": recall} for t in test_sets},
            "persons": {t: {k: list(v) for k, v in persons[t].items()} for t in test_sets}}


def test_results_compare_rows_on_the_persons_all_detect(tmp_path, project_recipe):
    recipe = project_recipe("MoCapSynthesis")
    test_sets = [n for n, _ in recipe.TEST_SETS]
    mocap, val = test_sets
    base = {"2": (None, 100.0, 400.0), "3": (None, 120.0, 420.0)}  # oracle and mean pose per person

    def persons(errors, extra):
        out = {k: (e, *base[k][1:]) for k, e in errors.items()}
        return {mocap: {**out, **extra}, val: out}

    rows = {"renders": [], "stitched_geometric": [], "stitched_match": []}
    for s in range(3):
        # (a) also detects person 1, (b) person 4, (c) neither: the common persons are 2 and 3
        rows["renders"].append(_row("renders", s, persons(
            {"2": 300.0 + s, "3": 310.0 + s}, {"1": (1000.0, 1.0, 1.0)}), 75.0, test_sets))
        rows["stitched_geometric"].append(_row("stitched_geometric", s, persons(
            {"2": 250.0 + 2 * s, "3": 260.0 + 2 * s}, {"4": (0.0, 1.0, 1.0)}), 75.0, test_sets))
        rows["stitched_match"].append(_row("stitched_match", s, persons(
            {"2": 300.0 + 5 * s, "3": 310.0 - 5 * s}, {}), 50.0, test_sets))
    assert recipe.common_persons(rows, mocap) == {0: {"2", "3"}, 1: {"2", "3"}, 2: {"2", "3"}}
    common = recipe.common_mpjpe(rows, mocap)
    assert common["renders"] == [305.0, 306.0, 307.0]
    assert common["stitched_geometric"] == [255.0, 257.0, 259.0]
    assert common["oracle"] == [110.0] * 3 and common["mean_pose"] == [410.0] * 3

    args = _args(tmp_path, seeds=[0, 1, 2])
    extra = {"stitch": {a: {"command": ["python", "-m", "synthesis.stitch", a], "minutes": 3.0,
                            "images": 1200, "persons": 1200,
                            "dataset": f"stitched_mocap_motions_train_{a}"}
                        for a in recipe.ASSIGNMENTS},
             "classes": {"command": ["python", "tools/build_pose_classes.py"], "k": 100,
                         "num_poses": 3000, "file": "out/pose3d_classes_K100.npz", "digest": "ab" * 32,
                         "quantisation_mpjpe_mm": 90.0, "mean_pose_mpjpe_mm": 250.0},
             "sheets": {a: f"stitched_contact_sheet_{a}.png" for a in recipe.ASSIGNMENTS}}
    text = recipe.write_results(Path(args.results), args, rows, extra)
    assert Path(args.results).read_text() == text
    section = text.split(f"## `{mocap}`")[1].split("## ")[0]
    line = lambda start: next(x for x in section.splitlines() if x.startswith(start))  # noqa: E731
    assert line("| (a) renders only").endswith(
        "| 3 | 10.0 | 75.0 ± 0.0 | 201.0 ± 1.0 | 5.0 ± 0.0 | **306.0 ± 1.0** |")
    assert line("| (b)").endswith("**257.0 ± 2.0** |") and line("| (c)").endswith("**305.0 ± 0.0** |")
    assert line("| mean training pose").endswith("| 3 | – | – | – | – | 410.0 ± 0.0 |")
    assert line("| class oracle").endswith("| 110.0 ± 0.0 |")
    verdicts = {x.split("|")[1].strip(): x for x in text.splitlines() if f"| `{mocap}` |" in x}
    assert verdicts["adding stitched images (geometric): (a) -> (b)"].endswith(
        f"| 306.0 ± 1.0 -> 257.0 ± 2.0 | -49.0 ± 1.3 | {REPRODUCED} |")
    assert verdicts["adding stitched images (match): (a) -> (c)"].endswith(
        f"| -1.0 ± 0.6 | {NOT_RESOLVED} |")
    assert verdicts["match instead of geometric assignment: (b) -> (c)"].endswith(f"| {OPPOSITE} |")
    for words in ("root-centred", "nominal body size", "mm over the 24 SMPL joints",
                  "no comparable paper number", "![match](stitched_contact_sheet_match.png)",
                  "digest abababababab", "python -m synthesis.stitch geometric"):
        assert words in text, words
    # seeds where some row detects nobody give no common MPJPE
    blind = dict(rows, stitched_match=[dict(r, persons={t: {} for t in test_sets})
                                       for r in rows["stitched_match"]])
    text = recipe.write_results(Path(args.results), args, blind, extra)
    assert (f"| adding stitched images (geometric): (a) -> (b) | `{mocap}` "
            "| no person detected by every row |") in text
    # rows not run yet are listed as such, and their comparisons are not made
    text = recipe.write_results(Path(args.results), args, {"renders": rows["renders"]}, extra)
    assert "| (b) renders + stitched, geometric assignment | – | – | not run |" in text
    assert f"| adding stitched images (geometric): (a) -> (b) | `{mocap}` | not run |" in text
