"""Render the README image: a mesh segmented by the add-on, Cycles on the CPU, headless.

    .venv/bin/python tests/blender_scripts/render_readme.py [--weights FILE] [--parts K]
        [--samples 24] [--out docs/images/partfield_segmented.png]

Left: the mesh with the live preview colours (the `partfield_preview` face-corner attribute,
read by an Attribute node). Right: the same parts written by the "Separate Objects" writer,
pulled apart along the direction from the object's centre to each part's origin.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ext_helpers as H  # noqa: E402

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Vector  # noqa: E402


def chair(name="Chair"):
    """A chair: seat, two front legs, two back legs rising into the backrest posts, a back rail."""
    parts = [((0, 0, 0.5), (1.0, 1.0, 0.1))]  # seat
    for sx in (-1, 1):
        parts.append(((sx * 0.42, -0.42, 0.225), (0.09, 0.09, 0.45)))  # front legs
        parts.append(((sx * 0.42, 0.42, 0.675), (0.09, 0.09, 1.35)))  # back legs + posts
    parts.append(((0, 0.42, 1.15), (0.75, 0.07, 0.35)))  # back rail
    return H.mesh_from_parts(name, parts, materials=False, extras=False)


def attribute_material(name):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    bsdf = nt.nodes["Principled BSDF"]
    attr = nt.nodes.new("ShaderNodeAttribute")
    attr.attribute_name = "partfield_preview"
    nt.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.55
    return mat


def color_material(name, rgba):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = tuple(float(x) for x in rgba)
    bsdf.inputs["Roughness"].default_value = 0.55
    return mat


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", help="weights file (default: the bundled model)")
    ap.add_argument("--mesh", default="chair", choices=["chair", "table", "chain"])
    ap.add_argument("--parts", type=int, default=7)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--size", default="960x540")
    ap.add_argument("--out", default=str(H.REPO_ROOT / "docs" / "images" / "partfield_segmented.png"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    H.install_addon()
    H.clear_scene()
    for block in (bpy.data.lights, bpy.data.cameras):
        for item in list(block):
            block.remove(item)
    jobs = H.addon_module("jobs")
    preview = H.addon_module("preview")
    storage = H.addon_module("storage")
    writers = H.addon_module("writers")

    obj, _ = {"chair": chair, "table": H.table, "chain": H.boxes_chain}[args.mesh]()
    H.activate(obj)
    t = time.perf_counter()
    jobs.compute_object(bpy.context, obj, jobs.ModelSpec(path=args.weights, device="cpu"), parts=args.parts)
    print(f"compute: {time.perf_counter() - t:.1f}s, model {storage.meta(obj).get('model_name')}")
    stored = storage.load(obj)
    labels = stored.face_labels(args.parts)

    # Left: the original with the preview colours. A copy stays, the original becomes the parts.
    left = obj.copy()
    left.data = obj.data.copy()
    bpy.context.scene.collection.objects.link(left)
    left.data.materials.clear()
    left.data.materials.append(attribute_material("pf_preview"))
    bpy.context.view_layer.update()
    size = Vector(np.ptp(np.array([v.co[:] for v in obj.data.vertices]), axis=0).tolist())
    left.location.x -= size.x * 0.9

    # Right: separate objects, exploded a little.
    parts = writers.write_separate_objects(obj, labels)
    pal = preview.palette(int(labels.max()) + 1)
    bpy.context.view_layer.update()
    center = Vector(np.mean([np.array(p.matrix_world.translation) for p in parts], axis=0).tolist())
    for p in parts:
        p.data.materials.clear()
        p.data.materials.append(color_material(f"pf_part_{p['partfield_part']}", pal[p["partfield_part"]]))
        p.location += (p.matrix_world.translation - center) * 0.35 + Vector((size.x * 0.7, 0, 0))

    scene = bpy.context.scene
    # Ground, light, camera.
    bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, -0.001))
    ground = bpy.context.active_object
    ground.data.materials.append(color_material("pf_ground", (0.8, 0.8, 0.8, 1)))
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.data.angle = 0.2
    sun.rotation_euler = (0.7, 0.2, 0.6)
    scene.collection.objects.link(sun)
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.9, 0.92, 0.95, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.data.lens = 40
    target = Vector((0.0, 0.0, size.z * 0.45))
    cam.location = target + Vector((0.6, -3.4, 1.9)) * max(size.x * 1.25, size.z)
    cam.rotation_euler = (target - cam.location).to_track_quat("-Z", "Y").to_euler()

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_denoising = True
    w, h = (int(x) for x in args.size.split("x"))
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"
    scene.render.filepath = args.out
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    try:
        bpy.ops.render.render(write_still=True)
    except RuntimeError:  # denoiser not built into this bpy
        scene.cycles.use_denoising = False
        bpy.ops.render.render(write_still=True)
    print(f"render: {time.perf_counter() - t:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
