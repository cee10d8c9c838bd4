"""Tables that say how DensePose labels change under a horizontal image flip.

A mirrored person is seen with left and right exchanged: fine parts (1..24) and coarse parts
(1..14) are relabelled by fixed permutations, and the chart coordinates (U, V) of a point move to
those of its mirror point, looked up in the per-part 256x256 ``UV_symmetry_transforms`` tables
(official file or computed from the embedded body model).
"""
from __future__ import annotations

import os
from typing import Optional, Tuple, Union

import numpy as np
import torch

from densepose_ext.body.body_model import get_body_model
from densepose_ext.body.charts import NUM_PARTS
from densepose_ext.body.official_formats import read_uv_symmetry
from densepose_ext.body.parts import COARSE_FLIP_PERMUTATION, FLIP_PERMUTATION

__all__ = [
    "FINE_PART_HFLIP",
    "COARSE_PART_HFLIP",
    "UV_TABLE_SIZE",
    "DensePoseTransformData",
    "DensePoseTransformDataError",
]

#: Fine part label after a horizontal flip, indexed by the label before (0 = background).
FINE_PART_HFLIP: Tuple[int, ...] = tuple(int(p) for p in FLIP_PERMUTATION)
#: Coarse part label (dp_masks numbering) after a horizontal flip, indexed by the label before.
COARSE_PART_HFLIP: Tuple[int, ...] = tuple(int(p) for p in COARSE_FLIP_PERMUTATION)
#: Side of the per-part (U, V) symmetry tables.
UV_TABLE_SIZE = 256

ArrayLike = Union[np.ndarray, torch.Tensor]


class DensePoseTransformDataError(ValueError):
    """A symmetry-table file or array is malformed (the message names the file and key)."""


def _check_tables(u_tables: np.ndarray, v_tables: np.ndarray, source: str) -> None:
    for key, t in (("U_transforms", u_tables), ("V_transforms", v_tables)):
        if t.shape != (NUM_PARTS, UV_TABLE_SIZE, UV_TABLE_SIZE):
            raise DensePoseTransformDataError(
                f"{source}: {key} must hold {NUM_PARTS} tables of "
                f"{UV_TABLE_SIZE}x{UV_TABLE_SIZE}, got array of shape {t.shape}"
            )
        if not np.all(np.isfinite(t)) or t.min() < 0.0 or t.max() > 1.0:
            raise DensePoseTransformDataError(f"{source}: {key} values must lie in [0, 1]")


class DensePoseTransformData:
    """Flip symmetries of DensePose labels: UV tables plus fine/coarse label permutations.

    Args:
        uv_symmetries: {"U_transforms": (24,256,256), "V_transforms": (24,256,256)} float
            tensors; entry [part-1, v_loc, u_loc] is the flipped U (resp. V) of a point of
            ``part`` with u_loc = int(U*255), v_loc = int(V*255).
        point_label_symmetries: (25,) long, flipped fine part label by label (0 = background).
        mask_label_symmetries: (15,) long, flipped coarse part label by label.
    """

    def __init__(
        self,
        uv_symmetries: dict,
        point_label_symmetries: Optional[torch.Tensor] = None,
        mask_label_symmetries: Optional[torch.Tensor] = None,
        device: Union[str, torch.device] = "cpu",
    ):
        u_tables = torch.as_tensor(uv_symmetries["U_transforms"], dtype=torch.float32)
        v_tables = torch.as_tensor(uv_symmetries["V_transforms"], dtype=torch.float32)
        _check_tables(u_tables.cpu().numpy(), v_tables.cpu().numpy(), "uv_symmetries")
        if point_label_symmetries is None:
            point_label_symmetries = torch.tensor(FINE_PART_HFLIP, dtype=torch.long)
        if mask_label_symmetries is None:
            mask_label_symmetries = torch.tensor(COARSE_PART_HFLIP, dtype=torch.long)
        self.uv_symmetries = {
            "U_transforms": u_tables.to(device),
            "V_transforms": v_tables.to(device),
        }
        self.point_label_symmetries = torch.as_tensor(point_label_symmetries).long().to(device)
        self.mask_label_symmetries = torch.as_tensor(mask_label_symmetries).long().to(device)
        if self.point_label_symmetries.shape != (NUM_PARTS + 1,):
            raise DensePoseTransformDataError("point_label_symmetries must have 25 entries")
        if self.mask_label_symmetries.shape != (15,):
            raise DensePoseTransformDataError("mask_label_symmetries must have 15 entries")
        self.device = torch.device(device)

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_tables(cls, u_tables: ArrayLike, v_tables: ArrayLike) -> "DensePoseTransformData":
        """Build from (24,256,256) U and V tables; label permutations are the standard ones."""
        return cls({"U_transforms": u_tables, "V_transforms": v_tables})

    @classmethod
    def from_mat(cls, path: Union[str, os.PathLike]) -> "DensePoseTransformData":
        """Read the official ``UV_symmetry_transforms.mat`` (keys U_transforms, V_transforms:
        (1,24) cells of 256x256 arrays) through the project's official-format reader."""
        path = os.fspath(path)
        try:
            u_tables, v_tables = read_uv_symmetry(path)
        except ValueError as e:  # OfficialFileError: names the file and the key
            raise DensePoseTransformDataError(str(e)) from e
        _check_tables(u_tables, v_tables, path)
        return cls.from_tables(u_tables, v_tables)

    @classmethod
    def from_body_model(cls, body_model=None) -> "DensePoseTransformData":
        """Tables of the embedded body model (``get_body_model().uv_symmetry``), built/cached
        on first use."""
        if body_model is None:
            body_model = get_body_model()
        u_tables, v_tables = body_model.uv_symmetry
        return cls.from_tables(np.asarray(u_tables), np.asarray(v_tables))

    def to(self, device: Union[str, torch.device]) -> "DensePoseTransformData":
        """A copy with all tables on ``device``."""
        if torch.device(device) == self.device:
            return self
        return DensePoseTransformData(
            self.uv_symmetries, self.point_label_symmetries, self.mask_label_symmetries, device
        )

    # ----------------------------------------------------------------------------- flipping
    def flip_iuv(
        self, i: ArrayLike, u: ArrayLike, v: ArrayLike
    ) -> Tuple[ArrayLike, ArrayLike, ArrayLike]:
        """Labels of the mirrored points: (I, U, V) -> (I', U', V'), vectorised.

        Accepts torch tensors or numpy arrays of any (equal) shape and returns the same kind.
        Background points (I = 0) keep their U, V.
        """
        as_numpy = isinstance(i, np.ndarray)
        it = torch.as_tensor(np.asarray(i) if as_numpy else i).long().to(self.device)
        ut = torch.as_tensor(np.asarray(u) if as_numpy else u).float().to(self.device)
        vt = torch.as_tensor(np.asarray(v) if as_numpy else v).float().to(self.device)
        if it.numel() and (it.min() < 0 or it.max() > NUM_PARTS):
            raise ValueError(f"part labels must lie in 0..{NUM_PARTS}")
        fg = it > 0
        part = (it - 1).clamp(min=0)
        last = UV_TABLE_SIZE - 1
        u_loc = (ut * last).long().clamp(0, last)
        v_loc = (vt * last).long().clamp(0, last)
        u_new = torch.where(fg, self.uv_symmetries["U_transforms"][part, v_loc, u_loc], ut)
        v_new = torch.where(fg, self.uv_symmetries["V_transforms"][part, v_loc, u_loc], vt)
        i_new = self.point_label_symmetries[it]
        if as_numpy:
            return i_new.cpu().numpy(), u_new.cpu().numpy(), v_new.cpu().numpy()
        return i_new, u_new, v_new

    def flip_coarse_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Coarse part labels (0..14) of the mirrored body."""
        return self.mask_label_symmetries.to(labels.device)[labels.long()].to(labels.dtype)
