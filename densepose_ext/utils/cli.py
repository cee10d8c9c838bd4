"""Command-line entry points: a user error is one ``error: <message>`` line and exit status 2.

Every CLI of the project ends with ``run_cli(main)``. A user error (bad input or arguments:
an exception class of this project, such as DensePoseDatasetError or DensePoseCheckpointError,
a ValueError raised by this project's own checks, or a missing / unreadable file) prints only
its message; the traceback is kept for ``--debug`` (taken off the command line before ``main``
sees it) or ``DENSEPOSE_DEBUG=1``. Any other exception is a programming error and keeps its
traceback.
"""
from __future__ import annotations

import linecache
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional
from densepose_ext.config import setup_densepose_cfg

__all__ = ["ConfigError", "DEBUG_ENV", "EXIT_USER_ERROR", "is_user_error", "load_config", "run_cli"]

DEBUG_ENV = "DENSEPOSE_DEBUG"
EXIT_USER_ERROR = 2

_OUR_PACKAGES = ("densepose_ext", "distill", "synthesis", "fitting", "tools", "train_net",
                 "__main__", "projects")
_REPO = Path(__file__).resolve().parents[2]
# missing or inaccessible files named on the command line or in a dataset
_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                FileExistsError)


def _ours(module: str) -> bool:
    return module.split(".")[0] in _OUR_PACKAGES


def _raised_in_our_code(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a ``raise`` statement in a file of this repository (one of
    our checks), not from an installed library (Python or compiled) that our code called."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = Path(tb.tb_frame.f_code.co_filename).resolve()
    if _REPO not in path.parents or ".venv" in path.parts or "site-packages" in path.parts:
        return False
    return linecache.getline(str(path), tb.tb_lineno).lstrip().startswith("raise")


def is_user_error(exc: BaseException) -> bool:
    """A bad input or argument (report the message), not a bug (keep the traceback)."""
    if _ours(type(exc).__module__):
        return True  # the project's error classes all describe bad input
    if isinstance(exc, _FILE_ERRORS):
        return True
    return type(exc) in (ValueError, FileNotFoundError) and _raised_in_our_code(exc)


class _NoUserErrorTraceback(logging.Filter):
    """Drops the traceback of detectron2's "Exception during training:" log line for a user
    error (run_cli prints the message itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_user_error(exc):
            record.exc_info, record.exc_text = None, None
            record.msg = f"{record.msg} {type(exc).__name__} (reported below)"
        return True


def _debug_requested(argv: list) -> bool:
    """``--debug`` in argv (removed from it) or DENSEPOSE_DEBUG set to a true value."""
    flag = "--debug" in argv
    while "--debug" in argv:
        argv.remove("--debug")
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_cli(main: Callable[[], object], argv: Optional[list] = None) -> None:
    """Run ``main()`` as a program and exit: its return value when an int, else 0; a user error
    as ``error: <message>`` on stderr and status 2 (traceback only with --debug /
    DENSEPOSE_DEBUG=1); other exceptions propagate with their traceback."""
    argv = sys.argv if argv is None else argv
    debug = _debug_requested(argv)
    log_filter = None
    if not debug:
        log_filter = _NoUserErrorTraceback()
        logging.getLogger("detectron2.engine.train_loop").addFilter(log_filter)
    try:
        rc = main()
    except Exception as e:  # noqa: BLE001 (classified below; bugs are re-raised)
        if not is_user_error(e):
            raise
        if debug:
            traceback.print_exc()
        sys.stdout.flush()
        hint = "" if debug else f" (traceback: rerun with --debug or {DEBUG_ENV}=1)"
        message = str(e) or type(e).__name__
        print(f"error: {message}{hint}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    finally:
        if log_filter is not None:
            logging.getLogger("detectron2.engine.train_loop").removeFilter(log_filter)
    sys.exit(rc if isinstance(rc, int) and not isinstance(rc, bool) else 0)


class ConfigError(ValueError):
    """A config file or ``KEY VALUE`` override that does not apply (unknown key, wrong type)."""


def load_config(config_file: str, opts=()):
    """:func:`densepose_ext.config.setup_densepose_cfg`, with a missing file, an unknown key, an
    odd override list or a wrongly typed value as a :class:`ConfigError` naming it."""
    if not os.path.isfile(config_file):
        raise ConfigError(f"config file {config_file}: no such file")
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"config overrides must be KEY VALUE pairs, got {len(opts)} items: "
                          f"{' '.join(map(str, opts))}")
    try:
        return setup_densepose_cfg(config_file, opts)
    except (KeyError, AssertionError, ValueError, TypeError) as e:
        if _ours(type(e).__module__):
            raise
        raise ConfigError(f"config {config_file} with overrides {opts}: {e}") from e
