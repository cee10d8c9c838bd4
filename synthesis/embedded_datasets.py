"""The embedded world's rendered splits as detectron2 datasets.

Each split lives under ``$DETECTRON2_DATASETS/densepose_embedded/<subdir>/`` (images/, dense/,
annotations.json). A split whose annotations.json is missing is rendered on first use with the
fixed parameters of :data:`EMBEDDED_SPLITS` (deterministic, resumable); one rendered by another
renderer version or body model is refused with the command that refreshes it. The splits use
the embedded body model (``body_model="embedded"``).
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from densepose_ext.data import (DensePoseDatasetError, datasets_root, densepose_metadata,
                                load_densepose_coco_json, register_dataset, without_annotations,
                                without_densepose)

from .render import outdated_reason, render_dataset

__all__ = ["EmbeddedSplit", "EMBEDDED_SPLITS", "ensure_embedded_split", "register_embedded_split"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedSplit:
    """Fixed rendering parameters of one embedded split (same parameters -> same data)."""

    subdir: str
    num_images: int
    seed: int
    width: int = 256
    height: int = 256
    max_people: int = 4
    poses: Optional[str] = None  # pose source of synthesis.pose_sources; None: random poses
    # False: the registered dataset keeps COCO-style labels only (boxes, masks, keypoints);
    # DensePose points, coarse masks and the exact dense IUV are removed when it is loaded
    densepose_labels: bool = True
    # False: registered without any annotation (an unlabelled set); the rendered labels stay
    # on disk (annotations.json) only to score pseudo-labels against them
    annotated: bool = True


#: Embedded splits: name -> rendering parameters (directory densepose_embedded/<subdir>).
EMBEDDED_SPLITS: Dict[str, EmbeddedSplit] = {
    "densepose_embedded_train": EmbeddedSplit("train", num_images=1200, seed=1),
    "densepose_embedded_val": EmbeddedSplit("val", num_images=200, seed=2),
    "densepose_embedded_mini": EmbeddedSplit("mini", num_images=16, seed=3),
    # people in poses of the held-out actions of the procedural MoCap motion set (run, squat,
    # wave; synthesis.motions.TEST_MOTIONS), which neither the random poses of the splits
    # above nor the stitching queries (motions_train) show: a test set of unseen poses
    "densepose_embedded_mocap_test": EmbeddedSplit("mocap_test", num_images=200, seed=4,
                                                   poses="motions_test"),
    # the model zoo's pretraining set (MODEL_ZOO.md): its own seed, person boxes, masks and
    # keypoints only, so that DensePose is learned from densepose_embedded_train alone
    "coco_person_embedded_pretrain": EmbeddedSplit("pretrain", num_images=4000, seed=5,
                                                 densepose_labels=False),
    # unlabelled images for data distillation and mean teacher: own seed, registered without
    # annotations (python -m distill.pseudo_label labels them)
    "densepose_embedded_unlabeled": EmbeddedSplit("unlabeled", num_images=2400, seed=6,
                                                  annotated=False),
}


def ensure_embedded_split(
    split_dir: Path, split: EmbeddedSplit, workers: int = 1, rerender_outdated: bool = False
) -> Path:
    """Path of the split's annotations.json, rendering the split first if it is missing.

    A split rendered by another renderer version or body model is outdated: it is rendered
    anew with ``rerender_outdated``, else a DensePoseDatasetError says how to refresh it.
    ``workers`` renderer processes share the work; the output does not depend on it.
    """
    json_file = Path(split_dir) / "annotations.json"
    reason = outdated_reason(
        split_dir, split.seed, split.width, split.height, split.max_people, poses=split.poses
    )
    if reason is not None:
        if not rerender_outdated:
            raise DensePoseDatasetError(
                f"{split_dir}: embedded split is outdated ({reason}); refresh it with "
                "`python -m synthesis.prepare --rerender-outdated` or delete the directory"
            )
        logger.warning("Re-rendering outdated embedded split %s (%s)", split_dir, reason)
        shutil.rmtree(split_dir)
    elif json_file.exists():
        return json_file
    logger.info(
        "Rendering embedded split into %s (%d images, seed %d, %dx%d, up to %d people); "
        "an interrupted run resumes where it stopped.",
        split_dir, split.num_images, split.seed, split.width, split.height, split.max_people,
    )
    out = render_dataset(
        split_dir,
        num_images=split.num_images,
        seed=split.seed,
        width=split.width,
        height=split.height,
        max_people=split.max_people,
        progress=True,
        workers=workers,
        poses=split.poses,
    )
    return Path(out)


def register_embedded_split(name: str, split: EmbeddedSplit, root: Optional[Path] = None) -> None:
    """Register one embedded split under ``root/densepose_embedded/<subdir>``."""
    root = Path(root) if root is not None else datasets_root()
    split_dir = (root / "densepose_embedded" / split.subdir).absolute()
    json_file = split_dir / "annotations.json"
    image_root = split_dir / "images"

    def load() -> List[dict]:
        ensure_embedded_split(split_dir, split)
        dicts = load_densepose_coco_json(json_file, image_root, dataset_name=name)
        if not split.annotated:
            return [without_annotations(d) for d in dicts]
        return dicts if split.densepose_labels else [without_densepose(d) for d in dicts]

    register_dataset(name, load, json_file=str(json_file), image_root=str(image_root),
                     body_model="embedded", densepose_data_dir=None,
                     densepose_uv_symmetry_file=None, embedded_split=split,
                     **densepose_metadata())
