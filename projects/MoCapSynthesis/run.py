#!/usr/bin/env python
"""Rogez & Schmid's experiment on the embedded world: does MoCap-guided stitching help a 3D-pose
classifier on poses its real training images lack?

    python projects/MoCapSynthesis/run.py [--iters 1000] [--seed 0] [--num-stitched 1200]
        [--k 100] [--poses motions] [--out DIR] [--results PATH]

1. Stitch ``--num-stitched`` images (``python -m synthesis.stitch``) whose query 3D poses come
   from the MoCap pose source (default: the procedural motion set) and whose pieces come from
   the rendered training split; registered as ``stitched_<name>``.
2. Train the K-way 3D-pose classifier (``configs/embedded/pose3d_class_R_18_GN_FPN.yaml``) with the
   same budget (iterations, batch, LR schedule, seed) on (a) the renders only and (b) the
   renders + the stitched images; each run builds its K-means classes from its own training
   poses, as the method does.
3. Evaluate both on held-out renders: ``densepose_embedded_mocap_test`` (people in poses of the
   motion set, which the random poses of the training renders rarely take) and
   ``densepose_embedded_val`` (random poses, the training renders' distribution).
4. Write ``RESULTS.md`` (MPJPE, class accuracy, detection recall) and a contact sheet of
   stitched images with their keypoints next to this script.

Every step is recorded with its exact command under ``--out``; re-running skips finished steps,
and a training run cut off continues from its last checkpoint.
"""
import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from densepose_ext.engine.recipe import (cached_record, claim_output_dir, display_command,
                                         resumable_training, run_command, save_record,
                                         shrunk_schedule)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIG = REPO / "configs" / "embedded" / "pose3d_class_R_18_GN_FPN.yaml"
RENDERS = "densepose_embedded_train"
TEST_SETS = (("densepose_embedded_mocap_test", "unseen MoCap poses"),
             ("densepose_embedded_val", "random poses"))
SHEET = "stitched_contact_sheet.png"


@dataclass(frozen=True)
class Row:
    """One classifier of the table: its name, what it says, and whether stitched data is added."""

    name: str
    label: str
    stitched: bool


ROWS = (Row("renders", "(a) renders only", stitched=False),
        Row("renders_stitched", "(b) renders + stitched", stitched=True))


def stitched_name(poses: str) -> str:
    """Directory (under $DETECTRON2_DATASETS/stitched/) of the stitched set for a pose source."""
    return "mocap_" + "".join(c if c.isalnum() else "_" for c in Path(poses).stem)


def _names(names) -> str:
    """Dataset names as the python tuple a config override takes: ("a", "b",)."""
    return "(" + "".join(f'"{n}", ' for n in names).rstrip() + ")"


class Recipe:
    """Runs the steps in order, each once, and keeps what they measured."""

    def __init__(self, args):
        from densepose_ext.data.datasets import datasets_root

        self.args = args
        self.out = Path(args.out)
        self.stitched_dir = datasets_root() / "stitched" / stitched_name(args.poses)
        self.stitched_dataset = "stitched_" + self.stitched_dir.name

    def stitch(self) -> dict:
        """The stitched training images (pieces from the rendered training split)."""
        from densepose_ext.data.datasets import EMBEDDED_SPLITS, datasets_root

        split_dir = datasets_root() / "densepose_embedded" / EMBEDDED_SPLITS[RENDERS].subdir
        command = [sys.executable, "-m", "synthesis.stitch",
                   "--sources", str(split_dir / "annotations.json"),
                   "--images", str(split_dir / "images"), "--out", str(self.stitched_dir),
                   "--num-images", str(self.args.num_stitched), "--seed", str(self.args.seed),
                   "--poses", self.args.poses, "--no-progress"]
        path = self.out / "stitch.json"
        record = cached_record(path, command)
        if record is None:
            # the source and test splits are rendered first if missing
            run_command([sys.executable, "-m", "densepose_ext.data.prepare", "--splits", "train",
                         "val", "mocap_test"], REPO)
            minutes = run_command(command, REPO)
            info = json.loads((self.stitched_dir / "annotations.json").read_text())
            record = save_record(path, {
                "command": command, "minutes": round(minutes, 2), "dataset": self.stitched_dataset,
                "images": len(info["images"]), "persons": len(info["annotations"])})
        return record

    def contact_sheet(self, path: Path) -> dict:
        """Stitched images with their person mask and keypoints (left) and carried DensePose
        labels (right)."""
        command = [sys.executable, "tools/visualize_data.py", "--dataset", self.stitched_dataset,
                   "--num", "16", "--cols", "4", "--cell", "192", "--shuffle", str(self.args.seed),
                   "--panels", "masks+keypoints", "iuv+points", "--out", str(path)]
        record = cached_record(self.out / "contact_sheet.json", command)
        if record is None or not path.is_file():
            run_command(command, REPO)
            record = save_record(self.out / "contact_sheet.json", {"command": command})
        return record

    def train_row(self, row: Row) -> dict:
        out_dir = self.out / row.name
        train = (RENDERS, self.stitched_dataset) if row.stitched else (RENDERS,)
        command = [sys.executable, "train_net.py", "--config-file", str(CONFIG.relative_to(REPO)),
                   *shrunk_schedule(self.args.iters, self.args.seed),
                   "MODEL.ROI_POSE3D_HEAD.NUM_CLASSES", str(self.args.k),
                   "DATASETS.TRAIN", _names(train), "DATASETS.TEST", _names(n for n, _ in TEST_SETS),
                   "OUTPUT_DIR", str(out_dir)]
        record = cached_record(out_dir / "row.json", command)
        if record is None:
            claim_output_dir(out_dir, command)
            minutes = run_command(resumable_training(command), REPO)
            metrics = {}
            for name, _ in TEST_SETS:
                path = out_dir / "inference" / name / "pose3d_metrics.json"
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: the evaluation of row {row.name!r} wrote no "
                                            "3D-pose metrics")
                metrics[name] = json.loads(path.read_text())["metrics"]
            record = save_record(out_dir / "row.json", {
                "command": command, "minutes": round(minutes, 2), "train": list(train),
                "metrics": metrics})
        return record


def _mm(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.1f}"


def _pct(value: Optional[float]) -> str:
    """A percentage as the evaluator reports it (0-100)."""
    return "–" if value is None else f"{value:.1f}"


def write_results(path: Path, args, rows: Dict[str, dict], stitch: dict, sheet: Optional[str]) -> str:
    """RESULTS.md from the recorded steps (rows not run are listed as such)."""
    lines = [
        "# 3D-pose classification with MoCap-guided stitched images (embedded world)",
        "",
        f"Written by `python projects/MoCapSynthesis/run.py --iters {args.iters} --seed "
        f"{args.seed} --num-stitched {args.num_stitched} --k {args.k} --poses {args.poses}` "
        f"({time.strftime('%Y-%m-%d')}, {platform.machine()} CPU, {os.cpu_count()} cores). "
        f"Both classifiers train from scratch for {args.iters} iterations of 4 images "
        f"(`{CONFIG.relative_to(REPO)}`, steps at 77% and 90%, seed {args.seed}), K = {args.k} "
        "pose classes from K-means over each run's own training poses (and their mirror images). "
        f"`{stitch['dataset']}`: {stitch['images']} stitched images ({stitch['persons']} persons), "
        f"query poses from `{args.poses}`, pieces from `{RENDERS}` ({stitch['minutes']:.1f} min "
        "to stitch).",
        "",
        "MPJPE (mm): root-centred, at the nominal body size, between the predicted class-centre "
        "pose and the ground-truth joints of each detected person (IoU >= 0.5); *oracle* is the "
        "MPJPE of the nearest class centre, the floor a perfect classifier would reach; "
        "*recall*: persons detected.",
        "",
    ]
    header = "| row | train data | min |"
    rule = "|---|---|---|"
    for name, what in TEST_SETS:
        header += f" `{name}` ({what}): MPJPE | top-1 % | oracle | recall % |"
        rule += "---|---|---|---|"
    lines += [header, rule]
    for row in ROWS:
        rec = rows.get(row.name)
        if rec is None:
            lines.append(f"| {row.label} | – | not run |" + " |" * (4 * len(TEST_SETS)))
            continue
        cells = [row.label, " + ".join(f"`{t}`" for t in rec["train"]), f"{rec['minutes']:.1f}"]
        for name, _ in TEST_SETS:
            m = rec["metrics"][name]
            cells += [f"**{_mm(m.get('mpjpe'))}**", _pct(m.get("top1")), _mm(m.get("mpjpe_oracle")),
                      _pct(m.get("recall"))]
        lines.append("| " + " | ".join(cells) + " |")
    if "renders" in rows and "renders_stitched" in rows:
        lines += ["", "MPJPE change from adding the stitched images (negative = better):", ""]
        for name, what in TEST_SETS:
            a = rows["renders"]["metrics"][name].get("mpjpe")
            b = rows["renders_stitched"]["metrics"][name].get("mpjpe")
            if a is not None and b is not None:
                lines.append(f"- `{name}` ({what}): {a:.1f} -> {b:.1f} mm ({b - a:+.1f} mm, "
                             f"{100 * (b - a) / a:+.1f}%)")
    if sheet:
        lines += ["", f"Contact sheet of stitched images: [`{sheet}`]({sheet}) (left: image, "
                  "person mask and keypoints = the projected query pose; right: the DensePose "
                  "labels carried through the warps).", "", f"![stitched images]({sheet})"]
    lines += ["", "## Commands", "", "Run from the repository root:", "", "```bash"]
    lines += [display_command(r["command"]) for r in (stitch, *rows.values())]
    lines += ["```"]
    discussion = HERE / "discussion.md"
    if discussion.is_file():
        lines += ["", discussion.read_text().rstrip()]
    text = "\n".join(lines) + "\n"
    Path(path).write_text(text)
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1000, help="training iterations per classifier")
    parser.add_argument("--seed", type=int, default=0, help="stitching and training seed")
    parser.add_argument("--num-stitched", type=int, default=1200, help="stitched training images")
    parser.add_argument("--k", type=int, default=100, help="number of pose classes")
    parser.add_argument("--poses", default="motions",
                        help="MoCap pose source of the stitched queries (see synthesis.pose_sources)")
    parser.add_argument("--out", default="output/mocap_synthesis",
                        help="absolute, or relative to the repository root")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    if args.iters < 1 or args.num_stitched < 1 or args.k < 2:
        parser.error("--iters and --num-stitched must be >= 1, --k >= 2")
    os.chdir(REPO)  # every command, and a relative --out, are taken from the repository root
    recipe = Recipe(args)
    stitch = recipe.stitch()
    results = Path(args.results).absolute()
    sheet = results.parent / SHEET
    recipe.contact_sheet(sheet)
    rows = {row.name: recipe.train_row(row) for row in ROWS}
    print(write_results(results, args, rows, stitch, os.path.relpath(sheet, results.parent)))


if __name__ == "__main__":
    main()
