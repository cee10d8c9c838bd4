"""Stitched image sets (``python -m synthesis.stitch``) as detectron2 datasets.

``register_stitched(name, directory)`` registers one finished output directory (annotations.json
+ images/, optional dense/) under ``name``; records are read by the DensePose-COCO loader, so
keypoints, masks, DensePose points and the extra 3D fields (``joints_3d``, ``keypoints_3d``,
``smpl``) reach the dataset dicts unchanged. ``register_all_stitched()`` registers every
``$DETECTRON2_DATASETS/stitched/<name>/`` holding an annotations.json as ``stitched_<name>``;
the built-in datasets (:mod:`synthesis.builtin_datasets`) call it. A directory whose info.json is unreadable is still
registered, with a loader raising the error (a warning is logged), so one bad directory does
not break other commands.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional, Union

from detectron2.data import DatasetCatalog

from densepose_ext.data import (datasets_root, densepose_metadata, load_densepose_coco_json,
                                official_body_metadata, register_dataset, register_failed)

__all__ = ["STITCHED_SUBDIR", "register_stitched", "register_all_stitched"]

logger = logging.getLogger(__name__)

STITCHED_SUBDIR = "stitched"  # under $DETECTRON2_DATASETS


def _info(directory: Path) -> dict:
    """The small info.json written beside annotations.json ({} when there is none)."""
    path = directory / "info.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable stitched-set info ({e})") from e
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a json object, got {type(info).__name__}")
    if not isinstance(info.get("body_model", "embedded"), str):
        raise ValueError(f"{path}: body_model must be a string, got {info['body_model']!r}")
    return info


def register_stitched(name: str, directory: Union[str, Path], root: Optional[Path] = None,
                      strict: bool = True) -> None:
    """Register the stitched set in ``directory`` as dataset ``name`` (DatasetCatalog and
    MetadataCatalog with the COCO person keypoint metadata of the other person datasets).

    An unreadable info.json raises ValueError naming it; with ``strict=False`` (the scan at
    import) the name is registered anyway, a warning logged, and loading it raises the error.
    """
    directory = Path(directory).absolute()
    json_file, image_root = directory / "annotations.json", directory / "images"
    location = dict(json_file=str(json_file), image_root=str(image_root))
    try:
        info = _info(directory)
    except ValueError as e:  # registered anyway: using it raises, other datasets are unaffected
        if strict:
            raise
        register_failed(name, e, **location)
        return
    body = dict(body_model="embedded", densepose_data_dir=None, densepose_uv_symmetry_file=None) \
        if info.get("body_model", "embedded") == "embedded" else official_body_metadata(root)
    register_dataset(name, lambda: load_densepose_coco_json(json_file, image_root, dataset_name=name),
                     stitched_info=info, **location, **body, **densepose_metadata())


def register_all_stitched(root: Optional[Union[str, Path]] = None) -> List[str]:
    """Register ``<root>/stitched/<name>/`` (root: ``$DETECTRON2_DATASETS``) as ``stitched_<name>``
    for every directory with an annotations.json; returns the names registered now."""
    root = Path(root) if root is not None else datasets_root()
    base = root / STITCHED_SUBDIR
    try:
        dirs = sorted(p for p in base.iterdir() if (p / "annotations.json").is_file()) \
            if base.is_dir() else []
    except OSError as e:
        logger.warning("Cannot scan the stitched datasets in %s: %s", base, e)
        return []
    names = []
    for d in dirs:
        name = f"stitched_{d.name}"
        if name not in DatasetCatalog.list():
            register_stitched(name, d, root, strict=False)
            names.append(name)
    if names:
        logger.info("Registered stitched datasets: %s", ", ".join(names))
    return names
