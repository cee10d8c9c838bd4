"""DensePose datasets: DensePose-COCO loading and validation, registration with detectron2's
catalogs (generic, the real DensePose-COCO splits, interpolated and pseudo-labelled
directories), the dataset mapper and the data loaders. Importing it registers nothing: the
built-in datasets are registered by :mod:`synthesis.builtin_datasets`."""
from .catalog import (
    COCO_IMAGE_SPLITS,
    COCO_SPLITS,
    datasets_root,
    densepose_metadata,
    official_body_metadata,
    register_coco_splits,
    register_dataset,
    register_densepose_coco,
    register_failed,
    without_annotations,
    without_densepose,
)
from .dataset_mapper import DensePoseDatasetMapper, build_transform_data_loader
from .densepose_coco import DensePoseDatasetError, load_densepose_coco_json
from .interpolated import (
    INTERPOLATED_SUFFIX,
    InterpolatedDatasetError,
    interpolated_root,
    register_all_interpolated,
    register_interpolated,
)
from .mixed_loader import MixedBatchSampler, build_mixed_train_loader
from .person_crop_mapper import (
    PersonCropMapper,
    build_person_crop_train_loader,
    person_crop_dataset,
)
from .pseudo_labeled import (
    PSEUDO_SUFFIX,
    PseudoDatasetError,
    pseudo_root,
    register_all_pseudo_labeled,
    register_pseudo_labeled,
)

__all__ = [
    "COCO_IMAGE_SPLITS",
    "COCO_SPLITS",
    "INTERPOLATED_SUFFIX",
    "PSEUDO_SUFFIX",
    "DensePoseDatasetError",
    "DensePoseDatasetMapper",
    "InterpolatedDatasetError",
    "MixedBatchSampler",
    "PersonCropMapper",
    "PseudoDatasetError",
    "build_mixed_train_loader",
    "build_person_crop_train_loader",
    "build_transform_data_loader",
    "datasets_root",
    "densepose_metadata",
    "interpolated_root",
    "load_densepose_coco_json",
    "official_body_metadata",
    "person_crop_dataset",
    "pseudo_root",
    "register_all_interpolated",
    "register_all_pseudo_labeled",
    "register_coco_splits",
    "register_dataset",
    "register_densepose_coco",
    "register_failed",
    "register_interpolated",
    "register_pseudo_labeled",
    "without_annotations",
    "without_densepose",
]
