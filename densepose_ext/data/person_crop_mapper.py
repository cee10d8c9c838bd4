"""Single-person mode (the DensePose paper's single-person setting): one sample per person.

Every DensePose-annotated person becomes its own sample: a square crop centred on its GT box,
with side ``CROP_SCALE`` x the box's longer side, resized to ``CROP_SIZE`` pixels (parts beyond
the image are black). Only that person's annotation is kept; its box, polygons and keypoints
follow the crop, while its DensePose points and coarse mask, which live in the box frame, stay
unchanged. Selected by MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP:

- training: :func:`build_person_crop_train_loader` expands the dataset to one record per
  annotated person (:func:`person_crop_dataset`) and maps each with :class:`PersonCropMapper`;
- evaluation: :class:`PersonCropMapper` in inference mode gives, per image, the crops of all
  its annotated persons (``person_crops``); :class:`densepose_ext.modeling.DensePoseFCN`
  predicts each with its GT box given and returns the results in the original image, so the
  standard evaluators score them. Only models that read ``person_crops`` (DensePoseFCN)
  accept these inputs.
"""
from __future__ import annotations

import random
from typing import List, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from pycocotools import mask as mask_util

from densepose_ext.structures import has_densepose

from .dataset_mapper import DensePoseDatasetMapper
from .densepose_coco import DensePoseDatasetError

__all__ = [
    "PERSON_INDEX_KEY",
    "PersonCropMapper",
    "build_person_crop_train_loader",
    "person_crop_dataset",
    "person_crop_rect",
]

#: dataset-dict key naming the annotation (index into "annotations") a sample is cropped around
PERSON_INDEX_KEY = "person_index"


def person_crop_rect(box_xyxy: Sequence[float], scale: float) -> Tuple[float, ...]:
    """Square (x0, y0, x1, y1) centred on the box, side ``scale`` x its longer side (>= 1)."""
    x0, y0, x1, y1 = (float(c) for c in box_xyxy)
    half = max(x1 - x0, y1 - y0, 1.0) * scale / 2.0
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return (cx - half, cy - half, cx + half, cy + half)


def _is_crop_person(ann: dict) -> bool:
    return not ann.get("iscrowd", 0) and has_densepose(ann)


def person_crop_dataset(dataset_dicts: Sequence[dict]) -> List[dict]:
    """One record per non-crowd DensePose-annotated person (a shallow copy of its image's
    record with ``PERSON_INDEX_KEY`` set)."""
    return [
        dict(d, **{PERSON_INDEX_KEY: k})
        for d in dataset_dicts
        for k, ann in enumerate(d.get("annotations", []))
        if _is_crop_person(ann)
    ]


def _xyxy(ann: dict) -> np.ndarray:
    mode = ann.get("bbox_mode", BoxMode.XYWH_ABS)
    return np.asarray(BoxMode.convert(list(ann["bbox"]), mode, BoxMode.XYXY_ABS), np.float64)


class PersonCropMapper(DensePoseDatasetMapper):
    """:class:`DensePoseDatasetMapper` on a crop around one person (module docstring).

    Training output: as the parent's, for the crop (``instances`` hold the one person; the only
    augmentation is the configured horizontal flip). Inference output: the record's
    file_name, image_id, height, width and ``person_crops``, a list with, per annotated
    person, {"image": uint8 CHW crop, "box": its GT box in the crop (XYXY), "source_box": its
    GT box in the image (XYXY), "annotation_id"}.
    """

    @configurable
    def __init__(self, is_train: bool, *, crop_scale: float = 1.2, crop_size: int = 256,
                 **kwargs):
        """
        Args:
            crop_scale: crop side / the longer side of the person's box; >= 1 so that the box
                stays inside the crop.
            crop_size: side of the resized crop, in pixels.
            kwargs: as :class:`DensePoseDatasetMapper`.
        """
        if crop_scale < 1.0:
            raise ValueError(f"MODEL.DENSEPOSE_FCN.CROP_SCALE must be >= 1, got {crop_scale}")
        if crop_size < 1:
            raise ValueError(f"MODEL.DENSEPOSE_FCN.CROP_SIZE must be >= 1, got {crop_size}")
        super().__init__(is_train, **kwargs)
        self.crop_scale = float(crop_scale)
        self.crop_size = int(crop_size)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        ret = super().from_config(cfg, is_train)
        flip = is_train and cfg.INPUT.RANDOM_FLIP == "horizontal"
        ret["augmentations"] = [T.RandomFlip(horizontal=True, vertical=False)] if flip else []
        ret["crop_scale"] = cfg.MODEL.DENSEPOSE_FCN.CROP_SCALE
        ret["crop_size"] = cfg.MODEL.DENSEPOSE_FCN.CROP_SIZE
        return ret

    def crop_transform(self, box_xyxy: Sequence[float]) -> T.ExtentTransform:
        """The crop of a person with this box, as a detectron2 transform."""
        rect = person_crop_rect(box_xyxy, self.crop_scale)
        return T.ExtentTransform(src_rect=rect, output_size=(self.crop_size, self.crop_size))

    def _select_person(self, dataset_dict: dict) -> dict:
        where = f"{dataset_dict['file_name']} (image id={dataset_dict.get('image_id', '?')})"
        annotations = dataset_dict.get("annotations", [])
        if PERSON_INDEX_KEY in dataset_dict:
            k = dataset_dict[PERSON_INDEX_KEY]
            if not 0 <= k < len(annotations) or annotations[k].get("iscrowd", 0):
                raise DensePoseDatasetError(
                    f"{where}: {PERSON_INDEX_KEY}={k} is not a non-crowd annotation of the "
                    f"image ({len(annotations)} annotations)"
                )
            return annotations[k]
        candidates = [a for a in annotations if _is_crop_person(a)] or [
            a for a in annotations if not a.get("iscrowd", 0)
        ]
        if not candidates:
            raise DensePoseDatasetError(f"{where}: no non-crowd person to crop around")
        return random.choice(candidates)

    def _crop_annotation(self, ann: dict, crop: T.ExtentTransform) -> dict:
        """The annotation in crop coordinates (DensePose fields untouched)."""
        ann = dict(ann)  # values are replaced, never changed in place
        if not self.use_instance_mask:
            ann.pop("segmentation", None)
        if not self.use_keypoint:
            ann.pop("keypoints", None)
        ann = utils.transform_instance_annotations(
            ann, T.TransformList([crop]), (self.crop_size, self.crop_size)
        )
        if isinstance(ann.get("segmentation"), np.ndarray):  # an RLE became a mask: re-encode
            ann["segmentation"] = mask_util.encode(
                np.asfortranarray(ann["segmentation"].astype(np.uint8))
            )
        return ann

    def _read_image(self, dataset_dict: dict) -> np.ndarray:
        """Training: the crop around the selected person; the record's annotations become that
        person's, in crop coordinates (the parent then maps them as usual)."""
        image = super()._read_image(dataset_dict)
        if not self.is_train:
            return image
        ann = self._select_person(dataset_dict)
        crop = self.crop_transform(_xyxy(ann))
        dataset_dict["annotations"] = [self._crop_annotation(ann, crop)]
        dataset_dict["height"] = dataset_dict["width"] = self.crop_size
        return crop.apply_image(image)

    def __call__(self, dataset_dict: dict) -> dict:
        if self.is_train:
            return super().__call__(dataset_dict)
        record = {k: v for k, v in dataset_dict.items() if k != "annotations"}
        image = self._read_image(record)
        crops = []
        for ann in dataset_dict.get("annotations", []):
            if not _is_crop_person(ann):
                continue
            box = _xyxy(ann)
            crop = self.crop_transform(box)
            crop_image = crop.apply_image(image)
            crops.append({
                "image": torch.as_tensor(np.ascontiguousarray(crop_image.transpose(2, 0, 1))),
                "box": crop.apply_box(box[None])[0].astype(np.float32),
                "source_box": box.astype(np.float32),
                "annotation_id": ann.get("id"),
            })
        record["person_crops"] = crops
        return record


def build_person_crop_train_loader(cfg):
    """detectron2 training loader over one sample per annotated person of DATASETS.TRAIN."""
    dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    )
    samples = person_crop_dataset(dicts)
    if not samples:
        raise ValueError(f"no DensePose-annotated person in DATASETS.TRAIN {cfg.DATASETS.TRAIN}")
    return build_detection_train_loader(cfg, dataset=samples, mapper=PersonCropMapper(cfg, True))
