#!/usr/bin/env python
"""Data distillation (Radosavovic et al., 2018) on the embedded benchmark: train, label, retrain.

    python projects/DataDistillation/run.py [--iters 400] [--seeds 0 1 2] [--out DIR]
        [--train D] [--unlabeled D] [--test D] [--results PATH] [--records DIR] [--report-only]

1. ``baseline``: multi-task DensePose R-CNN (DensePose + mask + keypoints) fine-tuned from the
   embedded model zoo's backbone on the labelled split, once per seed.
2. Multi-transform inference of the seed-0 baseline (the teacher) on the test split: flip,
   scales, both, each against the single transform, with the time per image.
3. The teacher labels the unlabelled split (``densepose_embedded_unlabeled``, registered
   without annotations) with single-transform and with multi-transform inference
   (``python -m distill.pseudo_label``, threshold chosen to match the labelled split's persons
   per image); both are scored against the renderer's labels of those images.
4. Students (same config, schedule and seeds as the baseline) train on the labelled split plus
   one of: the single-transform pseudo-labels, the multi-transform pseudo-labels (data
   distillation), the unlabelled images' true labels (upper bound); every batch is 60%
   labelled, 40% other images (``DATASETS.TRAIN_RATIOS``). All rows learn DensePose from the
   annotated points only (``INPUT.DENSEPOSE_DENSE_POINTS 0``), as the labelled split provides.

Tables give mean ± std over the seeds and the verdict of
:func:`densepose_ext.engine.seed_stats.compare_rows` on each of the paper's claims. Every step
is recorded with its command (``DIR/<step>/...json``, copied to ``records/`` next to this
script and committed) and skipped when re-run, so an interrupted recipe resumes, also on a fresh
checkout; training continues from its last checkpoint. A finished step whose files a pending
step reads (the teacher's weights, a label directory) is run again when they are gone.
``--report-only`` runs nothing and writes RESULTS.md from what is recorded.
Budget: about 4 hours on a 2-core CPU with the defaults (12 trainings of about 10 minutes at
~1.4 s per iteration in the recipes' fine-tuning setting,
:data:`densepose_ext.engine.recipe.CPU_FINE_TUNING`; labelling 2400 images with one and with
six transforms, ~1.5 hours; evaluations ~20 minutes).
"""
import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from densepose_ext.engine.recipe import (RecordBook, claim_output_dir, display_command,
                                         prune_checkpoints, recorded_rows, resumable_training,
                                         run_command, save_record, schedule_text, seed_dir,
                                         shrunk_schedule, write_report, written_by)
from densepose_ext.engine.seed_stats import VERDICT_RULE, comparison_cells, format_mean_std

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIG = REPO / "configs" / "embedded" / "densepose_rcnn_R_18_GN_FPN_multitask_mask_kp.yaml"
DEFAULT_SEEDS = (0, 1, 2)
RATIOS = "(0.6, 0.4)"
PSEUDO_SUFFIX = "_pseudo"
#: multi-transform settings measured on the teacher: name -> (TEST.AUG.MIN_SIZES, FLIP)
TTA_VARIANTS = {"flip": ("(256,)", True), "scales": ("(224, 256, 288)", False),
                "flip_scales": ("(224, 256, 288)", True)}
#: the multi-transform inference used for data distillation's labels
DISTILL_TTA = "flip_scales"
#: rows: name -> (label, source of the extra images: None, "single", "multi", "oracle")
ROWS = {"baseline": ("supervised baseline (labelled split only)", None),
        "distill_single": ("+ pseudo-labels, single-transform inference", "single"),
        "distill_multi": ("+ pseudo-labels, multi-transform inference (data distillation)",
                          "multi"),
        "oracle": ("+ the unlabelled images with their true labels (upper bound)", "oracle")}
# (what, metric, row before, row after): the paper's claims "after is better than before"
COMPARISONS = (
    ("baseline -> data distillation", "keypoints_ap", "baseline", "distill_multi"),
    ("baseline -> data distillation", "gps_ap", "baseline", "distill_multi"),
    ("single -> multi-transform pseudo-labels", "keypoints_ap", "distill_single",
     "distill_multi"),
    ("single -> multi-transform pseudo-labels", "gps_ap", "distill_single", "distill_multi"),
)
METRIC_COLUMNS = (("gps_ap", "GPS AP"), ("gpsm_ap", "GPSm AP"), ("auc10", "AUC10"),
                  ("bbox_ap", "bbox AP"), ("segm_ap", "mask AP"), ("keypoints_ap", "kp AP"))
_TIME_RE = re.compile(r"Total inference time: \S+ \(([0-9.]+) s / iter per device")


class Recipe:
    """Runs the steps, each once (per seed), and keeps what they measured."""

    def __init__(self, out: Path, iters: int, train: str, unlabeled: str, test: str,
                 records: Optional[Path] = None, report_only: bool = False):
        """``records`` keeps a copy of every step's record; ``report_only``: run nothing,
        steps not done give None (see :class:`RecordBook`)."""
        self.out, self.iters = out, iters
        self.train, self.unlabeled, self.test = train, unlabeled, test
        self.book = RecordBook(out, records, report_only)

    def pseudo_root(self, kind: str) -> Path:
        """Where one kind of labels for the unlabelled split lives (registered from there)."""
        return self.out / "pseudo" / kind

    def teacher(self) -> Path:
        return seed_dir(self.out, "baseline", 0) / "model_final.pth"

    def prepare_teacher(self) -> None:
        """The seed-0 baseline's weights, trained (again) when they are gone."""
        self.train_row("baseline", 0, keep_weights=True)

    def prepare_labels(self, kind: Optional[str]) -> None:
        """The label directory a student row of ``kind`` trains on, made when it is gone."""
        if kind == "oracle":
            self.oracle_labels()
        elif kind is not None:
            self.pseudo_label(kind, keep_labels=True)

    def train_row(self, row: str, seed: int, keep_weights: bool = False) -> dict:
        """``row`` trained with ``seed`` and evaluated; ``keep_weights``: a pending step reads
        its ``model_final.pth`` (trained again when it is gone)."""
        from densepose_ext.evaluation import read_headline_metrics

        source = ROWS[row][1]
        out_dir = seed_dir(self.out, row, seed)
        datasets = f'("{self.train}",)' if source is None else \
            f'("{self.train}", "{self.unlabeled}{PSEUDO_SUFFIX}")'
        command = [sys.executable, "train_net.py", "--config-file",
                   str(CONFIG.relative_to(REPO)), *shrunk_schedule(self.iters, seed),
                   "DATASETS.TRAIN", datasets, "DATASETS.TEST", f'("{self.test}",)',
                   "INPUT.DENSEPOSE_DENSE_POINTS", "0", "OUTPUT_DIR", str(out_dir)]
        if source is not None:
            command += ["DATASETS.TRAIN_RATIOS", RATIOS]
        env = {} if source is None else {"DENSEPOSE_PSEUDO_ROOT": str(self.pseudo_root(source))}

        def run() -> dict:
            claim_output_dir(out_dir, command)
            minutes = run_command(resumable_training(command), REPO, env)
            prune_checkpoints(out_dir)
            return {"minutes": round(minutes, 2), "seed": seed, "extra_images": source,
                    "metrics": read_headline_metrics(out_dir)}

        return self.book.step(out_dir / "row.json", command, run,
                              outputs=[out_dir / "model_final.pth"] if keep_weights else (),
                              prepare=lambda: self.prepare_labels(source))

    def tta(self, variant: str) -> dict:
        """The teacher on the test split without and with one multi-transform setting."""
        from densepose_ext.evaluation import headline_metrics

        sizes, flip = TTA_VARIANTS[variant]
        out_dir = self.out / "tta" / variant
        command = [sys.executable, "train_net.py", "--eval-only", "--config-file",
                   str(CONFIG.relative_to(REPO)), "MODEL.WEIGHTS", str(self.teacher()),
                   "DATASETS.TEST", f'("{self.test}",)', "TEST.AUG.ENABLED", "True",
                   "TEST.AUG.MIN_SIZES", sizes, "TEST.AUG.MAX_SIZE", "384",
                   "TEST.AUG.FLIP", str(flip), "OUTPUT_DIR", str(out_dir)]

        def run() -> dict:
            run_command(command, REPO)
            results = json.loads((out_dir / "eval_results.json").read_text())
            # one test dataset: every task's results also appear as "<task>_TTA"
            tta_results = {k[:-len("_TTA")]: results.pop(k) for k in list(results)
                           if k.endswith("_TTA")}
            times = [float(t) for t in _TIME_RE.findall((out_dir / "log.txt").read_text())]
            return {"single": headline_metrics(results), "multi": headline_metrics(tta_results),
                    "single_s_per_image": times[-2], "multi_s_per_image": times[-1]}

        return self.book.step(out_dir / "record.json", command, run,
                              prepare=self.prepare_teacher)

    def pseudo_label(self, kind: str, keep_labels: bool = False) -> dict:
        """The teacher's labels of the unlabelled split (``kind``: single or multi);
        ``keep_labels``: a pending step reads them (made again when they are gone)."""
        out_dir = self.pseudo_root(kind) / self.unlabeled
        command = [sys.executable, "-m", "distill.pseudo_label", "--config-file",
                   str(CONFIG.relative_to(REPO)), "--weights", str(self.teacher()),
                   "--dataset", self.unlabeled, "--labelled-dataset", self.train,
                   "--out", str(out_dir), "--no-progress"]
        if kind == "multi":
            sizes, flip = TTA_VARIANTS[DISTILL_TTA]
            command += ["--multi-transform", "--opts", "TEST.AUG.MIN_SIZES", sizes,
                        "TEST.AUG.MAX_SIZE", "384", "TEST.AUG.FLIP", str(flip)]

        def run() -> dict:
            minutes = run_command(command, REPO)
            params = json.loads((out_dir / "pseudo_label.json").read_text())
            return {"minutes": round(minutes, 2), "kind": kind,
                    **{k: params[k] for k in ("score_threshold", "persons", "persons_per_image",
                                              "with_keypoints", "with_densepose")}}

        return self.book.step(self.pseudo_root(kind) / "record.json", command, run,
                              outputs=[out_dir / "annotations.json"] if keep_labels else (),
                              prepare=self.prepare_teacher)

    def oracle_labels(self) -> Path:
        """The unlabelled split's true labels as a label directory (the upper-bound row)."""
        from detectron2.data import MetadataCatalog

        import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)

        out_dir = self.pseudo_root("oracle") / self.unlabeled
        meta = MetadataCatalog.get(self.unlabeled)
        if not (out_dir / "annotations.json").is_file():
            from detectron2.data import DatasetCatalog

            DatasetCatalog.get(self.unlabeled)  # renders the split when it is missing
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(meta.json_file, out_dir / "annotations.json.tmp")
            os.replace(out_dir / "annotations.json.tmp", out_dir / "annotations.json")
        save_record(out_dir / "pseudo_label.json", {
            "complete": True, "image_root": meta.image_root, "source": f"dataset:{self.unlabeled}",
            "metadata_dataset": self.unlabeled, "kind": "the renderer's exact labels"})
        return out_dir

    def quality(self) -> dict:
        """Both kinds of pseudo-labels scored against the true labels."""
        dirs = [self.pseudo_root(k) / self.unlabeled for k in ("single", "multi")]
        scores = self.out / "pseudo" / "quality.json"
        command = [sys.executable, "-m", "distill.evaluate_pseudo_labels", "--pseudo",
                   *map(str, dirs), "--out", str(scores)]

        def run() -> dict:
            run_command(command, REPO)
            return {"scores": json.loads(scores.read_text())}

        return self.book.step(self.out / "pseudo" / "quality_record.json", command, run,
                              prepare=lambda: [self.prepare_labels(k) for k in ("single", "multi")])


def _digits(key: str) -> int:
    return 3 if key.startswith("auc") or key.endswith("accuracy") else 2 if key.endswith(
        ("precision", "recall")) else 1


def _values(records: Sequence[dict], key: str) -> List[float]:
    return [r["metrics"][key] for r in records if key in r["metrics"]]


def _cell(records: Sequence[dict], key: str) -> str:
    values = _values(records, key)
    return format_mean_std(values, _digits(key)) if values else "–"


def write_results(path: Path, args, rows: Dict[str, List[dict]], tta: Dict[str, dict],
                  labels: Dict[str, dict], quality: Optional[dict]) -> str:
    """RESULTS.md from the recorded steps."""
    seeds = " ".join(str(s) for s in args.seeds)
    lines = [
        "# Data distillation on the embedded benchmark",
        "",
        written_by(f"python projects/DataDistillation/run.py --iters {args.iters} --seeds "
                   f"{seeds}")
        + f". Model: multi-task DensePose R-CNN (DensePose + mask + keypoints, "
        f"`{CONFIG.relative_to(REPO)}`) fine-tuned from the embedded model zoo's backbone for "
        f"{schedule_text(args.iters)}, per row and seed; labelled split `{args.train}`, "
        f"unlabelled split `{args.unlabeled}`, test split `{args.test}`. The teacher is the "
        "seed-0 baseline. Cells: mean ± std over the seeds (sample std).",
        "",
        "Protocols: **GPS AP / GPSm AP** in percent, COCO-style AP over GPS thresholds "
        "0.50:0.95, coarse-part normalisation (detectron2 DensePose's per-part kappa), protocol "
        "`exact` (points placed as the renderer places them); **AUC10** the pointwise AUC of the "
        "geodesic error up to 10 cm (a fraction); bbox / mask / kp AP are COCO's. The paper "
        "(COCO keypoints, ResNet-50/101 Mask R-CNN, 120k-image unlabelled sets) reports keypoint "
        "AP gains for data distillation over the supervised baseline and for multi-transform "
        "over single-transform labels; its numbers come from other data and scale, so the "
        "tables give its direction only.",
        "",
        "## Students", "",
        "| row | training data | seeds | train+eval min | "
        + " | ".join(h for _, h in METRIC_COLUMNS) + " |",
        "|" + "---|" * (4 + len(METRIC_COLUMNS)),
    ]
    for name, (label, _) in ROWS.items():
        recs = rows.get(name, [])
        if not recs:
            lines.append(f"| {name} | {label} | – | not run |" + " |" * len(METRIC_COLUMNS))
            continue
        minutes = [r["minutes"] for r in recs]
        lines.append(f"| {name} | {label} | {len(recs)} | {sum(minutes) / len(minutes):.1f} | "
                     + " | ".join(_cell(recs, k) for k, _ in METRIC_COLUMNS) + " |")

    lines += ["", "## The paper's claims", "", VERDICT_RULE, "",
              "| comparison | metric | paper | measured (mean ± std) | difference ± SE | verdict |",
              "|---|---|---|---|---|---|"]
    for what, key, before, after in COMPARISONS:
        cells = comparison_cells(_values(rows.get(before, []), key),
                                 _values(rows.get(after, []), key), _digits(key))
        lines.append(f"| {what} | {key} | better | " + " | ".join(cells) + " |")

    if tta:
        lines += ["", "## Multi-transform inference of the teacher", "",
                  f"The seed-0 baseline on `{args.test}`, one run per setting (no spread): "
                  "single transform (shorter side 256) against the ensemble; time per image "
                  "is detectron2's inference time (batch 1, same process, 2 CPU cores).", "",
                  "| transforms | GPS AP | AUC10 | bbox AP | kp AP | s / image |",
                  "|---|---|---|---|---|---|"]
        first = next(iter(tta.values()))
        single = first["single"]
        lines.append(f"| single (256) | {single['gps_ap']:.1f} | {single['auc10']:.3f} | "
                     f"{single['bbox_ap']:.1f} | {single.get('keypoints_ap', float('nan')):.1f} "
                     f"| {first['single_s_per_image']:.3f} |")
        for variant, rec in tta.items():
            sizes, flip = TTA_VARIANTS[variant]
            m = rec["multi"]
            lines.append(f"| scales {sizes}{' + flip' if flip else ''} | {m['gps_ap']:.1f} | "
                         f"{m['auc10']:.3f} | {m['bbox_ap']:.1f} | "
                         f"{m.get('keypoints_ap', float('nan')):.1f} | "
                         f"{rec['multi_s_per_image']:.3f} |")

    if quality:
        lines += ["", "## Pseudo-labels against the true labels", "",
                  f"The teacher's labels of `{args.unlabeled}` scored against the renderer's "
                  "labels of the same images (`python -m distill.evaluate_pseudo_labels`): "
                  "persons matched at box IoU >= 0.5; keypoint pixel error over keypoints "
                  "labelled on both sides; DensePose points of every pseudo person against the "
                  "exact IUV at their pixels (unmatched person or wrong person: infinite error).",
                  "", "| labels | threshold | persons / image | box precision | box recall | "
                  "kp error px (median) | part accuracy | AUC10 |", "|---|---|---|---|---|---|---|---|"]
        for score in quality["scores"]:
            kind = "multi-transform" if score["multi_transform"] else "single-transform"
            dp = score["densepose_points"]
            lines.append(
                f"| {kind} | {score['score_threshold']:.3f} | "
                f"{score['pseudo_persons'] / max(score['images'], 1):.2f} (true "
                f"{score['true_persons'] / max(score['images'], 1):.2f}) | "
                f"{score['box_precision']:.3f} | {score['box_recall']:.3f} | "
                f"{score['keypoint_error_px_median']:.2f} | {dp.get('part_accuracy', 0):.3f} | "
                f"{dp.get('auc10', 0):.3f} |")

    steps = [r for recs in rows.values() for r in recs] + list(tta.values()) \
        + list(labels.values()) + ([quality] if quality else [])
    return write_report(path, lines, [display_command(r["command"]) for r in steps],
                        "Each step's exact command, from the repository root (student rows need "
                        "`DENSEPOSE_PSEUDO_ROOT` set to the recipe's `pseudo/<kind>/`):",
                        HERE / "discussion.md")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=400, help="training iterations per row")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--out", default="output/data_distillation",
                        help="absolute, or relative to the repository root")
    parser.add_argument("--train", default="densepose_embedded_train")
    parser.add_argument("--unlabeled", default="densepose_embedded_unlabeled")
    parser.add_argument("--test", default="densepose_embedded_val")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing; write RESULTS.md from the recorded steps")
    parser.add_argument("--rows", nargs="+", choices=tuple(ROWS), default=list(ROWS))
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--records", default=str(HERE / "records"),
                        help="where a copy of every step's record is kept (committed with the "
                             "project, so finished steps survive the loss of --out)")
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error("--iters must be >= 1")
    if 0 not in args.seeds:
        parser.error("--seeds must include 0 (the seed-0 baseline is the teacher)")
    os.chdir(REPO)
    recipe = Recipe(Path(args.out).absolute(), args.iters, args.train, args.unlabeled, args.test,
                    Path(args.records), args.report_only)

    rows: Dict[str, List[dict]] = {}
    seeds = [0] + [s for s in args.seeds if s != 0]
    for seed in seeds:  # baselines first: seed 0 is the teacher of every student
        rows.setdefault("baseline", []).append(recipe.train_row("baseline", seed))
    tta = {v: recipe.tta(v) for v in TTA_VARIANTS}
    labels = {k: recipe.pseudo_label(k) for k in ("single", "multi")}
    quality = recipe.quality()
    if "oracle" in args.rows and not args.report_only:
        recipe.oracle_labels()
    for seed in seeds:  # seed by seed: a recipe stopped early has whole seeds of every row
        for row in ROWS:
            if row != "baseline" and row in args.rows:
                rows.setdefault(row, []).append(recipe.train_row(row, seed))
    # None: a step not recorded yet (--report-only)
    rows = recorded_rows(rows)
    tta = {k: r for k, r in tta.items() if r is not None}
    labels = {k: r for k, r in labels.items() if r is not None}
    print(write_results(Path(args.results), args, rows, tta, labels, quality))


if __name__ == "__main__":
    main()
