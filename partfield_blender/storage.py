"""Keep a segmentation with the object in the .blend, and notice when the mesh changed since.

The result (`SegmentationResult.save` npz bytes) and, for evaluated meshes, the base-to-evaluated
polygon map live in ID properties of the object, so they are saved, undone and redone with
it. Loaded results are cached per object in memory so the slider never deserialises twice.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass

import numpy as np

RESULT_KEY = "partfield_result"
FACE_MAP_KEY = "partfield_face_map"
META_KEY = "partfield_meta"

# object session uid -> (stamp, StoredResult)
_cache: dict[int, tuple[str, "StoredResult"]] = {}
# mesh pointer -> (counts, fingerprint) for cheap repeated staleness checks
_fingerprints: dict[int, tuple[tuple, str]] = {}
# mesh pointers whose next geometry update is the add-on's own colour write (see `note_own_update`)
_own_updates: set[int] = set()


@dataclass
class StoredResult:
    result: object  # model_runtime.result.SegmentationResult
    face_map: np.ndarray | None
    meta: dict

    @property
    def num_faces(self) -> int:
        return int(self.meta.get("base_polygons", 0))

    def face_labels(self, k: int) -> np.ndarray:
        """Labels (0..k'-1) for every polygon of the base mesh at granularity k."""
        labels = np.asarray(self.result.labels(int(k)))
        if self.face_map is not None:
            labels = labels[self.face_map]
        return labels


def _result_to_bytes(result) -> bytes:
    fd, path = tempfile.mkstemp(suffix=".npz", prefix="partfield_")
    os.close(fd)
    try:
        try:
            result.save(path, features_fp16=True)  # halves what the .blend carries
        except TypeError:
            result.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def _result_from_bytes(data: bytes):
    from model_runtime.result import SegmentationResult

    fd, path = tempfile.mkstemp(suffix=".npz", prefix="partfield_")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return SegmentationResult.load(path)
    finally:
        os.unlink(path)


def _array_to_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.int32).tobytes()


def store(obj, result, fingerprint: str, face_map: np.ndarray | None = None, info: dict | None = None) -> None:
    """Save `result` on `obj` (replacing an older one)."""
    meta = {
        "fingerprint": fingerprint,
        "base_polygons": len(obj.data.polygons),
        "stamp": uuid.uuid4().hex,
    }
    for key, value in (info or {}).items():
        if isinstance(value, (str, int, float, bool)):
            meta[key] = value
    obj[RESULT_KEY] = _result_to_bytes(result)
    if face_map is not None:
        obj[FACE_MAP_KEY] = _array_to_bytes(face_map)
    elif FACE_MAP_KEY in obj:
        del obj[FACE_MAP_KEY]
    obj[META_KEY] = meta
    stored = StoredResult(result, None if face_map is None else np.asarray(face_map, np.int64), dict(meta))
    _cache[obj.session_uid] = (meta["stamp"], stored)


def has_result(obj) -> bool:
    return obj is not None and obj.type == "MESH" and RESULT_KEY in obj and META_KEY in obj


def meta(obj) -> dict:
    return dict(obj[META_KEY].to_dict()) if has_result(obj) else {}


def load(obj) -> StoredResult | None:
    """The result stored on `obj` (cached), or None."""
    if not has_result(obj):
        return None
    m = meta(obj)
    hit = _cache.get(obj.session_uid)
    if hit is not None and hit[0] == m.get("stamp"):
        return hit[1]
    result = _result_from_bytes(bytes(obj[RESULT_KEY]))
    face_map = None
    if FACE_MAP_KEY in obj:
        face_map = np.frombuffer(bytes(obj[FACE_MAP_KEY]), dtype=np.int32).astype(np.int64)
    stored = StoredResult(result, face_map, m)
    _cache[obj.session_uid] = (m.get("stamp"), stored)
    return stored


def clear(obj) -> bool:
    """Forget the stored result; True when there was one."""
    had = False
    for key in (RESULT_KEY, FACE_MAP_KEY, META_KEY):
        if key in obj:
            del obj[key]
            had = True
    _cache.pop(obj.session_uid, None)
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
    _fingerprints.clear()
    _own_updates.clear()
