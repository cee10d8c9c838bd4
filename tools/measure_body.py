#!/usr/bin/env python
"""Measure the embedded body model and print json: size, mesh checks, chart round-trip error,
evaluation-style (nearest chart vertex) error and flip-table accuracy.

    python tools/measure_body.py [--points 50000] [--seed 0]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densepose_ext.body import FLIP_PERMUTATION, get_body_model  # noqa: E402
from densepose_ext.body.geodesics import nearest_vertex  # noqa: E402


def _stats(x: np.ndarray) -> dict:
    """mean / median / p99 / max of an error array, in millimetres."""
    x = np.asarray(x, dtype=np.float64) * 1000.0
    return {"mean_mm": round(float(x.mean()), 3), "median_mm": round(float(np.median(x)), 3),
            "p99_mm": round(float(np.percentile(x, 99)), 3), "max_mm": round(float(x.max()), 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50000, help="random surface points")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    body = get_body_model()
    tpl = body.template
    mesh = trimesh.Trimesh(tpl.vertices, tpl.faces, process=False)
    rng = np.random.default_rng(args.seed)
    areas = mesh.area_faces
    face = rng.choice(len(tpl.faces), size=args.points, p=areas / areas.sum())
    bary = rng.dirichlet(np.ones(3), size=args.points)
    points = body.surface_points(face, bary)

    I, U, V = body.surface_to_iuv(face, bary)
    face2, bary2 = body.iuv_to_surface(I, U, V)
    back = body.surface_points(face2, bary2)
    dist = body.geodesics
    geo = dist[nearest_vertex(tpl.faces, face, bary), nearest_vertex(tpl.faces, face2, bary2)]
    folded = np.isin(I, [3, 4, 5, 6])  # hands and feet: closed caps, the 2D MDS chart folds

    vert = body.iuv_to_vertex(I, U, V)  # what DensePose evaluation snaps a prediction to
    eval_err = dist[nearest_vertex(tpl.faces, face, bary), vert]

    I2, U2, V2 = body.flip_iuv(*body.flip_iuv(I, U, V))
    fi, fu, fv = body.flip_iuv(I, U, V)
    ff, fb = body.iuv_to_surface(fi, fu, fv)
    mirrored = points * np.array([-1.0, 1.0, 1.0])
    report = {
        "vertices": int(len(tpl.vertices)), "faces": int(len(tpl.faces)),
        "chart_vertices": int(body.num_chart_vertices), "height_m": round(float(tpl.height), 4),
        "watertight": bool(mesh.is_watertight), "winding_consistent": bool(mesh.is_winding_consistent),
        "euler_characteristic": int(mesh.euler_number), "volume_l": round(float(mesh.volume) * 1e3, 2),
        "connected_components": int(len(mesh.split(only_watertight=False))),
        "round_trip_3d": {"all": _stats(np.linalg.norm(points - back, axis=1)),
                          "hands_feet": _stats(np.linalg.norm(points - back, axis=1)[folded]),
                          "other_parts": _stats(np.linalg.norm(points - back, axis=1)[~folded])},
        "round_trip_geodesic": _stats(geo),
        "iuv_to_vertex_geodesic": _stats(eval_err),
        "flip": {
            "part_is_mirror_part": float(np.mean(fi == FLIP_PERMUTATION[I])),
            "flip_twice_same_part": float(np.mean(I2 == I)),
            "flip_twice_uv_max_abs": float(max(np.abs(U2 - U).max(), np.abs(V2 - V).max())),
            "flipped_point_vs_mirror_3d": _stats(
                np.linalg.norm(body.surface_points(ff, fb)[~folded] - mirrored[~folded], axis=1)),
        },
        "points": args.points, "seed": args.seed,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
