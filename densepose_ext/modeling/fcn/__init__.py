"""Fully convolutional DensePose baseline: the ``DensePoseFCN`` meta-architecture (registered in
detectron2's META_ARCH_REGISTRY at import), its head, losses, instance extraction,
multi-scale / flip testing and single-person (crop) inference."""
from .crop_inference import person_crop_inference
from .head import DensePoseFCNHead
from .instances import crop_maps_to_boxes, person_components
from .losses import DensePoseFCNLoss, paste_box_frame_masks, person_segmentation_target
from .meta_arch import DensePoseFCN
from .multiscale import flip_back, merge_predictions, resize_maps, to_log_probs

__all__ = [
    "DensePoseFCN",
    "DensePoseFCNHead",
    "DensePoseFCNLoss",
    "crop_maps_to_boxes",
    "flip_back",
    "merge_predictions",
    "paste_box_frame_masks",
    "person_components",
    "person_crop_inference",
    "person_segmentation_target",
    "resize_maps",
    "to_log_probs",
]
