"""Clothing-like appearance of rendered people and random backgrounds.

People are not coloured by body part: each person gets a skin tone, hair, a shirt (random
sleeve length), trousers or a skirt (random length) and shoes. Garment regions are decided
from the REST-POSE body geometry (skinning weights say which limb chain a point belongs to,
projections on the rest-pose bones say how far along the limb it is), so garment edges cut
across DensePose parts like real clothes. Patterns (stripes, checks, dots, noise) are functions
of rest-pose 3D position and therefore move with the body. Colours are shaded with a
Lambertian model (random light direction and ambient term). Backgrounds are a gradient "wall"
with noise and shapes above a perspective-correct textured ground plane (y = 0) with soft
contact shadows under the people. Everything is vectorised over pixels.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Sequence, Tuple

import cv2
import numpy as np

from densepose_ext.body.template import vertex_normals

from .rasterize import Camera, Fragments

__all__ = ["BodyRegions", "Outfit", "sample_outfit", "shade_people", "render_background",
           "compose_image"]

# SMPL joint groups (a vertex skinned to joint j moves with the bone that starts at j).
_ARM = (16, 17, 18, 19, 20, 21, 22, 23)
_LEG = (1, 2, 4, 5, 7, 8, 10, 11)
_HEAD = (12, 15)
_FOOT = (7, 8, 10, 11)
_SHOULDER = (16, 17)
_WRIST = (20, 21)
_HIP = (1, 2)
_ANKLE = (7, 8)
_PELVIS, _SPINE1, _NECK, _HEADJ = 0, 3, 12, 15

CHAIN_TORSO, CHAIN_ARM, CHAIN_LEG, CHAIN_HEAD = 0, 1, 2, 3
# Garment labels produced by the region classifier.
SKIN, HAIR, SHIRT, LOWER, SHOES = 0, 1, 2, 3, 4

_SKIN_TONES = np.array([  # linear-ish RGB in [0,1], light to dark
    [0.96, 0.80, 0.69], [0.92, 0.74, 0.60], [0.85, 0.65, 0.50], [0.76, 0.56, 0.42],
    [0.63, 0.45, 0.32], [0.50, 0.35, 0.24], [0.38, 0.26, 0.18], [0.28, 0.19, 0.13]])
_HAIR_COLOURS = np.array([
    [0.05, 0.04, 0.04], [0.17, 0.11, 0.07], [0.33, 0.21, 0.12], [0.62, 0.48, 0.30],
    [0.80, 0.68, 0.45], [0.50, 0.20, 0.08], [0.60, 0.60, 0.60]])
_PATTERNS = ("solid", "stripes", "checks", "dots", "noise")


@dataclass
class BodyRegions:
    """Per rest-pose vertex quantities from which garment regions are decided.

    chain: (N,4) skinning mass of the torso / arm / leg / head chains (rows sum to ~1).
    foot: (N,) skinning mass of the feet; arm_t, leg_t: (N,) position along the shoulder->wrist
    and hip->ankle axes (0 at the proximal joint, 1 at the distal one) on the vertex's side;
    head_rel: (N,3) offset from the head joint divided by the head height; y: (N,) height
    relative to the pelvis; rest: (N,3) rest-pose positions (pattern coordinates).
    """

    chain: np.ndarray
    foot: np.ndarray
    arm_t: np.ndarray
    leg_t: np.ndarray
    head_rel: np.ndarray
    y: np.ndarray
    rest: np.ndarray
    waist_span: float  # pelvis -> spine1 height difference (m)
    arm_len: float
    leg_len: float

    @classmethod
    def from_template(cls, vertices: np.ndarray, joints: np.ndarray, weights: np.ndarray) -> "BodyRegions":
        """Compute the per-vertex quantities from the rest pose (T-pose, +x = person's left)."""
        v = np.asarray(vertices, dtype=np.float64)
        j = np.asarray(joints, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        chain = np.zeros((len(v), 4))
        chain[:, CHAIN_ARM] = w[:, list(_ARM)].sum(1)
        chain[:, CHAIN_LEG] = w[:, list(_LEG)].sum(1)
        chain[:, CHAIN_HEAD] = w[:, list(_HEAD)].sum(1)
        chain[:, CHAIN_TORSO] = 1.0 - chain[:, 1:].sum(1)
        side = (v[:, 0] < 0).astype(np.int64)  # 0 = person's left (+x), 1 = right

        def along(prox: Tuple[int, int], dist: Tuple[int, int]) -> Tuple[np.ndarray, float]:
            a = j[np.array(prox)][side]
            b = j[np.array(dist)][side]
            axis = b - a
            t = ((v - a) * axis).sum(1) / (axis * axis).sum(1)
            return t, float(np.linalg.norm(j[prox[0]] - j[dist[0]]))

        arm_t, arm_len = along(_SHOULDER, _WRIST)
        leg_t, leg_len = along(_HIP, _ANKLE)
        head = chain[:, CHAIN_HEAD] > 0.5
        head_h = max(float(v[head, 1].max() - j[_HEADJ, 1]), 1e-3) if head.any() else 0.15
        return cls(chain=chain, foot=w[:, list(_FOOT)].sum(1), arm_t=arm_t, leg_t=leg_t,
                   head_rel=(v - j[_HEADJ]) / head_h, y=v[:, 1] - j[_PELVIS, 1], rest=v,
                   waist_span=float(j[_SPINE1, 1] - j[_PELVIS, 1]), arm_len=arm_len,
                   leg_len=leg_len)

    def interpolate(self, faces: np.ndarray, face_idx: np.ndarray, bary: np.ndarray) -> dict:
        """Per-pixel (P,) quantities by barycentric interpolation on faces[face_idx]."""
        vid = faces[face_idx]  # (P,3)
        b = bary[..., None].astype(np.float64)
        scal = np.stack([self.foot, self.arm_t, self.leg_t, self.y], axis=1)  # (N,4)
        s = (scal[vid] * b).sum(1)
        return {
            "chain": (self.chain[vid] * b).sum(1).argmax(1),
            "foot": s[:, 0], "arm_t": s[:, 1], "leg_t": s[:, 2], "y": s[:, 3],
            "head_rel": (self.head_rel[vid] * b).sum(1),
            "rest": (self.rest[vid] * b).sum(1),
        }


@dataclass
class Garment:
    """A colour pair and a procedural pattern evaluated in rest-pose space."""

    base: np.ndarray
    accent: np.ndarray
    pattern: str
    period: float
    phase: float
    noise_seed: int

    def colour(self, rest: np.ndarray, along: np.ndarray) -> np.ndarray:
        """(P,3) albedo at rest-pose points; ``along`` (P,) metres along the limb axis."""
        m = _pattern_mask(self.pattern, rest, along, self.period, self.phase, self.noise_seed)
        return self.base[None] * (1.0 - m[:, None]) + self.accent[None] * m[:, None]


@dataclass
class Outfit:
    """Appearance of one person. Lengths are fractions along the limb (0 proximal joint)."""

    skin: np.ndarray
    hair: np.ndarray
    hair_line: float  # in head heights above the head joint, at the forehead
    hair_long: bool
    shirt: Garment
    sleeve: float
    shirt_bottom: float  # in units of the pelvis->spine1 span above the pelvis
    lower: Garment
    lower_len: float
    waist: float
    skirt: bool
    shoes: np.ndarray
    shoe_t: float
    sheen: float = 0.0  # strength of a soft specular highlight


def _random_colour(rng: np.random.Generator, muted: bool = False) -> np.ndarray:
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(0.0, 0.45) if muted else rng.uniform(0.15, 0.9)
    v = rng.uniform(0.12, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _sample_garment(rng: np.random.Generator) -> Garment:
    pattern = _PATTERNS[int(rng.choice(len(_PATTERNS), p=[0.4, 0.2, 0.15, 0.1, 0.15]))]
    base = _random_colour(rng, muted=rng.random() < 0.5)
    accent = _random_colour(rng)
    if pattern == "noise":
        accent = np.clip(base * rng.uniform(0.5, 0.8), 0, 1)
    return Garment(base=base, accent=accent, pattern=pattern, period=float(rng.uniform(0.025, 0.09)),
                   phase=float(rng.uniform(0, 1)), noise_seed=int(rng.integers(2**31)))


def sample_outfit(rng: np.random.Generator) -> Outfit:
    """Random clothing for one person (deterministic given ``rng``)."""
    skin = np.clip(_SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.92, 1.06, 3), 0, 1)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    skirt = bool(rng.random() < 0.25)
    if skirt:
        lower_len = float(rng.uniform(0.25, 0.75))
    else:
        lower_len = float(rng.choice([rng.uniform(0.3, 0.55), rng.uniform(0.85, 1.02)], p=[0.3, 0.7]))
    shirt = _sample_garment(rng)
    lower = _sample_garment(rng)
    if not skirt and rng.random() < 0.5:  # plain trousers are the common case
        lower.pattern = "noise" if rng.random() < 0.5 else "solid"
    return Outfit(
        skin=skin, hair=np.clip(hair, 0, 1), hair_line=float(rng.uniform(0.25, 0.75)),
        hair_long=bool(rng.random() < 0.35), shirt=shirt,
        sleeve=float(rng.choice([rng.uniform(0.0, 0.15), rng.uniform(0.3, 0.55), rng.uniform(0.9, 1.02)])),
        shirt_bottom=float(rng.uniform(-0.6, 0.6)), lower=lower, lower_len=lower_len,
        waist=float(rng.uniform(0.6, 1.3)), skirt=skirt,
        shoes=_random_colour(rng, muted=True) * rng.uniform(0.3, 1.0), shoe_t=float(rng.uniform(0.9, 0.99)),
        sheen=float(rng.uniform(0.0, 0.25)),
    )


def _value_noise(points: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth 3D value noise in [0,1] at (P,3) points; ``scale`` = lattice spacing (m)."""
    g = 32
    lattice = np.random.default_rng(seed).random((g, g, g))
    q = points / scale
    i0 = np.floor(q).astype(np.int64)
    f = q - i0
    f = f * f * (3 - 2 * f)
    out = np.zeros(len(points))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                wgt = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) \
                    * (f[:, 2] if dz else 1 - f[:, 2])
                idx = (i0 + np.array([dx, dy, dz])) % g
                out += wgt * lattice[idx[:, 0], idx[:, 1], idx[:, 2]]
    return out


def _pattern_mask(kind: str, rest: np.ndarray, along: np.ndarray, period: float, phase: float,
                  seed: int) -> np.ndarray:
    """Accent-colour weight in [0,1] of a procedural pattern at rest-pose points."""
    if kind == "solid":
        return np.zeros(len(rest))
    if kind == "stripes":  # rings around the torso and limbs
        return (np.mod(along / period + phase, 1.0) < 0.5).astype(np.float64)
    if kind == "checks":
        c = np.floor(rest / period + phase).astype(np.int64)
        return ((c[:, 0] + c[:, 1] + c[:, 2]) % 2).astype(np.float64) * 0.8
    if kind == "dots":
        q = rest / (1.6 * period) + phase
        d = np.linalg.norm(q - np.round(q), axis=1)
        return (d < 0.3).astype(np.float64)
    n = 0.65 * _value_noise(rest, period, seed) + 0.35 * _value_noise(rest, period / 3, seed + 1)
    return np.clip((n - 0.3) * 2.0, 0, 1)


def classify_garments(attrs: dict, outfit: Outfit, waist_span: float) -> np.ndarray:
    """(P,) garment label (SKIN/HAIR/SHIRT/LOWER/SHOES) of pixels from interpolated attrs."""
    chain, y = attrs["chain"], attrs["y"]
    label = np.full(len(chain), SKIN, dtype=np.int64)
    torso, arm, leg, head = (chain == CHAIN_TORSO), (chain == CHAIN_ARM), (chain == CHAIN_LEG), (chain == CHAIN_HEAD)
    waist_y = outfit.waist * waist_span
    shirt_y = waist_y - outfit.shirt_bottom * 0.5 * waist_span if outfit.shirt_bottom > 0 else waist_y
    label[torso & (y < waist_y)] = LOWER
    label[leg & (attrs["leg_t"] <= outfit.lower_len)] = LOWER
    label[torso & (y >= shirt_y)] = SHIRT
    label[arm & (attrs["arm_t"] <= outfit.sleeve)] = SHIRT
    label[leg & ((attrs["foot"] > 0.5) | (attrs["leg_t"] > outfit.shoe_t))] = SHOES
    hr = attrs["head_rel"]  # x, y, z in head heights from the head joint
    back = np.clip(-hr[:, 2], 0, None)
    hair = head & (hr[:, 1] > outfit.hair_line - 1.2 * back)
    if outfit.hair_long:
        hair |= (head | torso) & (hr[:, 2] < -0.15) & (hr[:, 1] > -1.6)
    label[hair] = HAIR
    return label


@dataclass
class Lighting:
    """Directional light in camera coordinates (towards the light) plus ambient term."""

    direction: np.ndarray
    ambient: float
    colour: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Lighting":
        d = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-1.0, -0.2), rng.uniform(-1.0, -0.3)])
        return cls(direction=d / np.linalg.norm(d), ambient=float(rng.uniform(0.3, 0.6)),
                   colour=1.0 + rng.uniform(-0.08, 0.08, 3))


def shade_people(
    frags: Fragments,
    posed_vertices: Sequence[np.ndarray],
    faces: np.ndarray,
    regions: BodyRegions,
    outfits: Sequence[Outfit],
    camera: Camera,
    light: Lighting,
    eye_vertices: Sequence[int] = (),
) -> np.ndarray:
    """(H,W,3) float colours of the foreground pixels (zeros elsewhere)."""
    H, W = frags.mesh.shape
    out = np.zeros((H, W, 3))
    for i, (verts, outfit) in enumerate(zip(posed_vertices, outfits)):
        ys, xs = np.nonzero(frags.mesh == i)
        if len(ys) == 0:
            continue
        f = frags.face[ys, xs]
        b = frags.bary[ys, xs].astype(np.float64)
        attrs = regions.interpolate(faces, f, b)
        label = classify_garments(attrs, outfit, regions.waist_span)
        rest = attrs["rest"]
        albedo = np.empty((len(ys), 3))
        albedo[:] = outfit.skin
        # Metres along the limb axis (torso: downwards): stripes become rings around limbs.
        along = np.select([attrs["chain"] == CHAIN_ARM, attrs["chain"] == CHAIN_LEG],
                          [attrs["arm_t"] * regions.arm_len, attrs["leg_t"] * regions.leg_len], -attrs["y"])
        for lab, colour in ((SHIRT, outfit.shirt), (LOWER, outfit.lower)):
            sel = label == lab
            if sel.any():
                albedo[sel] = colour.colour(rest[sel], along[sel])
        albedo[label == SHOES] = outfit.shoes
        hair = label == HAIR
        albedo[hair] = outfit.hair * (0.85 + 0.3 * _value_noise(rest[hair], 0.01, 7)[:, None])
        if len(eye_vertices):
            eyes = regions.rest[np.asarray(eye_vertices)]
            d = np.linalg.norm(rest[:, None, :] - eyes[None], axis=2).min(1)
            albedo[(d < 0.011) & (label == SKIN)] *= 0.25
        # Fine fabric / skin grain so surfaces are not flat.
        albedo *= (0.93 + 0.14 * _value_noise(rest, 0.006, 11))[:, None]
        normals = vertex_normals(verts, faces)
        n = (normals[faces[f]] * b[..., None]).sum(1) @ camera.R.T
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        lam = np.clip(n @ light.direction, 0, None)
        view = -camera.world_to_camera((verts[faces[f]] * b[..., None]).sum(1))
        view /= np.linalg.norm(view, axis=1, keepdims=True)
        half = light.direction[None] + view
        half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-12)
        spec = outfit.sheen * np.clip((n * half).sum(1), 0, None) ** 20
        shade = light.ambient + (1 - light.ambient) * lam
        out[ys, xs] = albedo * shade[:, None] * light.colour + spec[:, None]
    return out


def render_background(rng: np.random.Generator, camera: Camera,
                      people_ground_xz: np.ndarray) -> np.ndarray:
    """(H,W,3) float background: wall gradient + noise + shapes above a textured ground."""
    H, W = camera.height, camera.width
    top, bottom = _random_colour(rng, muted=True), _random_colour(rng, muted=True)
    t = np.linspace(0, 1, H)[:, None, None]
    img = np.broadcast_to(top * (1 - t) + bottom * t, (H, W, 3)).copy()
    small = np.random.default_rng(int(rng.integers(2**31))).random((max(H // 32, 2), max(W // 32, 2), 1))
    img *= 0.85 + 0.3 * cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)[..., None]
    canvas = np.ascontiguousarray(img)
    for _ in range(int(rng.integers(2, 9))):
        colour = tuple(float(c) for c in _random_colour(rng))
        kind = rng.integers(3)
        x0, y0 = int(rng.integers(-W // 4, W)), int(rng.integers(-H // 4, H))
        sx, sy = int(rng.integers(W // 16, W // 2)), int(rng.integers(H // 16, H // 2))
        if kind == 0:
            cv2.rectangle(canvas, (x0, y0), (x0 + sx, y0 + sy), colour, -1)
        elif kind == 1:
            cv2.ellipse(canvas, (x0, y0), (sx // 2, sy // 2), float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            cv2.line(canvas, (x0, y0), (x0 + sx, y0 + sy), colour, int(rng.integers(1, 6)))
    img = canvas
    # Ground plane y = 0 seen through the camera: intersect each pixel ray with it.
    v, u = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(camera.K).T @ camera.R  # world dirs
    c = camera.center
    with np.errstate(divide="ignore", invalid="ignore"):
        s = -c[1] / rays[..., 1]
    ground = (rays[..., 1] < -1e-6) & (s > 0)
    gx = c[0] + s * rays[..., 0]
    gz = c[2] + s * rays[..., 2]
    g1, g2 = _random_colour(rng, muted=True), _random_colour(rng, muted=True)
    kind = int(rng.integers(3))
    tile = float(rng.uniform(0.3, 1.2))
    gxs, gzs = np.where(ground, gx, 0.0), np.where(ground, gz, 0.0)
    if kind == 0:  # tiles
        m = ((np.floor(gxs / tile) + np.floor(gzs / tile)) % 2)[..., None]
    elif kind == 1:  # planks
        frac = np.mod(gxs / (tile * 0.3), 1.0) - 0.5
        m = 0.8 * np.exp(-(frac / 0.08) ** 2)[..., None]  # soft seams alias less
    else:  # grass / asphalt-like noise
        pts = np.stack([gxs, np.zeros_like(gxs), gzs], -1).reshape(-1, 3)
        m = _value_noise(pts, tile * 0.2, int(rng.integers(2**31))).reshape(H, W, 1)
    gcol = g1 * (1 - m) + g2 * m
    if len(people_ground_xz):
        d2 = ((gxs[..., None] - people_ground_xz[:, 0]) ** 2 + (gzs[..., None] - people_ground_xz[:, 1]) ** 2)
        gcol *= (1.0 - 0.45 * np.exp(-d2 / 0.12).max(-1))[..., None]
    fog = np.exp(-np.where(ground, s, 0.0) / float(rng.uniform(15, 60)))[..., None]
    horizon = img[np.clip(int(H * 0.5), 0, H - 1)].mean(0)
    gcol = gcol * fog + horizon * (1 - fog)
    img = np.where(ground[..., None], gcol, img)
    return img


def compose_image(rng: np.random.Generator, background: np.ndarray, people: np.ndarray,
                  foreground: np.ndarray) -> np.ndarray:
    """Composite, soften edges a little, add sensor noise; returns (H,W,3) uint8 RGB."""
    img = np.where(foreground[..., None], people, background)
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 0.8)))
    img = img + rng.normal(0.0, rng.uniform(0.005, 0.02), img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
