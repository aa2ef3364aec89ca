"""`MeshArrays`: a polygon mesh in Blender's layout (loop starts/totals), triangulation, checks.

Everything downstream (features, connectivity, the part tree, labels) is per original
polygon. Triangles only exist to measure areas and to place sample points.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError


@dataclass
class MeshReport:
    """What `MeshArrays.validate` found. Fatal problems raise `InputError` instead."""

    num_vertices: int = 0
    num_polygons: int = 0
    unreferenced_vertices: int = 0
    degenerate_polygons: int = 0  # fewer than 3 distinct corners or zero area
    duplicate_polygons: int = 0  # same vertex set as an earlier polygon
    warnings: list = field(default_factory=list)


class MeshArrays:
    """A polygon mesh: `vertices (V,3)`, and per polygon `loop_starts (P,)`, `loop_totals (P,)`
    into `loop_vertices (L,)` (the vertex index of every corner), as Blender stores it."""

    def __init__(self, vertices, loop_starts, loop_totals, loop_vertices):
        self.vertices = np.asarray(vertices)
        if self.vertices.dtype not in (np.float32, np.float64):
            self.vertices = self.vertices.astype(np.float64)
        self.loop_starts = np.asarray(loop_starts, dtype=np.int64).reshape(-1)
        self.loop_totals = np.asarray(loop_totals, dtype=np.int64).reshape(-1)
        self.loop_vertices = np.asarray(loop_vertices, dtype=np.int64).reshape(-1)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise InputError(f"vertices must have shape (V, 3), got {self.vertices.shape}")
        if self.loop_starts.shape != self.loop_totals.shape:
            raise InputError(
                f"loop_starts and loop_totals differ in length "
                f"({self.loop_starts.size} vs {self.loop_totals.size})"
            )
        self._tris = None

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_triangles(cls, vertices, faces) -> "MeshArrays":
        """From a triangle (or any fixed-size polygon) array `faces (P, n)`."""
        faces = np.asarray(faces, dtype=np.int64)
        if faces.ndim != 2 or (faces.size and faces.shape[1] < 1):
            raise InputError(f"faces must have shape (P, n), got {faces.shape}")
        p, n = faces.shape
        return cls(vertices, np.arange(p, dtype=np.int64) * n, np.full(p, n, np.int64), faces.reshape(-1))

    @classmethod
    def from_polygons(cls, vertices, polygons) -> "MeshArrays":
        """From a list of vertex-index sequences of any length."""
        totals = np.fromiter((len(p) for p in polygons), dtype=np.int64, count=len(polygons))
        starts = np.zeros(len(polygons), np.int64)
        if len(polygons):
            starts[1:] = np.cumsum(totals)[:-1]
        loops = np.fromiter((i for p in polygons for i in p), dtype=np.int64, count=int(totals.sum()))
        return cls(vertices, starts, totals, loops)

    # ---------------------------------------------------------------- sizes
    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_polygons(self) -> int:
        return int(self.loop_starts.shape[0])

    @property
    def num_loops(self) -> int:
        return int(self.loop_vertices.shape[0])

    def __repr__(self):
        return f"MeshArrays(V={self.num_vertices}, P={self.num_polygons}, L={self.num_loops})"

    # ---------------------------------------------------------------- geometry
    def loop_next(self) -> np.ndarray:
        """(L,) index of the next loop of the same polygon (wrapping around)."""
        nxt = np.arange(1, self.num_loops + 1, dtype=np.int64)
        ends = self.loop_starts + self.loop_totals - 1
        ok = self.loop_totals > 0
        nxt[ends[ok]] = self.loop_starts[ok]
        return nxt

    def triangulate(self):
        """Triangles `(T,3)` vertex indices and `tri_to_poly (T,)`.

        Fan triangulation from each polygon's first corner (exact for convex polygons);
        quads use the diagonal that keeps both halves facing the same way, so concave
        quads are split correctly. Polygons with fewer than 3 corners give no triangle.
        """
        if self._tris is not None:
            return self._tris
        totals = self.loop_totals
        ntri = np.maximum(totals - 2, 0)
        tri_to_poly = np.repeat(np.arange(self.num_polygons, dtype=np.int64), ntri)
        first = np.zeros(self.num_polygons, np.int64)
        if self.num_polygons:
            first[1:] = np.cumsum(ntri)[:-1]
        local = np.arange(tri_to_poly.size, dtype=np.int64) - first[tri_to_poly] + 1
        s = self.loop_starts[tri_to_poly]
        lv = self.loop_vertices
        tris = np.stack([lv[s], lv[s + local], lv[s + local + 1]], axis=1)

        quads = np.flatnonzero(totals == 4)
        if quads.size:
            v = self.vertices.astype(np.float64)
            q = lv[self.loop_starts[quads][:, None] + np.arange(4)]  # (Q,4)
            p = v[q]
            n0 = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
            n1 = np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0])
            flip = np.einsum("ij,ij->i", n0, n1) < 0  # diagonal 0-2 lies outside: use 1-3
            if flip.any():
                fq = quads[flip]
                t0 = first[fq]
                qq = q[flip]
                tris[t0] = qq[:, [0, 1, 3]]
                tris[t0 + 1] = qq[:, [1, 2, 3]]
        self._tris = (tris, tri_to_poly)
        return self._tris

    def triangle_areas(self, vertices=None) -> np.ndarray:
        """(T,) area of each triangle of `triangulate()` (optionally with other vertex positions)."""
        tris, _ = self.triangulate()
        v = np.asarray(self.vertices if vertices is None else vertices, dtype=np.float64)
        a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)

    def polygon_areas(self, vertices=None) -> np.ndarray:
        """(P,) polygon areas (sum of their triangles)."""
        _, t2p = self.triangulate()
        return np.bincount(t2p, weights=self.triangle_areas(vertices), minlength=self.num_polygons)

    def polygon_centers(self, vertices=None) -> np.ndarray:
        """(P,3) mean of each polygon's corners (float64)."""
        v = np.asarray(self.vertices if vertices is None else vertices, dtype=np.float64)
        poly_of_loop = np.repeat(np.arange(self.num_polygons), self.loop_totals)
        out = np.zeros((self.num_polygons, 3))
        for axis in range(3):
            out[:, axis] = np.bincount(
                poly_of_loop, weights=v[self.loop_vertices, axis], minlength=self.num_polygons
            )
        return out / np.maximum(self.loop_totals, 1)[:, None]

    def referenced_vertices(self) -> np.ndarray:
        """(V,) bool: vertex used by at least one polygon."""
        used = np.zeros(self.num_vertices, bool)
        used[self.loop_vertices] = True
        return used

    # ---------------------------------------------------------------- checks
    def validate(self) -> MeshReport:
        """Check the mesh. Raises `InputError` for what cannot be segmented (no faces, a single
        face, indices out of range, NaN/inf corners, no surface area); returns a `MeshReport`
        with counts and warnings for what is handled (degenerate or duplicate polygons,
        unreferenced vertices). Non-manifold edges and loose pieces are handled by
        `connectivity.build_connectivity`."""
        rep = MeshReport(num_vertices=self.num_vertices, num_polygons=self.num_polygons)
        if self.num_vertices == 0:
            raise InputError("the mesh has no vertices")
        if self.num_polygons == 0:
            raise InputError("the mesh has no faces (a point cloud needs the KMeans path)")
        if self.num_polygons == 1:
            raise InputError("the mesh has a single face; at least 2 are needed to find parts")
        if (self.loop_totals < 0).any() or (self.loop_starts < 0).any() or (
            self.loop_starts + self.loop_totals > self.num_loops
        ).any():
            raise InputError("polygon loop starts/totals point outside the loop array")
        if self.num_loops and (self.loop_vertices.min() < 0 or self.loop_vertices.max() >= self.num_vertices):
            bad = int(((self.loop_vertices < 0) | (self.loop_vertices >= self.num_vertices)).sum())
            raise InputError(
                f"{bad} face corners use vertex indices outside 0..{self.num_vertices - 1}"
            )
        used = self.referenced_vertices()
        finite = np.isfinite(self.vertices).all(axis=1)
        bad = int((~finite & used).sum())
        if bad:
            raise InputError(f"{bad} vertices used by faces have NaN or infinite coordinates")
        rep.unreferenced_vertices = int((~used).sum())
        if rep.unreferenced_vertices:
            rep.warnings.append(f"{rep.unreferenced_vertices} vertices are not used by any face (ignored)")

        areas = self.polygon_areas()
        scale = np.ptp(self.vertices[used], axis=0).max() if used.any() else 0.0
        if not np.isfinite(scale) or scale <= 0:
            raise InputError("all faces collapse to a single point (the mesh has no extent)")
        degenerate = (self.loop_totals < 3) | (areas <= (1e-12 * scale) ** 2)
        rep.degenerate_polygons = int(degenerate.sum())
        if rep.degenerate_polygons == self.num_polygons:
            raise InputError("every face has zero area (degenerate mesh)")
        if rep.degenerate_polygons:
            rep.warnings.append(
                f"{rep.degenerate_polygons} faces have zero area or fewer than 3 corners "
                "(they get the features of their centre and join their neighbours)"
            )
        rep.duplicate_polygons = self._count_duplicates()
        if rep.duplicate_polygons:
            rep.warnings.append(f"{rep.duplicate_polygons} faces duplicate another face (kept)")
        return rep

    def _count_duplicates(self) -> int:
        """Polygons whose sorted vertex list equals an earlier polygon's (vectorised per size)."""
        dup = 0
        for n in np.unique(self.loop_totals):
            sel = np.flatnonzero(self.loop_totals == n)
            if sel.size < 2 or n == 0:
                continue
            keys = np.sort(self.loop_vertices[self.loop_starts[sel][:, None] + np.arange(n)], axis=1)
            dup += sel.size - np.unique(keys, axis=0).shape[0]
        return int(dup)
