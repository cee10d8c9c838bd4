"""Pictures of DensePose dataset dicts: one annotated image per record, and a grid of them."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.structures import BoxMode

from ..structures.coco_format import segmentation_to_mask
from .overlay import draw_iuv, draw_keypoints, draw_mask_outline, draw_points, part_colors

__all__ = [
    "LAYERS", "read_rgb", "annotation_mask", "dp_points_in_image", "draw_dataset_dict", "make_grid"
]

MASK_COLOR = (255, 255, 0)
#: What draw_dataset_dict can draw: dense IUV overlay + contours, mask outlines, keypoints,
#: annotated DensePose points.
LAYERS = ("iuv", "masks", "keypoints", "points")


def read_rgb(file_name: str) -> np.ndarray:
    """The image as uint8 RGB; FileNotFoundError naming the file if it cannot be read."""
    bgr = cv2.imread(file_name, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{file_name}: missing or not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def annotation_mask(ann: dict, height: int, width: int) -> Optional[np.ndarray]:
    """(H,W) bool mask of an annotation's ``segmentation`` (polygons or RLE), or None."""
    segm = ann.get("segmentation")
    if not segm:
        return None
    return segmentation_to_mask(segm, height, width)


def dp_points_in_image(ann: dict) -> Tuple[np.ndarray, np.ndarray]:
    """Image positions (P,2) and part labels (P,) of an annotation's DensePose points."""
    if "dp_x" not in ann:
        return np.zeros((0, 2)), np.zeros((0,), dtype=np.int64)
    x0, y0, w, h = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYWH_ABS)
    x = x0 + np.asarray(ann["dp_x"], dtype=np.float64) * w / 256.0
    y = y0 + np.asarray(ann["dp_y"], dtype=np.float64) * h / 256.0
    return np.stack([x, y], axis=1), np.round(np.asarray(ann["dp_I"])).astype(np.int64)


def _scaled(ann: dict, scale: float) -> dict:
    """Copy of the drawable geometry of an annotation with image coordinates scaled."""
    out = dict(ann)
    box = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYWH_ABS)
    out["bbox"] = [c * scale for c in box]
    out["bbox_mode"] = BoxMode.XYWH_ABS
    if "keypoints" in ann:
        kps = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3).copy()
        kps[:, :2] *= scale
        out["keypoints"] = kps
    return out


def draw_dataset_dict(
    record: dict,
    keypoint_names: Optional[Sequence[str]] = None,
    connection_rules: Optional[Sequence] = None,
    max_size: Optional[int] = None,
    point_radius: int = 1,
    show: Sequence[str] = LAYERS,
) -> np.ndarray:
    """One record drawn: dense IUV overlay when ``dense_file`` exists, U/V iso-contours, mask
    outlines, COCO keypoints + skeleton, and the DensePose points coloured by part (they sit
    on a matching colour when the dense overlay is shown, so mismatches stand out).

    ``max_size`` rescales the image (longer side) BEFORE drawing, so lines stay one pixel
    thin and points small whatever the output size. ``show`` picks layers from :data:`LAYERS`.
    """
    unknown = set(show) - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}; choose from {LAYERS}")
    image = read_rgb(record["file_name"])
    height, width = image.shape[:2]
    scale = 1.0 if max_size is None else max_size / max(height, width)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    if scale != 1.0:
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
    colors = part_colors()
    if "iuv" in show and record.get("dense_file"):
        with np.load(record["dense_file"]) as dense:
            iuv = [dense[k] for k in ("I", "U", "V")]
        if scale != 1.0:
            iuv = [cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) for m in iuv]
        image = draw_iuv(image, iuv[0].astype(np.int64), iuv[1], iuv[2])
    annos = record.get("annotations", [])
    for ann in annos if "masks" in show else ():
        mask = annotation_mask(ann, height, width)
        if mask is not None and mask.shape == (height, width):
            if scale != 1.0:
                mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
            image = draw_mask_outline(image, mask, MASK_COLOR)
    annos = [_scaled(ann, scale) for ann in annos]
    if "keypoints" in show and keypoint_names is not None and connection_rules is not None:
        for ann in annos:
            if "keypoints" in ann:
                image = draw_keypoints(image, ann["keypoints"], keypoint_names, connection_rules)
    xy = [dp_points_in_image(ann) for ann in annos] if "points" in show else []
    if xy:
        pts = np.concatenate([p for p, _ in xy])
        labels = np.concatenate([lab for _, lab in xy])
        image = draw_points(image, pts, colors[np.clip(labels, 0, 24)], radius=point_radius)
    return image


def make_grid(
    images: Sequence[np.ndarray],
    cols: int,
    cell_size: Tuple[int, int] = (256, 256),
    titles: Optional[Sequence[str]] = None,
    background: int = 32,
) -> np.ndarray:
    """Tile images into a grid of ``cols`` columns of (cell_h, cell_w) cells; each image is
    scaled to fit its cell (aspect kept, centred). Output: (rows*cell_h, cols*cell_w, 3)."""
    cell_h, cell_w = cell_size
    cols = max(1, min(cols, len(images))) if images else max(1, cols)
    rows = max(1, -(-len(images) // cols))
    grid = np.full((rows * cell_h, cols * cell_w, 3), background, dtype=np.uint8)
    for k, img in enumerate(images):
        scale = min(cell_h / img.shape[0], cell_w / img.shape[1])
        h = max(1, int(round(img.shape[0] * scale)))
        w = max(1, int(round(img.shape[1] * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
        small = cv2.resize(img, (w, h), interpolation=interp)
        r, c = divmod(k, cols)
        y0 = r * cell_h + (cell_h - h) // 2
        x0 = c * cell_w + (cell_w - w) // 2
        grid[y0 : y0 + h, x0 : x0 + w] = small
        if titles is not None:
            cv2.putText(grid, str(titles[k]), (c * cell_w + 3, r * cell_h + 12),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return grid
