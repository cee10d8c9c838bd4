"""3D-pose classification heads (Rogez & Schmid 2016): the registered ``Pose3DClassROIHeads``
and the class sets of a config's training data (poses and classes: :mod:`densepose_ext.pose3d`)."""
from .class_sets import classes_file_for_cfg, dataset_poses, load_or_build_pose_classes
from .head import ROI_POSE3D_HEAD_REGISTRY, Pose3DClassConvFCHead, build_pose3d_head
from .roi_heads import Pose3DClassROIHeads, PoseClassCodebook, pose3d_proposal_mask

__all__ = [
    "Pose3DClassConvFCHead",
    "Pose3DClassROIHeads",
    "PoseClassCodebook",
    "ROI_POSE3D_HEAD_REGISTRY",
    "build_pose3d_head",
    "classes_file_for_cfg",
    "dataset_poses",
    "load_or_build_pose_classes",
    "pose3d_proposal_mask",
]
