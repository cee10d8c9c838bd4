#!/usr/bin/env python
"""Mean teacher (Tarvainen & Valpola, 2017) on the embedded benchmark: train, evaluate, plot.

    python projects/MeanTeacher/run.py [--iters 400] [--seeds 0 1 2] [--out DIR]
        [--distillation-out DIR] [--results PATH] [--records DIR] [--distillation-records DIR]
        [--report-only]

Same labelled / unlabelled / test splits, model (multi-task DensePose R-CNN from the embedded
model zoo's backbone), schedule and seeds as projects/DataDistillation:

- ``baseline``: the supervised rows of the data-distillation recipe (run there, or here into
  its output directory when missing: the same command, recorded once);
- ``mean_teacher``: the labelled split plus the unlabelled images, 60/40 per batch, with the
  EMA teacher's consistency cost (``MEAN_TEACHER.*`` defaults, the paper's: decay 0.99 while the
  weight ramps up over the first quarter of training, then 0.999);
- ``mean_teacher_scaled``: the same with the EMA horizons 1/(1 - decay) scaled to the schedule
  (:func:`scaled_decays`). The paper's 100 and 1000 steps were chosen for runs of ~10^5 steps;
  1000 steps is longer than this whole schedule, so that teacher stays close to the average of
  the early students;
- ``pi_model``: the same with EMA decay 0 (the student, under its own other view, is its
  teacher);
- ``data distillation``: the data-distillation recipe's ``distill_multi`` rows, for
  reference, when that recipe has run.

Teacher and student are both evaluated four times during training; the last evaluation fills
the table (the teacher for the mean-teacher rows), the series draw ``teacher_vs_student.png``.
Verdicts by :func:`densepose_ext.engine.seed_stats.compare_rows`. Steps are recorded (a copy
under ``records/`` next to this script, committed) and skipped when re-run, also on a fresh
checkout; training resumes from its last checkpoint; ``--report-only`` runs nothing and writes
RESULTS.md (and the plot) from what is recorded. Budget: about 2 hours on a 2-core CPU (9
trainings of ~12 minutes: the teacher's extra forward pass and 8 evaluations each).
"""
import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from densepose_ext.engine.recipe import (RecordBook, claim_output_dir, display_command,
                                         prune_checkpoints, recorded_rows, resumable_training,
                                         run_command, load_script, seed_dir, shrunk_schedule,
                                         write_report, written_by)
from densepose_ext.engine.seed_stats import VERDICT_RULE, comparison_cells, format_mean_std

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_SEEDS = (0, 1, 2)
RATIOS = "(0.6, 0.4)"
#: the EMA horizon after the ramp-up, as a fraction of the schedule, in ``mean_teacher_scaled``
SCALED_HORIZON = 1 / 20
#: the paper's ratio of the horizons after and during the ramp-up (1000 / 100 steps)
PAPER_HORIZON_RATIO = 10


def scaled_decays(iters: int) -> List[str]:
    """EMA decays whose horizons 1/(1 - decay) are ``SCALED_HORIZON`` of ``iters`` after the
    ramp-up and ``PAPER_HORIZON_RATIO`` times shorter during it (0.95 and 0.5 at 400
    iterations); a horizon under one step is decay 0."""
    horizon = iters * SCALED_HORIZON
    decay, rampup = (max(0.0, 1.0 - 1.0 / h) for h in (horizon, horizon / PAPER_HORIZON_RATIO))
    # repr of a float keeps the point ("0.0"): the config refuses an int for a float key
    return ["MEAN_TEACHER.EMA_DECAY", repr(round(decay, 4)), "MEAN_TEACHER.EMA_DECAY_RAMPUP",
            repr(round(rampup, 4))]


#: rows trained here: name -> (label, config overrides for a schedule of ``iters`` iterations)
ROWS = {"mean_teacher": ("mean teacher, the paper's EMA decays (0.99 while ramping up, then "
                         "0.999)", lambda iters: []),
        "mean_teacher_scaled": ("mean teacher, EMA horizons scaled to the schedule "
                                "(`scaled_decays`)", scaled_decays),
        "pi_model": ("Pi-model control (EMA decay 0: the student is its teacher)",
                     lambda iters: ["MEAN_TEACHER.EMA_DECAY", "0.0",
                                    "MEAN_TEACHER.EMA_DECAY_RAMPUP", "0.0"])}
#: rows whose students are reported too, as ``<row>_student``
TEACHER_ROWS = ("mean_teacher", "mean_teacher_scaled")
METRIC_COLUMNS = (("gps_ap", "GPS AP"), ("gpsm_ap", "GPSm AP"), ("auc10", "AUC10"),
                  ("bbox_ap", "bbox AP"), ("keypoints_ap", "kp AP"))
# (what, metric, row before, row after): the paper's claims "after is better than before"
COMPARISONS = tuple(
    claim for row, decays in (("mean_teacher", "paper's decays"),
                              ("mean_teacher_scaled", "scaled decays"))
    for claim in ((f"supervised -> mean teacher ({decays})", "gps_ap", "baseline", row),
                  (f"supervised -> mean teacher ({decays})", "auc10", "baseline", row),
                  (f"student -> teacher ({decays})", "gps_ap", f"{row}_student", row),
                  (f"Pi-model -> mean teacher ({decays})", "gps_ap", "pi_model", row)))


def _distillation_recipe():
    """projects/DataDistillation/run.py as a module (its baseline rows are shared)."""
    return load_script(REPO / "projects" / "DataDistillation" / "run.py",
                       "data_distillation_recipe")


def _last_eval(metrics_file: Path, suffix: str = "") -> Dict[str, float]:
    """Headline numbers of the last evaluation in a run's metrics.json (``suffix``
    ``"_student"`` for the student's)."""
    from densepose_ext.evaluation.results import HEADLINE_KEYS, TASK_AP_KEYS

    last: Dict[str, float] = {}
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        if f"densepose_summary{suffix}/gps_ap" in row:
            last = row
    out = {k: last[f"densepose_summary{suffix}/{k}"] for k in HEADLINE_KEYS}
    for task, key in TASK_AP_KEYS.items():
        if f"{task}{suffix}/AP" in last:
            out[key] = last[f"{task}{suffix}/AP"]
    return out


def eval_series(metrics_file: Path) -> Dict[str, List[List[float]]]:
    """{"teacher": [[iteration, GPS AP], ...], "student": ...} of a run's evaluations."""
    series = {"teacher": [], "student": []}
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        for who, suffix in (("teacher", ""), ("student", "_student")):
            if f"densepose_summary{suffix}/gps_ap" in row:
                series[who].append([row["iteration"], row[f"densepose_summary{suffix}/gps_ap"]])
    return series


class Recipe:
    """Runs the mean-teacher rows, each once per seed, and keeps what they measured."""

    def __init__(self, out: Path, iters: int, distillation, records: Optional[Path] = None,
                 report_only: bool = False):
        """``distillation``: (the data-distillation recipe module, its Recipe); ``records``
        keeps a copy of every step's record; ``report_only``: run nothing, steps not done
        give None (see :class:`RecordBook`)."""
        self.out, self.iters, self.dd = out, iters, distillation
        self.book = RecordBook(out, records, report_only)

    def train_row(self, row: str, seed: int) -> dict:
        dd_module, dd = self.dd
        out_dir = seed_dir(self.out, row, seed)
        command = [sys.executable, "train_net.py", "--config-file",
                   str(dd_module.CONFIG.relative_to(REPO)), *shrunk_schedule(self.iters, seed),
                   "DATASETS.TRAIN", f'("{dd.train}", "{dd.unlabeled}")',
                   "DATASETS.TRAIN_RATIOS", RATIOS, "DATASETS.TEST", f'("{dd.test}",)',
                   "INPUT.DENSEPOSE_DENSE_POINTS", "0", "MEAN_TEACHER.ENABLED", "True",
                   "MEAN_TEACHER.RAMPUP_ITERS", str(max(1, self.iters // 4)),
                   "MEAN_TEACHER.EVAL_MODEL", "both",
                   "TEST.EVAL_PERIOD", str(max(1, self.iters // 4)), *ROWS[row][1](self.iters),
                   "OUTPUT_DIR", str(out_dir)]

        def run() -> dict:
            claim_output_dir(out_dir, command)
            minutes = run_command(resumable_training(command), REPO)
            prune_checkpoints(out_dir)
            metrics = out_dir / "metrics.json"
            return {"minutes": round(minutes, 2), "seed": seed,
                    "metrics": _last_eval(metrics), "student_metrics": _last_eval(
                        metrics, "_student"), "series": eval_series(metrics)}

        return self.book.step(out_dir / "row.json", command, run)


def plot_series(path: Path, rows: Dict[str, List[dict]]) -> None:
    """Teacher vs student GPS AP over training (mean over seeds), one panel per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [n for n in ROWS if rows.get(n)]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(5 * max(1, len(names)), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        for who, style in (("teacher", "-o"), ("student", "--s")):
            runs = [np.asarray(r["series"][who]) for r in rows[name] if r["series"][who]]
            if not runs:
                continue
            n = min(len(r) for r in runs)
            its = runs[0][:n, 0]
            values = np.stack([r[:n, 1] for r in runs])
            ax.errorbar(its, values.mean(0), yerr=values.std(0, ddof=1) if len(runs) > 1 else
                        None, fmt=style, capsize=3, label=f"{who} ({len(runs)} seeds)")
        ax.set_title(ROWS[name][0].split(" (")[0])
        ax.set_xlabel("iteration")
        ax.set_ylabel("GPS AP (coarse-part, exact protocol)")
        ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _values(records: Sequence[dict], key: str) -> List[float]:
    return [r["metrics"][key] for r in records if key in r["metrics"]]


def _digits(key: str) -> int:
    return 3 if key.startswith("auc") else 1


def _cell(records: Sequence[dict], key: str) -> str:
    values = _values(records, key)
    return format_mean_std(values, _digits(key)) if values else "–"


def write_results(path: Path, args, rows: Dict[str, List[dict]], commands: List) -> str:
    """RESULTS.md from the recorded rows (``baseline``, ``distill_multi``, the rows here and
    ``<row>_student`` for the ``TEACHER_ROWS``: the students of those runs)."""
    seeds = " ".join(str(s) for s in args.seeds)
    labels = {"baseline": "supervised baseline (labelled split only)",
              **{k: v[0] for k, v in ROWS.items()},
              **{f"{k}_student": f"the students of the `{k}` runs" for k in TEACHER_ROWS},
              "distill_multi": "data distillation (projects/DataDistillation), for reference"}
    lines = [
        "# Mean teacher on the embedded benchmark", "",
        written_by(f"python projects/MeanTeacher/run.py --iters {args.iters} --seeds {seeds}")
        + ". Splits, model, schedule and seeds as projects/DataDistillation (labelled "
        "`densepose_embedded_train`, unlabelled `densepose_embedded_unlabeled`, test "
        "`densepose_embedded_val`); cells: mean ± std over the seeds (sample std) at the end of "
        "training; the mean-teacher rows report the teacher.", "",
        "Protocols: **GPS AP / GPSm AP** in percent, COCO-style AP over GPS thresholds "
        "0.50:0.95, coarse-part normalisation, protocol `exact` (points placed as the renderer "
        "places them); **AUC10** the pointwise AUC of the geodesic error up to 10 cm; bbox / kp "
        "AP are COCO's. The paper (image classification: SVHN, CIFAR-10, ImageNet) reports the "
        "teacher more accurate than the student and mean teacher above the supervised and "
        "Pi-model baselines; it has no DensePose numbers, so the table gives its direction only.",
        "", "EMA decays: `mean_teacher` uses the paper's (0.99 during the consistency ramp-up, "
        "0.999 after: horizons 1/(1 - decay) of 100 and 1000 steps, chosen for runs of ~10^5 "
        "steps); `mean_teacher_scaled` scales the horizons to this schedule, "
        f"{SCALED_HORIZON:.3g} of it after the ramp-up and {PAPER_HORIZON_RATIO} times shorter "
        "during it (the paper's ratio): " + " ".join(scaled_decays(args.iters)) + ".",
        "", "| row | what | seeds | train+eval min | "
        + " | ".join(h for _, h in METRIC_COLUMNS) + " |",
        "|" + "---|" * (4 + len(METRIC_COLUMNS))]
    for name in ("baseline", *ROWS, *(f"{k}_student" for k in TEACHER_ROWS), "distill_multi"):
        recs = rows.get(name, [])
        if not recs:
            lines.append(f"| {name} | {labels[name]} | – | not run |" + " |" * len(METRIC_COLUMNS))
            continue
        # a student row is read from its teacher row's runs: their time is counted there
        minutes = [r["minutes"] for r in recs if "minutes" in r and not name.endswith("_student")]
        lines.append(f"| {name} | {labels[name]} | {len(recs)} | "
                     + (f"{sum(minutes) / len(minutes):.1f}" if minutes else "(same runs)")
                     + " | " + " | ".join(_cell(recs, k) for k, _ in METRIC_COLUMNS) + " |")
    lines += ["", "## The paper's claims", "", VERDICT_RULE, "",
              "| comparison | metric | measured (mean ± std) | difference ± SE | verdict |",
              "|---|---|---|---|---|"]
    for what, key, before, after in COMPARISONS:
        cells = comparison_cells(_values(rows.get(before, []), key),
                                 _values(rows.get(after, []), key), _digits(key))
        lines.append(f"| {what} | {key} | " + " | ".join(cells) + " |")
    lines += ["", "![teacher vs student](teacher_vs_student.png)", "",
              "Teacher and student GPS AP at each evaluation during training (mean ± std over "
              "the seeds)."]
    return write_report(path, lines, [display_command(c) for c in commands],
                        discussion=HERE / "discussion.md")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=400, help="training iterations per row")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--out", default="output/mean_teacher")
    parser.add_argument("--distillation-out", default="output/data_distillation",
                        help="the data-distillation recipe's --out (shared baseline rows)")
    parser.add_argument("--train", default="densepose_embedded_train")
    parser.add_argument("--unlabeled", default="densepose_embedded_unlabeled")
    parser.add_argument("--test", default="densepose_embedded_val")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--records", default=str(HERE / "records"),
                        help="where a copy of every step's record is kept (committed with the "
                             "project, so finished steps survive the loss of --out)")
    parser.add_argument("--distillation-records",
                        default=str(REPO / "projects" / "DataDistillation" / "records"),
                        help="the data-distillation recipe's --records")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing; write RESULTS.md from the recorded steps")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    dd_module = _distillation_recipe()
    dd = dd_module.Recipe(Path(args.distillation_out).absolute(), args.iters, args.train,
                          args.unlabeled, args.test, Path(args.distillation_records),
                          args.report_only)
    recipe = Recipe(Path(args.out).absolute(), args.iters, (dd_module, dd), Path(args.records),
                    args.report_only)
    rows: Dict[str, List[dict]] = {}
    for seed in args.seeds:
        rows.setdefault("baseline", []).append(dd.train_row("baseline", seed))
        for row in ROWS:
            rows.setdefault(row, []).append(recipe.train_row(row, seed))
    # None: a step not recorded yet (--report-only)
    rows = recorded_rows(rows)
    for row in TEACHER_ROWS:
        rows[f"{row}_student"] = [dict(r, metrics=r["student_metrics"]) for r in rows[row]]
    distilled = [dd.book.read(seed_dir(dd.out, "distill_multi", s) / "row.json")
                 for s in args.seeds]
    rows["distill_multi"] = [r for r in distilled if r is not None]
    plot_series(Path(args.results).parent / "teacher_vs_student.png", rows)
    commands = [r["command"] for name in ("baseline", *ROWS) for r in rows[name]]
    print(write_results(Path(args.results), args, rows, commands))


if __name__ == "__main__":
    main()
