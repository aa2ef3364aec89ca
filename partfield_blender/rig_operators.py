"""The Make Rig operator: an armature from the current parts (one undo step; re-running replaces it)."""
from __future__ import annotations

from bpy.props import EnumProperty, FloatProperty, IntProperty
from bpy.types import Operator

from . import jobs, rig, storage, writers

BINDING_ITEMS = (
    ("RIGID", "Rigid", "Separate part objects, each parented to its bone"),
    ("SKINNED", "Skinned", "The original mesh with an Armature modifier and one vertex group per bone"),
)


def source_and_root(context):
    """(source mesh object, root part label or None) for the active object: a mesh with a
    result, or one of its part objects (which then picks the root)."""
    active = context.view_layer.objects.active if context.view_layer else None
    if active is None:
        return None, None
    for coll in active.users_collection:
        src = coll.get(writers._SOURCE_KEY)
        if src is not None and "partfield_part" in active and writers.parts_collection(src) == coll:
            return src, int(active["partfield_part"])
    if active.type == "ARMATURE" and active.get(rig.RIG_SOURCE_KEY) is not None:
        return active[rig.RIG_SOURCE_KEY], None
    return active, None


class PARTFIELD_OT_make_rig(Operator):
    """Build an armature with one bone per part: joints where parts touch, the root at the largest part (or the active part object)"""

    bl_idname = "partfield.make_rig"
    bl_label = "Make Rig"
    bl_options = {"REGISTER", "UNDO"}

    binding: EnumProperty(name="Binding", items=BINDING_ITEMS, default="RIGID",
                          description="How the mesh follows the bones")
    root_part: IntProperty(name="Root Part", default=0, min=0, soft_max=32,
                           description="Part number (1 = Part_01) of the root bone; 0: the active part "
                                       "object, else the largest part")
    border: FloatProperty(name="Blend Border", default=0.0, min=0.0, soft_max=1.0, subtype="DISTANCE",
                          description="Skinned: width over which weights blend between a bone and its "
                                      "parent at their joint (0: weight 1 inside each part)")

    def execute(self, context):
        obj, picked_root = source_and_root(context)
        if obj is None:
            self.report({"WARNING"}, "No active object: select a mesh object with a PartField result.")
            return {"CANCELLED"}
        problem = jobs.object_problem(obj)
        if problem is None and not storage.has_result(obj):
            problem = f"'{obj.name}' has no PartField result: run Compute PartField first."
        if problem is None and storage.is_stale(obj):
            problem = f"'{obj.name}' was edited after the compute: run Compute PartField again."
        if problem is None and context.mode != "OBJECT":
            problem = "Switch to Object Mode first."
        if problem:
            self.report({"WARNING"}, problem)
            return {"CANCELLED"}
        stored = storage.load(obj)
        k = max(1, min(obj.partfield.parts, jobs.max_parts(stored)))
        labels = stored.face_labels(k)
        root = self.root_part - 1 if self.root_part > 0 else picked_root
        if root is not None and not (labels == root).any():
            self.report({"WARNING"}, f"There is no part {root + 1} at {k} parts.")
            return {"CANCELLED"}
        wm = context.window_manager
        big = len(labels) > 50_000
        if big:
            wm.progress_begin(0, 100)
        try:
            arm = rig.make_rig(obj, labels, root=root, binding=self.binding, border=self.border,
                               progress=(lambda f: wm.progress_update(int(100 * f))) if big else None)
        except (ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Make Rig failed: {exc}")
            return {"CANCELLED"}
        finally:
            if big:
                wm.progress_end()
        self.report({"INFO"}, f"'{arm.name}': {len(arm.data.bones)} bones, {self.binding.lower()} binding.")
        return {"FINISHED"}


classes = (PARTFIELD_OT_make_rig,)
