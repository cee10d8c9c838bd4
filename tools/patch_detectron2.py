"""Make the detectron2 v0.6 source release installable without its C++ extension.

Three edits, each idempotent: no ext_modules in setup.py; Pillow>=10 removed ``Image.LINEAR``
(use ``Image.BILINEAR``, as upstream later did); a ``detectron2/_C.py`` stub whose attribute
access raises an ImportError naming the missing ops.
"""
import re
import sys
from pathlib import Path

STUB = '''"""Placeholder for detectron2's C++ extension, which this install did not build."""


def __getattr__(name):
    raise ImportError(
        f"detectron2._C.{name} is unavailable: detectron2 was installed without its C++ ops "
        "(deformable convolution, rotated boxes, NMS-rotated). Build detectron2 from source "
        "and set DETECTRON2_SRC for tools/setup_env.sh to use those ops."
    )
'''


def patch(root: Path) -> None:
    setup = root / "setup.py"
    text = setup.read_text()
    text = re.sub(r"ext_modules\s*=\s*get_extensions\(\)", "ext_modules=[]", text)
    setup.write_text(text)
    tf = root / "detectron2/data/transforms/transform.py"
    tf.write_text(tf.read_text().replace("Image.LINEAR", "Image.BILINEAR"))
    stub = root / "detectron2/_C.py"
    stub.write_text(STUB)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: patch_detectron2.py DETECTRON2_SOURCE_DIR")
    patch(Path(sys.argv[1]))
