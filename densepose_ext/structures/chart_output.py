"""Per-instance DensePose chart predictions: coarse/fine segmentation and U, V on an SxS grid."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence, Union

import numpy as np
import torch

__all__ = ["DensePoseChartOutput"]


@dataclass
class DensePoseChartOutput:
    """DensePose chart outputs for N instances, each on an SxS grid spanning its box.

    Attributes (raw scores, no softmax applied):
        coarse_segm: (N, K, S, S) coarse segmentation logits, K = 2 (bg / person) or 15.
        fine_segm: (N, C, S, S) fine part logits, C = 25 (background + 24 parts).
        u, v: (N, C, S, S) chart coordinates predicted for every part channel.

    Grid cell (r, c) of a box (x0, y0, x1, y1) is centred at
    (x0 + (c + 0.5) * w / S, y0 + (r + 0.5) * h / S) in image coordinates.
    Usable as an ``Instances`` field: supports ``len``, indexing, ``to`` and ``cat``.
    """

    coarse_segm: torch.Tensor
    fine_segm: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor

    def __post_init__(self) -> None:
        n = self.coarse_segm.shape[0]
        for f in fields(self):
            t = getattr(self, f.name)
            if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[0] != n:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"DensePoseChartOutput.{f.name} must be an (N,C,S,S) tensor with N={n}, "
                    f"got {shape}"
                )

    def __len__(self) -> int:
        return int(self.coarse_segm.shape[0])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{f.name}={tuple(getattr(self, f.name).shape)}" for f in fields(self))
        return f"DensePoseChartOutput({shapes})"

    @property
    def device(self) -> torch.device:
        return self.coarse_segm.device

    def __getitem__(
        self, index: Union[int, slice, torch.Tensor, Sequence[int]]
    ) -> "DensePoseChartOutput":
        """Select instances (an int keeps the instance dimension, of size 1)."""
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= int(index) < n:
                raise IndexError(f"index {index} out of range for {n} instances")
            index = slice(int(index), int(index) + 1 if int(index) != -1 else None)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, device=self.device)
            if index.dtype == torch.bool and index.shape != (len(self),):
                raise IndexError(
                    f"bool mask of shape {tuple(index.shape)} for {len(self)} instances"
                )
        return DensePoseChartOutput(
            **{f.name: getattr(self, f.name)[index] for f in fields(self)}
        )

    def to(self, device: Union[str, torch.device]) -> "DensePoseChartOutput":
        """A copy with every tensor on ``device``."""
        return DensePoseChartOutput(
            **{f.name: getattr(self, f.name).to(device) for f in fields(self)}
        )

    @staticmethod
    def cat(outputs: Sequence["DensePoseChartOutput"]) -> "DensePoseChartOutput":
        """Concatenate along the instance dimension (used by ``Instances.cat``)."""
        if len(outputs) == 0:
            raise ValueError("DensePoseChartOutput.cat needs at least one output")
        return DensePoseChartOutput(
            **{f.name: torch.cat([getattr(o, f.name) for o in outputs]) for f in fields(outputs[0])}
        )

    def split(self, sizes: Sequence[int]) -> list:
        """Split into consecutive chunks of ``sizes`` instances (e.g. one chunk per image)."""
        parts = {f.name: torch.split(getattr(self, f.name), list(sizes)) for f in fields(self)}
        return [
            DensePoseChartOutput(**{name: chunks[k] for name, chunks in parts.items()})
            for k in range(len(sizes))
        ]
