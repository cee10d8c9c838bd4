"""Registering DensePose datasets with detectron2's catalogs, and the real DensePose-COCO splits.

The public entry points: :func:`register_dataset` (any loader with the person / DensePose
metadata), :func:`register_failed` (a name whose use raises the error that stopped its
registration, so one bad directory never breaks import or other datasets),
:func:`register_densepose_coco` and :func:`register_coco_splits` (the real DensePose-COCO
files under ``$DETECTRON2_DATASETS``: ``coco/train2014``, ``coco/val2014``,
``coco/annotations/densepose_*.json``, with the official DensePose data files in
``densepose_data/``; and COCO's unlabeled images, ``coco/unlabeled2017`` with
``coco/annotations/image_info_unlabeled2017.json``, for data distillation and mean teacher).
Which datasets a program knows about is decided above the library: the built-in datasets
of this project (embedded, stitched, interpolated, pseudo-labelled) are
registered by :mod:`synthesis.builtin_datasets`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import (
    COCO_PERSON_KEYPOINT_FLIP_MAP,
    COCO_PERSON_KEYPOINT_NAMES,
    KEYPOINT_CONNECTION_RULES,
)

from densepose_ext.body.official_formats import UV_SYMMETRY

from .densepose_coco import load_densepose_coco_json

__all__ = [
    "ANNOTATIONS_FILE",
    "TARGETS_DIR",
    "COCO_SPLITS",
    "COCO_IMAGE_SPLITS",
    "LOCATION_KEYS",
    "datasets_root",
    "generated_root",
    "densepose_metadata",
    "official_body_metadata",
    "register_dataset",
    "register_failed",
    "register_densepose_coco",
    "register_coco_splits",
    "without_densepose",
    "without_annotations",
]

logger = logging.getLogger(__name__)

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
#: Real COCO image sets without annotations: name -> (image dir, image-info json).
COCO_IMAGE_SPLITS: Dict[str, tuple] = {
    "coco_2017_unlabeled": ("coco/unlabeled2017", "coco/annotations/image_info_unlabeled2017.json"),
}
#: in a generated dataset directory: its DensePose-COCO json, and its dense IUV targets
ANNOTATIONS_FILE = "annotations.json"
TARGETS_DIR = "targets"
#: metadata keys that say where a dataset's files are, not what the data is (a dataset
#: derived from another takes the other's metadata without these)
LOCATION_KEYS = ("name", "json_file", "image_root", "embedded_split")


def datasets_root() -> Path:
    """``$DETECTRON2_DATASETS`` or ``./datasets``."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def generated_root(env_var: str, subdir: str, root: Optional[Path] = None) -> Path:
    """Where one kind of generated dataset directories lives: ``$<env_var>`` if set, else
    ``<root>/<subdir>`` (root: :func:`datasets_root`)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    return Path(root if root is not None else datasets_root()) / subdir


def densepose_metadata() -> dict:
    """Metadata every person dataset carries: one class, COCO's 17 keypoints with their flip
    map and skeleton, the DensePose evaluator."""
    return dict(
        thing_classes=["person"],
        thing_dataset_id_to_contiguous_id={1: 0},
        keypoint_names=COCO_PERSON_KEYPOINT_NAMES,
        keypoint_flip_map=COCO_PERSON_KEYPOINT_FLIP_MAP,
        keypoint_connection_rules=KEYPOINT_CONNECTION_RULES,
        evaluator_type="densepose",
    )


def official_body_metadata(root: Optional[Path] = None) -> dict:
    """Metadata of a dataset annotated on the official SMPL body: its DensePose data files
    are read from ``<root>/densepose_data`` (root: :func:`datasets_root`)."""
    data_dir = (Path(root) if root is not None else datasets_root()).absolute() / "densepose_data"
    return dict(body_model="official", densepose_data_dir=str(data_dir),
                densepose_uv_symmetry_file=str(data_dir / UV_SYMMETRY))


def register_dataset(name: str, load: Callable[[], List[dict]], **metadata) -> str:
    """Register ``load`` as dataset ``name`` with ``metadata``; a name registered before is
    replaced (logged). Returns the name."""
    if name in DatasetCatalog.list():
        logger.info("Dataset %s is registered again", name)
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(**metadata)
    return name


def register_failed(name: str, error: Exception, **metadata) -> str:
    """Register ``name`` with a loader that raises ``error`` (a warning is logged): using the
    dataset says what is wrong, while importing and every other dataset keep working."""

    def load() -> List[dict]:
        raise error

    logger.warning("Dataset %s cannot be loaded: %s", name, error)
    return register_dataset(name, load, registration_error=str(error), **metadata)


def register_densepose_coco(name: str, image_dir: str, json_rel: str, root: Path,
                            images_only: bool = False) -> bool:
    """Register a real DensePose-COCO split if its json and image dir exist; return whether.
    ``images_only``: the json is an image-info file and the dataset has no annotations."""
    json_file = Path(root) / json_rel
    image_root = Path(root) / image_dir
    if not (json_file.is_file() and image_root.is_dir()):
        return False

    def load() -> List[dict]:
        records = load_densepose_coco_json(json_file, image_root, dataset_name=name,
                                           images_only=images_only)
        return [without_annotations(r) for r in records] if images_only else records

    register_dataset(
        name, load,
        json_file=str(json_file.absolute()), image_root=str(image_root.absolute()),
        **official_body_metadata(root), **densepose_metadata())
    return True


def register_coco_splits(root: Optional[Path] = None) -> List[str]:
    """Register the DensePose-COCO splits and COCO image sets found under ``root``
    (:func:`datasets_root`) that are not registered yet; return their names."""
    root = Path(root) if root is not None else datasets_root()
    found = [name for splits, images_only in ((COCO_SPLITS, False), (COCO_IMAGE_SPLITS, True))
             for name, (image_dir, json_rel) in splits.items()
             if name not in DatasetCatalog.list()
             and register_densepose_coco(name, image_dir, json_rel, root, images_only)]
    if found:
        logger.info("Registered COCO splits: %s", ", ".join(found))
    return found


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
