"""DensePose ground truth of one person (points, coarse mask, optional dense IUV target), and a
list of them.

Everything is expressed in the 256x256 frame of the person's box, as in DensePose-COCO:
a point (x, y) of that frame sits at image position (x0 + x * w / 256, y0 + y * h / 256).
Transforms that only scale or move the whole image (resize) therefore leave the data unchanged,
and a horizontal flip mirrors the frame and relabels the body parts.
"""
from __future__ import annotations

import base64
import os
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from fvcore.transforms.transform import (
    HFlipTransform,
    NoOpTransform,
    ScaleTransform,
    Transform,
    TransformList,
)
from detectron2.data.transforms import ResizeTransform

from .coco_format import (FRAME_SIZE, NUM_COARSE_PARTS, NUM_FINE_PARTS, decode_dp_masks,
                          decode_iuv_png, encode_iuv_png)
from .transform_data import DensePoseTransformData

__all__ = [
    "DP_POINT_KEYS",
    "DP_KEYS",
    "DENSE_TARGET_KEY",
    "DenseIUV",
    "DensePoseData",
    "DensePoseList",
    "check_densepose_annotation",
    "check_rle",
    "compressed_rle_errors",
    "has_densepose",
]

DP_POINT_KEYS = ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")
DP_KEYS = DP_POINT_KEYS + ("dp_masks",)
#: Annotation key naming a dense IUV target PNG (see :class:`DenseIUV`), e.g. written by
#: ground-truth interpolation (``python -m distill.interpolate``).
DENSE_TARGET_KEY = "dp_dense_file"

# Transforms that scale/translate the whole image uniformly per axis: box-relative data is
# invariant under them (the box is transformed by detectron2 alongside).
_BOX_INVARIANT_TRANSFORMS = (NoOpTransform, ResizeTransform, ScaleTransform)


def has_densepose(ann: dict) -> bool:
    """Whether a DensePose-COCO annotation carries DensePose data (any ``dp_*`` key)."""
    return any(k in ann for k in DP_KEYS)


def _short(value, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters (error messages name bad values)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_plain_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _as_float_array(ann: dict, key: str) -> np.ndarray:
    """``ann[key]`` as a flat float64 array; numbers only (no silent "3.5" -> 3.5 coercion)."""
    value = ann[key]
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise ValueError(f"{key} must be a list of numbers, got {type(value).__name__} "
                         f"{_short(value)}")
    arr = np.asarray(value) if len(value) else np.zeros(0)
    if arr.dtype.kind not in "iuf":  # strings, None, bools, nested or ragged lists
        flat = value if arr.ndim <= 1 else []
        bad = next(((k, v) for k, v in enumerate(flat) if not _is_plain_number(v)), None)
        if bad is not None:
            raise ValueError(f"{key}[{bad[0]}] must be a number, got {type(bad[1]).__name__} "
                             f"{_short(bad[1])}")
        raise ValueError(f"{key} must be a flat list of numbers, got {_short(value)}")
    if arr.ndim != 1:
        raise ValueError(f"{key} must be a flat list of numbers, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        k = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{key}[{k}] is not finite: {arr[k]!r}")
    return arr


def _compressed_rle_totals(strings: Sequence) -> np.ndarray:
    """Pixel count covered by each COCO compressed RLE counts string, all strings at once;
    -1 for a malformed one (a character outside the alphabet, an unfinished count, a
    negative or over-large run).

    This is pycocotools' ``rleFrString`` vectorised: 6-bit characters ('0' + x), 5 value bits
    each, 0x20 = another character follows, 0x10 on the last = negative; runs from the third
    on are stored as the difference to the run two before. pycocotools does not check any of
    this, and decoding a malformed string writes past its buffer, so it is checked first.
    """
    n = len(strings)
    raw, bad = [], np.zeros(n, bool)
    for k, s in enumerate(strings):
        try:
            raw.append(s.encode("ascii") if isinstance(s, str) else bytes(s))
        except (UnicodeEncodeError, TypeError):
            raw.append(b"")
            bad[k] = True
    lengths = np.fromiter((len(b) for b in raw), np.int64, n)
    out = np.full(n, -1, np.int64)
    if not lengths.sum():
        out[~bad & (lengths == 0)] = 0
        return out
    x = np.frombuffer(b"".join(raw), np.uint8).astype(np.int64) - 48
    sid = np.repeat(np.arange(n), lengths)
    bad |= np.bincount(sid, weights=(x < 0) | (x > 63), minlength=n) > 0
    x = np.clip(x, 0, 63)
    more = (x & 0x20) != 0
    ends = np.cumsum(lengths) - 1
    nonempty = lengths > 0
    bad[nonempty] |= more[ends[nonempty]]  # the string stops inside a count
    starts_string = np.zeros(len(x), bool)
    starts_string[(ends - lengths + 1)[nonempty]] = True
    starts = starts_string.copy()
    starts[1:] |= ~more[:-1]
    first = np.flatnonzero(starts)  # first character of every count
    gid = np.cumsum(starts) - 1
    pos = np.arange(len(x)) - first[gid]  # character index within its count
    bad |= np.bincount(sid, weights=pos > 6, minlength=n) > 0  # > 35 bits: no uint32 run
    pos = np.minimum(pos, 6)
    value = np.add.reduceat((x & 0x1F) << (5 * pos), first)
    last = np.append(first[1:], len(x)) - 1
    value -= np.where(x[last] & 0x10, np.int64(1) << (5 * (pos[last] + 1)), 0)
    csid = sid[first]  # string of every count
    string_first = np.ones(len(csid), bool)
    string_first[1:] = csid[1:] != csid[:-1]
    j = np.arange(len(first)) - np.flatnonzero(string_first)[np.cumsum(string_first) - 1]
    counts = value.copy()
    for parity in (1, 0):  # runs j >= 3 add the run j - 2: running sums over 1,3,5.. / 2,4,6..
        m = (j >= 1) & (j % 2 == parity)
        if not m.any():
            continue
        v, s = value[m], csid[m]
        cs = np.cumsum(v)
        seg = np.ones(len(s), bool)
        seg[1:] = s[1:] != s[:-1]
        counts[m] = cs - (cs - v)[seg][np.cumsum(seg) - 1]
    bad |= np.bincount(csid, weights=(counts < 0) | (counts >= 2**32), minlength=n) > 0
    totals = np.bincount(csid, weights=np.maximum(counts, 0), minlength=n).astype(np.int64)
    return np.where(bad, -1, totals)


def compressed_rle_errors(pending: Sequence[Tuple[str, object, int, int]]) -> List[Optional[str]]:
    """For each ``(field, counts string, height, width)``: None if the string is a valid
    compressed RLE of that size, else the error message; one vectorised pass for all."""
    totals = _compressed_rle_totals([p[1] for p in pending])
    out: List[Optional[str]] = []
    for (field, counts, height, width), total in zip(pending, totals.tolist()):
        if total == height * width:
            out.append(None)
            continue
        what = "malformed compressed RLE" if total < 0 else (
            f"runs cover {total} pixels, not {height}x{width} = {height * width}")
        out.append(f"{field}.counts: {what}: {_short(counts)}")
    return out


def check_rle(rles: Sequence[Tuple[str, object]], height: int, width: int,
              pending: Optional[list] = None) -> None:
    """Validate COCO RLE dicts ``(field name, rle)`` of a ``height`` x ``width`` mask.

    ``size`` must be the pair [height, width] of ints and ``counts`` a compressed string (or
    bytes) or a list of non-negative ints whose runs cover exactly height * width pixels.
    Raises ValueError naming the field and the bad value. Compressed strings are decoded
    together (one vectorised pass); with ``pending`` they are only appended to it as
    ``(field, counts, height, width)`` for the caller to check many annotations at once
    with :func:`compressed_rle_errors`.
    """
    strings = []
    for field, rle in rles:
        if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
            raise ValueError(f"{field} must be a COCO RLE dict with size and counts, got "
                             f"{_short(rle)}")
        size = rle["size"]
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
            raise ValueError(f"{field}.size must be a [height, width] pair of ints, got "
                             f"{_short(size)}")
        if list(size) != [height, width]:
            raise ValueError(f"{field}.size must be {height}x{width} ([{height}, {width}]), "
                             f"got {_short(size)}")
        counts = rle["counts"]
        if isinstance(counts, (str, bytes)):
            strings.append((field, counts, height, width))
        elif isinstance(counts, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
                raise ValueError(f"{field}.counts list must hold non-negative ints, got "
                                 f"{_short(counts)}")
            if sum(counts) != height * width:
                raise ValueError(f"{field}.counts runs cover {sum(counts)} pixels, not "
                                 f"{height}x{width} = {height * width}")
        else:
            raise ValueError(f"{field}.counts must be a string or a list of ints, got "
                             f"{type(counts).__name__} {_short(counts)}")
    if pending is not None:
        pending.extend(strings)
    elif strings:
        error = next((e for e in compressed_rle_errors(strings) if e is not None), None)
        if error is not None:
            raise ValueError(error)


def check_densepose_annotation(ann: dict, pending_rles: Optional[list] = None) -> bool:
    """Validate the ``dp_*`` fields of one raw annotation; return whether it has DensePose.

    Raises ValueError with a message saying what is wrong (the caller adds file and ids).
    An annotation either has none of the ``dp_*`` keys or all six of them; a dense target
    (``dp_dense_file``, a non-empty path string) may only come with them. Point arrays hold
    numbers (not numeric strings), ``dp_masks`` 14 entries, each [] or a valid 256x256 RLE
    (compressed strings deferred to ``pending_rles`` if given, see :func:`check_rle`).
    """
    if not has_densepose(ann):
        if DENSE_TARGET_KEY in ann:
            raise ValueError(f"{DENSE_TARGET_KEY} given without DensePose points (dp_* keys)")
        return False
    if DENSE_TARGET_KEY in ann:
        path = ann[DENSE_TARGET_KEY]
        if not isinstance(path, str) or not path:
            raise ValueError(f"{DENSE_TARGET_KEY} must be a non-empty path string, got {path!r}")
    missing = [k for k in DP_KEYS if k not in ann]
    if missing:
        raise ValueError(f"incomplete DensePose annotation: missing {', '.join(missing)}")
    arrays = {k: _as_float_array(ann, k) for k in DP_POINT_KEYS}
    lengths = {k: len(a) for k, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"dp_* arrays have different lengths: {lengths}")
    for key in ("dp_x", "dp_y"):
        a = arrays[key]
        if len(a) and (a.min() < 0 or a.max() > FRAME_SIZE):
            raise ValueError(f"{key} outside [0, {FRAME_SIZE}] (range {a.min()}..{a.max()})")
    parts = arrays["dp_I"]
    if len(parts):
        bad = (parts != np.round(parts)) | (parts < 1) | (parts > NUM_FINE_PARTS)
        if bad.any():
            raise ValueError(
                f"dp_I must be integers in 1..{NUM_FINE_PARTS}, got {parts[bad][0]!r}"
            )
    for key in ("dp_U", "dp_V"):
        a = arrays[key]
        if len(a) and (a.min() < 0 or a.max() > 1):
            raise ValueError(f"{key} outside [0, 1] (range {a.min()}..{a.max()})")
    masks = ann["dp_masks"]
    if not isinstance(masks, (list, tuple)) or len(masks) != NUM_COARSE_PARTS:
        n = len(masks) if isinstance(masks, (list, tuple)) else type(masks).__name__
        raise ValueError(f"dp_masks must be a list of {NUM_COARSE_PARTS} entries, got {n}")
    rles = []
    for k, rle in enumerate(masks):
        if isinstance(rle, (list, tuple)) and len(rle) == 0:
            continue
        if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
            raise ValueError(f"dp_masks[{k}] must be [] or a COCO RLE dict with size, counts, "
                             f"got {_short(rle)}")
        rles.append((f"dp_masks[{k}]", rle))
    check_rle(rles, FRAME_SIZE, FRAME_SIZE, pending_rles)
    return True


class DenseIUV:
    """Dense DensePose labels of one person on a T x T grid spanning its box frame.

    Cell (r, c) covers the box-frame square [c, c+1) x [r, r+1) scaled by 256 / T, so with
    T = 256 cells are the frame's unit squares (those of ``dp_masks``); a frame point (x, y)
    lies in cell (floor(y * T / 256), floor(x * T / 256)).

    Attributes:
        i: (T,T) int64 fine part 0..24 (0 = no label: background or outside the person).
        u, v: (T,T) float32 chart coordinates in [0, 1] (0 where i = 0).

    Stored as a PNG of the uint8 image [I, round(255 U), round(255 V)], the encoding of
    :func:`densepose_ext.structures.coco_format.encode_iuv_png`.
    """

    def __init__(self, i: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
        self.i = torch.as_tensor(i).long()
        self.u = torch.as_tensor(u, dtype=torch.float32)
        self.v = torch.as_tensor(v, dtype=torch.float32)

    @property
    def size(self) -> int:
        """Side T of the grid."""
        return int(self.i.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.i.device

    def __repr__(self) -> str:
        return f"DenseIUV(size={self.size}, labelled={int((self.i > 0).sum())})"

    def validate(self) -> None:
        """Check shapes and value ranges; raise ValueError saying what is wrong."""
        t = self.i.shape
        if len(t) != 2 or t[0] != t[1] or t[0] == 0:
            raise ValueError(f"dense IUV must be a non-empty square grid, got shape {tuple(t)}")
        for name in ("u", "v"):
            if getattr(self, name).shape != t:
                raise ValueError(f"dense {name.upper()} has shape "
                                 f"{tuple(getattr(self, name).shape)}, I has {tuple(t)}")
        if int(self.i.min()) < 0 or int(self.i.max()) > NUM_FINE_PARTS:
            raise ValueError(f"dense part labels outside 0..{NUM_FINE_PARTS}")
        for name in ("u", "v"):
            a = getattr(self, name)
            if float(a.min()) < 0 or float(a.max()) > 1:
                raise ValueError(f"dense {name.upper()} outside [0, 1]")

    def to(self, device: Union[str, torch.device]) -> "DenseIUV":
        """A copy on ``device`` (self if already there)."""
        if torch.device(device) == self.device:
            return self
        return DenseIUV(self.i.to(device), self.u.to(device), self.v.to(device))

    def hflip(self, transform_data: DensePoseTransformData) -> "DenseIUV":
        """The mirrored target: columns reversed, then every label flipped like a point."""
        td = transform_data.to(self.device)
        i, u, v = td.flip_iuv(self.i.flip(1), self.u.flip(1), self.v.flip(1))
        return DenseIUV(i, u, v)

    def sample_points(
        self, num: int, generator: Optional[torch.Generator] = None
    ) -> Tuple[torch.Tensor, ...]:
        """(x, y, i, u, v) of ``num`` distinct labelled cells drawn uniformly (all of them if
        fewer), positioned at the cell centres in the 256x256 box frame."""
        labelled = (self.i > 0).flatten().nonzero().flatten()
        if num < len(labelled):
            order = torch.randperm(len(labelled), generator=generator)
            labelled = labelled[order[:num].to(labelled.device)]
        t = self.size
        rows, cols = labelled // t, labelled % t
        scale = FRAME_SIZE / t
        x = (cols.float() + 0.5) * scale
        y = (rows.float() + 0.5) * scale
        return x, y, self.i.flatten()[labelled], self.u.flatten()[labelled], \
            self.v.flatten()[labelled]

    # ----------------------------------------------------------------------------- files
    def to_png_bytes(self) -> bytes:
        """The target as PNG file contents (lossless for I, U/V within 1/510)."""
        return base64.b64decode(
            encode_iuv_png(self.i.cpu().numpy(), self.u.cpu().numpy(), self.v.cpu().numpy())
        )

    @classmethod
    def from_png_bytes(cls, data: bytes) -> "DenseIUV":
        """Inverse of :meth:`to_png_bytes`; ValueError on anything but a valid square target."""
        I, U, V = decode_iuv_png(base64.b64encode(data).decode("ascii"))
        target = cls(torch.from_numpy(I.astype(np.int64)), torch.from_numpy(U),
                     torch.from_numpy(V))
        target.validate()
        return target

    @classmethod
    def from_png_file(cls, path: Union[str, os.PathLike]) -> "DenseIUV":
        """Read a target PNG; errors name the file."""
        try:
            with open(path, "rb") as f:
                return cls.from_png_bytes(f.read())
        except (OSError, ValueError) as e:
            raise ValueError(f"{os.fspath(path)}: not a valid dense IUV target PNG: {e}") from e


class DensePoseData:
    """DensePose ground truth of one person in its box frame.

    Attributes:
        x, y: (P,) float32 point positions in the 256x256 box frame.
        i: (P,) int64 fine part labels 1..24.
        u, v: (P,) float32 chart coordinates in [0, 1].
        segm: (256,256) uint8 coarse part label map 0..14, or None.
        dense: :class:`DenseIUV` target (e.g. from ground-truth interpolation), or None. It
            follows flips like the points; :meth:`with_dense_points` turns it into points.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        i: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor,
        segm: Optional[torch.Tensor] = None,
        dense: Optional[DenseIUV] = None,
    ):
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=torch.float32)
        self.i = torch.as_tensor(i, dtype=torch.long)
        self.u = torch.as_tensor(u, dtype=torch.float32)
        self.v = torch.as_tensor(v, dtype=torch.float32)
        self.segm = None if segm is None else torch.as_tensor(segm, dtype=torch.uint8)
        if dense is not None and not isinstance(dense, DenseIUV):
            raise TypeError(f"dense must be a DenseIUV, got {type(dense).__name__}")
        self.dense = dense

    @classmethod
    def from_annotation(cls, ann: dict) -> "DensePoseData":
        """Build from a DensePose-COCO annotation dict (must have all ``dp_*`` keys)."""
        return cls(
            x=torch.tensor(ann["dp_x"], dtype=torch.float32),
            y=torch.tensor(ann["dp_y"], dtype=torch.float32),
            i=torch.tensor(np.round(np.asarray(ann["dp_I"], dtype=np.float64)), dtype=torch.long),
            u=torch.tensor(ann["dp_U"], dtype=torch.float32),
            v=torch.tensor(ann["dp_V"], dtype=torch.float32),
            segm=torch.from_numpy(decode_dp_masks(ann["dp_masks"])),
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __repr__(self) -> str:
        segm = "none" if self.segm is None else "x".join(map(str, self.segm.shape))
        dense = "none" if self.dense is None else f"{self.dense.size}x{self.dense.size}"
        return f"DensePoseData(num_points={len(self)}, segm={segm}, dense={dense})"

    def validate(self) -> None:
        """Check shapes and value ranges; raise ValueError saying what is wrong."""
        n = len(self)
        for name in ("y", "i", "u", "v"):
            t = getattr(self, name)
            if t.shape != (n,):
                raise ValueError(
                    f"DensePoseData.{name} has shape {tuple(t.shape)}, expected ({n},)"
                )
        if n:
            ranges = (("x", 0, FRAME_SIZE), ("y", 0, FRAME_SIZE), ("u", 0, 1), ("v", 0, 1))
            for name, lo, hi in ranges:
                t = getattr(self, name)
                if t.min() < lo or t.max() > hi:
                    raise ValueError(f"DensePoseData.{name} outside [{lo}, {hi}]")
            if self.i.min() < 1 or self.i.max() > NUM_FINE_PARTS:
                raise ValueError(f"DensePoseData.i outside 1..{NUM_FINE_PARTS}")
        if self.segm is not None:
            if self.segm.shape != (FRAME_SIZE, FRAME_SIZE):
                raise ValueError(f"DensePoseData.segm has shape {tuple(self.segm.shape)}")
            if self.segm.numel() and int(self.segm.max()) > NUM_COARSE_PARTS:
                raise ValueError(f"DensePoseData.segm labels outside 0..{NUM_COARSE_PARTS}")
        if self.dense is not None:
            self.dense.validate()

    def to(self, device: Union[str, torch.device]) -> "DensePoseData":
        """A copy on ``device`` (self if already there)."""
        if torch.device(device) == self.device:
            return self
        segm = None if self.segm is None else self.segm.to(device)
        dense = None if self.dense is None else self.dense.to(device)
        return DensePoseData(
            self.x.to(device), self.y.to(device), self.i.to(device), self.u.to(device),
            self.v.to(device), segm, dense,
        )

    def apply_transform(
        self,
        transforms: Union[Transform, TransformList, Sequence[Transform]],
        transform_data: Optional[DensePoseTransformData] = None,
    ) -> "DensePoseData":
        """The data as seen after ``transforms`` (returns a new object).

        Resizes leave box-relative data unchanged; an odd number of horizontal flips mirrors
        the frame (x -> 256 - x, segm and dense columns reversed), relabels fine and coarse
        parts and maps (U, V) through ``transform_data``'s symmetry tables. Other geometric
        transforms (crops, rotations, vertical flips) are refused: the box frame would no
        longer match.
        """
        if isinstance(transforms, TransformList):
            tfms = transforms.transforms
        elif isinstance(transforms, Transform):
            tfms = [transforms]
        else:
            tfms = list(transforms)
        n_flips = 0
        for t in tfms:
            if isinstance(t, HFlipTransform):
                n_flips += 1
            elif not isinstance(t, _BOX_INVARIANT_TRANSFORMS):
                raise NotImplementedError(
                    f"DensePose data cannot follow {type(t).__name__}: only resizes and "
                    "horizontal flips keep the 256x256 box frame meaningful"
                )
        if n_flips % 2 == 0:
            return self
        if transform_data is None:
            raise ValueError("a horizontal flip of DensePose data needs DensePoseTransformData")
        return self.hflip(transform_data)

    def hflip(self, transform_data: DensePoseTransformData) -> "DensePoseData":
        """The mirrored data: positions, part labels, (U, V), coarse mask and dense target."""
        td = transform_data.to(self.device)
        i, u, v = td.flip_iuv(self.i, self.u, self.v)
        segm = None
        if self.segm is not None:
            segm = td.flip_coarse_labels(self.segm.flip(1))
        dense = None if self.dense is None else self.dense.hflip(td)
        return DensePoseData(FRAME_SIZE - self.x, self.y.clone(), i, u, v, segm, dense)

    def with_dense_points(
        self, num: int, generator: Optional[torch.Generator] = None
    ) -> "DensePoseData":
        """The annotated points plus ``num`` points drawn from the dense target's labelled
        cells (see :meth:`DenseIUV.sample_points`), without the dense target.

        Dense supervision thus reaches the unchanged point losses; drawing anew at every call
        (every iteration) covers the whole target over training. Without a target, or with
        ``num`` = 0, only the target is dropped.
        """
        if self.dense is None or num <= 0:
            return DensePoseData(self.x, self.y, self.i, self.u, self.v, self.segm)
        x, y, i, u, v = (t.to(self.device) for t in self.dense.sample_points(num, generator))
        return DensePoseData(
            torch.cat([self.x, x]), torch.cat([self.y, y]), torch.cat([self.i, i]),
            torch.cat([self.u, u]), torch.cat([self.v, v]), self.segm,
        )


class DensePoseList:
    """Per-instance DensePose ground truth for an ``Instances`` field (``gt_densepose``).

    Entries are :class:`DensePoseData` or None for persons without DensePose annotation.
    Supports ``len``, iteration, indexing with an int (-> entry), a slice, a bool mask or a
    long index tensor / list (-> DensePoseList), ``to(device)`` and ``cat``.
    """

    def __init__(self, items: Sequence[Optional[DensePoseData]]):
        self.items: List[Optional[DensePoseData]] = list(items)
        for k, item in enumerate(self.items):
            if item is not None and not isinstance(item, DensePoseData):
                raise TypeError(f"DensePoseList entry {k} is {type(item).__name__}")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Optional[DensePoseData]]:
        return iter(self.items)

    def __repr__(self) -> str:
        return f"DensePoseList(num_instances={len(self)}, annotated={int(self.is_annotated.sum())})"

    @property
    def is_annotated(self) -> torch.Tensor:
        """(N,) bool: which instances carry DensePose data."""
        return torch.tensor([item is not None for item in self.items], dtype=torch.bool)

    def __getitem__(self, index) -> Union[Optional[DensePoseData], "DensePoseList"]:
        if isinstance(index, (int, np.integer)):
            return self.items[index]
        if isinstance(index, slice):
            return DensePoseList(self.items[index])
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise IndexError(f"bool mask of shape {tuple(idx.shape)} for {len(self)} items")
            idx = idx.nonzero().flatten()
        elif idx.dim() == 0:
            return self.items[int(idx)]
        return DensePoseList([self.items[int(k)] for k in idx.flatten().tolist()])

    def to(self, device: Union[str, torch.device]) -> "DensePoseList":
        """A copy with every entry on ``device``."""
        return DensePoseList([None if d is None else d.to(device) for d in self.items])

    @staticmethod
    def cat(lists: Sequence["DensePoseList"]) -> "DensePoseList":
        """Concatenate several lists (used by ``Instances.cat``)."""
        return DensePoseList([item for lst in lists for item in lst.items])
