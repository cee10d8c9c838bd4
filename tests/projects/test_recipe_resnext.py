"""The ResNeXt project recipe: searches for matched pairs, RESULTS.md, resumption, and (slow)
the measurement script and part 2 end to end on the mini split."""
import json
import sys
from pathlib import Path

import pytest

from toys import REPO

SCRIPT = REPO / "projects" / "ResNeXt" / "run.py"
DEPTH_BLOCKS = {18: 1.0, 50: 2.0, 101: 4.0}


def _option(command, flag, default=None):
    return command[command.index(flag) + 1] if flag in command else default


def _fake_measurement(recipe, config, opts, what, size=64, images=1):
    """A measurement whose numbers follow the shape of the backbone: parameters as a
    bottleneck's (2 r b + 9 b^2 / C per block), memory growing with the feature widths."""
    shape = recipe._resnets(REPO / config, tuple(opts))
    groups, width, res2 = shape["NUM_GROUPS"], shape["WIDTH_PER_GROUP"], shape["RES2_OUT_CHANNELS"]
    bottleneck, k = groups * width, DEPTH_BLOCKS[shape["DEPTH"]]
    params = int(k * 4 * (2 * res2 * bottleneck + 9 * bottleneck ** 2 / groups)) + 1000
    record = {"config": config, "opts": list(opts), "depth": shape["DEPTH"],
              "num_groups": groups, "width_per_group": width, "res2_out_channels": res2,
              "stride_in_1x1": shape["STRIDE_IN_1X1"], "norm": shape["NORM"], "freeze_at": 2,
              "roi_batch_per_image": 16,
              "params": {"bottom_up": params, "bottom_up_with_norm": params,
                         "backbone": params + 500, "model": params + 900}}
    if what == "params":
        return record
    act = int(k * images * size * (3 * bottleneck + 2 * res2) * 40)
    record.update(input_size=[size, size], images=images, persons_per_image=4,
                  train={"peak_bytes": 8 * params + act, "saved_bytes": act // 2,
                         "foreground_rois": 4},
                  backbone_train={"peak_bytes": 8 * params + act // 2, "saved_bytes": act // 3})
    if what == "all":
        record.update(inference={"peak_bytes": 4 * params + act // 10, "detections": 4},
                      flops={"bottom_up": 3 * params * size, "model": 5 * params * size})
    return record


class FakeRuns:
    """Stands in for every command the recipe runs; writes the files a real run would."""

    def __init__(self, recipe):
        self.recipe, self.calls = recipe, []

    def __call__(self, cmd, cwd, env=None):
        cmd = [str(c) for c in cmd]
        self.calls.append(cmd)
        if cmd[1].endswith("measure.py"):
            i = cmd.index("--images") + 2
            rec = _fake_measurement(self.recipe, _option(cmd, "--config-file"), cmd[i:],
                                    _option(cmd, "--what"), int(_option(cmd, "--size")),
                                    int(_option(cmd, "--images")))
            out = Path(_option(cmd, "--out"))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(rec))
        elif cmd[1].endswith("pretrain_model_zoo.py"):
            weights = Path(_option(cmd, "--out"))
            weights.parent.mkdir(parents=True, exist_ok=True)
            weights.write_bytes(b"weights")
            weights.with_suffix(".json").write_text(json.dumps({"metrics": {"bbox_AP": 40.0}}))
            (weights.parent / "metrics.json").write_text(
                json.dumps({"iteration": 19, "time": 0.5}) + "\n")
        else:  # train_net.py
            out = Path(_option(cmd, "OUTPUT_DIR"))
            seed = int(_option(cmd, "SEED"))
            resnext = "MODEL.RESNETS.NUM_GROUPS" in cmd
            assert Path(_option(cmd, "MODEL.WEIGHTS")).is_file()  # its own pretraining
            gps = (7.0 if resnext else 5.0) + 0.1 * seed
            (out / "eval_results.json").write_text(json.dumps(
                {"densepose_summary": {k: gps for k in ("gps_ap", "gpsm_ap")} | {
                    "auc10": 0.2 + 0.01 * seed, "auc20": 0.3, "auc30": 0.4},
                 "bbox": {"AP": 30.0}}))
            (out / "metrics.json").write_text(
                "\n".join(json.dumps({"iteration": i, "time": 0.5 if resnext else 0.25})
                          for i in range(3)) + "\n")
        return 0.5


@pytest.fixture
def fake(project_recipe, monkeypatch):
    recipe = project_recipe("ResNeXt")
    runs = FakeRuns(recipe)
    monkeypatch.setattr(recipe, "run_command", runs)
    params_counted = []

    def count(config, opts):
        params_counted.append((config, tuple(opts)))
        return _fake_measurement(recipe, config, opts, "params")

    monkeypatch.setattr(recipe, "count_parameters", count)
    runs.params_counted = params_counted
    return recipe, runs


def _args(tmp_path, *extra):
    return ["--out", str(tmp_path / "out"), "--records", str(tmp_path / "records"),
            "--results", str(tmp_path / "RESULTS.md"), "--plot", str(tmp_path / "plot.png"),
            "--size", "64", *extra]


def _table(text, header):
    """{first cell: cells} of the table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.split("|")[1:-1]]
        rows[cells[0]] = cells
    return rows


def test_search_finds_the_closest_value_with_few_evaluations(project_recipe):
    search = project_recipe("ResNeXt").search_monotone
    best, trials = search(range(1, 129), lambda x: x * x, 50, start=1)
    assert best == 7 and len(trials) <= 8
    best, trials = search(range(1, 65), lambda c: 3 * c + 7, 100, start=16)
    assert best == 31 and len(trials) <= 6 and trials[0][0] == 16
    # values measured anyway come first: a bracket from the start
    best, trials = search(range(1, 65), lambda c: 3 * c + 7, 100, start=(32, 16))
    assert best == 31 and [v for v, _ in trials[:2]] == [32, 16] and len(trials) <= 4
    assert search(range(1, 65), float, 1000, start=5)[0] == 64  # beyond the range: the end
    assert search(range(1, 65), float, -5, start=30)[0] == 1
    # every value is evaluated once at most
    best, trials = search(range(1, 200), lambda x: 10 * x ** 1.5, 3000, start=150)
    assert best == 45 and len({v for v, _ in trials}) == len(trials)


def test_part1_finds_matched_pairs_and_writes_the_table_and_plot(tmp_path, fake):
    recipe, runs = fake
    recipe.main(_args(tmp_path, "--parts", "1"))
    text = (tmp_path / "RESULTS.md").read_text()
    rows = _table(text, "| model |")
    for label in ("ResNet-50", "ResNet-101", "ResNeXt-50 32x4d", "ResNeXt-101 32x8d",
                  "ResNeXt-101 64x4d"):
        assert label in rows and len(rows[label]) == 15, label
    assert rows["ResNeXt-101 32x8d"][1] == "32x8d" and rows["ResNet-50"][1] == "1x64d"
    # the numbers are the measurement's
    r50 = json.loads((tmp_path / "out" / "part1" / "measure" / "R_50.all.json").read_text())
    assert rows["ResNet-50"][4] == f"{r50['params']['bottom_up_with_norm'] / 1e6:.2f}"
    assert rows["ResNet-50"][8] == f"{r50['train']['peak_bytes'] / 2 ** 20:.0f}"
    # both pairs matched within 5% on what they are matched on
    pairs = _table(text, "| matched on |")
    params_pair, memory_pair = pairs["parameters"], pairs["peak training memory"]
    assert abs(float(params_pair[3]) - 1) <= 0.05 and params_pair[-1] == "yes"
    assert abs(float(memory_pair[4]) - 1) <= 0.05 and memory_pair[-1] == "yes"
    assert params_pair[2] == "ResNeXt-50 32x4d"  # the paper's template
    family = _table(text, "| cardinality |")  # the equal-parameter search, per cardinality
    for groups in recipe.PAPER_CARDINALITIES:
        assert abs(float(family[str(groups)][3]) - 1) <= 0.05
    assert "Part 2" in text and "Not run" in text and "## Commands" in text
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert all(c[1].endswith("measure.py") for c in runs.calls)

    # a second run runs nothing; nor does one that only has the archived records
    n_calls, n_params = len(runs.calls), len(runs.params_counted)
    recipe.main(_args(tmp_path, "--parts", "1"))
    import shutil

    shutil.rmtree(tmp_path / "out")
    recipe.main(_args(tmp_path, "--parts", "1"))
    assert len(runs.calls) == n_calls and len(runs.params_counted) == n_params
    assert (tmp_path / "RESULTS.md").read_text().split("Written by")[1] == \
        text.split("Written by")[1]


def test_part2_pretrains_and_fine_tunes_each_matched_backbone(tmp_path, fake):
    recipe, runs = fake
    recipe.main(_args(tmp_path, "--parts", "2", "--seeds", "0", "1", "2", "--iters", "20",
                      "--pretrain-iters", "40", "--part2-size", "64", "--part2-images", "1"))
    text = (tmp_path / "RESULTS.md").read_text()
    backbones = _table(text, "| row | backbone | bottom-up")
    results = _table(text, "| row | backbone | seeds")
    pretrain = [c for c in runs.calls if c[1].endswith("pretrain_model_zoo.py")]
    finetune = [c for c in runs.calls if c[1] == "train_net.py"]
    assert len(pretrain) == len(finetune) == 9  # 3 rows x 3 seeds
    for p, f in zip(pretrain, finetune):
        assert _option(p, "SOLVER.MAX_ITER") == "40" and _option(f, "SOLVER.MAX_ITER") == "20"
        assert _option(f, "MODEL.BACKBONE.FREEZE_AT") == "5"  # the recipes' fine-tuning
        assert _option(f, "MODEL.WEIGHTS") == _option(p, "--out")  # its own pretraining
        assert _option(p, "SEED") == _option(f, "SEED")
        assert _option(p, "MODEL.RESNETS.DEPTH") == _option(f, "MODEL.RESNETS.DEPTH")
    # the two ResNeXts are matched within 5% to the ResNet-18
    assert abs(float(backbones["X_eq_params"][3]) - 1) <= 0.05
    assert abs(float(backbones["X_eq_memory"][5]) - 1) <= 0.05
    assert backbones["X_eq_params"][-1] == backbones["X_eq_memory"][-1] == "yes"
    assert "ResNeXt-50-GN 32x" in backbones["X_eq_params"][1]
    # results: mean ± std over the three seeds, verdicts computed
    assert results["X_eq_params"][2] == "3" and results["X_eq_params"][5] == "7.10 ± 0.10"
    assert results["R_18_GN"][5] == "5.10 ± 0.10" and results["R_18_GN"][3] == "40.0 ± 0.0"
    # fine-tuning speed, and relative to the ResNet's of the same seed
    assert results["R_18_GN"][7] == "4.000 ± 0.000" and results["X_eq_params"][7] == "2.000 ± 0.000"
    assert results["R_18_GN"][8] == "1.000 ± 0.000" and results["X_eq_memory"][8] == "0.500 ± 0.000"
    verdicts = [line for line in text.splitlines() if line.startswith("| equal ")]
    assert len(verdicts) == 4
    assert all(line.rstrip().endswith(("| reproduced |", "| not resolved at this budget |"))
               for line in verdicts)
    assert "gps_ap" in verdicts[0] and "reproduced" in verdicts[0]
    # each claim beside the paper's own comparison, which only exists at equal complexity
    assert all("23.9% -> ResNeXt-50 32x4d 22.2% top-1 error" in line for line in verdicts[:2])
    assert all("never holds memory equal" in line for line in verdicts[2:])
    assert "## Part 1" in text and "Not run" in text

    # resumption: nothing runs again
    n = len(runs.calls)
    recipe.main(_args(tmp_path, "--parts", "2", "--seeds", "0", "1", "2", "--iters", "20",
                      "--pretrain-iters", "40", "--part2-size", "64", "--part2-images", "1"))
    assert len(runs.calls) == n
    # a part not asked for is reported from its records and runs nothing
    recipe.main(_args(tmp_path, "--parts", "1", "--seeds", "0", "1", "2", "--iters", "20",
                      "--pretrain-iters", "40", "--part2-size", "64", "--part2-images", "1"))
    assert "7.10 ± 0.10" in (tmp_path / "RESULTS.md").read_text()


def test_relative_speed_counts_only_seeds_timed_on_one_machine(tmp_path, fake):
    recipe, runs = fake
    args = _args(tmp_path, "--parts", "2", "--seeds", "0", "1", "2", "--iters", "20",
                 "--pretrain-iters", "40", "--part2-size", "64", "--part2-images", "1")
    recipe.main(args)
    records = sorted(tmp_path.glob("*/part2/X_eq_memory/seed2/row.json"))
    assert len(records) == 2  # under --out and under --records
    record = json.loads(records[0].read_text())
    assert record["machine"] == recipe.machine_id()  # training records name their machine
    for path in records:  # seed 2 of this row timed elsewhere
        path.write_text(json.dumps({**record, "machine": "another CPU / another boot"}))
    n = len(runs.calls)
    recipe.main(args)
    assert len(runs.calls) == n
    results = _table((tmp_path / "RESULTS.md").read_text(), "| row | backbone | seeds")
    assert results["X_eq_memory"][2] == "3" and results["X_eq_memory"][7] == "2.000 ± 0.000"
    assert results["X_eq_memory"][8] == "0.500 ± 0.000 (2 of 3 seeds)"
    assert results["X_eq_params"][8] == "0.500 ± 0.000"


def test_pretrain_schedule_keeps_the_model_zoo_fractions(project_recipe):
    recipe = project_recipe("ResNeXt")
    opts = recipe.pretrain_schedule(4000, 2)
    assert _option(opts, "SOLVER.STEPS") == "(3100, 3600)"
    assert _option(opts, "SEED") == "2" and _option(opts, "SOLVER.WARMUP_ITERS") == "100"
    assert _option(recipe.pretrain_schedule(10, 0), "SOLVER.STEPS") == "(7, 9)"


def test_speed_of_a_resumed_run_counts_each_iteration_once(tmp_path, project_recipe):
    """A run cut off after its checkpoint at 39 and resumed logs 59 and 79 twice: the resumed
    run's timings replace the cut-off run's, so the speed is 4 iterations over their times."""
    recipe = project_recipe("ResNeXt")
    rows = [{"iteration": 19, "time": 1.0}, {"iteration": 39, "time": 1.0},
            {"iteration": 59, "time": 7.0}, {"iteration": 79, "time": 7.0},  # cut off
            {"iteration": 59, "time": 2.0, "lr": 0.1}, {"iteration": 79, "time": 2.0},
            {"iteration": 99, "bbox/AP": 30.0}]  # evaluation rows carry no time
    metrics = tmp_path / "metrics.json"
    metrics.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert recipe.iters_per_second(metrics) == pytest.approx(4 / 6.0, abs=1e-4)
    assert recipe.iters_per_second(tmp_path / "missing.json") is None


def test_configs_build_with_their_known_backbone_sizes():
    """Bottom-up parameters as ImageNet classifiers count them without the classifier
    (torchvision's resnet / resnext figures minus the 1000-way fc), within 0.5%."""
    from detectron2.modeling import build_backbone

    from densepose_ext.config import setup_densepose_cfg

    known = {"R_50": 23_508_032, "X_50_32x4d": 22_979_904, "X_101_64x4d": 81_406_272}
    for name, count in known.items():
        cfg = setup_densepose_cfg(str(REPO / "configs" / f"densepose_rcnn_{name}_FPN_s1x.yaml"),
                                  ["MODEL.DEVICE", "cpu"])
        body = build_backbone(cfg).bottom_up
        norm = sum(b.numel() for n, b in body.named_buffers() if n.endswith((".weight", ".bias")))
        assert sum(p.numel() for p in body.parameters()) + norm == pytest.approx(count, rel=5e-3)
        if name.startswith("X"):
            res = cfg.MODEL.RESNETS
            assert not res.STRIDE_IN_1X1 and list(cfg.MODEL.PIXEL_STD) == [57.375, 57.120, 58.395]
            groups = {m.groups for m in body.modules() if hasattr(m, "groups")}
            assert res.NUM_GROUPS in groups


@pytest.mark.slow
def test_measurement_script_on_a_small_model(tmp_path):
    import subprocess

    out = tmp_path / "m.json"
    subprocess.run([sys.executable, str(SCRIPT.parent / "measure.py"), "--config-file",
                    "configs/embedded/densepose_rcnn_R_18_GN_FPN.yaml", "--size", "128",
                    "--out", str(out), "MODEL.RESNETS.NUM_GROUPS", "1"], check=True, cwd=REPO)
    r = json.loads(out.read_text())
    assert r["train"]["peak_bytes"] > r["train"]["alive_bytes"] > 4 * r["params"]["model"] - 1
    assert r["train"]["saved_bytes"] > 0 and r["inference"]["detections"] == 4
    assert r["flops"]["model"] > r["flops"]["backbone"] > r["flops"]["bottom_up"] > 0


@pytest.mark.slow
def test_part2_end_to_end_on_the_mini_split(tmp_path):
    import subprocess

    mini = "densepose_embedded_mini"
    args = _args(tmp_path, "--parts", "2", "--seeds", "0", "--iters", "2", "--pretrain-iters",
                 "2", "--train", mini, "--test", mini, "--pretrain-train", mini,
                 "--part2-size", "64", "--part2-images", "1")
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, cwd=REPO)
    text = (tmp_path / "RESULTS.md").read_text()
    rows = _table(text, "| row | backbone | seeds")
    for row in ("R_18_GN", "X_eq_params", "X_eq_memory"):
        assert rows[row][2] == "1" and rows[row][5] != "–"
    assert (tmp_path / "out" / "part2" / "X_eq_params" / "seed0" / "pretrain" /
            "backbone.pth").is_file()
