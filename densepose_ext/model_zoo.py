"""The embedded model zoo: pretrained weights shipped with the repository (see MODEL_ZOO.md).

Configs name a zoo file as ``MODEL.WEIGHTS: "densepose_ext://<file>"``, the way detectron2
configs name ``detectron2://ImageNetPretrained/...``; the prefix resolves to the repository's
``model_zoo/`` folder (or ``$DENSEPOSE_EXT_MODEL_ZOO``). A missing or unreadable zoo file
raises :class:`ModelZooError` with the command that rebuilds it.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import torch
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

from .utils import atomic_write

__all__ = ["PREFIX", "ModelZooEntry", "MODEL_ZOO", "ModelZooError", "model_zoo_dir",
           "get_local_path", "zoo_entry_for_path", "unreadable_error", "export_pretrained"]

PREFIX = "densepose_ext://"


class ModelZooError(FileNotFoundError):
    """A model-zoo file is missing or unreadable; the message names the rebuild command."""


@dataclass(frozen=True)
class ModelZooEntry:
    """One shipped checkpoint: the config that trains it and the command that rebuilds it."""

    file_name: str
    config: str
    rebuild_command: str
    #: state-dict prefixes the file keeps (the rest of the trained model is not shipped)
    keep_prefixes: Sequence[str]


#: file name -> entry. The pretrained network keeps its backbone, RPN and box head; its mask
#: and keypoint heads stay out, so multi-task and cascade models learn those heads from the
#: DensePose training images on the same footing as the DensePose head.
MODEL_ZOO: Dict[str, ModelZooEntry] = {
    "R_18_GN_FPN_pretrain.pth": ModelZooEntry(
        file_name="R_18_GN_FPN_pretrain.pth",
        config="configs/embedded/keypoint_mask_rcnn_R_18_GN_FPN_pretrain.yaml",
        rebuild_command="python tools/pretrain_model_zoo.py",
        keep_prefixes=("backbone.", "proposal_generator.", "roi_heads.box_head.",
                       "roi_heads.box_predictor."),
    ),
}


def model_zoo_dir() -> Path:
    """``$DENSEPOSE_EXT_MODEL_ZOO`` if set, else the repository's ``model_zoo/`` folder."""
    env = os.environ.get("DENSEPOSE_EXT_MODEL_ZOO")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "model_zoo"


def _rebuild_hint(name: str) -> str:
    entry = MODEL_ZOO.get(name)
    if entry is None:
        known = ", ".join(sorted(MODEL_ZOO))
        return f"it is not a model-zoo file (known: {known})"
    return f"rebuild it with `{entry.rebuild_command}` (see MODEL_ZOO.md)"


def get_local_path(path: str) -> str:
    """Local file of a ``densepose_ext://<file>`` name; ModelZooError if it is missing."""
    name = path[len(PREFIX):] if path.startswith(PREFIX) else path
    local = model_zoo_dir() / name
    if not local.is_file():
        raise ModelZooError(f"{path}: model-zoo file {local} does not exist; {_rebuild_hint(name)}")
    return str(local)


def zoo_entry_for_path(filename: str) -> Optional[ModelZooEntry]:
    """The entry whose file ``filename`` is, if it lies in the model-zoo folder."""
    path = Path(filename).resolve()
    if path.parent != model_zoo_dir().resolve():
        return None
    return MODEL_ZOO.get(path.name)


def unreadable_error(filename: str, error: Exception) -> ModelZooError:
    """The error for a zoo file that exists but does not load (truncated, corrupt)."""
    name = Path(filename).name
    return ModelZooError(f"{filename}: model-zoo file is unreadable ({type(error).__name__}: "
                         f"{error}); {_rebuild_hint(name)}")


class _ModelZooHandler(PathHandler):
    """iopath handler of the ``densepose_ext://`` prefix."""

    def _get_supported_prefixes(self):
        return [PREFIX]

    def _get_local_path(self, path: str, **kwargs) -> str:
        return get_local_path(path)

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs):
        return open(get_local_path(path), mode, buffering=buffering)

    def _isfile(self, path: str, **kwargs) -> bool:
        return (model_zoo_dir() / path[len(PREFIX):]).is_file()


if PREFIX not in PathManager._path_handlers:
    PathManager.register_handler(_ModelZooHandler())


def export_pretrained(checkpoint: Mapping, out_file: os.PathLike, entry: ModelZooEntry,
                      meta: Optional[dict] = None) -> Dict[str, int]:
    """Write the kept part of a trained ``checkpoint`` (detectron2 layout) as a zoo file.

    Floating-point tensors are stored in fp16 (the file must stay small); the file is
    written atomically. Returns {prefix: number of tensors kept}.
    """
    state = checkpoint["model"]
    kept = OrderedDict(
        (k, v.half() if v.is_floating_point() else v)
        for k, v in state.items() if k.startswith(tuple(entry.keep_prefixes))
    )
    counts = {p: sum(k.startswith(p) for k in kept) for p in entry.keep_prefixes}
    missing = [p for p, n in counts.items() if n == 0]
    if missing:
        raise KeyError(f"checkpoint has no tensors under {missing}: not a {entry.config} model")
    with atomic_write(out_file) as f:
        torch.save({"model": kept, "__author__": "densepose_ext model zoo",
                    "matching_heuristics": False, "meta": dict(meta or {})}, f)
    return counts
