"""Random scenes of the embedded dataset: people on a ground plane seen by a random camera.

A scene has 1..max_people bodies (random shape, joint-limited random pose, random yaw) standing
on the plane y = 0 at different depths, placed so that they frequently but only partly occlude
each other, and a perspective camera (random focal length, height and pitch) looking at the
group so that people are mostly in the frame. Everything is drawn from one
``np.random.Generator`` so a scene is reproducible from its seed.

``BodyAssets`` bundles what the renderer needs from the body model (mesh, skinning, charts,
posing, keypoints) behind one small interface.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from densepose_ext.body import keypoints as kp
from densepose_ext.body.body_model import get_body_model
from densepose_ext.body.pose import clip_to_limits, euler_to_pose, pose_to_euler, sample_poses
from densepose_ext.body.shape import sample_betas

from .rasterize import Camera, look_at_rotation
from .smpl_poser import SMPLPoser
from .texture import BodyRegions

__all__ = ["BodyAssets", "Person", "Scene", "load_body_assets", "sample_scene", "yaw_axis_angle"]

MIN_GROUND_SEPARATION = 0.55  # metres between two people's root positions on the ground
MAX_BOX_COVERAGE = 0.7  # a person's box may be covered this much by nearer people's boxes
_L_SHOULDER, _R_SHOULDER = 16, 17


@dataclass
class BodyAssets:
    """Renderer view of the body model.

    faces (F,3) mesh faces; rest_vertices (N,3) / rest_joints (24,3) the rest pose; weights
    (N,24) skinning; regions: garment-region quantities; surface_to_iuv(face_idx, bary) ->
    (I, U, V); pose(betas (B,10), body_pose (B,69), global_orient (B,3), transl (B,3)) ->
    (vertices (B,N,3), joints (B,24,3)) in metres; sample_poses(rng, n) -> (n,72) axis-angle;
    coco_keypoints(vertices, joints) -> (B,17,3); keypoint_vertex (17,) surface vertex of each
    COCO keypoint or -1 for keypoints that are (interior) joint positions; fingerprint: a hash
    of the mesh, charts and skinning used to check that a resumed dataset uses the same body.
    """

    faces: np.ndarray
    rest_vertices: np.ndarray
    rest_joints: np.ndarray
    weights: np.ndarray
    regions: BodyRegions
    surface_to_iuv: Callable[[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]]
    pose: Callable[..., Tuple[np.ndarray, np.ndarray]]
    sample_poses: Callable[[np.random.Generator, int], np.ndarray]
    coco_keypoints: Callable[[np.ndarray, np.ndarray], np.ndarray]
    keypoint_vertex: np.ndarray
    keypoint_names: List[str]
    skeleton: List[List[int]]
    fingerprint: str

    @property
    def num_vertices(self) -> int:
        return int(len(self.rest_vertices))


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def load_body_assets() -> BodyAssets:
    """The embedded body model (built / loaded from the cache once per process)."""
    bm = get_body_model()
    tpl = bm.template
    poser = SMPLPoser()  # the stitcher's poser: one way to pose the body model

    def pose(betas, body_pose, global_orient, transl):
        posed = poser.pose(np.concatenate([np.asarray(global_orient, np.float64),
                                           np.asarray(body_pose, np.float64)], axis=1),
                           transl, betas)
        return posed.vertices, posed.joints

    def surface_to_iuv(face_idx, bary):
        i, u, v = bm.surface_to_iuv(np.asarray(face_idx), np.asarray(bary))
        return np.asarray(i), np.asarray(u), np.asarray(v)

    def coco_keypoints(vertices, joints):
        return np.asarray(kp.coco_keypoints(np.asarray(vertices), np.asarray(joints),
                                            vertex_ids=tpl.keypoint_vertices), dtype=np.float64)

    names = list(kp.COCO_KEYPOINT_NAMES)
    kv = np.asarray(kp.keypoint_surface_vertex(tpl.keypoint_vertices), dtype=np.int64)
    charts = bm.charts
    return BodyAssets(
        faces=np.asarray(tpl.faces, dtype=np.int64),
        rest_vertices=np.asarray(tpl.vertices, dtype=np.float64),
        rest_joints=np.asarray(tpl.joints, dtype=np.float64),
        weights=np.asarray(tpl.weights, dtype=np.float64),
        regions=BodyRegions.from_template(tpl.vertices, tpl.joints, tpl.weights),
        surface_to_iuv=surface_to_iuv,
        pose=pose,
        sample_poses=lambda rng, n: np.asarray(sample_poses(rng, n), dtype=np.float64),
        coco_keypoints=coco_keypoints,
        keypoint_vertex=kv,
        keypoint_names=names,
        skeleton=[list(map(int, p)) for p in kp.COCO_SKELETON],
        fingerprint=_fingerprint(np.asarray(tpl.vertices), np.asarray(tpl.faces), np.asarray(tpl.weights),
                                 np.asarray(charts.chart_faces), np.asarray(charts.chart_uv)),
    )


@dataclass
class Person:
    """One body: SMPL parameters and the posed mesh / joints in world coordinates."""

    betas: np.ndarray
    body_pose: np.ndarray
    global_orient: np.ndarray
    transl: np.ndarray
    vertices: np.ndarray
    joints: np.ndarray

    def smpl_dict(self) -> dict:
        """SMPL parameters as lists (world frame; ``pose`` with them reproduces ``vertices``)."""
        return {"betas": self.betas.tolist(), "body_pose": self.body_pose.tolist(),
                "global_orient": self.global_orient.tolist(), "transl": self.transl.tolist()}


@dataclass
class Scene:
    """A camera and the people in front of it (people keep their sampling order)."""

    camera: Camera
    people: List[Person]

    def ground_xz(self) -> np.ndarray:
        """(P,2) ground positions (x, z) of the people (below their pelvis joints)."""
        if not self.people:
            return np.zeros((0, 2))
        return np.array([p.joints[0, [0, 2]] for p in self.people])


def yaw_axis_angle(yaw: np.ndarray) -> np.ndarray:
    """(n,) rotation angles about +y -> (n,3) axis-angle vectors."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return np.stack([np.zeros_like(yaw), yaw, np.zeros_like(yaw)], axis=-1)


def _box(camera: Camera, vertices: np.ndarray) -> np.ndarray:
    uv, _ = camera.project(vertices)
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])


def _coverage(box: np.ndarray, others: List[np.ndarray], grid: int = 16) -> float:
    """Fraction of ``box`` covered by the union of ``others`` (evaluated on a grid)."""
    if not others:
        return 0.0
    gx = np.linspace(box[0], box[2], grid)
    gy = np.linspace(box[1], box[3], grid)
    X, Y = np.meshgrid(gx, gy)
    o = np.asarray(others)
    inside = ((X[..., None] >= o[:, 0]) & (X[..., None] <= o[:, 2])
              & (Y[..., None] >= o[:, 1]) & (Y[..., None] <= o[:, 3])).any(-1)
    return float(inside.mean())


def sample_scene(rng: np.random.Generator, body: BodyAssets, width: int, height: int,
                 max_people: int = 4, min_people: int = 1,
                 pose_sampler: Optional[Callable[[np.random.Generator, int], np.ndarray]] = None) -> Scene:
    """Draw a random scene; deterministic given the generator state.

    ``pose_sampler(rng, n) -> (n, 72)`` replaces the joint-limited random body poses (e.g. with
    MoCap frames); only their body joints are used, the root orientation stays a random yaw.
    """
    n = int(rng.integers(min_people, max_people + 1))
    hfov = np.deg2rad(rng.uniform(35.0, 65.0))
    f = 0.5 * width / np.tan(0.5 * hfov)
    cx = 0.5 * width + rng.uniform(-0.03, 0.03) * width
    cy = 0.5 * height + rng.uniform(-0.03, 0.03) * height
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    vfov = 2.0 * np.arctan(0.5 * height / f)
    cam_h = rng.uniform(0.6, 2.2)

    betas = sample_betas(rng, n)
    if pose_sampler is None:
        poses = _lower_arms(rng, body.sample_poses(rng, n))
    else:
        poses = np.asarray(pose_sampler(rng, n), dtype=np.float64).reshape(n, -1)
    yaw = rng.uniform(-np.pi, np.pi, n)
    orient = yaw_axis_angle(yaw)
    verts0, joints0 = body.pose(betas, poses[:, 3:], orient, np.zeros((n, 3)))
    floor = verts0[:, :, 1].min(axis=1)  # lowest point of each posed body
    root_xz = joints0[:, 0, [0, 2]]
    tall = verts0[:, :, 1].max(axis=1) - floor

    # Distances at which a person fits the vertical field of view (with a margin), then spread.
    d_fit = 0.55 * float(tall.max()) / np.tan(0.5 * vfov) + 0.3
    depth = np.sort(rng.uniform(0.85 * d_fit, d_fit * (1.15 + 0.2 * n), n))
    lateral = np.zeros(n)
    order = np.argsort(depth)  # nearest first
    placed: List[int] = []
    for k in order:
        for _ in range(12):
            half_w = np.tan(0.5 * hfov) * depth[k]
            if placed and rng.random() < 0.65:
                j = placed[int(rng.integers(len(placed)))]
                x = lateral[j] * depth[k] / depth[j] + rng.choice([-1, 1]) * rng.uniform(0.35, 0.8)
            else:
                x = rng.uniform(-0.75, 0.75) * half_w
            sep = [np.hypot(x - lateral[j], depth[k] - depth[j]) for j in placed]
            if not sep or min(sep) >= MIN_GROUND_SEPARATION:
                break
            depth[k] += MIN_GROUND_SEPARATION  # step back and try again
        lateral[k] = x
        placed.append(k)

    transl = np.stack([lateral - root_xz[:, 0], -floor, -depth - root_xz[:, 1]], axis=1)
    verts = verts0 + transl[:, None, :]
    joints = joints0 + transl[:, None, :]

    centre = np.array([0.0, cam_h, 0.0])
    target = np.array([lateral.mean(), 0.45 * float(tall.mean()), -depth.mean()])
    forward = target - centre
    yaw_j, pitch_j = np.deg2rad(rng.uniform(-4, 4)), np.deg2rad(rng.uniform(-4, 4))
    forward = _rotate_y(forward, yaw_j)
    forward[1] += np.tan(pitch_j) * np.hypot(forward[0], forward[2])
    R = look_at_rotation(forward)
    camera = Camera(K=K, R=R, t=-R @ centre, width=int(width), height=int(height))

    # Move sideways anyone whose box is mostly hidden behind nearer people's boxes.
    boxes = {}
    for k in order:
        box = _box(camera, verts[k])
        nearer = [boxes[j] for j in boxes]
        if _coverage(box, nearer) > MAX_BOX_COVERAGE:
            shift = (box[2] - box[0]) * rng.uniform(0.5, 0.8) * rng.choice([-1, 1])
            dx = shift * depth[k] / f
            x_new = lateral[k] + dx
            if all(np.hypot(x_new - lateral[j], depth[k] - depth[j]) >= MIN_GROUND_SEPARATION
                   for j in range(n) if j != k):  # never push a body into another one
                lateral[k] = x_new
                transl[k, 0] += dx
                verts[k, :, 0] += dx
                joints[k, :, 0] += dx
                box = _box(camera, verts[k])
        boxes[k] = box

    people = [Person(betas=betas[i], body_pose=poses[i, 3:], global_orient=orient[i], transl=transl[i],
                     vertices=verts[i], joints=joints[i]) for i in range(n)]
    return Scene(camera=camera, people=people)


def _lower_arms(rng: np.random.Generator, poses: np.ndarray) -> np.ndarray:
    """Re-draw the shoulder elevation so arms hang down more often than in the T-pose.

    The rest pose has horizontal arms; people in photos mostly have them lowered. The new
    elevation is drawn between "arm down" and slightly raised (mostly lowered, median about
    50 degrees below horizontal), then the pose is clipped to the joint limits.
    """
    euler = pose_to_euler(poses)
    n = len(poses)
    euler[:, _L_SHOULDER, 2] = -1.4 + 1.8 * rng.beta(1.0, 3.5, n)  # left arm: -Z lowers it
    euler[:, _R_SHOULDER, 2] = 1.4 - 1.8 * rng.beta(1.0, 3.5, n)  # right arm mirrored
    return clip_to_limits(euler_to_pose(euler))


def _rotate_y(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] + s * v[2], v[1], -s * v[0] + c * v[2]])
