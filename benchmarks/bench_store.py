"""Cost of keeping a result in the .blend: `storage.store` over an existing result (fresh
properties + read-back check), the panel's first check and a full bounded load.

    .venv/bin/python benchmarks/bench_store.py [--features 64] [--grid 317]

Builds a grid of ~100k quads in bpy and a synthetic result over it (random features, a
caterpillar tree), stores it three times, then times `storage.problem` (headers + tree check,
what the panel runs once per result) and `storage.load_checked` (what the slider runs once).
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--grid", type=int, default=317)
    a = ap.parse_args()
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
