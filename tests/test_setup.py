"""The install recipe and the small utilities every writer relies on."""
import numpy as np
import pytest

from densepose_ext.utils import atomic_write, cache_dir


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_write(target) as f:
        f.write(b"first")
    assert target.read_bytes() == b"first"

    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"partial")
            raise RuntimeError("writer died")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEPOSE_EXT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert cache_dir().is_dir()


def test_detectron2_resize_works_with_current_pillow():
    from detectron2.data import transforms as T

    img = (np.arange(32 * 48 * 3) % 255).astype(np.uint8).reshape(32, 48, 3)
    out = T.ResizeTransform(32, 48, 16, 24).apply_image(img)
    assert out.shape == (16, 24, 3)


def test_missing_cpp_ops_give_clear_error():
    import detectron2

    try:
        from detectron2 import _C
    except ImportError:  # a source build without ops; nothing to check
        pytest.skip("detectron2 has no _C module")
    if not _C.__file__.endswith(".py"):
        pytest.skip("detectron2 built with its C++ ops")
    with pytest.raises(ImportError, match="without its C"):
        _C.deform_conv_forward  # noqa: B018
    assert detectron2.__version__


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    with atomic_write(tmp_path / "f.json", "w") as f:
        f.write("{}")
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o666 & ~umask
