"""Render the demo's segmentation to a PNG, headless with the `bpy` module: one copy of the
mesh per part count, faces coloured by part (the same colours as the coloured .ply files).

    .venv/bin/python scripts/render_demo.py MESH LABELS_DIR OUT.png [--parts 2,4,6,8]
        [--engine auto|workbench|cycles] [--samples 8] [--size 1280x400]

LABELS_DIR holds `partfield segment`'s `<name>_k<k>.labels.npy`. `auto` tries Workbench (a
second or two; it needs a GPU context) and falls back to Cycles on the CPU at low samples.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mesh", type=Path)
    p.add_argument("labels_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--parts", default="2,4,6,8", help="part counts, one copy each (default 2,4,6,8)")
    p.add_argument("--engine", default="auto", choices=["auto", "workbench", "cycles"])
    p.add_argument("--samples", type=int, default=8, help="Cycles samples (default 8)")
    p.add_argument("--size", default="1280x400")
    return p.parse_args(argv)


def build_object(bpy, name, mesh, labels, colors, offset_x):
    """A Blender mesh of `mesh` (MeshArrays) with a face-corner colour per part."""
    import numpy as np

    me = bpy.data.meshes.new(name)
    me.vertices.add(len(mesh.vertices))
    me.vertices.foreach_set("co", mesh.vertices.astype(np.float32).ravel())
    me.loops.add(len(mesh.loop_vertices))
    me.loops.foreach_set("vertex_index", mesh.loop_vertices.astype(np.int32))
    me.polygons.add(mesh.num_polygons)
    me.polygons.foreach_set("loop_start", mesh.loop_starts.astype(np.int32))
    me.update(calc_edges=True)
    rgba = np.concatenate([colors[labels].astype(np.float32) / 255.0, np.ones((len(labels), 1), np.float32)], 1)
    corner = np.repeat(rgba, mesh.loop_totals, axis=0)
    attr = me.color_attributes.new("part", "BYTE_COLOR", "CORNER")
    attr.data.foreach_set("color_srgb", corner.ravel())
    me.color_attributes.active_color = attr
    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    obj.location.x = offset_x
    obj.rotation_euler.z = -0.65  # a three-quarter view: every leg shows
    return obj


def part_material(bpy):
    mat = bpy.data.materials.new("parts")
    mat.use_nodes = True
    nt = mat.node_tree
    attr = nt.nodes.new("ShaderNodeAttribute")
    attr.attribute_name = "part"
    bsdf = nt.nodes["Principled BSDF"]
    nt.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.6
    return mat


def label(bpy, text, x, y, z, size):
    curve = bpy.data.curves.new(f"label {text}", "FONT")
    curve.body = text
    curve.size = size
    curve.align_x = "CENTER"
    obj = bpy.data.objects.new(f"label {text}", curve)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = (x, y, z)
    obj.rotation_euler = (1.5708, 0, 0)  # facing the camera (which looks along +y)
    mat = bpy.data.materials.new(f"ink {text}")
    mat.diffuse_color = (0.05, 0.05, 0.05, 1)
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.05, 0.05, 0.05, 1)
    curve.materials.append(mat)
    return obj


def render(bpy, scene, engine, samples, out):
    scene.render.filepath = str(out)
    if engine in ("auto", "workbench"):
        scene.render.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = "VERTEX"
        shading.show_shadows = False
        shading.show_cavity = True
        try:
            bpy.ops.render.render(write_still=True)
            return "workbench"
        except RuntimeError as exc:
            if engine == "workbench":
                raise
            print(f"Workbench unavailable here ({str(exc).strip()}); rendering with Cycles on the CPU", flush=True)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    bpy.ops.render.render(write_still=True)
    return "cycles"


def main(argv=None) -> int:
    args = parse_args(argv)
    parts = [int(k) for k in args.parts.split(",")]
    missing = [k for k in parts if not (args.labels_dir / f"{args.mesh.stem}_k{k}.labels.npy").is_file()]
    if missing:
        print(f"error: no labels for k={missing} in {args.labels_dir} (run partfield segment first)", file=sys.stderr)
        return 1
    user = None
    if not os.environ.get("BLENDER_USER_RESOURCES"):  # bpy must not write to ~/.config
        user = tempfile.mkdtemp(prefix="pf_render_user_")
        os.environ["BLENDER_USER_RESOURCES"] = user
    import numpy as np

    from model_runtime.meshio import part_colors, read_mesh

    import bpy  # noqa: E402
    from mathutils import Vector

    t0 = time.perf_counter()
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    mesh = read_mesh(args.mesh)
    v = mesh.vertices
    lo, hi = v.min(0), v.max(0)
    center, size = (lo + hi) / 2, hi - lo
    mesh.vertices = (v - [center[0], center[1], lo[2]]) / size.max()  # base on z = 0, largest side 1
    colors = part_colors(max(parts) + 1)
    mat = part_material(bpy)
    gap = 1.35
    for i, k in enumerate(parts):
        labels = np.load(args.labels_dir / f"{args.mesh.stem}_k{k}.labels.npy")
        obj = build_object(bpy, f"k{k}", mesh, labels, colors, (i - (len(parts) - 1) / 2) * gap)
        obj.data.materials.append(mat)
        label(bpy, f"{k} parts", obj.location.x, 0, -0.3, 0.14)

    world = bpy.data.worlds.new("World")
    scene.world = world
    world.color = (1, 1, 1)  # Workbench's background
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (1, 1, 1, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.9
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (0.9, 0.1, 0.5)
    scene.collection.objects.link(sun)
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.data.type = "ORTHO"
    cam.data.ortho_scale = gap * len(parts)
    target = Vector((0.0, 0.0, 0.36))
    cam.location = target + Vector((0.0, -4.0, 1.7))
    cam.rotation_euler = (target - cam.location).to_track_quat("-Z", "Y").to_euler()
    w, h = (int(x) for x in args.size.split("x"))
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.compression = 90
    scene.view_settings.view_transform = "Standard"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    engine = render(bpy, scene, args.engine, args.samples, args.out.resolve())
    print(f"picture ({engine}, {time.perf_counter() - t0:.1f}s): {args.out}", flush=True)
    if user:
        shutil.rmtree(user, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
