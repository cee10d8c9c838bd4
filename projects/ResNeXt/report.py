"""RESULTS.md and backbones.png of ``projects/ResNeXt/run.py``, from its recorded steps."""
from pathlib import Path
from typing import List, Optional, Sequence

from densepose_ext.engine.recipe import display_command, write_report, written_by
from densepose_ext.engine.seed_stats import VERDICT_RULE, comparison_cells, format_mean_std

HERE = Path(__file__).resolve().parent
MIB = 2 ** 20
TOLERANCE = 0.05


def _m(n: float) -> str:
    return f"{n / 1e6:.2f}"


def _mib(n: Optional[float]) -> str:
    return "–" if n is None else f"{n / MIB:.0f}"


def _g(n: Optional[float]) -> str:
    return "–" if n is None else f"{n / 1e9:.1f}"


def _shape(r: dict) -> str:
    return f"{r['num_groups']}x{r['width_per_group']}d"


def _params(r: dict) -> int:
    return r["params"]["bottom_up_with_norm"]


def _peak(r: dict) -> int:
    return r["train"]["peak_bytes"]


def _saved(r: dict) -> int:
    return r["train"]["saved_bytes"]


def _ok(x: float) -> str:
    return "yes" if abs(x - 1) <= TOLERANCE else "**no**"


def _measured_models(p1: dict) -> List[dict]:
    """Every model part 1 measured a training step of, the main rows first, each once."""
    models = {name: r for name, r in p1["rows"].items()}
    for f in p1["family"]:
        models.setdefault(f["record"]["name"], f["record"])
    for r in p1["memory_search"]["records"].values():
        models.setdefault(r["name"], r)
    return list(models.values())


def part1_lines(p1: Optional[dict], args) -> List[str]:
    lines = ["## Part 1: parameters, FLOPs and measured memory", ""]
    if p1 is None:
        return lines + ["Not run (run `python projects/ResNeXt/run.py --parts 1`)."]
    rows = p1["rows"]
    anchor = rows["R_50"]
    first = next(iter(rows.values()))
    lines += [
        f"DensePose R-CNN as detectron2 builds it from our configs (`MODEL.DEVICE cpu`, random "
        f"initialisation, seed 0, the frozen batch norms given their input's statistics so "
        f"that the random network's activations stay in range as a pretrained one's do; "
        f"`MODEL.BACKBONE.FREEZE_AT {first['freeze_at']}` as the configs train), on one fixed "
        f"synthetic {args.size}x{args.size} image holding "
        f"{first['persons_per_image']} people with boxes and DensePose annotations "
        f"(100 points, coarse parts). **Training step**: forward and backward of the summed "
        f"losses, gradients empty before, the ROI heads sampling one foreground ROI per person "
        f"(`ROI_HEADS.BATCH_SIZE_PER_IMAGE {first['roi_batch_per_image']}`, so that the heads "
        f"cost the same for every backbone); its peak counts the parameters and buffers, the "
        f"input, the gradients and the activations (an optimizer's state would add to it). "
        f"**Saved for backward**: what autograd keeps for the backward pass, parameters left "
        f"out (the activation memory). **Backbone step**: the backbone alone with every layer "
        f"learning (no stage frozen), its features summed into one loss. **Inference**: the "
        f"same image, at most one detection per person (`TEST.DETECTIONS_PER_IMAGE "
        f"{first['persons_per_image']}`, score threshold 0; the DensePose head's FLOPs and "
        "memory grow with the detections, counted in the table). "
        "Memory is measured by `densepose_ext.utils.memory` (PyTorch's CPU allocator events "
        "under the profiler, and saved-tensor hooks); FLOPs of inference by fvcore's counter "
        "(one multiply-add = one flop, as the ResNeXt paper counts). Bottom-up parameters "
        "count the ResNet / ResNeXt body as ImageNet classifiers do without their classifier "
        "(frozen batch-norm affine terms included); the model adds FPN, RPN and the heads.",
        "",
        "| model | groups x width | res2 out | stride in 1x1 | bottom-up params (M) | model "
        "params (M) | bottom-up GFLOPs | model GFLOPs | train peak (MiB) | saved for backward "
        "(MiB) | backbone step peak (MiB) | backbone step saved (MiB) | inference peak (MiB) | "
        "detections | foreground ROIs |",
        "|" + "---|" * 15,
    ]
    for r in _measured_models(p1):
        flops = r.get("flops", {})
        lines.append(
            f"| {r['label']} | {_shape(r)} | {r['res2_out_channels']} | "
            f"{r['stride_in_1x1']} | {_m(_params(r))} | {_m(r['params']['model'])} | "
            f"{_g(flops.get('bottom_up'))} | {_g(flops.get('model'))} | {_mib(_peak(r))} | "
            f"{_mib(r['train']['saved_bytes'])} | {_mib(r['backbone_train']['peak_bytes'])} | "
            f"{_mib(r['backbone_train']['saved_bytes'])} | "
            f"{_mib(r.get('inference', {}).get('peak_bytes'))} | "
            f"{r.get('inference', {}).get('detections', '–')} | {r['train']['foreground_rois']} |")

    lines += ["", "### Matched pairs", "",
              f"Ratios are ResNeXt / ResNet; a pair is matched within {TOLERANCE:.0%} in what "
              "it is matched on.", "",
              "| matched on | ResNet | ResNeXt (found by search) | bottom-up params ratio | "
              "train peak ratio | saved-for-backward ratio | matched |",
              "|---|---|---|---|---|---|---|"]
    for pair in p1["pairs"]:
        a, b = pair["resnet"], pair["resnext"]
        rp, rm = _params(b) / _params(a), _peak(b) / _peak(a)
        rs = b["train"]["saved_bytes"] / a["train"]["saved_bytes"]
        key = rp if pair["matched_on"] == "parameters" else rm
        lines.append(f"| {pair['matched_on']} | {a['label']} | {b['label']} | {rp:.3f} | "
                     f"{rm:.3f} | {rs:.3f} | {_ok(key)} |")
    (eq_p, eq_m), saved = [p["resnext"] for p in p1["pairs"]], _saved(anchor)
    lines += ["", f"At equal parameters the {eq_p['label']} needs "
              f"**{_peak(eq_p) / _peak(anchor):.2f}x** the peak training memory of "
              f"{anchor['label']} (**{_saved(eq_p) / saved:.2f}x** its activations saved for "
              f"backward); at equal peak training memory the {eq_m['label']} has "
              f"**{_params(eq_m) / _params(anchor):.2f}x** its bottom-up parameters."]

    lines += ["", "### Search: equal parameters", "",
              f"ResNeXt-50 with the cardinalities of the ResNeXt paper's Table 2; for each, "
              f"the group width whose bottom-up parameters come closest to {anchor['label']}'s "
              f"({_m(_params(anchor))} M), then its training step measured.", "",
              "| cardinality | width found | bottom-up params (M) | params ratio | train peak "
              "(MiB) | train peak ratio | saved for backward ratio | widths tried (params M) |",
              "|---|---|---|---|---|---|---|---|"]
    for f in p1["family"]:
        r = f["record"]
        tried = ", ".join(f"{w}: {_m(v)}" for w, v in f["trials"])
        lines.append(f"| {f['groups']} | {f['width']} | {_m(_params(r))} | "
                     f"{_params(r) / _params(anchor):.3f} | {_mib(_peak(r))} | "
                     f"{_peak(r) / _peak(anchor):.3f} | "
                     f"{r['train']['saved_bytes'] / anchor['train']['saved_bytes']:.3f} | "
                     f"{tried} |")
    ms = p1["memory_search"]
    lines += ["", "### Search: equal peak training memory", "",
              f"ResNeXt-50 Cx4d, the cardinality C searched for the peak training memory of "
              f"{anchor['label']} ({_mib(_peak(anchor))} MiB); every trial in order, the "
              f"chosen one in bold.", "",
              "| C | train peak (MiB) | train peak ratio | bottom-up params (M) | params ratio |",
              "|---|---|---|---|---|"]
    for c, _ in ms["trials"]:
        r = ms["records"][c]
        mark = "**" if c == ms["groups"] else ""
        lines.append(f"| {mark}{c}{mark} | {_mib(_peak(r))} | {_peak(r) / _peak(anchor):.3f} | "
                     f"{_m(_params(r))} | {_params(r) / _params(anchor):.3f} |")
    lines += ["", "![parameters, FLOPs and peak training memory](backbones.png)"]
    return lines


def part2_lines(p2: Optional[dict], args, rows: Sequence) -> List[str]:
    lines = ["## Part 2: training on the embedded benchmark", ""]
    if p2 is None:
        return lines + ["Not run (run `python projects/ResNeXt/run.py --parts 2`; hours of "
                        "CPU, see the script)."]
    anchor, measured = p2["anchor"], p2["measured"]
    lines += [
        "Backbones (GroupNorm, so channel counts are multiples of 32): the embedded DensePose "
        "R-CNN's ResNet-18-GN, and ResNeXt-50-GN 32xD with RES2_OUT_CHANNELS R of its bottom-up "
        "parameters and of its peak training memory: for each D the R closest is searched; "
        f"among those within {TOLERANCE:.0%} the one nearest twice the bottleneck width (the "
        "usual ResNeXt shape) is chosen. Stride in the 3x3 conv, as the FAIR ResNeXts. Memory: "
        "the peak of one training step on a pretraining-like batch "
        f"({anchor['images']} synthetic images of {anchor['input_size'][0]} px, "
        f"{anchor['persons_per_image']} people each, every layer learning), measured as in "
        "part 1; ratios are to ResNet-18-GN.", "",
        "| row | backbone | bottom-up params (M) | params ratio | train peak (MiB) | "
        "train peak ratio | saved for backward (MiB) | matched |", "|" + "---|" * 8]
    for row, what in rows:
        r = measured[row]
        rp, rm = _params(r) / _params(anchor), _peak(r) / _peak(anchor)
        matched = {"X_eq_params": _ok(rp), "X_eq_memory": _ok(rm)}.get(row, "–")
        lines.append(f"| {row} | {r['label']} ({what}) | {_m(_params(r))} | {rp:.3f} | "
                     f"{_mib(_peak(r))} | {rm:.3f} | {_mib(_saved(r))} | {matched} |")
    lines += ["", "Searches (R: bottom-up params in M, or train peak in MiB):", ""]
    for what, searches, fmt in (("parameters", p2["params_search"], _m),
                                ("memory", p2["memory_search"], lambda v: f"{v / MIB:.0f}")):
        for s in searches:
            tried = ", ".join(f"{r}: {fmt(v)}" for r, v in s["trials"])
            lines.append(f"- equal {what}, 32x{s['width']}d: R = {s['res2']} "
                         f"(ratio {s['ratio']:.3f}); tried {tried}")

    runs, base = p2["runs"], rows[0][0]
    lines += [
        "", "### Training", "",
        f"Each backbone is pretrained as the model zoo's (`{args.pretrain_train}`, Mask + "
        f"Keypoint R-CNN, {args.pretrain_iters} iterations of 4 images, the model zoo "
        f"schedule's steps at the same fractions), then its DensePose R-CNN fine-tunes from "
        f"those weights on `{args.train}` for {args.iters} iterations of 2 images with the "
        "bottom-up backbone frozen (the recipes' shrunk schedule), once per seed (both "
        f"steps), and is evaluated on `{args.test}`. Cells: mean ± std over the seeds. GPS "
        "AP in percent (coarse-part normalisation); AUC10 a fraction; it/s from detectron2's "
        "per-iteration times; pretraining AP is the pretrained Mask + Keypoint R-CNN's bbox AP. "
        "Machines of one kind differ in speed, and seeds may run on different ones: the "
        f"speed relative to {base} divides each seed's fine-tuning it/s by "
        f"{base}'s of the same seed, and counts a seed only when both ran on the same machine "
        "(the records' `machine`: CPU model and boot; records from before that field count "
        "as one machine, as each such seed's rows ran in one sitting); a cell that leaves "
        "seeds out says how many it holds.",
        "",
        "| row | backbone | seeds | pretrain bbox AP | pretrain it/s | GPS AP | AUC10 | "
        f"train it/s | train it/s / {base}'s | train peak (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    reference = {f["seed"]: f for f in runs[base]["finetune"]}
    for row, _ in rows:
        fin, pre = runs[row]["finetune"], runs[row]["pretrain"]
        label = p2["measured"][row]["label"]
        if not fin:
            lines.append(f"| {row} | {label} | – | not run | | | | | | |")
            continue
        relative = [relative_speed(f, reference.get(f["seed"])) for f in fin]
        relative = [r for r in relative if r is not None]
        speed_ratio = _cell(relative, 3) + ("" if len(relative) == len(fin) or not relative
                                            else f" ({len(relative)} of {len(fin)} seeds)")
        lines.append(
            f"| {row} | {label} | {len(fin)} | "
            f"{_cell([p['metrics'].get('bbox_AP') for p in pre], 1)} | "
            f"{_cell([p.get('iters_per_s') for p in pre], 3)} | "
            f"{_cell([f['metrics'].get('gps_ap') for f in fin], 2)} | "
            f"{_cell([f['metrics'].get('auc10') for f in fin], 3)} | "
            f"{_cell([f.get('iters_per_s') for f in fin], 3)} | {speed_ratio} | "
            f"{_mib(_peak(p2['measured'][row]))} |")
    return lines


def relative_speed(run: dict, reference: Optional[dict]) -> Optional[float]:
    """``run``'s training it/s divided by ``reference``'s, None unless both were timed on
    the same machine (equal ``machine`` fields; records without one compare as equal)."""
    if not reference or not run.get("iters_per_s") or not reference.get("iters_per_s"):
        return None
    if run.get("machine") != reference.get("machine"):
        return None
    return run["iters_per_s"] / reference["iters_per_s"]


def _cell(values: Sequence[Optional[float]], digits: int) -> str:
    values = [v for v in values if v is not None]
    return format_mean_std(values, digits) if values else "–"


def comparison_lines(p2: Optional[dict], comparisons: Sequence) -> List[str]:
    lines = ["", "### Verdicts", "",
             "Each claim is \"the ResNeXt row beats the ResNet row\": at equal parameters the "
             "ResNeXt paper's claim; at equal memory the question of this recipe (the "
             "expectation that a ResNeXt held to a ResNet's memory loses its advantage reads "
             "*not resolved* or *opposite*). The paper column gives the ResNeXt paper's own "
             "comparison (ImageNet-1K classification, Table 3): no paper reports these "
             "backbones on DensePose, so it gives the direction, not a number to match. "
             + VERDICT_RULE, "",
             "| claim | metric | paper | measured (mean ± std) | difference ± SE | verdict |",
             "|---|---|---|---|---|---|"]
    for what, key, before, after, paper in comparisons:
        vals = [[r["metrics"][key] for r in (p2["runs"][row]["finetune"] if p2 else [])
                 if key in r["metrics"]] for row in (before, after)]
        measured, diff, verdict = comparison_cells(vals[0], vals[1], 3 if key == "auc10" else 2)
        lines.append(f"| {what} | {key} | {paper} | {measured} | {diff} | {verdict} |")
    return lines


def _commands(p1: Optional[dict], p2: Optional[dict]) -> List[str]:
    """Every measurement and training command, once each, in the order they ran."""
    records = []
    if p1 is not None:
        records += p1["measurements"]
    if p2 is not None:
        records += p2["measurements"]
        for runs in p2["runs"].values():
            records += runs["pretrain"] + runs["finetune"]
    seen, out = set(), []
    for r in records:
        line = display_command(r["command"])
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def write_results(path: Path, args, p1: Optional[dict], p2: Optional[dict],
                  part2_rows: Sequence, comparisons: Sequence) -> str:
    """RESULTS.md from the parts' recorded steps (None: a part without records)."""
    seeds = " ".join(str(s) for s in args.seeds)
    lines = [
        "# ResNeXt at equal parameters and at equal memory",
        "",
        written_by(f"python projects/ResNeXt/run.py --size {args.size} --seeds {seeds} "
                   f"--iters {args.iters} --pretrain-iters {args.pretrain_iters}")
        + ". MiB = 2^20 bytes; M = 10^6 parameters; GFLOPs = 10^9 multiply-adds.",
        "",
        *part1_lines(p1, args),
        "",
        *part2_lines(p2, args, part2_rows),
        *comparison_lines(p2, comparisons),
    ]
    note = ("Each step's exact command, run from the repository root (the parameter counts "
            "of the searches, `measure.py --what params`, are recorded beside them under "
            "`records/`):")
    return write_report(path, lines, _commands(p1, p2), note, HERE / "discussion.md")


def plot(path: Path, p1: Optional[dict]) -> None:
    """Part 1 in three panels: bottom-up parameters and FLOPs against the peak memory of a
    training step (matched pairs joined; search trials unlabelled), and the equal-parameter
    ResNeXt-50s' memory relative to ResNet-50 by cardinality. Nothing without part 1."""
    if p1 is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from densepose_ext.utils import atomic_write

    named = set(p1["rows"]) | {pair["resnext"]["name"] for pair in p1["pairs"]}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for ax, key in ((axes[0], "params"), (axes[1], "flops")):
        for r in _measured_models(p1):
            if key == "flops" and "flops" not in r:
                continue
            x = _params(r) / 1e6 if key == "params" else r["flops"]["bottom_up"] / 1e9
            y, resnext = _peak(r) / MIB, r["num_groups"] > 1
            ax.scatter(x, y, marker="^" if resnext else "o", s=40 if r["name"] in named else 12,
                       color="tab:orange" if resnext else "tab:blue")
            if r["name"] in named:  # ResNets labelled above left, ResNeXts below right
                ax.annotate(r["label"], (x, y), fontsize=7, xytext=(5, -10) if resnext
                            else (-5, 6), ha="left" if resnext else "right",
                            textcoords="offset points")
        ax.set_ylabel("peak memory of a training step (MiB)")
        ax.grid(alpha=0.3)
    for pair, style in zip(p1["pairs"], ("--", ":")):
        a, b = pair["resnet"], pair["resnext"]
        axes[0].plot([_params(a) / 1e6, _params(b) / 1e6], [_peak(a) / MIB, _peak(b) / MIB],
                     style, color="gray", label=f"equal {pair['matched_on']}")
    axes[0].legend(fontsize=8)
    axes[0].set_xlabel("bottom-up parameters (M)")
    axes[0].set_title("ResNet (circles) and ResNeXt (triangles); small: search trials")
    axes[1].set_xlabel("bottom-up GFLOPs (inference, multiply-adds)")
    axes[1].set_title("the five configs")

    anchor = p1["rows"]["R_50"]
    family = [(1, anchor)] + [(f["groups"], f["record"]) for f in p1["family"]]
    groups = [g for g, _ in family]
    for label, value in (("bottom-up parameters", _params),
                         ("train peak", _peak),
                         ("saved for backward (model)", lambda r: r["train"]["saved_bytes"]),
                         ("saved for backward (backbone, all layers learning)",
                          lambda r: r["backbone_train"]["saved_bytes"])):
        axes[2].plot(groups, [value(r) / value(anchor) for _, r in family], "o-", label=label)
    axes[2].set_xscale("log", base=2)
    axes[2].set_xticks(groups, [f"{g}x{r['width_per_group']}d" for g, r in family])
    axes[2].set_xlabel("ResNeXt-50 cardinality x width (1x64d: ResNet-50)")
    axes[2].set_ylabel("relative to ResNet-50")
    axes[2].set_title("equal parameters: memory by cardinality")
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(Path(path), "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
