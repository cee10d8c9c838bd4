"""Ground-truth interpolation: dense IUV targets for every DensePose-annotated person.

    python -m distill.interpolate --config-file C --weights W --dataset D [--out DIR]
        [--size 256] [--mask-source dp_masks] [--batch-size 4] [--opts KEY VALUE ...]
    python -m distill.interpolate --dataset D --exact [--out DIR]    # embedded splits only

A teacher trained on the sparse annotated points (any detectron2 model whose
``inference(batched_inputs, detected_instances, do_postprocess=True)`` attaches
``pred_densepose`` chart outputs to given boxes: DensePose R-CNN, the FCN) is run on each
image with the GT boxes of its annotated persons; its labels (argmax part, that part's U, V)
are kept inside the GT person mask and written per person as a T x T IUV PNG over the GT box
(see :mod:`distill.dense_targets`). ``--exact`` writes the embedded renderer's exact labels
the same way instead: the oracle targets, an upper bound for what a teacher can give.

DIR (default ``$DENSEPOSE_INTERPOLATED_ROOT/<D>``, i.e. ``datasets/interpolated/<D>``) gets
``interpolation.json``, ``targets/<annotation id>.png`` and, last, ``annotations.json`` = D's
json with ``dp_dense_file`` on each annotated person; it is then registered as
``<D>_interpolated`` in every process that imports the built-in datasets
(:mod:`synthesis.builtin_datasets`, :mod:`densepose_ext.data.interpolated`). Files are written
atomically; a rerun skips targets already written and valid, so an interrupted run resumes, and refuses a DIR begun with other settings.
Training on it: ``DATASETS.TRAIN ("<D>_interpolated",)``; ``INPUT.DENSEPOSE_DENSE_POINTS``
points per person are drawn from its target at every iteration (see the dataset mapper).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances
from tqdm import tqdm

import densepose_ext.modeling  # noqa: F401  (registers the models)
import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.config import setup_densepose_cfg
from densepose_ext.data.interpolated import (ANNOTATIONS_FILE, INTERPOLATED_SUFFIX, PARAMS_FILE,
                                             TARGETS_DIR, default_output_dir, interpolated_root)
from densepose_ext.modeling.checkpoint import DensePoseCheckpointer
from densepose_ext.structures import DENSE_TARGET_KEY, FRAME_SIZE, DenseIUV, has_densepose
from densepose_ext.utils import atomic_write, file_sha256

from .dense_targets import (MASK_SOURCES, chart_outputs_to_targets, exact_target,
                            person_mask_in_frame, read_valid_target, write_target)
from .output_dir import claim_output_dir

__all__ = [
    "InterpolationError",
    "TeacherTargets",
    "ExactTargets",
    "build_teacher",
    "annotated_persons",
    "interpolate_dataset",
    "main",
]

logger = logging.getLogger(__name__)

#: settings that must match when a run resumes in an existing output directory
_IDENTITY_KEYS = ("source_dataset", "size", "mask_source", "teacher_id")


class InterpolationError(ValueError):
    """Interpolation cannot proceed; the message names the file / record / directory."""


def annotated_persons(record: dict) -> List[dict]:
    """The annotations of a dataset record that get a target: non-crowd, with DensePose."""
    return [a for a in record.get("annotations", [])
            if has_densepose(a) and not a.get("iscrowd", 0)]


def _where(record: dict, ann: Optional[dict] = None) -> str:
    where = f"{record['file_name']} (image id={record.get('image_id', '?')})"
    return where if ann is None else f"{where} annotation id={ann.get('id', '?')}"


def _masks(record: dict, anns: Sequence[dict], size: int, source: str) -> np.ndarray:
    """(N,T,T) bool GT masks of the annotations on the target grid."""
    hw = (record["height"], record["width"])
    masks = []
    for a in anns:
        try:
            masks.append(person_mask_in_frame(a, hw, size, source))
        except ValueError as e:
            raise InterpolationError(f"{_where(record, a)}: {e}") from e
    return np.stack(masks)


class TeacherTargets:
    """Targets from a teacher model run on the GT boxes (test-time resize of its config).

    Args:
        model: a detectron2 meta-architecture in eval mode with the ``inference`` interface
            described in the module docstring.
        cfg: its config (INPUT.FORMAT, test-time resize).
        size, mask_source: target grid side and GT mask source (see
            :func:`~distill.dense_targets.person_mask_in_frame`).
    """

    def __init__(self, model, cfg, size: int = FRAME_SIZE, mask_source: str = "dp_masks"):

        if not callable(getattr(model, "inference", None)):
            raise InterpolationError(
                f"teacher {type(model).__name__} has no inference(batched_inputs, "
                "detected_instances, do_postprocess) method"
            )
        self.model = model
        self.image_format = cfg.INPUT.FORMAT
        self.augmentations = T.AugmentationList(utils.build_augmentation(cfg, is_train=False))
        self.size = size
        self.mask_source = mask_source

    def _input(self, record: dict, anns: Sequence[dict]):

        try:
            image = utils.read_image(record["file_name"], format=self.image_format)
        except (OSError, ValueError, SyntaxError) as e:
            raise InterpolationError(f"{_where(record)}: cannot read image: {e}") from e
        gt_boxes = BoxMode.convert(np.array([a["bbox"] for a in anns], np.float64),
                                   BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
        # Given boxes are clipped to the image (GT boxes may exceed it by BOX_TOLERANCE): the
        # R-CNN predicts over the given box and clips afterwards, the FCN clips first; with
        # clipped boxes both grids span exactly what we gave.
        grid_boxes = gt_boxes.copy()
        grid_boxes[:, 0::2] = grid_boxes[:, 0::2].clip(0, record["width"])
        grid_boxes[:, 1::2] = grid_boxes[:, 1::2].clip(0, record["height"])
        aug_input = T.AugInput(image, boxes=grid_boxes)
        self.augmentations(aug_input)
        image = aug_input.image
        chw = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        inst = Instances(image.shape[:2])
        inst.pred_boxes = Boxes(torch.as_tensor(aug_input.boxes, dtype=torch.float32))
        inst.pred_classes = torch.zeros(len(anns), dtype=torch.int64)
        batched = {"image": chw, "height": record["height"], "width": record["width"]}
        return batched, inst, torch.from_numpy(grid_boxes), torch.from_numpy(gt_boxes)

    @torch.no_grad()
    def __call__(self, items: Sequence[tuple]) -> List[List[DenseIUV]]:
        """Targets of ``items`` = [(record, annotations)], one list per item."""
        inputs, given, grid_boxes, gt_boxes = zip(*(self._input(r, anns) for r, anns in items))
        outputs = self.model.inference(list(inputs), detected_instances=list(given),
                                       do_postprocess=True)
        targets = []
        for k, ((rec, anns), out) in enumerate(zip(items, outputs)):
            inst = out["instances"]
            if len(inst) != len(anns) or not inst.has("pred_densepose"):
                raise InterpolationError(
                    f"{_where(rec)}: the teacher returned {len(inst)} instances "
                    f"{'with' if inst.has('pred_densepose') else 'without'} pred_densepose "
                    f"for {len(anns)} given boxes"
                )
            masks = torch.from_numpy(_masks(rec, anns, self.size, self.mask_source))
            targets.append(chart_outputs_to_targets(inst.pred_densepose, masks, grid_boxes[k],
                                                    gt_boxes[k]))
        return targets


class ExactTargets:
    """Targets from the exact labels of the embedded renderer (``record["dense_file"]``)."""

    def __init__(self, size: int = FRAME_SIZE, mask_source: str = "dp_masks"):
        self.size = size
        self.mask_source = mask_source

    def __call__(self, items: Sequence[tuple]) -> List[List[DenseIUV]]:
        targets = []
        for rec, anns in items:
            if not rec.get("dense_file"):
                raise InterpolationError(
                    f"{_where(rec)}: no exact dense labels (dense/<image>.npz beside the "
                    "images); exact targets exist for the embedded datasets only"
                )
            masks = _masks(rec, anns, self.size, self.mask_source)
            try:
                with np.load(rec["dense_file"]) as npz:
                    dense = {k: npz[k] for k in ("I", "U", "V", "instance")}
            except (OSError, KeyError, ValueError) as e:
                raise InterpolationError(
                    f"{rec['dense_file']}: unreadable dense labels: {e}") from e
            targets.append([exact_target(dense, a, m) for a, m in zip(anns, masks)])
        return targets


def build_teacher(config_file: str, weights: str, opts: Sequence[str] = ()):
    """(model in eval mode with ``weights`` loaded, its frozen config)."""
    if not os.path.isfile(weights):
        raise InterpolationError(f"{weights}: teacher weights not found")
    cfg = setup_densepose_cfg(config_file, opts)
    cfg.MODEL.WEIGHTS = ""
    cfg.freeze()
    model = build_model(cfg)
    DensePoseCheckpointer.from_config(cfg, model).load(weights)
    model.eval()
    return model, cfg


def _json_metadata(meta: dict) -> dict:
    """The JSON-serialisable part of a dataset's metadata (kept for fresh processes)."""
    out = {}
    for k, v in meta.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def _target_name(record: dict, ann: dict) -> str:
    ann_id = str(ann.get("id", ""))
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", ann_id) or ann_id.startswith("."):
        raise InterpolationError(
            f"{_where(record, ann)}: annotation id {ann_id!r} cannot name a target file"
        )
    return f"{TARGETS_DIR}/{ann_id}.png"


def interpolate_dataset(
    dataset_name: str,
    out_dir: os.PathLike,
    make_targets: Callable[[Sequence[tuple]], List[List[DenseIUV]]],
    teacher_id: str,
    teacher_info: Optional[dict] = None,
    size: int = FRAME_SIZE,
    mask_source: str = "dp_masks",
    batch_size: int = 4,
    progress: bool = True,
) -> Dict[str, object]:
    """Write the dense targets of every annotated person of ``dataset_name`` into ``out_dir``.

    Args:
        make_targets: [(record, annotations)] -> per item, one DenseIUV per annotation
            (:class:`TeacherTargets` or :class:`ExactTargets`).
        teacher_id: identifies the target source (a resumed run must use the same one).
        teacher_info: extra description written to ``interpolation.json``.
        batch_size: images per call of ``make_targets``.
    Returns:
        a summary: out_dir, images, persons, written, skipped (valid targets found),
        empty_masks (persons whose GT mask is empty: all-zero target).
    """
    if size < 1:
        raise InterpolationError(f"target size must be positive, got {size}")
    if mask_source not in MASK_SOURCES:
        raise InterpolationError(f"unknown mask source {mask_source!r}; expected {MASK_SOURCES}")
    if dataset_name not in DatasetCatalog.list():
        raise InterpolationError(f"dataset {dataset_name!r} is not registered")
    records = DatasetCatalog.get(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    json_file = meta.get("json_file", None)
    if not json_file or not os.path.isfile(json_file):
        raise InterpolationError(f"dataset {dataset_name!r} has no json_file in its metadata")
    out_dir = Path(out_dir).absolute()
    params = {
        "source_dataset": dataset_name,
        "source_json": str(Path(json_file).absolute()),
        "image_root": str(meta.get("image_root", "")),
        "size": int(size),
        "mask_source": mask_source,
        "teacher_id": teacher_id,
        "teacher": teacher_info or {},
        "metadata": _json_metadata(meta.as_dict()),
        "complete": False,
    }
    claim_output_dir(out_dir, PARAMS_FILE, params, _IDENTITY_KEYS, InterpolationError,
                     "targets")

    names: Dict[object, str] = {}
    todo = []
    n_persons = n_skipped = 0
    for rec in records:
        anns = annotated_persons(rec)
        missing = []
        for a in anns:
            name = _target_name(rec, a)
            names[a["id"]] = name
            if read_valid_target(out_dir / name, size) is None:
                missing.append(a)
        n_persons += len(anns)
        n_skipped += len(anns) - len(missing)
        if missing:  # all persons of the image: some teachers use the other boxes
            todo.append((rec, anns))
    logger.info("%s: %d persons in %d images; %d targets already written, %d images to do",
                dataset_name, n_persons, len(records), n_skipped, len(todo))

    n_written = n_empty = 0
    bar = _progress(len(todo), f"interpolating {dataset_name}", progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        for (rec, anns), targets in zip(batch, make_targets(batch)):
            for ann, target in zip(anns, targets):
                path = out_dir / names[ann["id"]]
                if read_valid_target(path, size) is not None:
                    continue
                if target.size != size:
                    raise InterpolationError(
                        f"{_where(rec, ann)}: target of size {target.size}, expected {size}")
                n_empty += int(not bool((target.i > 0).any()))
                write_target(path, target)
                n_written += 1
        bar.update(len(batch))
    bar.close()

    _write_annotations(json_file, out_dir / ANNOTATIONS_FILE, names, params)
    params["complete"] = True
    params["num_targets"] = len(names)
    with atomic_write(out_dir / PARAMS_FILE, "w") as f:
        json.dump(params, f, indent=1, sort_keys=True)
    if n_empty:
        logger.warning("%d persons have an empty %s mask: their targets are all zero",
                       n_empty, mask_source)
    summary = {"out_dir": str(out_dir), "dataset": dataset_name + INTERPOLATED_SUFFIX,
               "images": len(records), "persons": n_persons, "written": n_written,
               "skipped": n_skipped, "empty_masks": n_empty}
    logger.info("Interpolation done: %s", summary)
    return summary


def _write_annotations(source_json: str, path: Path, names: Dict[object, str],
                       params: dict) -> None:
    """The source json with ``dp_dense_file`` on every annotation that has a target."""
    with open(source_json, "r", encoding="utf-8") as f:
        data = json.load(f)
    for ann in data["annotations"]:
        name = names.get(ann.get("id"))
        if name is not None:
            ann[DENSE_TARGET_KEY] = name
        else:
            ann.pop(DENSE_TARGET_KEY, None)
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    info["ground_truth_interpolation"] = {
        k: params[k] for k in ("source_dataset", "source_json", "size", "mask_source",
                               "teacher_id", "teacher")}
    data["info"] = info
    with atomic_write(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoProgress()

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="python -m distill.interpolate", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="registered DensePose dataset")
    parser.add_argument("--config-file", help="teacher config")
    parser.add_argument("--weights", help="teacher checkpoint (.pth / .pkl)")
    parser.add_argument("--exact", action="store_true",
                        help="write the renderer's exact labels (embedded datasets) instead")
    parser.add_argument("--out", help=f"output directory (default {interpolated_root()}/DATASET)")
    parser.add_argument("--size", type=int, default=FRAME_SIZE, help="target grid side T")
    parser.add_argument("--mask-source", default="dp_masks", choices=MASK_SOURCES,
                        help="GT person mask that bounds the targets")
    parser.add_argument("--batch-size", type=int, default=4, help="images per teacher call")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="teacher config overrides KEY VALUE ... (must come last)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.exact == bool(args.config_file or args.weights):
        parser.error("give either --config-file and --weights (a teacher) or --exact")
    if not args.exact and not (args.config_file and args.weights):
        parser.error("a teacher needs both --config-file and --weights")

    if args.exact:
        make_targets = ExactTargets(args.size, args.mask_source)
        teacher_id, info = "exact", {"kind": "exact renderer labels"}
    else:
        model, cfg = build_teacher(args.config_file, args.weights, args.opts)
        make_targets = TeacherTargets(model, cfg, args.size, args.mask_source)
        teacher_id = "sha256:" + file_sha256(args.weights)
        info = {"kind": "model", "config_file": str(Path(args.config_file).absolute()),
                "weights": str(Path(args.weights).absolute()), "opts": list(args.opts),
                "meta_architecture": cfg.MODEL.META_ARCHITECTURE}
    out_dir = Path(args.out) if args.out else default_output_dir(args.dataset)
    try:
        summary = interpolate_dataset(
            args.dataset, out_dir, make_targets, teacher_id, info, size=args.size,
            mask_source=args.mask_source, batch_size=args.batch_size,
            progress=not args.no_progress)
    except InterpolationError as e:
        parser.exit(2, f"error: {e}\n")
    if out_dir.absolute().parent != interpolated_root().absolute():
        summary["note"] = (f"{out_dir} is outside {interpolated_root()}: register it with "
                           "densepose_ext.data.register_interpolated(None, DIR)")
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
