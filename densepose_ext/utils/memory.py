"""Measured CPU memory of a piece of PyTorch work: peak bytes of live tensors, and the bytes
autograd saves for the backward pass.

How it is measured (nothing is estimated from shapes):

* **Peak.** Inside :func:`measure_memory` the work runs under ``torch.profiler.profile(
  profile_memory=True)``. PyTorch's CPU allocator then reports every block it hands out
  (+bytes) and every block it takes back (-bytes) that was handed out while profiling. These
  events, put in time order (and in recorded order at equal times), are summed into a running
  total: its maximum is the largest number of bytes that the work held at once on top of what
  was alive before it (``peak_increase_bytes``). ``peak_bytes`` adds the bytes of the tensors
  the caller names as alive at the start (``alive``: parameters, buffers, the input), each
  storage counted once. Blocks freed during the work but allocated before it are not reported
  by the allocator, so a step that frees old tensors is not credited for them; memory that
  does not come from PyTorch's allocator (numpy arrays wrapped with ``torch.from_numpy``,
  library scratch space) is not seen.
* **Saved for backward.** ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor
  autograd keeps for the backward pass; their storages are counted once each (keyed by
  address and size: a storage saved by two operations, e.g. a ReLU output also read by the
  next layer, counts once), minus the storages of ``exclude`` (parameters and buffers are not
  activations). Exact while the saved tensors stay alive, as they do from a forward pass to
  its backward pass.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.autograd.graph import saved_tensors_hooks

__all__ = ["MemoryMeasurement", "measure_memory", "storage_bytes", "SavedTensorsCounter"]

_MEMORY_EVENT = "[memory]"


def _storage_key(t: torch.Tensor) -> Optional[Tuple[int, int]]:
    """(address, bytes) of the storage under ``t``; None for tensors without one (meta,
    sparse, wrapper subclasses)."""
    try:
        s = t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    if t.device.type == "meta":
        return None
    return s.data_ptr(), s.nbytes()


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages under ``tensors`` (views of one storage count once)."""
    keys = {_storage_key(t) for t in tensors if isinstance(t, torch.Tensor)}
    return sum(k[1] for k in keys if k is not None)


class SavedTensorsCounter(saved_tensors_hooks):
    """While active, records the storage of every tensor autograd saves for backward;
    ``bytes`` is their total, each storage once, without those of ``exclude``."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._excluded = {_storage_key(t) for t in exclude}
        self._saved: Dict[Tuple[int, int], None] = {}
        super().__init__(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key is not None and key not in self._excluded:
            self._saved[key] = None
        return t

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self._saved)

    @property
    def count(self) -> int:
        """Number of distinct storages saved."""
        return len(self._saved)


@dataclass
class MemoryMeasurement:
    """What :func:`measure_memory` measured (filled when its block ends)."""

    alive_bytes: int = 0  # storages named alive at the start
    peak_increase_bytes: int = 0  # most bytes held at once on top of those alive before
    end_increase_bytes: int = 0  # bytes still held at the end (e.g. gradients)
    saved_bytes: int = 0  # storages saved for backward, each once, ``exclude`` left out
    saved_storages: int = 0
    allocator_events: int = 0  # allocations and frees seen

    @property
    def peak_bytes(self) -> int:
        """Peak bytes of live tensors: those named alive plus the peak increase."""
        return self.alive_bytes + self.peak_increase_bytes

    def as_dict(self) -> dict:
        return {"peak_bytes": self.peak_bytes, "alive_bytes": self.alive_bytes,
                "peak_increase_bytes": self.peak_increase_bytes,
                "end_increase_bytes": self.end_increase_bytes,
                "saved_bytes": self.saved_bytes, "saved_storages": self.saved_storages,
                "allocator_events": self.allocator_events}


def _running_peak(profiler) -> Tuple[int, int, int]:
    """(peak, final, number of events) of the running sum of the profiler's CPU allocator
    events, in time order."""
    events = [e for e in profiler.profiler.kineto_results.events()
              if e.name() == _MEMORY_EVENT and e.device_type() == DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())  # stable: equal times keep the recorded order
    if not events:
        return 0, 0, 0
    total = np.cumsum(np.array([e.nbytes() for e in events], dtype=np.int64))
    return max(0, int(total.max())), int(total[-1]), len(events)


@contextlib.contextmanager
def measure_memory(alive: Iterable[torch.Tensor] = (), exclude: Iterable[torch.Tensor] = (),
                   saved: bool = True) -> Iterator[MemoryMeasurement]:
    """Measure the CPU memory of the work done in the ``with`` block (see the module doc).

    Args:
        alive: tensors alive at the start that belong to the work (parameters, buffers,
            inputs); their storages make ``alive_bytes``.
        exclude: tensors whose storages do not count as saved activations (parameters,
            buffers).
        saved: also count the tensors saved for backward.

    Yields a :class:`MemoryMeasurement`, filled when the block ends::

        with measure_memory(alive=[*model.parameters(), *model.buffers()],
                            exclude=[*model.parameters(), *model.buffers()]) as m:
            sum(model(batch).values()).backward()
        m.peak_bytes, m.saved_bytes
    """
    from torch.profiler import ProfilerActivity, profile

    result = MemoryMeasurement(alive_bytes=storage_bytes(alive))
    counter = SavedTensorsCounter(exclude) if saved else contextlib.nullcontext()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with counter:
            yield result
    result.peak_increase_bytes, result.end_increase_bytes, result.allocator_events = \
        _running_peak(prof)
    if saved:
        result.saved_bytes, result.saved_storages = counter.bytes, counter.count
