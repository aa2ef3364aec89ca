"""Helpers for the extension's bpy scripts: a development install of the add-on into a temp
extensions repository, small real models, and meshes with known parts.

Import this module before `bpy` (it points BLENDER_USER_RESOURCES at a temp folder)."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
if not os.environ.get("BLENDER_USER_RESOURCES"):
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="pf_blender_user_")

import numpy as np  # noqa: E402

ADDON = "bl_ext.user_default.partfield_blender"


def install_addon():
    """Install partfield_blender as a development extension in the `user_default` repository
    (files symlinked from the repo + the source manifest) and enable it. Returns the module."""
    import addon_utils
    import bpy

    repo = Path(bpy.utils.user_resource("EXTENSIONS", path="user_default", create=True))
    target = repo / "partfield_blender"
    if not target.exists():
        target.mkdir()
        for src in (REPO_ROOT / "partfield_blender").iterdir():
            if src.name == "__pycache__":
                continue
            (target / src.name).symlink_to(src)
        manifest = REPO_ROOT / "blender_manifest.toml"
        if manifest.exists():
            shutil.copy(manifest, target / "blender_manifest.toml")
    mod = addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    assert mod is not None and ADDON in bpy.context.preferences.addons, "add-on did not enable"
    return mod


def _raise(exc):
    raise exc


def addon_module(name: str):
    import importlib

    return importlib.import_module(f"{ADDON}.{name}")


def prefs():
    import bpy

    return bpy.context.preferences.addons[ADDON].preferences


def make_weights(path, seed: int = 0, name: str = "test-small") -> str:
    """A real small PartField network (random init, seeded) saved as compact weights."""
    import torch

    from model_runtime.checkpoint import save_compact
    from model_runtime.config import PartFieldConfig
    from model_runtime.network import PartFieldNet

    torch.manual_seed(seed)
    cfg = PartFieldConfig.small()
    net = PartFieldNet(cfg)
    save_compact(path, net.state_dict(), cfg, {"name": name})
    return str(path)


def use_custom_model(path) -> None:
    p = prefs()
    p.model_choice = "CUSTOM"
    p.custom_path = str(path)
    p.device = "cpu"


def clear_scene() -> None:
    import bpy

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for me in list(bpy.data.meshes):
        bpy.data.meshes.remove(me)
    for coll in list(bpy.data.collections):
        bpy.data.collections.remove(coll)
    bpy.context.view_layer.update()


def _box(center, size, subdiv=2):
    """Vertices and quads of an axis-aligned box, each side split `subdiv` x `subdiv`."""
    c = np.asarray(center, float)
    h = np.asarray(size, float) / 2
    verts, quads, index = [], [], {}

    def vid(p):
        key = tuple(np.round(p, 6))
        if key not in index:
            index[key] = len(verts)
            verts.append(p)
        return index[key]

    t = np.linspace(-1, 1, subdiv + 1)
    for axis in range(3):
        for sign in (-1, 1):
            u, v = [a for a in range(3) if a != axis]
            for i in range(subdiv):
                for j in range(subdiv):
                    corners = []
                    for di, dj in ((0, 0), (1, 0), (1, 1), (0, 1)):
                        p = np.zeros(3)
                        p[axis] = sign
                        p[u], p[v] = t[i + di], t[j + dj]
                        corners.append(vid(c + p * h))
                    if sign < 0:
                        corners.reverse()
                    quads.append(corners)
    return np.asarray(verts), quads


def mesh_from_parts(name, parts, materials=True, extras=True):
    """One mesh object made of boxes [(center, size), ...]; returns (obj, part_of_polygon)."""
    import bpy

    verts, faces, owner = [], [], []
    for k, (center, size) in enumerate(parts):
        v, q = _box(center, size)
        base = sum(len(x) for x in verts)
        verts.append(v)
        faces += [[base + i for i in f] for f in q]
        owner += [k] * len(q)
    v = np.concatenate(verts)
    me = bpy.data.meshes.new(name)
    me.from_pydata(v.tolist(), [], faces)
    me.update()
    owner = np.asarray(owner)
    if materials:
        for i in range(2):
            mat = bpy.data.materials.get(f"pf_mat_{i}") or bpy.data.materials.new(f"pf_mat_{i}")
            me.materials.append(mat)
        me.polygons.foreach_set("material_index", (owner % 2).astype(np.int32))
    if extras:
        uv = me.uv_layers.new(name="UVMap")
        co = v[np.array([li.vertex_index for li in me.loops])]
        uv.data.foreach_set("uv", (co[:, :2] * 0.37 + 0.5).astype(np.float32).ravel())
        attr = me.attributes.new("weight_x", "FLOAT", "POINT")
        attr.data.foreach_set("value", v[:, 0].astype(np.float32))
        n = np.zeros((len(me.loops), 3), np.float32)
        n[:, 2] = 1.0
        n[::3, 0] = 0.5
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        me.normals_split_custom_set(n.tolist())
    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    return obj, owner


def fake_compute_operator():
    """The compute operator's real methods (`start_job`, `_prepare`, `modal`, `_finish`,
    `_stop`) on a plain object that records its reports: Blender would create the instance and
    add the modal handler, and headless bpy has no window for that."""
    import bpy

    op_type = bpy.types.PARTFIELD_OT_compute

    class FakeOp:
        start_job = op_type.start_job
        _prepare = op_type._prepare
        modal = op_type.modal
        _finish = op_type._finish
        _stop = op_type._stop

        def __init__(self):
            self.reports = []

        def report(self, kind, msg):
            self.reports.append((set(kind), msg))

    return FakeOp()


def bumpy_sphere(faces: int):
    """A UV sphere of about `faces` faces with three lobes and a cap, so its parts are not
    arbitrary (the benchmarks' test mesh); the active object."""
    import bpy
    import numpy as np

    segments = int(round(np.sqrt(faces * 2)))
    rings = max(3, faces // segments)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=segments, ring_count=rings, radius=1.0)
    obj = bpy.context.active_object
    me = obj.data
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    r = 1.0 + 0.35 * np.clip(np.cos(3 * np.arctan2(co[:, 1], co[:, 0])), 0, None) ** 4 + 0.3 * (co[:, 2] > 0.6)
    me.vertices.foreach_set("co", (co * r[:, None]).ravel())
    me.update()
    bpy.context.view_layer.update()
    return obj


def boxes_chain(name="Chain"):
    """Three unit boxes in a row along x, touching face to face."""
    return mesh_from_parts(name, [((x, 0, 0), (1, 1, 1)) for x in (0.0, 1.0, 2.0)])


def table(name="Table"):
    """A table: a flat top and four legs under its corners."""
    parts = [((0, 0, 1.0), (2.0, 1.2, 0.1))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(((sx * 0.85, sy * 0.45, 0.475), (0.1, 0.1, 0.95)))
    return mesh_from_parts(name, parts)


def activate(obj, others=()):
    import bpy

    for o in bpy.context.view_layer.objects:
        if o is not None:
            o.select_set(False)
    for o in (obj, *others):
        o.select_set(True)
    bpy.context.view_layer.objects.active = obj


def face_labels_of_writer_groups(obj, names):
    """Per polygon, the list of groups (by index in `names`) that hold all its vertices."""
    me = obj.data
    nv = len(me.vertices)
    member = np.zeros((len(names), nv), bool)
    for gi, name in enumerate(names):
        g = obj.vertex_groups[name].index
        for v in me.vertices:
            for e in v.groups:
                if e.group == g and e.weight == 1.0:
                    member[gi, v.index] = True
    out = []
    for p in me.polygons:
        vs = list(p.vertices)
        out.append([gi for gi in range(len(names)) if member[gi, vs].all()])
    return out


class RecordingLayout:
    """A stand-in for `UILayout` (headless bpy draws no UI): every call returns the layout and
    the `text=` of each call is appended to `texts`."""

    def __init__(self, texts: list):
        object.__setattr__(self, "_texts", texts)

    def __getattr__(self, name):
        def call(*args, **kwargs):
            if "text" in kwargs:
                self._texts.append(kwargs["text"])
            return self
        return call

    def __setattr__(self, name, value):
        pass


def panel_texts() -> list[str]:
    """Draw the PartField panel with a recording layout (no GUI here); the texts it shows."""
    import bpy

    texts = []
    panel = addon_module("panel")
    panel.VIEW3D_PT_partfield.draw(type("FakePanel", (), {"layout": RecordingLayout(texts)})(), bpy.context)
    return texts


def preferences_texts() -> list[str]:
    """Draw the add-on preferences (their real values) with a recording layout; the texts shown."""
    import bpy

    texts = []
    real = prefs()

    class RecordingPrefs:
        layout = RecordingLayout(texts)

        def __getattr__(self, name):
            return getattr(real, name)

    type(real).draw(RecordingPrefs(), bpy.context)
    return texts


def run_scenario_main(scenarios: dict, weights: bool = False, threads: int | None = None) -> None:
    """Command line of a scenario script: `SCRIPT NAME --workdir DIR [--weights W --weights2 W2]`;
    runs one scenario and prints 'SCENARIO OK NAME' (what the pytest side checks)."""
    import argparse
    import time

    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(scenarios))
    if weights:
        ap.add_argument("--weights", required=True)
        ap.add_argument("--weights2")
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args(argv)
    if threads:
        import torch

        torch.set_num_threads(threads)
    t = time.perf_counter()
    scenarios[args.scenario](args)
    print(f"SCENARIO OK {args.scenario} ({time.perf_counter() - t:.1f}s)", flush=True)
