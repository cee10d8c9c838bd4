"""Dataset mapper: dataset dict -> model input, with DensePose ground truth following flips."""
from __future__ import annotations

import functools
import logging
import os
from typing import Callable, List, Optional, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from densepose_ext.body.official_formats import UV_SYMMETRY
from densepose_ext.pose3d import NUM_JOINTS, joints_from_annotation, mirror_poses
from densepose_ext.structures import (
    DENSE_TARGET_KEY,
    DenseIUV,
    DensePoseData,
    DensePoseList,
    DensePoseTransformData,
    has_densepose,
)

from .densepose_coco import DensePoseDatasetError

__all__ = ["DensePoseDatasetMapper", "build_transform_data_loader"]

logger = logging.getLogger(__name__)

TransformDataSource = Union[DensePoseTransformData, Callable[[], DensePoseTransformData], None]


def build_transform_data_loader(dataset_name: str) -> Callable[[], DensePoseTransformData]:
    """A zero-argument loader of the flip tables that suit ``dataset_name``'s body model.

    Datasets with an official ``densepose_uv_symmetry_file`` in their metadata read it; the
    embedded ones use the embedded body model. Loading is deferred to the first flip.
    """
    path = MetadataCatalog.get(dataset_name).get("densepose_uv_symmetry_file", None)
    if path:  # a partial, not a lambda: the mapper must pickle into data-loader workers
        return functools.partial(DensePoseTransformData.from_mat, path)
    return DensePoseTransformData.from_body_model


class DensePoseDatasetMapper:
    """Reads the image, applies augmentations and converts annotations to ``Instances``.

    Training output: {"image": uint8 CHW tensor, "instances": Instances(gt_boxes, gt_classes,
    [gt_masks], [gt_keypoints], [gt_densepose]), plus the input dict's other keys}.
    ``gt_densepose`` is a DensePoseList with None for persons without DensePose.
    With ``use_pose3d``, ``gt_pose3d`` (N, 24, 3) holds the persons' camera-frame ``joints_3d``
    (NaN rows for persons without them), mirrored with the image (see :meth:`_pose3d`).
    Persons with a dense target (``dp_dense_file``, e.g. from ground-truth interpolation) get
    ``dense_points`` extra points drawn afresh at every call from the target's labelled cells
    after it followed the flip, so the point losses supervise the whole target over training;
    the target itself is not passed on (it would cost memory and transfer for nothing).
    Inference output: image, height, width (and file_name, image_id), no annotations.
    Crops are not supported: the DensePose box frame would no longer match the clipped box.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str = "BGR",
        use_instance_mask: bool = False,
        instance_mask_format: str = "polygon",
        use_keypoint: bool = False,
        keypoint_hflip_indices: Optional[np.ndarray] = None,
        use_densepose: bool = True,
        transform_data: TransformDataSource = None,
        dense_points: int = 0,
        use_pose3d: bool = False,
    ):
        """
        Args:
            is_train: keep and transform annotations (else drop them).
            augmentations: detectron2 augmentations / transforms to apply.
            image_format: format for :func:`detection_utils.read_image`.
            use_instance_mask / instance_mask_format: produce ``gt_masks``.
            use_keypoint / keypoint_hflip_indices: produce ``gt_keypoints``.
            use_densepose: produce ``gt_densepose``.
            transform_data: flip tables, or a zero-argument function loading them on the first
                horizontal flip (they are only needed when an image is flipped).
            dense_points: points drawn per person from its dense target (0: dense targets
                are ignored and not read).
            use_pose3d: produce ``gt_pose3d`` from the annotations' ``joints_3d``.
        """
        for aug in augmentations:
            if isinstance(aug, (T.RandomCrop, T.CropTransform)):
                raise ValueError("DensePoseDatasetMapper does not support crop augmentations")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format
        self.use_keypoint = use_keypoint
        self.keypoint_hflip_indices = keypoint_hflip_indices
        self.use_densepose = use_densepose
        self._transform_data = transform_data
        if dense_points < 0:
            raise ValueError(f"dense_points must be >= 0, got {dense_points}")
        self.dense_points = int(dense_points)
        if use_pose3d and any(isinstance(a, (T.RandomRotation, T.RotationTransform))
                              for a in augmentations):
            raise ValueError("3D poses (use_pose3d) cannot follow rotation augmentations")
        self.use_pose3d = use_pose3d
        mode = "training" if is_train else "inference"
        logger.info(f"[DensePoseDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        if cfg.INPUT.CROP.ENABLED and is_train:
            raise ValueError(
                "INPUT.CROP.ENABLED is not supported with DensePose data (box-frame points "
                "cannot follow a crop that cuts the box)"
            )
        ret = {
            "is_train": is_train,
            "augmentations": utils.build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "use_instance_mask": cfg.MODEL.MASK_ON,
            "instance_mask_format": cfg.INPUT.MASK_FORMAT,
            "use_keypoint": cfg.MODEL.KEYPOINT_ON,
            "use_densepose": bool(cfg.MODEL.get("DENSEPOSE_ON", True)),
            "dense_points": int(cfg.INPUT.get("DENSEPOSE_DENSE_POINTS", 0)),
            "use_pose3d": bool(cfg.MODEL.get("POSE3D_ON", False)),
        }
        if cfg.MODEL.KEYPOINT_ON and is_train:
            ret["keypoint_hflip_indices"] = utils.create_keypoint_hflip_indices(cfg.DATASETS.TRAIN)
        data_dir = cfg.get("DENSEPOSE_DATA_DIR", "")
        if is_train and data_dir:
            ret["transform_data"] = functools.partial(
                DensePoseTransformData.from_mat, os.path.join(data_dir, UV_SYMMETRY)
            )
        elif is_train and len(cfg.DATASETS.TRAIN):
            ret["transform_data"] = build_transform_data_loader(cfg.DATASETS.TRAIN[0])
        return ret

    @property
    def transform_data(self) -> Optional[DensePoseTransformData]:
        """The flip tables (loaded on first access when a loader was given)."""
        if self._transform_data is not None and not isinstance(
            self._transform_data, DensePoseTransformData
        ):
            self._transform_data = self._transform_data()
        return self._transform_data

    def _read_image(self, dataset_dict: dict) -> np.ndarray:
        file_name = dataset_dict["file_name"]
        try:
            image = utils.read_image(file_name, format=self.image_format)
        except (OSError, ValueError, SyntaxError) as e:  # missing, truncated or not an image
            raise DensePoseDatasetError(
                f"{file_name} (image id={dataset_dict.get('image_id', '?')}): "
                f"cannot read image: {e}"
            ) from e
        utils.check_image_size(dataset_dict, image)
        return image

    def _densepose(
        self, ann: dict, transforms: T.TransformList, where: str
    ) -> Optional[DensePoseData]:
        if not has_densepose(ann):
            return None
        flips = any(isinstance(t, T.HFlipTransform) for t in transforms.transforms)
        transform_data = self.transform_data if flips else None  # its own errors name its file
        try:
            data = DensePoseData.from_annotation(ann)
            if self.dense_points and DENSE_TARGET_KEY in ann:
                data.dense = DenseIUV.from_png_file(ann[DENSE_TARGET_KEY])
            data = data.apply_transform(transforms, transform_data)
            return data.with_dense_points(self.dense_points) if data.dense is not None else data
        except (ValueError, KeyError, TypeError) as e:
            raise DensePoseDatasetError(
                f"{where} annotation id={ann.get('id', '?')}: bad DensePose data: {e}"
            ) from e

    @staticmethod
    def _pose3d(ann: dict, transforms: T.TransformList, where: str) -> np.ndarray:
        """(NUM_JOINTS, 3) camera-frame joints after the transforms (NaN if the person has none).

        An image flip mirrors the pose: left/right joints swap and x (horizontal flip) or y
        (vertical flip) changes sign. Projected with the principal point mirrored too
        (cx -> W - cx), the mirrored joints land exactly on the flipped image's joints; resizing
        changes the intrinsics only, so the joints stay as they are.
        """
        try:
            joints = joints_from_annotation(ann)
        except ValueError as e:
            raise DensePoseDatasetError(
                f"{where} annotation id={ann.get('id', '?')}: bad 3D joints: {e}") from None
        if joints is None:
            return np.full((NUM_JOINTS, 3), np.nan, dtype=np.float32)
        for t in transforms.transforms:
            if isinstance(t, T.HFlipTransform):
                joints = mirror_poses(joints, axis=0)
            elif isinstance(t, T.VFlipTransform):
                joints = mirror_poses(joints, axis=1)
        return joints

    def __call__(self, dataset_dict: dict) -> dict:
        # The input dict stays untouched: the mapper replaces values and pops keys but never
        # changes a value in place, so copies of the dicts suffice (a deep copy of the
        # DensePose point lists cost a third of the mapper's time).
        dataset_dict = dict(dataset_dict)
        if "annotations" in dataset_dict:
            dataset_dict["annotations"] = [dict(a) for a in dataset_dict["annotations"]]
        image = self._read_image(dataset_dict)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" not in dataset_dict:
            return dataset_dict

        where = f"{dataset_dict['file_name']} (image id={dataset_dict.get('image_id', '?')})"
        annos, densepose, poses = [], [], []
        for ann in dataset_dict.pop("annotations"):
            if ann.get("iscrowd", 0):
                continue
            if not self.use_instance_mask:
                ann.pop("segmentation", None)
            if not self.use_keypoint:
                ann.pop("keypoints", None)
            if self.use_densepose:
                densepose.append(self._densepose(ann, transforms, where))
            if self.use_pose3d:
                poses.append(self._pose3d(ann, transforms, where))
            annos.append(
                utils.transform_instance_annotations(
                    ann, transforms, image_shape, keypoint_hflip_indices=self.keypoint_hflip_indices
                )
            )
        instances = utils.annotations_to_instances(
            annos, image_shape, mask_format=self.instance_mask_format
        )
        if self.use_densepose:
            instances.gt_densepose = DensePoseList(densepose)
        if self.use_pose3d:
            instances.gt_pose3d = torch.as_tensor(
                np.stack(poses) if poses else np.zeros((0, NUM_JOINTS, 3), dtype=np.float32))
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict
