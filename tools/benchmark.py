#!/usr/bin/env python
"""Speed of a DensePose R-CNN config: training iterations/s and inference images/s, as json.

    python tools/benchmark.py --config-file configs/embedded/densepose_rcnn_R_18_GN_FPN.yaml \\
        [--train-iters 20] [--images 50] [--profile] [--opts KEY VALUE ...]

Training runs the config's own data loader, model and optimizer (after warm-up iterations);
``train_iters_per_s`` counts the whole step as training sees it (waiting for the next batch
included), ``model_s_per_iter`` the model step alone. ``--profile`` adds the mean seconds per
iteration of each part: waiting for data, backbone, RPN, each ROI head part and its losses,
backward, optimizer. Inference runs the test mapper + model on the first test dataset at the
config's test size, with ``MODEL.WEIGHTS`` when given (inference time grows with the number
of detections).
"""
import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path

import torch
from detectron2.utils.events import EventStorage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


#: parts of a GeneralizedRCNN timed by --profile (those the model has)
PROFILED_MODULES = ("backbone", "proposal_generator", "roi_heads")
PROFILED_ROI_PARTS = ("box_pooler", "box_head", "box_predictor", "mask_pooler", "mask_head",
                      "keypoint_pooler", "keypoint_head", "decoder", "densepose_pooler",
                      "densepose_head", "densepose_predictor", "densepose_losses")


class _Timer:
    """Sums the seconds spent in named parts of the model while ``enabled``."""

    def __init__(self, device: str):
        self.device, self.enabled, self.total, self._start = device, False, {}, {}

    def begin(self, name: str) -> None:
        _sync(self.device)
        self._start[name] = time.perf_counter()

    def end(self, name: str) -> None:
        _sync(self.device)
        if self.enabled:
            self.total[name] = self.total.get(name, 0.0) + time.perf_counter() - self._start[name]

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            self.begin(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.end(name)
        return timed


def _instrument(model, timer: _Timer) -> None:
    """Time the model's parts: forward hooks on modules, wrappers on plain callables."""
    parts = [(name, getattr(model, name, None)) for name in PROFILED_MODULES]
    roi = getattr(model, "roi_heads", None)
    parts += [(f"roi_heads.{name}", getattr(roi, name, None)) for name in PROFILED_ROI_PARTS]
    for name, part in parts:
        if isinstance(part, torch.nn.Module):
            part.register_forward_pre_hook(lambda m, a, name=name: timer.begin(name))
            part.register_forward_hook(lambda m, a, o, name=name: timer.end(name))
        elif callable(part):  # e.g. the DensePose loss object
            setattr(roi, name.split(".")[-1], timer.wrap(name, part))


def benchmark_train(cfg, iters: int, warmup: int, profile: bool = False) -> dict:
    """Seconds per training iteration on real batches from the config's loader: the whole
    step (batch wait + forward + backward + optimizer) and the model step alone."""
    from densepose_ext.engine import Trainer

    model = Trainer.build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    loader = iter(Trainer.build_train_loader(cfg))
    model.train()
    timer = _Timer(cfg.MODEL.DEVICE)
    if profile:
        _instrument(model, timer)
    with EventStorage(0):  # detectron2 models log training statistics into a storage
        for k in range(warmup + iters):
            timer.enabled = k >= warmup
            _train_step(model, optimizer, loader, timer)
    steps = {name: timer.total.pop(name) / iters for name in ("step", "data", "model")}
    report = {"train_iters_per_s": round(1.0 / steps["step"], 4),
              "train_images_per_s": round(cfg.SOLVER.IMS_PER_BATCH / steps["step"], 3),
              "train_s_per_iter": round(steps["step"], 4),
              "model_s_per_iter": round(steps["model"], 4),
              "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH, "train_iters_timed": iters,
              "num_workers": cfg.DATALOADER.NUM_WORKERS}
    if profile:
        report["profile_s_per_iter"] = {
            "data_wait": round(steps["data"], 4),
            **{name: round(t / iters, 4) for name, t in timer.total.items()}}
    return report


def _train_step(model, optimizer, loader, timer: _Timer) -> None:
    """One optimizer step on the next batch, its parts timed into ``timer``."""
    timer.begin("step")
    timer.begin("data")
    batch = next(loader)
    timer.end("data")
    timer.begin("model")
    timer.begin("forward")
    losses = sum(model(batch).values())
    timer.end("forward")
    timer.begin("backward")
    optimizer.zero_grad()
    losses.backward()
    timer.end("backward")
    timer.begin("optimizer")
    optimizer.step()
    timer.end("optimizer")
    timer.end("model")
    timer.end("step")


def benchmark_inference(cfg, images: int, warmup: int) -> dict:
    """Images per second of model inference (resized test images, batch 1, no evaluation)."""
    from densepose_ext.engine import Trainer

    model = Trainer.build_model(cfg)
    if cfg.MODEL.WEIGHTS:  # a trained model: realistic numbers of detections per image
        from densepose_ext.modeling.checkpoint import DensePoseCheckpointer

        DensePoseCheckpointer.from_config(cfg, model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    loader = Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])
    times, sizes = [], set()
    with torch.no_grad():
        for k, batch in enumerate(itertools.islice(loader, warmup + images)):
            sizes.add(tuple(batch[0]["image"].shape[1:]))
            _sync(cfg.MODEL.DEVICE)
            start = time.perf_counter()
            model(batch)
            _sync(cfg.MODEL.DEVICE)
            if k >= warmup:
                times.append(time.perf_counter() - start)
    return {"inference_images_per_s": round(len(times) / sum(times), 3),
            "inference_images_timed": len(times),
            "inference_input_sizes_hw": sorted(sizes)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--train-iters", type=int, default=20)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="add the time of each part of a training iteration")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ... (must come last)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
    from densepose_ext.config import setup_densepose_cfg

    cfg = setup_densepose_cfg(args.config_file, args.opts)
    cfg.freeze()
    report = {"config": args.config_file, "device": cfg.MODEL.DEVICE,
              "threads": torch.get_num_threads(),
              "min_size_train": list(cfg.INPUT.MIN_SIZE_TRAIN),
              "max_size_train": cfg.INPUT.MAX_SIZE_TRAIN,
              "min_size_test": cfg.INPUT.MIN_SIZE_TEST, "max_size_test": cfg.INPUT.MAX_SIZE_TEST}
    if args.train_iters > 0:
        report.update(benchmark_train(cfg, args.train_iters, args.warmup, args.profile))
    if args.images > 0:
        report.update(benchmark_inference(cfg, args.images, args.warmup))
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
