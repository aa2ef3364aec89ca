"""Separate Objects and Make Rig times on a COSEG chair subdivided to ~125k and ~500k faces.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_separate_rig.py [--shape PATH] [--levels 1,2] [--parts 2,8,32]

The chair (shared/datasets/coseg_subset/chairs/shapes/102.off, 31,456 triangles) is split
1 and 2 times (each triangle into 4: 125,824 and 503,296 faces), built in bpy with a UV map, a
custom property and a Subdivision modifier, and cut into k parts by k-means on the face centres
(no network: the writers' cost does not depend on where the labels come from). Times:
Separate Objects (`writers.write_separate_objects`), the rig layout alone
(`model_runtime.rig_layout.rig_layout`), Make Rig rigid (layout + armature + Separate Objects +
bone parenting) and Make Rig skinned (layout + armature + vertex groups + modifier). Each figure
is the best of `--repeat` runs. `--groups N` adds N user vertex groups. Exits non-zero if Separate Objects at the largest size and k
exceeds --limit seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "blender_scripts"))
import ext_helpers as H  # noqa: E402  (temp BLENDER_USER_RESOURCES before bpy)

import bpy  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_SHAPE = REPO.parent / "shared" / "datasets" / "coseg_subset" / "chairs" / "shapes" / "102.off"


def subdivide(v, f):
    """Each triangle into four (edge midpoints shared)."""
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    uniq, inv = np.unique(e, axis=0, return_inverse=True)
    inv = inv.reshape(3, -1).T + len(v)
    v = np.concatenate([v, (v[uniq[:, 0]] + v[uniq[:, 1]]) / 2])
    a, b, c = f.T
    ab, bc, ca = inv.T
    f = np.concatenate([np.stack(x, 1) for x in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])
    return v, f


def kmeans_labels(points, k, iters=12, seed=0):
    rng = np.random.default_rng(seed)
    c = points[rng.choice(len(points), k, replace=False)]
    for _ in range(iters):
        d = ((points[:, None, :] - c[None]) ** 2).sum(2) if len(points) * k < 4e7 else None
        if d is None:
            lab = np.concatenate([((points[s:s + 200000, None] - c[None]) ** 2).sum(2).argmin(1)
                                  for s in range(0, len(points), 200000)])
        else:
            lab = d.argmin(1)
        for j in range(k):
            m = lab == j
            if m.any():
                c[j] = points[m].mean(0)
    _, lab = np.unique(lab, return_inverse=True)
    return lab


def build(name, v, f):
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(v))
    me.vertices.foreach_set("co", v.astype(np.float32).ravel())
    me.loops.add(f.size)
    me.loops.foreach_set("vertex_index", f.ravel().astype(np.int32))
    me.polygons.add(len(f))
    me.polygons.foreach_set("loop_start", np.arange(0, f.size, 3, dtype=np.int32))
    me.update(calc_edges=True)
    uv = me.uv_layers.new(name="UVMap")
    co = v[f.ravel()]
    uv.data.foreach_set("uv", (co[:, :2] * 0.5 + 0.5).astype(np.float32).ravel())
    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    obj["asset_id"] = 102
    obj.modifiers.new("Subsurf", "SUBSURF").levels = 1
    return obj


def best(fn, repeat):
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default=str(DEFAULT_SHAPE))
    ap.add_argument("--levels", default="1,2")
    ap.add_argument("--parts", default="2,8,32")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--limit", type=float, default=1.5)
    ap.add_argument("--groups", type=int, default=0, help="user vertex groups to add (weights on half the vertices)")
    args = ap.parse_args(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:])
    H.install_addon()
    H.clear_scene()
    writers, rig = H.addon_module("writers"), H.addon_module("rig")
    from model_runtime.meshio import read_mesh
    from model_runtime.rig_layout import rig_layout

    src = read_mesh(args.shape)
    v0, f0 = np.asarray(src.vertices, np.float64), src.triangulate()[0]
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    print(f"{'faces':>8} {'k':>3} {'separate s':>10} {'layout s':>9} {'rig rigid s':>11} {'rig skinned s':>13}")
    last = None
    for level in [int(x) for x in args.levels.split(",")]:
        v, f = v0, f0
        for _ in range(level):
            v, f = subdivide(v, f)
        H.clear_scene()
        obj = build("Chair", v, f)
        for g in range(args.groups):
            ids = np.arange(g % 2, len(v), 2)
            obj.vertex_groups.new(name=f"user_{g}").add(ids.tolist(), 0.5 + 0.1 * g, "REPLACE")
        mesh = rig._mesh_arrays(obj)
        centres = v[f].mean(1)
        for k in [int(x) for x in args.parts.split(",")]:
            labels = kmeans_labels(centres, k)
            t_sep = best(lambda: writers.write_separate_objects(obj, labels), args.repeat)
            writers.remove_separate_objects(obj)
            t_lay = best(lambda: rig_layout(mesh, labels), args.repeat)
            t_rigid = best(lambda: rig.make_rig(obj, labels, binding="RIGID"), args.repeat)
            t_skin = best(lambda: rig.make_rig(obj, labels, binding="SKINNED"), args.repeat)
            rig.remove_rig(obj)
            print(f"{len(f):>8} {k:>3} {t_sep:>10.2f} {t_lay:>9.2f} {t_rigid:>11.2f} {t_skin:>13.2f}", flush=True)
            last = t_sep
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    if last is not None and last > args.limit:
        print(f"FAIL: Separate Objects took {last:.2f} s > {args.limit} s at the largest size and k")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
