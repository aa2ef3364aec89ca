"""Local edits of the part tree from the face selection: Split Part, Merge Parts, Select Part,
Select Similar Parts, Similarity Preview, Clear Part Edits. Object Mode (the mesh's stored face
selection and active face) and Edit Mode (the live selection) alike.

The logic is `model_runtime.part_edits`; edits live in the object's ID properties
(`storage.write_edits`), so each operator is one undo step and they are saved with the .blend.
Face selections are read and written in Object Mode with foreach_get/foreach_set: in Edit Mode
the operators leave it for that and come back, except Split, Merge and Clear Edits, which end in
Object Mode when they change the edits (see `_EditBase.stays_in_edit_mode`).
"""
from __future__ import annotations

import bpy
import numpy as np
from bpy.props import FloatProperty, IntProperty
from bpy.types import Operator

from . import jobs, preview, storage

DEFAULT_SIMILARITY = 0.35  # = model_runtime.part_edits.DEFAULT_SIMILARITY (not imported at register)


def face_selection(me) -> tuple[np.ndarray, int]:
    """(selected polygon indices, active polygon or -1) of a mesh in Object Mode."""
    sel = np.zeros(len(me.polygons), bool)
    me.polygons.foreach_get("select", sel)
    active = me.polygons.active
    return np.flatnonzero(sel), (int(active) if 0 <= active < len(me.polygons) else -1)


def select_faces(me, faces) -> None:
    """Select exactly the polygons `faces` (and their edges and vertices)."""
    npoly = len(me.polygons)
    sel = np.zeros(npoly, bool)
    sel[np.asarray(faces, np.int64)] = True
    totals = np.empty(npoly, np.int32)
    me.polygons.foreach_get("loop_total", totals)
    loop_sel = np.repeat(sel, totals)
    lv = np.empty(len(me.loops), np.int32)
    le = np.empty(len(me.loops), np.int32)
    me.loops.foreach_get("vertex_index", lv)
    me.loops.foreach_get("edge_index", le)
    vsel = np.zeros(len(me.vertices), bool)
    vsel[lv[loop_sel]] = True
    esel = np.zeros(len(me.edges), bool)
    esel[le[loop_sel]] = True
    from .mesh_data import typed_attribute

    # Through the selection attributes: a mesh made by from_pydata can carry a ".select_edge" of
    # another type, and `me.edges.foreach_set("select", ...)` then crashes bpy 5.0.
    for name, domain, values in ((".select_vert", "POINT", vsel), (".select_edge", "EDGE", esel),
                                 (".select_poly", "FACE", sel)):
        typed_attribute(me, name, "BOOLEAN", domain).data.foreach_set("value", values)
    me.update()


def paint_faces(obj, face_colors) -> None:
    """Write per-polygon RGBA colours into the preview attribute (the slider's attribute)."""
    from .mesh_data import loop_polygons

    me = obj.data
    attr = preview.ensure_attribute(me)
    attr.data.foreach_set("color", np.asarray(face_colors, np.float32)[loop_polygons(me)].ravel())
    me.update_tag()


class _PartContext:
    """What an edit operator needs: the stored result, the slider's k and the parts shown."""

    def __init__(self, obj, stored):
        self.obj, self.stored = obj, stored
        self.k = max(1, min(int(obj.partfield.parts), jobs.max_parts(stored)))
        self.face_labels = stored.face_labels(self.k)  # per base polygon, edits applied

    def result_face(self, face: int) -> int:
        fm = self.stored.face_map
        return int(fm[face]) if fm is not None else int(face)

    def cut(self):
        from model_runtime.part_edits import apply_edits

        return apply_edits(self.stored.result.tree, self.k, self.stored.edits)

    def save(self, edits) -> int:
        """Store `edits`, recolour the preview; returns the part count now shown."""
        storage.write_edits(self.obj, self.stored, edits)
        labels = self.stored.face_labels(self.k)
        preview.recolor(self.obj, labels)
        if bpy.context.scene is not None and not preview.is_previewing(bpy.context.scene):
            preview.show_attribute_shading(bpy.context.scene)
        return int(labels.max()) + 1 if len(labels) else 0


class _EditBase(Operator):
    bl_options = {"REGISTER", "UNDO"}
    # Operators that change the edits end in Object Mode: Blender's Edit Mode undo steps hold the
    # edit mesh only, not object ID properties, so only an Object Mode step undoes an edit (and
    # the part colours are an Object Mode display). Selection operators stay in Edit Mode.
    stays_in_edit_mode = True

    face: IntProperty(
        name="Face", default=-1, min=-1, options={"SKIP_SAVE"},
        description="Polygon to act on (-1: the selected faces, else the active face)",
    )

    @classmethod
    def poll(cls, context):
        obj = context.view_layer.objects.active if context.view_layer else None
        if obj is None or obj.type != "MESH" or not storage.has_result(obj):
            cls.poll_message_set("The active object has no PartField result: run Compute PartField first.")
            return False
        return True

    def execute(self, context):
        obj = context.view_layer.objects.active
        self._was_edit = obj.mode == "EDIT"
        if self._was_edit:
            bpy.ops.object.mode_set(mode="OBJECT")  # mesh data in sync with the edit mesh
        result = {"CANCELLED"}
        try:
            result = self._run(context, obj)
        finally:
            if self._was_edit and (self.stays_in_edit_mode or result != {"FINISHED"}):
                bpy.ops.object.mode_set(mode="EDIT")
        return result

    def _run(self, context, obj):
        from model_runtime.part_edits import EditError

        if storage.is_stale(obj):
            self.report({"WARNING"}, f"'{obj.name}' was edited after the compute: run Compute PartField again.")
            return {"CANCELLED"}
        pc = _PartContext(obj, storage.load(obj))
        selected, active = face_selection(obj.data)
        if self.face >= 0:
            if self.face >= len(obj.data.polygons):
                self.report({"WARNING"}, f"There is no face {self.face}.")
                return {"CANCELLED"}
            selected, active = np.array([self.face]), self.face
        try:
            return self.act(context, pc, selected, active)
        except EditError as exc:
            self.report({"WARNING"}, str(exc))
            return {"CANCELLED"}

    def touched_parts(self, pc, selected, active) -> list:
        """Parts under the selected faces, else the active face's part (result labels)."""
        faces = selected if len(selected) else ([active] if active >= 0 else [])
        return sorted({int(x) for x in np.unique(pc.face_labels[np.asarray(faces, np.int64)])})

    def act(self, context, pc, selected, active):  # pragma: no cover - overridden
        raise NotImplementedError


class PARTFIELD_OT_split_part(_EditBase):
    """Replace the part under the selected faces (or the active face) by its two children in the part tree; repeat to go deeper in that branch only. A merged part splits back into what was merged"""

    bl_idname = "partfield.split_part"
    bl_label = "Split Part"
    stays_in_edit_mode = False

    def act(self, context, pc, selected, active):
        from model_runtime.part_edits import apply_edits, split_edit

        parts = self.touched_parts(pc, selected, active)
        if not parts:
            self.report({"WARNING"}, "Select a face of the part to split.")
            return {"CANCELLED"}
        tree, edits = pc.stored.result.tree, list(pc.stored.edits)
        cut = pc.cut()
        targets = [cut.groups[p] for p in parts]
        for nodes in targets:  # by nodes: labels may move as earlier targets split
            now = apply_edits(tree, pc.k, edits)
            if nodes in now.groups:
                edits = split_edit(tree, pc.k, edits, now.groups.index(nodes))
        shown = pc.save(edits)
        self.report({"INFO"}, f"Split {len(targets)} part(s): {shown} parts.")
        return {"FINISHED"}


class PARTFIELD_OT_merge_parts(_EditBase):
    """Merge the parts touched by the selected faces into one part"""

    bl_idname = "partfield.merge_parts"
    bl_label = "Merge Parts"
    stays_in_edit_mode = False

    def act(self, context, pc, selected, active):
        from model_runtime.part_edits import merge_edit

        parts = self.touched_parts(pc, selected, active)
        if len(parts) < 2:
            self.report({"WARNING"}, "Select faces of at least two parts to merge.")
            return {"CANCELLED"}
        shown = pc.save(merge_edit(pc.stored.result.tree, pc.k, pc.stored.edits, parts))
        self.report({"INFO"}, f"Merged {len(parts)} parts: {shown} parts.")
        return {"FINISHED"}


class _SelectBase(_EditBase):
    def select(self, context, pc, faces) -> None:
        """Select exactly `faces`; from Edit Mode the select mode becomes Face, or the vertex
        flush on the way back would add neighbouring parts' faces whose corners are all selected."""
        select_faces(pc.obj.data, faces)
        if self._was_edit:
            context.tool_settings.mesh_select_mode = (False, False, True)

    def seed_parts(self, pc, selected, active) -> list:
        if active >= 0 and (self.face >= 0 or active in set(selected.tolist()) or not len(selected)):
            return [int(pc.face_labels[active])]
        return self.touched_parts(pc, selected, active)


class PARTFIELD_OT_select_part(_SelectBase):
    """Select every face of the part(s) under the active face (or the selected faces)"""

    bl_idname = "partfield.select_part"
    bl_label = "Select Part"

    def act(self, context, pc, selected, active):
        parts = self.seed_parts(pc, selected, active)
        if not parts:
            self.report({"WARNING"}, "Select a face of a part first.")
            return {"CANCELLED"}
        faces = np.flatnonzero(np.isin(pc.face_labels, parts))
        self.select(context, pc, faces)
        self.report({"INFO"}, f"Selected {len(faces)} faces of {len(parts)} part(s).")
        return {"FINISHED"}


class PARTFIELD_OT_select_similar(_SelectBase):
    """Select the faces of every part whose features are close to the active face's part (a chair's legs, both arms)"""

    bl_idname = "partfield.select_similar"
    bl_label = "Select Similar Parts"

    threshold: FloatProperty(
        name="Similarity", default=DEFAULT_SIMILARITY, min=0.0, max=1.0, subtype="FACTOR",
        description="How alike a part must be: 1 = only the part itself, 0 = every part. Part features are "
                    "compared by cosine, rescaled so the least similar part of the object scores 0",
    )

    def act(self, context, pc, selected, active):
        from model_runtime.part_edits import similar_parts

        seeds = self.seed_parts(pc, selected, active)
        if not seeds:
            self.report({"WARNING"}, "Select a face of a part first.")
            return {"CANCELLED"}
        cut = pc.cut()  # labels per result polygon (the evaluated mesh); same part numbers as face_labels
        found = set()
        for seed in seeds:
            found |= set(similar_parts(pc.stored.result.features, cut.labels, seed, self.threshold,
                                       cut.num_parts).tolist())
        parts = sorted(found)
        faces = np.flatnonzero(np.isin(pc.face_labels, parts))
        self.select(context, pc, faces)
        self.report({"INFO"}, f"Selected {len(parts)} similar part(s), {len(faces)} faces.")
        return {"FINISHED"}


class PARTFIELD_OT_similarity_preview(_EditBase):
    """Colour every face by how similar its features are to the active face's (a heat map in the preview colours: yellow = alike, dark blue = different); moving the slider shows the parts again"""

    bl_idname = "partfield.similarity_preview"
    bl_label = "Similarity Preview"

    def act(self, context, pc, selected, active):
        from model_runtime.part_edits import face_similarity, heat_colors

        face = active if active >= 0 else (int(selected[0]) if len(selected) else -1)
        if face < 0:
            self.report({"WARNING"}, "Select a face to compare the others with.")
            return {"CANCELLED"}
        sim = face_similarity(pc.stored.result.features, pc.result_face(face))
        if pc.stored.face_map is not None:
            sim = sim[pc.stored.face_map]
        paint_faces(pc.obj, heat_colors(sim))
        if not preview.is_previewing(context.scene):
            preview.show_attribute_shading(context.scene)
        self.report({"INFO"}, f"Similarity to face {face}: {float(sim.min()):.2f} .. 1.00")
        return {"FINISHED"}


class PARTFIELD_OT_clear_edits(_EditBase):
    """Forget every split and merge made on this result (back to the plain part tree)"""

    bl_idname = "partfield.clear_edits"
    bl_label = "Clear Part Edits"
    stays_in_edit_mode = False

    def act(self, context, pc, selected, active):
        if not pc.stored.edits:
            self.report({"INFO"}, "No part edits to clear.")
            return {"CANCELLED"}
        pc.save([])
        return {"FINISHED"}


def draw_panel(layout, context, obj) -> None:
    """The panel's "Edit Parts" block (Object and Edit Mode)."""
    if not storage.has_result(obj):
        return
    col = layout.column(align=True)
    col.label(text="Edit Parts (selected faces):", icon="MOD_EXPLODE")
    row = col.row(align=True)
    row.operator(PARTFIELD_OT_split_part.bl_idname, text="Split", icon="MOD_EDGESPLIT")
    row.operator(PARTFIELD_OT_merge_parts.bl_idname, text="Merge", icon="AUTOMERGE_ON")
    row = col.row(align=True)
    row.operator(PARTFIELD_OT_select_part.bl_idname, text="Select Part", icon="RESTRICT_SELECT_OFF")
    row.operator(PARTFIELD_OT_select_similar.bl_idname, text="Similar", icon="SELECT_EXTEND")
    row = col.row(align=True)
    row.operator(PARTFIELD_OT_similarity_preview.bl_idname, text="Similarity Map", icon="SHADING_RENDERED")
    count = _edit_count(obj)
    if count:
        row.operator(PARTFIELD_OT_clear_edits.bl_idname, text="Clear Edits", icon="LOOP_BACK")
        col.label(text=f"{count} edit(s), kept at every Parts value", icon="INFO")


def _edit_count(obj) -> int:
    """How many edits the object stores (a JSON read, no cut: cheap enough for every redraw)."""
    import json

    raw = obj.get(storage.EDITS_KEY)
    if not raw:
        return 0
    try:
        data = json.loads(str(raw))
    except ValueError:
        return 0
    if not isinstance(data, dict) or data.get("stamp") != storage.meta(obj).get("stamp"):
        return 0
    return len(data.get("edits", []))


def _face_menu(self, context):
    layout = self.layout
    layout.separator()
    for cls in (PARTFIELD_OT_split_part, PARTFIELD_OT_merge_parts, PARTFIELD_OT_select_part,
                PARTFIELD_OT_select_similar):
        layout.operator(cls.bl_idname, text=f"PartField: {cls.bl_label}")


classes = (PARTFIELD_OT_split_part, PARTFIELD_OT_merge_parts, PARTFIELD_OT_select_part,
           PARTFIELD_OT_select_similar, PARTFIELD_OT_similarity_preview, PARTFIELD_OT_clear_edits)


def register_menus() -> None:
    bpy.types.VIEW3D_MT_edit_mesh_faces.append(_face_menu)


def unregister_menus() -> None:
    bpy.types.VIEW3D_MT_edit_mesh_faces.remove(_face_menu)
