#!/usr/bin/env python
"""The DensePose paper's model-fitting baseline against its networks, on the embedded benchmark.

    python projects/ModelFitting/run.py [--seeds 0 1 2] [--fit-iters 200] [--out DIR]
        [--cascade-out DIR] [--cascade-iters 400] [--train D] [--test D] [--results PATH]
        [--records DIR] [--cascade-records DIR] [--report-only]

Rows, each once per seed and scored by the same evaluator on the test split:

- ``fit_gt``: the body fitted to the ground-truth 2D keypoints (``python -m fitting``; the
  seed changes the starting orientations of the fit);
- ``fit_pred``: fitted to the keypoints predicted by the DensePoseCascade recipe's "DensePose
  R-CNN + keypoints" model of the same seed (the paper fits predicted keypoints);
- ``fcn_crop``, ``fcn``, ``rcnn``, ``kp``: the DensePoseCascade recipe's models of that seed
  (trained there, or here into its output directory when missing: the same command, recorded
  once), evaluated again with ``train_net.py --eval-only`` so that they are timed on this
  machine; ``kp`` also writes the keypoints ``fit_pred`` fits.

Seconds per person, the same for every row: the pipeline's time over the ground-truth persons
of the test split. A network's is its inference time per image (detectron2's evaluator, data
loading excluded) over the persons per image; a fit's is its optimisation and rendering time,
plus for ``fit_pred`` the ``kp`` model's seconds per person (the paper's pipeline detects the
keypoints it fits). Tables give mean ± std over the seeds and the verdict of
:func:`densepose_ext.engine.seed_stats.compare_rows` on the paper's claims. Steps are recorded
(a copy under ``records/`` next to this script, committed) and skipped when re-run;
``--report-only`` runs nothing and writes RESULTS.md from what is recorded. Budget on
a 2-core CPU: 12 evaluations of ~1.5 minutes and 6 fits of ~1 minute once the DensePoseCascade
models exist; from nothing (their 12 trainings first) the recipe took 72 minutes of wall time
on a machine that also ran the test suite for half of it.
"""
import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from densepose_ext.engine.recipe import (RecordBook, display_command, load_script,
                                         recorded_rows, run_command, seed_dir, write_report,
                                         written_by)
from densepose_ext.engine.seed_stats import VERDICT_RULE, comparison_cells, format_mean_std

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_SEEDS = (0, 1, 2)
#: rows fitted here: name -> (label, keypoints source: "gt" or "pred")
FIT_ROWS = {"fit_gt": ("model fitting, ground-truth keypoints", "gt"),
            "fit_pred": ("model fitting, keypoints of the `kp` model", "pred")}
#: the DensePoseCascade rows evaluated (and timed) here
NETWORK_ROWS = ("fcn_crop", "fcn", "rcnn", "kp")
#: the paper's AUC10 of the same variant (DensePose-COCO, single-person setting)
PAPER_AUC10 = {"fit_pred": 0.23, "fcn_crop": 0.43}
# (what, metric, row before, row after, higher is better): the paper's claims
COMPARISONS = (
    ("model fitting -> FCN (single-person crops)", "auc10", "fit_pred", "fcn_crop", True),
    ("model fitting -> FCN (single-person crops)", "sec_per_person", "fit_pred", "fcn_crop",
     False),
    ("model fitting -> DensePose R-CNN", "auc10", "fit_pred", "rcnn", True),
)
METRIC_COLUMNS = (("auc10", "AUC10"), ("auc20", "AUC20"), ("auc30", "AUC30"),
                  ("gps_ap", "GPS AP"), ("gpsm_ap", "GPSm AP"), ("keypoints_ap", "kp AP"),
                  ("sec_per_person", "s / person"))
_TIME_RE = re.compile(r"Total inference pure compute time: \S+ \(([0-9.]+) s / iter per device")


def _cascade_recipe():
    """The DensePoseCascade recipe script as a module (its rows, commands and Recipe)."""
    return load_script(REPO / "projects" / "DensePoseCascade" / "run.py",
                       "densepose_cascade_recipe")


def persons_per_image(dataset: str) -> float:
    """Ground-truth persons per image of a registered dataset (non-crowd annotations)."""
    import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
    from detectron2.data import DatasetCatalog

    dicts = DatasetCatalog.get(dataset)
    persons = sum(1 for d in dicts for a in d.get("annotations", []) if not a.get("iscrowd", 0))
    return persons / max(1, len(dicts))


class Recipe:
    """Runs the fits and the networks' evaluations, each once per seed."""

    def __init__(self, out: Path, fit_iters: int, test: str, cascade,
                 records: Optional[Path] = None, report_only: bool = False):
        """``cascade``: (the DensePoseCascade recipe module, its Recipe); ``report_only``: run
        nothing, steps not done give None."""
        self.out, self.fit_iters, self.test, self.cascade = out, fit_iters, test, cascade
        self.book = RecordBook(out, records, report_only)

    def keypoints_file(self, seed: int) -> Path:
        """The keypoints predicted on the test split by ``seed``'s ``kp`` model."""
        return (seed_dir(self.out, "kp", seed) / "inference" / self.test
                / "coco_instances_results.json")

    def evaluate_network(self, name: str, seed: int, keep_keypoints: bool = False) -> dict:
        """``seed``'s model of the DensePoseCascade row ``name`` evaluated (and timed) here;
        ``keep_keypoints``: a pending fit reads the ``kp`` model's keypoints (made again when
        they are gone)."""
        from densepose_ext.evaluation import read_headline_metrics

        module, cascade = self.cascade
        row = module.ROW[name]
        out_dir = seed_dir(self.out, name, seed)
        weights = seed_dir(cascade.out, name, seed) / "model_final.pth"
        command = [sys.executable, "train_net.py", "--eval-only", "--config-file",
                   str(row.config.relative_to(REPO)), *row.opts, "MODEL.WEIGHTS", str(weights),
                   "DATASETS.TEST", f'("{self.test}",)', "OUTPUT_DIR", str(out_dir)]

        def run() -> dict:
            run_command(command, REPO)
            times = _TIME_RE.findall((out_dir / "log.txt").read_text())
            if not times:
                raise RuntimeError(f"{out_dir / 'log.txt'}: no inference time logged")
            s_per_image = float(times[-1])
            metrics = read_headline_metrics(out_dir)
            metrics["sec_per_person"] = s_per_image / persons_per_image(self.test)
            return {"seed": seed, "s_per_image": s_per_image, "metrics": metrics}

        outputs = [self.keypoints_file(seed)] if keep_keypoints else ()
        return self.book.step(out_dir / "row.json", command, run, outputs=outputs,
                              prepare=lambda: cascade.train_row(row, seed, keep_weights=True))

    def fit(self, name: str, seed: int) -> dict:
        """The fitting baseline on the test split, from ``FIT_ROWS[name]``'s keypoints."""
        out_dir = seed_dir(self.out, name, seed)
        source = FIT_ROWS[name][1]
        keypoints = "gt" if source == "gt" else str(self.keypoints_file(seed))
        command = [sys.executable, "-m", "fitting", "--dataset", self.test, "--out",
                   str(out_dir), "--keypoints", keypoints, "--seed", str(seed), "--iters",
                   str(self.fit_iters), "--no-progress"]

        def run() -> dict:
            minutes = run_command(command, REPO)
            result = json.loads((out_dir / "metrics.json").read_text())
            summary, fit = result["densepose_summary"], result["fit"]
            metrics = {k: summary[k] for k in ("gps_ap", "gpsm_ap", "auc10", "auc20", "auc30")}
            return {"minutes": round(minutes, 2), "seed": seed, "metrics": metrics, "fit": fit}

        prepare = None if source == "gt" else (lambda: self.evaluate_network("kp", seed, True))
        return self.book.step(out_dir / "row.json", command, run, prepare=prepare)


def with_fit_times(rows: Dict[str, List[dict]], persons: float) -> Dict[str, List[dict]]:
    """``rows`` with the fits' seconds per person counted as the networks' are: the whole
    pipeline's time over the ground-truth persons (``persons`` per test image), i.e. fitting
    and rendering, plus for a fit of predicted keypoints the ``kp`` model's seconds per person
    of the same seed (the inference that gives those keypoints; None when it is not recorded)."""
    kp = {r["seed"]: r["metrics"]["sec_per_person"] for r in rows.get("kp", [])}
    out = dict(rows)
    for name, (_, source) in FIT_ROWS.items():
        timed = []
        for r in rows.get(name, []):
            fit = r["fit"]
            sec = (fit["fit_seconds"] + fit["render_seconds"]) / (persons * fit["num_images"])
            if source == "pred":
                sec = sec + kp[r["seed"]] if r["seed"] in kp else None
            timed.append({**r, "metrics": {**r["metrics"], "sec_per_person": sec}})
        out[name] = timed
    return out


def _digits(key: str) -> int:
    return 3 if key.startswith("auc") else 2


def _values(records: Sequence[dict], key: str) -> List[float]:
    return [r["metrics"][key] for r in records if r["metrics"].get(key) is not None]


def _cell(records: Sequence[dict], key: str) -> str:
    values = _values(records, key)
    return format_mean_std(values, _digits(key)) if values else "–"


def write_results(path: Path, args, rows: Dict[str, List[dict]]) -> str:
    """RESULTS.md from the recorded steps (``rows``: row name -> its seeds' records)."""
    seeds = " ".join(str(s) for s in args.seeds)
    module = _cascade_recipe()
    labels = {**{k: v[0] for k, v in FIT_ROWS.items()},
              **{name: module.ROW[name].label + " (DensePoseCascade)" for name in NETWORK_ROWS}}
    lines = [
        "# Model fitting vs the networks on the embedded benchmark", "",
        written_by(f"python projects/ModelFitting/run.py --seeds {seeds} --fit-iters "
                   f"{args.fit_iters}")
        + f" on `{args.test}`. Model fitting: SMPL-format body fitted to "
        "the 17 COCO keypoints (robust reprojection, pose prior from the training poses, camera "
        "assumed from the image size), its IUV rendered; networks: the DensePoseCascade "
        "recipe's models of the same seeds. Cells: mean ± std over the seeds (sample std).", "",
        "Protocols: **AUC10/20/30** is the paper's pointwise AUC over every annotated point "
        "(geodesic error on the 1.74 m template body, a missed person counts as infinite error), "
        "a fraction; **GPS AP / GPSm AP** in percent, COCO-style AP over GPS thresholds "
        "0.50:0.95, coarse-part normalisation, protocol `exact`; **kp AP**: COCO keypoint AP "
        "(percent) of the model whose keypoints `fit_pred` fits; **s / person**: seconds on this "
        "CPU per ground-truth person, the whole pipeline's (networks: inference time per image "
        "over persons per image; fitting: optimisation and rendering time over the test split's "
        "persons, plus for `fit_pred` the `kp` model's seconds per person that give its "
        "keypoints). Paper AUC10: DensePose-COCO, "
        "single-person setting (model fitting 0.23, FCN 0.43; the paper also gives 1-3 minutes "
        "per frame for fitting vs 4-25 frames/s for the FCN on a GPU), for orientation only.", "",
        "| row | what | seeds | " + " | ".join(h for _, h in METRIC_COLUMNS)
        + " | paper AUC10 |", "|" + "---|" * (4 + len(METRIC_COLUMNS))]
    for name in (*FIT_ROWS, *NETWORK_ROWS):
        recs = rows.get(name, [])
        paper = PAPER_AUC10.get(name)
        paper = "–" if paper is None else f"{paper:.2f}"
        if not recs:
            lines.append(f"| {name} | {labels[name]} | – | not run |"
                         + " |" * (len(METRIC_COLUMNS) - 1) + f" {paper} |")
            continue
        lines.append(f"| {name} | {labels[name]} | {len(recs)} | "
                     + " | ".join(_cell(recs, k) for k, _ in METRIC_COLUMNS) + f" | {paper} |")
    lines += ["", "## The paper's claims", "", VERDICT_RULE
              + " For seconds per person, lower is better.", "",
              "| comparison | metric | measured (mean ± std) | difference ± SE | verdict |",
              "|---|---|---|---|---|"]
    for what, key, before, after, higher in COMPARISONS:
        b, a = _values(rows.get(before, []), key), _values(rows.get(after, []), key)
        cells = comparison_cells(b, a, _digits(key), higher_is_better=higher)
        lines.append(f"| {what} | {key} | " + " | ".join(cells) + " |")
    commands = [display_command(r["command"]) for recs in rows.values() for r in recs]
    return write_report(path, lines, commands, "Each step's exact command (run from the "
                        "repository root):", HERE / "discussion.md")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--fit-iters", type=int, default=200,
                        help="optimisation steps of each fit (after its rigid start)")
    parser.add_argument("--out", default="output/model_fitting")
    parser.add_argument("--cascade-out", default="output/densepose_cascade",
                        help="the DensePoseCascade recipe's --out (its trained models)")
    parser.add_argument("--cascade-iters", type=int, default=400,
                        help="the DensePoseCascade recipe's --iters")
    parser.add_argument("--train", default="densepose_embedded_train")
    parser.add_argument("--test", default="densepose_embedded_val")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--records", default=str(HERE / "records"),
                        help="where a copy of every step's record is kept (committed)")
    parser.add_argument("--cascade-records",
                        default=str(REPO / "projects" / "DensePoseCascade" / "records"),
                        help="the DensePoseCascade recipe's --records")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: write RESULTS.md from the steps already recorded")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    module = _cascade_recipe()
    cascade = module.Recipe(Path(args.cascade_out).absolute(), args.cascade_iters, args.train,
                            args.test, Path(args.cascade_records), args.report_only)
    recipe = Recipe(Path(args.out).absolute(), args.fit_iters, args.test, (module, cascade),
                    Path(args.records), args.report_only)
    rows: Dict[str, List[dict]] = {}
    for seed in args.seeds:
        for name in FIT_ROWS:
            rows.setdefault(name, []).append(recipe.fit(name, seed))
        for name in NETWORK_ROWS:
            rows.setdefault(name, []).append(recipe.evaluate_network(name, seed))
    rows = with_fit_times(recorded_rows(rows), persons_per_image(args.test))
    print(write_results(Path(args.results), args, rows))


if __name__ == "__main__":
    main()
