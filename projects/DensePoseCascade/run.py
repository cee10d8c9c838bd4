#!/usr/bin/env python
"""The DensePose paper's ablations on the embedded benchmark: train, evaluate, write RESULTS.md.

    python projects/DensePoseCascade/run.py [--iters 600] [--seed 0] [--out DIR]
        [--rows fcn rcnn ...] [--train D] [--test D] [--results PATH]

Every row trains one model from scratch with ``train_net.py`` for the same number of
iterations (same seed, batch, LR schedule shape) and evaluates it on the test split:
FCN vs DensePose R-CNN; single-task vs +mask vs +keypoints; a refinement stage without cross
links vs the cross-task cascade; sparse points vs interpolated ground truth (the trained FCN is
the teacher, as in the paper). The cascade model is also evaluated and timed with its stage-1
outputs, and the teacher's dense labels are scored against the renderer's exact IUV.

A row whose ``DIR/<row>/row.json`` records the same command is not run again, so an interrupted
recipe resumes; a row cut off mid-training continues from its last checkpoint (every 100
iterations), and its minutes then count only the part after the restart. ``RESULTS.md`` is rewritten from every finished row at the end; the text of
``discussion.md`` next to this script, when present, closes it.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from densepose_ext.engine.recipe import (cached_record, claim_output_dir, display_command,
                                         resumable_training, run_command, save_record,
                                         shrunk_schedule)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIGS = REPO / "configs" / "embedded"
RCNN = CONFIGS / "densepose_rcnn_R_18_GN_FPN.yaml"
FCN = CONFIGS / "densepose_fcn_R_18_GN_FPN.yaml"
CASCADE = CONFIGS / "densepose_rcnn_R_18_GN_FPN_cascade.yaml"
INTERPOLATED_SUFFIX = "_interpolated"


@dataclass(frozen=True)
class Row:
    """One trained and evaluated model of the table."""

    name: str
    label: str
    config: Path
    opts: Tuple[str, ...] = ()
    interpolated: bool = False  # train on <train>_interpolated (teacher: the "fcn" row)
    paper: Dict[str, float] = field(default_factory=dict)  # the paper's AUC10 / GPS AP


# Paper numbers (DensePose-COCO, rounded as the paper's tables report them).
ROWS = (
    Row("fcn", "FCN", FCN, paper={"auc10": 0.25}),
    Row("rcnn", "DensePose R-CNN", RCNN, paper={"auc10": 0.32, "gps_ap": 51}),
    Row("mask", "DensePose R-CNN + mask", CONFIGS / "densepose_rcnn_R_18_GN_FPN_multitask_mask.yaml",
        paper={"gps_ap": 52}),
    Row("kp", "DensePose R-CNN + keypoints", CONFIGS / "densepose_rcnn_R_18_GN_FPN_multitask_kp.yaml",
        paper={"gps_ap": 53}),
    Row("refine", "refinement stage, no cross links (DP+mask+kp)", CASCADE,
        ("MODEL.ROI_CASCADE_HEAD.CROSS_TASK", "False")),
    Row("cascade", "cross-task cascade (DP+mask+kp)", CASCADE, paper={"gps_ap": 56, "auc10": 0.39}),
    Row("interp", "DensePose R-CNN, interpolated GT", RCNN, interpolated=True,
        paper={"auc10": 0.38}),
)
ROW_NAMES = tuple(r.name for r in ROWS)

# (what, metric, row before, row after): the paper's claims, checked for direction
COMPARISONS = (
    ("FCN -> R-CNN", "auc10", "fcn", "rcnn"),
    ("points -> interpolated GT", "auc10", "rcnn", "interp"),
    ("single task -> + mask", "gps_ap", "rcnn", "mask"),
    ("single task -> + keypoints", "gps_ap", "rcnn", "kp"),
    ("single task -> cross-task cascade", "gps_ap", "rcnn", "cascade"),
    ("no cross links -> cross-task cascade", "gps_ap", "refine", "cascade"),
)
METRIC_COLUMNS = (("gps_ap", "GPS AP"), ("gpsm_ap", "GPSm AP"), ("auc10", "AUC10"),
                  ("auc20", "AUC20"), ("auc30", "AUC30"), ("bbox_ap", "bbox AP"),
                  ("segm_ap", "mask AP"), ("keypoints_ap", "kp AP"))


class Recipe:
    """Runs the rows in order, each once, and keeps what they measured."""

    def __init__(self, out: Path, iters: int, seed: int, train: str, test: str):
        """``out`` is absolute or relative to the repository root."""
        self.out, self.iters, self.seed, self.train, self.test = out, iters, seed, train, test
        self.interp_root = out / "interpolated"
        self.env = {"DENSEPOSE_INTERPOLATED_ROOT": str(self.interp_root)}

    def train_row(self, row: Row) -> dict:
        from densepose_ext.evaluation import read_headline_metrics

        out_dir = self.out / row.name
        train = self.train + (INTERPOLATED_SUFFIX if row.interpolated else "")
        command = [sys.executable, "train_net.py", "--config-file",
                   str(row.config.relative_to(REPO)), *row.opts,
                   *shrunk_schedule(self.iters, self.seed),
                   "DATASETS.TRAIN", f'("{train}",)', "DATASETS.TEST", f'("{self.test}",)',
                   "OUTPUT_DIR", str(out_dir)]
        record = cached_record(out_dir / "row.json", command)
        if record is None:
            claim_output_dir(out_dir, command)
            minutes = run_command(resumable_training(command), REPO, self.env)
            record = save_record(out_dir / "row.json", {
                "command": command, "minutes": round(minutes, 2), "train_dataset": train,
                "metrics": read_headline_metrics(out_dir)})
        return record

    def interpolate(self, teacher: Path) -> dict:
        """Dense targets for the training split from the FCN teacher, scored against the
        renderer's exact labels."""
        targets = self.interp_root / self.train
        command = [sys.executable, "-m", "distill.interpolate", "--config-file",
                   str(FCN.relative_to(REPO)), "--weights", str(teacher), "--dataset", self.train,
                   "--out", str(targets), "--no-progress"]
        path = self.out / "teacher_labels.json"
        record = cached_record(path, command)
        if record is None:
            minutes = run_command(command, REPO, self.env)
            scores = self.out / "teacher_labels_scores.json"
            run_command([sys.executable, "-m", "distill.evaluate_targets", "--dataset", self.train,
                         "--targets", targets, "--out", scores], REPO, self.env)
            record = save_record(path, {"command": command, "minutes": round(minutes, 2),
                                       "scores": json.loads(scores.read_text())})
        return record

    def stage1(self) -> Tuple[dict, dict]:
        """The cascade model evaluated with its stage-1 outputs, and inference speed of both
        stages on the same model (same process conditions, one after the other)."""
        from densepose_ext.evaluation import read_headline_metrics

        out_dir = self.out / "cascade_stage1"
        weights = self.out / "cascade" / "model_final.pth"
        config = str(CASCADE.relative_to(REPO))
        command = [sys.executable, "train_net.py", "--eval-only", "--config-file", config,
                   "MODEL.WEIGHTS", str(weights), "MODEL.ROI_CASCADE_HEAD.TEST_STAGE", "1",
                   "DATASETS.TEST", f'("{self.test}",)', "OUTPUT_DIR", str(out_dir)]
        record = cached_record(out_dir / "row.json", command)
        if record is None:
            run_command(command, REPO, self.env)
            record = save_record(out_dir / "row.json", {
                "command": command, "metrics": read_headline_metrics(out_dir)})
        timing_cmd = [sys.executable, "tools/benchmark.py", "--config-file", config,
                      "--train-iters", "0", "--images", "100", "--opts", "MODEL.WEIGHTS",
                      str(weights), "DATASETS.TEST", f'("{self.test}",)']
        path = self.out / "cascade_timing.json"
        timing = cached_record(path, timing_cmd)
        if timing is None:
            speeds = {}
            for stage in (1, 2, 1, 2):  # interleaved, best of two each: less drift
                res = subprocess.run(
                    [*map(str, timing_cmd), "MODEL.ROI_CASCADE_HEAD.TEST_STAGE", str(stage)],
                    cwd=REPO, check=True, capture_output=True, text=True,
                    env={**os.environ, **self.env})
                ips = json.loads(res.stdout.strip().splitlines()[-1])["inference_images_per_s"]
                speeds[stage] = max(speeds.get(stage, 0.0), ips)
            timing = save_record(path, {
                "command": timing_cmd, "stage1_images_per_s": speeds[1],
                "stage2_images_per_s": speeds[2],
                "stage2_over_stage1_time": round(speeds[1] / speeds[2], 3)})
        return record, timing


def _fmt(value: Optional[float], key: str) -> str:
    if value is None:
        return "–"
    if key.startswith("auc"):
        return f"{value:.3f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"  # small APs keep their order


def write_results(path: Path, args, rows: Dict[str, dict], extra: Dict[str, dict]) -> str:
    """RESULTS.md from the recorded rows (missing rows are listed as not run)."""
    lines = [
        "# DensePose paper ablations on the embedded benchmark",
        "",
        f"Written by `python projects/DensePoseCascade/run.py --iters {args.iters} "
        f"--seed {args.seed}` ({time.strftime('%Y-%m-%d')}, {platform.machine()} CPU, "
        f"{os.cpu_count()} cores, torch threads default). Every model trains from scratch "
        f"on `{args.train}` for {args.iters} iterations of 4 images (the embedded configs' LR "
        f"and clipping, steps at 77% and 90%, seed {args.seed}) and is evaluated on "
        f"`{args.test}`. GPS AP uses the coarse-part normalisation (detectron2 DensePose's "
        "per-part kappa); AUC is the paper's pointwise AUC (geodesic errors on the 1.74 m "
        "template body, whatever the person's size). Paper numbers are DensePose-COCO, ResNet "
        "backbones pretrained on ImageNet, full schedules.",
        "",
        "| row | model | train data | train+eval min | "
        + " | ".join(h for _, h in METRIC_COLUMNS) + " | paper AUC10 | paper GPS AP |",
        "|" + "---|" * (4 + len(METRIC_COLUMNS) + 2),
    ]
    for row in ROWS:
        rec = rows.get(row.name)
        if rec is None:
            lines.append(f"| {row.name} | {row.label} | – | not run |"
                         + " |" * (len(METRIC_COLUMNS) + 2))
            continue
        m = rec["metrics"]
        lines.append(
            f"| {row.name} | {row.label} | `{rec['train_dataset']}` | {rec['minutes']:.1f} | "
            + " | ".join(_fmt(m.get(k), k) for k, _ in METRIC_COLUMNS)
            + f" | {_fmt(row.paper.get('auc10'), 'auc10')} | {_fmt(row.paper.get('gps_ap'), '')} |")
    if "stage1" in extra:
        m = extra["stage1"]["metrics"]
        lines.append("| cascade_stage1 | the `cascade` model, stage-1 outputs | (same model) | "
                     "eval only | " + " | ".join(_fmt(m.get(k), k) for k, _ in METRIC_COLUMNS)
                     + " | – | – |")

    lines += ["", "## The paper's comparisons", "",
              "| comparison | metric | paper | measured | same direction |", "|---|---|---|---|---|"]
    paper_value = {r.name: r.paper for r in ROWS}
    for what, key, before, after in COMPARISONS:
        pb, pa = paper_value[before].get(key), paper_value[after].get(key)
        paper = f"{_fmt(pb, key)} -> {_fmt(pa, key)}" if pb is not None and pa is not None \
            else "better (no number)"
        if before in rows and after in rows:
            mb, ma = rows[before]["metrics"][key], rows[after]["metrics"][key]
            measured = f"{_fmt(mb, key)} -> {_fmt(ma, key)}"
            same = "yes" if ma > mb else ("tie" if ma == mb else "**no**")
        else:
            measured, same = "not run", "–"
        lines.append(f"| {what} | {key} | {paper} | {measured} | {same} |")

    if "timing" in extra:
        t = extra["timing"]
        lines += ["", "## Cascade inference cost", "",
                  f"The `cascade` model on `{args.test}` (batch 1, best of two runs each, "
                  f"`tools/benchmark.py`): stage-1 outputs {t['stage1_images_per_s']:.2f} "
                  f"images/s, stage 2 {t['stage2_images_per_s']:.2f} images/s: stage 2 costs "
                  f"**{t['stage2_over_stage1_time']:.2f}x** the time of stage 1 alone."]
    if "teacher" in extra:
        s = extra["teacher"]["scores"]
        lines += ["", "## Teacher labels against the exact dense IUV", "",
                  f"The `fcn` model as teacher on `{args.train}` ({s['persons']} persons), "
                  f"labels kept inside the GT mask, compared with the renderer's exact IUV "
                  f"(interpolation took {extra['teacher']['minutes']:.1f} min):", "",
                  "| where | labelled pixels / points | part accuracy | AUC10 | AUC20 | AUC30 "
                  "| median error (cm) |", "|---|---|---|---|---|---|---|"]
        for where in ("dense", "points"):
            d = s[where]
            lines.append(f"| {where} | {d['count']} | {d['part_accuracy']:.3f} | "
                         f"{d['auc10']:.3f} | {d['auc20']:.3f} | {d['auc30']:.3f} | "
                         f"{d['median_error_cm']:.1f} |")

    lines += ["", "## Commands", "", "Each row's exact command (run from the repository root; "
              "rows with interpolated GT need `DENSEPOSE_INTERPOLATED_ROOT` set to the recipe's "
              "`interpolated/` directory):", "", "```bash"]
    for rec in [*rows.values(), *extra.values()]:
        suffix = " MODEL.ROI_CASCADE_HEAD.TEST_STAGE {1,2}" if rec is extra.get("timing") else ""
        lines.append(display_command(rec["command"]) + suffix)
    lines += ["```"]
    discussion = HERE / "discussion.md"
    if discussion.is_file():
        lines += ["", discussion.read_text().rstrip()]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=600, help="training iterations per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="output/densepose_cascade",
                        help="absolute, or relative to the repository root")
    parser.add_argument("--rows", nargs="+", choices=ROW_NAMES, default=list(ROW_NAMES))
    parser.add_argument("--train", default="densepose_embedded_train")
    parser.add_argument("--test", default="densepose_embedded_val")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error("--iters must be >= 1")
    os.chdir(REPO)  # every command, and a relative --out, are taken from the repository root
    out = Path(args.out)
    recipe = Recipe(out, args.iters, args.seed, args.train, args.test)

    wanted = set(args.rows)
    if "interp" in wanted:
        wanted.add("fcn")  # the teacher
    rows, extra = {}, {}
    for row in ROWS:
        if row.name not in wanted:
            continue
        if row.interpolated:
            extra["teacher"] = recipe.interpolate(out / "fcn" / "model_final.pth")
        rows[row.name] = recipe.train_row(row)
        if row.name == "cascade":
            extra["stage1"], extra["timing"] = recipe.stage1()
    print(write_results(Path(args.results), args, rows, extra))


if __name__ == "__main__":
    main()
