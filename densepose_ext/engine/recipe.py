"""Building blocks of the project recipes (``projects/*/run.py``): commands run once, recorded.

A recipe is a sequence of commands (``train_net.py`` runs, data generation, evaluation), each
recorded in a small json file with the exact command. Re-running the recipe skips every step
whose record holds the same command, so an interrupted recipe resumes and a finished one only
rewrites its report.
"""
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..utils import atomic_write

__all__ = ["run_command", "cached_record", "save_record", "recorded_step", "RecordBook",
           "recorded_rows", "shrunk_schedule", "schedule_text", "CPU_FINE_TUNING",
           "resumable_training", "claim_output_dir", "display_command", "portable_command",
           "seed_dir", "prune_checkpoints", "write_report", "written_by", "load_script",
           "machine_id"]

RESUME_CHECKPOINT_PERIOD = 100  # iterations between the checkpoints an interrupted run resumes from


def machine_id() -> str:
    """The CPU model and this boot of the machine, e.g. ``"AMD EPYC / 3f2a..."``: speeds
    recorded under the same id were measured on the same machine and compare directly, speeds
    under different ids may differ by the machines alone."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    boot = Path("/proc/sys/kernel/random/boot_id")
    boot_id = boot.read_text().strip() if boot.is_file() else platform.node()
    return f"{cpu} / {boot_id}"


def run_command(cmd: Sequence, cwd: Path, env: Optional[dict] = None) -> float:
    """Run ``cmd`` in ``cwd`` with its output streaming through; fail loudly; return minutes."""
    cmd = [str(c) for c in cmd]
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, env={**os.environ, **(env or {})})
    return (time.perf_counter() - start) / 60


def _read_record(path: Path) -> Optional[dict]:
    """The json record at ``path``, None when there is none; a corrupt one names its file."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: unreadable recipe record ({e}); delete it to redo the "
                         "step") from e


def portable_command(command: Sequence) -> List[str]:
    """``command`` as it reads on any checkout: ``python`` for this interpreter, and paths
    inside the working directory (the repository root, where recipes run) made relative."""
    root = str(Path.cwd()) + os.sep
    return ["python" if str(c) == sys.executable else
            str(c)[len(root):] if str(c).startswith(root) else str(c) for c in command]


def cached_record(path: Path, command: List[str]) -> Optional[dict]:
    """The record at ``path`` if it was made by ``command`` (compared in its portable form),
    else None."""
    path = Path(path)
    record = _read_record(path)
    if record is not None and portable_command(record.get("command") or []) == \
            portable_command(command):
        print(f"= {path} is up to date: not run again", flush=True)
        return record
    return None


def save_record(path: Path, record: dict) -> dict:
    """Write ``record`` to ``path`` atomically (json) and return it."""
    with atomic_write(Path(path), "w") as f:  # temp file + fsync + rename
        f.write(json.dumps(record, indent=1) + "\n")
    return record


def recorded_step(path: Path, command: List[str], run: Callable[[], dict]) -> dict:
    """The record of ``command`` at ``path``; when there is none, ``run()`` computes the
    record's other fields and the record is saved with the command."""
    return RecordBook(Path(path).parent).step(path, command, run)


class RecordBook:
    """The records of one recipe's steps. Each lives beside the step's outputs under ``out``
    and, when ``archive`` is given, also under ``archive`` (a folder committed with the
    project): outputs are large and may be lost, the archived records let a later run of the
    recipe skip every finished step and rewrite its report from them. ``report_only``: run
    nothing; a step gives its record, or None when it has none (a report of what is done)."""

    def __init__(self, out: Path, archive: Optional[Path] = None, report_only: bool = False):
        self.out, self.archive = Path(out), None if archive is None else Path(archive)
        self.report_only = report_only

    def archived(self, path: Path) -> Optional[Path]:
        """The archive copy of the record at ``path`` (a path under ``out``)."""
        if self.archive is None:
            return None
        return self.archive / Path(path).relative_to(self.out)

    def lookup(self, path: Path, command: Sequence) -> Optional[dict]:
        """The record of ``command`` at ``path`` or in the archive, None when neither holds it."""
        record = cached_record(path, list(command))
        copy = self.archived(path)
        if record is None and copy is not None:
            record = cached_record(copy, list(command))
        return record

    def read(self, path: Path) -> Optional[dict]:
        """The record at ``path`` or its archive copy, whatever command made it; None if none."""
        copy = self.archived(path)
        for candidate in (path, copy):
            if candidate is not None and Path(candidate).is_file():
                return _read_record(Path(candidate))
        return None

    def save(self, path: Path, record: dict) -> dict:
        """Write ``record`` at ``path`` and in the archive (both atomically)."""
        record = {**record, "command": portable_command(record["command"])}
        save_record(path, record)
        copy = self.archived(path)
        if copy is not None:
            save_record(copy, record)
        return record

    def step(self, path: Path, command: Sequence, run: Callable[[], dict], *,
             outputs: Sequence[Path] = (), prepare: Optional[Callable[[], object]] = None
             ) -> Optional[dict]:
        """The record of ``command``; when there is none, or a file of ``outputs`` (what a
        later step reads) is missing, ``prepare()`` (the steps this one reads from) and then
        ``run()`` compute it, and it is saved with the command."""
        record = self.lookup(path, command)
        if self.report_only:
            return record
        if record is not None and all(Path(o).exists() for o in outputs):
            return record
        if record is not None:
            print(f"= {path}: recorded, but {[str(o) for o in outputs]} are needed again: "
                  "running it again", flush=True)
        if prepare is not None:
            prepare()
        return self.save(path, {"command": list(command), **run()})


def recorded_rows(rows: Dict[str, List[Optional[dict]]]) -> Dict[str, List[dict]]:
    """``rows`` (row name -> its seeds' records) without the steps not recorded yet: the
    ``None`` a :class:`RecordBook` gives under ``report_only``."""
    return {name: [r for r in records if r is not None] for name, records in rows.items()}


def seed_dir(out: Path, row: str, seed: int) -> Path:
    """Output directory of one seed of a recipe row: ``out/<row>/seed<seed>``."""
    return Path(out) / row / f"seed{seed}"


#: How every recipe fine-tunes the model zoo's network within its CPU budget: the pretrained
#: bottom-up backbone stays fixed (FPN, RPN and heads learn; detectron2's FREEZE_AT 5), 2 images
#: per batch at the embedded configs' LR scaled linearly (0.04 for 4 images). On a 2-core CPU
#: this takes a DensePose R-CNN step from ~3.1 s to ~0.85 s.
CPU_FINE_TUNING = ("MODEL.BACKBONE.FREEZE_AT", "5", "SOLVER.IMS_PER_BATCH", "2",
                   "SOLVER.BASE_LR", "0.02")


def shrunk_schedule(iters: int, seed: int) -> List[str]:
    """``train_net.py`` overrides for an embedded schedule shrunk to ``iters``, fine-tuned as
    :data:`CPU_FINE_TUNING` says: steps at 77% and 90%, warm-up of at most 100 iterations, one
    checkpoint at the end."""
    steps = sorted({s for s in (int(iters * 0.77), int(iters * 0.9)) if 0 < s < iters})
    return [*CPU_FINE_TUNING, "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", str(tuple(steps)),
            "SOLVER.WARMUP_ITERS", str(min(100, max(1, iters // 5))),
            "SOLVER.CHECKPOINT_PERIOD", str(iters), "SEED", str(seed)]


def schedule_text(iters: int) -> str:
    """How :func:`shrunk_schedule` trains, in the words a RESULTS.md uses."""
    o = dict(zip(CPU_FINE_TUNING[::2], CPU_FINE_TUNING[1::2]))
    return (f"{iters} iterations of {o['SOLVER.IMS_PER_BATCH']} images at LR "
            f"{o['SOLVER.BASE_LR']} with the bottom-up backbone frozen at the model zoo's weights "
            f"(FPN, RPN and heads learn; `{' '.join(CPU_FINE_TUNING)}`), steps at 77% and 90%")


def resumable_training(command: Sequence[str]) -> List[str]:
    """``[python, train_net.py, ...]`` that continues from its last checkpoint when re-run,
    saving one every :data:`RESUME_CHECKPOINT_PERIOD` iterations. Neither change alters what a
    finished run computes, so records keep the plain command."""
    command = [str(c) for c in command]
    return [*command[:2], "--resume", *command[2:],
            "SOLVER.CHECKPOINT_PERIOD", str(RESUME_CHECKPOINT_PERIOD)]


def prune_checkpoints(out_dir: Path) -> List[Path]:
    """Delete the periodic checkpoints of a finished run (``model_final.pth`` stays): a recipe
    of many rows would otherwise keep gigabytes that only an interrupted run needs. Returns
    the deleted files; nothing is deleted before ``model_final.pth`` exists."""
    out_dir = Path(out_dir)
    if not (out_dir / "model_final.pth").is_file():
        return []
    stale = sorted(p for p in out_dir.glob("model_*.pth") if p.name != "model_final.pth")
    for path in stale:
        path.unlink()
    return stale


def claim_output_dir(out_dir: Path, command: Sequence) -> None:
    """Mark ``out_dir`` as the output of ``command`` before a resumable run starts in it.

    A run resumes from whatever checkpoint its directory holds, so checkpoints left by another
    command (say, another schedule) would silently continue under the wrong settings: that is
    refused with an error naming the directory and both commands.
    """
    out_dir = Path(out_dir)
    command = [str(c) for c in command]
    path = out_dir / "recipe_command.json"
    previous = (_read_record(path) or {}).get("command")
    if previous == command:
        return
    if (out_dir / "last_checkpoint").is_file():
        whose = (f"another command:\n  there: {display_command(previous)}\n  now:   "
                 if previous else "an unknown command; to run: ")
        raise RuntimeError(f"{out_dir} holds checkpoints of {whose}{display_command(command)}\n"
                           "Delete the directory (or pick another output) to run this command.")
    save_record(path, {"command": command})


def write_report(path: Path, lines: List[str], commands: Sequence[str], note: str = "",
                 discussion: Optional[Path] = None) -> str:
    """A recipe's RESULTS.md: ``lines``, then a "Commands" section (``note``, then the shell
    lines ``commands``), then the text of ``discussion`` when that file exists; written
    atomically. Returns the text."""
    lines = [*lines, "", "## Commands", "",
             note or "Each step's exact command, run from the repository root:", "",
             "```bash", *commands, "```"]
    if discussion is not None and Path(discussion).is_file():
        lines += ["", Path(discussion).read_text().rstrip()]
    text = "\n".join(lines) + "\n"
    with atomic_write(Path(path), "w") as f:
        f.write(text)
    return text


def written_by(command: str) -> str:
    """The provenance a RESULTS.md opens with: the recipe's command, the date and the machine
    (numbers measured on a 2-core CPU read differently from a workstation's)."""
    return (f"Written by `{command}` ({time.strftime('%Y-%m-%d')}, {platform.machine()} CPU, "
            f"{os.cpu_count()} cores)")


def load_script(path: Path, module_name: str):
    """A Python script (a project's ``run.py``, a tool) as a module: projects are scripts, not
    packages, yet one recipe reuses another's rows and commands."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def display_command(command: Sequence) -> str:
    """A recorded command as a shell line, in its portable form (:func:`portable_command`)."""
    return shlex.join(portable_command(command))
