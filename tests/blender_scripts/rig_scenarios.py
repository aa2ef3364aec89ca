"""Separate Objects and Make Rig scenarios against the real `bpy` module with the add-on installed.

    python rig_scenarios.py SCENARIO --workdir DIR

Each scenario asserts what issue 18's acceptance asks and exits non-zero on failure; the
pytest file tests/test_blender_rig.py runs one process per scenario. No network is needed:
the parts are given as labels (the boxes a mesh is made of).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ext_helpers as H  # noqa: E402  (sets BLENDER_USER_RESOURCES before bpy)

import bpy  # noqa: E402
import numpy as np  # noqa: E402


def world_vertices(obj, evaluated=False):
    """World-space vertex positions (evaluated: modifiers, armature deformation)."""
    if evaluated:
        dg = bpy.context.evaluated_depsgraph_get()
        ev = obj.evaluated_get(dg)
        me = ev.to_mesh()
        co = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", co)
        mw = np.array(ev.matrix_world)
        ev.to_mesh_clear()
    else:
        co = np.empty(len(obj.data.vertices) * 3, np.float32)
        obj.data.vertices.foreach_get("co", co)
        mw = np.array(obj.matrix_world)
    co = co.reshape(-1, 3).astype(np.float64)
    return co @ mw[:3, :3].T + mw[:3, 3]


def modifier_settings(mod):
    out = {}
    for prop in mod.bl_rna.properties:
        if prop.is_readonly or prop.type == "COLLECTION" or prop.identifier == "rna_type":
            continue
        value = getattr(mod, prop.identifier)
        if hasattr(value, "__len__") and not isinstance(value, str):
            value = tuple(value)
        out[prop.identifier] = value
    return out


def vertex_weights(obj):
    """{group name: (V,) weights, NaN where a vertex is not in the group}."""
    out = {g.name: np.full(len(obj.data.vertices), np.nan) for g in obj.vertex_groups}
    names = {g.index: g.name for g in obj.vertex_groups}
    for v in obj.data.vertices:
        for e in v.groups:
            out[names[e.group]][v.index] = e.weight
    return out


def vertex_owner(obj, labels):
    """Per vertex, the label of (one of) the polygons using it."""
    own = np.full(len(obj.data.vertices), -1)
    for p in obj.data.polygons:
        own[list(p.vertices)] = labels[p.index]
    return own


# --------------------------------------------------------------------------------------- scenarios
def scenario_separate_keeps(args):
    """Subdivision + Bevel, two user groups, a custom property, parent, colours, smooth shading:
    each part keeps exactly what issue 18 item 1 lists, and nothing the add-on wrote."""
    H.install_addon()
    H.clear_scene()
    writers = H.addon_module("writers")
    obj, labels = H.boxes_chain()
    me = obj.data
    empty = bpy.data.objects.new("Holder", None)
    bpy.context.scene.collection.objects.link(empty)
    empty.location = (0.3, 0.2, -0.1)
    coll = bpy.data.collections.new("Props")
    bpy.context.scene.collection.children.link(coll)
    coll.objects.link(obj)
    obj.parent = empty
    obj.location = (0.5, -1.0, 0.25)
    obj.rotation_euler = (0.1, 0.0, 0.3)
    obj.scale = (1.0, 2.0, 1.0)
    target = bpy.data.objects.new("BevelRef", None)
    bpy.context.scene.collection.objects.link(target)
    sub = obj.modifiers.new("Subsurf", "SUBSURF")
    sub.levels, sub.render_levels, sub.quality = 2, 3, 2
    bev = obj.modifiers.new("Bevel", "BEVEL")
    bev.width, bev.segments, bev.limit_method = 0.037, 3, "ANGLE"
    disp = obj.modifiers.new("Cast", "CAST")
    disp.object, disp.factor = target, 0.2  # an object reference
    disp.show_viewport = False  # (a cast depends on the whole mesh: keep it out of the evaluated check)
    obj["rig_note"] = "keep me"
    obj["stiffness"] = 0.75
    obj.id_properties_ui("stiffness").update(min=0.0, max=2.0)
    # user groups: "left" only on the first box, "all" everywhere with varying weights
    nv = len(me.vertices)
    co = np.array([v.co[:] for v in me.vertices])
    left = obj.vertex_groups.new(name="left")
    left.add(np.flatnonzero(vertex_owner(obj, labels) == 0).tolist(), 0.5, "REPLACE")
    allg = obj.vertex_groups.new(name="all")
    for i in range(nv):
        allg.add([i], round(float(i % 7) / 7 + 0.1, 3), "REPLACE")
    col = me.color_attributes.new("Paint", "BYTE_COLOR", "CORNER")
    col.data.foreach_set("color", np.tile([0.2, 0.4, 0.6, 1.0], len(me.loops)).astype(np.float32))
    me.attributes.new("crease_edge_x", "FLOAT", "EDGE").data.foreach_set(
        "value", np.arange(len(me.edges), dtype=np.float32))
    smooth = np.arange(len(me.polygons)) % 2 == 0
    me.polygons.foreach_set("use_smooth", smooth)
    # the add-on's own outputs: part groups, part attribute + face sets, preview
    writers.write_vertex_groups(obj, labels)
    writers.write_face_attribute(obj, labels)
    preview = H.addon_module("preview")
    preview.recolor(obj, labels)
    bpy.context.view_layer.update()
    src_world = world_vertices(obj)
    src_eval_world = world_vertices(obj, evaluated=True)
    src_weights = vertex_weights(obj)
    src_owner = vertex_owner(obj, labels)
    src_mods = [(m.name, m.type, modifier_settings(m)) for m in obj.modifiers]

    t = time.perf_counter()
    parts = writers.write_separate_objects(obj, labels)
    print(f"separate: {time.perf_counter() - t:.3f}s")
    bpy.context.view_layer.update()
    assert len(parts) == 3, len(parts)
    pcoll = writers.parts_collection(obj)
    seen_world = []
    for part in parts:
        lab = part["partfield_part"]
        pw = world_vertices(part)
        seen_world.append(pw)
        # world position exact (float32 storage of a shifted origin: well below 1e-5)
        mine = np.flatnonzero(src_owner == lab)
        dist = np.abs(pw[:, None, :] - src_world[None, mine, :]).max(axis=2)
        d, match = dist.min(axis=1), mine[dist.argmin(axis=1)]
        assert d.max() < 1e-5, f"part {lab}: vertices moved by {d.max()}"
        assert len(np.unique(match)) == len(mine) == len(pw), f"part {lab}: vertices missing or doubled"
        # modifiers: same stack, same settings, same object reference
        got = [(m.name, m.type, modifier_settings(m)) for m in part.modifiers]
        assert got == src_mods, f"part {lab}: modifiers differ:\n{got}\n{src_mods}"
        assert part.modifiers["Cast"].object == target
        # custom properties, with UI data; none of the add-on's keys
        assert part["rig_note"] == "keep me" and part["stiffness"] == 0.75
        assert part.id_properties_ui("stiffness").as_dict()["max"] == 2.0
        assert not [k for k in part.keys() if k.startswith("partfield") and k != "partfield_part"], part.keys()
        # vertex groups: only user groups with weights on the part's vertices, same weights
        gnames = sorted(g.name for g in part.vertex_groups)
        expect = ["all", "left"] if lab == 0 else ["all"]
        assert gnames == expect, f"part {lab}: groups {gnames}, expected {expect}"
        for gname, weights in vertex_weights(part).items():
            same = (weights == src_weights[gname][match]) | (np.isnan(weights) & np.isnan(src_weights[gname][match]))
            assert same.all(), f"part {lab}: weights of {gname} changed"
        # attributes: user ones kept, the add-on's gone
        names = {a.name for a in part.data.attributes}
        for kept in ("UVMap", "weight_x", "Paint", "crease_edge_x", "sharp_face", "material_index"):
            assert kept in names, f"part {lab}: attribute {kept} lost ({sorted(names)})"
        for gone in ("partfield_part", ".sculpt_face_set", "partfield_preview"):
            assert gone not in names, f"part {lab}: add-on output {gone} copied"
        assert part.data.has_custom_normals
        assert part.data.color_attributes.get("Paint") is not None
        # parent and collections
        assert part.parent == empty and part.parent_type == obj.parent_type
        assert pcoll.name in coll.children and pcoll.name in bpy.context.scene.collection.children.keys() or \
            part.name in coll.all_objects, "parts not in the original's collections"
        assert part.name in coll.all_objects
        assert [m.name for m in part.data.materials] == [m.name for m in me.materials]
    # smooth shading per face, edge attribute, colours: compare per polygon centre (world)
    src_c = polygon_world_centres(obj)
    src_smooth = np.array([p.use_smooth for p in me.polygons])
    for part in parts:
        pc = polygon_world_centres(part)
        d = np.linalg.norm(pc[:, None] - src_c[None], axis=2)
        near = d.argmin(axis=1)
        sm = np.array([p.use_smooth for p in part.data.polygons])
        assert np.array_equal(sm, src_smooth[near]), "smooth shading changed"
    # evaluated (modifiers applied) parts cover the evaluated original's bounding box
    ev = np.concatenate([world_vertices(p, evaluated=True) for p in parts])
    assert np.allclose(ev.min(0), src_eval_world.min(0), atol=1e-4) and \
        np.allclose(ev.max(0), src_eval_world.max(0), atol=1e-4), "evaluated parts differ"
    # the original keeps its add-on outputs (only hidden)
    assert obj.hide_get() and obj.data.attributes.get("partfield_part") is not None


def polygon_world_centres(obj):
    c = np.empty(len(obj.data.polygons) * 3, np.float32)
    obj.data.polygons.foreach_get("center", c)
    n = np.empty(len(obj.data.polygons) * 3, np.float32)
    obj.data.polygons.foreach_get("normal", n)
    c = c.reshape(-1, 3) + 0.01 * n.reshape(-1, 3)
    mw = np.array(obj.matrix_world)
    return c @ mw[:3, :3].T + mw[:3, 3]


SCENARIOS = {
    "separate_keeps": scenario_separate_keeps,
}


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args(argv)
    t = time.perf_counter()
    SCENARIOS[args.scenario](args)
    print(f"SCENARIO OK {args.scenario} ({time.perf_counter() - t:.1f}s)", flush=True)


if __name__ == "__main__":
    main()
