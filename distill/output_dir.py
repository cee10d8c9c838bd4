"""The settings file of a resumable output directory (interpolation targets, pseudo-labels)."""
import json
from pathlib import Path
from typing import Sequence

from densepose_ext.utils import atomic_write

__all__ = ["claim_output_dir"]


def claim_output_dir(out_dir: Path, params_file: str, params: dict, identity_keys: Sequence[str],
                     error: type, what: str, rewrite: bool = True) -> None:
    """Write ``params`` to ``out_dir/params_file``, or, when the directory holds one already,
    check that it was written with the same ``identity_keys`` (a resumed run must not mix
    ``what`` made with other settings: ``error`` naming each difference). ``rewrite``: write
    the current ``params`` over a matching file (else leave it)."""
    path = Path(out_dir) / params_file
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise error(f"{path}: unreadable ({e}); delete {out_dir}") from None
        diff = [k for k in identity_keys if old.get(k) != params[k]]
        if diff:
            details = ", ".join(f"{k}: {old.get(k)!r} there, {params[k]!r} now" for k in diff)
            raise error(f"{out_dir} holds {what} made with other settings ({details}); "
                        "write to another --out or delete it")
        if not rewrite:
            return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(params, f, indent=1, sort_keys=True)
