#!/usr/bin/env python
"""Speed and accuracy of the body geodesics (json on stdout).

Accuracy: on a unit icosphere, relative error against the great-circle distance for our
method (heat method + Euclidean bound + metric closure), the raw heat method, and Dijkstra on
mesh edges. Speed: seconds for the full pairwise matrix of the embedded body (no cache).
"""
import argparse
import json
import time

import numpy as np
import trimesh

from densepose_ext.body.geodesics import TRIANGLE_TOLERANCE, edge_dijkstra, pairwise_geodesics


def _errors(dist: np.ndarray, true: np.ndarray, seed: int = 0) -> dict:
    far = true > 0.1  # relative error is ill-defined next to the source
    rel = (dist.astype(np.float64) - true)[far] / true[far]
    a, b, c = np.random.default_rng(seed).integers(0, len(dist), (3, 200000))
    viol = dist[a, c] - dist[a, b] - dist[b, c]
    return {"mean_abs_rel_error": float(np.abs(rel).mean()),
            "max_abs_rel_error": float(np.abs(rel).max()),
            "mean_signed_rel_error": float(rel.mean()),
            "max_triangle_violation": float(max(viol.max(), 0.0))}


def sphere_report(subdivisions: int) -> dict:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(mesh.vertices, dtype=np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    f = np.asarray(mesh.faces, dtype=np.int64)
    true = np.arccos(np.clip(v @ v.T, -1.0, 1.0))
    t0 = time.perf_counter()
    ours = pairwise_geodesics(v, f)
    seconds = time.perf_counter() - t0
    raw = pairwise_geodesics(v, f, enforce_metric=False)
    return {"vertices": len(v), "seconds_ours": round(seconds, 2),
            "ours": _errors(ours, true), "heat_bounded_without_closure": _errors(raw, true),
            "dijkstra": _errors(edge_dijkstra(v, f), true)}


def body_report() -> dict:
    from densepose_ext.body.assembly import get_template

    t = get_template()
    t0 = time.perf_counter()
    dist = pairwise_geodesics(t.vertices, t.faces)
    seconds = time.perf_counter() - t0
    return {"vertices": t.num_vertices, "seconds_pairwise": round(seconds, 2),
            "max_geodesic_m": float(dist.max()), "mean_geodesic_m": float(dist.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sphere-subdivisions", type=int, default=4,
                        help="icosphere level (4 = 2562 vertices)")
    parser.add_argument("--skip-body", action="store_true",
                        help="only the sphere accuracy, not the body timing")
    args = parser.parse_args()
    report = {"method": "heat method (potpourri3d) + Euclidean lower bound + metric closure",
              "triangle_tolerance_relative": TRIANGLE_TOLERANCE,
              "sphere": sphere_report(args.sphere_subdivisions)}
    if not args.skip_body:
        report["body"] = body_report()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
