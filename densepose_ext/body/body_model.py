"""``BodyModel``: the body mesh, its DensePose charts, geodesics and flip symmetry in one place.

``get_body_model()`` returns the process-wide embedded body, built once and cached on disk
under ``cache_dir()/body/<key>/`` (key = hash of the template geometry and of the chart,
geodesic and symmetry code). Expensive parts (the (N,N) geodesic matrix, the UV flip tables)
are computed on first use and cached too. ``BodyModel.from_official_files`` wraps real
DensePose data files instead, for evaluation with the official SMPL charts.
"""
import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from ..utils import atomic_write, cache_dir
from .assembly import get_template
from .charts import Charts, build_charts
from .geodesics import pairwise_geodesics
from .official_formats import DensePoseDataFiles, condensed_to_square, write_official_files
from .smpl_io import write_smpl_pickle
from .symmetry import compute_uv_symmetry_transforms, flip_iuv

logger = logging.getLogger(__name__)

__all__ = ["BodyModel", "get_body_model", "BODY_MODEL_VERSION"]

#: bump by hand when cached artefacts must be rebuilt for reasons the source hash cannot see
BODY_MODEL_VERSION = "1"
PathLike = Union[str, os.PathLike]
_SOURCES = ("charts.py", "geodesics.py", "symmetry.py", "body_model.py")


def _npz_save(path: Path, **arrays: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def _npy_save(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, array)


class BodyModel:
    """Body mesh + charts + geodesics + UV flip tables, with the maps evaluation relies on.

    ``iuv_to_vertex`` returns indices into the *geodesic vertex set* (mesh vertices for the
    embedded body, the ``Pdist_matrix`` vertices for official files), which is what
    ``geodesic_distance`` takes.
    """

    def __init__(self, charts: Charts, template=None, smpl_path: Optional[PathLike] = None,
                 cache_path: Optional[PathLike] = None,
                 data_files: Optional[DensePoseDataFiles] = None):
        self.charts = charts
        self.template = template
        self.smpl_path = Path(smpl_path) if smpl_path is not None else None
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self._data_files = data_files
        self._geodesics: Optional[np.ndarray] = None
        self._uv_symmetry: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self._lock = threading.Lock()
        if data_files is not None and data_files.u_transforms is not None:
            self._uv_symmetry = (data_files.u_transforms, data_files.v_transforms)

    # ------------------------------------------------------------------ sizes
    @property
    def num_vertices(self) -> int:
        """Size of the geodesic vertex set."""
        if self._data_files is not None:
            return self._data_files.num_vertices
        return self.template.num_vertices

    @property
    def num_chart_vertices(self) -> int:
        return self.charts.num_chart_vertices

    @property
    def vertices(self) -> Optional[np.ndarray]:
        """Rest-pose mesh vertices (N,3), if a mesh is known."""
        return None if self.template is None else self.template.vertices

    @property
    def faces(self) -> np.ndarray:
        """Mesh faces (F,3) (mesh-vertex indices)."""
        return self.charts.mesh_faces()

    # ------------------------------------------------------------------ lazy artefacts
    @property
    def geodesics(self) -> np.ndarray:
        """(N,N) float32 geodesic distances between geodesic-set vertices (lazy, cached)."""
        with self._lock:
            if self._geodesics is None:
                self._geodesics = self._load_geodesics()
            return self._geodesics

    def _load_geodesics(self) -> np.ndarray:
        if self._data_files is not None:
            return condensed_to_square(self._data_files.pdist, self._data_files.num_vertices)
        path = self.cache_path / "geodesics.npy" if self.cache_path else None
        if path is not None and path.is_file():
            return np.load(path)
        logger.info("Computing %d x %d body geodesics (once; cached)...", self.num_vertices,
                    self.num_vertices)
        dist = pairwise_geodesics(self.template.vertices, self.template.faces)
        if path is not None:
            _npy_save(path, dist)
        return dist

    @property
    def uv_symmetry(self) -> Tuple[np.ndarray, np.ndarray]:
        """(U_transforms, V_transforms), each (24,256,256) float32 (lazy, cached)."""
        with self._lock:
            if self._uv_symmetry is None:
                self._uv_symmetry = self._load_uv_symmetry()
            return self._uv_symmetry

    def _load_uv_symmetry(self) -> Tuple[np.ndarray, np.ndarray]:
        if self.template is None:
            raise RuntimeError("UV symmetry needs the body mesh or UV_symmetry_transforms.mat")
        path = self.cache_path / "uv_symmetry.npz" if self.cache_path else None
        if path is not None and path.is_file():
            with np.load(path) as z:
                return z["U_transforms"], z["V_transforms"]
        u_t, v_t, stats = compute_uv_symmetry_transforms(
            self.template.vertices, self.template.faces, self.charts, return_stats=True)
        logger.info("UV symmetry tables: %d/%d cells mirror into a different part",
                    stats["mismatches"], stats["cells"])
        if path is not None:
            _npz_save(path, U_transforms=u_t, V_transforms=v_t,
                      mismatches=np.array(stats["mismatches"]))
        return u_t, v_t

    # ------------------------------------------------------------------ maps
    def surface_to_iuv(self, face_idx: np.ndarray, bary: np.ndarray
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(I, U, V) (P,) of surface points (face index (P,), barycentrics (P,3))."""
        return self.charts.surface_to_iuv(face_idx, bary)

    def iuv_to_surface(self, I: np.ndarray, U: np.ndarray, V: np.ndarray
                       ) -> Tuple[np.ndarray, np.ndarray]:
        """Nearest surface point (face index (P,), barycentrics (P,3)) of chart points."""
        return self.charts.iuv_to_surface(I, U, V)

    def iuv_to_vertex(self, I: np.ndarray, U: np.ndarray, V: np.ndarray,
                      ties: str = "tree") -> np.ndarray:
        """Geodesic-set vertex (P,) of the nearest chart vertex of part I in UV (-1: invalid);
        ``ties="first"``: the exhaustive search's choice (see ``Charts.iuv_to_chart_vertex``)."""
        return self.charts.iuv_to_vertex(I, U, V, ties)

    def quantized_vertex_table(self, ties: str = "tree") -> np.ndarray:
        """(25,256,256) int32 geodesic-set vertex of every (I, uint8 U, uint8 V) (see
        ``Charts.quantized_vertex_table``); cached in memory, and on disk next to the body's
        other artefacts (embedded body) or under ``cache_dir()/densepose_eval`` (official
        files, keyed by a hash of their charts)."""
        key = ("table", ties)
        if key in self.charts._vertex_trees:
            return self.charts._vertex_trees[key]
        with self._lock:
            path = self._table_path(ties)
            if path is not None and path.is_file():
                try:
                    table = np.load(path)
                    if table.shape == (25, 256, 256):
                        self.charts._vertex_trees[key] = table
                        return table
                except (OSError, ValueError):
                    pass
            table = self.charts.quantized_vertex_table(ties)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                _npy_save(path, table)
            return table

    def _table_path(self, ties: str) -> Optional[Path]:
        if self.cache_path is not None:
            return self.cache_path / f"vertex_table_{ties}.npy"
        h = hashlib.sha1(b"vertex_table" + BODY_MODEL_VERSION.encode())
        for arr in (self.charts.chart_part, self.charts.chart_uv, self.charts.chart_to_vertex):
            h.update(np.ascontiguousarray(arr).tobytes())
        for name in ("charts.py", "body_model.py"):
            h.update((Path(__file__).parent / name).read_bytes())
        return cache_dir() / "densepose_eval" / f"vertex_table_{ties}_{h.hexdigest()[:16]}.npy"

    def surface_points(self, face_idx: np.ndarray, bary: np.ndarray,
                       vertices: Optional[np.ndarray] = None) -> np.ndarray:
        """3D points (P,3) on ``vertices`` (default: the rest-pose mesh)."""
        verts = self.vertices if vertices is None else vertices
        if verts is None:
            raise RuntimeError("no mesh vertices known for this body model")
        return self.charts.surface_points(face_idx, bary, verts)

    def geodesic_distance(self, vertex_a: np.ndarray, vertex_b: np.ndarray) -> np.ndarray:
        """Geodesic distances (P,) in metres between geodesic-set vertices a[p] and b[p]."""
        a = np.asarray(vertex_a, dtype=np.int64)
        b = np.asarray(vertex_b, dtype=np.int64)
        n = self.num_vertices
        if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
            raise IndexError(f"vertex indices must lie in [0, {n})")
        if self._data_files is not None and self._geodesics is None:
            return self._data_files.geodesic_distance(a, b)
        return self.geodesics[a, b]

    def flip_iuv(self, I: np.ndarray, U: np.ndarray, V: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(I, U, V) after a horizontal image flip (see :func:`.symmetry.flip_iuv`)."""
        u_t, v_t = self.uv_symmetry
        return flip_iuv(I, U, V, u_t, v_t)

    # ------------------------------------------------------------------ files
    def export(self, out_dir: PathLike) -> Dict[str, Path]:
        """Write ``body_model.pkl`` (SMPL format, loadable by smplx) and the four official
        DensePose files into ``out_dir``; returns {file name: path}."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        ch = self.charts
        positions = None if self.vertices is None else self.vertices[ch.chart_to_vertex]
        u_t, v_t = self.uv_symmetry
        paths = write_official_files(out, ch.chart_part, ch.chart_uv, ch.chart_to_vertex,
                                     self.geodesics, u_t, v_t, positions,
                                     ch.chart_faces if len(ch.chart_faces) else None)
        if self.smpl_path is not None and self.smpl_path.is_file():
            target = out / "body_model.pkl"
            with atomic_write(target, "wb") as f, open(self.smpl_path, "rb") as src:
                shutil.copyfileobj(src, f)
            paths["body_model.pkl"] = target
        return paths

    @classmethod
    def from_official_files(cls, directory: PathLike, smpl_path: Optional[PathLike] = None
                            ) -> "BodyModel":
        """Body model for evaluation from a directory of official DensePose data files.

        Charts hold the chart vertices (parts, UV, index into the ``Pdist_matrix`` vertices);
        chart faces are available only when ``SMPL_subdiv.mat`` carries ``faces``. Loaded once
        per process: later calls with the same directory (and unchanged files) return the same
        object.
        """
        key = _official_key(directory, smpl_path)
        with _BODY_LOCK:
            if key not in _OFFICIAL:
                _OFFICIAL[key] = cls._load_official(directory, smpl_path)
            return _OFFICIAL[key]

    @classmethod
    def _load_official(cls, directory: PathLike, smpl_path: Optional[PathLike]) -> "BodyModel":
        files = DensePoseDataFiles.load(directory)
        if files.chart_faces is not None:
            faces = files.chart_faces
            face_part = files.chart_part[faces[:, 0]]
        else:
            faces = np.zeros((0, 3), dtype=np.int64)
            face_part = np.zeros(0, dtype=np.int64)
        charts = Charts(face_part=face_part, chart_faces=faces,
                        chart_to_vertex=files.chart_to_vertex, chart_part=files.chart_part,
                        chart_uv=files.chart_uv)
        return cls(charts, template=None, smpl_path=smpl_path, data_files=files)

    def __repr__(self) -> str:
        return (f"BodyModel(vertices={self.num_vertices}, chart_vertices="
                f"{self.num_chart_vertices}, faces={len(self.charts.chart_faces)})")


# ---------------------------------------------------------------------- embedded singleton
def _cache_key(template) -> str:
    h = hashlib.sha1(BODY_MODEL_VERSION.encode())
    h.update(str(getattr(template, "version", "")).encode())
    for arr in (template.vertices, template.faces, template.face_part):
        h.update(np.ascontiguousarray(arr).tobytes())
    here = Path(__file__).parent
    for name in _SOURCES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def build_body_model(template=None, directory: Optional[PathLike] = None) -> BodyModel:
    """Build (or load from ``directory``) the embedded body model of ``template``."""

    template = get_template() if template is None else template
    directory = Path(directory) if directory else cache_dir() / "body" / _cache_key(template)
    directory.mkdir(parents=True, exist_ok=True)
    charts_path = directory / "charts.npz"
    if charts_path.is_file():
        with np.load(charts_path) as z:
            charts = Charts(**{k: z[k] for k in z.files})
    else:
        logger.info("Building DensePose charts of the body model (once; cached)...")
        charts = build_charts(template.vertices, template.faces, template.face_part)
        _npz_save(charts_path, **charts.arrays())
    smpl_path = directory / "smpl_model.pkl"
    if not smpl_path.is_file():
        write_smpl_pickle(template, smpl_path)
    return BodyModel(charts, template=template, smpl_path=smpl_path, cache_path=directory)


_BODY: Optional[BodyModel] = None
_BODY_LOCK = threading.Lock()
#: official-file bodies loaded by this process, by directory and file stamps
_OFFICIAL: Dict[tuple, BodyModel] = {}


def _official_key(directory: PathLike, smpl_path: Optional[PathLike]) -> tuple:
    """Directory, SMPL path and (name, size, mtime) of every file in the directory."""
    d = Path(directory).resolve()
    stamps = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                          for p in d.iterdir() if p.is_file())) if d.is_dir() else ()
    return str(d), str(smpl_path), stamps


def get_body_model() -> BodyModel:
    """The process-wide embedded body model (built once, cached on disk)."""
    global _BODY
    with _BODY_LOCK:
        if _BODY is None:
            _BODY = build_body_model()
        return _BODY
