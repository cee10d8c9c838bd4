#!/usr/bin/env python
"""Parameters, FLOPs and measured peak memory of one DensePose R-CNN config on the CPU, as json.

    python projects/ResNeXt/measure.py --config-file configs/densepose_rcnn_R_50_FPN_s1x.yaml \\
        [--what params|train|all] [--size 512] [--persons 4] [--images 1] [--out FILE]
        [KEY VALUE ...]

The model is built as detectron2 builds it from the config (random initialisation, seed 0,
``MODEL.DEVICE cpu``; frozen batch norms calibrated on the input, see
:func:`calibrate_frozen_norms`) and fed ``--images`` fixed synthetic images of ``--size`` x
``--size`` pixels, each holding ``--persons`` people with a box and DensePose ground truth
(points with part, U and V, and a coarse part mask), so that every DensePose loss runs.
It reports:

* parameters of the bottom-up network (the ResNet / ResNeXt), of the backbone (+ FPN) and of
  the whole model; with frozen batch norm the affine terms are buffers, so the bottom-up
  count plus them (``bottom_up_with_norm``) is the figure ImageNet classifiers quote
  without their classifier;
* with ``--what train`` or ``all``: one training step (forward and backward of the summed
  losses, gradients empty before) measured by :func:`densepose_ext.utils.memory.measure_memory`:
  peak bytes of live tensors, bytes saved for backward (activations; parameters left out),
  the number of foreground ROIs (one per person, see :func:`build`); the same for the
  backbone alone with every layer learning (its features summed into one loss);
* with ``all``: inference on the first image (peak bytes, seconds, detections: at most one
  per person) and its FLOPs, counted by fvcore's ``FlopCountAnalysis`` (one multiply-add =
  one flop) for the whole model, the backbone, the bottom-up network and the ROI heads.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

WHAT = ("params", "train", "all")
POINTS_PER_PERSON = 100  # about what DensePose-COCO annotates per person


def count_parameters(model) -> Dict[str, int]:
    """Parameter counts of a GeneralizedRCNN's bottom-up network, backbone and whole."""
    bottom_up = model.backbone.bottom_up
    norm = sum(b.numel() for n, b in bottom_up.named_buffers()
               if n.endswith((".weight", ".bias")))  # FrozenBatchNorm2d's affine terms
    return {"bottom_up": sum(p.numel() for p in bottom_up.parameters()),
            "bottom_up_with_norm": sum(p.numel() for p in bottom_up.parameters()) + norm,
            "backbone": sum(p.numel() for p in model.backbone.parameters()),
            "model": sum(p.numel() for p in model.parameters())}


def synthetic_person_boxes(size: int, persons: int) -> np.ndarray:
    """(persons, 4) XYXY boxes of standing people side by side across the image."""
    width = size / persons
    x0 = np.arange(persons) * width + 0.1 * width
    return np.stack([x0, np.full(persons, 0.1 * size), x0 + 0.8 * width,
                     np.full(persons, 0.95 * size)], axis=1).astype(np.float32)


def synthetic_batch(size: int, persons: int, images: int = 1, seed: int = 0) -> List[dict]:
    """``images`` images of noise, each with ``persons`` annotated people (see the module
    doc); the same for every call with the same arguments."""
    from detectron2.structures import Boxes, Instances

    from densepose_ext.structures import DensePoseData, DensePoseList

    g = torch.Generator().manual_seed(seed)
    segm = torch.zeros(256, 256, dtype=torch.uint8)  # 14 horizontal bands of coarse parts
    segm[:, 32:224] = (1 + torch.arange(256) * 14 // 256).view(-1, 1).to(torch.uint8)
    boxes = torch.from_numpy(synthetic_person_boxes(size, persons))
    batch = []
    for _ in range(images):
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        data = []
        for _ in range(persons):
            n = POINTS_PER_PERSON
            xy = torch.rand(2, n, generator=g) * 255 + 0.5
            data.append(DensePoseData(xy[0], xy[1], torch.randint(1, 25, (n,), generator=g),
                                      torch.rand(n, generator=g), torch.rand(n, generator=g),
                                      segm=segm))
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(boxes.clone())
        instances.gt_classes = torch.zeros(persons, dtype=torch.int64)
        instances.gt_densepose = DensePoseList(data)
        batch.append({"image": image, "height": size, "width": size, "instances": instances})
    return batch


def calibrate_frozen_norms(model, batch: List[dict]) -> int:
    """Give the frozen batch norms of a randomly initialised model the statistics of their
    inputs on ``batch`` (one pass, layer by layer), as pretrained weights would have them.

    With the identity statistics of a fresh ``FrozenBatchNorm2d`` the activations of a deep
    random network grow without bound: the RPN proposes nothing usable and inference keeps
    no detection, so the heads' cost would depend on overflow. Sizes do not change, only
    values. Returns the number of layers set (0 for GroupNorm backbones, which need none).
    """
    from detectron2.layers import FrozenBatchNorm2d

    def set_statistics(module, inputs):
        x = inputs[0].detach().float()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))

    norms = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    hooks = [m.register_forward_pre_hook(set_statistics) for m in norms]
    try:
        model.eval()
        with torch.no_grad():
            model.backbone(model.preprocess_image(batch).tensor)
    finally:
        for h in hooks:
            h.remove()
    return len(norms)


def _state(model) -> list:
    return [*model.parameters(), *model.buffers()]


def measure_training_step(model, batch: List[dict]) -> dict:
    """Peak memory, saved activations, seconds and foreground ROIs of one training step."""
    from detectron2.utils.events import EventStorage

    from densepose_ext.utils.memory import measure_memory

    model.train()
    model.zero_grad(set_to_none=True)
    state = _state(model)
    with EventStorage(0) as storage:
        start = time.perf_counter()
        with measure_memory(alive=[*state, *(d["image"] for d in batch)], exclude=state) as m:
            losses = model(batch)
            sum(losses.values()).backward()
            del losses
        seconds = time.perf_counter() - start
        fg = storage.history("roi_head/num_fg_samples").latest()
    model.zero_grad(set_to_none=True)
    return {**m.as_dict(), "seconds": round(seconds, 2), "foreground_rois": int(fg)}


def measure_backbone_step(model, batch: List[dict]) -> dict:
    """The same for the backbone alone with every layer learning (the frozen stages of the
    config unfrozen; frozen batch norm stays frozen): its features, from the normalised
    images, summed into one loss so that every feature map gets a gradient."""
    from densepose_ext.utils.memory import measure_memory

    model.train()
    model.zero_grad(set_to_none=True)
    images = model.preprocess_image(batch).tensor
    params = list(model.backbone.parameters())
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    state = _state(model.backbone)
    try:
        with measure_memory(alive=[*state, images], exclude=state) as m:
            features = model.backbone(images)
            sum(f.sum() for f in features.values()).backward()
            del features
    finally:
        for p in frozen:
            p.requires_grad_(False)
        model.zero_grad(set_to_none=True)
    return m.as_dict()


def measure_inference(model, batch: List[dict]) -> dict:
    """Peak memory and seconds of inference on the batch's first image (its annotations
    unused)."""
    from densepose_ext.utils.memory import measure_memory

    model.eval()
    inputs = [{k: v for k, v in batch[0].items() if k != "instances"}]
    with torch.no_grad():
        start = time.perf_counter()
        with measure_memory(alive=[*_state(model), inputs[0]["image"]], saved=False) as m:
            outputs = model(inputs)
        seconds = time.perf_counter() - start
    result = m.as_dict()
    for key in ("saved_bytes", "saved_storages"):
        result.pop(key)
    return {**result, "seconds": round(seconds, 2),
            "detections": int(sum(len(o["instances"]) for o in outputs))}


def _tensors(value) -> List[torch.Tensor]:
    """Every tensor inside a model output (dicts, lists, Instances, Boxes, DensePose outputs)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if hasattr(value, "get_fields"):  # Instances
        return _tensors(value.get_fields())
    if hasattr(value, "__dict__"):  # Boxes, DensePoseChartOutput, ...
        return _tensors(vars(value))
    return []


class _TracedInference(torch.nn.Module):
    """The model's inference on one image, as a function of the image tensor returning a
    tuple of tensors (what the tracer of the FLOP counter needs)."""

    def __init__(self, model, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, image):
        outputs = self.model([{"image": image, "height": self.size, "width": self.size}])
        return tuple(_tensors(outputs))


def count_flops(model, batch: List[dict]) -> dict:
    """Inference FLOPs (multiply-adds, fvcore's counter) of the whole model, its backbone,
    bottom-up network and ROI heads."""
    import logging
    import warnings

    from fvcore.nn import FlopCountAnalysis

    model.eval()
    image = batch[0]["image"]
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # uncounted cheap ops are listed
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer warns about python values in the graph
        total = FlopCountAnalysis(_TracedInference(model, batch[0]["height"]), (image,))
        total.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_module = total.by_module()
    return {"model": int(total.total()), "backbone": int(by_module["model.backbone"]),
            "bottom_up": int(by_module["model.backbone.bottom_up"]),
            "roi_heads": int(by_module.get("model.roi_heads", 0))}


def measurement_opts(persons: int) -> List[str]:
    """Config overrides of every measurement: the CPU, and inference keeping at most one
    detection per person of the image (a random network scores every box alike, and the
    DensePose head's cost grows with the number of detections)."""
    return ["MODEL.DEVICE", "cpu", "TEST.DETECTIONS_PER_IMAGE", str(persons),
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


def build(config_file: str, opts: List[str], persons: int = 4):
    """The config's model (with :func:`measurement_opts`), initialised with seed 0.

    The ROI heads sample ``persons`` foreground ROIs per training image, no more: the
    ground-truth boxes join the proposals, so there are always enough, and the heads' share
    of the memory does not depend on how a random RPN happens to overlap the people.
    """
    from detectron2.modeling import build_model

    from densepose_ext.config import setup_densepose_cfg

    cfg = setup_densepose_cfg(config_file, [*opts, *measurement_opts(persons)])
    heads = cfg.MODEL.ROI_HEADS
    heads.BATCH_SIZE_PER_IMAGE = math.ceil(persons / heads.POSITIVE_FRACTION)
    if int(heads.BATCH_SIZE_PER_IMAGE * heads.POSITIVE_FRACTION) != persons:
        raise ValueError(f"{config_file}: ROI_HEADS.POSITIVE_FRACTION "
                         f"{heads.POSITIVE_FRACTION} cannot give {persons} foreground ROIs")
    if not cfg.MODEL.PROPOSAL_GENERATOR.NAME == "RPN" or not heads.PROPOSAL_APPEND_GT:
        raise ValueError(f"{config_file}: needs an RPN with ROI_HEADS.PROPOSAL_APPEND_GT")
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def measure(config_file: str, opts: List[str], what: str = "all", size: int = 512,
            persons: int = 4, images: int = 1) -> dict:
    """Everything ``what`` asks for, as a json-able dict (see the module doc)."""
    if what not in WHAT:
        raise ValueError(f"what must be one of {WHAT}, got {what!r}")
    cfg, model = build(config_file, opts, persons)
    r = cfg.MODEL.RESNETS
    out = {"config": config_file, "opts": list(opts), "depth": r.DEPTH,
           "num_groups": r.NUM_GROUPS, "width_per_group": r.WIDTH_PER_GROUP,
           "res2_out_channels": r.RES2_OUT_CHANNELS, "stride_in_1x1": r.STRIDE_IN_1X1,
           "norm": r.NORM, "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
           "roi_batch_per_image": cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
           "params": count_parameters(model)}
    if what == "params":
        return out
    batch = synthetic_batch(size, persons, images)
    out.update(calibrated_norms=calibrate_frozen_norms(model, batch))
    out.update(input_size=[size, size], images=images, persons_per_image=persons,
               torch_threads=torch.get_num_threads(),
               train=measure_training_step(model, batch),
               backbone_train=measure_backbone_step(model, batch))
    if what == "all":
        out.update(inference=measure_inference(model, batch), flops=count_flops(model, batch))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--what", choices=WHAT, default="all")
    parser.add_argument("--size", type=int, default=512, help="side of the square input image")
    parser.add_argument("--persons", type=int, default=4, help="annotated people per image")
    parser.add_argument("--images", type=int, default=1, help="images in the training batch "
                        "(inference and FLOPs use the first)")
    parser.add_argument("--out", help="also write the json here (atomically)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE overrides")
    args = parser.parse_args(argv)
    if args.size < 64 or args.persons < 1 or args.images < 1:
        parser.error("--size must be >= 64, --persons and --images >= 1")
    result = measure(args.config_file, args.opts, args.what, args.size, args.persons,
                     args.images)
    text = json.dumps(result, indent=1)
    if args.out:
        from densepose_ext.utils import atomic_write

        with atomic_write(Path(args.out), "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
