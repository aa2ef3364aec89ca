"""Keep a segmentation with the object in the .blend, and notice when the mesh changed since.

The result (`SegmentationResult.save` npz bytes) and, for evaluated meshes, the base-to-evaluated
polygon map live in ID properties of the object, so they are saved, undone and redone with
it. Loaded results are cached per object in memory so the slider never deserialises twice.
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

# object session uid -> (stamp, StoredResult)
_cache: dict[int, tuple[str, "StoredResult"]] = {}
# mesh pointer -> (counts, fingerprint) for cheap repeated staleness checks
_fingerprints: dict[int, tuple[tuple, str]] = {}


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
        return _with_edits(obj, hit[1])
    result = _result_from_bytes(bytes(obj[RESULT_KEY]))
    face_map = None
    if FACE_MAP_KEY in obj:
        face_map = np.frombuffer(bytes(obj[FACE_MAP_KEY]), dtype=np.int32).astype(np.int64)
    stored = StoredResult(result, face_map, m)
    _cache[obj.session_uid] = (m.get("stamp"), stored)
    return _with_edits(obj, stored)


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
    for key in (RESULT_KEY, FACE_MAP_KEY, META_KEY, EDITS_KEY):
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


def forget_fingerprints(mesh_pointer: int | None = None) -> None:
    """Drop cached fingerprints (all, or of one mesh) after geometry edits."""
    if mesh_pointer is None:
        _fingerprints.clear()
    else:
        _fingerprints.pop(mesh_pointer, None)


def forget_cache() -> None:
    """Drop all in-memory results (after loading another file)."""
    _cache.clear()
    _fingerprints.clear()
