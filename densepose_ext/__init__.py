"""densepose_ext: a Detectron2 extension for dense human pose (see README.md)."""
from . import model_zoo  # noqa: F401  (registers the densepose_ext:// checkpoint names)
