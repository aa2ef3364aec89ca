"""Throughput of the headless batch (partfield_blender/batch.py through the bpy module).

    .venv/bin/python benchmarks/bench_batch.py [--count 12] [--threads 1] [--device cpu] [--points N]

Writes `--count` procedural meshes (OBJ, model_runtime.training.procedural) to a temp folder,
then times three runs of the batch script in fresh processes: labels only, labels + .blend +
.glb, and a re-run where everything is finished (all skipped). Prints a markdown table.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model_runtime.training.procedural import make_shape  # noqa: E402
from model_runtime.training.shapes import CATEGORIES  # noqa: E402


def write_obj(path: Path, vertices, faces) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def subdivide(vertices, faces):
    """Midpoint subdivision (each triangle -> 4), edges shared: 4x the faces, same shape."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    uniq, inv = np.unique(edges, axis=0, return_inverse=True)
    mid = len(v) + inv.reshape(3, -1).T  # (F,3): midpoint of edge 01, 12, 20
    v = np.concatenate([v, v[uniq].mean(axis=1)])
    a, b, c = f.T
    ab, bc, ca = mid.T
    f = np.stack([np.stack(t, 1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]).reshape(-1, 3)
    return v, f


def make_library(folder: Path, count: int, levels: int = 0) -> int:
    faces = 0
    for i in range(count):
        cat = sorted(CATEGORIES)[i % len(CATEGORIES)]
        shape = make_shape(100 + i, category=cat, welded=False)
        v, f = shape.vertices, shape.faces
        for _ in range(levels):
            v, f = subdivide(v, f)
        write_obj(folder / f"{i:03d}_{cat}.obj", v, f)
        faces += len(f)
    return faces


def run(lib: Path, out: Path, exports: str, args) -> dict:
    env = dict(os.environ)
    env.pop("BLENDER_USER_RESOURCES", None)
    cmd = [sys.executable, str(REPO / "partfield_blender" / "batch.py"), "--", str(lib), "--output", str(out),
           "--parts", args.parts, "--export", exports, "--device", args.device, "--threads", str(args.threads)]
    if args.points:
        cmd += ["--points", str(args.points)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    summary = json.loads((out / "summary.json").read_text())
    recs = summary["inputs"]
    sec = {k: [r["seconds"].get(k, 0.0) for r in recs] for k in ("load", "compute", "write", "total")}
    if args.verbose:
        print(exports, [round(x, 2) for x in sec["total"]], file=sys.stderr)
    return {"wall": wall, "n": len(recs), "counts": summary["counts"], "model": summary.get("model", {}),
            **{k: float(np.median(v)) if v else 0.0 for k, v in sec.items()}, "sum_total": float(sum(sec["total"])),
            "first": sec["total"][0] if recs else 0.0,
            "steady": (len(recs) - 1) * 60 / sum(sec["total"][1:]) if sum(sec["total"][1:]) > 0.05 else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--points", type=int, default=None, help="default: the model's own")
    ap.add_argument("--parts", default="4,8")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--subdivide", type=int, default=0, help="midpoint subdivision levels (4x faces each)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pf_bench_batch_") as tmp:
        tmp = Path(tmp)
        lib = tmp / "lib"
        lib.mkdir()
        faces = make_library(lib, args.count, args.subdivide)
        rows = [("labels", run(lib, tmp / "a", "labels", args)),
                ("blend,glb,labels", run(lib, tmp / "b", "blend,glb,labels", args)),
                ("re-run, all finished", run(lib, tmp / "b", "blend,glb,labels", args))]
    print(f"{args.count} procedural OBJ meshes, {faces / args.count:.0f} faces on average; parts {args.parts}; "
          f"device {args.device}, {args.threads} thread(s), points {args.points or 'model default'}")
    m = rows[0][1]["model"]
    if m:
        print(f"model {m.get('name')} loaded once per process in {m.get('load_seconds', 0):.2f} s")
    print()
    print("| run | process wall | inputs/min (wall) | first input | inputs/min after the first "
          "| median per input: load / compute / write | ok / skipped |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        steady = "-" if r["steady"] is None else f"{r['steady']:.0f}"
        print(f"| {name} | {r['wall']:.1f} s | {60 * r['n'] / r['wall']:.0f} | {r['first']:.2f} s | {steady} | "
              f"{r['load']:.2f} / {r['compute']:.2f} / {r['write']:.2f} s | "
              f"{r['counts']['ok']} / {r['counts']['skipped']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
