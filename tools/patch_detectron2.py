"""Make the detectron2 v0.6 source release installable without its C++ extension.

Three edits, each idempotent: no ext_modules in setup.py; Pillow>=10 removed ``Image.LINEAR``
(use ``Image.BILINEAR``, as upstream later did); a ``detectron2/_C.py`` stub that reports "no
compiler / no CUDA" to detectron2's environment report and raises an ImportError naming the
missing ops for anything else. ``--stub-only PACKAGE_DIR`` refreshes the stub of an install.
"""
import re
import sys
from pathlib import Path

STUB = '''"""Placeholder for detectron2's C++ extension, which this install did not build."""


def get_compiler_version():
    return "none: detectron2 installed without its C++ ops"


def get_cuda_version():
    return "none: detectron2 installed without its C++ ops"


def has_cuda():
    return False


def __getattr__(name):
    raise ImportError(
        f"detectron2._C.{name} is unavailable: detectron2 was installed without its C++ ops "
        "(deformable convolution, rotated boxes, NMS-rotated). Build detectron2 from source "
        "and set DETECTRON2_SRC for tools/setup_env.sh to use those ops."
    )
'''


def write_stub(package_dir: Path) -> None:
    """(Re)write the ``_C.py`` placeholder inside a ``detectron2`` package directory."""
    (package_dir / "_C.py").write_text(STUB)


def patch(root: Path) -> None:
    setup = root / "setup.py"
    text = setup.read_text()
    text = re.sub(r"ext_modules\s*=\s*get_extensions\(\)", "ext_modules=[]", text)
    setup.write_text(text)
    tf = root / "detectron2/data/transforms/transform.py"
    tf.write_text(tf.read_text().replace("Image.LINEAR", "Image.BILINEAR"))
    write_stub(root / "detectron2")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--stub-only":
        write_stub(Path(sys.argv[2]))
    elif len(sys.argv) == 2:
        patch(Path(sys.argv[1]))
    else:
        sys.exit("usage: patch_detectron2.py DETECTRON2_SOURCE_DIR | --stub-only PACKAGE_DIR")
