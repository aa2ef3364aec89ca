"""Make Rig: an armature with one bone per part, bound rigidly (part objects parented to bones)
or skinned (the original mesh, an Armature modifier and one vertex group per bone).

The geometry (contacts, hierarchy, head/tail/roll, weights) comes from
`model_runtime.rig_layout`; this module only builds Blender data. What it makes carries the
same marker as the writers' outputs (the source object's output token, `writers.output_token`),
so that a later run, or Clear's "Remove Written Parts", removes exactly that and nothing else:
- the armature object: `["partfield_rig_source"]` = the source mesh object (an ID pointer,
  like the parts collection's `["partfield_source"]`), `["partfield_token"]` = the source's
  output token, and `["partfield_rig_binding"]`;
- rigid: the part objects are the Separate Objects writer's (parts collection, token-marked);
- skinned: the source's `["partfield_rig_groups"]` = {"token", "names"} lists the vertex groups
  it got (like `["partfield_vertex_groups"]`), and its Armature modifier is the one whose object
  is the marked armature.
"""
from __future__ import annotations

import numpy as np

from .mesh_split import RIG_GROUPS_KEY

RIG_SOURCE_KEY = "partfield_rig_source"
RIG_BINDING_KEY = "partfield_rig_binding"
MODIFIER_NAME = "PartField Rig"
BINDINGS = ("RIGID", "SKINNED")


def rig_of(obj):
    """The armature object Make Rig made for `obj` (source pointer and output token match), or None."""
    import bpy

    from . import writers

    token = writers.output_token(obj)
    if token is None:
        return None
    for o in bpy.data.objects:
        if o.type == "ARMATURE" and o.get(RIG_SOURCE_KEY) == obj and o.get(writers._OUTPUT_TOKEN_KEY) == token:
            return o
    return None


def _listed_groups(obj) -> tuple[list[str], bool]:
    """(group names the skinned-rig marker lists, whether it carries the object's token)."""
    from . import writers

    marker = obj.get(RIG_GROUPS_KEY)
    if not hasattr(marker, "to_dict"):
        return [], False
    marker = marker.to_dict()
    names = [n for n in marker.get("names", []) if isinstance(n, str)]
    token = writers.output_token(obj)
    return names, token is not None and marker.get("token") == token


def rig_groups(obj) -> list[str]:
    """Vertex groups on `obj` that Make Rig (skinned) provably wrote."""
    names, ours = _listed_groups(obj)
    return [n for n in names if obj.vertex_groups.get(n) is not None] if ours else []


def remove_rig(obj, kept: list | None = None) -> int:
    """Remove what Make Rig made for `obj` (armature, its modifier and vertex groups, and for a
    rigid rig the part objects). Returns how many things were removed; groups the marker lists
    but cannot prove ours stay and are appended to `kept`."""
    import bpy

    from . import writers

    removed = 0
    arm = rig_of(obj)
    for mod in list(obj.modifiers):
        if mod.type == "ARMATURE" and arm is not None and mod.object == arm:
            obj.modifiers.remove(mod)
            removed += 1
    listed, ours = _listed_groups(obj)
    for name in listed:
        group = obj.vertex_groups.get(name)
        if group is None:
            continue
        if ours:
            obj.vertex_groups.remove(group)
            removed += 1
        elif kept is not None:
            kept.append(name)
    if RIG_GROUPS_KEY in obj:
        del obj[RIG_GROUPS_KEY]
    if arm is not None:
        if arm.get(RIG_BINDING_KEY) == "RIGID":
            removed += writers.remove_separate_objects(obj, kept=kept)
        data = arm.data
        bpy.data.objects.remove(arm)
        if data is not None and data.users == 0:
            bpy.data.armatures.remove(data)
        removed += 1
    return removed


def _mesh_arrays(obj):
    from model_runtime.mesh import MeshArrays

    from .mesh_split import read_topology

    a = read_topology(obj.data)
    return MeshArrays(a["vertices"], a["loop_starts"], a["loop_totals"], a["loop_vertices"])


def _edit_bones(arm_obj, layout, names):
    """Create the bones in Edit Mode of `arm_obj` (any Blender context, background included)."""
    import bpy
    from mathutils import Vector

    view_layer = bpy.context.view_layer
    previous = view_layer.objects.active
    with bpy.context.temp_override(active_object=arm_obj, object=arm_obj, selected_objects=[arm_obj],
                                   selected_editable_objects=[arm_obj]):
        view_layer.objects.active = arm_obj
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            eb = arm_obj.data.edit_bones
            made = []
            for i in range(len(layout.parts)):
                bone = eb.new(names[i])
                bone.head = Vector(layout.head[i].tolist())
                bone.tail = Vector(layout.tail[i].tolist())
                bone.align_roll(Vector(layout.z_axis[i].tolist()))
                bone.use_deform = True
                made.append(bone)
            for i, p in enumerate(layout.parent):
                if p >= 0:
                    made[i].parent = made[p]
                    made[i].use_connect = False
            names_out = [b.name for b in made]
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = previous
    return names_out


def _copy_placement(src, dst) -> None:
    dst.parent = src.parent
    dst.parent_type = src.parent_type
    if src.parent_type == "BONE":
        dst.parent_bone = src.parent_bone
    dst.matrix_parent_inverse = src.matrix_parent_inverse.copy()
    dst.rotation_mode = src.rotation_mode
    dst.matrix_basis = src.matrix_basis.copy()


def make_rig(obj, labels, names: list[str] | None = None, root: int | None = None, binding: str = "RIGID",
             border: float = 0.0, progress=None):
    """Build the rig of `obj` cut by `labels` (one per polygon); replaces an earlier one.

    root: the part label of the root bone (None: the largest part). border: skinned only, the
    width (object units) over which weights blend between a bone and its parent (0: none).
    Returns the armature object."""
    import bpy
    from mathutils import Matrix

    from model_runtime.rig_layout import rig_layout, skin_weights

    from . import writers

    if binding not in BINDINGS:
        raise ValueError(f"binding must be one of {BINDINGS}, not {binding!r}")
    labels = writers._check_labels(obj, labels)
    k = writers._num_parts(labels)
    names = list(names) if names else writers.part_names(k)
    step = progress or (lambda _f: None)
    step(0.0)
    mesh = _mesh_arrays(obj)
    layout = rig_layout(mesh, labels, root=root)
    step(0.3)
    remove_rig(obj)

    arm_data = bpy.data.armatures.new(f"{obj.name} Rig")
    arm = bpy.data.objects.new(f"{obj.name} Rig", arm_data)
    for coll in (list(obj.users_collection) or [bpy.context.scene.collection]):
        coll.objects.link(arm)
    arm[RIG_SOURCE_KEY] = obj
    arm[writers._OUTPUT_TOKEN_KEY] = writers.output_token(obj, create=True)
    arm[RIG_BINDING_KEY] = binding
    arm.show_in_front = True
    _copy_placement(obj, arm)
    try:
        wanted = [names[p] for p in layout.parts]
        if binding == "SKINNED":  # a bone deforms the vertex group of its name: never a user's group
            writers.remove_vertex_groups(obj)  # (the Vertex Groups writer's: the rig's groups replace them)
            wanted = [n if obj.vertex_groups.get(n) is None else f"{n}.rig" for n in wanted]
        bone_names = _edit_bones(arm, layout, wanted)
    except RuntimeError:  # (Edit Mode refused, e.g. the collection is hidden): leave nothing half-made
        bpy.data.objects.remove(arm)
        bpy.data.armatures.remove(arm_data)
        raise
    step(0.5)

    if binding == "RIGID":
        parts = writers.write_separate_objects(obj, labels, names, progress=lambda f: step(0.5 + 0.5 * f))
        bone_of = {int(p): bone_names[i] for i, p in enumerate(layout.parts)}
        to_obj_space = obj.matrix_basis.inverted()
        for part in parts:
            local = to_obj_space @ part.matrix_basis  # the part's placement inside the object
            bone = arm.data.bones[bone_of[int(part["partfield_part"])]]
            part.parent = arm
            part.parent_type = "BONE"
            part.parent_bone = bone.name
            part.matrix_parent_inverse = (bone.matrix_local @ Matrix.Translation((0.0, bone.length, 0.0))).inverted()
            part.matrix_basis = local
    else:
        made = []
        for i, (vid, w) in enumerate(skin_weights(mesh, labels, layout, border=border)):
            group = obj.vertex_groups.new(name=bone_names[i])
            made.append(group.name)
            values, which = np.unique(w, return_inverse=True)
            for j, value in enumerate(values.tolist()):
                group.add(vid[which == j].tolist(), value, "REPLACE")
        obj[RIG_GROUPS_KEY] = {"token": writers.output_token(obj, create=True), "names": made}
        mod = obj.modifiers.new(MODIFIER_NAME, "ARMATURE")
        mod.object = arm
        mod.use_vertex_groups, mod.use_bone_envelopes = True, False
        if len(obj.modifiers) > 1:
            obj.modifiers.move(len(obj.modifiers) - 1, 0)
        writers._set_hidden(obj, False)
        step(1.0)
    return arm


def pose_bone_rotation(arm, bone_name: str, axis: str, degrees: float) -> None:
    """Rotate a pose bone about its local axis (tests, README image)."""
    import math

    pb = arm.pose.bones[bone_name]
    pb.rotation_mode = "XYZ"
    rot = list(pb.rotation_euler)
    rot["XYZ".index(axis)] += math.radians(degrees)
    pb.rotation_euler = rot


def batch_rig(objs, labels_by_name: dict, binding: str = "skinned") -> list:
    """Batch `--rig`: make (replace) the rig of every object; returns the armatures."""
    return [make_rig(obj, labels_by_name[obj.name], binding=binding.upper()) for obj in objs]


def export_objects(obj) -> list:
    """What a .glb / .fbx export of `obj`'s rig selects: the armature and the bound meshes."""
    from . import writers

    arm = rig_of(obj)
    if arm is None:
        return []
    if arm.get(RIG_BINDING_KEY) == "RIGID":
        coll = writers.parts_collection(obj)
        return [arm] + (list(coll.objects) if coll is not None else [])
    return [arm, obj]
