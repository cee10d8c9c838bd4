"""The built-in datasets of this project, registered when this module is imported.

The one place that knows every kind: the embedded splits (rendered on first use), the real
DensePose-COCO splits found under ``$DETECTRON2_DATASETS``, the stitched sets
(``stitched_<name>``), the ground-truth interpolation outputs (``<dataset>_interpolated``) and
the pseudo-labelled sets (``<name>_pseudo``) under their roots. Programs that take dataset
names (``train_net.py``, the tools, the distillation commands, the recipes) import it; the
library itself registers nothing. Registering again (:func:`register_builtin_datasets`) picks
up directories written since. A directory that cannot be read never breaks the import: its
name is registered with a loader that raises the error, and a scan that fails is logged.
"""
import logging
from pathlib import Path
from typing import Optional

from detectron2.data import DatasetCatalog

from densepose_ext.data import (datasets_root, interpolated_root, pseudo_root,
                                register_all_interpolated, register_all_pseudo_labeled,
                                register_coco_splits)

from .embedded_datasets import EMBEDDED_SPLITS, register_embedded_split
from .stitched_datasets import register_all_stitched

__all__ = ["register_builtin_datasets"]

logger = logging.getLogger(__name__)


def register_builtin_datasets(root: Optional[Path] = None) -> None:
    """Register every built-in dataset under ``root`` (default ``$DETECTRON2_DATASETS``)
    that is not registered yet; generated sets after their sources, whose metadata they take."""
    root = Path(root) if root is not None else datasets_root()
    for name, split in EMBEDDED_SPLITS.items():
        if name not in DatasetCatalog.list():
            register_embedded_split(name, split, root)
    register_coco_splits(root)
    for scan, where in ((register_all_stitched, root),
                        (register_all_interpolated, interpolated_root(root)),
                        (register_all_pseudo_labeled, pseudo_root(root))):
        try:
            scan(where)
        except (OSError, ValueError) as e:
            logger.warning("Datasets under %s not registered: %s", where, e)


register_builtin_datasets()
