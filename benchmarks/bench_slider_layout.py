"""Slider step and undo with the stored result in a Text data-block (today's layout) against the
result bytes on the object itself (the layout before), in one process, alternated.

    .venv/bin/python benchmarks/bench_slider_layout.py [--faces 500000] [--features 64] [--rounds 5] [--steps 8]

Builds a UV sphere of about `--faces` faces in real bpy with the add-on, stores a synthetic
result on it (random fp16 features, a balanced merge tree: the same bytes a compute stores, no
network needed), then per round and layout moves the slider as the UI does (the property
update, the depsgraph evaluation that follows, the panel draw) and times an undo. The layouts
alternate round by round; the table gives medians over all steps (ms).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "blender_scripts"))
import ext_helpers as H  # noqa: E402  (temp BLENDER_USER_RESOURCES before bpy)

import bpy  # noqa: E402
import numpy as np  # noqa: E402


def balanced_children(p: int) -> np.ndarray:
    """Merge list of a balanced binary tree over p leaves (neighbours pair up level by level)."""
    alive = np.arange(p)
    nxt = p
    out = []
    while alive.size > 1:
        pairs = alive[: alive.size // 2 * 2].reshape(-1, 2)
        ids = nxt + np.arange(len(pairs))
        nxt += len(pairs)
        out.append(pairs)
        alive = np.concatenate([ids, alive[pairs.size:]])
    return np.concatenate(out)


def ms(fn, *a):
    t = time.perf_counter()
    fn(*a)
    return (time.perf_counter() - t) * 1000


def to_old_layout(obj, storage):
    block = obj[storage.BLOCK_KEY]
    for key in (storage.RESULT_KEY, storage.FACE_MAP_KEY):
        if key in block:
            obj[key] = bytes(block[key])
    del obj[storage.BLOCK_KEY]
    bpy.data.texts.remove(block)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=500_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else None)

    H.install_addon()
    H.clear_scene()
    from model_runtime.normalization import Normalization
    from model_runtime.part_tree import PartTree
    from model_runtime.result import SegmentationResult

    storage = H.addon_module("storage")
    segments = int(round(np.sqrt(a.faces * 2)))
    bpy.ops.mesh.primitive_uv_sphere_add(segments=segments, ring_count=max(3, a.faces // segments))
    objs = {}
    for layout in ("data-block", "on the object"):
        obj = bpy.context.active_object.copy()
        obj.data = obj.data.copy()
        obj.name = layout
        bpy.context.scene.collection.objects.link(obj)
        p = len(obj.data.polygons)
        feats = np.random.default_rng(0).normal(size=(p, a.features)).astype(np.float32)
        tree = PartTree(balanced_children(p), p, np.arange(p - 1.0))
        res = SegmentationResult(feats, tree, Normalization((0, 0, 0), 1.0), {})
        storage.store(obj, res, H.addon_module("mesh_data").fingerprint(obj.data))
        if layout == "on the object":
            to_old_layout(obj, storage)
        objs[layout] = obj
    size = len(storage.stored_bytes(objs["data-block"]))
    bpy.data.objects.remove(bpy.data.objects["Sphere"])
    bpy.context.view_layer.update()
    times = {k: {"update": [], "depsgraph": [], "panel": [], "step": [], "undo": []} for k in objs}
    ks = [2 + (i * 7) % 23 for i in range(a.steps)]
    for r in range(a.rounds):
        order = list(objs) if r % 2 == 0 else list(objs)[::-1]
        for layout in order:
            obj = bpy.data.objects[layout]
            H.activate(obj)
            t = times[layout]
            for k in ks:
                cb = ms(setattr, obj.partfield, "parts", k)
                dg = ms(bpy.context.view_layer.update)
                dr = ms(H.panel_texts)
                for name, v in (("update", cb), ("depsgraph", dg), ("panel", dr), ("step", cb + dg + dr)):
                    t[name].append(v)
            bpy.ops.ed.undo_push(message="bench a")
            obj.partfield.parts = 3
            bpy.ops.ed.undo_push(message="bench b")
            t["undo"].append(ms(bpy.ops.ed.undo))
    faces = len(bpy.data.objects["data-block"].data.polygons)
    print(f"{faces:,} faces, {a.features} features, stored result {size / 2**20:.1f} MiB; "
          f"{a.rounds} rounds x {a.steps} steps, layouts alternated; medians in ms")
    print("| layout | slider update | depsgraph | panel draw | whole step | undo |")
    print("|---|---|---|---|---|---|")
    for layout, t in times.items():
        print(f"| {layout} | " + " | ".join(f"{statistics.median(t[n]):.1f}" for n in
                                           ("update", "depsgraph", "panel", "step", "undo")) + " |")


if __name__ == "__main__":
    main()
