"""Checkpoints under faults: a kill at any point of a save never leaves a checkpoint that
``--resume`` takes as good; a bad last checkpoint falls back to the previous good one with a
warning naming it; none good is a clear error (``train_net.py``: ``error:`` and exit 2)."""
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from densepose_ext.modeling import checkpoint as ckpt_module
from densepose_ext.modeling.checkpoint import DensePoseCheckpointer, DensePoseCheckpointError
from toys import REPO

CONFIG = REPO / "configs" / "embedded" / "densepose_rcnn_R_18_GN_FPN.yaml"
# tests/test_heads.py's tiny model, untrained (no model zoo), no evaluation
TINY = [
    "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
    "DATASETS.TRAIN", '("densepose_embedded_mini",)', "DATASETS.TEST", "()",
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128", "SOLVER.IMS_PER_BATCH", "2",
    "DATALOADER.NUM_WORKERS", "0", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS", "2", "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM", "32",
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION", "7", "MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE", "28",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
]


class _Net(torch.nn.Module):
    """A model whose weights all equal the iteration they were saved at."""

    def __init__(self, value: float = 0.0):
        super().__init__()
        self.fc = torch.nn.Linear(64, 64)
        torch.nn.init.constant_(self.fc.weight, value)
        torch.nn.init.constant_(self.fc.bias, value)


def _save(out: Path, iteration: int) -> None:
    DensePoseCheckpointer(_Net(iteration), str(out), save_to_disk=True).save(
        f"model_{iteration:07d}", iteration=iteration)


def _resume(out: Path):
    """(iteration, weight value) of what a resume of ``out`` loads."""
    net = _Net(-1.0)
    extra = DensePoseCheckpointer(net, str(out), save_to_disk=True).resume_or_load("", resume=True)
    return extra.get("iteration"), float(net.fc.weight[0, 0].detach())


@pytest.fixture
def warnings_of_checkpointer():
    """Messages the checkpoint module logs at WARNING or above during the test."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger(ckpt_module.__name__)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_failed_save_leaves_previous_files_and_no_temp_file(tmp_path, monkeypatch):
    _save(tmp_path, 1)
    before = (tmp_path / "model_0000001.pth").read_bytes()

    def half_then_fail(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, 3)
    assert not (tmp_path / "model_0000003.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert (tmp_path / "model_0000001.pth").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000001.pth"]


_KILLER = textwrap.dedent("""
    import os, signal, sys
    import torch
    from densepose_ext.modeling import checkpoint as m
    from densepose_ext.utils import cache
    point, out = sys.argv[1], sys.argv[2]
    sys.path[:0] = sys.argv[3].split(os.pathsep)  # this test's folder and tests/ (toys)
    from test_robustness_checkpoints import _save

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    _save(out, 1)  # a good checkpoint first
    save, replace = torch.save, os.replace
    if point == "during_write":  # half the bytes on disk, then the kill
        def torch_save(obj, f, *a, **k):
            import io
            buf = io.BytesIO()
            save(obj, buf, *a, **k)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            die()
        m.torch.save = torch_save
    elif point == "before_rename":  # complete temp file, not yet renamed
        cache.os.replace = lambda a, b: die() if str(b).endswith(".pth") else replace(a, b)
    elif point == "before_tag":  # checkpoint renamed, last_checkpoint not yet rewritten
        cache.os.replace = lambda a, b: die() if str(b).endswith("last_checkpoint") else replace(a, b)
    elif point == "after_tag":
        pass
    _save(out, 3)
    die()
""")


@pytest.mark.parametrize("point,expected", [
    ("during_write", 1), ("before_rename", 1), ("before_tag", 1), ("after_tag", 3)])
def test_sigkill_at_any_point_of_a_save_resumes_from_a_good_checkpoint(
        tmp_path, point, expected):
    """A real SIGKILL at each stage of a save, then a resume: it loads a complete checkpoint
    (the new one only once last_checkpoint names it) and removes the killed save's temp file."""
    proc = subprocess.run([sys.executable, "-c", _KILLER, point, str(tmp_path),
                           os.pathsep.join(map(str, Path(__file__).parents[:2]))], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _resume(tmp_path) == (expected, float(expected))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


@pytest.mark.parametrize("damage,bad_name", [
    ("truncated", "model_0000003.pth"),
    ("zero_bytes", "model_0000003.pth"),
    ("garbage", "model_0000003.pth"),
    ("not_a_checkpoint", "model_0000003.pth"),
    ("missing_file", "model_0000003.pth"),
    ("empty_last_checkpoint", "last_checkpoint"),
    ("last_checkpoint_outside", "last_checkpoint"),
    ("no_last_checkpoint", "last_checkpoint"),
])
def test_resume_falls_back_past_a_bad_last_checkpoint(
        tmp_path, warnings_of_checkpointer, damage, bad_name):
    _save(tmp_path, 1)
    _save(tmp_path, 3)
    last = tmp_path / "model_0000003.pth"
    if damage == "truncated":  # what an in-place write killed midway leaves
        _truncate(last)
    elif damage == "zero_bytes":
        last.write_bytes(b"")
    elif damage == "garbage":
        last.write_bytes(os.urandom(4096))
    elif damage == "not_a_checkpoint":
        torch.save([1, 2, 3], last)
    elif damage == "missing_file":
        last.unlink()
    elif damage == "empty_last_checkpoint":
        (tmp_path / "last_checkpoint").write_text("")
        _truncate(last)
    elif damage == "last_checkpoint_outside":
        (tmp_path / "last_checkpoint").write_text("../elsewhere/model.pth")
        _truncate(last)
    elif damage == "no_last_checkpoint":
        (tmp_path / "last_checkpoint").unlink()
        _truncate(last)
    assert _resume(tmp_path) == (1, 1.0)
    assert any(bad_name in w and "model_0000001.pth" in w for w in warnings_of_checkpointer), \
        warnings_of_checkpointer
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"


def test_resume_without_any_good_checkpoint_is_an_error(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 3)
    _truncate(tmp_path / "model_0000001.pth")
    (tmp_path / "model_0000003.pth").write_bytes(b"")
    with pytest.raises(DensePoseCheckpointError) as err:
        _resume(tmp_path)
    assert "model_0000001.pth" in str(err.value) and "model_0000003.pth" in str(err.value)


def test_resume_prefers_final_then_newest_iteration(tmp_path):
    for it in (1, 3, 5):
        _save(tmp_path, it)
    DensePoseCheckpointer(_Net(9), str(tmp_path), save_to_disk=True).save("model_final",
                                                                          iteration=9)
    (tmp_path / "last_checkpoint").write_text("model_0000007.pth")  # names a missing file
    assert _resume(tmp_path) == (9, 9.0)
    _truncate(tmp_path / "model_final.pth")
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    assert _resume(tmp_path) == (5, 5.0)


@pytest.mark.parametrize("content", [None, b"", b"not a checkpoint", "truncated"])
def test_loading_a_bad_weights_file_names_it(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content == "truncated":
        torch.save({"model": _Net(1).state_dict()}, path)
        _truncate(path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DensePoseCheckpointError, match=str(path)):
        DensePoseCheckpointer(_Net()).load(str(path))


def _train_net(args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), "--config-file", str(CONFIG), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})})


def test_train_net_resume_with_only_bad_checkpoints_exits_2_naming_them(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model_0000001.pth").write_bytes(b"")
    (out / "model_final.pth").write_bytes(b"PK\x03\x04truncated")
    (out / "last_checkpoint").write_text("model_final.pth")
    proc = _train_net(["--resume", *TINY, "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out)])
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "model_final.pth" in last and "model_0000001.pth" in last
    assert "Traceback" not in proc.stderr
    assert "Starting training" not in proc.stdout + proc.stderr


_KILL_FINAL = textwrap.dedent("""
    import io, os, runpy, signal, sys
    import torch
    save = torch.save

    def torch_save(obj, f, *a, **k):  # a SIGKILL halfway through writing model_final
        if "model_final" in os.readlink(f"/proc/self/fd/{f.fileno()}"):
            buf = io.BytesIO()
            save(obj, buf, *a, **k)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return save(obj, f, *a, **k)

    torch.save = torch_save
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


@pytest.mark.slow
def test_train_net_killed_while_saving_model_final_then_resumed(tmp_path):
    """The issue's case: SIGKILL while model_final.pth is written. Before: a truncated
    model_final.pth, and --resume "trained" nothing and exited 0. Now: no model_final.pth is
    left, and --resume writes a complete one from the last periodic checkpoint."""
    out = tmp_path / "run"
    args = [*TINY, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_FINAL, str(REPO / "train_net.py"), "--config-file",
         str(CONFIG), *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (out / "model_final.pth").exists()  # only a temp file, never a partial final
    assert (out / "last_checkpoint").read_text() == "model_0000001.pth"

    proc = _train_net(["--resume", *args])
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    periodic = torch.load(out / "model_0000001.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == periodic["iteration"] == 1
    assert all(torch.equal(final["model"][k], periodic["model"][k]) for k in periodic["model"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_train_net_resume_falls_back_past_a_truncated_checkpoint(tmp_path):
    """An in-place-truncated last checkpoint (as the old writer left it): the resume warns
    naming it and continues from the previous one."""
    out = tmp_path / "run"
    args = [*TINY, "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", str(out)]
    proc = _train_net([*args, "SOLVER.MAX_ITER", "2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "model_final.pth").unlink()
    _truncate(out / "model_0000001.pth")
    proc = _train_net(["--resume", *args])
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "model_0000001.pth is bad" in log and "Starting training from iteration 1" in log
    assert torch.load(out / "model_final.pth", map_location="cpu",
                      weights_only=False)["iteration"] == 2
