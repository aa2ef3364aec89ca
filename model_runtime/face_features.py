"""Per-polygon features: the average of the part field over each polygon.

The field is bilinear between the texels of three R x R planes, so its average over a
polygon only needs samples about a texel apart, not 1000 random ones. "quadrature" (the
default) covers every triangle with a fixed pattern about one texel apart (texel size
2 / (R - 1) in the normalised frame, as decoding uses align_corners=True on [-1, 1]):
strips parallel to its longest edge, a strip per texel of height, points a texel apart
along each strip weighted by the strip's width there (exact for fields linear over the
triangle). A triangle smaller than a texel gets one point, its centroid; a sliver gets one
strip. Polygons average their triangles by area.
"random" reproduces the original: K uniform random points per face, plain mean.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from .errors import Cancelled, InputError

METHODS = ("quadrature", "random")
DEFAULT_SPACING = 1.0  # points about this many texels apart on large triangles
DEFAULT_SMALL_SPACING = 0.5  # ... and this many on triangles of at most 2 texels
DEFAULT_MAX_SUBDIVISION = 128  # at most 128 strips of 128 points per triangle
DEFAULT_RANDOM_SAMPLES = 1000  # the original's K
DEFAULT_MAX_MEMORY_MB = 256


def texel_size(plane_resolution) -> float:
    """Texel spacing in the normalised frame (grid_sample align_corners=True on [-1, 1])."""
    return 2.0 / (int(plane_resolution) - 1)


class _Plan:
    """Query points of a mesh, made batch by batch: each batch is (points (Q,3) float32,
    polygon (Q,) int64, weight (Q,) float64) with the weights of a polygon summing to 1."""

    def __init__(self, total, batches):
        self.total = int(total)
        self.batches = batches  # list of callables -> (points, poly, weight)


def _triangle_data(mesh, vertices):
    tris, t2p = mesh.triangulate()
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    parea = np.bincount(t2p, weights=area, minlength=mesh.num_polygons)
    return a, b, c, area, t2p, parea


def _batched(counts, chunk):
    """Split items with point `counts` into consecutive ranges of about `chunk` points."""
    ends = np.cumsum(counts)
    bounds = [0]
    total = int(ends[-1]) if ends.size else 0
    target = chunk
    while target < total:
        k = int(np.searchsorted(ends, target, side="left")) + 1
        if k <= bounds[-1]:
            k = bounds[-1] + 1
        if k >= counts.size:
            break
        bounds.append(k)
        target = int(ends[k - 1]) + chunk
    bounds.append(counts.size)
    return list(zip(bounds[:-1], bounds[1:]))


def quadrature_plan(mesh, vertices, plane_resolution, spacing=DEFAULT_SPACING,
                    max_subdivision=DEFAULT_MAX_SUBDIVISION, chunk=65536,
                    small_spacing=None) -> _Plan:
    """Texel-aware fixed quadrature points for every polygon (see module doc). Point
    spacing is `spacing` texels on triangles whose longest edge is >= 4 texels and
    `small_spacing` (default: half of `spacing`) on those <= 2 texels (linear in between): on a small triangle the
    error of each point does not average out over many texels."""
    a, b, c, area, t2p, parea = _triangle_data(mesh, vertices)
    texel = texel_size(plane_resolution)
    if small_spacing is None:
        small_spacing = float(spacing) * DEFAULT_SMALL_SPACING / DEFAULT_SPACING
    # longest edge first: p0 -> p1 is the longest edge, p2 the apex
    e = np.stack([((b - a) ** 2).sum(1), ((c - b) ** 2).sum(1), ((a - c) ** 2).sum(1)], 1)
    k = e.argmax(1)
    p0 = np.where((k == 0)[:, None], a, np.where((k == 1)[:, None], b, c))
    p1 = np.where((k == 0)[:, None], b, np.where((k == 1)[:, None], c, a))
    p2 = np.where((k == 0)[:, None], c, np.where((k == 1)[:, None], a, b))
    length = np.sqrt(e.max(1))
    h = texel * np.interp(length / texel, [2.0, 4.0], [float(small_spacing), float(spacing)])
    height = np.divide(2 * area, length, out=np.zeros_like(area), where=length > 0)
    rows = np.clip(np.ceil(height / h), 1, max_subdivision).astype(np.int64)
    ok = parea[t2p] > 0
    rows[~ok] = 0
    w_tri = np.where(ok, area / np.where(ok, parea[t2p], 1.0), 0.0)
    # points per triangle, to size the batches: each row j has ceil(row length / h) points
    counts = _row_counts(rows, length, h, max_subdivision, totals_only=True)
    lonely = np.flatnonzero(~(parea > 0))  # no area or no triangle: read at the corner mean
    centers = mesh.polygon_centers(vertices)[lonely] if lonely.size else np.zeros((0, 3))
    batches = []
    for s, e_ in _batched(counts, chunk):
        batches.append(lambda s=s, e_=e_: _quadrature_batch(p0, p1, p2, rows, length, h, max_subdivision,
                                                             w_tri, t2p, s, e_))
    if lonely.size:
        batches.append(lambda: (centers.astype(np.float32), lonely, np.ones(lonely.size)))
    return _Plan(int(counts.sum()) + lonely.size, batches)


def _row_counts(rows, length, h, cap, totals_only=False):
    """Strips of each triangle parallel to its longest edge: per strip (triangle, v_a, v_b,
    n points, area share), or just the point total per triangle."""
    tri = np.repeat(np.arange(rows.size), rows)
    first = np.cumsum(rows) - rows
    j = np.arange(tri.size) - first[tri]
    n = rows[tri].astype(np.float64)
    va, vb = j / n, (j + 1) / n
    mass = (1 - va) ** 2 - (1 - vb) ** 2  # strip area / triangle area
    npts = np.clip(np.ceil(length[tri] * (1 - va) / h[tri]), 1, cap).astype(np.int64)
    if totals_only:
        return np.bincount(tri, weights=npts, minlength=rows.size).astype(np.int64)
    return tri, va, vb, npts, mass


def _quadrature_batch(p0, p1, p2, rows, length, h, cap, w_tri, t2p, s, e):
    """Points of triangles s..e-1, in a frame of the longest edge: x along p0 -> p1 (length
    L), y towards the apex p2 (height H, foot of the altitude at x = c, 0 <= c <= L). Strip
    [y_a, y_b] (at most a texel high) spans x in [y_a c / H, L - y_a (L - c) / H]; it is
    sampled at the midpoints of equal steps in x, each at the middle of the strip's cross-
    section there and weighted by that cross-section's height. Each triangle's points are
    then shifted so that their weighted mean is its centroid (exact for linear fields; a
    one-point triangle is read at its centroid)."""
    tri, va, vb, npts, mass = _row_counts(rows[s:e], length[s:e], h[s:e], cap)
    tl = np.arange(s, e)
    ex = p1[tl] - p0[tl]
    L = length[tl]
    ex = ex / np.maximum(L, 1e-30)[:, None]
    d2 = p2[tl] - p0[tl]
    c = np.clip(np.einsum("ij,ij->i", d2, ex), 0, L)
    ey = d2 - c[:, None] * ex
    H = np.linalg.norm(ey, axis=1)
    ey = ey / np.maximum(H, 1e-30)[:, None]
    pr = np.repeat(np.arange(tri.size), npts)
    first = np.cumsum(npts) - npts
    i = np.arange(pr.size) - first[pr]
    t = tri[pr]  # local triangle of each point
    Lt, ct, Ht = L[t], c[t], H[t]
    ya, yb = va[pr] * Ht, vb[pr] * Ht  # strip in real height units
    x0 = va[pr] * ct
    x1 = Lt - va[pr] * (Lt - ct)
    x = x0 + (x1 - x0) * (i + 0.5) / npts[pr]
    tent = np.minimum(np.divide(x * Ht, ct, out=np.full_like(x, np.inf), where=ct > 0),
                      np.divide((Lt - x) * Ht, Lt - ct, out=np.full_like(x, np.inf), where=Lt - ct > 0))
    top = np.minimum(yb, tent)
    width = np.maximum(top - ya, 1e-12 * np.maximum(Ht, 1e-30))
    y = (ya + top) / 2
    row_sum = np.bincount(pr, weights=width, minlength=tri.size)
    share = mass[pr] * width / row_sum[pr]  # sums to 1 over a triangle
    nt = e - s
    pts = p0[t + s] + x[:, None] * ex[t] + y[:, None] * ey[t]
    # shift each triangle's pattern so its weighted mean is the centroid
    centroid = (p0[tl] + p1[tl] + p2[tl]) / 3
    mean = np.stack([np.bincount(t, weights=share * pts[:, k], minlength=nt) for k in range(3)], 1)
    pts += (centroid - mean)[t]
    return pts.astype(np.float32), t2p[t + s], w_tri[t + s] * share


def random_plan(mesh, vertices, samples=DEFAULT_RANDOM_SAMPLES, seed=0, chunk=65536) -> _Plan:
    """The original's sampling: `samples` uniform random points on every polygon."""
    a, b, c, area, t2p, parea = _triangle_data(mesh, vertices)
    p = mesh.num_polygons
    k = int(samples)
    if k < 1:
        raise InputError("samples per face must be at least 1")
    cdf = np.cumsum(area)
    first = np.searchsorted(t2p, np.arange(p), side="left")
    last = np.searchsorted(t2p, np.arange(p), side="right") - 1
    base = np.where(first > 0, cdf[np.maximum(first - 1, 0)], 0.0)
    centers = mesh.polygon_centers(vertices)
    rng = np.random.default_rng(seed)
    per = max(1, chunk // k)
    batches = []

    def batch(ps):
        poly = np.repeat(ps, k)
        has = parea[poly] > 0
        u = rng.random(poly.size)
        tri = np.searchsorted(cdf, base[poly] + u * parea[poly], side="right")
        tri = np.clip(tri, first[poly], np.maximum(last[poly], first[poly]))
        tri = np.minimum(tri, max(len(cdf) - 1, 0))
        r1, r2 = np.sqrt(rng.random(poly.size)), rng.random(poly.size)
        pts = (a[tri] * (1 - r1)[:, None] + b[tri] * (r1 * (1 - r2))[:, None] + c[tri] * (r1 * r2)[:, None]) \
            if len(cdf) else np.zeros((poly.size, 3))
        pts[~has] = centers[poly[~has]]
        return pts.astype(np.float32), poly, np.full(poly.size, 1.0 / k)

    for s in range(0, p, per):
        batches.append(lambda ps=np.arange(s, min(p, s + per)): batch(ps))
    return _Plan(p * k, batches)


def polygon_features(mesh, decode_fn, vertices=None, method="quadrature", plane_resolution=128,
                     spacing=DEFAULT_SPACING, max_subdivision=DEFAULT_MAX_SUBDIVISION,
                     samples=DEFAULT_RANDOM_SAMPLES, seed=0, max_memory_mb=DEFAULT_MAX_MEMORY_MB,
                     progress=None, cancel=None, stats=None) -> np.ndarray:
    """(P, F) float32 per-polygon mean of `decode_fn(queries (Q,3) normalised) -> (Q,F)`.

    `vertices`: the mesh vertices in the normalised frame (default: `mesh.vertices`).
    `method`: "quadrature" (texel-aware, default) or "random" (K=`samples` random points per
    face, the original). Queries are built and decoded in chunks sized by `max_memory_mb`.
    `progress(fraction)` after each chunk; `cancel()` polled between chunks (raises
    `Cancelled`). Pass a dict as `stats` to receive {"points", "seconds", "chunks"}.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    v = mesh.vertices if vertices is None else vertices
    # one chunk: queries (12 B) + features and their weighted copy (2 x 4 x F B, F <= 512)
    chunk = int(max(1024, (max_memory_mb or DEFAULT_MAX_MEMORY_MB) * 2**20 // (12 + 8 * 512 + 24)))
    t0 = time.perf_counter()
    if method == "quadrature":
        plan = quadrature_plan(mesh, v, plane_resolution, spacing, max_subdivision, chunk)
    else:
        plan = random_plan(mesh, v, samples, seed, chunk)
    p = mesh.num_polygons
    acc = None
    done = 0
    for n, make in enumerate(plan.batches):
        if cancel is not None and cancel():
            raise Cancelled("feature decoding cancelled")
        pts, poly, w = make()
        if pts.shape[0] == 0:
            continue
        feats = np.asarray(decode_fn(pts))
        if feats.ndim != 2 or feats.shape[0] != pts.shape[0]:
            raise InputError(f"decode_fn returned shape {feats.shape} for {pts.shape[0]} queries")
        if acc is None:
            acc = np.zeros((p, feats.shape[1]), np.float64)
        lo, hi = int(poly.min()), int(poly.max()) + 1
        wmat = sp.csr_matrix((w, (poly - lo, np.arange(poly.size))), shape=(hi - lo, poly.size))
        acc[lo:hi] += wmat @ feats.astype(np.float64, copy=False)
        done += pts.shape[0]
        if progress is not None:
            progress(done / max(plan.total, 1))
    if acc is None:
        raise InputError("the mesh produced no query points")
    if stats is not None:
        stats.update(points=int(plan.total), seconds=time.perf_counter() - t0, chunks=len(plan.batches))
    return acc.astype(np.float32)
