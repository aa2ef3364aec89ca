"""Render the README's rig image: a desk lamp segmented by the add-on, rigged by Make Rig and
posed; Cycles on the CPU, headless.

    .venv/bin/python tests/blender_scripts/render_rig_readme.py [--weights FILE] [--parts 4]
        [--labels model|construction] [--samples 16] [--out docs/images/partfield_rig.png]

The lamp is made of boxes (base, post, arm, shade). Its parts come from the bundled model
(`--labels model`, the default; the script prints how well they match the boxes) or from the
boxes themselves (`--labels construction`). Left: the rest pose, see-through, with the bones
(dark balls at the bone heads, i.e. the joints; rods along the bones); right: the same rig
(skinned binding: one mesh, an Armature modifier) with the post, arm and shade bones rotated.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ext_helpers as H  # noqa: E402

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

from render_readme import attribute_material, color_material  # noqa: E402

LAMP = [
    ((0.0, 0.0, 0.05), (0.9, 0.7, 0.1)),     # base
    ((0.0, 0.0, 0.55), (0.12, 0.12, 0.9)),   # post
    ((0.44, 0.0, 1.05), (1.0, 0.1, 0.1)),    # arm
    ((1.09, 0.0, 1.0), (0.3, 0.34, 0.3)),    # shade
]


def lamp(name="Lamp"):
    return H.mesh_from_parts(name, LAMP, materials=False, extras=False)


def joint_markers(arm, radius, mat):
    """A ball at each bone head and a rod along each bone, parented to the bones (they pose)."""
    for bone in arm.data.bones:
        bpy.ops.mesh.primitive_uv_sphere_add(radius=radius, segments=16, ring_count=8)
        ball = bpy.context.active_object
        bpy.ops.mesh.primitive_cylinder_add(radius=radius * 0.35, depth=bone.length, vertices=12)
        rod = bpy.context.active_object
        rod.scale = (1, 1, 1)
        for o, local in ((ball, Matrix.Identity(4)),
                         (rod, Matrix.Translation((0, bone.length / 2, 0)) @ Matrix.Rotation(math.pi / 2, 4, "X"))):
            o.data.materials.append(mat)
            o.parent, o.parent_type, o.parent_bone = arm, "BONE", bone.name
            tail_frame = bone.matrix_local @ Matrix.Translation((0, bone.length, 0))
            o.matrix_parent_inverse = tail_frame.inverted()
            o.matrix_basis = bone.matrix_local @ local


def see_through(mat, alpha=0.35):
    """Mix the material with a Transparent BSDF so the bones inside show."""
    nt = mat.node_tree
    out = nt.nodes["Material Output"]
    bsdf = nt.nodes["Principled BSDF"]
    mix = nt.nodes.new("ShaderNodeMixShader")
    clear = nt.nodes.new("ShaderNodeBsdfTransparent")
    mix.inputs["Fac"].default_value = alpha
    nt.links.new(clear.outputs[0], mix.inputs[1])
    nt.links.new(bsdf.outputs[0], mix.inputs[2])
    nt.links.new(mix.outputs[0], out.inputs["Surface"])
    return mat


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", help="weights file (default: the bundled model)")
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--labels", default="model", choices=["model", "construction"])
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--size", default="960x540")
    ap.add_argument("--out", default=str(H.REPO_ROOT / "docs" / "images" / "partfield_rig.png"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    H.install_addon()
    H.clear_scene()
    for block in (bpy.data.lights, bpy.data.cameras, bpy.data.armatures):
        for item in list(block):
            block.remove(item)
    jobs, storage, rig, preview = (H.addon_module(m) for m in ("jobs", "storage", "rig", "preview"))

    obj, boxes = lamp()
    H.activate(obj)
    t = time.perf_counter()
    jobs.compute_object(bpy.context, obj, jobs.ModelSpec(path=args.weights, device="cpu"), parts=args.parts)
    print(f"compute: {time.perf_counter() - t:.1f}s, model {storage.meta(obj).get('model_name')}")
    labels = storage.load(obj).face_labels(args.parts)
    agree = max(np.mean(labels == boxes), _best_match(labels, boxes))
    print(f"model parts vs the lamp's boxes: {agree * 100:.0f}% of faces agree (best label matching)")
    if args.labels == "construction":
        labels = boxes
        preview.recolor(obj, labels)
    obj.data.materials.clear()
    obj.data.materials.append(see_through(attribute_material("pf_preview_clear")))

    posed = obj.copy()
    posed.data = obj.data.copy()
    bpy.context.scene.collection.objects.link(posed)
    posed.location.x += 2.4
    posed.data.materials.clear()
    posed.data.materials.append(attribute_material("pf_preview"))
    bpy.context.view_layer.update()
    dark = color_material("pf_joint", (0.05, 0.05, 0.06, 1))
    rigs = []
    for o in (obj, posed):
        t = time.perf_counter()
        arm = rig.make_rig(o, labels, binding="SKINNED")
        print(f"make rig: {time.perf_counter() - t:.2f}s, {len(arm.data.bones)} bones: "
              + ", ".join(f"{b.name}<-{b.parent.name if b.parent else '-'}" for b in arm.data.bones))
        if o is obj:
            joint_markers(arm, 0.05, dark)
        rigs.append(arm)
    # pose the right lamp: lean the post, lower the arm, tilt the shade
    arm = rigs[1]
    root = next(b for b in arm.data.bones if b.parent is None)
    chain = [root]
    while chain[-1].children:
        chain.append(max(chain[-1].children, key=lambda b: b.length))
    angles = [0.0, 20.0, -40.0, 75.0]
    for bone, deg in zip(chain, angles):
        if deg:
            pb = arm.pose.bones[bone.name]
            pb.rotation_mode = "XYZ"
            world_y = (arm.matrix_world.to_3x3() @ bone.matrix_local.to_3x3()).inverted() @ Vector((0, 1, 0))
            pb.rotation_euler = Matrix.Rotation(math.radians(deg), 3, world_y).to_euler("XYZ")
    bpy.context.view_layer.update()

    scene = bpy.context.scene
    bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, -0.001))
    bpy.context.active_object.data.materials.append(color_material("pf_ground", (0.8, 0.8, 0.8, 1)))
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy, sun.data.angle = 3.0, 0.2
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
    cam.data.lens = 38
    target = Vector((1.8, 0.0, 0.6))
    cam.location = target + Vector((0.0, -5.0, 1.6))
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


def _best_match(labels, boxes):
    """Share of faces whose label maps to their box under the best one-to-one matching (greedy)."""
    score, used = 0, set()
    pairs = sorted(((np.sum((labels == a) & (boxes == b)), a, b) for a in np.unique(labels) for b in np.unique(boxes)),
                   reverse=True)
    seen_a = set()
    for n, a, b in pairs:
        if a in seen_a or b in used:
            continue
        seen_a.add(a)
        used.add(b)
        score += n
    return score / len(labels)


if __name__ == "__main__":
    main()
