"""The "PartField" tab in the 3D view sidebar."""
from __future__ import annotations

import bpy
from bpy.types import Panel

from . import jobs, storage, writers
from .operators import is_running, target_objects


class VIEW3D_PT_partfield(Panel):
    bl_idname = "VIEW3D_PT_partfield"
    bl_label = "PartField"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PartField"

    def draw(self, context):
        from .preferences import describe_lines, get_preferences, model_problem

        layout = self.layout
        prefs = get_preferences(context)
        scene_props = context.scene.partfield
        runtime = context.window_manager.partfield

        # Model line.
        col = layout.column(align=True)
        col.label(text=describe_lines(prefs)[0].replace("Active model: ", ""), icon="NETWORK_DRIVE")
        problem = model_problem(prefs)
        if problem:
            col.label(text="No model available:", icon="ERROR")
            col.label(text=problem)
            col.operator("preferences.addon_show", text="Open Preferences", icon="PREFERENCES").module = __package__

        obj = context.view_layer.objects.active
        meshes = [o for o in target_objects(context) if o.type == "MESH"]
        layout.separator()
        if not meshes:
            layout.label(text="Select a mesh object to segment.", icon="INFO")
            return
        why = jobs.object_problem(obj) if obj is not None and obj.type == "MESH" else None
        if why:
            layout.label(text=why, icon="INFO")

        # Compute.
        col = layout.column(align=True)
        row = col.row(align=True)
        row.prop(scene_props, "use_modifiers")
        row.prop(scene_props, "all_selected", text="All Selected")
        if runtime.running or is_running():
            if hasattr(col, "progress"):
                col.progress(factor=runtime.progress, type="BAR", text=f"{runtime.stage} {runtime.progress * 100:.0f}%")
            else:
                col.prop(runtime, "progress", text=runtime.stage, slider=True)
            col.label(text="Esc cancels.", icon="CANCEL")
        else:
            row = col.row()
            row.scale_y = 1.4
            row.enabled = problem is None
            n = len(meshes)
            row.operator("partfield.compute", text="Compute PartField" + (f" ({n} objects)" if n > 1 else ""), icon="PLAY")

        # Result, slider, output.
        if obj is None or obj.type != "MESH":
            return
        box = layout.box()
        if not storage.has_result(obj):
            box.label(text="No result yet: press Compute PartField.", icon="INFO")
            return
        damaged = storage.problem(obj)
        if damaged:  # a broken or tampered stored result: say so, offer what fixes it
            box.label(text="The stored PartField result cannot be used:", icon="ERROR")
            for line in _wrap(damaged):
                box.label(text=line)
            row = box.row(align=True)
            row.operator("partfield.compute", text="Compute Again", icon="PLAY")
            row.operator("partfield.clear", text="Clear", icon="X")
            if writers.has_outputs(obj):
                box.operator("partfield.clear", text="Remove Written Parts", icon="TRASH").outputs = True
            return
        stale = storage.is_stale(obj, cached=True)
        if stale:
            box.label(text="Mesh changed since the compute: compute again.", icon="ERROR")
        col = box.column()
        col.enabled = not stale and obj.mode != "EDIT"
        col.prop(obj.partfield, "parts", slider=True)
        m = storage.meta(obj)
        if m.get("suggested_parts"):
            col.label(text=f"Suggested: {m['suggested_parts']} parts", icon="LIGHT")
        col.label(text=f"{m.get('base_polygons', 0)} faces; model {m.get('model_name', '?')}", icon="MESH_DATA")
        col.operator("partfield.preview", icon="HIDE_OFF")
        col.separator()
        col.prop(scene_props, "output", text="")
        row = col.row(align=True)
        row.operator("partfield.apply", text="Apply", icon="CHECKMARK")
        row.operator("partfield.clear", text="Clear", icon="X")
        # Make Rig (rig_operators.py)
        rig_row = col.row(align=True)
        rig_row.prop(scene_props, "rig_binding", text="")
        op = rig_row.operator("partfield.make_rig", text="Make Rig", icon="ARMATURE_DATA")
        op.binding = scene_props.rig_binding
        from .rig import rig_of

        if writers.has_outputs(obj) or rig_of(obj) is not None:
            col.operator("partfield.clear", text="Remove Written Parts", icon="TRASH").outputs = True
        if not stale:  # part edits (Object and Edit Mode): edit_operators.py
            from .edit_operators import draw_panel as draw_edit_parts

            draw_edit_parts(box, context, obj)


def _wrap(text: str, width: int = 48) -> list[str]:
    """`text` in lines of about `width` characters (labels do not wrap)."""
    import textwrap

    return textwrap.wrap(text, width) or [text]


classes = (VIEW3D_PT_partfield,)
