"""3D-pose classification (Rogez & Schmid 2016): K-means pose classes, the registered
``Pose3DClassROIHeads`` and the normalised pose frame they share with the evaluation."""
from .classes import (
    PoseClasses,
    build_pose_classes,
    classes_file_for_cfg,
    dataset_poses,
    load_or_build_pose_classes,
)
from .head import ROI_POSE3D_HEAD_REGISTRY, Pose3DClassConvFCHead, build_pose3d_head
from .joints import (
    JOINTS_KEY,
    ROOT_JOINT,
    body_scale,
    canonical_poses,
    joints_from_annotation,
    joints_from_annotations,
    mirror_poses,
    normalize_poses,
)
from .kmeans import KMeansResult, assign_to_centres, kmeans, kmeans_plusplus
from .roi_heads import Pose3DClassROIHeads, PoseClassCodebook, pose3d_proposal_mask

__all__ = [
    "JOINTS_KEY",
    "KMeansResult",
    "Pose3DClassConvFCHead",
    "Pose3DClassROIHeads",
    "PoseClassCodebook",
    "PoseClasses",
    "ROI_POSE3D_HEAD_REGISTRY",
    "ROOT_JOINT",
    "assign_to_centres",
    "body_scale",
    "build_pose3d_head",
    "build_pose_classes",
    "canonical_poses",
    "classes_file_for_cfg",
    "dataset_poses",
    "joints_from_annotation",
    "joints_from_annotations",
    "kmeans",
    "kmeans_plusplus",
    "load_or_build_pose_classes",
    "mirror_poses",
    "normalize_poses",
    "pose3d_proposal_mask",
]
