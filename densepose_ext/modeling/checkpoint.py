"""Loading DensePose model-zoo checkpoints (detectron2 and Caffe2 Detectron layouts).

detectron2 DensePose checkpoints name the branch ``roi_heads.densepose_head.body_conv_fcnK``
and ``roi_heads.densepose_predictor.{ann_index_lowres, index_uv_lowres, u_lowres, v_lowres}``,
which is our layout, so those keys load unchanged. ``densepose_ext://<file>`` names a file of
the embedded model zoo (:mod:`densepose_ext.model_zoo`). Caffe2 Detectron DensePose blobs
(``body_conv_fcnK_w``, ``AnnIndex_lowres_w``, ``Index_UV_lowres_b``, ``U_lowres_w``, ...) and
DDP-wrapped state dicts (``module.`` prefix) are renamed by :func:`convert_densepose_keys`.
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Tuple

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

from ..model_zoo import unreadable_error, zoo_entry_for_path

__all__ = ["DensePoseCheckpointer", "convert_densepose_keys", "is_densepose_key"]

logger = logging.getLogger(__name__)

_HEAD = "roi_heads.densepose_head."
_PREDICTOR = "roi_heads.densepose_predictor."
_C2_PREDICTOR = {
    "AnnIndex_lowres": "ann_index_lowres",
    "Index_UV_lowres": "index_uv_lowres",
    "U_lowres": "u_lowres",
    "V_lowres": "v_lowres",
}
_C2_SUFFIX = {"w": "weight", "b": "bias"}
_C2_HEAD_RE = re.compile(r"^body_conv_fcn(\d+)_([wb])$")
_C2_PRED_RE = re.compile(r"^(AnnIndex_lowres|Index_UV_lowres|U_lowres|V_lowres)_([wb])$")


def is_densepose_key(key: str) -> bool:
    """Whether a (converted) state-dict key belongs to the DensePose branch."""
    return key.startswith((_HEAD, _PREDICTOR))


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
    model load, and ``self.renamed_keys`` the renames applied; missing or unexpected
    DensePose keys are logged as a warning.
    """

    def __init__(self, model, save_dir: str = "", *, save_to_disk=None, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.incompatible = None
        self.renamed_keys: Dict[str, str] = {}

    def _load_file(self, filename: str):
        # a model-zoo file that does not load names the command that rebuilds it
        try:
            return super()._load_file(filename)
        except Exception as e:
            if zoo_entry_for_path(filename) is None:
                raise
            raise unreadable_error(filename, e) from e

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
            missing = [k for k in incompatible.missing_keys if is_densepose_key(k)]
            unexpected = [k for k in incompatible.unexpected_keys if is_densepose_key(k)]
            if missing or unexpected:
                logger.warning(
                    "DensePose keys not matched: missing %s; unexpected %s",
                    missing or "none", unexpected or "none",
                )
        return incompatible

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


