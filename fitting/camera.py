"""The camera the fit assumes when all it knows of an image is its size.

Keypoint annotations and keypoint detectors give no intrinsics, so the fit takes a pinhole camera
at the origin looking along +z (OpenCV axes: x right, y down), its principal point at the image
centre and a fixed field of view: the focal length is a function of the image size only,
``f = 0.5 * max(W, H) / tan(0.5 * ASSUMED_FOV_DEG)``.

Why 50 degrees across the longer side: it is the middle of what photographs of people usually
span (a normal to slightly wide lens), and the middle of the embedded renderer's cameras, whose
horizontal field of view is drawn uniformly from 35 to 65 degrees around a principal point at
most 3 % of the width off centre (:func:`synthesis.scene.sample_scene`): f = 1.07 W, where the
rendered cameras have 0.79 W to 1.59 W. A wrong focal length mostly trades depth against body
size; the projected body, and so its IUV, changes little.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from synthesis.rasterize import Camera

__all__ = ["ASSUMED_FOV_DEG", "assumed_focal_length", "assumed_camera", "project"]

#: field of view (degrees) the assumed camera spans across the longer image side
ASSUMED_FOV_DEG = 50.0


def assumed_focal_length(width: int, height: int) -> float:
    """Focal length in pixels of the assumed camera for a ``width`` x ``height`` image."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return 0.5 * max(width, height) / math.tan(0.5 * math.radians(ASSUMED_FOV_DEG))


def assumed_camera(width: int, height: int) -> Camera:
    """The assumed camera of a ``width`` x ``height`` image (world frame = camera frame)."""
    f = assumed_focal_length(width, height)
    K = np.array([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])
    return Camera(K=K, R=np.eye(3), t=np.zeros(3), width=int(width), height=int(height))


def project(points: torch.Tensor, focal: torch.Tensor, center: torch.Tensor,
            min_depth: float = 0.05) -> torch.Tensor:
    """Continuous pixel positions (B, K, 2) of camera-frame points (B, K, 3) seen by pinhole
    cameras with focal lengths (B,) and principal points (B, 2). Depths are clamped to
    ``min_depth`` so a body that strays behind the camera keeps finite gradients."""
    z = points[..., 2:].clamp_min(min_depth)
    return focal[:, None, None] * points[..., :2] / z + center[:, None, :]
