"""Live part preview: a face-corner colour attribute recoloured in place, and the viewport
solid-shading switch to attribute colour (remembered in the scene, restored afterwards).

The colour lives on the CORNER domain (every corner of a polygon gets the polygon's colour),
because Blender shows only POINT/CORNER colour attributes in the viewport. It is FLOAT_COLOR:
`foreach_set` into float colours is ~5x faster than into BYTE_COLOR (no sRGB conversion per
corner), which keeps a slider step on a 100k-polygon mesh around 10 ms. The colours are kept per mesh
(16 bytes a corner) so a step only recomputes the corners whose part changed.
"""
from __future__ import annotations

import colorsys
import json

import numpy as np

ATTRIBUTE = "partfield_preview"
_SHADING_KEY = "partfield_saved_shading"

# mesh pointer -> (polygons, loops, loop->polygon index)
# mesh pointer -> (polygons, loops, loop -> polygon map, corner offsets (P+1,) or None until needed)
_loop_poly_cache: dict[int, list] = {}
# mesh pointer -> (the loop->polygon array used, face labels shown, corner colours (L,) as complex128)
_shown: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def palette(k: int) -> np.ndarray:
    """k distinct, stable RGBA colours (float32, linear): golden-ratio hue steps, alternating value."""
    i = np.arange(max(int(k), 1))
    hues = (i * 0.618033988749895 + 0.07) % 1.0
    out = np.empty((len(i), 4), dtype=np.float32)
    for j, h in enumerate(hues):  # k is small (parts, not faces)
        s = 0.55 + 0.3 * ((j // 2) % 2)
        v = 0.95 - 0.25 * (j % 2)
        out[j, :3] = colorsys.hsv_to_rgb(float(h), s, v)
    out[:, :3] = out[:, :3] ** 2.2  # sRGB-ish -> linear
    out[:, 3] = 1.0
    return out


def _loop_polygons(me) -> np.ndarray:
    key = me.as_pointer()
    npoly, nloop = len(me.polygons), len(me.loops)
    hit = _loop_poly_cache.get(key)
    if hit is not None and hit[0] == npoly and hit[1] == nloop:
        return hit[2]
    from .mesh_data import loop_polygons

    lp = loop_polygons(me)
    _loop_poly_cache[key] = [npoly, nloop, lp, None]
    return lp


def ensure_attribute(me):
    """The preview colour attribute of a mesh, created when missing, made the active colour."""
    from .mesh_data import typed_attribute

    typed_attribute(me, ATTRIBUTE, "FLOAT_COLOR", "CORNER")
    colors = me.color_attributes
    if colors.active_color_name != ATTRIBUTE:
        colors.active_color_name = ATTRIBUTE
    return me.attributes[ATTRIBUTE]


def _corner_offsets(me) -> np.ndarray:
    """(P+1,) first corner of each polygon (corners of a polygon are contiguous and in polygon
    order, as `loop_polygons` reads them), kept with the mesh's loop -> polygon map."""
    entry = _loop_poly_cache[me.as_pointer()]  # (`_loop_polygons` made it)
    if entry[3] is None:
        offsets = np.zeros(entry[0] + 1, np.int64)
        np.cumsum(np.bincount(entry[2], minlength=entry[0]), out=offsets[1:])
        entry[3] = offsets
    return entry[3]


def _corner_colors(labels: np.ndarray) -> np.ndarray:
    """(n,) colours of labels as complex128 (one RGBA float32 quadruple each: a 16-byte
    gather is ~3x faster than indexing a (k, 4) table)."""
    pal = palette(int(labels.max()) + 1 if len(labels) else 1)
    return np.take(pal.view(np.complex128).ravel(), labels)


def recolor(obj, face_labels: np.ndarray) -> None:
    """Colour every polygon of `obj` by its part label (length = polygon count). Vectorised.

    A label's colour does not depend on the part count, so after the first call only the
    corners of polygons whose label changed are recomputed (the slider splits or joins a
    part at a time); the whole corner array is still written, so what the attribute held
    before (an undo, a file load) does not matter."""
    me = obj.data
    labels = np.asarray(face_labels)
    if len(labels) != len(me.polygons):
        raise ValueError(f"{len(labels)} labels for {len(me.polygons)} polygons")
    attr = ensure_attribute(me)
    lp = _loop_polygons(me)
    key = me.as_pointer()
    hit = _shown.get(key)
    if hit is not None and hit[0] is lp and hit[1].shape == labels.shape:
        buf = hit[2]
        changed = np.flatnonzero(labels != hit[1])  # polygons, then their corners
        if changed.size > len(labels) // 4:
            np.take(_corner_colors(labels), lp, out=buf, mode="clip")  # (clip: unbuffered)
        elif changed.size:
            offsets = _corner_offsets(me)
            counts = offsets[changed + 1] - offsets[changed]
            firsts = np.repeat(offsets[changed] - (np.cumsum(counts) - counts), counts)
            corners = firsts + np.arange(firsts.size)
            buf[corners] = np.repeat(_corner_colors(labels[changed]), counts)
    else:
        buf = np.take(_corner_colors(labels), lp)
    _shown[key] = (lp, labels.copy(), buf)
    attr.data.foreach_set("color", buf.view(np.float32))
    from . import storage

    storage.note_own_update(me)  # a colour write: the staleness fingerprint stays valid
    me.update_tag()
    _redraw_views()


def read_colors(obj) -> np.ndarray | None:
    """The preview colours per corner (L,4), or None when there is no preview."""
    me = obj.data
    attr = me.attributes.get(ATTRIBUTE)
    if attr is None:
        return None
    out = np.empty(len(attr.data) * 4, dtype=np.float32)
    attr.data.foreach_get("color", out)
    return out.reshape(-1, 4)


def remove(obj) -> bool:
    """Delete the preview attribute; True when there was one."""
    me = obj.data
    attr = me.attributes.get(ATTRIBUTE)
    if attr is None:
        return False
    me.attributes.remove(attr)
    _loop_poly_cache.pop(me.as_pointer(), None)
    _shown.pop(me.as_pointer(), None)
    from . import storage

    storage.note_own_update(me)  # positions and topology unchanged
    me.update_tag()
    _redraw_views()
    return True


def forget_cache() -> None:
    """Drop the per-mesh caches (after loading another file)."""
    _loop_poly_cache.clear()
    _shown.clear()


def _view3d_shadings():
    import bpy

    for screen in bpy.data.screens:
        for ai, area in enumerate(screen.areas):
            if area.type != "VIEW_3D":
                continue
            for si, space in enumerate(area.spaces):
                if space.type == "VIEW_3D":
                    yield f"{screen.name}|{ai}|{si}", space.shading


def show_attribute_shading(scene) -> None:
    """Switch all 3D views' solid shading to attribute colour, remembering the old setting once."""
    saved = json.loads(scene.get(_SHADING_KEY, "{}")) if _SHADING_KEY in scene else None
    first = saved is None
    saved = saved or {}
    for key, shading in _view3d_shadings():
        if first or key not in saved:
            saved[key] = shading.color_type
        shading.color_type = "VERTEX"
    scene[_SHADING_KEY] = json.dumps(saved)


def restore_shading(scene) -> None:
    """Put back the solid shading colours saved by `show_attribute_shading`."""
    if _SHADING_KEY not in scene:
        return
    saved = json.loads(scene[_SHADING_KEY])
    for key, shading in _view3d_shadings():
        if key in saved:
            try:
                shading.color_type = saved[key]
            except TypeError:
                pass
    del scene[_SHADING_KEY]


def is_previewing(scene) -> bool:
    return _SHADING_KEY in scene


def _redraw_views() -> None:
    import bpy

    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
