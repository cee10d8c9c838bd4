"""Fit SMPL bodies to 2D keypoints: all persons of a batch at once, in two stages.

For each person the fit minimises, over global orientation, body pose, shape and translation
(camera frame of the assumed camera, :mod:`fitting.camera`),

    sum_k w_k rho(|proj(X_k) - x_k| / s)  +  lambda_pose(t) * prior(pose)
        + lambda_range * range(pose)  +  lambda_shape * |betas / std|^2

with x_k the 17 COCO keypoints, w_k their visibility / confidence weights, s the person's size
in pixels (residuals are fractions of the person, so near and far people weigh alike) and rho
the Geman-McClure function of scale ``sigma`` (a wrong keypoint costs at most ``sigma^2``).

Stage 1 (rigid): the body is held in the prior's mean pose and only its orientation and
translation move, fitted to the torso and face keypoints (all keypoints for a person with fewer
than three of those) from ``hypotheses`` starting yaws
(the front / back ambiguity of a 2D skeleton is the usual trap); depth starts from the ratio of
3D to 2D torso lengths (or the box height). Stage 2: from the best start of each person, every
parameter moves, the pose prior's weight decaying geometrically (carrying two or four starts
into this stage changed nothing measurable on the recovery test, at twice or four times the
cost). Adam updates each person's parameters from its own loss only, so a person's fit
does not depend on the others of its batch. Nothing is random except the starting yaws, drawn
from ``seed``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch
from smplx.lbs import batch_rodrigues

from densepose_ext.body.keypoints import COCO_KEYPOINT_NAMES
from densepose_ext.utils import torch_single_thread

from .body import KeypointBody
from .camera import project
from .prior import PosePrior, shape_penalty

__all__ = ["FitSettings", "FitResult", "BodyFitter"]

_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
_RIGID = COCO_KEYPOINT_NAMES[:5] + _TORSO
#: shoulder-hip pairs whose 3D / 2D length ratio gives the starting depth
_DEPTH_PAIRS = (("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
                ("left_shoulder", "right_hip"), ("right_shoulder", "left_hip"))
#: height (m) a person's box stands for when no torso pair is labelled
_BOX_HEIGHT_M = 1.6


@dataclass(frozen=True)
class FitSettings:
    """Numbers of the fit (all recorded with its results)."""

    iters: int = 200  # stage 2: every parameter
    rigid_iters: int = 80  # stage 1: orientation and translation
    hypotheses: int = 8  # starting yaws per person
    lr: float = 0.03
    rigid_lr: float = 0.05
    sigma: float = 0.2  # robust scale, fraction of the person's size
    pose_weight_start: float = 1e-2
    pose_weight_end: float = 1e-5
    range_weight: float = 1.0
    shape_weight: float = 1e-5

    def check(self) -> "FitSettings":
        problems = [f"{k} must be >= 1, got {v}" for k, v in
                    (("iters", self.iters), ("hypotheses", self.hypotheses)) if v < 1]
        problems += [f"rigid_iters must be >= 0, got {self.rigid_iters}"] \
            if self.rigid_iters < 0 else []
        if problems:
            raise ValueError("fit settings: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """Fitted parameters and fit quality per person (numpy, float64, camera frame)."""

    betas: np.ndarray  # (P, 10)
    body_pose: np.ndarray  # (P, 69)
    global_orient: np.ndarray  # (P, 3)
    transl: np.ndarray  # (P, 3)
    keypoints_3d: np.ndarray  # (P, 17, 3)
    joints: np.ndarray  # (P, 24, 3) SMPL joints
    loss: np.ndarray  # (P,) final objective
    reprojection_px: np.ndarray  # (P,) weighted RMS keypoint error in pixels
    reprojection_rel: np.ndarray  # (P,) the same, as a fraction of the person's size

    def __len__(self) -> int:
        return len(self.loss)

    def person(self, k: int) -> Dict[str, list]:
        """SMPL parameters of person ``k`` as lists (json)."""
        return {"betas": self.betas[k].tolist(), "body_pose": self.body_pose[k].tolist(),
                "global_orient": self.global_orient[k].tolist(),
                "transl": self.transl[k].tolist()}


def _axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    return batch_rodrigues(v.reshape(-1, 3)).reshape(*v.shape[:-1], 3, 3)


def _matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """(B,3,3) rotations -> (B,3) axis-angle (numerically safe away from 180 degrees)."""
    from scipy.spatial.transform import Rotation

    return torch.as_tensor(Rotation.from_matrix(m.detach().cpu().numpy()).as_rotvec(),
                           dtype=m.dtype)


def _gmof(sq: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure of squared residuals: ~sq near 0, at most sigma^2."""
    s2 = sigma * sigma
    return s2 * sq / (s2 + sq)


class BodyFitter:
    """Fits bodies to keypoints with a pose prior (see the module docstring).

    Args:
        prior: the pose prior (learnt from training poses).
        settings: :class:`FitSettings`.
        body: a :class:`KeypointBody` (one is built when None).
    """

    def __init__(self, prior: PosePrior, settings: FitSettings = FitSettings(),
                 body: Optional[KeypointBody] = None):
        self.prior = prior
        self.settings = settings.check()
        self.body = body if body is not None else KeypointBody()
        self.dtype = self.body.v_template.dtype
        names = list(COCO_KEYPOINT_NAMES)
        self._rigid = torch.zeros(len(names), dtype=self.dtype)
        self._rigid[[names.index(n) for n in _RIGID]] = 1.0
        self._pairs = torch.tensor([[names.index(a), names.index(b)] for a, b in _DEPTH_PAIRS])

    # ------------------------------------------------------------------ helpers
    def _objective(self, kp3d, body_pose, betas, data: dict, weights: torch.Tensor,
                   pose_weight: float) -> Dict[str, torch.Tensor]:
        """Per-row loss terms (each (B,))."""
        s = self.settings
        proj = project(kp3d, data["focal"], data["center"])
        sq = ((proj - data["keypoints"]) ** 2).sum(-1) / data["scale"][:, None] ** 2
        terms = {"data": (weights * _gmof(sq, s.sigma)).sum(-1)}
        if body_pose is not None:
            terms["pose"] = pose_weight * self.prior.nll(body_pose)
            terms["range"] = s.range_weight * self.prior.range_penalty(body_pose)
            terms["shape"] = s.shape_weight * shape_penalty(betas)
        return terms

    def _start_depth(self, rest_kp: torch.Tensor, data: dict) -> torch.Tensor:
        """Starting depth (P,): focal x 3D / 2D shoulder-hip length; box height when no
        shoulder-hip pair is labelled."""
        a, b = self._pairs[:, 0], self._pairs[:, 1]
        both = data["weights"][:, a] * data["weights"][:, b]  # (P, pairs)
        len3 = (rest_kp[a] - rest_kp[b]).norm(dim=-1)  # (pairs,)
        len2 = (data["keypoints"][:, a] - data["keypoints"][:, b]).norm(dim=-1)
        num = (both * len3).sum(1)
        den = (both * len2).sum(1)
        torso = data["focal"] * num / den.clamp_min(1e-6)
        box = data["focal"] * _BOX_HEIGHT_M / data["box_height"].clamp_min(1.0)
        return torch.where((both.sum(1) > 0) & (den > 1.0), torso, box)

    # ------------------------------------------------------------------ stages
    def _rigid_stage(self, data: dict, yaw_offset: torch.Tensor):
        """Stage 1 over every start: (orient (P,H,3), transl (P,H,3), loss (P,H))."""
        s, dt = self.settings, self.dtype
        P, H = data["keypoints"].shape[0], s.hypotheses
        zeros = torch.zeros(1, 3, dtype=dt)
        mean_pose = torch.as_tensor(self.prior.mean, dtype=dt)[None]
        betas0 = torch.zeros(1, self.body.num_betas, dtype=dt)
        with torch.no_grad():
            rest_kp = self.body(betas0, mean_pose, zeros, zeros)[0]  # (17, 3)
            root = self.body.joints(betas0, mean_pose, zeros, zeros)[0, 0]
        yaw = yaw_offset[:, None] + 2 * math.pi * torch.arange(H, dtype=dt)[None] / H  # (P,H)
        yaw_vec = torch.stack([torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)], -1)
        flip = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]], dtype=dt)  # y up -> y down
        rot0 = flip @ _axis_angle_to_matrix(yaw_vec)  # (P,H,3,3)
        orient = _matrix_to_axis_angle(rot0.reshape(-1, 3, 3)).reshape(P, H, 3)

        depth = self._start_depth(rest_kp, data)  # (P,)
        w = data["weights"]
        centre2 = (w[..., None] * data["keypoints"]).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-9)
        ray = (centre2 - data["center"]) / data["focal"][:, None]
        target = torch.cat([ray * depth[:, None], depth[:, None]], dim=1)  # (P,3)
        body_kp = torch.einsum("phij,kj->phki", rot0, rest_kp - root) + root  # (P,H,17,3)
        mean_kp = (w[:, None, :, None] * body_kp).sum(2) / w.sum(1)[:, None, None].clamp_min(1e-9)
        transl = target[:, None, :] - mean_kp

        flat = {k: v.repeat_interleave(H, dim=0) for k, v in data.items()}
        rigid = flat["weights"] * self._rigid  # all keypoints for who has < 3 of these
        weights = torch.where(((rigid > 0).sum(1) >= 3)[:, None], rigid, flat["weights"])
        orient = orient.reshape(P * H, 3).clone().requires_grad_(True)
        transl = transl.reshape(P * H, 3).clone().requires_grad_(True)
        opt = torch.optim.Adam([orient, transl], lr=s.rigid_lr)
        local = (rest_kp - root)[None]

        def rigid_kp():
            return (torch.einsum("bij,bkj->bki", _axis_angle_to_matrix(orient), local.expand(
                P * H, -1, -1)) + root + transl[:, None, :])

        for _ in range(s.rigid_iters):
            opt.zero_grad()
            loss = self._objective(rigid_kp(), None, None, flat, weights, 0.0)["data"]
            loss.sum().backward()
            opt.step()
        with torch.no_grad():
            loss = self._objective(rigid_kp(), None, None, flat, weights, 0.0)["data"]
        return orient.detach().reshape(P, H, 3), transl.detach().reshape(P, H, 3), \
            loss.reshape(P, H)

    def _full_stage(self, data: dict, orient: torch.Tensor, transl: torch.Tensor):
        """Stage 2 from starts (B,3) orient/transl (rows of ``data``)."""
        s, dt = self.settings, self.dtype
        B = orient.shape[0]
        body_pose = torch.as_tensor(self.prior.mean, dtype=dt)[None].repeat(B, 1)
        body_pose.requires_grad_(True)
        betas = torch.zeros(B, self.body.num_betas, dtype=dt, requires_grad=True)
        orient = orient.clone().requires_grad_(True)
        transl = transl.clone().requires_grad_(True)
        params = [orient, body_pose, betas, transl]
        opt = torch.optim.Adam(params, lr=s.lr)
        decay = (s.pose_weight_end / s.pose_weight_start) ** (1.0 / max(s.iters - 1, 1))
        pose_weight = s.pose_weight_start
        for it in range(s.iters):
            for group in opt.param_groups:  # cosine decay of the step to a tenth
                group["lr"] = s.lr * (0.55 + 0.45 * math.cos(math.pi * it / s.iters))
            opt.zero_grad()
            kp3d = self.body(betas, body_pose, orient, transl)
            terms = self._objective(kp3d, body_pose, betas, data, data["weights"], pose_weight)
            sum(terms.values()).sum().backward()
            opt.step()
            pose_weight *= decay
        with torch.no_grad():
            kp3d = self.body(betas, body_pose, orient, transl)
            pose_weight = s.pose_weight_end
            terms = self._objective(kp3d, body_pose, betas, data, data["weights"], pose_weight)
        return [p.detach() for p in params], kp3d, sum(terms.values())

    # ------------------------------------------------------------------ entry point
    def fit(self, keypoints: np.ndarray, weights: np.ndarray, focal: np.ndarray,
            center: np.ndarray, scale: np.ndarray, box_height: np.ndarray,
            seed: Union[int, Sequence[int]] = 0) -> FitResult:
        """Fit P bodies.

        Args:
            keypoints: (P, 17, 2) continuous pixel positions of the COCO keypoints.
            weights: (P, 17) weights >= 0 (0: not labelled / not detected).
            focal: (P,) assumed focal lengths; center: (P, 2) principal points (pixels).
            scale: (P,) person sizes in pixels (residuals are measured in these units).
            box_height: (P,) box heights in pixels (starting depth without a torso).
            seed: draws the starting yaws (an int or a sequence of ints, as numpy's
                ``default_rng`` takes).
        """
        keypoints = np.asarray(keypoints, np.float64)
        P = len(keypoints)
        if keypoints.shape != (P, 17, 2) or np.shape(weights) != (P, 17):
            raise ValueError(f"fit: keypoints must be (P, 17, 2) and weights (P, 17), got "
                             f"{keypoints.shape} and {np.shape(weights)}")
        s, dt = self.settings, self.dtype
        if P == 0:
            return _empty_result(self.body.num_betas)
        t = lambda x: torch.as_tensor(np.asarray(x, np.float64), dtype=dt)  # noqa: E731
        data = {"keypoints": t(keypoints), "weights": t(weights), "focal": t(focal),
                "center": t(center), "scale": t(scale), "box_height": t(box_height)}
        rng = np.random.default_rng(seed)
        yaw_offset = t(rng.uniform(0.0, 2 * math.pi / s.hypotheses, P))
        with torch_single_thread():
            orient, transl, rigid_loss = self._rigid_stage(data, yaw_offset)
            best = rigid_loss.argmin(dim=1)
            rows = torch.arange(P)
            params, kp3d, loss = self._full_stage(data, orient[rows, best], transl[rows, best])
            orient_f, pose_f, betas_f, transl_f = params
            with torch.no_grad():
                joints = self.body.joints(betas_f, pose_f, orient_f, transl_f)
            proj = project(kp3d, data["focal"], data["center"])
            err2 = ((proj - data["keypoints"]) ** 2).sum(-1)
            wsum = data["weights"].sum(1).clamp_min(1e-9)
            rms = ((data["weights"] * err2).sum(1) / wsum).sqrt()
        n = lambda x: x.detach().to(torch.float64).numpy()  # noqa: E731
        return FitResult(betas=n(betas_f), body_pose=n(pose_f), global_orient=n(orient_f),
                         transl=n(transl_f), keypoints_3d=n(kp3d), joints=n(joints),
                         loss=n(loss), reprojection_px=n(rms),
                         reprojection_rel=n(rms / data["scale"]))


def _empty_result(num_betas: int) -> FitResult:
    z = lambda *shape: np.zeros((0,) + shape)  # noqa: E731
    return FitResult(z(num_betas), z(69), z(3), z(3), z(17, 3), z(24, 3), z(), z(), z())
