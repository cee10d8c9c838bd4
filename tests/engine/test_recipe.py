"""Recipe building blocks: shrunk schedules, step records, resumable training commands and the
statistics of seeds (mean ± std, verdicts)."""
import json
import sys

import pytest

from densepose_ext.engine.recipe import (RESUME_CHECKPOINT_PERIOD, cached_record, claim_output_dir,
                                         display_command, resumable_training, save_record,
                                         load_script, shrunk_schedule, written_by)


def _opts(flat):
    return dict(zip(flat[::2], flat[1::2]))


def test_schedule_keeps_steps_strictly_inside_the_run():
    opts = _opts(shrunk_schedule(600, 7))
    assert opts["SOLVER.MAX_ITER"] == "600" and opts["SOLVER.STEPS"] == "(462, 540)"
    assert opts["SEED"] == "7" and opts["SOLVER.CHECKPOINT_PERIOD"] == "600"
    assert opts["SOLVER.WARMUP_ITERS"] == "100"
    # every recipe fine-tunes the same way: frozen bottom-up backbone, 2 images, scaled LR
    assert opts["MODEL.BACKBONE.FREEZE_AT"] == "5" and opts["SOLVER.IMS_PER_BATCH"] == "2"
    assert float(opts["SOLVER.BASE_LR"]) == pytest.approx(0.04 * 2 / 4)
    assert _opts(shrunk_schedule(4, 0))["SOLVER.STEPS"] == "(3,)"
    assert _opts(shrunk_schedule(1, 0))["SOLVER.STEPS"] == "()"


def test_records_round_trip_and_only_match_the_same_command(tmp_path):
    path = tmp_path / "step" / "row.json"
    command = ["python", "train_net.py", "SEED", "1"]
    assert cached_record(path, command) is None
    record = save_record(path, {"command": command, "minutes": 1.5})
    assert cached_record(path, command) == record == json.loads(path.read_text())
    assert cached_record(path, ["python", "train_net.py", "SEED", "2"]) is None
    assert not list(path.parent.glob("*.tmp"))


def test_a_corrupt_record_names_its_file(tmp_path):
    path = tmp_path / "row.json"
    path.write_text("{truncated")
    with pytest.raises(ValueError, match="row.json"):
        cached_record(path, ["x"])


def test_resumable_training_resumes_and_checkpoints_last():
    command = ["python", "train_net.py", "--config-file", "c.yaml", "SOLVER.CHECKPOINT_PERIOD", "600"]
    out = resumable_training(command)
    assert out[:3] == ["python", "train_net.py", "--resume"]  # a flag, before the KEY VALUE opts
    # the last override wins in detectron2's merge_from_list
    assert out[-2:] == ["SOLVER.CHECKPOINT_PERIOD", str(RESUME_CHECKPOINT_PERIOD)]
    assert display_command([sys.executable, "a b"]) == "python 'a b'"


def test_checkpoints_of_another_command_are_not_resumed(tmp_path):
    out = tmp_path / "row"
    first, second = ["train_net.py", "SOLVER.MAX_ITER", "600"], ["train_net.py", "SOLVER.MAX_ITER", "300"]
    claim_output_dir(out, first)
    (out / "last_checkpoint").write_text("model_0000099.pth")
    claim_output_dir(out, first)  # the same command resumes
    with pytest.raises(RuntimeError, match="another command") as err:
        claim_output_dir(out, second)
    assert str(out) in str(err.value) and "600" in str(err.value) and "300" in str(err.value)
    (out / "recipe_command.json").unlink()  # checkpoints nobody claimed are refused too
    with pytest.raises(RuntimeError, match="unknown command"):
        claim_output_dir(out, first)
    (out / "last_checkpoint").unlink()
    claim_output_dir(out, second)  # no checkpoint: the directory is taken over
    assert json.loads((out / "recipe_command.json").read_text())["command"] == second


def test_seed_stats_mean_and_sample_std():
    from densepose_ext.engine.seed_stats import SeedStats, format_mean_std

    s = SeedStats.of([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert format_mean_std([1.0, 2.0, 3.0], 1) == "2.0 ± 1.0"
    assert format_mean_std([0.1234], 3) == "0.123 (1 seed)"
    with pytest.raises(ValueError, match="no finished seed"):
        SeedStats.of([])


def test_verdicts_need_a_difference_beyond_two_standard_errors():
    from densepose_ext.engine.seed_stats import (NOT_RESOLVED, OPPOSITE, REPRODUCED,
                                                 compare_rows)

    # se = sqrt(1/3 + 1/3) = 0.816: a gain of 2.0 is beyond 2 SE (1.63), 1.5 is not
    c = compare_rows([1.0, 2.0, 3.0], [3.0, 4.0, 5.0])
    assert c.verdict == REPRODUCED and c.difference == 2.0
    assert abs(c.standard_error - (2 / 3) ** 0.5) < 1e-12
    assert compare_rows([1.0, 2.0, 3.0], [2.5, 3.5, 4.5]).verdict == NOT_RESOLVED
    assert compare_rows([3.0, 4.0, 5.0], [1.0, 2.0, 3.0]).verdict == OPPOSITE
    # lower is better (e.g. MPJPE): a drop is the claimed direction
    assert compare_rows([3.0, 4.0, 5.0], [1.0, 2.0, 3.0], higher_is_better=False).verdict == REPRODUCED
    # one seed on either side never resolves, however large the difference
    one = compare_rows([1.0], [9.0, 9.1, 9.2])
    assert one.verdict == NOT_RESOLVED and one.standard_error is None
    # two seeds give a standard error but no verdict: a claim needs three runs a side
    two = compare_rows([1.0, 1.1], [9.0, 9.1, 9.2])
    assert two.verdict == NOT_RESOLVED and two.standard_error > 0
    assert compare_rows([1.0, 1.1, 1.2], [9.0, 9.1, 9.2]).verdict == REPRODUCED


def test_recorded_step_runs_once_per_command(tmp_path):
    from densepose_ext.engine.recipe import recorded_step, seed_dir

    calls = []
    path = seed_dir(tmp_path, "rcnn", 2) / "row.json"
    assert path == tmp_path / "rcnn" / "seed2" / "row.json"
    run = lambda: calls.append(1) or {"minutes": 1.0}  # noqa: E731
    first = recorded_step(path, ["a"], run)
    assert first == {"command": ["a"], "minutes": 1.0} and recorded_step(path, ["a"], run) == first
    recorded_step(path, ["b"], run)
    assert len(calls) == 2 and json.loads(path.read_text())["command"] == ["b"]


def test_record_book_keeps_finished_steps_when_the_outputs_are_lost(tmp_path, monkeypatch):
    import shutil

    from densepose_ext.engine.recipe import RecordBook

    monkeypatch.chdir(tmp_path)
    out, archive = tmp_path / "out", tmp_path / "records"
    calls = []
    weights = out / "fcn" / "seed0" / "model_final.pth"

    def train():
        calls.append("train")
        weights.parent.mkdir(parents=True, exist_ok=True)
        weights.write_text("w")
        return {"minutes": 2.0}

    command = [sys.executable, "train_net.py", "OUTPUT_DIR", str(weights.parent)]
    record = RecordBook(out, archive).step(weights.parent / "row.json", command, train)
    # stored portably: the interpreter as ``python``, paths under the working directory relative
    assert record["command"] == ["python", "train_net.py", "OUTPUT_DIR", "out/fcn/seed0"]
    assert json.loads((archive / "fcn" / "seed0" / "row.json").read_text()) == record
    shutil.rmtree(out)  # a fresh checkout: outputs gone, the archived records remain
    book = RecordBook(out, archive)
    assert book.step(weights.parent / "row.json", command, train) == record and calls == ["train"]
    # a later step that reads the weights has the finished row trained again first
    prepared = lambda: book.step(weights.parent / "row.json", command, train,  # noqa: E731
                                 outputs=[weights])
    book.step(out / "interp" / "row.json", ["python", "interpolate"], lambda: {"n": 1},
              prepare=prepared)
    assert calls == ["train", "train"] and weights.is_file()
    with pytest.raises(ValueError, match="unreadable recipe record"):
        (archive / "interp" / "row.json").write_text("{")
        shutil.rmtree(out / "interp")
        book.step(out / "interp" / "row.json", ["python", "interpolate"], lambda: {"n": 1})


def test_finished_runs_keep_only_their_final_checkpoint(tmp_path):
    from densepose_ext.engine.recipe import prune_checkpoints

    for name in ("model_0000099.pth", "model_0000199.pth", "metrics.json", "last_checkpoint"):
        (tmp_path / name).write_text("x")
    assert prune_checkpoints(tmp_path) == []  # unfinished: an interrupted run resumes from them
    (tmp_path / "model_final.pth").write_text("x")
    deleted = prune_checkpoints(tmp_path)
    assert [p.name for p in deleted] == ["model_0000099.pth", "model_0000199.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last_checkpoint", "metrics.json", "model_final.pth"]


def test_comparison_cells_give_measured_difference_and_verdict():
    from densepose_ext.engine.seed_stats import comparison_cells

    measured, diff, verdict = comparison_cells([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], 2)
    assert measured == "1.00 ± 0.10 -> 2.00 ± 0.10" and diff == "+1.00 ± 0.08"
    assert verdict == "reproduced"
    assert comparison_cells([], [1.0], 1) == ("not run", "–", "–")
    assert comparison_cells([1.0], [2.0], 1)[1:] == ("+1.0 ± –", "not resolved at this budget")


def test_report_only_book_runs_nothing_and_gives_what_is_recorded(tmp_path):
    from densepose_ext.engine.recipe import RecordBook

    def never():
        raise AssertionError("a report-only book ran a step")

    command = ["python", "train_net.py", "SEED", "0"]
    RecordBook(tmp_path / "out", tmp_path / "records").step(
        tmp_path / "out" / "a" / "row.json", command, lambda: {"minutes": 2.0})
    book = RecordBook(tmp_path / "elsewhere", tmp_path / "records", report_only=True)
    done = book.step(tmp_path / "elsewhere" / "a" / "row.json", command, never, prepare=never,
                     outputs=[tmp_path / "missing.pth"])
    assert done == {"command": command, "minutes": 2.0}
    assert book.step(tmp_path / "elsewhere" / "b" / "row.json", command, never,
                     prepare=never) is None


def test_written_by_names_the_command_date_and_machine():
    import os
    import platform
    import time

    text = written_by("python projects/X/run.py --seeds 0 1 2")
    assert text.startswith("Written by `python projects/X/run.py --seeds 0 1 2` (")
    assert time.strftime("%Y-%m-%d") in text
    assert f"{platform.machine()} CPU, {os.cpu_count()} cores)" in text


def test_load_script_runs_a_script_as_its_own_module(tmp_path):
    script = tmp_path / "run.py"
    script.write_text("ROWS = ('a', 'b')\n\ndef double(x):\n    return 2 * x\n")
    module = load_script(script, "some_recipe")
    assert module.__name__ == "some_recipe" and module.ROWS == ("a", "b")
    assert module.double(21) == 42
    assert "some_recipe" not in sys.modules  # loading does not shadow a package of that name
