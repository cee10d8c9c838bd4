"""Where built artefacts (body model, geodesics, rendered data) are cached, atomic writes, and
the content hashes that tell whether an input changed."""
import contextlib
import hashlib
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


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (checkpoints do not fit in memory
    twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
