"""Import hygiene of Blender's main thread, in real bpy (one phase per process).

    python hygiene_scenarios.py make  --weights W --blend OUT   # compute and save a .blend
    python hygiene_scenarios.py check --blend OUT               # fresh process: UI paths only

"check" drives what the UI does on the main thread (preferences and panel draws, the
slider with the depsgraph evaluation that follows it, opening a saved file, undo, the
preview toggle, Apply) and fails when any of it imported torch, scipy or scikit-learn,
naming the first import's call site."""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ext_helpers as H  # noqa: E402  (temp BLENDER_USER_RESOURCES before bpy)

HEAVY = ("torch", "scipy", "sklearn")
_first_import: dict[str, str] = {}


class _Watch:
    """A meta-path finder that only records where each heavy package is first imported."""

    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in HEAVY and top not in _first_import:
            _first_import[top] = "".join(traceback.format_stack(limit=14)[:-1])
        return None


def heavy_loaded() -> list[str]:
    return [m for m in HEAVY if m in sys.modules]


def draw_panel() -> list[str]:
    return H.panel_texts()


def draw_preferences() -> list[str]:
    return H.preferences_texts()


def make(args):
    import bpy

    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    obj, _ = H.table("Table")
    H.activate(obj)
    assert bpy.ops.partfield.compute() == {"FINISHED"}
    storage = H.addon_module("storage")
    stored = storage.load(obj)
    suggested = stored.result.suggested_parts
    assert 1 <= suggested <= len(obj.data.polygons)
    assert obj.partfield.parts == suggested, (obj.partfield.parts, suggested)
    assert storage.meta(obj).get("suggested_parts") == suggested
    assert f"Suggested: {suggested} parts" in draw_panel()
    obj.partfield.parts = suggested + 1
    bpy.ops.wm.save_as_mainfile(filepath=args.blend)
    print(f"suggested {suggested}")


def check(args):
    import bpy

    sys.meta_path.insert(0, _Watch())
    assert not heavy_loaded(), f"imported before the add-on: {heavy_loaded()}"
    H.install_addon()
    H.prefs().device = "cpu"
    draw_preferences()
    H.clear_scene()
    assert "Select a mesh object to segment." in draw_panel()
    chain, _ = H.boxes_chain("Fresh")
    H.activate(chain)
    assert any("No result yet" in t for t in draw_panel())

    bpy.ops.wm.open_mainfile(filepath=args.blend)  # load_post handler
    obj = bpy.data.objects["Table"]
    H.activate(obj)
    storage = H.addon_module("storage")
    texts = draw_panel()
    assert any(t.startswith("Suggested: ") for t in texts), texts
    assert not any("Mesh changed" in t for t in texts), texts
    for k in (2, 5, 3):  # the slider as the UI moves it: update, depsgraph evaluation, redraw
        obj.partfield.parts = k
        bpy.context.view_layer.update()
        texts = draw_panel()
        assert not any("Mesh changed" in t for t in texts), texts
        # the colour write kept the cached fingerprint: the redraw did not hash the mesh
        assert obj.data.as_pointer() in storage._fingerprints, "a recolour dropped the staleness cache"
    bpy.ops.ed.undo_push(message="slider")
    obj.partfield.parts = 4
    bpy.ops.ed.undo_push(message="slider 4")
    bpy.ops.ed.undo()
    obj = bpy.data.objects["Table"]
    H.activate(obj)
    draw_panel()
    for op, kwargs in ((bpy.ops.partfield.preview, {}), (bpy.ops.partfield.preview, {}),
                       (bpy.ops.partfield.apply, {"mode": "VERTEX_GROUPS"})):
        assert op(**kwargs) == {"FINISHED"}
        bpy.context.view_layer.update()  # the UI evaluates the depsgraph after every operator
    loaded = heavy_loaded()
    if loaded:
        where = "\n".join(f"--- {m} first imported from:\n{_first_import.get(m, '?')}" for m in loaded)
        raise AssertionError(f"the main thread imported {loaded}:\n{where}")

    # A real edit still shows as stale (the colour-write exemption is for colour writes only).
    import numpy as np

    me = obj.data
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    co[0] += 0.25
    me.vertices.foreach_set("co", co)
    me.update()
    bpy.context.view_layer.update()
    assert any("Mesh changed" in t for t in draw_panel()), "an edit after the slider went unnoticed"
    print("no heavy imports on the main thread")


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=("make", "check"))
    ap.add_argument("--weights")
    ap.add_argument("--blend", required=True)
    args = ap.parse_args(argv)
    {"make": make, "check": check}[args.phase](args)
    print(f"HYGIENE OK {args.phase}", flush=True)


if __name__ == "__main__":
    main()
