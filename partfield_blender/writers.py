"""Part writers: vertex groups, face attribute + sculpt face sets, separate objects.

Each writer takes per-polygon labels (0..k-1, one per polygon of `obj.data`), is
non-destructive, and replaces what an earlier run of the same writer made instead of adding
to it. The operators wrap each call in one undo step.
"""
from __future__ import annotations

import numpy as np

FACE_ATTRIBUTE = "partfield_part"
FACE_SET_ATTRIBUTE = ".sculpt_face_set"
_GROUPS_KEY = "partfield_vertex_groups"
_SOURCE_KEY = "partfield_source"

MODES = ("VERTEX_GROUPS", "FACE_ATTRIBUTE", "SEPARATE_OBJECTS")


def part_names(k: int, prefix: str = "Part") -> list[str]:
    """Names of k parts: Part_01 .. Part_k (zero padded to a common width)."""
    width = max(2, len(str(k)))
    return [f"{prefix}_{i + 1:0{width}d}" for i in range(k)]


def _check_labels(obj, labels) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    npoly = len(obj.data.polygons)
    if labels.shape != (npoly,):
        raise ValueError(f"{labels.shape[0] if labels.ndim else 0} labels for {npoly} polygons")
    if npoly and labels.min() < 0:
        raise ValueError("labels must be >= 0")
    return labels


def _num_parts(labels: np.ndarray) -> int:
    return int(labels.max()) + 1 if len(labels) else 0


def _poly_vertex_ids(me):
    from .mesh_data import read_arrays

    a = read_arrays(me)
    poly_of_loop = np.repeat(np.arange(len(a["loop_totals"])), a["loop_totals"])
    return a, poly_of_loop


# --------------------------------------------------------------------------- vertex groups
def write_vertex_groups(obj, labels, names: list[str] | None = None) -> list[str]:
    """One vertex group per part (weight 1.0 on every vertex of the part's polygons).

    Vertices on a border between parts belong to both groups. Groups made by an earlier run
    are removed first. Returns the group names, index = label.
    """
    labels = _check_labels(obj, labels)
    k = _num_parts(labels)
    names = list(names) if names else part_names(k)
    remove_vertex_groups(obj)
    a, poly_of_loop = _poly_vertex_ids(obj.data)
    loop_labels = labels[poly_of_loop]
    made = []
    for part in range(k):
        verts = np.unique(a["loop_vertices"][loop_labels == part])
        group = obj.vertex_groups.new(name=names[part])
        if len(verts):
            group.add(verts.tolist(), 1.0, "REPLACE")
        made.append(group.name)
    obj[_GROUPS_KEY] = made
    return made


def remove_vertex_groups(obj) -> int:
    """Remove the vertex groups an earlier `write_vertex_groups` made; returns how many."""
    names = list(obj.get(_GROUPS_KEY, []))
    removed = 0
    for name in names:
        group = obj.vertex_groups.get(name)
        if group is not None:
            obj.vertex_groups.remove(group)
            removed += 1
    if _GROUPS_KEY in obj:
        del obj[_GROUPS_KEY]
    return removed


# --------------------------------------------------------------------------- face attribute + face sets
def write_face_attribute(obj, labels, face_sets: bool = True) -> None:
    """Integer FACE attribute `partfield_part` (= label) and sculpt face sets (= label + 1)."""
    from .mesh_data import typed_attribute

    labels = _check_labels(obj, labels)
    me = obj.data
    values = labels.astype(np.int32)
    for name, data in ((FACE_ATTRIBUTE, values), (FACE_SET_ATTRIBUTE, values + 1)):
        if name == FACE_SET_ATTRIBUTE and not face_sets:
            continue
        typed_attribute(me, name, "INT", "FACE").data.foreach_set("value", data)
    me.update()


def read_face_attribute(obj, name: str = FACE_ATTRIBUTE) -> np.ndarray | None:
    """An integer FACE attribute as a numpy array, or None."""
    attr = obj.data.attributes.get(name)
    if attr is None:
        return None
    out = np.empty(len(attr.data), dtype=np.int32)
    attr.data.foreach_get("value", out)
    return out


def remove_face_attribute(obj) -> None:
    """Remove the part face attribute and the sculpt face sets."""
    me = obj.data
    for name in (FACE_ATTRIBUTE, FACE_SET_ATTRIBUTE):
        attr = me.attributes.get(name)
        if attr is not None:
            me.attributes.remove(attr)


# --------------------------------------------------------------------------- separate objects
def parts_collection(obj):
    """The collection that holds `obj`'s part objects, or None."""
    import bpy

    for coll in bpy.data.collections:
        if coll.get(_SOURCE_KEY) == obj:
            return coll
    return None


def remove_separate_objects(obj, unhide: bool = True) -> int:
    """Delete the part objects (and their meshes) an earlier run made; show the original again."""
    import bpy

    coll = parts_collection(obj)
    removed = 0
    if coll is not None:
        for part in list(coll.objects):
            me = part.data
            bpy.data.objects.remove(part)
            if me is not None and me.users == 0:
                bpy.data.meshes.remove(me)
            removed += 1
        bpy.data.collections.remove(coll)
    if unhide and removed:
        _set_hidden(obj, False)
    return removed


def _set_hidden(obj, hidden: bool) -> None:
    obj.hide_render = hidden
    try:
        obj.hide_set(hidden)
    except RuntimeError:  # not in the active view layer
        obj.hide_viewport = hidden


def write_separate_objects(obj, labels, names: list[str] | None = None, progress=None) -> list:
    """One new object per part in a collection "<name> parts" next to the original.

    One pass over the mesh (`mesh_split.split_object`): each part keeps materials, UVs,
    custom normals, colours and other attributes, smooth shading, custom properties, the
    modifier stack, parent and collections (the parts collection is linked into every
    collection of the original), and only the vertex groups with weights on its vertices;
    none of the add-on's own outputs. Its origin sits at the centre of the part's bounding box
    and its world placement equals the original's. The original is hidden (viewport and
    render), not deleted. `progress(fraction)` is called per part.
    """
    import bpy

    from .mesh_split import split_object

    labels = _check_labels(obj, labels)
    k = _num_parts(labels)
    names = list(names) if names else part_names(k)
    remove_separate_objects(obj, unhide=False)

    coll = bpy.data.collections.new(f"{obj.name} parts")
    coll[_SOURCE_KEY] = obj
    parents = list(obj.users_collection) or [bpy.context.scene.collection]
    for parent in parents:
        parent.children.link(coll)
    wm = getattr(bpy.context, "window_manager", None)
    show = progress is None and wm is not None and len(labels) > 50_000  # a big mesh: the cursor shows it
    if show:
        wm.progress_begin(0, 100)
        progress = lambda f: wm.progress_update(int(100 * f))  # noqa: E731
    try:
        made = split_object(obj, labels, names, coll, progress=progress)
    finally:
        if show:
            wm.progress_end()
    _set_hidden(obj, True)
    return made


# --------------------------------------------------------------------------- dispatch
def write(obj, labels, mode: str):
    """Run the writer for `mode` (one of MODES)."""
    if mode == "VERTEX_GROUPS":
        return write_vertex_groups(obj, labels)
    if mode == "FACE_ATTRIBUTE":
        return write_face_attribute(obj, labels)
    if mode == "SEPARATE_OBJECTS":
        return write_separate_objects(obj, labels)
    raise ValueError(f"unknown output mode {mode!r}; expected one of {', '.join(MODES)}")
