"""Read/write the body model in the SMPL ``.pkl`` layout, and load it with ``smplx``.

The layout is the one of the official SMPL model files (a pickled dict): v_template, f,
J_regressor (scipy.sparse), weights, kintree_table, shapedirs, posedirs, J, bs_style, bs_type.
Our files hold plain numpy / scipy objects (no chumpy), written with pickle protocol 2 so the
Python-2-era readers load them too.
"""
import contextlib
import io
import os
import pickle
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
from scipy import sparse

from ..utils import atomic_write
from .assembly import get_template

__all__ = ["SmplFileError", "REQUIRED_KEYS", "write_smpl_pickle", "read_smpl_pickle",
           "load_smplx_model", "smplx_vertex_ids"]

PathLike = Union[str, os.PathLike]
REQUIRED_KEYS = ("v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs",
                 "posedirs")
_ROOT_PARENT = np.uint32(4294967295)


class SmplFileError(ValueError):
    """A SMPL model file is unreadable or lacks a key; the message names the file."""


def write_smpl_pickle(template, path: PathLike) -> Path:
    """Write ``template`` (a :class:`BodyTemplate`) as a SMPL model pickle, atomically."""
    path = Path(path)
    n = len(template.vertices)
    parents = np.asarray(template.parents, dtype=np.int64)
    kintree = np.stack([np.where(parents < 0, _ROOT_PARENT, parents).astype(np.uint32),
                        np.arange(len(parents), dtype=np.uint32)])
    data: Dict[str, Any] = {
        "v_template": np.asarray(template.vertices, dtype=np.float64),
        "f": np.asarray(template.faces, dtype=np.uint32),
        "J_regressor": sparse.csc_matrix(np.asarray(template.J_regressor, dtype=np.float64)),
        "weights": np.asarray(template.weights, dtype=np.float64),
        "kintree_table": kintree,
        "shapedirs": np.asarray(template.shapedirs, dtype=np.float64).reshape(n, 3, -1),
        "posedirs": np.asarray(template.posedirs, dtype=np.float64).reshape(n, 3, -1),
        "J": np.asarray(template.joints, dtype=np.float64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    with atomic_write(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    return path


class _ChumpyStub:
    """Stand-in for a chumpy array found in an official file: keeps its state, exposes .r."""

    def __setstate__(self, state):  # chumpy pickles a dict holding the array under "x"
        self.__dict__.update(state if isinstance(state, dict) else {"x": state})

    @property
    def r(self) -> np.ndarray:
        return np.asarray(self.__dict__.get("x"))


class _Unpickler(pickle.Unpickler):
    """Unpickler resolving chumpy classes to :class:`_ChumpyStub` (no chumpy needed)."""

    def find_class(self, module: str, name: str):
        if module.startswith("chumpy"):
            return _ChumpyStub
        return super().find_class(module, name)


def _to_numpy(value: Any) -> Any:
    if sparse.issparse(value):
        return value
    if isinstance(value, _ChumpyStub):
        return value.r
    if isinstance(value, (list, tuple)) or (hasattr(value, "__array__") and
                                            not isinstance(value, (str, bytes))):
        return np.asarray(value)
    return value


def read_smpl_pickle(path: PathLike) -> Dict[str, Any]:
    """Read a SMPL model pickle into a dict of numpy arrays (``J_regressor`` made dense).

    Works for our files and for official ones (chumpy arrays are read without chumpy).
    Raises :class:`SmplFileError` naming the file for an unreadable file or a missing key.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = _Unpickler(fh, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
        raise SmplFileError(f"{path}: cannot read SMPL model pickle ({e})") from e
    if not isinstance(raw, dict):
        raise SmplFileError(f"{path}: expected a pickled dict, got {type(raw).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise SmplFileError(f"{path}: SMPL model file lacks key(s) {missing}")
    out = {k: _to_numpy(v) for k, v in raw.items()}
    if sparse.issparse(out["J_regressor"]):
        out["J_regressor"] = np.asarray(out["J_regressor"].toarray())
    n = out["v_template"].shape[0] if getattr(out["v_template"], "ndim", 0) == 2 else -1
    for key, shape in (("v_template", (n, 3)), ("weights", (n, None)),
                       ("J_regressor", (None, n)), ("kintree_table", (2, None))):
        arr = out[key]
        if n < 0 or arr.ndim != 2 or any(s is not None and s != d for s, d in zip(shape, arr.shape)):
            raise SmplFileError(f"{path}: key {key!r} has shape {getattr(arr, 'shape', None)}, "
                                f"expected {shape}")
    out["f"] = np.asarray(out["f"], dtype=np.int64)
    return out


def smplx_vertex_ids(template) -> Dict[str, int]:
    """The ``vertex_ids`` dict smplx needs for its extra (face) joints, from our template."""
    kv = template.keypoint_vertices
    return {"nose": kv["nose"], "reye": kv["right_eye"], "leye": kv["left_eye"],
            "rear": kv["right_ear"], "lear": kv["left_ear"]}


def load_smplx_model(path: PathLike, batch_size: int = 1, vertex_ids: Dict[str, int] = None,
                     **kwargs):
    """``smplx.SMPL`` built from a SMPL model pickle (ours or an official one).

    Workarounds, done here so callers need none:
    * smplx's default extra-joint vertex ids are those of the 6890-vertex SMPL mesh; for
      another mesh they are taken from our template (nose, eyes, ears) and the toe / finger
      tip joints are disabled. smplx ``joints`` are then 24 SMPL joints followed by nose,
      right eye, left eye, right ear, left ear.
    * smplx reads the pickle with ``pickle.load``, which needs chumpy for official files;
      we read the file ourselves (chumpy-free) and pass it as ``data_struct``.
    """
    import smplx  # heavy: loaded only when a body is posed
    from smplx.utils import Struct

    data = read_smpl_pickle(path)
    data["J_regressor"] = sparse.csc_matrix(data["J_regressor"])
    n = data["v_template"].shape[0]
    if vertex_ids is None and n != 6890:
        tpl = get_template()
        if n != tpl.num_vertices:
            raise SmplFileError(f"{path}: {n} vertices; pass vertex_ids for this mesh")
        vertex_ids = smplx_vertex_ids(tpl)
    if vertex_ids is not None:
        kwargs.setdefault("use_hands", False)
        kwargs.setdefault("use_feet_keypoints", False)
    # smplx prints a notice for models with 10 shape directions (the SMPL norm): silence it
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.SMPL(model_path=str(path), data_struct=Struct(**data),
                          batch_size=batch_size, vertex_ids=vertex_ids, **kwargs)
