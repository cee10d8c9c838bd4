"""Loading DensePose model-zoo checkpoints (detectron2 and Caffe2 Detectron layouts).

detectron2 DensePose checkpoints name the branch ``roi_heads.decoder.<level>.<k>`` /
``roi_heads.decoder.predictor`` (the decoder, when DECODER_ON),
``roi_heads.densepose_head.body_conv_fcnK`` and
``roi_heads.densepose_predictor.{ann_index_lowres, index_uv_lowres, u_lowres, v_lowres}``,
which is our layout, so those keys load unchanged. ``densepose_ext://<file>`` names a file of
the embedded model zoo (:mod:`densepose_ext.model_zoo`). Caffe2 Detectron DensePose blobs
(``body_conv_fcnK_w``, ``AnnIndex_lowres_w``, ``Index_UV_lowres_b``, ``U_lowres_w``, ...) and
DDP-wrapped state dicts (``module.`` prefix) are renamed by :func:`convert_densepose_keys`.

A checkpoint with DensePose tensors that leaves any DensePose / decoder tensor of the model
missing, or any of its own unused or of another shape, usually means a config mismatch (e.g.
DECODER_ON) and would silently give other outputs: :class:`DensePoseCheckpointer` raises
:class:`DensePoseCheckpointError` unless ``allow_partial``
(``MODEL.ROI_DENSEPOSE_HEAD.ALLOW_PARTIAL_CHECKPOINT``). Checkpoints without DensePose tensors
(e.g. a pretrained backbone) load as before.

Saving is crash-safe: every checkpoint and ``last_checkpoint`` is written to a temp file,
fsync'ed and renamed (:func:`densepose_ext.utils.atomic_write`), so a kill during a save leaves
the previous files as they were. ``resume_or_load(..., resume=True)`` loads the file
``last_checkpoint`` names only if it reads back; otherwise it falls back to the newest other
``model_*.pth`` that does, with a warning naming the bad file, and raises
:class:`DensePoseCheckpointError` when none does. A checkpoint file that does not load is a
:class:`DensePoseCheckpointError` naming it.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

from ..model_zoo import unreadable_error, zoo_entry_for_path
from ..utils import atomic_write

__all__ = [
    "DensePoseCheckpointError",
    "DensePoseCheckpointer",
    "convert_densepose_keys",
    "densepose_mismatch_hints",
    "is_densepose_key",
]

logger = logging.getLogger(__name__)

_HEAD = "roi_heads.densepose_head."
_PREDICTOR = "roi_heads.densepose_predictor."
_DECODER = "roi_heads.decoder."
_C2_PREDICTOR = {
    "AnnIndex_lowres": "ann_index_lowres",
    "Index_UV_lowres": "index_uv_lowres",
    "U_lowres": "u_lowres",
    "V_lowres": "v_lowres",
}
_C2_SUFFIX = {"w": "weight", "b": "bias"}
_C2_HEAD_RE = re.compile(r"^body_conv_fcn(\d+)_([wb])$")
_C2_PRED_RE = re.compile(r"^(AnnIndex_lowres|Index_UV_lowres|U_lowres|V_lowres)_([wb])$")
_CHECKPOINT_RE = re.compile(r"^(.+)_(\d+|final)\.pth$")
# what torch.load raises on a truncated or otherwise corrupt file
_UNREADABLE = (RuntimeError, EOFError, ValueError, KeyError, OSError, pickle.UnpicklingError,
               zipfile.BadZipFile, AttributeError, IndexError, TypeError)


def is_densepose_key(key: str) -> bool:
    """Whether a (converted) state-dict key belongs to the DensePose branch (decoder included)."""
    return key.startswith((_HEAD, _PREDICTOR, _DECODER))


class DensePoseCheckpointError(RuntimeError):
    """A checkpoint's DensePose tensors do not match the model's DensePose branch."""


def densepose_mismatch_hints(
    missing: List[str], unexpected: List[str], shapes: List[str], checkpoint_keys: List[str]
) -> List[str]:
    """Config keys that probably differ between the checkpoint's model and this one."""
    hints = []
    ckpt_decoder = any(k.startswith(_DECODER) for k in checkpoint_keys)
    if any(k.startswith(_DECODER) for k in missing) and not ckpt_decoder:
        hints.append("MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON (the checkpoint has no decoder: "
                     "False for it, as in upstream's *_legacy configs and our configs/embedded)")
    elif any(k.startswith(_DECODER) for k in unexpected) and not any(
            k.startswith(_DECODER) for k in missing):
        hints.append("MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON (the checkpoint has a decoder: True)")
    elif any(k.startswith(_DECODER) for k in missing + unexpected):
        hints.append("ROI_HEADS.IN_FEATURES or MODEL.ROI_DENSEPOSE_HEAD.DECODER_NORM")
    if any(k.startswith(_DECODER) for k in shapes):
        hints.append("MODEL.ROI_DENSEPOSE_HEAD.DECODER_CONV_DIMS / DECODER_NUM_CLASSES")
    if any(k.startswith(_HEAD) for k in missing + unexpected):
        hints.append("MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS or NAME")
    if any(k.startswith(_HEAD) for k in shapes):
        hints.append("MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM / CONV_HEAD_KERNEL "
                     "(or the pooled channels: DECODER_ON, DECODER_NUM_CLASSES, FPN.OUT_CHANNELS)")
    if any(k.startswith(_PREDICTOR) for k in shapes):
        hints.append("MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS / NUM_PATCHES / "
                     "DECONV_KERNEL")
    if any(k.startswith(_PREDICTOR) for k in missing + unexpected):
        hints.append("MODEL.ROI_DENSEPOSE_HEAD.PREDICTOR_NAME (confidence outputs?)")
    if unexpected and len(unexpected) == len(checkpoint_keys) and not missing:
        hints.append("MODEL.DENSEPOSE_ON (this model has no DensePose branch)")
    return hints


def _rename(key: str) -> str:
    if key.startswith("module."):
        key = key[len("module."):]
    m = _C2_HEAD_RE.match(key)
    if m:
        return f"{_HEAD}body_conv_fcn{m.group(1)}.{_C2_SUFFIX[m.group(2)]}"
    m = _C2_PRED_RE.match(key)
    if m:
        return f"{_PREDICTOR}{_C2_PREDICTOR[m.group(1)]}.{_C2_SUFFIX[m.group(2)]}"
    return key


def convert_densepose_keys(
    state_dict: Mapping[str, object]
) -> Tuple["OrderedDict", Dict[str, str]]:
    """Rename upstream / Caffe2 DensePose keys to ours; return (new dict, {old: new} renames).

    Keys that are not recognised are kept as they are.
    """
    out: "OrderedDict" = OrderedDict()
    renamed: Dict[str, str] = {}
    for key, value in state_dict.items():
        new = _rename(key)
        if new in out:
            raise KeyError(f"checkpoint keys {key!r} and another one both map to {new!r}")
        if new != key:
            renamed[key] = new
        out[new] = value
    return out, renamed


class DensePoseCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that also loads DensePose checkpoints of the upstream layouts.

    After :meth:`load`, ``self.incompatible`` holds the missing / unexpected keys of the last
    model load, and ``self.renamed_keys`` the renames applied. Every missing, unused or
    reshaped DensePose / decoder tensor is listed by name: as a :class:`DensePoseCheckpointError`
    when the checkpoint has DensePose tensors (unless ``allow_partial``, then a warning), as an
    info line when it has none (the branch keeps its initialisation).
    """

    def __init__(self, model, save_dir: str = "", *, save_to_disk=None,
                 allow_partial: bool = False, **checkpointables):
        """
        Args:
            model, save_dir, save_to_disk, checkpointables: as DetectionCheckpointer.
            allow_partial: load a checkpoint whose DensePose tensors do not all match with a
                warning instead of an error (``MODEL.ROI_DENSEPOSE_HEAD.ALLOW_PARTIAL_CHECKPOINT``).
        """
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.allow_partial = bool(allow_partial)
        self.incompatible = None
        self.renamed_keys: Dict[str, str] = {}

        self._preloaded: Optional[Tuple[str, Any]] = None  # (path, data) read by resume

    @classmethod
    def from_config(cls, cfg, model, save_dir: str = "", **kwargs) -> "DensePoseCheckpointer":
        """A checkpointer for ``model`` with ``allow_partial`` from ``cfg``."""
        allow = cfg.MODEL.get("ROI_DENSEPOSE_HEAD", {}).get("ALLOW_PARTIAL_CHECKPOINT", False)
        return cls(model, save_dir, allow_partial=allow, **kwargs)

    # ---- saving: temp file + fsync + rename, so a kill never leaves a partial file ----

    def _local_save_dir(self) -> bool:
        return "://" not in str(self.save_dir)

    def save(self, name: str, **kwargs: Any) -> None:
        """As fvcore's ``Checkpointer.save``, but atomic: the file (then ``last_checkpoint``)
        appears complete or not at all."""
        if not self.save_dir or not self.save_to_disk:
            return
        if not self._local_save_dir():  # remote storage: fvcore's in-place write
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        if os.path.basename(save_file) != basename:
            raise ValueError(f"checkpoint name {name!r} is not a plain file name")
        self.logger.info("Saving checkpoint to %s", save_file)
        with atomic_write(save_file, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Name the last checkpoint in ``save_dir/last_checkpoint`` (atomically)."""
        if not self._local_save_dir():
            return super().tag_last_checkpoint(last_filename_basename)
        with atomic_write(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

    # ---- loading ----

    def load(self, path: str, *args, **kwargs):
        """As DetectionCheckpointer.load; a missing file is a DensePoseCheckpointError."""
        if path and not isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            local = path if os.path.isfile(path) else self.path_manager.get_local_path(path)
            if not os.path.isfile(local):
                raise DensePoseCheckpointError(f"checkpoint {path}: no such file")
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str):
        if self._preloaded is not None and self._preloaded[0] == filename:
            data, self._preloaded = self._preloaded[1], None  # verified by resume_or_load
            return data
        try:
            return super()._load_file(filename)
        except Exception as e:
            if zoo_entry_for_path(filename) is not None:
                # a model-zoo file that does not load names the command that rebuilds it
                raise unreadable_error(filename, e) from e
            if isinstance(e, _UNREADABLE):
                raise DensePoseCheckpointError(
                    f"checkpoint {filename}: not readable, truncated or corrupt "
                    f"({type(e).__name__}: {e})") from e
            raise

    def unreadable_reason(self, filename: str, keep: bool = False) -> Optional[str]:
        """None when ``filename`` loads as a checkpoint with a model state, else why not.
        ``keep``: hold the loaded data for the next :meth:`load` of that file."""
        if not os.path.isfile(filename):
            return "no such file"
        try:
            data = self._load_file(filename)
        except Exception as e:  # noqa: BLE001 (any failure makes the file unusable)
            return f"{type(e).__name__}: {e}"
        if not isinstance(data, dict) or not isinstance(data.get("model"), Mapping):
            return "no model state in it"
        if keep:
            self._preloaded = (filename, data)
        return None

    def _resume_candidates(self, tagged: str) -> List[str]:
        """``tagged`` first, then the other ``<prefix>_<iter>.pth`` / ``<prefix>_final.pth``
        of ``save_dir``, newest iteration first (final before numbered)."""
        others = []
        for path in self.get_all_checkpoint_files():
            m = _CHECKPOINT_RE.match(os.path.basename(path))
            if m and os.path.abspath(path) != os.path.abspath(tagged or ""):
                order = float("inf") if m.group(2) == "final" else int(m.group(2))
                others.append((order, os.path.getmtime(path), path))
        return ([tagged] if tagged else []) + [p for _, _, p in sorted(others, reverse=True)]

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """As fvcore's, but a resume only takes a checkpoint that loads: when the file named by
        ``last_checkpoint`` is missing, truncated or corrupt (or ``last_checkpoint`` itself is
        missing while checkpoints exist), the newest other checkpoint of ``save_dir`` that loads
        is used, with a warning naming the bad file, and ``last_checkpoint`` is set to it; when
        none loads, :class:`DensePoseCheckpointError`. Temp files of killed saves are removed."""
        if not (resume and self.save_dir and self._local_save_dir()
                and os.path.isdir(self.save_dir)):
            return super().resume_or_load(path, resume=resume)
        self._remove_stale_temp_files()
        bad = []
        tagged = ""
        if self.has_checkpoint():
            tagged = self.get_checkpoint_file()
            name = os.path.relpath(tagged, self.save_dir) if tagged else ""
            if not name or name == "." or os.sep in name or name.startswith(".."):
                bad.append((os.path.join(self.save_dir, "last_checkpoint"),
                            f"names no checkpoint file of {self.save_dir}: {name!r}"))
                tagged = ""
        candidates = self._resume_candidates(tagged)
        if not candidates and not bad:  # nothing saved yet: a fresh start from ``path``
            return super().resume_or_load(path, resume=resume)
        if not self.has_checkpoint():
            bad.append((os.path.join(self.save_dir, "last_checkpoint"), "missing"))
        for candidate in candidates:
            why = self.unreadable_reason(candidate, keep=True)
            if why is None:
                if bad:
                    logger.warning(
                        "Resuming from %s instead: %s", candidate,
                        "; ".join(f"{p} is bad ({w})" for p, w in bad))
                    self.tag_last_checkpoint(os.path.basename(candidate))
                return self.load(candidate)
            bad.append((candidate, why))
        raise DensePoseCheckpointError(
            f"--resume: no checkpoint in {self.save_dir} loads: "
            + "; ".join(f"{p} ({w})" for p, w in bad)
            + ". Delete the bad files to train from MODEL.WEIGHTS, or run without --resume "
            "into another OUTPUT_DIR.")

    def _remove_stale_temp_files(self) -> None:
        """Delete ``.<name>.pth.*.tmp`` / ``.last_checkpoint.*.tmp`` left by killed saves."""
        for name in os.listdir(self.save_dir):
            if name.startswith(".") and name.endswith(".tmp") and (
                    ".pth." in name or name.startswith(".last_checkpoint.")):
                logger.info("Removing %s (left by an interrupted save)", name)
                try:
                    os.unlink(os.path.join(self.save_dir, name))
                except FileNotFoundError:
                    pass

    def _load_model(self, checkpoint: dict):
        state, self.renamed_keys = convert_densepose_keys(checkpoint["model"])
        if self.renamed_keys:
            logger.info("Renamed %d DensePose checkpoint keys to this model's layout",
                        len(self.renamed_keys))
        dp_state = OrderedDict((k, v) for k, v in state.items() if is_densepose_key(k))
        rest = OrderedDict((k, v) for k, v in state.items() if not is_densepose_key(k))
        if checkpoint.get("matching_heuristics", False):
            # detectron2's name heuristics (and Caffe2 renames) only for the other keys: they
            # would mangle the already-converted DensePose names.
            self._convert_ndarray_to_tensor(rest)
            self._convert_ndarray_to_tensor(dp_state)
            model_state = {
                k: v for k, v in self.model.state_dict().items() if not is_densepose_key(k)
            }
            if rest:  # (the heuristics fail on an empty dict)
                rest = align_and_update_state_dicts(
                    model_state, rest, c2_conversion=checkpoint.get("__author__") == "Caffe2"
                )
            checkpoint = dict(checkpoint, matching_heuristics=False)
        rest.update(dp_state)
        checkpoint = dict(checkpoint, model=rest)
        incompatible = super()._load_model(checkpoint)
        self.incompatible = incompatible
        if incompatible is not None:
            self._check_densepose(list(dp_state))
        return incompatible

    def _check_densepose(self, checkpoint_keys: List[str]) -> None:
        """Report (or refuse) DensePose / decoder tensors the last load did not match."""
        shapes = self.densepose_incorrect_shapes
        reshaped = {k for k, _, _ in shapes}
        missing = [k for k in self.densepose_missing_keys if k not in reshaped]
        unexpected = self.densepose_unexpected_keys
        if not (missing or unexpected or shapes):
            return
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"in the checkpoint but not in the model ({len(unexpected)}): "
                         f"{', '.join(unexpected)}")
        if shapes:
            parts.append("of another shape (checkpoint vs model): " + ", ".join(
                f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in shapes))
        report = "DensePose tensors not loaded: " + "; ".join(parts)
        if not checkpoint_keys:
            logger.info("Checkpoint has no DensePose tensors: the DensePose branch keeps its "
                        "initialisation (%d tensors: %s)", len(missing), ", ".join(missing))
            return
        hints = densepose_mismatch_hints(missing, unexpected, list(reshaped), checkpoint_keys)
        if hints:
            report += ". Probably a config mismatch: " + "; ".join(hints)
        if self.allow_partial:
            logger.warning("%s (loaded anyway: MODEL.ROI_DENSEPOSE_HEAD.ALLOW_PARTIAL_CHECKPOINT)",
                           report)
            return
        raise DensePoseCheckpointError(
            report + ". Set MODEL.ROI_DENSEPOSE_HEAD.ALLOW_PARTIAL_CHECKPOINT True to load the "
            "matching tensors anyway."
        )

    @property
    def densepose_missing_keys(self) -> List[str]:
        """DensePose keys of the model that the last checkpoint did not provide."""
        if self.incompatible is None:
            return []
        return [k for k in self.incompatible.missing_keys if is_densepose_key(k)]

    @property
    def densepose_unexpected_keys(self) -> List[str]:
        """DensePose keys of the last checkpoint that the model does not have."""
        if self.incompatible is None:
            return []
        return [k for k in self.incompatible.unexpected_keys if is_densepose_key(k)]

    @property
    def densepose_incorrect_shapes(self) -> List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]:
        """(key, checkpoint shape, model shape) of DensePose tensors not loaded for their shape."""
        shapes: Optional[list] = getattr(self.incompatible, "incorrect_shapes", None)
        return [s for s in shapes or [] if is_densepose_key(s[0])]
