"""Recipe building blocks: shrunk schedules, step records and resumable training commands."""
import json
import sys

import pytest

from densepose_ext.engine.recipe import (RESUME_CHECKPOINT_PERIOD, cached_record, claim_output_dir,
                                         display_command, resumable_training, save_record,
                                         shrunk_schedule)


def _opts(flat):
    return dict(zip(flat[::2], flat[1::2]))


def test_schedule_keeps_steps_strictly_inside_the_run():
    opts = _opts(shrunk_schedule(600, 7))
    assert opts["SOLVER.MAX_ITER"] == "600" and opts["SOLVER.STEPS"] == "(462, 540)"
    assert opts["SEED"] == "7" and opts["SOLVER.CHECKPOINT_PERIOD"] == "600"
    assert opts["SOLVER.WARMUP_ITERS"] == "100"
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
