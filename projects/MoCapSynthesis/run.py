#!/usr/bin/env python
"""Rogez & Schmid's experiment on the embedded world: stitched images for 3D-pose classification.

Do MoCap-guided stitched images help a 3D-pose classifier on MoCap poses of actions it never saw?

    python projects/MoCapSynthesis/run.py [--iters 1000] [--seeds 0 1 2] [--num-stitched 1200]
        [--k 100] [--poses motions_train] [--out DIR] [--results PATH] [--records DIR]

1. Data. ``densepose_embedded_mocap_test`` renders people in the *held-out* procedural motions
   (pose source ``motions_test``: run, squat, wave, without the frames that repeat a training
   pose); the stitching queries come from the *training* motions (``--poses``, default
   ``motions_train``: walk, reach, sit, jumping jack, bend, kick). A query source that shares a
   motion or a frame with the test split is refused.
2. Stitch ``--num-stitched`` images twice from the same queries (stitching seed 0), once per
   pixel-assignment rule of ``python -m synthesis.stitch --assignment``: ``geometric``
   (distance to the query skeleton) and ``match`` (weighed by each source's match quality);
   pieces come from the rendered training split. A contact sheet of each shows the same images.
3. One class set: K-means (``--k`` classes) over the 3D poses of the rendered training split
   and their mirror images, built once (``python tools/build_pose_classes.py``) and given
   to every row (``MODEL.ROI_POSE3D_HEAD.CLASSES_FILE``), so rows differ only in their training
   images. The same file holds the mean training pose (the mean-pose baseline).
4. Train the classifier (``configs/embedded/pose3d_class_R_18_GN_FPN.yaml``, which starts from
   the model zoo's pretrained backbone) once per seed for each row, same budget: (a) renders only, (b) renders +
   stitched (geometric), (c) renders + stitched (match); evaluate on ``mocap_test`` (unseen
   MoCap actions) and ``densepose_embedded_val`` (random poses, the renders' distribution).
5. ``RESULTS.md``: per test set, detection recall and MPJPE as mean ± std over the seeds;
   MPJPE again on the persons every row detects (per seed), with the mean-pose baseline and
   the class-oracle floor on the same persons; the verdict of (b) vs (a), (c) vs (a) and
   (c) vs (b) from :func:`densepose_ext.engine.seed_stats.compare_rows`.

Budget (defaults, 2 CPU cores, the recipes' common fine-tuning setting
:data:`densepose_ext.engine.recipe.CPU_FINE_TUNING`): 3 rows x 3 seeds x 1000 iterations at
~0.86 s = ~2.2 h of training, 9 evaluations of 2 x 200 images at ~1 min per 200 = ~0.3 h,
2 x 1200 stitched images at ~0.5 s = ~0.3 h, the 200 test renders and the classes a few minutes:
~3 h, within 6 h with room for a slower machine (the rendered training split, if missing, adds
its own time).
The stitched sets and the class set are built once; the seeds vary the training runs
(initialisation of new layers, data order, augmentation).

Every step is recorded with its exact command under ``--out`` (rows under
``<row>/seed<k>/row.json``) and, but for the data preparation, copied under ``--records``
(``records/`` next to this script, committed); re-running skips finished steps, also on a fresh
checkout, and a training run cut off continues from its last checkpoint (every 100
iterations). A finished step whose files a pending step reads (stitched images, the class
set) is run again when they are gone.
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from densepose_ext.engine.recipe import (RecordBook, claim_output_dir, display_command,
                                         prune_checkpoints, recorded_step, resumable_training,
                                         run_command, schedule_text, seed_dir, shrunk_schedule,
                                         write_report, written_by)
from densepose_ext.engine.seed_stats import compare_rows, format_mean_std
from synthesis.motions import SAME_POSE_DEG, TEST_MOTIONS
from synthesis.pose_sources import SequencePoseSource, resolve_pose_source, shared_frames

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIG = REPO / "configs" / "embedded" / "pose3d_class_R_18_GN_FPN.yaml"
RENDERS = "densepose_embedded_train"
MOCAP_TEST = "densepose_embedded_mocap_test"
TEST_SETS = ((MOCAP_TEST, "unseen MoCap actions"),
             ("densepose_embedded_val", "random poses"))
DEFAULT_POSES = "motions_train"
DEFAULT_SEEDS = (0, 1, 2)
STITCH_SEED = 0
ASSIGNMENTS = ("geometric", "match")
SHEET = "stitched_contact_sheet_{}.png"
METRICS_FILE = "pose3d_metrics.json"  # densepose_ext.evaluation.pose3d writes these two
PER_PERSON_FILE = "pose3d_per_person.json"
#: per detected person, the errors kept in a row's record (mm), in this order
PERSON_ERRORS = ("mpjpe", "mpjpe_oracle", "mpjpe_mean_pose")
PROTOCOL = ("mm over the 24 SMPL joints, root-centred (pelvis), the prediction at the nominal "
            "body size (the training poses' mean bone length), the GT at its own size, no "
            "Procrustes alignment, camera-frame orientation")


@dataclass(frozen=True)
class Row:
    """One classifier of the table: its name, what it says, and the pixel-assignment rule of
    the stitched images added to the renders (None: renders only)."""

    name: str
    tag: str
    label: str
    assignment: Optional[str]


ROWS = (Row("renders", "(a)", "renders only", None),
        Row("stitched_geometric", "(b)", "renders + stitched, geometric assignment", "geometric"),
        Row("stitched_match", "(c)", "renders + stitched, match assignment", "match"))
TAGS = {r.name: r.tag for r in ROWS}
# (claim, row before, row after): "after has the lower MPJPE"
COMPARISONS = (("adding stitched images (geometric)", "renders", "stitched_geometric"),
               ("adding stitched images (match)", "renders", "stitched_match"),
               ("match instead of geometric assignment", "stitched_geometric", "stitched_match"))


def stitched_name(poses: str, assignment: str) -> str:
    """Directory (under $DETECTRON2_DATASETS/stitched/) of the stitched set of a pose source
    and an assignment rule."""
    stem = "".join(c if c.isalnum() else "_" for c in Path(poses).stem)
    return f"mocap_{stem}_{assignment}"


def _names(names) -> str:
    """Dataset names as the python tuple a config override takes: ("a", "b",)."""
    return "(" + "".join(f'"{n}", ' for n in names).rstrip() + ")"


def check_held_out(poses: str) -> None:
    """Refuse stitching queries that share a motion or a frame with the MoCap test split."""
    from synthesis.embedded_datasets import EMBEDDED_SPLITS

    test_spec = EMBEDDED_SPLITS[MOCAP_TEST].poses
    test, query = resolve_pose_source(test_spec), resolve_pose_source(poses)
    if not (isinstance(test, SequencePoseSource) and isinstance(query, SequencePoseSource)):
        return  # random poses have no frames to share
    common = sorted({s.name for s in test.sequences} & {s.name for s in query.sequences})
    shared = shared_frames(query, test)
    if common or shared:
        raise ValueError(
            f"--poses {poses}: the stitching queries share "
            + (f"motions {', '.join(common)}" if common else f"{len(shared)} frames (e.g. "
               f"{shared[0][0]} = {shared[0][1]})")
            + f" with the test split {MOCAP_TEST} (poses {test_spec!r}); use held-in motions "
            f"such as {DEFAULT_POSES!r}")


class Recipe:
    """Runs the steps in order, each once, and keeps what they measured."""

    def __init__(self, args):
        from densepose_ext.data import datasets_root

        self.args = args
        self.out = Path(args.out)
        self.stitched_root = datasets_root() / "stitched"
        self.classes_file = self.out / f"pose3d_classes_K{args.k}.npz"
        self.book = RecordBook(self.out, Path(args.records))

    def stitched_dataset(self, assignment: str) -> str:
        return "stitched_" + stitched_name(self.args.poses, assignment)

    def prepare(self) -> List[dict]:
        """The rendered splits; the MoCap test split is rendered anew when it was made from
        another pose source (as before the motion set was split)."""
        steps = (("prepare.json", ["--splits", "train", "val"]),
                 ("prepare_mocap_test.json", ["--splits", "mocap_test", "--rerender-outdated"]))
        records = []
        for name, opts in steps:
            command = [sys.executable, "-m", "synthesis.prepare", *opts]
            records.append(recorded_step(self.out / name, command, lambda c=command: {
                "minutes": round(run_command(c, REPO), 2)}))
        return records

    def stitch(self, assignment: str, keep_images: bool = False) -> dict:
        """The stitched training images of one assignment rule (pieces from the renders);
        ``keep_images``: a pending step reads them (stitched again when they are gone)."""
        from densepose_ext.data import datasets_root
        from synthesis.embedded_datasets import EMBEDDED_SPLITS

        split_dir = datasets_root() / "densepose_embedded" / EMBEDDED_SPLITS[RENDERS].subdir
        out_dir = self.stitched_root / stitched_name(self.args.poses, assignment)
        command = [sys.executable, "-m", "synthesis.stitch",
                   "--sources", str(split_dir / "annotations.json"),
                   "--images", str(split_dir / "images"), "--out", str(out_dir),
                   "--num-images", str(self.args.num_stitched), "--seed", str(STITCH_SEED),
                   "--poses", self.args.poses, "--assignment", assignment, "--no-progress"]

        def run() -> dict:
            minutes = run_command(command, REPO)
            info = json.loads((out_dir / "annotations.json").read_text())
            return {"minutes": round(minutes, 2), "dataset": self.stitched_dataset(assignment),
                    "assignment": assignment, "images": len(info["images"]),
                    "persons": len(info["annotations"])}

        return self.book.step(self.out / f"stitch_{assignment}.json", command, run,
                              outputs=[out_dir / "annotations.json"] if keep_images else ())

    def classes(self, keep_file: bool = False) -> dict:
        """The one K-means class set of every row, from the rendered training split's poses;
        ``keep_file``: a pending step reads it (built again when it is gone)."""
        from densepose_ext.pose3d import PoseClasses

        command = [sys.executable, "tools/build_pose_classes.py", "--dataset", RENDERS,
                   "--k", str(self.args.k), "--out", str(self.classes_file)]

        def run() -> dict:
            minutes = run_command(command, REPO)
            classes = PoseClasses.load(self.classes_file)
            p = classes.provenance
            return {"minutes": round(minutes, 2), "file": str(self.classes_file),
                    "digest": classes.digest, "nominal_scale_m": classes.nominal_scale,
                    **{k: p.get(k) for k in ("k", "num_poses", "num_points", "mirror",
                                              "quantisation_mpjpe_mm", "mean_pose_mpjpe_mm")}}

        return self.book.step(self.out / "classes.json", command, run,
                              outputs=[self.classes_file] if keep_file else ())

    def contact_sheet(self, assignment: str, path: Path) -> dict:
        """Stitched images with their person mask and keypoints (left) and carried DensePose
        labels (right); both rules show the same images (same queries, same shuffle)."""
        command = [sys.executable, "tools/visualize_data.py",
                   "--dataset", self.stitched_dataset(assignment), "--num", "16", "--cols", "4",
                   "--cell", "192", "--shuffle", str(STITCH_SEED),
                   "--panels", "masks+keypoints", "iuv+points", "--out", str(path)]
        return self.book.step(self.out / f"contact_sheet_{assignment}.json", command,
                              lambda: {"minutes": round(run_command(command, REPO), 2)},
                              outputs=[path], prepare=lambda: self.stitch(assignment, True))

    def train_row(self, row: Row, seed: int) -> dict:
        out_dir = seed_dir(self.out, row.name, seed)
        train = (RENDERS,) + ((self.stitched_dataset(row.assignment),) if row.assignment else ())
        command = [sys.executable, "train_net.py", "--config-file", str(CONFIG.relative_to(REPO)),
                   *shrunk_schedule(self.args.iters, seed),
                   "MODEL.ROI_POSE3D_HEAD.NUM_CLASSES", str(self.args.k),
                   "MODEL.ROI_POSE3D_HEAD.CLASSES_FILE", str(self.classes_file),
                   "MODEL.ROI_POSE3D_HEAD.BUILD_CLASSES_IF_MISSING", "False",
                   "DATASETS.TRAIN", _names(train), "DATASETS.TEST", _names(n for n, _ in TEST_SETS),
                   "OUTPUT_DIR", str(out_dir)]

        def run() -> dict:
            claim_output_dir(out_dir, command)
            minutes = run_command(resumable_training(command), REPO)
            prune_checkpoints(out_dir)
            metrics, persons = {}, {}
            for name, _ in TEST_SETS:
                metrics[name], persons[name] = read_evaluation(out_dir / "inference" / name, row.name)
            return {"minutes": round(minutes, 2), "seed": seed, "train": list(train),
                    "metrics": metrics, "persons": persons}

        def prepare() -> None:
            self.classes(keep_file=True)
            if row.assignment:
                self.stitch(row.assignment, keep_images=True)

        return self.book.step(out_dir / "row.json", command, run, prepare=prepare)


def read_evaluation(folder: Path, row: str) -> Tuple[dict, Dict[str, List[float]]]:
    """A row's 3D-pose metrics on one test set and, per detected GT person (annotation id),
    its errors :data:`PERSON_ERRORS` (mm; None where unknown)."""
    paths = folder / METRICS_FILE, folder / PER_PERSON_FILE
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the evaluation of row {row!r} wrote no 3D-pose results")
    try:
        metrics = json.loads(paths[0].read_text())["metrics"]
        people = json.loads(paths[1].read_text())["persons"]
    except (ValueError, KeyError) as e:
        raise ValueError(f"{folder}: unreadable 3D-pose results of row {row!r} ({e})") from e
    persons = {pid: [p.get(k) for k in PERSON_ERRORS] for pid, p in people.items() if p["detected"]}
    return metrics, persons


# ---------------------------------------------------------------------------------------------
# RESULTS.md


def _by_seed(records: Sequence[dict]) -> Dict[int, dict]:
    return {r["seed"]: r for r in records}


def common_persons(rows: Dict[str, List[dict]], test_set: str) -> Dict[int, Set[str]]:
    """Per seed, the GT persons (annotation ids) that every row run with that seed detects."""
    seeds: Dict[int, List[Set[str]]] = {}
    for records in rows.values():
        for seed, rec in _by_seed(records).items():
            seeds.setdefault(seed, []).append(set(rec["persons"][test_set]))
    return {seed: set.intersection(*sets) for seed, sets in seeds.items()}


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def common_mpjpe(rows: Dict[str, List[dict]], test_set: str) -> Dict[str, List[float]]:
    """Per row, and for the ``mean_pose`` and ``oracle`` lines, the MPJPE of each seed over the
    persons every row detects with that seed (seeds with no such person are left out)."""
    common = common_persons(rows, test_set)
    out: Dict[str, List[float]] = {name: [] for name in (*rows, "mean_pose", "oracle")}
    for seed in sorted(common):
        ids = sorted(common[seed])
        if not ids:
            continue
        baselines = None
        for name, records in rows.items():
            rec = _by_seed(records).get(seed)
            if rec is None:
                continue
            persons = rec["persons"][test_set]
            out[name].append(_mean(persons[i][0] for i in ids))
            # the oracle and mean pose depend on the GT person only (one class set for all rows)
            baselines = baselines or persons
        for line, column in (("oracle", 1), ("mean_pose", 2)):
            value = _mean(baselines[i][column] for i in ids)
            if value is not None:
                out[line].append(value)
    return {k: [v for v in values if v is not None] for k, values in out.items()}


def _cell(values: Sequence[Optional[float]], digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    return format_mean_std(values, digits) if values else "–"


def write_results(path: Path, args, rows: Dict[str, List[dict]], extra: dict) -> str:
    """RESULTS.md from the recorded steps: ``rows`` maps a row to its seeds' records (rows not
    run are listed as such); ``extra`` holds the ``stitch`` records by assignment, the
    ``classes`` record and the contact ``sheets`` (paths relative to RESULTS.md)."""
    seeds = " ".join(str(s) for s in args.seeds)
    stitch, classes = extra.get("stitch", {}), extra.get("classes")
    lines = [
        "# 3D-pose classification with MoCap-guided stitched images (embedded world)",
        "",
        written_by(f"python projects/MoCapSynthesis/run.py --iters {args.iters} --seeds {seeds} "
                   f"--num-stitched {args.num_stitched} --k {args.k} --poses {args.poses}")
        + f". Every classifier (`{CONFIG.relative_to(REPO)}`) trains for "
        f"{schedule_text(args.iters)}, once per seed; cells are mean ± "
        "std over the seeds (sample std).",
        "",
        f"Test sets: `{MOCAP_TEST}` renders people in the held-out motions "
        f"({', '.join(TEST_MOTIONS)}; no frame within {SAME_POSE_DEG:g} degrees per joint of a "
        "training-motion frame); the stitching "
        f"queries come from `{args.poses}`, which shares no motion and no frame with them. "
        "`densepose_embedded_val` renders random poses, like the training renders.",
    ]
    if classes:
        lines += ["", f"One class set for every row: K = {classes['k']} K-means centres of the "
                  f"{classes['num_poses']} poses of `{RENDERS}` and their mirror images "
                  f"(`{Path(classes['file']).name}`, digest {classes['digest'][:12]}; quantisation "
                  f"error {classes['quantisation_mpjpe_mm']:.1f} mm, spread about the mean pose "
                  f"{classes['mean_pose_mpjpe_mm']:.1f} mm, on the training poses at the nominal "
                  "size)."]
    for assignment in ASSIGNMENTS:
        s = stitch.get(assignment)
        if s:
            lines += ["", f"`{s['dataset']}`: {s['images']} stitched images ({s['persons']} persons), "
                      f"{assignment} pixel assignment, stitching seed {STITCH_SEED}, pieces from "
                      f"`{RENDERS}` ({s['minutes']:.1f} min)."]
    lines += [
        "",
        f"**MPJPE** ({PROTOCOL}); *detected*: over every person the row detects (IoU >= 0.5); "
        "*common*: over the persons every row detects with that seed, the set the comparisons "
        "use. *mean pose*: the mean training pose predicted for every person; *class oracle*: "
        "the GT's nearest class centre, the floor K classes allow. **Recall**: GT persons "
        "detected (%). **Top-1**: the GT's nearest class predicted first (%).",
        "",
        "Paper (Rogez & Schmid 2016): no comparable paper number. Its MPJPEs are measured on "
        "real images (Human3.6M) with its own joint set, K and CNN, not on this embedded world.",
    ]
    for test_set, what in TEST_SETS:
        lines += ["", f"## `{test_set}` ({what})", "",
                  "| row | train data | seeds | min | recall % | MPJPE detected (mm, root-centred, "
                  "nominal size) | top-1 % | MPJPE common (mm, root-centred, nominal size) |",
                  "|---|---|---|---|---|---|---|---|"]
        common = common_mpjpe(rows, test_set)
        for row in ROWS:
            recs = rows.get(row.name, [])
            if not recs:
                lines.append(f"| {row.tag} {row.label} | – | – | not run | | | | |")
                continue
            metric = lambda k: _cell([r["metrics"][test_set].get(k) for r in recs])  # noqa: E731
            minutes = sum(r["minutes"] for r in recs) / len(recs)
            lines.append(f"| {row.tag} {row.label} | "
                         + " + ".join(f"`{t}`" for t in recs[0]["train"])
                         + f" | {len(recs)} | {minutes:.1f} | {metric('recall')} | "
                         f"{metric('mpjpe')} | {metric('top1')} | **{_cell(common[row.name])}** |")
        for line, label in (("mean_pose", "mean training pose"),
                            ("oracle", "class oracle (nearest centre)")):
            lines.append(f"| {label} | `{RENDERS}` poses | {len(common[line])} | – | – | – | – | "
                         f"{_cell(common[line])} |")

    lines += ["", "## Comparisons", "",
              "Claim: the second row has the lower MPJPE on the persons both detect. Verdict: "
              "**reproduced** when the mean difference over the seeds is in that direction and "
              "exceeds twice its standard error (Welch); **not resolved at this budget** within "
              "two standard errors; **opposite (> 2 SE)** beyond them the other way. This "
              "report claims nothing beyond these verdicts.", "",
              "| comparison | test set | MPJPE common (mm), before -> after | difference ± SE | "
              "verdict |", "|---|---|---|---|---|"]
    for claim, before, after in COMPARISONS:
        for test_set, _ in TEST_SETS:
            common = common_mpjpe(rows, test_set)
            vb, va = common.get(before, []), common.get(after, [])
            what = f"{claim}: {TAGS[before]} -> {TAGS[after]}"
            if not (rows.get(before) and rows.get(after)):
                lines.append(f"| {what} | `{test_set}` | not run | – | – |")
                continue
            if not (vb and va):
                lines.append(f"| {what} | `{test_set}` | no person detected by every row | – | – |")
                continue
            c = compare_rows(vb, va, higher_is_better=False)
            se = "–" if c.standard_error is None else f"{c.standard_error:.1f}"
            lines.append(f"| {what} | `{test_set}` | {_cell(vb)} -> {_cell(va)} | "
                         f"{c.difference:+.1f} ± {se} | {c.verdict} |")

    sheets = extra.get("sheets", {})
    if sheets:
        lines += ["", "## Stitched images", "",
                  "The same 16 stitched images (same queries and sources) under each assignment "
                  "rule; left: image, person mask and keypoints (the projected query pose); right: "
                  "the DensePose labels carried through the warps.", ""]
        for assignment, sheet in sheets.items():
            lines += ["", f"{assignment}: [`{sheet}`]({sheet})", "", f"![{assignment}]({sheet})"]
    steps = [s for s in (*extra.get("prepare", []), *stitch.values(), classes) if s]
    steps += [r for recs in rows.values() for r in recs]
    return write_report(path, lines, [display_command(s["command"]) for s in steps],
                        discussion=HERE / "discussion.md")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1000, help="training iterations per classifier")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="training seeds of every row")
    parser.add_argument("--num-stitched", type=int, default=1200,
                        help="stitched training images per assignment rule")
    parser.add_argument("--k", type=int, default=100, help="number of pose classes")
    parser.add_argument("--poses", default=DEFAULT_POSES,
                        help="MoCap pose source of the stitched queries (see synthesis.pose_sources); "
                        "must share no motion or frame with the test split")
    parser.add_argument("--out", default="output/mocap_synthesis",
                        help="absolute, or relative to the repository root")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--records", default=str(HERE / "records"),
                        help="where a copy of every step's record is kept (committed with the "
                             "project, so finished steps survive the loss of --out)")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.num_stitched < 1 or args.k < 2:
        parser.error("--iters and --num-stitched must be >= 1, --k >= 2")
    args.seeds = list(dict.fromkeys(args.seeds))
    results = Path(args.results).absolute()
    os.chdir(REPO)  # every command, and a relative --out, are taken from the repository root
    check_held_out(args.poses)
    recipe = Recipe(args)
    extra = {"prepare": recipe.prepare(),
             "stitch": {a: recipe.stitch(a) for a in ASSIGNMENTS},
             "classes": recipe.classes(), "sheets": {}}
    for a in ASSIGNMENTS:
        sheet = results.parent / SHEET.format(a)
        recipe.contact_sheet(a, sheet)
        extra["sheets"][a] = os.path.relpath(sheet, results.parent)
    rows: Dict[str, List[dict]] = {}
    for seed in args.seeds:  # seed by seed: a recipe stopped early has whole seeds of every row
        for row in ROWS:
            rows.setdefault(row.name, []).append(recipe.train_row(row, seed))
    print(write_results(results, args, rows, extra))


if __name__ == "__main__":
    main()
