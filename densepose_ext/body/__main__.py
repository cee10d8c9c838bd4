"""Command line of the embedded body model.

    python -m densepose_ext.body info
    python -m densepose_ext.body export --out DIR
"""
import argparse
import json
import logging
from typing import List, Optional

import numpy as np

from .body_model import get_body_model


def _info(args: argparse.Namespace) -> int:
    body = get_body_model()
    parts = np.bincount(body.charts.face_part, minlength=25)[1:]
    info = {
        "vertices": body.num_vertices,
        "faces": int(len(body.charts.chart_faces)),
        "chart_vertices": body.num_chart_vertices,
        "faces_per_part": {str(i + 1): int(c) for i, c in enumerate(parts)},
        "height_m": round(float(body.template.height), 3),
        "smpl_path": str(body.smpl_path) if body.smpl_path else None,
        "cache": str(body.cache_path),
    }
    print(json.dumps(info, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    body = get_body_model()
    paths = body.export(args.out)
    geo = body.geodesics
    print(f"Exported the embedded body to {args.out}:")
    for name, path in sorted(paths.items()):
        print(f"  {name:32s} {path.stat().st_size / 1e6:8.2f} MB")
    print(f"vertices {body.num_vertices}, chart vertices {body.num_chart_vertices}, "
          f"faces {len(body.charts.chart_faces)}, max geodesic {float(geo.max()):.3f} m")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m densepose_ext.body",
        description="Embedded DensePose body model: inspect it or export it as the official "
                    "DensePose data files.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log build progress")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print vertex, face, chart-vertex and per-part counts (json)")
    exp = sub.add_parser(
        "export", help="write body_model.pkl (SMPL format) and SMPL_subdiv.mat, "
                       "SMPL_SUBDIV_TRANSFORM.mat, Pdist_matrix.pkl, UV_symmetry_transforms.mat")
    exp.add_argument("--out", required=True, help="output directory (created if missing)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    return {"info": _info, "export": _export}[args.command](args)


if __name__ == "__main__":
    from densepose_ext.utils.cli import run_cli

    run_cli(main)
