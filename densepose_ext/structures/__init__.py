"""DensePose ground-truth structures and their flip transforms."""
from .annotation_points import num_annotation_points, sample_annotation_points
from .coco_polygons import mask_to_polygons
from .densepose_data import (
    DENSE_TARGET_KEY,
    DP_KEYS,
    DP_POINT_KEYS,
    FRAME_SIZE,
    DenseIUV,
    DensePoseData,
    DensePoseList,
    check_densepose_annotation,
    decode_dp_masks,
    encode_dp_masks,
    has_densepose,
)
from .transform_data import (
    COARSE_PART_HFLIP,
    FINE_PART_HFLIP,
    DensePoseTransformData,
    DensePoseTransformDataError,
)

__all__ = [
    "COARSE_PART_HFLIP",
    "DENSE_TARGET_KEY",
    "DP_KEYS",
    "DP_POINT_KEYS",
    "FINE_PART_HFLIP",
    "FRAME_SIZE",
    "DenseIUV",
    "DensePoseData",
    "DensePoseList",
    "DensePoseTransformData",
    "DensePoseTransformDataError",
    "check_densepose_annotation",
    "decode_dp_masks",
    "encode_dp_masks",
    "has_densepose",
    "mask_to_polygons",
    "num_annotation_points",
    "sample_annotation_points",
]

from .chart_output import DensePoseChartOutput  # noqa: E402

__all__ += ["DensePoseChartOutput"]
