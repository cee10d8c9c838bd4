"""Drawing DensePose data: IUV overlays, contours, points, masks, keypoints, image grids."""
from .dataset_vis import annotation_mask, dp_points_in_image, draw_dataset_dict, make_grid, read_rgb
from .overlay import (
    draw_iuv,
    draw_keypoints,
    draw_mask_outline,
    draw_points,
    iso_contours,
    part_colors,
)

__all__ = [
    "annotation_mask",
    "dp_points_in_image",
    "draw_dataset_dict",
    "draw_iuv",
    "draw_keypoints",
    "draw_mask_outline",
    "draw_points",
    "iso_contours",
    "make_grid",
    "part_colors",
    "read_rgb",
]
