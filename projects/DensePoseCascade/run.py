#!/usr/bin/env python
"""The DensePose paper's ablations on the embedded benchmark: train, evaluate, write RESULTS.md.

    python projects/DensePoseCascade/run.py [--iters 400] [--seeds 0 1 2] [--out DIR]
        [--rows fcn rcnn ...] [--train D] [--test D] [--results PATH] [--records DIR]
        [--report-only]

Every row fine-tunes one model from the embedded model zoo's pretrained backbone
(``densepose_ext://R_18_GN_FPN_pretrain.pth``, the stand-in for ImageNet weights) with
``train_net.py`` for the same number of iterations and the recipes' common fine-tuning setting
(:data:`densepose_ext.engine.recipe.CPU_FINE_TUNING`: bottom-up backbone frozen at the
pretrained weights, 2 images per batch), once per seed, and evaluates it on the test split:
FCN (whole images and single-person crops) vs DensePose R-CNN; single-task vs +mask vs
+keypoints; a refinement stage without cross links vs the cross-task cascade (DP+mask+kp,
DP+mask, DP+kp); sparse points vs interpolated ground truth
(each seed's FCN is that seed's teacher, as in the paper). Each seed of the cascade model is
also evaluated with its stage-1 outputs; seed 0's is timed; each teacher's dense labels are
scored against the renderer's exact IUV.

Tables give mean ± std over the seeds; each of the paper's comparisons gets the verdict of
:func:`densepose_ext.engine.seed_stats.compare_rows` ("reproduced" only when the difference
exceeds twice its standard error). Budget: the defaults (400 iterations, 3 seeds, 10 rows) take
about 5 hours on a 2-core CPU: per seed ~85 minutes of training (0.6 s per iteration for the
FCN, 0.85 s for DensePose R-CNN, up to 2.3 s for the two-stage cascades) and ~15 minutes of
evaluation and teacher labelling. A DensePose R-CNN of this setting reaches bbox AP ~51 and
GPS AP ~5 (seed 0), clear of the floor of the same model trained from scratch.

A step whose record (``DIR/<row>/seed<k>/row.json``, copied to ``records/<row>/seed<k>/`` next
to this script and committed) holds the same command is not run again, so an interrupted recipe
resumes, also on a fresh checkout; a row cut off mid-training continues from its last
checkpoint (every 100 iterations), and its minutes then count only the part after the restart.
A finished row whose weights a pending step needs (an FCN teacher, a cascade model) is trained
again when they are gone.
``RESULTS.md`` is rewritten from every finished step at the end; the text of
``discussion.md`` next to this script, when present, closes it.
"""
import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from densepose_ext.engine.recipe import (RecordBook, claim_output_dir, display_command,
                                         prune_checkpoints, resumable_training, run_command,
                                         schedule_text, seed_dir, shrunk_schedule, write_report,
                                         written_by)
from densepose_ext.engine.seed_stats import compare_rows, format_mean_std

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIGS = REPO / "configs" / "embedded"
RCNN = CONFIGS / "densepose_rcnn_R_18_GN_FPN.yaml"
FCN = CONFIGS / "densepose_fcn_R_18_GN_FPN.yaml"
CASCADE = CONFIGS / "densepose_rcnn_R_18_GN_FPN_cascade.yaml"
INTERPOLATED_SUFFIX = "_interpolated"
DEFAULT_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Row:
    """One trained and evaluated model of the table."""

    name: str
    label: str
    config: Path
    opts: Tuple[str, ...] = ()
    interpolated: bool = False  # train on <train>_interpolated (teacher: the "fcn" row)
    paper: Dict[str, float] = field(default_factory=dict)  # the paper's AUC10 / GPS AP


# Paper numbers: the same variant on DensePose-COCO (ResNet-50, ImageNet-pretrained, full
# schedule), rounded as the paper's tables report them; a variant the paper does not report
# has none.
ROWS = (
    Row("fcn", "FCN", FCN, paper={"auc10": 0.25}),
    Row("fcn_crop", "FCN, single-person crops (GT boxes)", FCN,
        ("MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP", "True")),
    Row("rcnn", "DensePose R-CNN", RCNN, paper={"auc10": 0.32, "gps_ap": 51}),
    Row("mask", "DensePose R-CNN + mask", CONFIGS / "densepose_rcnn_R_18_GN_FPN_multitask_mask.yaml",
        paper={"gps_ap": 52}),
    Row("kp", "DensePose R-CNN + keypoints", CONFIGS / "densepose_rcnn_R_18_GN_FPN_multitask_kp.yaml",
        paper={"gps_ap": 53}),
    Row("refine", "refinement stage, no cross links (DP+mask+kp)", CASCADE,
        ("MODEL.ROI_CASCADE_HEAD.CROSS_TASK", "False")),
    Row("cascade", "cross-task cascade (DP+mask+kp)", CASCADE),
    Row("cascade_mask", "cross-task cascade with masks (DP+mask)",
        CONFIGS / "densepose_rcnn_R_18_GN_FPN_cascade_mask.yaml", paper={"gps_ap": 53}),
    Row("cascade_kp", "cross-task cascade with keypoints (DP+kp)",
        CONFIGS / "densepose_rcnn_R_18_GN_FPN_cascade_kp.yaml", paper={"gps_ap": 56}),
    Row("interp", "DensePose R-CNN, interpolated GT", RCNN, interpolated=True,
        paper={"auc10": 0.38}),
)
ROW_NAMES = tuple(r.name for r in ROWS)
ROW = {r.name: r for r in ROWS}

# (what, metric, row before, row after): the paper's claims "after is better than before"
COMPARISONS = (
    ("FCN -> R-CNN", "auc10", "fcn", "rcnn"),
    ("points -> interpolated GT", "auc10", "rcnn", "interp"),
    ("single task -> + mask", "gps_ap", "rcnn", "mask"),
    ("single task -> + keypoints", "gps_ap", "rcnn", "kp"),
    ("+ mask -> cascade with masks", "gps_ap", "mask", "cascade_mask"),
    ("+ keypoints -> cascade with keypoints", "gps_ap", "kp", "cascade_kp"),
    ("single task -> cross-task cascade", "gps_ap", "rcnn", "cascade"),
    ("no cross links -> cross-task cascade", "gps_ap", "refine", "cascade"),
    ("cascade stage 1 -> stage 2", "gps_ap", "cascade_stage1", "cascade"),
)
METRIC_COLUMNS = (("gps_ap", "GPS AP"), ("gpsm_ap", "GPSm AP"), ("auc10", "AUC10"),
                  ("auc20", "AUC20"), ("auc30", "AUC30"), ("bbox_ap", "bbox AP"),
                  ("segm_ap", "mask AP"), ("keypoints_ap", "kp AP"))


class Recipe:
    """Runs the steps in order, each once per seed, and keeps what they measured."""

    def __init__(self, out: Path, iters: int, train: str, test: str,
                 records: Optional[Path] = None, report_only: bool = False):
        """``out`` is absolute or relative to the repository root; ``records`` keeps a copy
        of every step's record; ``report_only``: run nothing, steps not done give None (see
        :class:`RecordBook`)."""
        self.out, self.iters, self.train, self.test = out, iters, train, test
        self.book = RecordBook(out, records, report_only)

    def interp_env(self, seed: int) -> dict:
        """Where the interpolated datasets of ``seed``'s teacher are registered from."""
        return {"DENSEPOSE_INTERPOLATED_ROOT": str(self.out / "interpolated" / f"seed{seed}")}

    def train_row(self, row: Row, seed: int, keep_weights: bool = False) -> dict:
        """``row`` trained with ``seed`` and evaluated; ``keep_weights``: its
        ``model_final.pth`` is needed by a step that has not run yet (retrained if lost)."""
        from densepose_ext.evaluation import read_headline_metrics

        out_dir = seed_dir(self.out, row.name, seed)
        train = self.train + (INTERPOLATED_SUFFIX if row.interpolated else "")
        command = [sys.executable, "train_net.py", "--config-file",
                   str(row.config.relative_to(REPO)), *row.opts,
                   *shrunk_schedule(self.iters, seed),
                   "DATASETS.TRAIN", f'("{train}",)', "DATASETS.TEST", f'("{self.test}",)',
                   "OUTPUT_DIR", str(out_dir)]

        def run() -> dict:
            claim_output_dir(out_dir, command)
            minutes = run_command(resumable_training(command), REPO, self.interp_env(seed))
            prune_checkpoints(out_dir)
            return {"minutes": round(minutes, 2), "seed": seed, "train_dataset": train,
                    "metrics": read_headline_metrics(out_dir)}

        return self.book.step(
            out_dir / "row.json", command, run,
            outputs=[out_dir / "model_final.pth"] if keep_weights else (),
            prepare=(lambda: self.interpolate(seed, keep_targets=True)) if row.interpolated
            else None)

    def interpolate(self, seed: int, keep_targets: bool = False) -> dict:
        """Dense targets for the training split from ``seed``'s FCN teacher, scored against
        the renderer's exact labels; ``keep_targets``: a training still reads them."""
        env = self.interp_env(seed)
        targets = Path(env["DENSEPOSE_INTERPOLATED_ROOT"]) / self.train
        teacher = seed_dir(self.out, "fcn", seed) / "model_final.pth"
        command = [sys.executable, "-m", "distill.interpolate", "--config-file",
                   str(FCN.relative_to(REPO)), "--weights", str(teacher), "--dataset", self.train,
                   "--out", str(targets), "--no-progress"]

        def run() -> dict:
            minutes = run_command(command, REPO, env)
            scores = seed_dir(self.out, "teacher_labels", seed) / "scores.json"
            run_command([sys.executable, "-m", "distill.evaluate_targets", "--dataset", self.train,
                         "--targets", targets, "--out", scores], REPO, env)
            return {"minutes": round(minutes, 2), "scores": json.loads(scores.read_text())}

        return self.book.step(seed_dir(self.out, "teacher_labels", seed) / "record.json",
                              command, run,
                              outputs=[targets / "annotations.json"] if keep_targets else (),
                              prepare=lambda: self.train_row(ROW["fcn"], seed, True))

    def stage1(self, seed: int) -> dict:
        """``seed``'s cascade model evaluated with its stage-1 outputs."""
        from densepose_ext.evaluation import read_headline_metrics

        out_dir = seed_dir(self.out, "cascade_stage1", seed)
        weights = seed_dir(self.out, "cascade", seed) / "model_final.pth"
        command = [sys.executable, "train_net.py", "--eval-only", "--config-file",
                   str(CASCADE.relative_to(REPO)), "MODEL.WEIGHTS", str(weights),
                   "MODEL.ROI_CASCADE_HEAD.TEST_STAGE", "1", "DATASETS.TEST", f'("{self.test}",)',
                   "OUTPUT_DIR", str(out_dir)]

        def run() -> dict:
            run_command(command, REPO)
            return {"seed": seed, "train_dataset": "(the cascade model)",
                    "metrics": read_headline_metrics(out_dir)}

        return self.book.step(out_dir / "row.json", command, run,
                              prepare=lambda: self.train_row(ROW["cascade"], seed, True))

    def timing(self, seed: int) -> dict:
        """Inference speed of stage 1 and stage 2 of one cascade model (same process
        conditions, interleaved, best of two each)."""
        weights = seed_dir(self.out, "cascade", seed) / "model_final.pth"
        command = [sys.executable, "tools/benchmark.py", "--config-file",
                   str(CASCADE.relative_to(REPO)), "--train-iters", "0", "--images", "100",
                   "--opts", "MODEL.WEIGHTS", str(weights), "DATASETS.TEST", f'("{self.test}",)']

        def run() -> dict:
            speeds = {}
            for stage in (1, 2, 1, 2):
                res = subprocess.run(
                    [*map(str, command), "MODEL.ROI_CASCADE_HEAD.TEST_STAGE", str(stage)],
                    cwd=REPO, check=True, capture_output=True, text=True)
                ips = json.loads(res.stdout.strip().splitlines()[-1])["inference_images_per_s"]
                speeds[stage] = max(speeds.get(stage, 0.0), ips)
            return {"stage1_images_per_s": speeds[1], "stage2_images_per_s": speeds[2],
                    "stage2_over_stage1_time": round(speeds[1] / speeds[2], 3)}

        return self.book.step(self.out / "cascade_timing.json", command, run,
                              prepare=lambda: self.train_row(ROW["cascade"], seed, True))


def _digits(key: str) -> int:
    return 3 if key.startswith("auc") else 2


def _fmt(value: Optional[float], key: str) -> str:
    if value is None:
        return "–"
    return f"{value:.{_digits(key)}f}" if key.startswith("auc") or abs(value) < 10 \
        else f"{value:.1f}"


def _values(records: Sequence[dict], key: str) -> List[float]:
    return [r["metrics"][key] for r in records if key in r["metrics"]]


def _cell(records: Sequence[dict], key: str) -> str:
    values = _values(records, key)
    return format_mean_std(values, _digits(key)) if values else "–"


def write_results(path: Path, args, rows: Dict[str, List[dict]], extra: Dict[str, object]) -> str:
    """RESULTS.md from the recorded steps: ``rows`` maps a row (or ``cascade_stage1``) to its
    seeds' records; rows not run are listed as such."""
    seeds = " ".join(str(s) for s in args.seeds)
    lines = [
        "# DensePose paper ablations on the embedded benchmark",
        "",
        written_by(f"python projects/DensePoseCascade/run.py --iters {args.iters} --seeds "
                   f"{seeds}")
        + ". Every model fine-tunes the embedded model zoo's pretrained backbone "
        f"(`densepose_ext://R_18_GN_FPN_pretrain.pth`, see MODEL_ZOO.md) on `{args.train}` for "
        f"{schedule_text(args.iters)} (the embedded configs' gradient clipping), once per "
        f"seed, and is evaluated on `{args.test}`. Cells: mean ± std over the seeds (sample "
        "std).",
        "",
        "Protocols: **GPS AP / GPSm AP** in percent, COCO-style AP over GPS thresholds "
        "0.50:0.95 with the **coarse-part normalisation** (detectron2 DensePose's per-part "
        "kappa), annotated points placed as the renderer and training place them (x = x0 + "
        "dp_x * w / 256); **AUC10/20/30** is the paper's "
        "pointwise AUC over every annotated point (geodesic error on the 1.74 m template body, "
        "a missed person counts as infinite error), a fraction; bbox / mask / kp AP are COCO's. "
        "Paper numbers: the same variant on DensePose-COCO (ResNet-50 ImageNet-pretrained, full "
        "schedule, GPS AP with the paper's single kappa): different data, backbone and budget, "
        "given for orientation, not as targets.",
        "",
        "| row | model | seeds | train+eval min | "
        + " | ".join(h for _, h in METRIC_COLUMNS) + " | paper AUC10 | paper GPS AP |",
        "|" + "---|" * (4 + len(METRIC_COLUMNS) + 2),
    ]
    table_rows = [(r.name, r.label, r.paper) for r in ROWS]
    table_rows.insert(ROW_NAMES.index("cascade") + 1,
                      ("cascade_stage1", "the `cascade` models, stage-1 outputs", {}))
    for name, label, paper in table_rows:
        recs = rows.get(name, [])
        if not recs:
            lines.append(f"| {name} | {label} | – | not run |" + " |" * (len(METRIC_COLUMNS) + 2))
            continue
        minutes = [r["minutes"] for r in recs if "minutes" in r]
        lines.append(
            f"| {name} | {label} | {len(recs)} | "
            + (f"{sum(minutes) / len(minutes):.1f}" if minutes else "eval only") + " | "
            + " | ".join(_cell(recs, k) for k, _ in METRIC_COLUMNS)
            + f" | {_fmt(paper.get('auc10'), 'auc10')} | {_fmt(paper.get('gps_ap'), '')} |")

    lines += ["", "## The paper's comparisons", "",
              "Verdict: **reproduced** when the mean difference over the seeds lies in the "
              "paper's direction and exceeds twice its standard error (Welch); **not resolved "
              "at this budget** within two standard errors; **opposite (> 2 SE)** beyond them "
              "the other way. The table claims nothing beyond its verdicts.", "",
              "| comparison | metric | paper | measured (mean ± std) | difference ± SE | verdict |",
              "|---|---|---|---|---|---|"]
    paper_value = {r.name: r.paper for r in ROWS}
    for what, key, before, after in COMPARISONS:
        pb, pa = paper_value.get(before, {}).get(key), paper_value.get(after, {}).get(key)
        paper = f"{_fmt(pb, key)} -> {_fmt(pa, key)}" if pb is not None and pa is not None \
            else "better (no number)"
        vb, va = _values(rows.get(before, []), key), _values(rows.get(after, []), key)
        if vb and va:
            c = compare_rows(vb, va)
            measured = f"{_cell(rows[before], key)} -> {_cell(rows[after], key)}"
            se = "–" if c.standard_error is None else _fmt(c.standard_error, key)
            diff = f"{c.difference:+.{_digits(key)}f} ± {se}"
            lines.append(f"| {what} | {key} | {paper} | {measured} | {diff} | {c.verdict} |")
        else:
            lines.append(f"| {what} | {key} | {paper} | not run | – | – |")

    timing = extra.get("timing")
    if timing:
        lines += ["", "## Cascade inference cost", "",
                  f"The seed-0 `cascade` model on `{args.test}` (batch 1, best of two runs each, "
                  f"`tools/benchmark.py`): stage-1 outputs {timing['stage1_images_per_s']:.2f} "
                  f"images/s, stage 2 {timing['stage2_images_per_s']:.2f} images/s: stage 2 costs "
                  f"**{timing['stage2_over_stage1_time']:.2f}x** the time of stage 1 alone."]
    teachers = extra.get("teacher") or []
    if teachers:
        lines += ["", "## Teacher labels against the exact dense IUV", "",
                  f"Each seed's `fcn` model as teacher on `{args.train}`, labels kept inside the "
                  "GT mask, compared with the renderer's exact IUV (mean ± std over "
                  f"{len(teachers)} teachers; AUC as above, median geodesic error in cm):", "",
                  "| where | labelled pixels / points | part accuracy | AUC10 | AUC20 | AUC30 "
                  "| median error (cm) |", "|---|---|---|---|---|---|---|"]
        for where in ("dense", "points"):
            scores = [t["scores"][where] for t in teachers]
            cells = [format_mean_std([s[k] for s in scores], d) for k, d in (
                ("part_accuracy", 3), ("auc10", 3), ("auc20", 3), ("auc30", 3),
                ("median_error_cm", 1))]
            lines.append(f"| {where} | {scores[0]['count']} | " + " | ".join(cells) + " |")

    commands = [display_command(r["command"]) for recs in rows.values() for r in recs]
    commands += [display_command(t["command"]) for t in teachers]
    if timing:
        commands.append(display_command(timing["command"])
                        + " MODEL.ROI_CASCADE_HEAD.TEST_STAGE {1,2}")
    return write_report(path, lines, commands,
                        "Each step's exact command (run from the repository root; rows with "
                        "interpolated GT need `DENSEPOSE_INTERPOLATED_ROOT` set to the recipe's "
                        "`interpolated/seed<k>/` directory):", HERE / "discussion.md")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=400, help="training iterations per row")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--out", default="output/densepose_cascade",
                        help="absolute, or relative to the repository root")
    parser.add_argument("--rows", nargs="+", choices=ROW_NAMES, default=list(ROW_NAMES))
    parser.add_argument("--train", default="densepose_embedded_train")
    parser.add_argument("--test", default="densepose_embedded_val")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--records", default=str(HERE / "records"),
                        help="where a copy of every step's record is kept (committed with the "
                             "project, so finished steps survive the loss of --out)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: write RESULTS.md from the steps already recorded")
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error("--iters must be >= 1")
    os.chdir(REPO)  # every command, and a relative --out, are taken from the repository root
    recipe = Recipe(Path(args.out), args.iters, args.train, args.test, Path(args.records),
                    args.report_only)

    wanted = set(args.rows)
    if "interp" in wanted:
        wanted.add("fcn")  # the teacher
    rows: Dict[str, List[dict]] = {}
    extra: Dict[str, object] = {"teacher": []}

    def keep(records: List[dict], record: Optional[dict]) -> None:
        if record is not None:  # None: not recorded yet (--report-only)
            records.append(record)

    # seed by seed: a recipe stopped early has whole seeds of every row
    for seed in args.seeds:
        for row in ROWS:
            if row.name not in wanted:
                continue
            if row.interpolated:
                keep(extra["teacher"], recipe.interpolate(seed))
            keep(rows.setdefault(row.name, []), recipe.train_row(row, seed))
            if row.name == "cascade":
                keep(rows.setdefault("cascade_stage1", []), recipe.stage1(seed))
                if seed == args.seeds[0]:
                    extra["timing"] = recipe.timing(seed)
    print(write_results(Path(args.results), args, rows, extra))


if __name__ == "__main__":
    main()
