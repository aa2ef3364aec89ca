"""PartField for Blender: segment meshes into parts with a feedforward 3D part feature field.

The add-on only holds the Blender-facing layer; computation comes from `model_runtime`.
Extension metadata lives in blender_manifest.toml (no bl_info)."""
from __future__ import annotations

import bpy

from . import (edit_operators, operators, panel, preferences, preview, properties, rig_operators, storage,
               weights_download_ui)


def _classes():
    out = list(properties.classes) + list(preferences.classes) + list(operators.classes) + list(panel.classes)
    out += list(weights_download_ui.classes)
    out += list(edit_operators.classes) + list(rig_operators.classes)
    return out


@bpy.app.handlers.persistent
def _on_depsgraph_update(scene, depsgraph):
    for update in depsgraph.updates:
        if update.is_updated_geometry and isinstance(update.id, bpy.types.Mesh):
            storage.geometry_updated(update.id.original.as_pointer())


@bpy.app.handlers.persistent
def _on_load_post(*_args):
    storage.forget_cache()
    preview.forget_cache()


_HANDLERS = (
    (bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update),
    (bpy.app.handlers.load_post, _on_load_post),
)


def register():
    for cls in _classes():
        bpy.utils.register_class(cls)
    properties.register_properties()
    # Here, not in a class's own register(): that made Blender 4.2 segfault at exit.
    weights_download_ui.register_properties()
    edit_operators.register_menus()
    for handlers, fn in _HANDLERS:
        if fn not in handlers:
            handlers.append(fn)


def unregister():
    for handlers, fn in _HANDLERS:
        if fn in handlers:
            handlers.remove(fn)
    edit_operators.unregister_menus()
    properties.unregister_properties()
    weights_download_ui.stop_job()
    weights_download_ui.unregister_properties()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
    storage.forget_cache()
