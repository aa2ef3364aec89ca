"""Separate Objects and Make Rig scenarios against the real `bpy` module with the add-on installed.

    python rig_scenarios.py SCENARIO --workdir DIR

Each scenario asserts what issue 18's acceptance asks and exits non-zero on failure; the
pytest file tests/test_blender_rig.py runs one process per scenario. No network is needed:
the parts are given as labels (the boxes a mesh is made of).
"""
from __future__ import annotations

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
        assert not [k for k in part.keys() if k.startswith("partfield") and k not in ("partfield_part", "partfield_token")], \
            part.keys()  # (the part marker and the output token only)
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
    # a bare mesh (no UVs, materials, attributes, groups) splits too
    plain, plain_labels = H.mesh_from_parts("Plain", [((0, 0, 0), (1, 1, 1)), ((1, 0, 0), (1, 1, 1))],
                                            materials=False, extras=False)
    bare = writers.write_separate_objects(plain, plain_labels)
    assert [len(p.data.polygons) for p in bare] == [24, 24]


def scenario_separate_big_groups(args):
    """A mesh big enough for the bulk weight read (Geometry Nodes): every part's vertex group
    weights equal the original's, groups without weights on a part stay off it, nothing
    temporary is left behind."""
    H.install_addon()
    H.clear_scene()
    writers, ms = H.addon_module("writers"), H.addon_module("mesh_split")
    bpy.ops.mesh.primitive_uv_sphere_add(segments=256, ring_count=128)
    obj = bpy.context.active_object
    me = obj.data
    nv = len(me.vertices)
    assert nv > ms._GN_READ_MIN_VERTICES
    co = world_vertices(obj)
    rng = np.random.default_rng(0)
    src = {}
    for name in ("spread", "north"):
        g = obj.vertex_groups.new(name=name)
        ids = rng.choice(nv, nv // 2, replace=False) if name == "spread" else np.flatnonzero(co[:, 2] > 0.5)
        w = np.full(nv, np.nan)
        for value in (0.25, 0.5, 0.875):
            sel = ids[(ids % 3) == int(value * 8) % 3]
            g.add(sel.tolist(), value, "REPLACE")
            w[sel] = value
        src[name] = w
    centres = np.empty(len(me.polygons) * 3, np.float32)
    me.polygons.foreach_get("center", centres)
    centres = centres.reshape(-1, 3)
    labels = (centres[:, 2] > 0).astype(int) * 2 + (centres[:, 0] > 0).astype(int)
    n_objects, n_groups = len(bpy.data.objects), len(bpy.data.node_groups)
    bulk = ms._read_weights_geometry_nodes(obj, ["spread", "north"], nv)  # (the path the split takes)
    for name, w in bulk.items():
        assert ((w == src[name]) | (np.isnan(w) & np.isnan(src[name]))).all(), f"bulk read of {name} wrong"
    parts = writers.write_separate_objects(obj, labels)
    bpy.context.view_layer.update()
    assert len(bpy.data.node_groups) == n_groups and len(bpy.data.objects) == n_objects + 4, "temporaries left"
    from scipy.spatial import cKDTree

    tree = cKDTree(co)
    for part in parts:
        dist, match = tree.query(world_vertices(part))
        assert dist.max() < 1e-5, "part vertices moved"
        got = vertex_weights(part)
        south = part["partfield_part"] < 2
        assert ("north" in got) != south, f"part {part['partfield_part']}: groups {sorted(got)}"
        for name, w in got.items():
            ref = src[name][match].astype(np.float32)
            same = (w.astype(np.float32) == ref) | (np.isnan(w) & np.isnan(ref))
            assert same.all(), f"part {part['partfield_part']}: weights of {name} differ"


def polygon_world_centres(obj):
    c = np.empty(len(obj.data.polygons) * 3, np.float32)
    obj.data.polygons.foreach_get("center", c)
    n = np.empty(len(obj.data.polygons) * 3, np.float32)
    obj.data.polygons.foreach_get("normal", n)
    c = c.reshape(-1, 3) + 0.01 * n.reshape(-1, 3)
    mw = np.array(obj.matrix_world)
    return c @ mw[:3, :3].T + mw[:3, 3]


def chain(transform=True):
    obj, labels = H.boxes_chain()
    if transform:
        obj.location = (0.5, -1.0, 0.25)
        obj.rotation_euler = (0.2, 0.0, 0.3)
        obj.scale = (1.0, 1.5, 1.0)
    bpy.context.view_layer.update()
    return obj, labels


def check_chain_bones(obj, arm, labels):
    """Three bones, parented in a chain, each joint at the centre of the shared face (world)."""
    bones = arm.data.bones
    assert len(bones) == 3, f"{len(bones)} bones"
    names = [b.name for b in bones]
    assert sorted(names) == ["Part_01", "Part_02", "Part_03"], names
    assert bones["Part_01"].parent is None
    assert bones["Part_02"].parent.name == "Part_01" and bones["Part_03"].parent.name == "Part_02"
    mw_obj, mw_arm = np.array(obj.matrix_world), np.array(arm.matrix_world)
    for name, local in (("Part_02", (0.5, 0, 0)), ("Part_03", (1.5, 0, 0)), ("Part_01", (0, 0, 0))):
        want = mw_obj @ np.array([*local, 1.0])
        got = mw_arm @ np.array([*bones[name].head_local, 1.0])
        err = np.linalg.norm(got[:3] - want[:3])
        assert err < 0.01, f"{name}: joint {got[:3]} is {err:.4f} from the shared face centre {want[:3]}"
    # bones point away from their heads, along +x of the object, and rolls agree down the chain
    z = [np.array(bones[n].z_axis) for n in ("Part_02", "Part_03")]
    assert np.allclose(z[0], z[1], atol=1e-4), z


def posed_check(arm, before, after_fn, vertex_part):
    """Rotate the middle bone: part 1 (root) stays, parts 2 and 3 move by the bone's pose matrix."""
    rig = H.addon_module("rig")
    rig.pose_bone_rotation(arm, "Part_02", "X", 35.0)
    rig.pose_bone_rotation(arm, "Part_02", "Z", 20.0)
    bpy.context.view_layer.update()
    after = after_fn()
    pb = arm.pose.bones["Part_02"]
    m_arm = arm.matrix_world @ pb.matrix @ pb.bone.matrix_local.inverted() @ arm.matrix_world.inverted()
    m = np.array(m_arm)
    assert not np.allclose(m, np.eye(4), atol=1e-3), "pose did not change the bone"
    expected = before @ m[:3, :3].T + m[:3, 3]
    still = vertex_part == 0
    assert np.abs(after[still] - before[still]).max() < 1e-5, "the root part moved"
    moving = ~still
    err = np.abs(after[moving] - expected[moving]).max()
    assert err < 1e-4, f"middle/end parts do not follow the middle bone (max err {err})"
    head = np.array(arm.matrix_world @ pb.bone.head_local)
    away = np.linalg.norm(before - head, axis=1) > 0.2
    moved = np.linalg.norm(after - before, axis=1) > 1e-3
    assert (moved[moving & away]).all() and not moved[still].any(), "not exactly the middle and end parts moved"
    rig.pose_bone_rotation(arm, "Part_02", "X", -35.0)
    rig.pose_bone_rotation(arm, "Part_02", "Z", -20.0)
    bpy.context.view_layer.update()


def scenario_rig_rigid(args):
    """Three boxes in a chain, rigid binding: three bones, joints at the shared faces, posing the
    middle bone moves exactly the middle and end part objects; world placement unchanged."""
    H.install_addon()
    H.clear_scene()
    rig = H.addon_module("rig")
    obj, labels = chain()
    src_world = world_vertices(obj)
    arm = rig.make_rig(obj, labels, binding="RIGID", root=0)
    bpy.context.view_layer.update()
    check_chain_bones(obj, arm, labels)
    writers = H.addon_module("writers")
    parts = sorted(writers.parts_collection(obj).objects, key=lambda o: o["partfield_part"])
    assert [p.parent for p in parts] == [arm] * 3 and [p.parent_bone for p in parts] == ["Part_01", "Part_02", "Part_03"]
    before = np.concatenate([world_vertices(p) for p in parts])
    vertex_part = np.concatenate([np.full(len(p.data.vertices), p["partfield_part"]) for p in parts])
    # the parts sit exactly where the original's polygons were
    d = np.abs(before[:, None] - src_world[None]).max(axis=2).min(axis=1)
    assert d.max() < 1e-5, f"parenting to bones moved the parts by {d.max()}"
    posed_check(arm, before, lambda: np.concatenate([world_vertices(p) for p in parts]), vertex_part)


def scenario_rig_skinned(args):
    """The same chain, skinned: one object, an Armature modifier, one vertex group per bone;
    posing the middle bone moves exactly the middle and end parts' vertices (depsgraph)."""
    H.install_addon()
    H.clear_scene()
    rig = H.addon_module("rig")
    obj, labels = chain()
    arm = rig.make_rig(obj, labels, binding="SKINNED", root=0)
    bpy.context.view_layer.update()
    check_chain_bones(obj, arm, labels)
    mods = [m for m in obj.modifiers if m.type == "ARMATURE"]
    assert len(mods) == 1 and mods[0].object == arm
    assert sorted(g.name for g in obj.vertex_groups) == ["Part_01", "Part_02", "Part_03"]
    vertex_part = vertex_owner(obj, labels)
    before = world_vertices(obj, evaluated=True)
    assert np.abs(before - world_vertices(obj)).max() < 1e-5, "rest pose deforms the mesh"
    posed_check(arm, before, lambda: world_vertices(obj, evaluated=True), vertex_part)
    # a blend border: vertices near a joint share weights with the parent's bone, summing to 1;
    # running again replaces the groups and the modifier (no piling up)
    arm = rig.make_rig(obj, labels, binding="SKINNED", root=0, border=0.3)
    assert len([m for m in obj.modifiers if m.type == "ARMATURE"]) == 1 and len(obj.vertex_groups) == 3
    # a user group named like a bone is not taken over: the bone gets another name
    rig.remove_rig(obj)
    user = obj.vertex_groups.new(name="Part_02")
    assert user.name == "Part_02"
    user.add([0], 1.0, "REPLACE")
    arm = rig.make_rig(obj, labels, binding="SKINNED", root=0, border=0.3)
    assert "Part_02.rig" in arm.data.bones and obj.vertex_groups.get("Part_02.rig") is not None
    assert [(e.group, e.weight) for e in obj.data.vertices[0].groups if e.group == user.index] == [(user.index, 1.0)]
    obj.vertex_groups.remove(user)
    total = np.zeros(len(obj.data.vertices))
    shared = 0
    ours = {g.index for g in obj.vertex_groups if g.name.startswith("Part_")}
    for v in obj.data.vertices:
        total[v.index] = sum(e.weight for e in v.groups if e.group in ours)
        shared += len(v.groups) > 1
    assert np.allclose(total, 1.0, atol=1e-5) and shared > 0, (total.min(), total.max(), shared)


def rig_state(name):
    obj = bpy.data.objects[name]
    return {
        "armatures": sorted(o.name for o in bpy.data.objects if o.type == "ARMATURE"),
        "objects": len(bpy.data.objects),
        "groups": sorted(g.name for g in obj.vertex_groups),
        "modifiers": [m.type for m in obj.modifiers],
        "hidden": obj.hide_get(),
    }


def scenario_rig_operator(args):
    """Make Rig as the user runs it (after a real compute): one undo step, a second run replaces
    the rig, the active part object picks the root, Clear's Remove Written Parts removes it."""
    H.install_addon()
    H.clear_scene()
    H.use_custom_model(H.make_weights(Path(args.workdir) / "w.safetensors"))
    rig = H.addon_module("rig")
    obj, _ = H.table()
    name = obj.name
    H.activate(obj)
    assert bpy.ops.partfield.compute("EXEC_DEFAULT") == {"FINISHED"}
    obj = bpy.data.objects[name]
    obj.partfield.parts = 4
    storage = H.addon_module("storage")
    labels = storage.load(obj).face_labels(4)
    k = len(np.unique(labels))
    assert "UNDO" in bpy.types.PARTFIELD_OT_make_rig.bl_options
    bpy.ops.ed.undo_push(message="before rig")
    before = rig_state(name)
    assert bpy.ops.partfield.make_rig("EXEC_DEFAULT", True, binding="SKINNED") == {"FINISHED"}
    obj = bpy.data.objects[name]
    arm = rig.rig_of(obj)
    assert arm is not None and len(arm.data.bones) == k, "one bone per part"
    once = rig_state(name)
    assert len(once["armatures"]) == 1 and "ARMATURE" in once["modifiers"]
    # again, rigid this time: replaces the skinned rig (no second armature, modifier and groups gone)
    H.activate(obj)
    assert bpy.ops.partfield.make_rig("EXEC_DEFAULT", True, binding="RIGID") == {"FINISHED"}
    obj = bpy.data.objects[name]
    twice = rig_state(name)
    assert len(twice["armatures"]) == 1 and "ARMATURE" not in twice["modifiers"], twice
    assert twice["groups"] == before["groups"], twice
    # the active part object picks the root
    writers = H.addon_module("writers")
    parts = sorted(writers.parts_collection(obj).objects, key=lambda o: o["partfield_part"])
    smallest = min(parts, key=lambda p: len(p.data.polygons))
    H.activate(smallest)
    want = writers.part_names(int(labels.max()) + 1)[int(smallest["partfield_part"])]
    assert bpy.ops.partfield.make_rig("EXEC_DEFAULT", True, binding="RIGID") == {"FINISHED"}
    obj = bpy.data.objects[name]
    arm = rig.rig_of(obj)
    roots = [b for b in arm.data.bones if b.parent is None]
    assert len(roots) == 1 and roots[0].name == want, (roots, want)
    assert len(rig_state(name)["armatures"]) == 1
    # undo the three runs: back to before
    for _ in range(3):
        bpy.ops.ed.undo()
    assert rig_state(name) == before, f"undo did not restore: {rig_state(name)} vs {before}"
    # Clear's Remove Written Parts removes the rig (and its parts)
    obj = bpy.data.objects[name]
    H.activate(obj)
    # the panel shows Make Rig, and Remove Written Parts once a rig exists
    assert "Make Rig" in panel_texts() and "Remove Written Parts" not in panel_texts()
    assert bpy.ops.partfield.make_rig("EXEC_DEFAULT", True, binding="SKINNED") == {"FINISHED"}
    assert "Remove Written Parts" in panel_texts()
    arm = rig.rig_of(obj)
    assert arm.get("partfield_token") == obj.get("partfield_output_token") is not None, "rig not token-marked"
    # a look-alike the add-on did not make (no token) is left alone by Clear
    fake = bpy.data.objects.new("User Rig", bpy.data.armatures.new("User Rig"))
    bpy.context.scene.collection.objects.link(fake)
    fake["partfield_rig_source"] = obj
    assert bpy.ops.partfield.clear("EXEC_DEFAULT", True, outputs=True) == {"FINISHED"}
    obj = bpy.data.objects[name]
    after = rig_state(name)
    assert after["armatures"] == ["User Rig"] and "ARMATURE" not in after["modifiers"] and after["groups"] == [], after
    assert [a.name for a in bpy.data.armatures] == ["User Rig"], "armature data left behind"


def panel_texts():
    return H.panel_texts()


def scenario_gltf(args):
    """A skinned rig exports to .glb and re-imports with the skin and the same bone count."""
    H.install_addon()
    H.clear_scene()
    rig = H.addon_module("rig")
    obj, labels = chain(transform=False)
    arm = rig.make_rig(obj, labels, binding="SKINNED", root=0)
    H.activate(obj, [arm])
    path = str(Path(args.workdir) / "rig.glb")
    assert bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True) == {"FINISHED"}
    rest = world_vertices(obj, evaluated=True)
    H.clear_scene()
    for a in list(bpy.data.armatures):
        bpy.data.armatures.remove(a)
    assert bpy.ops.import_scene.gltf(filepath=path) == {"FINISHED"}
    arms = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    shapes = {pb.custom_shape for a in arms for pb in a.pose.bones}  # (the importer's bone display shapes)
    meshes = [o for o in bpy.data.objects if o.type == "MESH" and o not in shapes]
    assert len(arms) == 1 and len(arms[0].data.bones) == 3, [(a.name, len(a.data.bones)) for a in arms]
    assert len(meshes) == 1, meshes
    me_obj = meshes[0]
    skin = [m for m in me_obj.modifiers if m.type == "ARMATURE" and m.object == arms[0]]
    assert skin, "re-imported mesh has no skin (Armature modifier)"
    assert sorted(g.name for g in me_obj.vertex_groups) == sorted(b.name for b in arms[0].data.bones)
    # the skin works: posing the re-imported middle bone moves the end box, not the first
    bpy.context.view_layer.update()
    before = world_vertices(me_obj, evaluated=True)
    key = lambda a: {tuple(r) for r in np.round(a, 4).tolist()}  # noqa: E731  (glTF splits vertices at UV seams)
    assert key(before) == key(rest), "re-imported rest pose differs"
    rig.pose_bone_rotation(arms[0], "Part_02", "X", 40.0)
    bpy.context.view_layer.update()
    after = world_vertices(me_obj, evaluated=True)
    moved = np.linalg.norm(after - before, axis=1) > 1e-3
    x = before[:, 0]
    assert not moved[x < 0.45].any() and moved[x > 1.6].all(), "re-imported skin does not follow the bones"

    # the rigid binding exports too: the part objects come back parented to their bones
    H.clear_scene()
    for a in list(bpy.data.armatures):
        bpy.data.armatures.remove(a)
    obj, labels = chain(transform=False)
    arm = rig.make_rig(obj, labels, binding="RIGID", root=0)
    H.activate(arm, rig.export_objects(obj)[1:])
    path = str(Path(args.workdir) / "rig_rigid.glb")
    assert bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True) == {"FINISHED"}
    H.clear_scene()
    for a in list(bpy.data.armatures):
        bpy.data.armatures.remove(a)
    assert bpy.ops.import_scene.gltf(filepath=path) == {"FINISHED"}
    arms = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    shapes = {pb.custom_shape for a in arms for pb in a.pose.bones}
    meshes = [o for o in bpy.data.objects if o.type == "MESH" and o not in shapes]
    assert len(arms) == 1 and len(arms[0].data.bones) == 3 and len(meshes) == 3
    assert sorted(m.parent_bone for m in meshes) == ["Part_01", "Part_02", "Part_03"], \
        [(m.name, m.parent, m.parent_type, m.parent_bone) for m in meshes]


def scenario_batch_glb(args):
    """`batch.py --export glb,labels --rig` on a table (OBJ, bundled model): the .glb re-imports
    with an armature of one bone per part and a skinned mesh."""
    import json
    import os
    import subprocess

    work = Path(args.workdir)
    table_obj = work / "table.obj"
    lines = []
    base = 1
    parts = [((0, 0, 1.0), (2.0, 1.2, 0.1))] + [((sx * 0.85, sy * 0.45, 0.475), (0.1, 0.1, 0.95))
                                               for sx in (-1, 1) for sy in (-1, 1)]
    for c, size in parts:
        v, quads = H._box(c, size, subdiv=4)
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
        lines += ["f " + " ".join(str(base + i) for i in q) for q in quads]
        base += len(v)
    table_obj.write_text("\n".join(lines) + "\n")
    env = dict(os.environ)
    env.pop("BLENDER_USER_RESOURCES", None)
    out = work / "out"
    cmd = [sys.executable, str(H.REPO_ROOT / "partfield_blender" / "batch.py"), "--", str(table_obj), "-o", str(out),
           "-k", "5", "--export", "glb,labels", "--rig", "--device", "cpu", "--threads", "1", "--points", "2000"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    glb = out / "table_k5.glb"
    assert glb.exists(), sorted(p.name for p in out.iterdir())
    k = len(np.unique(np.load(out / "table_k5.labels.npy")))
    H.clear_scene()
    assert bpy.ops.import_scene.gltf(filepath=str(glb)) == {"FINISHED"}
    arms = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    shapes = {pb.custom_shape for a in arms for pb in a.pose.bones}
    meshes = [o for o in bpy.data.objects if o.type == "MESH" and o not in shapes]
    assert len(arms) == 1 and len(arms[0].data.bones) == k, ([len(a.data.bones) for a in arms], k)
    assert len(meshes) == 1 and any(m.type == "ARMATURE" and m.object == arms[0] for m in meshes[0].modifiers)
    assert len(meshes[0].vertex_groups) == k
    print("batch:", json.dumps({"bones": k}))


SCENARIOS = {
    "separate_keeps": scenario_separate_keeps,
    "separate_big_groups": scenario_separate_big_groups,
    "rig_rigid": scenario_rig_rigid,
    "rig_skinned": scenario_rig_skinned,
    "rig_operator": scenario_rig_operator,
    "gltf": scenario_gltf,
    "batch_glb": scenario_batch_glb,
}


def main():
    H.run_scenario_main(SCENARIOS)


if __name__ == "__main__":
    main()
