"""Part writers: vertex groups, face attribute + sculpt face sets, separate objects.

Each writer takes per-polygon labels (0..k-1, one per polygon of `obj.data`), is
non-destructive, and replaces what an earlier run of the same writer made instead of adding
to it. The operators wrap each call in one undo step.

Removal only deletes what the add-on can show it made: the source object keeps a random
output token (`partfield_output_token`); the vertex-group marker, the parts collection and
every part object carry the same token, and removed vertex groups must also have the names
the writer gives (Part_01 ...). Markers without the token (a crafted or foreign file, an
object the user moved into the parts collection) are left alone. Sculpt face sets are
removed only while they are still the ones the writer wrote (a digest on the mesh).
"""
from __future__ import annotations

import hashlib
import re
import uuid

import numpy as np

FACE_ATTRIBUTE = "partfield_part"
FACE_SET_ATTRIBUTE = ".sculpt_face_set"
_GROUPS_KEY = "partfield_vertex_groups"
_SOURCE_KEY = "partfield_source"
_TOKEN_KEY = "partfield_output_token"  # on the source object
_OUTPUT_TOKEN_KEY = "partfield_token"  # on the parts collection and each part object
_FACE_SETS_KEY = "partfield_face_sets"  # on the mesh: digest of the face sets the writer wrote
_PART_NAME = re.compile(r"Part_\d{2,}(\.\d{3})?")  # part_names() as Blender may suffix them

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
def output_token(obj, create: bool = False) -> str | None:
    """The token this object's outputs carry (made on first write with `create`)."""
    token = obj.get(_TOKEN_KEY)
    if isinstance(token, str) and re.fullmatch(r"[0-9a-f]{32}", token):
        return token
    if not create:
        return None
    token = uuid.uuid4().hex
    if _TOKEN_KEY in obj:
        del obj[_TOKEN_KEY]
    obj[_TOKEN_KEY] = token
    return token


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
    if _GROUPS_KEY in obj:
        del obj[_GROUPS_KEY]
    obj[_GROUPS_KEY] = {"token": output_token(obj, create=True), "names": made}
    return made


def _marker_names(obj) -> list[str]:
    """The group names a marker lists (any form a file may hold; strings only)."""
    names = obj.get(_GROUPS_KEY)
    if hasattr(names, "to_dict"):
        names = names.to_dict().get("names")
    if hasattr(names, "to_list"):
        names = names.to_list()
    return [n for n in names if isinstance(n, str)] if isinstance(names, (list, tuple)) else []


def written_vertex_groups(obj) -> list[str]:
    """Names of vertex groups on `obj` that the add-on can show it wrote: listed in a marker
    that carries the object's output token, and named as the writer names parts."""
    marker = obj.get(_GROUPS_KEY)
    token = output_token(obj)
    if token is None or not hasattr(marker, "to_dict"):
        return []
    if marker.to_dict().get("token") != token:
        return []
    return [n for n in _marker_names(obj) if _PART_NAME.fullmatch(n) and obj.vertex_groups.get(n) is not None]


def remove_vertex_groups(obj, kept: list | None = None) -> int:
    """Remove the vertex groups an earlier `write_vertex_groups` made; returns how many.

    Groups a marker names but the add-on cannot show it made stay; their names are appended
    to `kept`."""
    listed = _marker_names(obj)
    ours = written_vertex_groups(obj)
    removed = 0
    for name in ours:
        group = obj.vertex_groups.get(name)
        if group is not None:
            obj.vertex_groups.remove(group)
            removed += 1
    if kept is not None:
        kept.extend(n for n in listed if n not in ours and obj.vertex_groups.get(n) is not None)
    if _GROUPS_KEY in obj:
        del obj[_GROUPS_KEY]
    return removed


def has_outputs(obj) -> bool:
    """True when `obj` has vertex groups or part objects that removal would delete."""
    return bool(written_vertex_groups(obj)) or parts_collection(obj) is not None


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
        if name == FACE_SET_ATTRIBUTE:
            me[_FACE_SETS_KEY] = _digest(data)  # removal checks the face sets are still these
    me.update()


def _digest(values) -> str:
    return hashlib.blake2b(np.ascontiguousarray(values, dtype=np.int32).tobytes(), digest_size=16).hexdigest()


def read_face_attribute(obj, name: str = FACE_ATTRIBUTE) -> np.ndarray | None:
    """An integer FACE attribute as a numpy array, or None."""
    attr = obj.data.attributes.get(name)
    if attr is None:
        return None
    out = np.empty(len(attr.data), dtype=np.int32)
    attr.data.foreach_get("value", out)
    return out


def remove_face_attribute(obj, kept: list | None = None) -> None:
    """Remove the part face attribute and the sculpt face sets the writer made. Face sets
    that differ from what it wrote (the user's own, or edited since) stay ("face sets" is
    appended to `kept`)."""
    me = obj.data
    attr = me.attributes.get(FACE_ATTRIBUTE)
    if attr is not None:
        me.attributes.remove(attr)
    sets = me.attributes.get(FACE_SET_ATTRIBUTE)
    if sets is not None:
        ours = sets.data_type == "INT" and sets.domain == "FACE" and \
            me.get(_FACE_SETS_KEY) == _digest(read_face_attribute(obj, FACE_SET_ATTRIBUTE))
        if ours:
            me.attributes.remove(me.attributes[FACE_SET_ATTRIBUTE])
        elif kept is not None:
            kept.append(f"the face sets of '{obj.name}'")
    if _FACE_SETS_KEY in me:
        del me[_FACE_SETS_KEY]


# --------------------------------------------------------------------------- separate objects
def parts_collection(obj):
    """The collection that holds `obj`'s part objects (marked with its output token), or None."""
    import bpy

    token = output_token(obj)
    if token is None:
        return None
    for coll in bpy.data.collections:
        if coll.get(_SOURCE_KEY) == obj and coll.get(_OUTPUT_TOKEN_KEY) == token:
            return coll
    return None


def _claim(obj, coll, parts) -> None:
    """Mark a parts collection and its part objects with `obj`'s output token."""
    token = output_token(obj, create=True)
    coll[_OUTPUT_TOKEN_KEY] = token
    for part in parts:
        part[_OUTPUT_TOKEN_KEY] = token


def remove_separate_objects(obj, unhide: bool = True, kept: list | None = None) -> int:
    """Delete the part objects (and their meshes) an earlier run made; show the original again.

    Only objects carrying `obj`'s output token go; any other object in the collection stays
    (its name is appended to `kept`), and so does the collection then, unmarked."""
    import bpy

    coll = parts_collection(obj)
    removed = 0
    if coll is not None:
        token = coll.get(_OUTPUT_TOKEN_KEY)
        for part in list(coll.objects):
            if part.get(_OUTPUT_TOKEN_KEY) != token or part is obj:
                if kept is not None:
                    kept.append(part.name)
                continue
            me = part.data
            bpy.data.objects.remove(part)
            if me is not None and me.users == 0:
                bpy.data.meshes.remove(me)
            removed += 1
        if len(coll.objects) or len(coll.children):
            for key in (_SOURCE_KEY, _OUTPUT_TOKEN_KEY):
                if key in coll:
                    del coll[key]
        else:
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
    _claim(obj, coll, made)
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
