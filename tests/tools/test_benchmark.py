"""tools/benchmark.py: the json it prints, including the per-part training profile."""
import importlib.util
import json

from toys import REPO


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("benchmark_tool", REPO / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_splits_a_training_step_into_its_parts(capsys):
    bench = _benchmark_module()
    report = bench.main([
        "--config-file", str(REPO / "configs/embedded/densepose_rcnn_R_18_GN_FPN.yaml"),
        "--train-iters", "2", "--warmup", "1", "--images", "2", "--profile", "--opts",
        "MODEL.WEIGHTS", "", "DATASETS.TRAIN", '("densepose_embedded_mini",)',
        "DATASETS.TEST", '("densepose_embedded_mini",)', "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(json.dumps(report))
    parts = report["profile_s_per_iter"]
    for name in ("data_wait", "forward", "backward", "optimizer", "backbone",
                 "proposal_generator", "roi_heads", "roi_heads.densepose_head",
                 "roi_heads.densepose_losses"):
        assert parts[name] > 0, name
    step = report["train_s_per_iter"]
    assert report["model_s_per_iter"] <= step
    assert parts["forward"] + parts["backward"] + parts["optimizer"] <= report["model_s_per_iter"] + 1e-3
    # the model's parts run inside its forward pass
    assert parts["backbone"] + parts["proposal_generator"] + parts["roi_heads"] <= parts["forward"] + 1e-3
    assert abs(report["train_iters_per_s"] - 1 / step) < 1e-2 * report["train_iters_per_s"]
    assert report["inference_images_timed"] == 2 and report["inference_images_per_s"] > 0
