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
from .mixed_loader import MixedBatchSampler, build_mixed_train_loader
from .person_crop_mapper import (
    PersonCropMapper,
    build_person_crop_train_loader,
    person_crop_dataset,
)
from synthesis.stitched_datasets import register_all_stitched

register_all()
register_all_stitched()

__all__ = [
    "COCO_SPLITS",
    "EMBEDDED_SPLITS",
    "DensePoseDatasetError",
    "DensePoseDatasetMapper",
    "EmbeddedSplit",
    "MixedBatchSampler",
    "PersonCropMapper",
    "build_mixed_train_loader",
    "build_person_crop_train_loader",
    "build_transform_data_loader",
    "datasets_root",
    "ensure_embedded_split",
    "load_densepose_coco_json",
    "person_crop_dataset",
    "register_all",
    "register_densepose_coco",
    "register_embedded_split",
]
