"""3D human pose for pose classification (Rogez & Schmid 2016): 3D joints of annotations and
the normalised pose frame they share with the evaluation, K-means pose classes."""
from .classes import CLASSES_FORMAT_VERSION, PoseClasses, build_pose_classes
from .joints import (
    JOINTS_KEY,
    NUM_JOINTS,
    ROOT_JOINT,
    body_scale,
    canonical_poses,
    joints_from_annotation,
    joints_from_annotations,
    mirror_poses,
    normalize_poses,
)
from .kmeans import KMeansResult, assign_to_centres, kmeans, kmeans_plusplus

__all__ = [
    "CLASSES_FORMAT_VERSION",
    "JOINTS_KEY",
    "KMeansResult",
    "NUM_JOINTS",
    "PoseClasses",
    "ROOT_JOINT",
    "assign_to_centres",
    "body_scale",
    "build_pose_classes",
    "canonical_poses",
    "joints_from_annotation",
    "joints_from_annotations",
    "kmeans",
    "kmeans_plusplus",
    "mirror_poses",
    "normalize_poses",
]
