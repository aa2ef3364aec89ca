"""Surface nets: a closed triangle mesh from a sampled signed distance field (vectorised numpy).

One vertex per grid cell that the surface crosses (the mean of the edge crossings), one
quad (two triangles) per grid edge with a sign change, oriented outwards (negative = inside).
"""
from __future__ import annotations

import numpy as np


def surface_nets(values: np.ndarray, origin: np.ndarray, spacing: float):
    """Mesh the zero level set of `values` (nx, ny, nz) sampled at origin + index * spacing.

    The field should be positive on the whole border of the grid so the surface is closed.
    Returns (vertices (V, 3) float64, triangles (T, 3) int64).
    """
    s = np.asarray(values, dtype=np.float64)
    nx, ny, nz = s.shape
    inside = s < 0.0
    cell_sum = np.zeros((nx - 1, ny - 1, nz - 1, 3))
    cell_cnt = np.zeros((nx - 1, ny - 1, nz - 1))
    edge_masks = []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        a, b = s[tuple(lo)], s[tuple(hi)]
        cross = inside[tuple(lo)] != inside[tuple(hi)]
        edge_masks.append((cross, inside[tuple(lo)]))
        t = np.where(cross, a / np.where(cross, a - b, 1.0), 0.0)
        # Crossing point in index coordinates, relative to the edge's first grid point.
        idx = np.indices(a.shape, dtype=np.float64)
        pt = np.stack([idx[0], idx[1], idx[2]], -1)
        pt[..., axis] += t
        pt *= cross[..., None]
        w = cross.astype(np.float64)
        # An edge along `axis` touches the (up to) 4 cells around it.
        o1, o2 = [d for d in range(3) if d != axis]
        for d1 in (0, 1):
            for d2 in (0, 1):
                src = [slice(None)] * 3
                dst = [slice(None)] * 3
                for d, dd in ((o1, d1), (o2, d2)):
                    n_cells = s.shape[d] - 1
                    # edge coordinate j touches cell j - dd (when 0 <= j - dd < n_cells).
                    src[d] = slice(dd, dd + n_cells)
                    dst[d] = slice(0, n_cells)
                cell_sum[tuple(dst)] += pt[tuple(src)]
                cell_cnt[tuple(dst)] += w[tuple(src)]
    active = cell_cnt > 0
    vid = np.full(active.shape, -1, dtype=np.int64)
    vid[active] = np.arange(int(active.sum()))
    verts = cell_sum[active] / cell_cnt[active][:, None]
    verts = np.asarray(origin, dtype=np.float64) + verts * spacing

    tris = []
    for axis, (cross, lo_inside) in enumerate(edge_masks):
        o1, o2 = [d for d in range(3) if d != axis]
        # Only edges with all four neighbouring cells present (interior in o1, o2).
        sl = [slice(None)] * 3
        sl[o1] = slice(1, s.shape[o1] - 1)
        sl[o2] = slice(1, s.shape[o2] - 1)
        c = cross[tuple(sl)]
        e = np.argwhere(c)
        if len(e) == 0:
            continue
        e[:, o1] += 1
        e[:, o2] += 1
        flip = lo_inside[tuple(sl)][c]

        def cell(d1, d2):
            q = e.copy()
            q[:, o1] -= d1
            q[:, o2] -= d2
            return vid[q[:, 0], q[:, 1], q[:, 2]]

        # Quad around the edge in the (o1, o2) plane, counter-clockwise seen from +axis
        # when (axis, o1, o2) is a right-handed cyclic order.
        q = np.stack([cell(1, 1), cell(0, 1), cell(0, 0), cell(1, 0)], -1)
        cyclic = (o1 - axis) % 3 == 1
        # Outward = from inside to outside; lo inside means outward is +axis.
        want_ccw = flip if cyclic else ~flip
        q[~want_ccw] = q[~want_ccw][:, ::-1]
        tris.append(q[:, [0, 1, 2]])
        tris.append(q[:, [0, 2, 3]])
    if not tris:
        return verts, np.zeros((0, 3), dtype=np.int64)
    return verts, np.concatenate(tris).astype(np.int64)


def signed_volume(verts: np.ndarray, tris: np.ndarray) -> float:
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
