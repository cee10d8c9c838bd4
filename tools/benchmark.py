#!/usr/bin/env python
"""Speed of a DensePose R-CNN config: training iterations/s and inference images/s, as json.

    python tools/benchmark.py --config-file configs/embedded/densepose_rcnn_R_50_FPN.yaml \\
        [--train-iters 20] [--images 50] [--opts KEY VALUE ...]

Training runs the config's own data loader, model and optimizer (after warm-up iterations);
inference runs the test mapper + model on the first test dataset at the config's test size,
with ``MODEL.WEIGHTS`` when given (inference time grows with the number of detections).
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


def benchmark_train(cfg, iters: int, warmup: int) -> dict:
    """Seconds per training iteration (forward, backward, optimizer step) on real batches."""
    from densepose_ext.engine import Trainer

    model = Trainer.build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    loader = iter(Trainer.build_train_loader(cfg))
    model.train()
    times = []
    with EventStorage(0):  # detectron2 models log training statistics into a storage
        _train_loop(cfg, model, optimizer, loader, warmup + iters, warmup, times)
    per_iter = sum(times) / len(times)
    return {"train_iters_per_s": round(1.0 / per_iter, 4),
            "train_images_per_s": round(cfg.SOLVER.IMS_PER_BATCH / per_iter, 3),
            "train_s_per_iter": round(per_iter, 4), "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
            "train_iters_timed": iters}


def _train_loop(cfg, model, optimizer, loader, total: int, warmup: int, times: list) -> None:
    """Run ``total`` optimizer steps, appending the time of each after ``warmup`` to ``times``."""
    for k in range(total):
        batch = next(loader)
        _sync(cfg.MODEL.DEVICE)
        start = time.perf_counter()
        losses = sum(model(batch).values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        _sync(cfg.MODEL.DEVICE)
        if k >= warmup:
            times.append(time.perf_counter() - start)


def benchmark_inference(cfg, images: int, warmup: int) -> dict:
    """Images per second of model inference (resized test images, batch 1, no evaluation)."""
    from densepose_ext.engine import Trainer

    model = Trainer.build_model(cfg)
    if cfg.MODEL.WEIGHTS:  # a trained model: realistic numbers of detections per image
        from densepose_ext.modeling.checkpoint import DensePoseCheckpointer

        DensePoseCheckpointer(model).load(cfg.MODEL.WEIGHTS)
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
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ... (must come last)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import densepose_ext.data  # noqa: F401  (registers the datasets)
    from densepose_ext.config import setup_densepose_cfg

    cfg = setup_densepose_cfg(args.config_file, args.opts)
    cfg.freeze()
    report = {"config": args.config_file, "device": cfg.MODEL.DEVICE,
              "threads": torch.get_num_threads(),
              "min_size_train": list(cfg.INPUT.MIN_SIZE_TRAIN),
              "max_size_train": cfg.INPUT.MAX_SIZE_TRAIN,
              "min_size_test": cfg.INPUT.MIN_SIZE_TEST, "max_size_test": cfg.INPUT.MAX_SIZE_TEST}
    if args.train_iters > 0:
        report.update(benchmark_train(cfg, args.train_iters, args.warmup))
    if args.images > 0:
        report.update(benchmark_inference(cfg, args.images, args.warmup))
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
