"""Properties: the per-object parts slider, scene options, and the running-job display state."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty
from bpy.types import PropertyGroup

OUTPUT_ITEMS = (
    ("VERTEX_GROUPS", "Vertex Groups", "One vertex group per part (weight 1.0), named Part_01, Part_02 ..."),
    ("FACE_ATTRIBUTE", "Face Attribute + Face Sets",
     "Integer face attribute 'partfield_part' and sculpt face sets, one set per part"),
    ("SEPARATE_OBJECTS", "Separate Objects",
     "One object per part in a new collection, origin at the part's centre; the original is hidden"),
)


def recolor_object(obj) -> bool:
    """Re-cut the stored tree at the object's slider value and recolour the preview. No network pass."""
    from . import jobs, preview, storage

    stored = storage.load(obj)
    if stored is None or storage.is_stale(obj, full=False):
        return False
    props = obj.partfield
    k = max(1, min(int(props.parts), jobs.max_parts(stored)))
    preview.recolor(obj, stored.face_labels(k))
    return True


def _parts_update(self, context):
    obj = self.id_data
    if obj is None or obj.type != "MESH" or obj.mode == "EDIT":
        return
    if recolor_object(obj) and context is not None and context.scene is not None:
        from . import preview

        if not preview.is_previewing(context.scene):
            preview.show_attribute_shading(context.scene)


class PartFieldObjectProps(PropertyGroup):
    parts: IntProperty(
        name="Parts", default=5, min=1, max=256, soft_min=1, soft_max=32, update=_parts_update,
        description="How many parts to cut the part tree into; the preview recolours live, no recompute",
    )


class PartFieldSceneProps(PropertyGroup):
    output: EnumProperty(
        name="Output", items=OUTPUT_ITEMS, default="FACE_ATTRIBUTE",
        description="What Apply writes for the current parts",
    )
    use_modifiers: BoolProperty(
        name="Use Modifiers", default=False,
        description="Segment the mesh with its modifiers applied (the evaluated mesh); "
                    "the parts are mapped back onto the base mesh",
    )
    rig_binding: EnumProperty(
        name="Rig Binding", default="RIGID",
        items=(("RIGID", "Rigid", "Separate part objects, each parented to its bone"),
               ("SKINNED", "Skinned", "The original mesh with an Armature modifier and one vertex group per bone")),
        description="How Make Rig binds the mesh to the bones",
    )
    all_selected: BoolProperty(
        name="All Selected Meshes", default=True,
        description="Compute and apply for every selected mesh object, not only the active one",
    )


class PartFieldRuntimeProps(PropertyGroup):
    """Not saved: what the running compute shows in the panel."""

    running: BoolProperty(name="Running", default=False, options={"SKIP_SAVE"})
    stage: StringProperty(name="Stage", default="", options={"SKIP_SAVE"})
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})


classes = (PartFieldObjectProps, PartFieldSceneProps, PartFieldRuntimeProps)


def register_properties() -> None:
    bpy.types.Object.partfield = PointerProperty(type=PartFieldObjectProps)
    bpy.types.Scene.partfield = PointerProperty(type=PartFieldSceneProps)
    bpy.types.WindowManager.partfield = PointerProperty(type=PartFieldRuntimeProps)


def unregister_properties() -> None:
    for owner in (bpy.types.WindowManager, bpy.types.Scene, bpy.types.Object):
        if hasattr(owner, "partfield"):
            del owner.partfield
