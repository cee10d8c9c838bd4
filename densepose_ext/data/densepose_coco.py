"""Load and validate a DensePose-COCO json into detectron2 dataset dicts.

Every record is checked when the file is loaded, so a bad file fails at once with ONE error
naming the json file, the image id, the annotation id, the field and its value, instead of
deep inside training: ids (int or str), sizes, boxes, keypoints, segmentation (polygons or
RLE), the ``dp_*`` fields (numbers, not numeric strings; 14 coarse masks, each [] or a valid
256x256 RLE), and every image file: it lies inside the image root, its header decodes, a JPEG
ends with its end-of-image marker (PNG: IEND), and its size is the json's ``height`` x
``width``. Header results are cached per image by file size and mtime under
``<cache dir>/dataset_checks/`` (see :func:`densepose_ext.utils.cache_dir`), so a second load
opens no image.

Bad records can be dropped instead (``skip_invalid=True``, or ``DENSEPOSE_SKIP_INVALID=1`` in
the environment for datasets loaded through the DatasetCatalog): every image with a bad record
is left out, the count is logged as a warning and the list (json, image id, annotation id,
error) written to ``<cache dir>/dataset_checks/<json stem>-<key>.dropped.json``. Nothing is
skipped silently: persons with and without DensePose are counted and logged.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from densepose_ext.structures.densepose_data import (DENSE_TARGET_KEY, check_densepose_annotation,
                                                     check_rle, compressed_rle_errors,
                                                     has_densepose)
from densepose_ext.utils import atomic_write, cache_dir

__all__ = [
    "DensePoseDatasetError",
    "load_densepose_coco_json",
    "read_image_header",
    "skip_invalid_from_env",
    "BOX_TOLERANCE",
    "NUM_KEYPOINTS",
    "MANY_ANNOTATIONS",
    "SKIP_INVALID_ENV",
]

logger = logging.getLogger(__name__)

#: Boxes may exceed the image by this many pixels (rounding in real annotation files).
BOX_TOLERANCE = 1.0
NUM_KEYPOINTS = 17
PERSON_CATEGORY_ID = 1
#: An image with more annotations than this is reported at load (slow to sample every time).
MANY_ANNOTATIONS = 1000
#: Environment variable: "1" drops bad records (logged and listed) instead of failing.
SKIP_INVALID_ENV = "DENSEPOSE_SKIP_INVALID"
_REQUIRED_IMAGE_KEYS = ("id", "file_name", "height", "width")
_REQUIRED_ANN_KEYS = ("id", "image_id", "category_id", "bbox")
# Keys rewritten by the loader; every other annotation key is passed through unchanged.
_CONSUMED_ANN_KEYS = ("bbox", "category_id", "iscrowd")
_CHECKS_SUBDIR = "dataset_checks"
_HEADER_CACHE_VERSION = 1
#: Bump when the record checks change: a json validated by older checks is validated again.
_RECORD_CHECKS_VERSION = 1


class DensePoseDatasetError(ValueError):
    """A DensePose-COCO file or record is invalid; the message names the file and record."""


def skip_invalid_from_env() -> bool:
    """Whether ``$DENSEPOSE_SKIP_INVALID`` asks to drop bad records ("1", "true", "yes")."""
    return os.environ.get(SKIP_INVALID_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_id(x: Any) -> bool:
    """Ids are ints or strings (hashable, json-stable), never lists, dicts, floats or bools."""
    return _is_int(x) or isinstance(x, str)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _id_text(x: Any) -> str:
    """An id for messages: ints and strings as written, anything else as a short repr."""
    return str(x) if _is_id(x) else _short(x, 40)


def _read_json(json_file: str, images_only: bool = False) -> dict:
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
    for key in ("images",) if images_only else ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DensePoseDatasetError(f"{json_file}: missing or invalid list {key!r}")
    if images_only:  # an image-info file (COCO's test and unlabeled splits): images alone
        data["annotations"] = []
    return data


def _inside(image_root: str, file_name: str) -> Optional[str]:
    """The normalised path of ``file_name`` under ``image_root``, or None if it leaves it
    (an absolute path, or ``..`` components climbing out)."""
    if os.path.isabs(file_name):
        return None
    path = os.path.normpath(os.path.join(image_root, file_name))
    return path if path.startswith(os.path.join(image_root, "")) else None


def _check_image(img: Any, image_root: str) -> None:
    """Validate one image entry (keys, types, path inside the root); raise ValueError."""
    if not isinstance(img, dict):
        raise ValueError(f"not an object: {_short(img)}")
    missing = [k for k in _REQUIRED_IMAGE_KEYS if k not in img]
    if missing:
        raise ValueError(f"missing required key(s) {', '.join(missing)}")
    if not _is_id(img["id"]):
        raise ValueError(f"id must be an int or a string, got {type(img['id']).__name__} "
                         f"{_short(img['id'])}")
    for key in ("height", "width"):
        if not _is_int(img[key]) or img[key] <= 0:
            raise ValueError(f"{key} must be a positive integer, got {_short(img[key])}")
    name = img["file_name"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"file_name must be a non-empty string, got {_short(name)}")
    if _inside(image_root, name) is None:
        raise ValueError(f"file_name {name!r} lies outside the image root {image_root}")


def _check_segmentation(segm: Any, img: dict, pending: Optional[list] = None) -> None:
    if isinstance(segm, list):
        for k, poly in enumerate(segm):
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                raise ValueError(
                    f"segmentation polygon {k} must be a flat list of >= 3 (x, y) number pairs, "
                    f"got {_short(poly)}"
                )
        # all coordinates at once: numbers only (a string, None or nested list changes dtype)
        coords = np.asarray([c for poly in segm for c in poly]) if segm else np.zeros(0)
        if coords.dtype.kind not in "iuf" or coords.ndim != 1 or not np.isfinite(coords).all():
            k, poly = next((k, p) for k, p in enumerate(segm) if not all(_is_number(c) for c in p))
            c = next(c for c in poly if not _is_number(c))
            raise ValueError(f"segmentation polygon {k} must hold finite numbers, got "
                             f"{type(c).__name__} {_short(c)}")
    elif isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise ValueError("segmentation RLE must have 'size' and 'counts'")
        try:
            check_rle([("segmentation", segm)], img["height"], img["width"], pending)
        except ValueError as e:
            if "must be" in str(e) and "size" in str(e) and isinstance(segm["size"], list):
                raise ValueError(
                    f"segmentation RLE size {segm['size']} differs from the image size "
                    f"{[img['height'], img['width']]} ({e})"
                ) from None
            raise
    else:
        raise ValueError(f"segmentation must be polygons or RLE, got {type(segm).__name__}")


def _check_annotation(ann: dict, img: dict, pending: Optional[list] = None) -> bool:
    """Validate one annotation against its image; return whether it has DensePose data.
    Compressed RLE strings are appended to ``pending`` (checked together) if it is given."""
    missing = [k for k in _REQUIRED_ANN_KEYS if k not in ann]
    if missing:
        raise ValueError(f"missing required key(s) {', '.join(missing)}")
    if ann["category_id"] != PERSON_CATEGORY_ID:
        raise ValueError(
            f"category_id {_short(ann['category_id'])} is not the person category "
            f"{PERSON_CATEGORY_ID}"
        )
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(c) for c in bbox):
        raise ValueError(f"bbox must be [x, y, w, h] numbers, got {_short(bbox)}")
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        raise ValueError(f"bbox {bbox} has non-positive size")
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > img["width"] + t or y + h > img["height"] + t:
        raise ValueError(
            f"bbox {bbox} lies outside the {img['width']}x{img['height']} image"
        )
    iscrowd = ann.get("iscrowd", 0)
    if isinstance(iscrowd, bool) or not _is_number(iscrowd) or iscrowd not in (0, 1):
        raise ValueError(f"iscrowd must be 0 or 1, got {_short(ann['iscrowd'])}")
    if "keypoints" in ann:
        kps = ann["keypoints"]
        if not isinstance(kps, list) or len(kps) != 3 * NUM_KEYPOINTS:
            n = len(kps) if isinstance(kps, list) else type(kps).__name__
            raise ValueError(f"keypoints must have {3 * NUM_KEYPOINTS} numbers, got {n}")
        bad = next((k for k, c in enumerate(kps) if not _is_number(c)), None)
        if bad is not None:
            raise ValueError(f"keypoints must be numbers: keypoints[{bad}] is "
                             f"{type(kps[bad]).__name__} {_short(kps[bad])}")
        vis = kps[2::3]
        if any(v not in (0, 1, 2) for v in vis):
            raise ValueError(f"keypoint visibility must be 0, 1 or 2, got {vis}")
    if "segmentation" in ann:
        _check_segmentation(ann["segmentation"], img, pending)
    return check_densepose_annotation(ann, pending)


# ------------------------------------------------------------------------- image headers
def read_image_header(path: str) -> Tuple[int, int]:
    """(width, height) of an image file from its header alone, cheaply checked for damage.

    Raises ValueError if the file is missing, empty, not a decodable image header, or cut
    short (a JPEG without its end-of-image marker FFD9 near the end, a PNG without IEND).
    Bit flips inside compressed pixel data are not detected (that needs a full decode).
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ValueError(f"image file {path} does not exist") from None
    except OSError as e:
        raise ValueError(f"image file {path} cannot be read ({e})") from None
    if size == 0:
        raise ValueError(f"image file {path} is empty (0 bytes)")
    try:
        with open(path, "rb") as f:
            with Image.open(f) as im:
                (width, height), fmt = im.size, im.format
            f.seek(max(0, size - 64))
            tail = f.read()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = "no known image format" if isinstance(e, Image.UnidentifiedImageError) else e
        raise ValueError(f"image file {path} is not a readable image ({reason})") from None
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        raise ValueError(f"image file {path} is a truncated JPEG (no end-of-image marker)")
    if fmt == "PNG" and b"IEND" not in tail:
        raise ValueError(f"image file {path} is a truncated PNG (no IEND chunk)")
    return int(width), int(height)


def _checks_path(json_file: str, image_root: str, suffix: str) -> Path:
    key = hashlib.sha1(f"{os.path.abspath(json_file)}\0{image_root}".encode()).hexdigest()[:12]
    return cache_dir() / _CHECKS_SUBDIR / f"{Path(json_file).stem}-{key}{suffix}"


class _HeaderCache:
    """Header results of one (json, image root), keyed by file name; an entry counts only
    while the file's size and mtime are unchanged. Only good results are stored."""

    def __init__(self, json_file: str, image_root: str):
        self.entries: Dict[str, list] = {}
        self.records_ok: Optional[list] = None  # [json size, mtime_ns, checks version]
        self.dirty = False
        try:
            self.path: Optional[Path] = _checks_path(json_file, image_root, ".headers.json")
        except OSError as e:  # no writable cache dir: check every time
            logger.debug("No image header cache for %s: %s", json_file, e)
            self.path = None
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == _HEADER_CACHE_VERSION and data.get("image_root") == image_root:
                self.entries = dict(data["images"])
                self.records_ok = data.get("records_ok")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # absent or damaged: rebuilt

    @staticmethod
    def _json_stamp(json_file: str) -> list:
        st = os.stat(json_file)
        return [st.st_size, st.st_mtime_ns, _RECORD_CHECKS_VERSION]

    def records_checked(self, json_file: str) -> bool:
        """Whether this very json (size, mtime) passed the current record checks before."""
        return self.records_ok == self._json_stamp(json_file)

    def mark_records_checked(self, json_file: str) -> None:
        stamp = self._json_stamp(json_file)
        if self.records_ok != stamp:
            self.records_ok, self.dirty = stamp, True

    def size(self, name: str, path: str) -> Tuple[int, int]:
        """(width, height) of the image ``name`` at ``path`` (from the cache if current)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ValueError(f"image file {path} does not exist") from None
        except OSError as e:
            raise ValueError(f"image file {path} cannot be read ({e})") from None
        entry = self.entries.get(name)
        if isinstance(entry, list) and entry[:2] == [st.st_size, st.st_mtime_ns]:
            return entry[2], entry[3]
        width, height = read_image_header(path)
        self.entries[name] = [st.st_size, st.st_mtime_ns, width, height]
        self.dirty = True
        return width, height

    def save(self, image_root: str) -> None:
        if not self.dirty or self.path is None:
            return

        try:
            with atomic_write(self.path, "w") as f:
                json.dump({"version": _HEADER_CACHE_VERSION, "image_root": image_root,
                           "records_ok": self.records_ok, "images": self.entries}, f)
        except OSError as e:
            logger.warning("Cannot write the image header cache %s: %s", self.path, e)


# ------------------------------------------------------------------------- bad records
class _Problems:
    """Bad records of one json: raised at once, or (skip_invalid) collected and dropped."""

    def __init__(self, json_file: str, skip: bool):
        self.json_file, self.skip = json_file, skip
        self.dropped_images: set = set()
        self.records: List[dict] = []

    def __call__(self, message: str, image_id: Any = None, ann_id: Any = None,
                 where: Optional[str] = None) -> None:
        if where is None:
            if ann_id is not None:
                where = f"annotation id={_id_text(ann_id)} (image id={_id_text(image_id)})"
            else:
                where = f"image id={_id_text(image_id)}"
        if not self.skip:
            raise DensePoseDatasetError(f"{self.json_file}: {where}: {message}")
        if _is_id(image_id):
            self.dropped_images.add(image_id)
        self.records.append({"image_id": image_id if _is_id(image_id) else _id_text(image_id),
                             "annotation_id": ann_id if ann_id is None or _is_id(ann_id)
                             else _id_text(ann_id),
                             "where": where, "error": message})

    def report(self, image_root: str, num_images: int) -> None:
        """Log the count and write the list of dropped records (skip_invalid only)."""
        if not self.records:
            return
        path = _checks_path(self.json_file, image_root, ".dropped.json")

        with atomic_write(path, "w") as f:
            json.dump({"json_file": os.path.abspath(self.json_file), "image_root": image_root,
                       "dropped_images": len(self.dropped_images), "kept_images": num_images,
                       "problems": self.records}, f, indent=1, default=str)
        logger.warning(
            "%s: dropped %d image(s) with %d invalid record(s) (%s); kept %d images. "
            "List: %s", self.json_file, len(self.dropped_images), len(self.records),
            SKIP_INVALID_ENV if skip_invalid_from_env() else "skip_invalid", num_images, path,
        )


def _keypoints_to_continuous(keypoints: List[float]) -> List[float]:
    """COCO keypoints are integer pixel indices; like detectron2's COCO loader, add 0.5 so they
    become continuous coordinates (pixel centres) consistent with boxes and masks."""
    return [v if k % 3 == 2 else v + 0.5 for k, v in enumerate(keypoints)]


def _dense_file(image_root: str, file_name: str) -> Optional[str]:
    """DIR/dense/<stem>.npz beside DIR/images (the embedded renderer's exact IUV), if any."""
    path = Path(image_root).parent / "dense" / (Path(file_name).stem + ".npz")
    return str(path) if path.exists() else None


def load_densepose_coco_json(
    json_file: Union[str, os.PathLike],
    image_root: Union[str, os.PathLike],
    dataset_name: Optional[str] = None,
    check_images: bool = True,
    skip_invalid: Optional[bool] = None,
    images_only: bool = False,
) -> List[Dict[str, Any]]:
    """Read a DensePose-COCO json into detectron2 dataset dicts, validating every record.

    Args:
        json_file: DensePose-COCO annotation file.
        image_root: directory the images' ``file_name`` are relative to (they must stay
            inside it).
        dataset_name: if given, its MetadataCatalog entry gets ``thing_classes`` and the
            json's category id mapping.
        check_images: check every image file: it exists, its header decodes, it is not cut
            short, its size is the json's (cached by file size + mtime); False defers all
            image checks to the mapper.
        skip_invalid: drop images with a bad record instead of raising (logged with a count,
            the list written to the cache dir); None: ``$DENSEPOSE_SKIP_INVALID``.
        images_only: read the images alone (a COCO image-info file, whose "annotations" may
            be missing; any there are ignored): every dict has an empty annotation list.

    Returns:
        One dict per image: file_name (absolute), height, width, image_id, optionally
        dense_file, and annotations: bbox (XYWH_ABS), bbox_mode, category_id 0, iscrowd,
        keypoints (+0.5 on x, y as in detectron2's COCO loader), ``dp_dense_file`` (a dense
        IUV target, resolved against the json's directory) and every other key of the record
        unchanged (segmentation, dp_*, id, ...).

    Raises:
        DensePoseDatasetError naming the file, image id, annotation id, field and value of
        the bad record.
    """
    json_file = os.fspath(json_file)
    image_root = os.path.normpath(os.path.abspath(os.fspath(image_root)))
    json_dir = os.path.dirname(os.path.abspath(json_file))
    skip = skip_invalid_from_env() if skip_invalid is None else bool(skip_invalid)
    data = _read_json(json_file, images_only)
    problem = _Problems(json_file, skip)
    cache = _HeaderCache(json_file, image_root)
    # an unchanged json that passed every record check before is not checked field by field
    trusted = cache.records_checked(json_file)

    images: Dict[Any, dict] = {}
    for index, img in enumerate(data["images"]):
        image_id = img.get("id", "?") if isinstance(img, dict) else "?"
        where = f"image id={_id_text(image_id)} (images[{index}])"
        try:
            _check_image(img, image_root)
        except ValueError as e:
            problem(str(e), image_id, where=where)
            continue
        if image_id in images:
            problem("duplicate image id", image_id, where=where)
            continue
        images[image_id] = img

    anns_by_image: Dict[Any, List[dict]] = {k: [] for k in images}
    seen_ann_ids = set()
    pending: list = []  # compressed RLE strings, decoded together below
    pending_owner: List[Tuple[Any, Any]] = []  # (image id, annotation id) of each
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            problem(f"not an object: {_short(ann)}", where=f"annotations[{index}]")
            continue
        ann_id = ann.get("id", f"? (annotations[{index}])")
        image_id = ann.get("image_id", "?")
        if not _is_id(ann_id) or not _is_id(image_id):
            field, value = ("id", ann_id) if not _is_id(ann_id) else ("image_id", image_id)
            problem(f"{field} must be an int or a string, got {type(value).__name__} "
                    f"{_short(value)}", image_id, ann_id,
                    where=f"annotation id={_id_text(ann_id)} (annotations[{index}], "
                          f"image id={_id_text(image_id)})")
            continue
        if image_id in problem.dropped_images:
            continue  # its image is dropped already (skip_invalid)
        if image_id not in images:
            problem(f"image_id {image_id!r} is not in 'images'", image_id, ann_id)
            continue
        n_pending = len(pending)
        try:
            if not trusted:
                _check_annotation(ann, images[image_id], pending)
        except ValueError as e:
            del pending[n_pending:]
            problem(str(e), image_id, ann_id)
            continue
        pending_owner.extend([(image_id, ann_id)] * (len(pending) - n_pending))
        if ann_id in seen_ann_ids:
            problem("duplicate annotation id", image_id, ann_id)
            continue
        seen_ann_ids.add(ann_id)
        anns_by_image[image_id].append(ann)

    for (image_id, ann_id), error in zip(pending_owner, compressed_rle_errors(pending)):
        if error is not None and image_id not in problem.dropped_images:
            problem(error, image_id, ann_id)

    def kept() -> List[Any]:
        return [i for i in images if i not in problem.dropped_images]

    # detectron2 builds gt_masks / gt_keypoints per image from the first annotation: require
    # the optional fields to be present on all person annotations or on none.
    for key in ("segmentation", "keypoints"):
        anns = [a for i in kept() for a in anns_by_image[i]]
        have = sum(key in a for a in anns)
        if have and have != len(anns):
            for ann in (a for a in anns if key not in a):
                problem(f"missing {key!r}, which other annotations of this file have",
                        ann["image_id"], ann["id"])

    if not problem.records:
        cache.mark_records_checked(json_file)
    if check_images:
        for image_id in kept():
            img = images[image_id]
            path = os.path.join(image_root, img["file_name"])
            try:
                width, height = cache.size(img["file_name"], path)
            except ValueError as e:
                problem(str(e), image_id)
                continue
            if (width, height) != (img["width"], img["height"]):
                problem(f"image file {path} is {width}x{height} (width x height), the json says "
                        f"width={img['width']}, height={img['height']}", image_id)
    cache.save(image_root)

    dataset_dicts = []
    n_dp = n_plain = 0
    for image_id in kept():
        img, anns = images[image_id], anns_by_image[image_id]
        if check_images and any(DENSE_TARGET_KEY in a for a in anns):
            missing = [a for a in anns if DENSE_TARGET_KEY in a and not os.path.isfile(
                os.path.join(json_dir, a[DENSE_TARGET_KEY]))]
            if missing:
                a = missing[0]
                problem(f"{DENSE_TARGET_KEY} {os.path.join(json_dir, a[DENSE_TARGET_KEY])} "
                        "does not exist", image_id, a["id"])
                continue
        if len(anns) > MANY_ANNOTATIONS:
            logger.warning(
                "%s: image id=%s has %d annotations (more than %d): every time it is sampled "
                "all of them are decoded, which is slow; consider splitting or thinning it",
                json_file, _id_text(image_id), len(anns), MANY_ANNOTATIONS,
            )
        record = {
            "file_name": os.path.join(image_root, img["file_name"]),
            "height": img["height"],
            "width": img["width"],
            "image_id": image_id,
        }
        dense = _dense_file(image_root, img["file_name"])
        if dense is not None:
            record["dense_file"] = dense
        objs = []
        for ann in anns:
            obj = {k: v for k, v in ann.items() if k not in _CONSUMED_ANN_KEYS}
            obj["bbox"] = [float(c) for c in ann["bbox"]]
            obj["bbox_mode"] = BoxMode.XYWH_ABS
            obj["category_id"] = 0
            obj["iscrowd"] = int(ann.get("iscrowd", 0))
            if "keypoints" in ann:
                obj["keypoints"] = _keypoints_to_continuous(ann["keypoints"])
            if DENSE_TARGET_KEY in ann:
                obj[DENSE_TARGET_KEY] = os.path.join(json_dir, ann[DENSE_TARGET_KEY])
            has_dp = has_densepose(ann)
            n_dp += has_dp
            n_plain += not has_dp
            objs.append(obj)
        record["annotations"] = objs
        dataset_dicts.append(record)

    problem.report(image_root, len(dataset_dicts))
    if problem.records and not dataset_dicts:
        raise DensePoseDatasetError(
            f"{json_file}: every image has an invalid record; nothing is left to load "
            f"(first: {problem.records[0]['where']}: {problem.records[0]['error']})"
        )
    logger.info(
        "Loaded %d images, %d persons (%d with DensePose, %d without) from %s",
        len(dataset_dicts), n_dp + n_plain, n_dp, n_plain, json_file,
    )
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        if not hasattr(meta, "thing_classes"):
            meta.thing_classes = ["person"]
        if not hasattr(meta, "thing_dataset_id_to_contiguous_id"):
            meta.thing_dataset_id_to_contiguous_id = {PERSON_CATEGORY_ID: 0}
    return dataset_dicts
