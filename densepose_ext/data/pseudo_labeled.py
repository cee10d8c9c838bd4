"""Registration of pseudo-labelled datasets (``<name>_pseudo``, data distillation).

A pseudo-label directory DIR (written by ``python -m distill.pseudo_label``) holds::

    pseudo_label.json        settings (source images, model, transforms, selection); "complete"
                             and the chosen score threshold once annotations.json is written
    detections/<id>.json     every stored detection of one image (before selection)
    targets/<id>_<k>.png     the dense IUV of detection k over its box
    annotations.json         DensePose-COCO json of the kept persons (images referenced)

The built-in datasets (:mod:`synthesis.builtin_datasets`) register every DIR directly under
the pseudo-label root,
``$DENSEPOSE_PSEUDO_ROOT`` (default ``$DETECTRON2_DATASETS/pseudo_labeled``), as
``<DIR name>_pseudo``; the labeller writes to ``<root>/<dataset or folder name>`` by default,
so ``DATASETS.TRAIN ("densepose_embedded_train", "densepose_embedded_unlabeled_pseudo")`` works
with nothing else set. A DIR that is incomplete or unreadable is still registered, and loading
it raises the error naming the file (one bad directory does not break other commands).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import List, Optional, Union

from detectron2.data import DatasetCatalog, MetadataCatalog

from .catalog import (ANNOTATIONS_FILE, LOCATION_KEYS, TARGETS_DIR, generated_root,
                      register_dataset, register_failed)
from .densepose_coco import load_densepose_coco_json

__all__ = [
    "PSEUDO_SUFFIX",
    "PARAMS_FILE",
    "ANNOTATIONS_FILE",
    "DETECTIONS_DIR",
    "TARGETS_DIR",
    "PseudoDatasetError",
    "pseudo_root",
    "read_pseudo_params",
    "register_pseudo_labeled",
    "register_all_pseudo_labeled",
]

logger = logging.getLogger(__name__)

PSEUDO_SUFFIX = "_pseudo"
PARAMS_FILE = "pseudo_label.json"
DETECTIONS_DIR = "detections"


class PseudoDatasetError(ValueError):
    """A pseudo-label directory is incomplete or unreadable (the message names it)."""


def pseudo_root(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """``$DENSEPOSE_PSEUDO_ROOT``, else ``<datasets root>/pseudo_labeled``."""
    return generated_root("DENSEPOSE_PSEUDO_ROOT", "pseudo_labeled", root)


def read_pseudo_params(out_dir: Union[str, os.PathLike]) -> dict:
    """The complete ``pseudo_label.json`` of DIR (PseudoDatasetError otherwise)."""
    path = Path(out_dir) / PARAMS_FILE
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PseudoDatasetError(f"{path}: not found; {out_dir} is not a pseudo-label "
                                 "output") from None
    except (OSError, ValueError) as e:
        raise PseudoDatasetError(f"{path}: unreadable ({e})") from None
    if not isinstance(params, dict) or "image_root" not in params:
        raise PseudoDatasetError(f"{path}: missing image_root")
    if not params.get("complete") or not (Path(out_dir) / ANNOTATIONS_FILE).is_file():
        raise PseudoDatasetError(
            f"{out_dir}: pseudo-labelling is incomplete (no {ANNOTATIONS_FILE} yet); run "
            "`python -m distill.pseudo_label` again with the same arguments (every shard)")
    return params


def register_pseudo_labeled(name: Optional[str], out_dir: Union[str, os.PathLike]) -> str:
    """Register DIR as ``name`` (default ``<DIR name>_pseudo``); return the name.

    Metadata are those of the dataset recorded as ``metadata_dataset`` (the labelled source:
    body model, flip tables, keypoint names) when it is registered. Problems with DIR surface
    when the dataset is loaded, as a PseudoDatasetError naming the file.
    """
    out_dir = Path(out_dir).absolute()
    name = name or out_dir.name + PSEUDO_SUFFIX
    try:
        params = read_pseudo_params(out_dir)
    except PseudoDatasetError as e:
        return register_failed(name, e, json_file=str(out_dir / ANNOTATIONS_FILE),
                               image_root="", pseudo_label_dir=str(out_dir))
    meta = {}
    source = params.get("metadata_dataset")
    if source and source in DatasetCatalog.list():
        meta = {k: v for k, v in MetadataCatalog.get(source).as_dict().items()
                if k not in LOCATION_KEYS}
    return register_dataset(
        name, lambda: load_densepose_coco_json(out_dir / ANNOTATIONS_FILE, params["image_root"],
                                               dataset_name=name),
        json_file=str(out_dir / ANNOTATIONS_FILE), image_root=params["image_root"],
        pseudo_label_dir=str(out_dir), **meta)


def register_all_pseudo_labeled(root: Optional[Union[str, os.PathLike]] = None) -> List[str]:
    """Register every directory with a ``pseudo_label.json`` directly under ``root``
    (default :func:`pseudo_root`); return the names."""
    root = Path(root) if root is not None else pseudo_root()
    if not root.is_dir():
        return []
    names = [register_pseudo_labeled(None, d) for d in sorted(root.iterdir())
             if (d / PARAMS_FILE).is_file()]
    if names:
        logger.info("Registered pseudo-labelled datasets: %s", ", ".join(names))
    return names
