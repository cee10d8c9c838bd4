"""DensePose datasets: DensePose-COCO loading, registration (at import) and the mapper."""
from .dataset_mapper import DensePoseDatasetMapper, build_transform_data_loader
from .datasets import (
    COCO_SPLITS,
    EMBEDDED_SPLITS,
    EmbeddedSplit,
    datasets_root,
    ensure_embedded_split,
    register_all,
    register_densepose_coco,
    register_embedded_split,
)
from .densepose_coco import DensePoseDatasetError, load_densepose_coco_json

register_all()

__all__ = [
    "COCO_SPLITS",
    "EMBEDDED_SPLITS",
    "DensePoseDatasetError",
    "DensePoseDatasetMapper",
    "EmbeddedSplit",
    "build_transform_data_loader",
    "datasets_root",
    "ensure_embedded_split",
    "load_densepose_coco_json",
    "register_all",
    "register_densepose_coco",
    "register_embedded_split",
]
