"""Blender mesh -> `model_runtime.mesh.MeshArrays`, read with `foreach_get` into numpy.

Only the main thread may call these functions (they read bpy data).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


def mesh_counts(me) -> tuple[int, int, int]:
    """(vertices, polygons, loops) of a bpy Mesh."""
    return len(me.vertices), len(me.polygons), len(me.loops)


def typed_attribute(me, name: str, data_type: str, domain: str):
    """Mesh attribute `name` of the given type and domain; a same-named one of another type or
    domain is replaced, a missing one created."""
    attr = me.attributes.get(name)
    if attr is not None and (attr.domain != domain or attr.data_type != data_type):
        me.attributes.remove(attr)
        attr = None
    if attr is None:
        attr = me.attributes.new(name, data_type, domain)
    return attr


def bulk_read(me, attr_name, field, legacy, legacy_field, n, comps, dtype) -> np.ndarray:
    """Bulk read through the generic attribute (`position`, `.corner_vert`...: a plain copy) or,
    where a Blender version has none, the legacy RNA collection (per element, ~100x slower)."""
    buf = np.empty(n * comps, dtype)
    attr = me.attributes.get(attr_name)
    if attr is not None:
        attr.data.foreach_get(field, buf)
    else:
        getattr(me, legacy).foreach_get(legacy_field, buf)
    return buf.reshape(n, comps) if comps > 1 else buf


def read_arrays(me) -> dict[str, np.ndarray]:
    """Raw arrays of a bpy Mesh: vertices (V,3) f32, loop_starts (P,), loop_totals (P,), loop_vertices (L,).

    Corners of a polygon are contiguous and in polygon order (Blender's face offsets), so the
    totals are the differences of the starts."""
    nv, npoly, nloop = mesh_counts(me)
    loop_starts = np.empty(npoly, dtype=np.int32)
    me.polygons.foreach_get("loop_start", loop_starts)
    loop_totals = np.diff(np.append(loop_starts, np.int32(nloop))).astype(np.int32)
    return {
        "vertices": bulk_read(me, "position", "vector", "vertices", "co", nv, 3, np.float32),
        "loop_starts": loop_starts,
        "loop_totals": loop_totals,
        "loop_vertices": bulk_read(me, ".corner_vert", "value", "loops", "vertex_index", nloop, 1, np.int32),
    }


def loop_polygons(me) -> np.ndarray:
    """Index of the polygon that owns each loop (face corner), shape (L,)."""
    npoly = len(me.polygons)
    starts = np.empty(npoly, dtype=np.int32)
    me.polygons.foreach_get("loop_start", starts)  # (faster than loop_total, which bpy derives per polygon)
    totals = np.diff(np.append(starts, np.int32(len(me.loops))))
    return np.repeat(np.arange(npoly, dtype=np.int32), totals)


def polygon_centers(me) -> np.ndarray:
    """Polygon centres (P,3) float32 in object space."""
    out = np.empty(len(me.polygons) * 3, dtype=np.float32)
    me.polygons.foreach_get("center", out)
    return out.reshape(-1, 3)


def fingerprint(me) -> str:
    """Cheap content hash of a mesh's topology and vertex positions (detects edits after a compute)."""
    return _fingerprint_of(read_arrays(me), mesh_counts(me))


def _fingerprint_of(arrays: dict, counts) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(counts, dtype=np.int64).tobytes())
    for key in ("vertices", "loop_totals", "loop_vertices"):
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def to_mesh_arrays(me, arrays: dict | None = None):
    """A bpy Mesh as `MeshArrays` (vertices in object space); `arrays`: its `read_arrays`, if read."""
    from model_runtime.mesh import MeshArrays

    a = read_arrays(me) if arrays is None else arrays
    return MeshArrays(
        vertices=a["vertices"],
        loop_starts=a["loop_starts"],
        loop_totals=a["loop_totals"],
        loop_vertices=a["loop_vertices"],
    )


@dataclass
class ObjectMesh:
    """What a compute reads from one object.

    `mesh` is what the network sees (base or evaluated mesh). `face_map` maps every polygon of
    the base mesh to a polygon of `mesh` when the evaluated mesh has a different topology
    (None when `mesh` is the base mesh polygon for polygon).
    """

    mesh: object  # MeshArrays
    face_map: np.ndarray | None
    fingerprint: str
    base_polygons: int


def read_object(obj, use_modifiers: bool = False, depsgraph=None) -> ObjectMesh:
    """Read a mesh object: the base mesh, or the evaluated mesh (modifiers applied) mapped back to the base."""
    base = obj.data
    arrays = read_arrays(base)  # read once: hashed and, without modifiers, segmented
    fp = _fingerprint_of(arrays, mesh_counts(base))
    if not use_modifiers or not obj.modifiers:
        return ObjectMesh(to_mesh_arrays(base, arrays), None, fp, len(base.polygons))
    import bpy

    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    me = evaluated.to_mesh()
    try:
        arrays = to_mesh_arrays(me)
        same_topology = (
            len(me.polygons) == len(base.polygons) and len(me.loops) == len(base.loops)
        )
        if same_topology:
            face_map = None
        else:
            face_map = _nearest_faces(polygon_centers(base), polygon_centers(me))
    finally:
        evaluated.to_mesh_clear()
    return ObjectMesh(arrays, face_map, fp, len(base.polygons))


def _nearest_faces(base_centers: np.ndarray, eval_centers: np.ndarray) -> np.ndarray:
    """For each base polygon, the evaluated polygon whose centre is nearest."""
    if len(eval_centers) == 0:
        return np.zeros(len(base_centers), dtype=np.int64)
    from scipy.spatial import cKDTree

    _, idx = cKDTree(eval_centers).query(base_centers, k=1)
    return np.asarray(idx, dtype=np.int64)
