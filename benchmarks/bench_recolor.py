"""Live slider cost: re-cut the stored part tree and recolour a ~100k-polygon mesh in place.

    .venv/bin/python benchmarks/bench_recolor.py [--weights FILE] [--polygons 100000] [--steps 40]

Builds a mesh in bpy (a UV sphere with bumps, ~100k quads/triangles), segments it once with the
add-on's `jobs.compute_object` (the bundled model unless --weights), then moves the parts slider
through `obj.partfield.parts = k` (the property's update callback: tree cut + palette lookup +
`foreach_set` on the face-corner colour attribute) and times every step. Prints a table and
exits non-zero if the median step is 100 ms or more.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "blender_scripts"))
import ext_helpers as H  # noqa: E402  (temp BLENDER_USER_RESOURCES before bpy)

import bpy  # noqa: E402
import numpy as np  # noqa: E402


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="weights file (default: the bundled model)")
    ap.add_argument("--polygons", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    H.install_addon()
    H.clear_scene()
    jobs = H.addon_module("jobs")
    preview = H.addon_module("preview")
    storage = H.addon_module("storage")
    obj = H.bumpy_sphere(args.polygons)
    P = len(obj.data.polygons)
    spec = jobs.ModelSpec(path=args.weights, device="cpu")
    t = time.perf_counter()
    stages = []
    jobs.compute_object(bpy.context, obj, spec, progress=lambda s, f: stages.append((s, time.perf_counter())))
    compute_s = time.perf_counter() - t
    stored = storage.load(obj)
    kmax = min(32, jobs.max_parts(stored))
    ks = [2 + (i * 7) % (kmax - 1) for i in range(args.steps)]  # jumps, not only +1 steps

    step_ms, cut_ms, color_ms = [], [], []
    for k in ks:
        t0 = time.perf_counter()
        obj.partfield.parts = k  # update callback: cut + recolour
        step_ms.append((time.perf_counter() - t0) * 1000)
        t1 = time.perf_counter()
        labels = stored.face_labels(k)
        t2 = time.perf_counter()
        preview.recolor(obj, labels)
        t3 = time.perf_counter()
        cut_ms.append((t2 - t1) * 1000)
        color_ms.append((t3 - t2) * 1000)
    got = preview.read_colors(obj)
    assert got is not None and len(got) == len(obj.data.loops)
    med = float(np.median(step_ms))
    print(f"mesh: {P} polygons, {len(obj.data.loops)} corners; compute once: {compute_s:.1f} s "
          f"(model {storage.meta(obj).get('model_name', '?')})")
    print("| per slider step | median | p95 | max |")
    print("|---|---|---|---|")
    for name, xs in (("whole step (update callback)", step_ms), ("tree cut + face map", cut_ms),
                     ("recolour (palette + foreach_set)", color_ms)):
        print(f"| {name} | {np.median(xs):.1f} ms | {np.percentile(xs, 95):.1f} ms | {np.max(xs):.1f} ms |")
    if med >= 100:
        print(f"FAIL: median step {med:.1f} ms >= 100 ms")
        sys.exit(1)


if __name__ == "__main__":
    main()
