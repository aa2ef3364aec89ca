"""Cost of keeping a result in the .blend: `storage.store` over an existing result (fresh
properties + read-back check), the panel's first check and a full bounded load.

    .venv/bin/python benchmarks/bench_store.py [--features 64] [--grid 317]

Builds a grid of ~100k quads in bpy and a synthetic result over it (random features, a
caterpillar tree), stores it three times, then times `storage.problem` (headers + tree check,
what the panel runs once per result) and `storage.load_checked` (what the slider runs once).

    .venv/bin/python benchmarks/bench_store.py --load-only 10000,125000,500000 [--repeat 5]

(no bpy) times `SegmentationResult.from_bytes` alone, the bulk of the first slider move after
opening a file, on a random merge tree with 64 fp16 features: a result saved without the tree
layout (as before issue 16: the merge loops run, features decoded) against one with it
(`tree_sizes/starts/labels` checked in O(P), features decoded on first use), alternated,
medians in milliseconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def random_tree(p: int, seed: int = 0) -> np.ndarray:
    """(P-1, 2) merges of a random binary tree: each merge joins two random live clusters."""
    import random

    rng = random.Random(seed)
    live = rng.sample(range(p), p)
    out = np.empty((p - 1, 2), np.int64)
    for t in range(p - 1):
        a, b = live.pop(), live.pop()
        out[t] = (min(a, b), max(a, b))
        live.append(p + t)
        k = rng.randrange(len(live))
        live[k], live[-1] = live[-1], live[k]
    return out


def load_only(sizes, features, repeat):
    import io
    import os

    from model_runtime.normalization import Normalization
    from model_runtime.part_tree import PartTree
    from model_runtime.result import SegmentationResult

    load = os.getloadavg()
    print(f"load: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min), OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '-')}")
    print("| faces | bytes without / with layout | from_bytes, no layout (loops, features decoded) | "
          "with layout (features lazy) | with layout + features decoded | check_bytes (with) |")
    print("|---:|---|---:|---:|---:|---:|")
    for p in sizes:
        feats = np.random.default_rng(0).normal(size=(p, features)).astype(np.float16)
        res = SegmentationResult(feats, PartTree(random_tree(p), p, np.arange(p - 1.0)),
                                 Normalization((0, 0, 0), 1.0), {"suggested_parts": 5})
        new = res.to_bytes()
        with np.load(io.BytesIO(new), allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files if not k.startswith("tree_")}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        old = buf.getvalue()
        runs = {
            "old": lambda: SegmentationResult.from_bytes(old).features,
            "new": lambda: SegmentationResult.from_bytes(new),
            "new+features": lambda: SegmentationResult.from_bytes(new).features,
            "check": lambda: SegmentationResult.check_bytes(new),
        }
        times = {k: [] for k in runs}
        for _ in range(repeat):  # alternated, so load changes hit every variant alike
            for key, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - t) * 1000)
        med = {k: float(np.median(v)) for k, v in times.items()}
        print(f"| {p:,} | {len(old) / 2**20:.1f} / {len(new) / 2**20:.1f} MiB | {med['old']:.0f} | {med['new']:.0f} | "
              f"{med['new+features']:.0f} | {med['check']:.0f} |", flush=True)
    load = os.getloadavg()
    print(f"load after: {load[0]:.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--grid", type=int, default=317)
    ap.add_argument("--load-only", help="face counts, e.g. 10000,125000,500000: time from_bytes alone (no bpy)")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    if a.load_only:
        return load_only([int(x) for x in a.load_only.split(",")], a.features, a.repeat)
    sys.path.insert(0, str(REPO / "tests" / "blender_scripts"))
    import ext_helpers as H  # (temp BLENDER_USER_RESOURCES before bpy)

    import bpy

    from model_runtime.normalization import Normalization
    from model_runtime.part_tree import PartTree
    from model_runtime.result import SegmentationResult

    H.install_addon()
    H.clear_scene()
    storage = H.addon_module("storage")
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=a.grid, y_subdivisions=a.grid)
    obj = bpy.context.active_object
    p = len(obj.data.polygons)
    ch = np.c_[np.r_[0, p + np.arange(p - 2)], np.arange(1, p)]
    feats = np.random.default_rng(0).normal(size=(p, a.features)).astype(np.float32)
    res = SegmentationResult(feats, PartTree(ch, p, np.arange(p - 1.0)), Normalization((0, 0, 0), 1.0), {})
    for i in range(3):
        t = time.perf_counter()
        storage.store(obj, res, "fp")
        dt = time.perf_counter() - t
        size = len(storage.stored_bytes(obj))
        print(f"| store #{i + 1} | {dt * 1000:.0f} ms | {size / 2**20:.1f} MiB |")
    storage.forget_cache()
    t = time.perf_counter()
    assert storage.problem(obj) is None
    t1 = time.perf_counter()
    storage.load_checked(obj)
    t2 = time.perf_counter()
    print(f"| panel check (first draw) | {(t1 - t) * 1000:.0f} ms | |")
    print(f"| bounded load (first slider step) | {(t2 - t1) * 1000:.0f} ms | |")
    print(f"({p} faces, {a.features} features)")


if __name__ == "__main__":
    main()
