"""Load and validate a DensePose-COCO json into detectron2 dataset dicts.

Every record is checked when the file is loaded, so a bad file fails at once with ONE error
naming the json file, the image id and the annotation id, instead of deep inside training.
Nothing is skipped silently: persons with and without DensePose are counted and logged.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from detectron2.structures import BoxMode

from densepose_ext.structures.densepose_data import DENSE_TARGET_KEY, check_densepose_annotation

__all__ = ["DensePoseDatasetError", "load_densepose_coco_json", "BOX_TOLERANCE", "NUM_KEYPOINTS"]

logger = logging.getLogger(__name__)

#: Boxes may exceed the image by this many pixels (rounding in real annotation files).
BOX_TOLERANCE = 1.0
NUM_KEYPOINTS = 17
PERSON_CATEGORY_ID = 1
_REQUIRED_IMAGE_KEYS = ("id", "file_name", "height", "width")
_REQUIRED_ANN_KEYS = ("id", "image_id", "category_id", "bbox")
# Keys rewritten by the loader; every other annotation key is passed through unchanged.
_CONSUMED_ANN_KEYS = ("bbox", "category_id", "iscrowd")


class DensePoseDatasetError(ValueError):
    """A DensePose-COCO file or record is invalid; the message names the file and record."""


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _read_json(json_file: str) -> dict:
    try:
        with open(json_file, "r", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DensePoseDatasetError(f"{json_file}: annotation file not found") from None
    except json.JSONDecodeError as e:
        raise DensePoseDatasetError(
            f"{json_file}: malformed json at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except UnicodeDecodeError as e:
        raise DensePoseDatasetError(f"{json_file}: not a UTF-8 text file ({e})") from None
    if not isinstance(data, dict):
        raise DensePoseDatasetError(f"{json_file}: top level must be a json object")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DensePoseDatasetError(f"{json_file}: missing or invalid list {key!r}")
    return data


def _check_image(img: Any, json_file: str, index: int) -> None:
    if not isinstance(img, dict):
        raise DensePoseDatasetError(f"{json_file}: images[{index}] is not an object")
    where = f"{json_file}: image id={img.get('id', '?')} (images[{index}])"
    missing = [k for k in _REQUIRED_IMAGE_KEYS if k not in img]
    if missing:
        raise DensePoseDatasetError(f"{where}: missing required key(s) {', '.join(missing)}")
    for key in ("height", "width"):
        if not isinstance(img[key], int) or img[key] <= 0:
            raise DensePoseDatasetError(f"{where}: {key} must be a positive integer")
    if not isinstance(img["file_name"], str) or not img["file_name"]:
        raise DensePoseDatasetError(f"{where}: file_name must be a non-empty string")


def _check_segmentation(segm: Any, img: dict) -> None:
    if isinstance(segm, list):
        for k, poly in enumerate(segm):
            if (
                not isinstance(poly, list)
                or len(poly) < 6
                or len(poly) % 2
                or not all(_is_number(c) for c in poly)
            ):
                raise ValueError(
                    f"segmentation polygon {k} must be a flat list of >= 3 (x, y) number pairs"
                )
    elif isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise ValueError("segmentation RLE must have 'size' and 'counts'")
        if list(segm["size"]) != [img["height"], img["width"]]:
            raise ValueError(
                f"segmentation RLE size {segm['size']} differs from the image size "
                f"{[img['height'], img['width']]}"
            )
    else:
        raise ValueError(f"segmentation must be polygons or RLE, got {type(segm).__name__}")


def _check_annotation(ann: dict, img: dict) -> bool:
    """Validate one annotation against its image; return whether it has DensePose data."""
    missing = [k for k in _REQUIRED_ANN_KEYS if k not in ann]
    if missing:
        raise ValueError(f"missing required key(s) {', '.join(missing)}")
    if ann["category_id"] != PERSON_CATEGORY_ID:
        raise ValueError(
            f"category_id {ann['category_id']!r} is not the person category {PERSON_CATEGORY_ID}"
        )
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(c) for c in bbox):
        raise ValueError(f"bbox must be [x, y, w, h] numbers, got {bbox!r}")
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        raise ValueError(f"bbox {bbox} has non-positive size")
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > img["width"] + t or y + h > img["height"] + t:
        raise ValueError(
            f"bbox {bbox} lies outside the {img['width']}x{img['height']} image"
        )
    if ann.get("iscrowd", 0) not in (0, 1):
        raise ValueError(f"iscrowd must be 0 or 1, got {ann['iscrowd']!r}")
    if "keypoints" in ann:
        kps = ann["keypoints"]
        if not isinstance(kps, list) or len(kps) != 3 * NUM_KEYPOINTS:
            n = len(kps) if isinstance(kps, list) else type(kps).__name__
            raise ValueError(f"keypoints must have {3 * NUM_KEYPOINTS} numbers, got {n}")
        if not all(_is_number(c) for c in kps):
            raise ValueError("keypoints must be numbers")
        vis = kps[2::3]
        if any(v not in (0, 1, 2) for v in vis):
            raise ValueError(f"keypoint visibility must be 0, 1 or 2, got {vis}")
    if "segmentation" in ann:
        _check_segmentation(ann["segmentation"], img)
    return check_densepose_annotation(ann)


def _keypoints_to_continuous(keypoints: List[float]) -> List[float]:
    """COCO keypoints are integer pixel indices; like detectron2's COCO loader, add 0.5 so they
    become continuous coordinates (pixel centres) consistent with boxes and masks."""
    return [v if k % 3 == 2 else v + 0.5 for k, v in enumerate(keypoints)]


def _dense_file(image_root: str, file_name: str) -> Optional[str]:
    """DIR/dense/<stem>.npz beside DIR/images (the embedded renderer's exact IUV), if any."""
    path = Path(image_root).parent / "dense" / (Path(file_name).stem + ".npz")
    return str(path) if path.exists() else None


def _dense_target_path(json_file: str, json_dir: str, ann: dict, check: bool) -> str:
    """Absolute path of an annotation's dense target (relative paths: to the json's dir)."""
    path = os.path.join(json_dir, ann[DENSE_TARGET_KEY])
    if check and not os.path.isfile(path):
        raise DensePoseDatasetError(
            f"{json_file}: annotation id={ann['id']} (image id={ann['image_id']}): "
            f"{DENSE_TARGET_KEY} {path} does not exist"
        )
    return path


def load_densepose_coco_json(
    json_file: Union[str, os.PathLike],
    image_root: Union[str, os.PathLike],
    dataset_name: Optional[str] = None,
    check_images: bool = True,
) -> List[Dict[str, Any]]:
    """Read a DensePose-COCO json into detectron2 dataset dicts, validating every record.

    Args:
        json_file: DensePose-COCO annotation file.
        image_root: directory the images' ``file_name`` are relative to.
        dataset_name: if given, its MetadataCatalog entry gets ``thing_classes`` and the
            json's category id mapping.
        check_images: check that every image file exists (a cheap ``os.path.exists``).

    Returns:
        One dict per image: file_name (absolute), height, width, image_id, optionally
        dense_file, and annotations: bbox (XYWH_ABS), bbox_mode, category_id 0, iscrowd,
        keypoints (+0.5 on x, y as in detectron2's COCO loader), ``dp_dense_file`` (a dense
        IUV target, resolved against the json's directory) and every other key of the record
        unchanged (segmentation, dp_*, id, ...).

    Raises:
        DensePoseDatasetError naming the file, image id and annotation id of the bad record.
    """
    json_file = os.fspath(json_file)
    image_root = os.path.abspath(os.fspath(image_root))
    json_dir = os.path.dirname(os.path.abspath(json_file))
    data = _read_json(json_file)

    images: Dict[Any, dict] = {}
    for index, img in enumerate(data["images"]):
        _check_image(img, json_file, index)
        if img["id"] in images:
            raise DensePoseDatasetError(f"{json_file}: duplicate image id={img['id']}")
        images[img["id"]] = img

    anns_by_image: Dict[Any, List[dict]] = {k: [] for k in images}
    seen_ann_ids = set()
    n_dp = n_plain = 0
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DensePoseDatasetError(f"{json_file}: annotations[{index}] is not an object")
        ann_id = ann.get("id", f"? (annotations[{index}])")
        image_id = ann.get("image_id", "?")
        where = f"{json_file}: annotation id={ann_id} (image id={image_id})"
        if image_id not in images:
            raise DensePoseDatasetError(f"{where}: image_id {image_id!r} is not in 'images'")
        try:
            has_dp = _check_annotation(ann, images[image_id])
        except ValueError as e:
            raise DensePoseDatasetError(f"{where}: {e}") from None
        if ann_id in seen_ann_ids:
            raise DensePoseDatasetError(f"{where}: duplicate annotation id")
        seen_ann_ids.add(ann_id)
        n_dp += has_dp
        n_plain += not has_dp
        anns_by_image[image_id].append(ann)

    # detectron2 builds gt_masks / gt_keypoints per image from the first annotation: require
    # the optional fields to be present on all person annotations or on none.
    for key in ("segmentation", "keypoints"):
        have = [a for a in data["annotations"] if key in a]
        if have and len(have) != len(data["annotations"]):
            ann = next(a for a in data["annotations"] if key not in a)
            raise DensePoseDatasetError(
                f"{json_file}: annotation id={ann['id']} (image id={ann['image_id']}): "
                f"missing {key!r}, which other annotations of this file have"
            )

    dataset_dicts = []
    for image_id, img in images.items():
        file_name = os.path.join(image_root, img["file_name"])
        if check_images and not os.path.exists(file_name):
            raise DensePoseDatasetError(
                f"{json_file}: image id={image_id}: image file {file_name} does not exist"
            )
        record = {
            "file_name": file_name,
            "height": img["height"],
            "width": img["width"],
            "image_id": image_id,
        }
        dense = _dense_file(image_root, img["file_name"])
        if dense is not None:
            record["dense_file"] = dense
        objs = []
        for ann in anns_by_image[image_id]:
            obj = {k: v for k, v in ann.items() if k not in _CONSUMED_ANN_KEYS}
            obj["bbox"] = [float(c) for c in ann["bbox"]]
            obj["bbox_mode"] = BoxMode.XYWH_ABS
            obj["category_id"] = 0
            obj["iscrowd"] = int(ann.get("iscrowd", 0))
            if "keypoints" in ann:
                obj["keypoints"] = _keypoints_to_continuous(ann["keypoints"])
            if DENSE_TARGET_KEY in ann:
                obj[DENSE_TARGET_KEY] = _dense_target_path(json_file, json_dir, ann, check_images)
            objs.append(obj)
        record["annotations"] = objs
        dataset_dicts.append(record)

    logger.info(
        "Loaded %d images, %d persons (%d with DensePose, %d without) from %s",
        len(dataset_dicts), n_dp + n_plain, n_dp, n_plain, json_file,
    )
    if dataset_name is not None:
        from detectron2.data import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        if not hasattr(meta, "thing_classes"):
            meta.thing_classes = ["person"]
        if not hasattr(meta, "thing_dataset_id_to_contiguous_id"):
            meta.thing_dataset_id_to_contiguous_id = {PERSON_CATEGORY_ID: 0}
    return dataset_dicts
