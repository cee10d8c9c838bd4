"""Registration of ground-truth-interpolated datasets (``<dataset>_interpolated``).

An interpolation output directory DIR (written by ``python -m distill.interpolate``) holds::

    interpolation.json   what produced it: source dataset, its json and image root, teacher,
                         target size, mask source, the source's metadata; "complete" once done
    targets/<id>.png     one dense IUV target per DensePose-annotated person
    annotations.json     the source json, each DensePose annotation naming its target in
                         ``dp_dense_file`` (relative to DIR); written last

How a fresh process finds it: the built-in datasets (:mod:`synthesis.builtin_datasets`) scan
the interpolation root,
``$DENSEPOSE_INTERPOLATED_ROOT`` (default ``$DETECTRON2_DATASETS/interpolated``), and
registers every complete DIR directly under it as ``<source dataset>_interpolated``; the
interpolation tool writes to ``<root>/<dataset>`` by default, so
``DATASETS.TRAIN ("densepose_embedded_train_interpolated",)`` works with no other setting.
A DIR elsewhere is registered with :func:`register_interpolated`.

The registered dataset has the source's images and metadata (body model, flip tables,
keypoint names, ...); only ``json_file`` points to DIR/annotations.json.
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
    "INTERPOLATED_SUFFIX",
    "PARAMS_FILE",
    "ANNOTATIONS_FILE",
    "TARGETS_DIR",
    "InterpolatedDatasetError",
    "interpolated_root",
    "default_output_dir",
    "read_params",
    "register_interpolated",
    "register_all_interpolated",
]

logger = logging.getLogger(__name__)

INTERPOLATED_SUFFIX = "_interpolated"
PARAMS_FILE = "interpolation.json"


class InterpolatedDatasetError(ValueError):
    """An interpolation directory is missing, incomplete or inconsistent (message names it)."""


def interpolated_root(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """``$DENSEPOSE_INTERPOLATED_ROOT``, else ``<datasets root>/interpolated``."""
    return generated_root("DENSEPOSE_INTERPOLATED_ROOT", "interpolated", root)


def default_output_dir(dataset_name: str) -> Path:
    """Where interpolating ``dataset_name`` writes by default (found again at import)."""
    return interpolated_root() / dataset_name


def read_params(out_dir: Union[str, os.PathLike]) -> dict:
    """The ``interpolation.json`` of an output directory (InterpolatedDatasetError if absent
    or unreadable)."""
    path = Path(out_dir) / PARAMS_FILE
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InterpolatedDatasetError(
            f"{path}: not found; {out_dir} is not a ground-truth interpolation output"
        ) from None
    except (OSError, ValueError) as e:
        raise InterpolatedDatasetError(f"{path}: unreadable ({e})") from None
    missing = [k for k in ("source_dataset", "image_root") if k not in params]
    if not isinstance(params, dict) or missing:
        raise InterpolatedDatasetError(f"{path}: missing {', '.join(missing) or 'content'}")
    return params


def register_interpolated(name: Optional[str], out_dir: Union[str, os.PathLike]) -> str:
    """Register the interpolation output ``out_dir`` as ``name`` (default
    ``<source dataset>_interpolated``); return the name.

    Metadata are the source dataset's (as registered now, else as recorded when the targets
    were written) with ``json_file`` = DIR/annotations.json; the image root is the source's.
    """
    out_dir = Path(out_dir).absolute()
    params = read_params(out_dir)
    json_file = out_dir / ANNOTATIONS_FILE
    if not params.get("complete") or not json_file.is_file():
        raise InterpolatedDatasetError(
            f"{out_dir}: interpolation is incomplete (no {ANNOTATIONS_FILE} yet); run "
            "`python -m distill.interpolate` again with the same arguments to finish it"
        )
    source = params["source_dataset"]
    name = name or source + INTERPOLATED_SUFFIX
    if source in DatasetCatalog.list():
        meta = MetadataCatalog.get(source).as_dict()
    else:
        meta = dict(params.get("metadata", {}))
    image_root = str(meta.get("image_root") or params["image_root"])
    meta = {k: v for k, v in meta.items() if k not in LOCATION_KEYS}
    return register_dataset(
        name, lambda: load_densepose_coco_json(json_file, image_root, dataset_name=name),
        json_file=str(json_file), image_root=image_root, interpolated_from=source,
        interpolation_dir=str(out_dir), **meta)


def _register_failed(name: str, error: Exception, out_dir: Path) -> str:
    return register_failed(name, error, interpolation_dir=str(Path(out_dir).absolute()))


def register_all_interpolated(root: Optional[Union[str, os.PathLike]] = None) -> List[str]:
    """Register every complete interpolation output directly under ``root`` (default
    :func:`interpolated_root`); return the names. Incomplete ones are logged, not registered.
    A directory whose ``interpolation.json`` is unreadable is registered as
    ``<directory name>_interpolated`` with a loader raising the error (a warning is logged);
    two outputs of the same source dataset register that name likewise (ambiguous)."""
    root = Path(root) if root is not None else interpolated_root()
    try:
        dirs = sorted(p for p in root.iterdir() if (p / PARAMS_FILE).is_file()) \
            if root.is_dir() else []
    except OSError as e:
        logger.warning("Cannot scan the interpolation root %s: %s", root, e)
        return []
    names, owners = [], {}
    for out_dir in dirs:
        try:
            params = read_params(out_dir)
            if not isinstance(params.get("source_dataset"), str) or not params["source_dataset"]:
                raise InterpolatedDatasetError(
                    f"{out_dir / PARAMS_FILE}: source_dataset must be a non-empty string, got "
                    f"{params.get('source_dataset')!r}")
        except InterpolatedDatasetError as e:
            name = out_dir.name + INTERPOLATED_SUFFIX
            if name not in owners:
                owners[name] = out_dir
                names.append(_register_failed(name, e, out_dir))
            continue
        if not params.get("complete"):
            logger.info("Interpolation output %s is incomplete: not registered", out_dir)
            continue
        name = params["source_dataset"] + INTERPOLATED_SUFFIX
        if name in owners:
            _register_failed(name, InterpolatedDatasetError(
                f"{root}: {owners[name]} and {out_dir} both interpolate "
                f"{params['source_dataset']}; keep one, or move one elsewhere and register it "
                "under another name with densepose_ext.data.register_interpolated"
            ), out_dir)
            continue
        owners[name] = out_dir
        try:
            names.append(register_interpolated(name, out_dir))
        except (InterpolatedDatasetError, OSError, ValueError, TypeError) as e:
            names.append(_register_failed(name, e, out_dir))
    if names:
        logger.info("Registered interpolated datasets: %s", ", ".join(names))
    return names
