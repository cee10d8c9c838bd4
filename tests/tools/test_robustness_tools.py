"""Tools under bad input: they refuse to mislead (untrained or non-matching weights, images of
the wrong size or outside the image root, out-of-range arguments, a shrinking rerun), keep the
work done (unreadable images recorded, results.json written), and every CLI reports a user
error as one ``error: <message>`` line with exit status 2, its traceback only under --debug."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densepose_ext.utils import cli
from toys import REPO, embedded_split_dir

CONFIG = REPO / "configs" / "embedded" / "densepose_rcnn_R_18_GN_FPN.yaml"
MINI = embedded_split_dir("densepose_embedded_mini")
TINY_OPTS = [  # tests/test_heads.py's tiny model
    "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
    "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS", "2", "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM", "32",
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION", "7", "MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE", "28",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "32", "TEST.DETECTIONS_PER_IMAGE", "5",
]


def _load_tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli(args, env=None, timeout=300):
    """Run a CLI (argv list after the interpreter) and return the finished process."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _assert_user_error(proc, *names):
    """Exit status 2, a last line ``error: ...`` naming ``names``, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    last = proc.stderr.strip().splitlines()[-1]
    assert "error: " in last, proc.stderr[-3000:]
    for name in names:
        assert str(name) in last, (name, last)
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- run_cli (in-process)

class _OurError(ValueError):
    """Stands for the project's error classes (module tests.*: not ours, so patched below)."""


def _raise(exc):
    def main():
        raise exc
    return main


@pytest.mark.parametrize("exc", [
    ValueError("bad --foo: 3"), FileNotFoundError("x.json: no such file"),
    PermissionError("x.json: permission denied")])
def test_run_cli_user_error_is_one_line_and_exit_2(capsys, monkeypatch, exc):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        cli.run_cli(_raise(exc), argv=["prog"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {exc}") and "Traceback" not in err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_run_cli_debug_keeps_the_traceback(capsys, monkeypatch, how):
    argv = ["prog", "--debug"] if how == "flag" else ["prog"]
    if how == "env":
        monkeypatch.setenv(cli.DEBUG_ENV, "1")
    else:
        monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        cli.run_cli(_raise(ValueError("bad input")), argv=argv)
    assert stop.value.code == 2 and argv == ["prog"]  # --debug taken off for main
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: bad input" in err


def test_our_error_classes_are_user_errors_wherever_raised():
    from densepose_ext.data.densepose_coco import DensePoseDatasetError
    from densepose_ext.model_zoo import ModelZooError
    from densepose_ext.modeling.checkpoint import DensePoseCheckpointError
    from distill.interpolate import InterpolationError
    from distill.pseudo_label import PseudoLabelError

    for cls in (DensePoseDatasetError, ModelZooError, DensePoseCheckpointError,
                InterpolationError, PseudoLabelError):
        assert cli.is_user_error(cls("x")), cls


@pytest.mark.parametrize("bug", [KeyError("k"), TypeError("t"), AttributeError("a"),
                                 AssertionError("a")])
def test_run_cli_programming_errors_keep_their_traceback(monkeypatch, bug):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(type(bug)):
        cli.run_cli(_raise(bug), argv=["prog"])


def test_our_multi_line_raise_of_value_error_is_a_user_error(capsys):
    def main():
        raise ValueError(
            "x.json: image id 3: "
            "bad width")

    with pytest.raises(SystemExit) as stop:
        cli.run_cli(main, argv=["prog"])
    assert stop.value.code == 2 and "image id 3: bad width" in capsys.readouterr().err


def test_run_cli_library_value_error_is_a_bug():
    """A ValueError raised inside an installed library (not by our checks) keeps its traceback."""
    import numpy as np

    def main():
        np.zeros(3).reshape(2, 2)

    with pytest.raises(ValueError):
        cli.run_cli(main, argv=["prog"])


@pytest.mark.parametrize("value,code", [(0, 0), (3, 3), (None, 0), (Path("x"), 0), ({}, 0)])
def test_run_cli_exit_status_from_main(value, code):
    with pytest.raises(SystemExit) as stop:
        cli.run_cli(lambda: value, argv=["prog"])
    assert stop.value.code == code


# ---------------------------------------------------------------- CLIs (subprocess)

@pytest.mark.parametrize("args,names", [
    pytest.param(["--config-file", "no/such.yaml"], ["no/such.yaml"], marks=pytest.mark.slow),
    pytest.param(["--config-file", CONFIG, "MODEL.NO_SUCH_KEY", "1"], ["MODEL.NO_SUCH_KEY"],
                 marks=pytest.mark.slow),
    (["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", "/no/such/weights.pth",
      "MODEL.DEVICE", "cpu"], ["/no/such/weights.pth"]),
], ids=["missing_config", "unknown_key", "missing_weights"])
def test_train_net_user_errors_exit_2(args, names):
    _assert_user_error(_cli([REPO / "train_net.py", *args]), *names)


@pytest.mark.slow
def test_train_net_debug_shows_the_traceback():
    proc = _cli([REPO / "train_net.py", "--config-file", "no/such.yaml", "--debug"])
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "no/such.yaml" in proc.stderr


@pytest.mark.parametrize("args,names", [
    (["--jpeg-quality", "500"], ["jpeg-quality", "500"]),
    (["--jpeg-quality", "0"], ["jpeg-quality"]),
    (["--workers", "0"], ["workers"]),
    (["--seed", "-1"], ["seed"]),
    (["--width", "8"], ["8x"]),
    (["--max-people", "100"], ["max-people"]),
    (["--num-images", "0"], ["num-images"]),
])
def test_render_cli_validates_its_arguments(tmp_path, capsys, args, names):
    from synthesis.render import main

    base = {"--out": tmp_path / "r", "--num-images": "2"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    with pytest.raises(SystemExit) as stop:
        main([str(x) for kv in base.items() for x in kv] + ["--no-progress"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    for name in names:
        assert name in err
    assert not (tmp_path / "r").exists()


def test_render_cli_out_of_range_exit_2(tmp_path):
    proc = _cli(["-m", "synthesis.render", "--out", tmp_path / "r", "--num-images", "2",
                 "--jpeg-quality", "500"])
    _assert_user_error(proc, "jpeg-quality", "500")


def test_render_rerun_with_fewer_images_is_refused(tmp_path):
    from synthesis.render import RenderShrinkRefused, render_dataset

    out = tmp_path / "split"
    path = render_dataset(out, 3, seed=1, width=32, height=32, max_people=1, progress=False)
    before = path.read_bytes()
    with pytest.raises(RenderShrinkRefused, match="up to id 3") as err:
        render_dataset(out, 2, seed=1, width=32, height=32, max_people=1, progress=False)
    assert str(out) in str(err.value) and "--num-images 3" in str(err.value)
    assert path.read_bytes() == before  # nothing changed
    # the same size or larger still resumes / extends
    assert render_dataset(out, 3, seed=1, width=32, height=32, max_people=1,
                          progress=False).read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("module", ["distill.interpolate", "distill.pseudo_label",
                                    "synthesis.prepare"])
def test_module_clis_reject_bad_arguments_without_traceback(module):
    proc = _cli(["-m", module, "--no-such-option"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error:" in proc.stderr


# ---------------------------------------------------------------- apply_net

def test_apply_net_refuses_empty_weights_fast(tmp_path):
    proc = _cli([REPO / "tools" / "apply_net.py", "--config-file", CONFIG, "--weights", "",
                 MINI / "images" / "000001.jpg", "--out", tmp_path / "vis"])
    _assert_user_error(proc, "--allow-random-weights")
    assert not (tmp_path / "vis").exists()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A checkpoint matching the tiny model (random values: the tests check the plumbing)."""
    from densepose_ext.config import setup_densepose_cfg
    import densepose_ext.modeling  # noqa: F401  (registers the heads)
    from detectron2.modeling import build_model as d2_build

    cfg = setup_densepose_cfg(str(CONFIG), ["MODEL.WEIGHTS", "", *TINY_OPTS])
    torch.manual_seed(0)
    model = d2_build(cfg)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model": model.state_dict()}, path)
    return path, model.state_dict()


@pytest.fixture
def apply_net():
    return _load_tool("apply_net")


def _apply(apply_net, weights, inputs, out, *extra):
    return apply_net.main(["--config-file", str(CONFIG), "--weights", str(weights),
                           *map(str, inputs), "--out", str(out), "--min-score", "0", *extra,
                           "--opts", *TINY_OPTS])


def test_apply_net_records_unreadable_images_and_goes_on(tmp_path, apply_net, tiny_weights):
    images = tmp_path / "images"
    images.mkdir()
    good = (MINI / "images" / "000001.jpg").read_bytes()
    (images / "a_good.jpg").write_bytes(good)
    (images / "b_truncated.jpg").write_bytes(good[: len(good) // 2])
    (images / "c_empty.jpg").write_bytes(b"")
    (images / "d_text.png").write_text("not an image")
    (images / "e_good.jpg").write_bytes(good)
    with pytest.raises(apply_net.ApplyNetError, match="3 of 5 images") as err:
        _apply(apply_net, tiny_weights[0], [images], tmp_path / "vis")
    for name in ("b_truncated.jpg", "c_empty.jpg", "d_text.png"):
        assert name in str(err.value)
    results = json.loads((tmp_path / "vis" / "results.json").read_text())
    assert [Path(r["file_name"]).name for r in results] == sorted(
        p.name for p in images.iterdir())
    assert [("error" in r) for r in results] == [False, True, True, True, False]
    assert all(Path(r["file_name"]).name in r["error"] for r in results if "error" in r)
    assert "truncated" in results[1]["error"]
    assert {p.name for p in (tmp_path / "vis").glob("*.png")} == {"a_good.png", "e_good.png"}


@pytest.mark.slow
def test_apply_net_unreadable_image_cli_exit_2(tmp_path, tiny_weights):
    images = tmp_path / "images"
    images.mkdir()
    (images / "ok.jpg").write_bytes((MINI / "images" / "000001.jpg").read_bytes())
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    proc = _cli([REPO / "tools" / "apply_net.py", "--config-file", CONFIG, "--weights",
                 tiny_weights[0], images, "--out", tmp_path / "vis", "--opts", *TINY_OPTS])
    _assert_user_error(proc, "broken.jpg", "results.json")
    results = json.loads((tmp_path / "vis" / "results.json").read_text())
    assert ["error" in r for r in results] == [True, False]


@pytest.mark.parametrize("state,message", [
    ({"other.net.weight": torch.zeros(2)}, "none of the checkpoint's tensors match"),
    ("backbone_only", "no DensePose tensors"),
])
def test_apply_net_refuses_weights_that_leave_the_model_untrained(
        tmp_path, apply_net, tiny_weights, state, message):
    if state == "backbone_only":
        state = {k: v for k, v in tiny_weights[1].items() if k.startswith("backbone.")}
    weights = tmp_path / "w.pth"
    torch.save({"model": state}, weights)
    image = MINI / "images" / "000001.jpg"
    with pytest.raises(apply_net.ApplyNetError, match=message) as err:
        _apply(apply_net, weights, [image], tmp_path / "vis")
    assert str(weights) in str(err.value) and "--allow-random-weights" in str(err.value)
    # explicitly allowed: runs
    target = _apply(apply_net, weights, [image], tmp_path / "vis", "--allow-random-weights")
    assert len(json.loads(target.read_text())) == 1


def test_apply_net_allow_random_weights_with_empty_weights(tmp_path, apply_net):
    target = _apply(apply_net, "", [MINI / "images" / "000001.jpg"], tmp_path / "vis",
                    "--allow-random-weights")
    assert "detections" in json.loads(target.read_text())[0]


@pytest.mark.parametrize("case", ["same_stem", "missing_input", "truncated_weights"])
def test_apply_net_bad_inputs_are_named(tmp_path, apply_net, tiny_weights, case):
    from densepose_ext.modeling.checkpoint import DensePoseCheckpointError

    weights, inputs = tiny_weights[0], [MINI / "images" / "000001.jpg"]
    if case == "same_stem":
        other = tmp_path / "other"
        other.mkdir()
        shutil.copy(inputs[0], other / "000001.jpg")
        inputs, exc, name = [*inputs, other / "000001.jpg"], apply_net.ApplyNetError, "000001.png"
    elif case == "missing_input":
        inputs, exc, name = [tmp_path / "nope.jpg"], FileNotFoundError, "nope.jpg"
    else:
        weights = tmp_path / "cut.pth"
        weights.write_bytes(tiny_weights[0].read_bytes()[:1000])
        exc, name = DensePoseCheckpointError, "cut.pth"
    with pytest.raises(exc, match=name):
        _apply(apply_net, weights, inputs, tmp_path / "vis")
    assert not (tmp_path / "vis" / "results.json").exists()


@pytest.mark.parametrize("bad", ["-0.5", "2"])
def test_apply_net_min_score_range(tmp_path, apply_net, bad):
    with pytest.raises(SystemExit) as stop:
        apply_net.main(["--config-file", str(CONFIG), "--weights", "w.pth", "x.jpg",
                        "--out", str(tmp_path), "--min-score", bad])
    assert stop.value.code == 2


# ---------------------------------------------------------------- visualize_data

@pytest.fixture
def visualize():
    return _load_tool("visualize_data")


def _mini_json(tmp_path, edit):
    """A copy of the mini split's json (first two images), edited by ``edit(coco, root)``."""
    coco = json.loads((MINI / "annotations.json").read_text())
    keep = {im["id"] for im in coco["images"][:2]}
    coco["images"] = coco["images"][:2]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    root = tmp_path / "images"
    shutil.copytree(MINI / "images", root)
    edit(coco, root)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    return path, root


def _wrong_size(coco, root):
    coco["images"][1]["width"] = 300


def _truncated(coco, root):
    name = coco["images"][1]["file_name"]
    data = (root / name).read_bytes()
    (root / name).write_bytes(data[: len(data) // 2])


def _resized_image(coco, root):
    import cv2

    name = coco["images"][1]["file_name"]
    image = cv2.imread(str(root / name))
    cv2.imwrite(str(root / name), cv2.resize(image, (200, 256)))


@pytest.mark.parametrize("edit,needle", [  # the loader or the tool catches it
    (_wrong_size, "300"), (_resized_image, "200"), (_truncated, "(readable|truncated)")])
def test_visualize_data_refuses_misaligned_or_broken_images(tmp_path, visualize, edit, needle):
    from densepose_ext.data.densepose_coco import DensePoseDatasetError

    path, root = _mini_json(tmp_path, edit)
    with pytest.raises((visualize.VisualizeDataError, DensePoseDatasetError)) as err:
        visualize.main(["--json", str(path), "--image-root", str(root), "--num", "2",
                        "--out", str(tmp_path / "grid.png")])
    assert re.search(needle, str(err.value)) and "000002.jpg" in str(err.value)
    assert not (tmp_path / "grid.png").exists()


def test_visualize_data_refuses_an_image_outside_the_root(tmp_path, visualize):
    outside = tmp_path / "outside.jpg"
    shutil.copy(MINI / "images" / "000001.jpg", outside)
    record = {"file_name": str(outside), "image_id": 7, "width": 256, "height": 256}
    with pytest.raises(visualize.VisualizeDataError, match="outside the image root"):
        visualize.check_record_image(record, str(tmp_path / "images"), "ann.json")
    record["file_name"] = str(tmp_path / "images" / ".." / "outside.jpg")
    with pytest.raises(visualize.VisualizeDataError, match="image id 7"):
        visualize.check_record_image(record, str(tmp_path / "images"), "ann.json")


def test_visualize_data_good_json_still_draws(tmp_path, visualize):
    path, root = _mini_json(tmp_path, lambda coco, root: None)
    out = visualize.main(["--json", str(path), "--image-root", str(root), "--num", "2",
                          "--out", str(tmp_path / "grid.png")])
    assert out.is_file()


@pytest.mark.parametrize("args", [["--panels", "iuv+nonsense"], ["--cell", "0"],
                                  ["--json", "no/such.json", "--image-root", "."]])
def test_visualize_data_argument_errors(tmp_path, visualize, args):
    base = [] if "--json" in args else ["--dataset", "densepose_embedded_mini"]
    with pytest.raises(SystemExit) as stop:
        visualize.main([*base, *args, "--out", str(tmp_path / "g.png")])
    assert stop.value.code == 2


@pytest.mark.slow
def test_visualize_data_cli_size_mismatch_exit_2(tmp_path):
    path, root = _mini_json(tmp_path, _wrong_size)
    proc = _cli([REPO / "tools" / "visualize_data.py", "--json", path, "--image-root", root,
                 "--num", "2", "--out", tmp_path / "grid.png"])
    _assert_user_error(proc, "000002.jpg")
