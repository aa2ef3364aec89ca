"""Area-weighted random surface sampling (the network's input point cloud), seeded."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

DEFAULT_NUM_POINTS = 100_000


@dataclass
class SurfaceSample:
    points: np.ndarray  # (N,3) float32, in the frame of the vertices given
    polygon_ids: np.ndarray  # (N,) int64, the source polygon of each point
    normals: np.ndarray | None = None  # (N,3) float32 unit normal of each point's triangle


def sample_triangles(vertices, tris, tri_to_poly, count=DEFAULT_NUM_POINTS, seed=0) -> SurfaceSample:
    """`count` points uniformly distributed over the surface (triangle chosen with
    probability proportional to its area, uniform barycentric position inside it).
    The same inputs and seed always give the same points."""
    v = np.asarray(vertices, dtype=np.float64)
    tris = np.asarray(tris, dtype=np.int64)
    if count <= 0:
        raise InputError("the number of sample points must be positive")
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    cross = np.cross(b - a, c - a)  # (T, 3): twice the area along the normal
    twice_area = np.linalg.norm(cross, axis=1)
    areas = 0.5 * twice_area
    total = areas.sum()
    if tris.shape[0] == 0 or not np.isfinite(total) or total <= 0:
        raise InputError("the surface has no area to sample")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(areas)
    pick = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right")
    pick = np.minimum(pick, tris.shape[0] - 1)
    r1 = np.sqrt(rng.random(count))
    r2 = rng.random(count)
    wa, wb, wc = 1 - r1, r1 * (1 - r2), r1 * r2
    pts = a[pick] * wa[:, None] + b[pick] * wb[:, None] + c[pick] * wc[:, None]
    n = cross[pick] / np.maximum(twice_area[pick], 1e-30)[:, None]
    return SurfaceSample(points=pts.astype(np.float32), polygon_ids=np.asarray(tri_to_poly)[pick],
                         normals=n.astype(np.float32))


def sample_mesh(mesh, count=DEFAULT_NUM_POINTS, seed=0, normalization=None) -> SurfaceSample:
    """Sample a `MeshArrays`; with `normalization`, points are returned in the normalised frame."""
    tris, t2p = mesh.triangulate()
    v = mesh.vertices if normalization is None else normalization.apply(mesh.vertices)
    return sample_triangles(v, tris, t2p, count=count, seed=seed)


def estimate_normals(points, neighbours=16) -> np.ndarray:
    """(N,3) float32 unit normals of a point cloud, up to sign: the direction of least
    spread of each point's `neighbours` nearest points (what a model that reads sign-free
    normals needs when there are no faces)."""
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    k = int(min(max(neighbours, 3), len(pts)))
    _, idx = cKDTree(pts).query(pts, k=k)
    nb = pts[idx]  # (N, k, 3)
    nb -= nb.mean(1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb)
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    return vecs[:, :, 0].astype(np.float32)
