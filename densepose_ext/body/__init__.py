"""The embedded body: procedural SMPL-format template, DensePose charts, geodesics, flip
symmetry, and the official DensePose data-file formats."""
from .body_model import BODY_MODEL_VERSION, BodyModel, build_body_model, get_body_model
from .charts import NUM_PARTS, Charts, build_charts, surface_points
from .geodesics import edge_dijkstra, geodesics_from, pairwise_geodesics
from .official_formats import DensePoseDataFiles, OfficialFileError
from .parts import COARSE_FLIP_PERMUTATION, FINE_TO_COARSE, FLIP_PERMUTATION
from .symmetry import compute_uv_symmetry_transforms, flip_iuv

__all__ = [
    "BODY_MODEL_VERSION", "BodyModel", "build_body_model", "get_body_model",
    "NUM_PARTS", "Charts", "build_charts", "surface_points",
    "edge_dijkstra", "geodesics_from", "pairwise_geodesics",
    "DensePoseDataFiles", "OfficialFileError",
    "COARSE_FLIP_PERMUTATION", "FINE_TO_COARSE", "FLIP_PERMUTATION",
    "compute_uv_symmetry_transforms", "flip_iuv",
]
