"""Where built artefacts (body model, geodesics, rendered data) are cached, and atomic writes."""
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, IO, Union

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cache_dir() -> Path:
    """Cache root: ``$DENSEPOSE_EXT_CACHE`` if set, else ``~/.cache/densepose_ext``; created."""
    root = Path(os.environ.get("DENSEPOSE_EXT_CACHE", Path.home() / ".cache" / "densepose_ext"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside ``path``; on success rename it over ``path``, else remove it.

    Readers never see a half-written file, and an interrupted writer leaves no partial output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
