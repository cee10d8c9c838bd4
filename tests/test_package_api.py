"""The package root gives the public API and registers the extension with detectron2, as
``import densepose`` does for detectron2's DensePose project."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_root_import_registers_heads_and_exports_the_api():
    # a fresh process: nothing else has imported the submodules
    code = (
        "import densepose_ext\n"
        "from detectron2.config import get_cfg\n"
        "from detectron2.modeling import META_ARCH_REGISTRY, ROI_HEADS_REGISTRY\n"
        "cfg = densepose_ext.add_densepose_config(get_cfg())\n"
        "assert cfg.MODEL.ROI_DENSEPOSE_HEAD.NUM_PATCHES == 24\n"
        "assert ROI_HEADS_REGISTRY.get('DensePoseROIHeads') is densepose_ext.DensePoseROIHeads\n"
        "assert ROI_HEADS_REGISTRY.get('DensePoseCascadeROIHeads') is "
        "densepose_ext.DensePoseCascadeROIHeads\n"
        "assert META_ARCH_REGISTRY.get('DensePoseFCN') is densepose_ext.DensePoseFCN\n"
        "missing = [n for n in densepose_ext.__all__ if not hasattr(densepose_ext, n)]\n"
        "assert not missing, missing\n"
        "from detectron2.data import DatasetCatalog\n"
        "assert not [n for n in DatasetCatalog.list() if 'embedded' in n], 'the library registers'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
