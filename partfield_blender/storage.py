"""Keep a segmentation with the object in the .blend, and notice when the mesh changed since.

The result (`SegmentationResult.save` npz bytes) and, for evaluated meshes, the base-to-evaluated
polygon map live in ID properties of a hidden Text data-block (`.partfield <object>`) that the
object points to (`partfield_data`); the small metadata and the part edits live on the object.
So they are saved, undone and redone with it, and the megabytes stay out of the object: Blender
copies an object's ID properties into the evaluated copy on every update of it (a slider step
recolours the mesh), and writes them into every undo step that changes the object, but a Text
no other ID changes is neither re-copied nor re-written. The Text has no fake user: deleting
the object leaves it without users and it is not saved. Files from before this layout keep the
bytes on the object itself; they load as they are and move to a Text at the next compute.
Loaded results are cached per object in memory so the slider never deserialises twice.

Writes never assign bytes over an existing bytes property (bpy truncates those at the first
NUL); each write is read back, and a failed write puts the previous result back. Reads are
bounded and validated (`SegmentationResult.from_bytes`); a damaged result is a message
(`problem`, `load_checked`), never a traceback.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field

import numpy as np

RESULT_KEY = "partfield_result"
FACE_MAP_KEY = "partfield_face_map"
META_KEY = "partfield_meta"
EDITS_KEY = "partfield_edits"  # JSON {"stamp": result stamp, "edits": [[kind, [nodes]], ...]}
BLOCK_KEY = "partfield_data"  # on the object: the Text data-block holding RESULT_KEY and FACE_MAP_KEY
BLOCK_STAMP_KEY = "partfield_stamp"  # on that Text: the stamp of the result it holds
BLOCK_PREFIX = ".partfield "  # names starting with "." are left out of Blender's ID search lists

# object session uid -> (stamp, StoredResult)
_cache: dict[int, tuple[str, "StoredResult"]] = {}
# object session uid -> (stamp, message or None): what `problem` found for that stored result
_problems: dict[int, tuple[str | None, str | None]] = {}
# mesh pointer -> (counts, fingerprint) for cheap repeated staleness checks
_fingerprints: dict[int, tuple[tuple, str]] = {}
# mesh pointers whose next geometry update is the add-on's own colour write (see `note_own_update`)
_own_updates: set[int] = set()


@dataclass
class StoredResult:
    result: object  # model_runtime.result.SegmentationResult
    face_map: np.ndarray | None
    meta: dict
    edits: list = field(default_factory=list)  # model_runtime.part_edits.Edit, set by load()

    @property
    def num_faces(self) -> int:
        return int(self.meta.get("base_polygons", 0))

    def face_labels(self, k: int) -> np.ndarray:
        """Labels (0..k'-1) for every polygon of the base mesh at granularity k, with the
        part edits (split/merge) that apply at k."""
        labels = self.result_labels(k)
        if self.face_map is not None:
            labels = labels[self.face_map]
        return labels


    def result_labels(self, k: int) -> np.ndarray:
        """Labels per polygon of the result (the evaluated mesh with modifiers), edits applied."""
        if self.edits:
            from model_runtime.part_edits import apply_edits

            return apply_edits(self.result.tree, k, self.edits).labels
        return np.asarray(self.result.labels(int(k)))


def _result_to_bytes(result) -> bytes:
    if hasattr(result, "to_bytes"):
        return result.to_bytes(features_fp16=True)  # halves what the .blend carries
    fd, path = tempfile.mkstemp(suffix=".npz", prefix="partfield_")
    os.close(fd)
    try:
        result.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def _array_to_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.int32).tobytes()


# --------------------------------------------------------------------------- faithful writes
def _assign(obj, key, value) -> None:
    """Set an ID property as a new one: bpy cuts bytes assigned over an existing bytes
    property at the first NUL (b"ef\x00gh" is kept as b"ef"), so never assign over one."""
    if key in obj:
        del obj[key]
    obj[key] = value


def _read_back(obj, key):
    value = obj.get(key)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "to_list"):
        return value.to_list()
    return value


def _put(obj, key, value) -> None:
    """Write `value` (bytes or a dict of plain values) and check it reads back identically."""
    _assign(obj, key, value)
    back = _read_back(obj, key)
    if isinstance(value, bytes):
        back = bytes(back) if isinstance(back, (bytes, bytearray)) else back
    if back != value:
        got = f"{len(back):,} bytes" if isinstance(back, (bytes, bytearray)) else type(back).__name__
        want = f"{len(value):,} bytes" if isinstance(value, bytes) else "the values written"
        raise RuntimeError(f"'{key}' reads back as {got}, not {want}")


def _snapshot(obj) -> dict:
    """What `store` may change on the object (the block pointer is kept as the ID itself)."""
    return {key: (obj.get(key) if key == BLOCK_KEY else _read_back(obj, key))
            for key in (RESULT_KEY, FACE_MAP_KEY, META_KEY, BLOCK_KEY) if key in obj}


def _restore(obj, old: dict) -> None:
    for key in (RESULT_KEY, FACE_MAP_KEY, META_KEY, BLOCK_KEY):
        if key in obj:
            del obj[key]
        if key in old and old[key] is not None:
            obj[key] = old[key]


def _new_block(obj, data: bytes, face_map, stamp: str):
    """A new Text holding the result bytes (and the face map), each read back; removed again
    and the error raised when anything reads back wrong. Nothing else is touched."""
    import bpy

    block = bpy.data.texts.new(BLOCK_PREFIX + obj.name)
    try:
        block.use_fake_user = False  # users come from the objects pointing to it
        _put(block, RESULT_KEY, data)
        if face_map is not None:
            _put(block, FACE_MAP_KEY, _array_to_bytes(face_map))
        _put(block, BLOCK_STAMP_KEY, stamp)
    except Exception:
        bpy.data.texts.remove(block)
        raise
    return block


def _remove_if_unused(block) -> None:
    """Remove a result Text no object points to any more (another object may share it: a
    duplicate of the object points to the same one)."""
    import bpy

    if isinstance(block, bpy.types.Text) and block.users == 0 and block.name.startswith(BLOCK_PREFIX):
        bpy.data.texts.remove(block)


def result_bytes(result) -> bytes:
    """What `store` keeps of `result` (npz bytes, fp16 features). Touches no bpy data: the
    compute worker makes them, so the main thread does not serialise."""
    return _result_to_bytes(result)


def store(obj, result, fingerprint: str, face_map: np.ndarray | None = None, info: dict | None = None,
          data: bytes | None = None) -> None:
    """Save `result` on `obj`, replacing an older one only once the new one is stored whole.
    `data`: `result_bytes(result)` when already made (by the compute worker).

    Every property is written fresh and read back; if any differs, the previous result is put
    back as it was and `StoredResultError` is raised."""
    from model_runtime.errors import StoredResultError

    meta = {
        "fingerprint": fingerprint,
        "base_polygons": len(obj.data.polygons),
        "stamp": uuid.uuid4().hex,
    }
    for key, value in (info or {}).items():
        if isinstance(value, (str, int, float, bool)) and key not in meta and value == value:  # (no NaN)
            meta[key] = value
    if data is None:
        data = _result_to_bytes(result)
    meta["result_polygons"] = int(result.num_polygons)
    meta["result_bytes"] = len(data)
    try:
        block = _new_block(obj, data, face_map, meta["stamp"])
    except Exception as exc:
        _cache.pop(obj.session_uid, None)
        raise StoredResultError(f"'{obj.name}': the result could not be saved with the object ({exc}); "
                                "the previous state is kept.") from exc
    old = _snapshot(obj)
    try:
        _assign(obj, BLOCK_KEY, block)
        if obj.get(BLOCK_KEY) != block:
            raise RuntimeError(f"'{BLOCK_KEY}' does not point to the new data-block")
        _put(obj, META_KEY, meta)
    except Exception as exc:
        try:
            _restore(obj, old)
            _remove_if_unused(block)
        finally:
            _cache.pop(obj.session_uid, None)
        raise StoredResultError(f"'{obj.name}': the result could not be saved with the object ({exc}); "
                                "the previous state is kept.") from exc
    for key in (RESULT_KEY, FACE_MAP_KEY):  # the layout before data-blocks: bytes on the object
        if key in obj:
            del obj[key]
    _remove_if_unused(old.get(BLOCK_KEY))
    if block.name != BLOCK_PREFIX + obj.name:  # made while the old one still had the name
        block.name = BLOCK_PREFIX + obj.name  # (Blender keeps a suffix if another ID holds it)
    stored = StoredResult(result, None if face_map is None else np.asarray(face_map, np.int64), dict(meta))
    _cache[obj.session_uid] = (meta["stamp"], stored)
    _problems.pop(obj.session_uid, None)


# --------------------------------------------------------------------------- reading
def has_result(obj) -> bool:
    return (obj is not None and obj.type == "MESH" and META_KEY in obj
            and (BLOCK_KEY in obj or RESULT_KEY in obj))


def _holder(obj):
    """The ID holding the result bytes: the object's Text data-block, or the object itself
    for results stored before data-blocks. Raises StoredResultError when the pointer is
    broken (the Text was deleted, or the property is something else)."""
    import bpy

    from model_runtime.errors import StoredResultError

    if BLOCK_KEY not in obj:
        return obj
    block = obj.get(BLOCK_KEY)
    if block is None:
        raise StoredResultError(f"'{obj.name}': its result data-block was deleted; compute again")
    if not isinstance(block, bpy.types.Text):
        raise StoredResultError(f"'{obj.name}': its '{BLOCK_KEY}' is {type(block).__name__}, not a result data-block")
    return block


def stored_bytes(obj) -> bytes | None:
    """The raw result bytes stored for `obj` (None when there are none); for tools and tests."""
    if not has_result(obj):
        return None
    value = _holder(obj).get(RESULT_KEY)
    return bytes(value) if isinstance(value, (bytes, bytearray)) else None


def meta(obj) -> dict:
    """The stored result's metadata; {} when there is none or it is not a dictionary."""
    if not has_result(obj):
        return {}
    value = obj.get(META_KEY)
    return dict(value.to_dict()) if hasattr(value, "to_dict") else {}


def _stamp(obj):
    value = meta(obj).get("stamp")
    return value if isinstance(value, str) else None


def _check_meta(obj, m) -> str | None:
    if not hasattr(obj.get(META_KEY), "to_dict"):
        return "its 'partfield_meta' is not a dictionary"
    for key, kind in (("fingerprint", str), ("stamp", str), ("base_polygons", int)):
        if not isinstance(m.get(key), kind) or isinstance(m.get(key), bool):
            return f"its 'partfield_meta' has no valid '{key}'"
    if m["base_polygons"] < 0:
        return "its 'partfield_meta' has a negative 'base_polygons'"
    for key in ("result_polygons",):
        if key in m and (not isinstance(m[key], int) or m[key] < 1):
            return f"its 'partfield_meta' has an invalid '{key}'"
    return None


def _face_map(obj, holder, m):
    """The stored polygon map (int64) or None; raises StoredResultError when it is damaged."""
    from model_runtime.errors import StoredResultError

    if FACE_MAP_KEY not in holder:
        return None
    raw = holder.get(FACE_MAP_KEY)
    if not isinstance(raw, (bytes, bytearray)):
        raise StoredResultError(f"'{obj.name}': its 'partfield_face_map' is {type(raw).__name__}, not bytes")
    if len(raw) != 4 * m["base_polygons"]:
        raise StoredResultError(f"'{obj.name}': its 'partfield_face_map' holds {len(raw):,} bytes for "
                                f"{m['base_polygons']:,} faces (expected {4 * m['base_polygons']:,})")
    return np.frombuffer(bytes(raw), dtype=np.int32).astype(np.int64)


def _expected_polygons(m, face_map):
    return m.get("result_polygons") if face_map is not None else m["base_polygons"]


def _checked(obj, build: bool):
    """Validate the stored data; with `build`, return the StoredResult. Raises StoredResultError."""
    from model_runtime.errors import StoredResultError
    from model_runtime.result import SegmentationResult

    m = meta(obj)
    why = _check_meta(obj, m)
    if why:
        raise StoredResultError(f"'{obj.name}': {why}")
    holder = _holder(obj)
    if holder is not obj and holder.get(BLOCK_STAMP_KEY) != m["stamp"]:
        raise StoredResultError(f"'{obj.name}': its result data-block '{holder.name}' belongs to another result")
    face_map = _face_map(obj, holder, m)
    data = holder.get(RESULT_KEY)
    name = f"'{obj.name}'"
    expected = _expected_polygons(m, face_map)
    if not build:
        p = SegmentationResult.check_bytes(data, name, expected)
    else:
        result = SegmentationResult.from_bytes(data, name, expected)
        p = result.num_polygons
    if face_map is not None and len(face_map) and (face_map.min() < 0 or face_map.max() >= p):
        raise StoredResultError(f"'{obj.name}': its 'partfield_face_map' points outside the {p:,} faces of the result")
    return StoredResult(result, face_map, m) if build else None


def problem(obj) -> str | None:
    """Why the result stored on `obj` cannot be used (a user-facing sentence), or None when it
    is usable or there is none. Checks headers and the tree once per stored result (cached)."""
    if not has_result(obj):
        return None
    from model_runtime.errors import PartFieldError

    stamp = _stamp(obj)
    hit = _cache.get(obj.session_uid)
    if hit is not None and hit[0] == stamp and stamp is not None:
        return None
    seen = _problems.get(obj.session_uid)
    if seen is not None and seen[0] == stamp:
        return seen[1]
    try:
        _checked(obj, build=False)
        why = None
    except PartFieldError as exc:
        why = str(exc)
    except Exception as exc:  # noqa: BLE001 - any damage becomes a message, never a traceback
        why = f"'{obj.name}': the stored result is damaged ({type(exc).__name__}: {exc})"
    _problems[obj.session_uid] = (stamp, why)
    return why


def load_checked(obj) -> StoredResult | None:
    """The result stored on `obj` (cached), None when there is none; `StoredResultError`
    (a PartFieldError) with a user-facing message when it is damaged."""
    from model_runtime.errors import PartFieldError, StoredResultError

    if not has_result(obj):
        return None
    stamp = _stamp(obj)
    hit = _cache.get(obj.session_uid)
    if hit is not None and hit[0] == stamp and stamp is not None:
        return _with_edits(obj, hit[1])
    seen = _problems.get(obj.session_uid)
    if seen is not None and seen[0] == stamp and seen[1] is not None:
        raise StoredResultError(seen[1])
    try:
        stored = _checked(obj, build=True)
    except Exception as exc:  # noqa: BLE001
        why = str(exc) if isinstance(exc, PartFieldError) else \
            f"'{obj.name}': the stored result is damaged ({type(exc).__name__}: {exc})"
        _problems[obj.session_uid] = (stamp, why)
        raise StoredResultError(why) from exc
    _cache[obj.session_uid] = (stamp, stored)
    _problems.pop(obj.session_uid, None)
    return _with_edits(obj, stored)


def load(obj) -> StoredResult | None:
    """The result stored on `obj` (cached), or None when there is none or it is damaged
    (`problem(obj)` then says why; `load_checked` raises instead)."""
    from model_runtime.errors import PartFieldError

    try:
        return load_checked(obj)
    except PartFieldError:
        return None


def _with_edits(obj, stored: StoredResult) -> StoredResult:
    """Attach the part edits saved on `obj` for this result (read every time: undo changes them)."""
    stored.edits = read_edits(obj, stored)
    return stored


def read_edits(obj, stored: StoredResult) -> list:
    """The part edits stored on `obj` for `stored` (none when they belong to an older compute)."""
    raw = obj.get(EDITS_KEY)
    if not raw:
        return []
    import json

    from model_runtime.part_edits import edits_from_json, valid_edits

    try:
        data = json.loads(str(raw))
    except ValueError:
        return []
    if not isinstance(data, dict) or data.get("stamp") != stored.meta.get("stamp"):
        return []
    return valid_edits(stored.result.tree, edits_from_json(json.dumps(data.get("edits", []))))


def write_edits(obj, stored: StoredResult, edits) -> None:
    """Save the part edits on `obj` (a JSON string ID property: saved and undone with the object)."""
    import json

    from model_runtime.part_edits import edits_to_json

    if not edits:
        if EDITS_KEY in obj:
            del obj[EDITS_KEY]
    else:
        obj[EDITS_KEY] = json.dumps({"stamp": stored.meta.get("stamp"), "edits": json.loads(edits_to_json(edits))})
    stored.edits = list(edits)


def clear(obj) -> bool:
    """Forget the stored result; True when there was one."""
    had = False
    block = obj.get(BLOCK_KEY)
    for key in (RESULT_KEY, FACE_MAP_KEY, META_KEY, EDITS_KEY, BLOCK_KEY):
        if key in obj:
            del obj[key]
            had = True
    _remove_if_unused(block)
    _cache.pop(obj.session_uid, None)
    _problems.pop(obj.session_uid, None)
    return had


def is_stale(obj, full: bool = True, cached: bool = False) -> bool:
    """True when the mesh changed since the compute (polygon count, or with `full` a content hash).

    `cached` reuses a fingerprint computed earlier for the same mesh (for panel drawing; the
    cache is dropped by the depsgraph handler when the geometry changes)."""
    if not has_result(obj):
        return False
    m = meta(obj)
    me = obj.data
    if len(me.polygons) != m.get("base_polygons"):
        return True
    if not full:
        return False
    if cached:
        return current_fingerprint(me) != m.get("fingerprint")
    from .mesh_data import fingerprint

    return fingerprint(me) != m.get("fingerprint")


def current_fingerprint(me) -> str:
    """Fingerprint of a mesh, cached until its counts change or `forget_fingerprint` is called."""
    from .mesh_data import fingerprint, mesh_counts

    key = me.as_pointer()
    counts = mesh_counts(me)
    hit = _fingerprints.get(key)
    if hit is not None and hit[0] == counts:
        return hit[1]
    fp = fingerprint(me)
    _fingerprints[key] = (counts, fp)
    return fp


def remember_fingerprint(me, fp: str) -> None:
    """Cache a fingerprint just computed from `me` (when a compute reads the mesh): unless the
    mesh is edited meanwhile, the panel's first redraw after the compute does not hash it again."""
    from .mesh_data import mesh_counts

    _fingerprints[me.as_pointer()] = (mesh_counts(me), fp)


def forget_fingerprints(mesh_pointer: int | None = None) -> None:
    """Drop cached fingerprints (all, or of one mesh) after geometry edits."""
    if mesh_pointer is None:
        _fingerprints.clear()
        _own_updates.clear()
    else:
        _fingerprints.pop(mesh_pointer, None)
        _own_updates.discard(mesh_pointer)


def note_own_update(me) -> None:
    """Record that the add-on is about to tag `me` for a geometry update that changes no
    positions or topology (the preview colour write), so `geometry_updated` keeps its
    cached fingerprint and the panel's staleness check stays O(1) while the slider moves."""
    _own_updates.add(me.as_pointer())


def geometry_updated(mesh_pointer: int) -> None:
    """The depsgraph reported a geometry update of a mesh: forget its fingerprint, unless
    the update is the add-on's own colour write (`note_own_update`), which is consumed.

    Blender evaluates the depsgraph after every operator and UI event, so a user edit after
    a recolour arrives as its own update. (A script that recolours and edits the mesh before
    one evaluation would hide that edit from the panel's cached check only; Apply and the
    compute always re-hash the mesh.)"""
    if mesh_pointer in _own_updates:
        _own_updates.discard(mesh_pointer)
        return
    _fingerprints.pop(mesh_pointer, None)


def forget_cache() -> None:
    """Drop all in-memory results (after loading another file)."""
    _cache.clear()
    _problems.clear()
    _fingerprints.clear()
    _own_updates.clear()
