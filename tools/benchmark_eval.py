#!/usr/bin/env python
"""Time the DensePose evaluation (GPS + GPSm AP under both normalisations + pointwise AUC).

    python tools/benchmark_eval.py [--results R] [--dataset D] [--protocol P] [--rounds N]
                                   [--baseline DIR] [--smpl-size] [--out FILE]

Prints json: evaluation time from result records (PNG decoding included) and from records that
carry their decoded maps (what a single-process ``DensePoseEvaluator`` hands over), each the
first time a process evaluates this ground truth (``*_first_s``: its GT side is read from the
cache file an earlier process wrote, as the ``DensePoseEvaluator`` does; ``eval_first_nocache_s``:
prepared from scratch) and again (``eval_s``, ``eval_decoded_s``: reused in the process), the
body / geodesic-data load time, the closest-vertex table build time, and the throughput in
(detection, GT point) pairs per second. Every measurement runs in a fresh worker process; with
``--baseline DIR`` (another checkout's ``densepose_ext``, e.g. made with
``git archive HEAD densepose_ext | tar -x -C DIR``) the same measurement of that code runs in
alternation with the current one on the same records, and the json adds the speed-up and
whether the two produced identical metrics. ``--smpl-size`` also times the official-file load
and the lookups on a synthetic body of the real SMPL subdivision size (27554 chart vertices).

Default records: the demo model's predictions on ``densepose_embedded_val``
(``output/demo/model/inference/...``; make them with ``python tools/demo.py``).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = (REPO / "output" / "demo" / "model" / "inference" / "densepose_embedded_val"
                   / "coco_densepose_results.json")
SMPL_CHART_VERTICES = 27554


def _worker(args) -> dict:
    """One measurement with whatever ``densepose_ext`` is importable (run in a subprocess)."""
    import contextlib
    import inspect
    import io

    import numpy as np
    from detectron2.data import MetadataCatalog
    from pycocotools.coco import COCO

    import densepose_ext
    try:
        import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
    except ImportError:  # older code registers them when densepose_ext.data is imported
        import densepose_ext.data  # noqa: F401
    from densepose_ext.evaluation import evaluate_densepose_results
    from densepose_ext.evaluation.evaluator import load_body_for_dataset

    def load_gt() -> COCO:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(MetadataCatalog.get(args.dataset).json_file)

    gt = load_gt()
    results = json.loads(Path(args.results).read_text())
    img_ids = sorted({r["image_id"] for r in results})
    out = {"code": str(Path(densepose_ext.__file__).parent)}
    start = time.perf_counter()
    body = load_body_for_dataset(args.dataset)
    _ = body.geodesics
    out["geodesic_load_s"] = time.perf_counter() - start
    kwargs = {}
    if "protocol" in inspect.signature(evaluate_densepose_results).parameters:
        kwargs["protocol"] = args.protocol
        start = time.perf_counter()
        body.quantized_vertex_table("first" if args.protocol == "detectron2" else "tree")
        out["vertex_table_s"] = time.perf_counter() - start
    elif args.protocol != "exact":
        raise SystemExit("this code has no protocol switch: only --protocol exact compares")

    def run(records, coco: COCO, repeat: int = args.repeat, **extra) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            metrics = evaluate_densepose_results(coco, records, body, img_ids=img_ids, **kwargs,
                                                 **extra)
            times.append(time.perf_counter() - start)
        out["metrics"] = metrics
        return min(times)

    # warm-up (lazy body tables, imports) on another GT object; then each "first" evaluation
    # uses a GT object of its own, as a new process would: "nocache" prepares the ground
    # truth (and, where the code keeps it, writes the cache file a DensePoseEvaluator uses),
    # the others read that file; the repeated ones reuse what this process prepared
    cache_root = tempfile.TemporaryDirectory()  # removed when the worker ends
    cached = {}
    if "gt_cache_file" in inspect.signature(evaluate_densepose_results).parameters:
        cached = {"gt_cache_file": str(Path(cache_root.name) / "gt.npz")}
    run(results[: max(len(results) // 10, 1)], load_gt(), 1)
    out["eval_first_nocache_s"] = run(results, load_gt(), 1, **cached)
    out["eval_first_s"] = run(results, gt, 1, **cached)
    out["eval_s"] = run(results, gt)
    try:
        from densepose_ext.evaluation.densepose_coco_eval import DECODED_KEY, decode_detection_maps
    except ImportError:
        DECODED_KEY = None
    if DECODED_KEY:
        decoded = [dict(r, **{DECODED_KEY: decode_detection_maps(r)}) for r in results]
        out["eval_decoded_first_s"] = run(decoded, load_gt(), 1, **cached)
        out["eval_decoded_s"] = run(decoded, gt)
    n_points = {a["id"]: len(a.get("dp_x") or []) for a in gt.dataset["annotations"]}
    per_image = {}
    for a in gt.dataset["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + n_points[a["id"]]
    dets = {}
    for r in results:
        dets[r["image_id"]] = min(dets.get(r["image_id"], 0) + 1, 20)
    out["pairs"] = int(sum(per_image.get(i, 0) * d for i, d in dets.items()))
    out["images"], out["detections"] = len(img_ids), len(results)
    out["gt_points"] = int(sum(per_image.get(i, 0) for i in img_ids))
    if args.smpl_size:
        out["smpl_size"] = _smpl_size(np)
    return out


def _smpl_size(np) -> dict:
    """Load time and lookup throughput on a synthetic body of the SMPL subdivision's size:
    27554 chart vertices over 24 parts, geodesics = Euclidean distances of random points."""
    from densepose_ext.body import BodyModel
    from densepose_ext.body.official_formats import (
        PDIST_MATRIX, write_smpl_subdiv, write_subdiv_transform)

    rng = np.random.default_rng(0)
    m = SMPL_CHART_VERTICES
    out = {"chart_vertices": m}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        part = np.sort(rng.integers(1, 25, m))
        write_smpl_subdiv(d / "SMPL_subdiv.mat", part, rng.random((m, 2)))
        write_subdiv_transform(d / "SMPL_SUBDIV_TRANSFORM.mat", np.arange(m))
        pos = (rng.random((m, 3)) * [0.5, 1.8, 0.3]).astype(np.float32)
        rows = [np.sqrt(((pos[i] - pos[:i]) ** 2).sum(1)) for i in range(m)]
        cond = np.concatenate(rows).astype(np.float32).reshape(-1, 1)  # official order
        del rows
        import pickle

        with open(d / PDIST_MATRIX, "wb") as f:
            pickle.dump({"Pdist_matrix": cond}, f, protocol=4)
        del cond
        start = time.perf_counter()
        body = BodyModel.from_official_files(d)
        out["official_files_load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        BodyModel.from_official_files(d)
        out["official_files_reload_s"] = time.perf_counter() - start
        has_table = hasattr(body, "quantized_vertex_table")
        if has_table:
            for ties in ("tree", "first"):
                start = time.perf_counter()
                body.charts.quantized_vertex_table(ties)
                out[f"vertex_table_{ties}_s"] = time.perf_counter() - start
        n = 200_000
        I = rng.integers(1, 25, n)
        q = rng.integers(0, 256, (2, n))
        gt_v = rng.integers(0, m, n)
        start = time.perf_counter()
        v = body.iuv_to_vertex(I, q[0].astype(np.float32) / 255.0, q[1].astype(np.float32) / 255.0)
        body.geodesic_distance(gt_v, v)
        out["kdtree_lookup_pairs_per_s"] = n / (time.perf_counter() - start)
        if has_table:
            from densepose_ext.evaluation.gps import quantized_point_errors

            start = time.perf_counter()
            quantized_point_errors(body, gt_v, I, q[0], q[1], "exact")
            out["table_lookup_pairs_per_s"] = n / (time.perf_counter() - start)
    return out


def _spawn(code_root: Path, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--results", args.results,
           "--dataset", args.dataset, "--protocol", args.protocol, "--repeat", str(args.repeat)]
    if args.smpl_size:
        cmd.append("--smpl-size")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(code_root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"benchmark worker failed ({code_root}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _best(runs: list) -> dict:
    """The run with the smallest evaluation time, with every run's times listed."""
    best = dict(min(runs, key=lambda r: r["eval_s"]))
    best["eval_s_all_rounds"] = [round(r["eval_s"], 4) for r in runs]
    return best


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    parser.add_argument("--dataset", default="densepose_embedded_val")
    parser.add_argument("--protocol", default="exact", choices=("exact", "detectron2"),
                        help="exact: the embedded data's protocol (and the only one older code "
                             "has)")
    parser.add_argument("--repeat", type=int, default=3, help="evaluations per worker")
    parser.add_argument("--rounds", type=int, default=2, help="workers per code version")
    parser.add_argument("--baseline", help="root of another checkout's densepose_ext")
    parser.add_argument("--smpl-size", action="store_true")
    parser.add_argument("--out", help="also write the json here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args)))
        return {}
    if not Path(args.results).is_file():
        raise SystemExit(f"{args.results}: not found (run tools/demo.py, or pass --results)")
    current, baseline = [], []
    for _ in range(args.rounds):  # alternate so both see the same machine load
        if args.baseline:
            baseline.append(_spawn(Path(args.baseline), args))
        current.append(_spawn(REPO, args))
    report = {"results": args.results, "dataset": args.dataset, "protocol": args.protocol,
              "current": _best(current)}
    metrics = report["current"].pop("metrics")
    report["summary"] = metrics["densepose_summary"]
    cur = report["current"]
    cur["pairs_per_s"] = cur["pairs"] / cur["eval_s"]
    if args.baseline:
        report["baseline"] = _best(baseline)
        base = report["baseline"]
        report["metrics_identical"] = (json.dumps(base.pop("metrics"), sort_keys=True)
                                       == json.dumps(metrics, sort_keys=True))
        base["pairs_per_s"] = base["pairs"] / base["eval_s"]
        # baseline code that prepares nothing in advance takes as long the first time
        base_first = base.get("eval_first_s", base["eval_s"])
        report["speedup_eval"] = base["eval_s"] / cur["eval_s"]
        report["speedup_eval_first"] = base_first / cur["eval_first_s"]
        report["speedup_eval_first_nocache"] = base_first / cur["eval_first_nocache_s"]
        if "eval_decoded_s" in cur:
            report["speedup_eval_decoded"] = base["eval_s"] / cur["eval_decoded_s"]
            report["speedup_eval_decoded_first"] = base_first / cur["eval_decoded_first_s"]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    try:
        from densepose_ext.utils.cli import run_cli
    except ImportError:  # a --baseline worker imports an older densepose_ext
        main()
    else:
        run_cli(main)
