"""Read and write the DensePose data files in their official layouts.

- ``SMPL_subdiv.mat``: ``Part_ID_subdiv`` (M,1) uint8, ``U_subdiv``, ``V_subdiv`` (M,1)
  float64 over chart vertices (the evaluator does ``np.array([U_subdiv, V_subdiv]).squeeze()``
  and indexes its coarse-part table with ``Part_ID_subdiv``, so part ids must be integers); we
  add ``vertex`` (3,M) float64 positions and ``faces`` (F,3) int32 1-based chart-vertex indices.
- ``SMPL_SUBDIV_TRANSFORM.mat``: ``index`` (M,1) int32, 1-based index of each chart vertex into
  the vertex set of the geodesic matrix (for our body: mesh vertex + 1).
- ``Pdist_matrix.pkl``: ``{"Pdist_matrix": (n(n-1)/2, 1)}`` condensed pairwise geodesic
  distances in the order DensePose's evaluator reads them: pair (i, j), i > j, sits at
  ``i*(i-1)/2 + j`` (the lower triangle row by row, ``np.tril_indices(n, -1)``). This is NOT
  ``scipy.spatial.distance.squareform``'s order (upper triangle row by row); the evaluator's
  index arithmetic in ``getDistancesUV`` was checked against both in the tests.
- ``UV_symmetry_transforms.mat``: ``U_transforms``, ``V_transforms``, each a (1,24) cell of
  256x256 arrays indexed ``[v_loc, u_loc]`` (see :mod:`.symmetry`).

Readers validate what they load and raise :class:`OfficialFileError` naming file and key.
"""
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import scipy.io

from ..utils import atomic_write
from .charts import NUM_PARTS

__all__ = [
    "OfficialFileError", "SMPL_SUBDIV", "SUBDIV_TRANSFORM", "PDIST_MATRIX", "UV_SYMMETRY",
    "condensed_index", "square_to_condensed", "condensed_to_square", "write_smpl_subdiv",
    "read_smpl_subdiv", "write_subdiv_transform", "read_subdiv_transform", "write_pdist_matrix", "read_pdist_matrix", "write_uv_symmetry",
    "read_uv_symmetry", "DensePoseDataFiles",
]

PathLike = Union[str, os.PathLike]
SMPL_SUBDIV = "SMPL_subdiv.mat"
SUBDIV_TRANSFORM = "SMPL_SUBDIV_TRANSFORM.mat"
PDIST_MATRIX = "Pdist_matrix.pkl"
UV_SYMMETRY = "UV_symmetry_transforms.mat"


class OfficialFileError(ValueError):
    """A DensePose data file is missing, unreadable or has an unexpected layout."""

    def __init__(self, path: PathLike, message: str, key: Optional[str] = None):
        where = f"{path}" + (f", key '{key}'" if key else "")
        super().__init__(f"{where}: {message}")
        self.path, self.key = Path(path), key


def condensed_index(i: np.ndarray, j: np.ndarray, n: Optional[int] = None) -> np.ndarray:
    """Position of pair (i, j), i != j (0-based, any order), in an official condensed
    distance vector: ``hi*(hi-1)/2 + lo``. ``n`` is accepted for symmetry with other
    condensed formats; the position does not depend on it."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    return hi * (hi - 1) // 2 + lo


def square_to_condensed(dist: np.ndarray) -> np.ndarray:
    """(n,n) symmetric matrix -> (n(n-1)/2,) vector in the official order."""
    dist = np.asarray(dist)
    return dist[np.tril_indices(len(dist), -1)]


def condensed_to_square(cond: np.ndarray, n: int) -> np.ndarray:
    """(n(n-1)/2,) vector in the official order -> (n,n) symmetric matrix, zero diagonal."""
    full = np.zeros((n, n), dtype=np.asarray(cond).dtype)
    rows, cols = np.tril_indices(n, -1)
    full[rows, cols] = cond
    full[cols, rows] = cond
    return full


# --------------------------------------------------------------------------- helpers
def _savemat(path: PathLike, data: Dict[str, np.ndarray]) -> None:
    with atomic_write(path, "wb") as f:
        scipy.io.savemat(f, data, do_compression=True)


def _integers(values: np.ndarray, dtype, key: str, minimum: int = 1) -> np.ndarray:
    """``values`` as ``dtype``; ValueError unless all are integers in [minimum, dtype max]."""
    arr = np.asarray(values)
    top = np.iinfo(dtype).max
    if arr.size and (np.any(arr != np.round(arr)) or arr.min() < minimum or arr.max() > top):
        raise ValueError(f"{key}: expected integers in [{minimum}, {top}]")
    return arr.astype(dtype)


def _loadmat(path: PathLike) -> Dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise OfficialFileError(path, "file not found")
    try:
        return scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises several types for corrupt files
        raise OfficialFileError(path, f"not a readable MATLAB file ({e})") from e


def _key(data: Dict, path: PathLike, key: str) -> np.ndarray:
    if key not in data:
        raise OfficialFileError(path, "missing", key)
    return data[key]


def _column(data: Dict, path: PathLike, key: str, length: Optional[int] = None) -> np.ndarray:
    """A (M,1) / (1,M) / (M,) numeric array as (M,) float64, validated."""
    arr = np.asarray(_key(data, path, key))
    if arr.dtype == object or arr.ndim > 2 or (arr.ndim == 2 and min(arr.shape) != 1):
        raise OfficialFileError(path, f"expected a (M,1) numeric column, got {arr.shape} "
                                f"{arr.dtype}", key)
    arr = arr.reshape(-1).astype(np.float64)
    if length is not None and len(arr) != length:
        raise OfficialFileError(path, f"expected {length} entries, got {len(arr)}", key)
    if not np.isfinite(arr).all():
        raise OfficialFileError(path, "contains NaN or infinite values", key)
    return arr


# --------------------------------------------------------------------------- SMPL_subdiv.mat
def write_smpl_subdiv(path: PathLike, chart_part: np.ndarray, chart_uv: np.ndarray,
                      chart_vertices: Optional[np.ndarray] = None,
                      chart_faces: Optional[np.ndarray] = None) -> None:
    """Write parts (M,), UV (M,2) and optionally positions (M,3) and faces (F,3, 0-based)."""
    m = len(chart_part)
    data = {"Part_ID_subdiv": _integers(chart_part, np.uint8, "Part_ID_subdiv").reshape(m, 1),
            "U_subdiv": np.asarray(chart_uv[:, 0], np.float64).reshape(m, 1),
            "V_subdiv": np.asarray(chart_uv[:, 1], np.float64).reshape(m, 1)}
    if chart_vertices is not None:
        data["vertex"] = np.asarray(chart_vertices, np.float64).T.reshape(3, m)
    if chart_faces is not None:
        data["faces"] = _integers(np.asarray(chart_faces) + 1, np.int32, "faces")
    _savemat(path, data)


def read_smpl_subdiv(path: PathLike) -> Dict[str, Optional[np.ndarray]]:
    """{"part": (M,) int64, "uv": (M,2), "vertex": (M,3) or None, "faces": (F,3) 0-based or
    None} from an official-layout ``SMPL_subdiv.mat``."""
    data = _loadmat(path)
    part = _column(data, path, "Part_ID_subdiv")
    m = len(part)
    if np.any(part != np.round(part)) or part.min() < 1 or part.max() > NUM_PARTS:
        raise OfficialFileError(path, f"part ids must be integers in 1..{NUM_PARTS}",
                                "Part_ID_subdiv")
    uv = np.stack([_column(data, path, "U_subdiv", m), _column(data, path, "V_subdiv", m)], 1)
    out = {"part": part.astype(np.int64), "uv": uv, "vertex": None, "faces": None}
    if "vertex" in data:
        vert = np.asarray(data["vertex"], np.float64)
        if vert.shape != (3, m):
            raise OfficialFileError(path, f"expected shape (3, {m}), got {vert.shape}", "vertex")
        out["vertex"] = vert.T.copy()
    if "faces" in data:
        faces = np.asarray(data["faces"], np.float64)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 1 or faces.max() > m:
            raise OfficialFileError(path, f"expected (F,3) 1-based indices <= {m}, got "
                                    f"{faces.shape}", "faces")
        out["faces"] = faces.astype(np.int64) - 1
    return out


# --------------------------------------------------------------------------- transform
def write_subdiv_transform(path: PathLike, chart_to_vertex: np.ndarray) -> None:
    """Write the 1-based geodesic-vertex index of every chart vertex (key ``index``)."""
    idx = _integers(np.asarray(chart_to_vertex) + 1, np.int32, "index").reshape(-1, 1)
    _savemat(path, {"index": idx})


def read_subdiv_transform(path: PathLike, num_chart_vertices: Optional[int] = None
                          ) -> np.ndarray:
    """0-based geodesic-vertex index (M,) int64 of every chart vertex."""
    idx = _column(_loadmat(path), path, "index", num_chart_vertices)
    if np.any(idx != np.round(idx)) or (len(idx) and idx.min() < 1):
        raise OfficialFileError(path, "indices must be 1-based integers", "index")
    return idx.astype(np.int64) - 1


# --------------------------------------------------------------------------- Pdist_matrix.pkl
def write_pdist_matrix(path: PathLike, dist: np.ndarray) -> None:
    """Write a symmetric (N,N) distance matrix as the official (N(N-1)/2, 1) float32 vector."""
    cond = square_to_condensed(np.asarray(dist, np.float32)).reshape(-1, 1)
    with atomic_write(path, "wb") as f:
        pickle.dump({"Pdist_matrix": cond}, f, protocol=4)


def read_pdist_matrix(path: PathLike) -> Tuple[np.ndarray, int]:
    """(condensed distances (K,) float32, number of vertices n) with K = n(n-1)/2."""
    if not Path(path).is_file():
        raise OfficialFileError(path, "file not found")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except Exception as e:
        raise OfficialFileError(path, f"not a readable pickle ({e})") from e
    if not isinstance(data, dict):
        raise OfficialFileError(path, f"expected a dict, got {type(data).__name__}")
    cond = _column(data, path, "Pdist_matrix").astype(np.float32)
    k = len(cond)
    n = int(round((1 + np.sqrt(1 + 8 * k)) / 2))
    if n * (n - 1) // 2 != k or k == 0:
        raise OfficialFileError(path, f"length {k} is not n(n-1)/2 for any n", "Pdist_matrix")
    return cond, n


# --------------------------------------------------------------------------- UV symmetry
def write_uv_symmetry(path: PathLike, u_transforms: np.ndarray, v_transforms: np.ndarray
                      ) -> None:
    """Write (24,R,R) tables as two (1,24) MATLAB cells of RxR arrays."""
    data = {}
    for key, table in (("U_transforms", u_transforms), ("V_transforms", v_transforms)):
        cell = np.empty((1, NUM_PARTS), dtype=object)
        for i in range(NUM_PARTS):
            cell[0, i] = np.asarray(table[i], np.float64)
        data[key] = cell
    _savemat(path, data)


def read_uv_symmetry(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """(U_transforms, V_transforms), each (24,R,R) float32."""
    data = _loadmat(path)
    out = []
    for key in ("U_transforms", "V_transforms"):
        cell = np.asarray(_key(data, path, key))
        if cell.dtype != object or cell.size != NUM_PARTS:
            raise OfficialFileError(path, f"expected a (1,{NUM_PARTS}) cell, got {cell.shape} "
                                    f"{cell.dtype}", key)
        tables = [np.asarray(t, np.float32) for t in cell.reshape(-1)]
        shape = tables[0].shape
        if len(shape) != 2 or shape[0] != shape[1] or any(t.shape != shape for t in tables):
            raise OfficialFileError(path, "cells must be equal square arrays, got "
                                    f"{sorted({t.shape for t in tables})}", key)
        out.append(np.stack(tables))
    return out[0], out[1]


# --------------------------------------------------------------------------- bundle
@dataclass
class DensePoseDataFiles:
    """The four DensePose data files of one body, loaded and cross-checked."""

    chart_part: np.ndarray  # (M,) 1..24
    chart_uv: np.ndarray  # (M,2)
    chart_to_vertex: np.ndarray  # (M,) 0-based index into the geodesic vertex set
    pdist: np.ndarray  # (n(n-1)/2,) float32 condensed geodesics
    num_vertices: int  # n
    u_transforms: Optional[np.ndarray] = None  # (24,R,R)
    v_transforms: Optional[np.ndarray] = None
    chart_vertex_positions: Optional[np.ndarray] = None  # (M,3)
    chart_faces: Optional[np.ndarray] = None  # (F,3) 0-based

    @classmethod
    def load(cls, directory: PathLike, require_symmetry: bool = False) -> "DensePoseDataFiles":
        """Load ``directory``'s files; the symmetry file is optional unless required."""
        d = Path(directory)
        subdiv = read_smpl_subdiv(d / SMPL_SUBDIV)
        m = len(subdiv["part"])
        transform = read_subdiv_transform(d / SUBDIV_TRANSFORM, m)
        pdist, n = read_pdist_matrix(d / PDIST_MATRIX)
        if m and transform.max() >= n:
            raise OfficialFileError(d / SUBDIV_TRANSFORM, f"index {transform.max() + 1} exceeds "
                                    f"the {n} vertices of {PDIST_MATRIX}", "index")
        u_t = v_t = None
        if require_symmetry or (d / UV_SYMMETRY).exists():
            u_t, v_t = read_uv_symmetry(d / UV_SYMMETRY)
        return cls(chart_part=subdiv["part"], chart_uv=subdiv["uv"], chart_to_vertex=transform,
                   pdist=pdist, num_vertices=n, u_transforms=u_t, v_transforms=v_t,
                   chart_vertex_positions=subdiv["vertex"], chart_faces=subdiv["faces"])

    def geodesic_distance(self, vertex_a: np.ndarray, vertex_b: np.ndarray) -> np.ndarray:
        """Distances (P,) between 0-based geodesic vertices, read from the condensed matrix."""
        a, b = np.asarray(vertex_a, np.int64), np.asarray(vertex_b, np.int64)
        same = a == b
        k = condensed_index(np.where(same, 0, a), np.where(same, 1, b), self.num_vertices)
        return np.where(same, np.float32(0), self.pdist[k])

    def write(self, directory: PathLike) -> None:
        """Write this bundle back in the official layouts."""
        write_official_files(directory, self.chart_part, self.chart_uv, self.chart_to_vertex,
                             condensed_to_square(self.pdist, self.num_vertices), self.u_transforms,
                             self.v_transforms, self.chart_vertex_positions, self.chart_faces)


def write_official_files(directory: PathLike, chart_part: np.ndarray, chart_uv: np.ndarray,
                         chart_to_vertex: np.ndarray, geodesics: np.ndarray,
                         u_transforms: Optional[np.ndarray] = None,
                         v_transforms: Optional[np.ndarray] = None,
                         chart_vertex_positions: Optional[np.ndarray] = None,
                         chart_faces: Optional[np.ndarray] = None) -> Dict[str, Path]:
    """Write all official files into ``directory``; returns {file name: path}."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    write_smpl_subdiv(d / SMPL_SUBDIV, chart_part, chart_uv, chart_vertex_positions, chart_faces)
    write_subdiv_transform(d / SUBDIV_TRANSFORM, chart_to_vertex)
    write_pdist_matrix(d / PDIST_MATRIX, geodesics)
    paths = {n: d / n for n in (SMPL_SUBDIV, SUBDIV_TRANSFORM, PDIST_MATRIX)}
    if u_transforms is not None and v_transforms is not None:
        write_uv_symmetry(d / UV_SYMMETRY, u_transforms, v_transforms)
        paths[UV_SYMMETRY] = d / UV_SYMMETRY
    return paths
