"""Dataset registration: the embedded (rendered) splits and, when present, DensePose-COCO.

Importing ``densepose_ext.data`` registers every name here with detectron2's DatasetCatalog
and MetadataCatalog. Paths live under ``$DETECTRON2_DATASETS`` (default ``./datasets``):

- ``densepose_embedded/<split>/`` : images/, dense/, annotations.json of the embedded world.
  A split whose annotations.json is missing is rendered on first use with the fixed
  parameters of :data:`EMBEDDED_SPLITS` (deterministic, resumable).
- ``coco/train2014``, ``coco/val2014``, ``coco/annotations/densepose_*.json`` : the real
  DensePose-COCO splits, registered only if their json and image directory exist.
- ``interpolated/<dataset>/`` (or ``$DENSEPOSE_INTERPOLATED_ROOT/<dataset>/``) : dense targets
  written by ground-truth interpolation (``python -m distill.interpolate``), registered as
  ``<dataset>_interpolated`` (see :mod:`distill.datasets`).
- ``densepose_data/`` : the official DensePose data files (UV_symmetry_transforms.mat,
  SMPL_subdiv.mat, SMPL_SUBDIV_TRANSFORM.mat, Pdist_matrix.pkl) used with the real splits;
  the embedded splits use the embedded body model instead (``body_model="embedded"``).
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import (
    COCO_PERSON_KEYPOINT_FLIP_MAP,
    COCO_PERSON_KEYPOINT_NAMES,
    KEYPOINT_CONNECTION_RULES,
)

from densepose_ext.body.official_formats import UV_SYMMETRY

from .densepose_coco import DensePoseDatasetError, load_densepose_coco_json

__all__ = [
    "EmbeddedSplit",
    "EMBEDDED_SPLITS",
    "COCO_SPLITS",
    "datasets_root",
    "ensure_embedded_split",
    "register_embedded_split",
    "register_densepose_coco",
    "register_all",
    "without_densepose",
    "without_annotations",
]

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
    # wave; synthesis.pose_sources.TEST_MOTIONS), which neither the random poses of the splits
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

#: Real DensePose-COCO splits: name -> (image dir, json) relative to $DETECTRON2_DATASETS.
COCO_SPLITS: Dict[str, tuple] = {
    "densepose_coco_2014_train": ("coco/train2014", "coco/annotations/densepose_train2014.json"),
    "densepose_coco_2014_minival": (
        "coco/val2014", "coco/annotations/densepose_minival2014.json"),
    "densepose_coco_2014_minival_100": (
        "coco/val2014", "coco/annotations/densepose_minival2014_100.json"),
    "densepose_coco_2014_valminusminival": (
        "coco/val2014", "coco/annotations/densepose_valminusminival2014.json"),
}


def datasets_root() -> Path:
    """``$DETECTRON2_DATASETS`` or ``./datasets``."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def _common_metadata() -> dict:
    return dict(
        thing_classes=["person"],
        thing_dataset_id_to_contiguous_id={1: 0},
        keypoint_names=COCO_PERSON_KEYPOINT_NAMES,
        keypoint_flip_map=COCO_PERSON_KEYPOINT_FLIP_MAP,
        keypoint_connection_rules=KEYPOINT_CONNECTION_RULES,
        evaluator_type="densepose",
    )


def ensure_embedded_split(
    split_dir: Path, split: EmbeddedSplit, workers: int = 1, rerender_outdated: bool = False
) -> Path:
    """Path of the split's annotations.json, rendering the split first if it is missing.

    A split rendered by another renderer version or body model is outdated: it is rendered
    anew with ``rerender_outdated``, else a DensePoseDatasetError says how to refresh it.
    ``workers`` renderer processes share the work; the output does not depend on it.
    """
    from synthesis.render import outdated_reason, render_dataset

    json_file = Path(split_dir) / "annotations.json"
    reason = outdated_reason(
        split_dir, split.seed, split.width, split.height, split.max_people, poses=split.poses
    )
    if reason is not None:
        if not rerender_outdated:
            raise DensePoseDatasetError(
                f"{split_dir}: embedded split is outdated ({reason}); refresh it with "
                "`python -m densepose_ext.data.prepare --rerender-outdated` or delete the directory"
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

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        json_file=str(json_file),
        image_root=str(image_root),
        body_model="embedded",
        densepose_data_dir=None,
        densepose_uv_symmetry_file=None,
        embedded_split=split,
        **_common_metadata(),
    )


def without_densepose(record: dict) -> dict:
    """A dataset dict with its DensePose labels removed: no ``dp_*`` annotation keys, no
    dense IUV file; boxes, masks and keypoints stay."""
    out = {k: v for k, v in record.items() if k != "dense_file"}
    out["annotations"] = [
        {k: v for k, v in ann.items() if not k.startswith("dp_")} for ann in record["annotations"]
    ]
    return out


def without_annotations(record: dict) -> dict:
    """A dataset dict of the image alone (file, id, size): no annotations, no dense IUV."""
    return {k: record[k] for k in ("file_name", "image_id", "height", "width") if k in record}


def register_densepose_coco(name: str, image_dir: str, json_rel: str, root: Path) -> bool:
    """Register a real DensePose-COCO split if its json and image dir exist; return whether."""
    json_file = root / json_rel
    image_root = root / image_dir
    if not (json_file.is_file() and image_root.is_dir()):
        return False
    data_dir = root / "densepose_data"
    DatasetCatalog.register(
        name, lambda: load_densepose_coco_json(json_file, image_root, dataset_name=name)
    )
    MetadataCatalog.get(name).set(
        json_file=str(json_file.absolute()),
        image_root=str(image_root.absolute()),
        body_model="official",
        densepose_data_dir=str(data_dir.absolute()),
        densepose_uv_symmetry_file=str((data_dir / UV_SYMMETRY).absolute()),
        **_common_metadata(),
    )
    return True


def register_all(root: Optional[Path] = None) -> None:
    """Register the embedded splits, the DensePose-COCO splits found under ``root``, the
    ground-truth interpolation outputs under the interpolation root and the pseudo-labelled
    datasets under the pseudo-label root."""
    root = Path(root) if root is not None else datasets_root()
    for name, split in EMBEDDED_SPLITS.items():
        if name not in DatasetCatalog.list():
            register_embedded_split(name, split, root)
    found = [
        name
        for name, (image_dir, json_rel) in COCO_SPLITS.items()
        if name not in DatasetCatalog.list()
        and register_densepose_coco(name, image_dir, json_rel, root)
    ]
    if found:
        logger.info("Registered DensePose-COCO splits: %s", ", ".join(found))
    # after the sources: an interpolated dataset takes its source's metadata. Generated
    # datasets never break import: each bad one is registered with a loader that raises its
    # error (see the modules); anything else unexpected in a scan is logged, not raised.
    from distill.datasets import interpolated_root, register_all_interpolated
    from distill.pseudo_datasets import pseudo_root, register_all_pseudo_labeled

    for scan, where in ((register_all_interpolated, interpolated_root(root)),
                        (register_all_pseudo_labeled, pseudo_root(root))):
        try:
            scan(where)
        except (OSError, ValueError) as e:
            logger.warning("Datasets under %s not registered: %s", where, e)
