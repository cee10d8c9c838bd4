#!/usr/bin/env python
"""ResNet vs ResNeXt backbones of DensePose R-CNN at equal parameters and at equal memory.

    python projects/ResNeXt/run.py [--parts 1 2] [--seeds 0 1 2] [--iters 400]
        [--pretrain-iters 1000] [--train D] [--test D] [--pretrain-train D] [--size 512]
        [--out DIR] [--results PATH] [--plot PATH] [--records DIR]

ResNeXt (Xie et al. 2017) splits the 3x3 convolution of a ResNet bottleneck into groups; with
fewer weights per channel it affords wider feature maps at the same number of parameters and
FLOPs. Wider feature maps are more activations to keep for the backward pass, so the question
here is what the two families cost in memory, and how they compare when memory, not
parameters, is held equal.

Part 1 (measurement, no training): DensePose R-CNN with each of R-50, R-101, X-50-32x4d,
X-101-32x8d and X-101-64x4d FPN, built from our configs (CPU, random initialisation): bottom-up
and whole-model parameters, inference FLOPs and the measured peak memory of a training step and
of inference, all on one fixed synthetic image of ``--size`` pixels with 4 annotated people
(``measure.py`` beside this script says exactly how). Then two matched pairs, found by search:

* equal parameters: ResNeXt-50 CxD for the cardinalities C of the ResNeXt paper's Table 2, the
  group width D searched to match ResNet-50's bottom-up parameters; each found variant's
  training memory is measured;
* equal memory: ResNeXt-50 Cx4d with the cardinality C searched to match ResNet-50's measured
  peak training memory.

Part 2 (training, the embedded benchmark): the embedded DensePose R-CNN's ResNet-18-GN and
two ResNeXt-50-GN 32xD with RES2_OUT_CHANNELS R (GroupNorm: multiples of 32 channels), one of
ResNet-18's bottom-up parameters and one of its peak training memory, measured on a
pretraining batch (4 images of 256 pixels, every layer learning); for every D the R closest is
searched, and among those within 5% the one nearest the usual shape (R = 2 x 32D) is chosen.
Each backbone is pretrained as the model zoo's was (``tools/pretrain_model_zoo.py``: Mask +
Keypoint R-CNN on ``--pretrain-train``) for ``--pretrain-iters`` iterations, then fine-tuned
for DensePose from its own pretrained weights with the recipes' shrunk schedule
(:func:`densepose_ext.engine.recipe.shrunk_schedule`) and evaluated on ``--test``; both steps
run once per seed. The table gives mean ± std over the seeds, the verdicts on "the ResNeXt
beats the ResNet" at equal parameters and at equal memory come from
:func:`densepose_ext.engine.seed_stats.compare_rows`.

Budget (2-core CPU): part 1 took 17 minutes of CPU time (45 minutes of wall time on a shared
machine) at ``--size 512``: five models, the searches' parameter counts and seven more
training-step measurements. Part 2 at the defaults: its searches took about 5 minutes of CPU
(recorded under ``records/``); then 3 rows x 3 seeds x (1000 pretraining iterations of 4
images, ~1 s each for the ResNet-18 on an unshared 2-core CPU, ~1.4x that for the
equal-parameter ResNeXt and ~0.8x for the equal-memory one (CPU-time ratios measured side by
side), + an evaluation; 400 fine-tuning iterations at ~0.85 s, ~1.3x and ~1x, + an evaluation)
= about 4.5 hours, plus about 7 minutes rendering the 4000 pretraining images on first use;
expect twice that on a shared machine. Machines of the same kind differ: on another 2-core CPU,
mostly unshared, seed 0 took 31 minutes of pretraining for the ResNet-18 (1.6 s per iteration),
41 for the equal-parameter ResNeXt (2.4 s) and 20 for the equal-memory one (1.1 s), then 4.3,
5.3 and 3.7 minutes of fine-tuning: about 2 hours per seed with the evaluations.

Every step is recorded with its exact command under ``--out`` and copied under ``--records``
(``records/`` next to this script, committed): a re-run skips finished steps, also on a fresh
checkout, and a training cut off continues from its last checkpoint. A part not named in
``--parts`` runs nothing new and is reported from its records as far as they go.
``RESULTS.md`` and the plot are rewritten at the end.
"""
import argparse
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from densepose_ext.engine.recipe import (RecordBook, claim_output_dir, load_script,
                                         machine_id, prune_checkpoints, resumable_training,
                                         run_command, seed_dir, shrunk_schedule)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIGS = REPO / "configs"
EMBEDDED = CONFIGS / "embedded" / "densepose_rcnn_R_18_GN_FPN.yaml"
MEASURE = HERE / "measure.py"
PRETRAIN_TOOL = "tools/pretrain_model_zoo.py"
TOLERANCE = 0.05  # a matched pair differs by at most 5% in what it is matched on
DEFAULT_SEEDS = (0, 1, 2)
#: the cardinalities of the ResNeXt paper's Table 2 (equal-complexity ResNeXt-50 templates)
PAPER_CARDINALITIES = (2, 4, 8, 32)
#: part 2's measurement: a pretraining batch (4 images of 256 px, every layer learning)
PART2_SIZE, PART2_IMAGES = 256, 4
PART2_MEASURE_OPTS = ("MODEL.BACKBONE.FREEZE_AT", "0")
PERSONS = 4


@dataclass(frozen=True)
class Backbone:
    """One DensePose R-CNN backbone: a config and ``MODEL.RESNETS`` overrides."""

    name: str
    label: str
    config: Path
    opts: Tuple[str, ...] = ()

    @property
    def config_arg(self) -> str:
        return str(self.config.relative_to(REPO))


PART1_ROWS = (
    Backbone("R_50", "ResNet-50", CONFIGS / "densepose_rcnn_R_50_FPN_s1x.yaml"),
    Backbone("R_101", "ResNet-101", CONFIGS / "densepose_rcnn_R_101_FPN_s1x.yaml"),
    Backbone("X_50_32x4d", "ResNeXt-50 32x4d", CONFIGS / "densepose_rcnn_X_50_32x4d_FPN_s1x.yaml"),
    Backbone("X_101_32x8d", "ResNeXt-101 32x8d",
             CONFIGS / "densepose_rcnn_X_101_32x8d_FPN_s1x.yaml"),
    Backbone("X_101_64x4d", "ResNeXt-101 64x4d",
             CONFIGS / "densepose_rcnn_X_101_64x4d_FPN_s1x.yaml"),
)
PART1 = {b.name: b for b in PART1_ROWS}
EMBEDDED_RESNET = Backbone("R_18_GN", "ResNet-18-GN", EMBEDDED)
#: part 2's rows: (row, what its backbone is)
PART2_ROWS = (("R_18_GN", "the embedded DensePose R-CNN's"),
              ("X_eq_params", "ResNet-18-GN's parameters"),
              ("X_eq_memory", "ResNet-18-GN's peak training memory"))
#: the ResNeXt paper's same comparison (Table 3): ImageNet-1K val top-1 error, one 224x224 crop
PAPER_EQUAL_PARAMS = "ResNet-50 23.9% -> ResNeXt-50 32x4d 22.2% top-1 error (lower is better)"
#: the paper holds complexity (parameters and FLOPs) equal, never memory
PAPER_EQUAL_MEMORY = "– (the paper never holds memory equal)"
#: (what, metric, row before, row after, the paper's number): claims "after beats before"
COMPARISONS = (
    ("equal parameters: ResNet-18 -> ResNeXt-50", "gps_ap", "R_18_GN", "X_eq_params",
     PAPER_EQUAL_PARAMS),
    ("equal parameters: ResNet-18 -> ResNeXt-50", "auc10", "R_18_GN", "X_eq_params",
     PAPER_EQUAL_PARAMS),
    ("equal memory: ResNet-18 -> ResNeXt-50", "gps_ap", "R_18_GN", "X_eq_memory",
     PAPER_EQUAL_MEMORY),
    ("equal memory: ResNet-18 -> ResNeXt-50", "auc10", "R_18_GN", "X_eq_memory",
     PAPER_EQUAL_MEMORY),
)


@lru_cache(maxsize=None)
def _resnets(config: Path, opts: Tuple[str, ...]) -> Dict[str, object]:
    """``MODEL.RESNETS`` of a config with overrides."""
    from densepose_ext.config import setup_densepose_cfg

    return dict(setup_densepose_cfg(str(config), list(opts)).MODEL.RESNETS)


def variant(base: Backbone, name: str, label: str, **resnets) -> Backbone:
    """``base`` with ``MODEL.RESNETS`` keys changed (those equal to ``base``'s are left out;
    a variant that changes nothing is ``base`` itself, with its records)."""
    current = _resnets(base.config, base.opts)
    opts = list(base.opts)
    for key, value in resnets.items():
        if current[key] != value:
            opts += [f"MODEL.RESNETS.{key}", str(value)]
    return base if tuple(opts) == base.opts else Backbone(name, label, base.config, tuple(opts))


def x50(groups: int, width: int) -> Backbone:
    """Part 1's ResNeXt-50 ``groups`` x ``width``d (the X-50-32x4d config otherwise)."""
    return variant(PART1["X_50_32x4d"], f"X_50_{groups}x{width}d",
                   f"ResNeXt-50 {groups}x{width}d", NUM_GROUPS=groups, WIDTH_PER_GROUP=width)


def embedded_x50(width: int, res2: int) -> Backbone:
    """Part 2's ResNeXt-50-GN 32x``width``d with ``res2`` RES2_OUT_CHANNELS, in the embedded
    DensePose R-CNN (stride in the 3x3 conv, as the FAIR ResNeXt)."""
    return variant(EMBEDDED_RESNET, f"X_50_GN_32x{width}d_r{res2}",
                   f"ResNeXt-50-GN 32x{width}d, res2 {res2}", DEPTH=50, NUM_GROUPS=32,
                   WIDTH_PER_GROUP=width, RES2_OUT_CHANNELS=res2, STRIDE_IN_1X1=False)


class NotRecorded(Exception):
    """A step that a part not asked for would have to run."""


class Steps:
    """The recipe's :class:`RecordBook`; with ``allow_run`` False a missing step raises
    :class:`NotRecorded` instead of running."""

    def __init__(self, book: RecordBook, allow_run: bool = True):
        self.book, self.allow_run = book, allow_run

    def step(self, path: Path, command: Sequence, run: Callable[[], dict], **kwargs) -> dict:
        if not self.allow_run:
            record = self.book.lookup(path, command)
            if record is None:
                raise NotRecorded(str(path))
            return record
        return self.book.step(path, command, run, **kwargs)


def count_parameters(config: str, opts: Sequence[str]) -> dict:
    """What ``measure.py --what params`` prints, counted in this process."""
    return _sibling("measure").measure(config, list(opts), "params")


class Measurer:
    """Recorded measurements (``measure.py``) of backbones at one setting."""

    def __init__(self, steps: Steps, out: Path, size: int, images: int = 1,
                 opts: Sequence[str] = ()):
        self.steps, self.out = steps, Path(out)
        self.size, self.images, self.opts = size, images, tuple(opts)
        self.measured: Dict[str, dict] = {}  # every measurement returned, in order (commands)

    def command(self, b: Backbone, what: str) -> List[str]:
        """The recorded command (it prints the json; the run adds ``--out``, which does not
        change what is measured, so records do not depend on ``--out`` of the recipe)."""
        command = [sys.executable, str(MEASURE.relative_to(REPO)), "--config-file",
                   b.config_arg, "--what", what]
        if what != "params":
            command += ["--size", str(self.size), "--persons", str(PERSONS), "--images",
                        str(self.images)]
        return [*command, *b.opts, *self.opts]

    def path(self, b: Backbone, what: str) -> Path:
        return self.out / f"{b.name}.{what}.json"

    def params(self, b: Backbone) -> dict:
        """Parameter counts (from a full measurement when one is recorded); counted in this
        process, as ``measure.py --what params`` would."""
        for what in ("all", "train"):
            record = self.steps.book.lookup(self.path(b, what), self.command(b, what))
            if record is not None:
                return record
        return self.steps.step(self.path(b, "params"), self.command(b, "params"),
                               lambda: count_parameters(b.config_arg, [*b.opts, *self.opts]))

    def measure(self, b: Backbone, what: str = "all") -> dict:
        """``what`` ("train" or "all") measured by ``measure.py`` in its own process (a train
        request is answered by a recorded full measurement too)."""
        names = {"name": b.name, "label": b.label}
        record = None
        if what == "train":
            record = self.steps.book.lookup(self.path(b, "all"), self.command(b, "all"))
        if record is None:
            command = self.command(b, what)
            result = self.out / f"{b.name}.{what}.out.json"

            def run() -> dict:
                run_command([*command[:2], "--out", str(result), *command[2:]], REPO)
                return json.loads(result.read_text())

            record = self.steps.step(self.path(b, what), command, run)
        record = {**record, **names}
        self.measured.setdefault(b.name, record)
        return record


def params_of(record: dict) -> int:
    """Bottom-up parameters as ImageNet classifiers count them (norm affine terms included)."""
    return record["params"]["bottom_up_with_norm"]


def train_peak(record: dict) -> int:
    return record["train"]["peak_bytes"]


def search_monotone(values: Sequence[int], evaluate: Callable[[int], float], target: float,
                    start: Union[int, Sequence[int]]) -> Tuple[int, List[Tuple[int, float]]]:
    """The value of ``values`` (ascending; ``evaluate`` increases along them) whose
    evaluation is closest to ``target``, and every (value, evaluation) made, in order.

    After the ``start`` value(s) (e.g. a guess and a value measured anyway) it steps towards
    the target (by the secant of the last two evaluations once there are two) until the
    target is bracketed or out of range, then narrows the bracket by interpolation, kept an
    eighth of the bracket away from its ends so that it shrinks geometrically.
    """
    values = list(values)
    seen: Dict[int, float] = {}
    trials: List[Tuple[int, float]] = []
    starts = [start] if isinstance(start, int) else list(start)
    for value in starts[:-1]:
        seen[values.index(value)] = float(evaluate(value))
        trials.append((value, seen[values.index(value)]))
    i = values.index(starts[-1])
    while True:
        if i not in seen:
            seen[i] = float(evaluate(values[i]))
            trials.append((values[i], seen[i]))
        below = sorted(k for k in seen if seen[k] < target)
        above = sorted(k for k in seen if seen[k] >= target)
        if below and above:
            lo, hi = below[-1], above[0]
            if hi - lo <= 1:
                break
            j = lo + round((target - seen[lo]) * (hi - lo) / (seen[hi] - seen[lo]))
            margin = max(1, (hi - lo) // 8)
            i = min(max(j, lo + margin), hi - margin)
            continue
        side, direction = (below, 1) if below else (above, -1)
        edge = side[-1] if direction > 0 else side[0]  # the evaluation nearest the target
        if not 0 <= edge + direction < len(values):
            break  # the target lies beyond the range
        step = 1
        if len(side) > 1:
            other = side[-2] if direction > 0 else side[1]
            slope = (seen[edge] - seen[other]) / (edge - other)
            if slope > 0:
                step = max(1, round(abs(target - seen[edge]) / slope))
        i = min(max(edge + direction * step, 0), len(values) - 1)
    best = min(seen, key=lambda k: (abs(seen[k] - target), k))
    return values[best], trials


def part1(m: Measurer) -> dict:
    """Part 1's measurements and searches (see the module doc)."""
    rows = {b.name: m.measure(b, "all") for b in PART1_ROWS}
    anchor = rows["R_50"]
    family = []  # equal parameters: (groups, width found, trials, memory record)
    for groups in PAPER_CARDINALITIES:
        width, trials = search_monotone(
            range(1, 129), lambda w: params_of(m.params(x50(groups, w))), params_of(anchor),
            start=max(1, 64 // groups))
        family.append({"groups": groups, "width": width, "trials": trials,
                       "record": m.measure(x50(groups, width), "train")})
    groups, trials = search_monotone(  # 32: measured above; 16: ResNet-50's bottleneck width
        range(1, 65), lambda c: train_peak(m.measure(x50(c, 4), "train")), train_peak(anchor),
        start=(32, 16))
    memory = {"groups": groups, "width": 4, "trials": trials,
              "records": {c: m.measure(x50(c, 4), "train") for c, _ in trials}}
    eq_params = next(f for f in family if f["groups"] == 32)
    pairs = [{"matched_on": "parameters", "resnet": anchor, "resnext": eq_params["record"]},
             {"matched_on": "peak training memory", "resnet": anchor,
              "resnext": memory["records"][groups]}]
    return {"rows": rows, "family": family, "memory_search": memory, "pairs": pairs,
            "measurements": list(m.measured.values())}


#: part 2's search space, ResNeXt-50-GN 32xD with RES2_OUT_CHANNELS R (GroupNorm's 32 groups
#: need multiples of 32 channels)
RESNEXT_WIDTHS = (1, 2, 3, 4)  # D: bottlenecks of 32..128 channels in res2
RES2_CHANNELS = tuple(range(32, 1025, 32))  # R
USUAL_SHAPE = 2  # R / bottleneck width of the usual ResNeXt (X-50-32x4d: 256 / 128)


def match_res2(evaluate: Callable[[Backbone], float], target: float) -> Tuple[dict, List[dict]]:
    """For each width D, the R whose ``evaluate`` of :func:`embedded_x50` comes closest to
    ``target`` (search from the usual shape). Returns the chosen candidate (among those
    within the tolerance the one nearest the usual shape, else the closest) and every
    width's search."""
    searches = []
    for width in RESNEXT_WIDTHS:
        res2, trials = search_monotone(
            RES2_CHANNELS, lambda r: evaluate(embedded_x50(width, r)), target,
            start=min(RES2_CHANNELS, key=lambda r: abs(r - USUAL_SHAPE * 32 * width)))
        searches.append({"width": width, "res2": res2, "trials": trials,
                         "ratio": dict(trials)[res2] / target})
    within = [c for c in searches if abs(c["ratio"] - 1) <= TOLERANCE]
    chosen = min(within, key=lambda c: (abs(c["res2"] / (32 * c["width"]) - USUAL_SHAPE),
                                        c["width"])) if within else \
        min(searches, key=lambda c: abs(c["ratio"] - 1))
    return chosen, searches


def part2_backbones(m: Measurer) -> dict:
    """Part 2's backbones: the embedded ResNet-18-GN and the ResNeXt-50-GNs of its bottom-up
    parameters and of its peak training memory (searches as the module doc says)."""
    anchor = m.measure(EMBEDDED_RESNET, "train")
    p, params_search = match_res2(lambda b: params_of(m.params(b)), params_of(anchor))
    q, memory_search = match_res2(lambda b: train_peak(m.measure(b, "train")),
                                  train_peak(anchor))
    backbones = {"R_18_GN": EMBEDDED_RESNET, "X_eq_params": embedded_x50(p["width"], p["res2"]),
                 "X_eq_memory": embedded_x50(q["width"], q["res2"])}
    measured = {row: m.measure(b, "train") for row, b in backbones.items()}
    return {"anchor": anchor, "params_search": params_search, "memory_search": memory_search,
            "backbones": backbones, "measured": measured,
            "measurements": list(m.measured.values())}


def pretrain_schedule(iters: int, seed: int) -> List[str]:
    """``train_net.py`` overrides of the model zoo's pretraining shrunk to ``iters``: its
    steps at the same fractions (3100 and 3600 of 4000), warm-up of at most 100 iterations,
    a checkpoint every 250 (resumable)."""
    steps = sorted({s for s in (iters * 3100 // 4000, iters * 3600 // 4000) if 0 < s < iters})
    return ["SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", str(tuple(steps)),
            "SOLVER.WARMUP_ITERS", str(min(100, max(1, iters // 5))),
            "SOLVER.CHECKPOINT_PERIOD", str(min(250, iters)), "SEED", str(seed)]


def iters_per_second(metrics_file: Path) -> Optional[float]:
    """Training iterations per second from detectron2's per-iteration ``time`` (logged
    after its warm-up iterations) in a run's metrics.json; None when none was logged. A run
    resumed from a checkpoint logs its iterations after that checkpoint again: the last
    timing of each iteration counts, the cut-off run's for the same iterations does not."""
    if not Path(metrics_file).is_file():
        return None
    times = {row["iteration"]: row["time"]
             for row in map(json.loads, Path(metrics_file).read_text().splitlines())
             if "time" in row}
    return round(len(times) / sum(times.values()), 4) if times else None


class Training:
    """Part 2's recorded training steps of one backbone and seed."""

    def __init__(self, steps: Steps, out: Path, args):
        self.steps, self.out, self.args = steps, Path(out), args

    def pretrain(self, row: str, b: Backbone, seed: int, keep_weights: bool = False) -> dict:
        """``b`` pretrained as the model zoo's backbone was, exported like it."""
        base = seed_dir(self.out, row, seed)
        weights = base / "pretrain" / "backbone.pth"
        command = [sys.executable, PRETRAIN_TOOL, "--out", str(weights), *b.opts,
                   *pretrain_schedule(self.args.pretrain_iters, seed),
                   "DATASETS.TRAIN", f'("{self.args.pretrain_train}",)',
                   "DATASETS.TEST", f'("{self.args.test}",)', "OUTPUT_DIR", str(base / "pretrain")]

        def run() -> dict:
            minutes = run_command(command, REPO)
            meta = json.loads(weights.with_suffix(".json").read_text())
            prune_checkpoints(base / "pretrain")
            return {"minutes": round(minutes, 2), "seed": seed, "backbone": b.name,
                    "metrics": meta["metrics"],
                    "iters_per_s": iters_per_second(base / "pretrain" / "metrics.json"),
                    "machine": machine_id()}

        return self.steps.step(base / "pretrain.json", command, run,
                               outputs=[weights] if keep_weights else ())

    def finetune(self, row: str, b: Backbone, seed: int) -> dict:
        """DensePose R-CNN with ``b`` fine-tuned from its own pretrained weights."""
        from densepose_ext.evaluation import read_headline_metrics

        base = seed_dir(self.out, row, seed)
        out_dir = base / "finetune"
        command = [sys.executable, "train_net.py", "--config-file", b.config_arg, *b.opts,
                   "MODEL.WEIGHTS", str(base / "pretrain" / "backbone.pth"),
                   *shrunk_schedule(self.args.iters, seed),
                   "DATASETS.TRAIN", f'("{self.args.train}",)',
                   "DATASETS.TEST", f'("{self.args.test}",)', "OUTPUT_DIR", str(out_dir)]

        def run() -> dict:
            claim_output_dir(out_dir, command)
            minutes = run_command(resumable_training(command), REPO)
            prune_checkpoints(out_dir)
            return {"minutes": round(minutes, 2), "seed": seed, "backbone": b.name,
                    "metrics": read_headline_metrics(out_dir),
                    "iters_per_s": iters_per_second(out_dir / "metrics.json"),
                    "machine": machine_id()}

        return self.steps.step(base / "row.json", command, run,
                               prepare=lambda: self.pretrain(row, b, seed, keep_weights=True))


def part2(steps: Steps, out: Path, args) -> dict:
    """Part 2: the matched backbones, then pretraining and fine-tuning seed by seed (a
    recipe stopped early has whole seeds of every row)."""
    m = Measurer(steps, out / "measure", args.part2_size, args.part2_images, PART2_MEASURE_OPTS)
    found = part2_backbones(m)
    training = Training(steps, out, args)
    runs: Dict[str, Dict[str, List[dict]]] = {row: {"pretrain": [], "finetune": []}
                                              for row, _ in PART2_ROWS}
    for seed in args.seeds:
        for row, _ in PART2_ROWS:
            b = found["backbones"][row]
            try:
                runs[row]["pretrain"].append(training.pretrain(row, b, seed))
                runs[row]["finetune"].append(training.finetune(row, b, seed))
            except NotRecorded:
                continue
    return {**found, "runs": runs}


def _available(fn, *args) -> Optional[dict]:
    """``fn(*args)``, or None when it needs a step that may not run (see ``--parts``)."""
    try:
        return fn(*args)
    except NotRecorded as e:
        print(f"= {e}: not recorded and its part not asked for: reported as not run",
              flush=True)
        return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, nargs="*", choices=(1, 2), default=[1, 2],
                        help="parts to run; the others are reported from their records "
                             "(none: only rewrite the report)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--iters", type=int, default=400, help="fine-tuning iterations")
    parser.add_argument("--pretrain-iters", type=int, default=1000,
                        help="pretraining iterations of every backbone")
    parser.add_argument("--train", default="densepose_embedded_train")
    parser.add_argument("--test", default="densepose_embedded_val")
    parser.add_argument("--pretrain-train", default="coco_person_embedded_pretrain")
    parser.add_argument("--size", type=int, default=512, help="part 1's input side (pixels)")
    parser.add_argument("--part2-size", type=int, default=PART2_SIZE,
                        help="input side of part 2's memory measurements")
    parser.add_argument("--part2-images", type=int, default=PART2_IMAGES,
                        help="images per batch of part 2's memory measurements")
    parser.add_argument("--out", default="output/resnext",
                        help="absolute, or relative to the repository root")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--plot", default=str(HERE / "backbones.png"))
    parser.add_argument("--records", default=str(HERE / "records"),
                        help="where a copy of every step's record is kept (committed with the "
                             "project, so finished steps survive the loss of --out)")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.pretrain_iters < 1:
        parser.error("--iters and --pretrain-iters must be >= 1")
    import os

    os.chdir(REPO)  # every command, and a relative --out, are taken from the repository root
    out = Path(args.out)
    book = RecordBook(out, Path(args.records))
    p1 = _available(part1, Measurer(Steps(book, 1 in args.parts), out / "part1" / "measure",
                                    args.size))
    p2 = _available(part2, Steps(book, 2 in args.parts), out / "part2", args)
    report = _sibling("report")
    report.plot(Path(args.plot), p1)
    print(report.write_results(Path(args.results), args, p1, p2, PART2_ROWS, COMPARISONS))


@lru_cache(maxsize=None)
def _sibling(name: str):
    """``<name>.py`` beside this script, as a module (projects are scripts, not packages)."""
    return load_script(HERE / f"{name}.py", f"resnext_{name}")


if __name__ == "__main__":
    main()
