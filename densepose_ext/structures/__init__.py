"""DensePose ground-truth structures, their flip transforms and the DensePose-COCO format."""
from .annotation_points import num_annotation_points, sample_annotation_points
from .coco_format import (
    FRAME_SIZE,
    NUM_COARSE_PARTS,
    NUM_FINE_PARTS,
    decode_dp_masks,
    decode_iuv_png,
    encode_dp_masks,
    encode_iuv_png,
    mask_to_polygons,
    segmentation_to_mask,
)
from .densepose_data import (
    DENSE_TARGET_KEY,
    DP_KEYS,
    DP_POINT_KEYS,
    DenseIUV,
    DensePoseData,
    DensePoseList,
    check_densepose_annotation,
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
    "NUM_COARSE_PARTS",
    "NUM_FINE_PARTS",
    "DenseIUV",
    "DensePoseData",
    "DensePoseList",
    "DensePoseTransformData",
    "DensePoseTransformDataError",
    "check_densepose_annotation",
    "decode_dp_masks",
    "decode_iuv_png",
    "encode_dp_masks",
    "encode_iuv_png",
    "has_densepose",
    "mask_to_polygons",
    "num_annotation_points",
    "sample_annotation_points",
    "segmentation_to_mask",
]

from .chart_output import DensePoseChartOutput  # noqa: E402

__all__ += ["DensePoseChartOutput"]
