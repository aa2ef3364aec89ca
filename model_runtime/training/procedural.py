"""Procedural part-labelled shapes, deterministic by seed.

`make_shape(seed)` picks a category, builds an assembly of primitives with a part
hierarchy (`shapes.py`) and meshes it either as many loose pieces (one mesh per
primitive, random tessellation) or as one welded surface (surface nets of the union's
signed distance, smooth blends for organic forms; faces labelled by the nearest
primitive). Then vertex noise and a random orientation (random up axis, yaw, small tilt).

`sample_points(shape, ...)` gives what training needs: input surface points (and their
normals, for networks that read them) and labelled
query points (surface, plus interior points of the closed solids), all in the runtime's
normalised frame (bounding-box centre at 0, longest side 1.8).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .primitives import mesh_world, random_rotation, rot_axis, sample_inside, sdf
from .shapes import CATEGORIES, CATEGORY_WEIGHTS, Assembly
from .shapes_organic import WEAK_CATEGORIES, WEAK_WEIGHTS
from .surface_nets import surface_nets

_CAT_NAMES = list(CATEGORIES)
_CAT_P = np.array([CATEGORY_WEIGHTS[c] for c in _CAT_NAMES])
_CAT_P = _CAT_P / _CAT_P.sum()
ALL_CATEGORIES = {**CATEGORIES, **WEAK_CATEGORIES}  # by name; the default mix is CATEGORIES

# Training mixes: "default" = `CATEGORY_WEIGHTS` (the category is drawn inside `make_shape`, as
# the bundled model was trained); "weak" = the same plus the weak kinds of issue 20 with
# `WEAK_WEIGHTS` (relative to the same scale; about 29% of the shapes); "weak-heavy" = the same
# with the weak kinds weighted `HEAVY_FACTOR` times as much (about 55%).
MIXES = ("default", "weak", "weak-heavy")
HEAVY_FACTOR = 3.0
_WEAK_MIX_NAMES = _CAT_NAMES + list(WEAK_CATEGORIES)


def _mix_p(weak_factor: float) -> np.ndarray:
    w = np.array([CATEGORY_WEIGHTS[c] for c in _CAT_NAMES] + [weak_factor * WEAK_WEIGHTS[c] for c in WEAK_CATEGORIES])
    return w / w.sum()


_MIX_P = {"weak": _mix_p(1.0), "weak-heavy": _mix_p(HEAVY_FACTOR)}


def mix_category(seed: int, mix: str = "default") -> str | None:
    """The category a training shape of `seed` gets in `mix`; None for "default" (then
    `make_shape` draws it from its own seeded generator, unchanged since the bundled model)."""
    if mix == "default":
        return None
    if mix in _MIX_P:
        rng = np.random.default_rng([seed, 29])
        return _WEAK_MIX_NAMES[rng.choice(len(_WEAK_MIX_NAMES), p=_MIX_P[mix])]
    raise ValueError(f"unknown training mix {mix!r} (expected one of {', '.join(MIXES)})")


@dataclass
class PartShape:
    """A triangle mesh with a part hierarchy.

    vertices (V, 3) float64, faces (T, 3) int64, face_leaf (T,) leaf part per face,
    proposals (P, L) bool: leaf membership of every part at every level (leaves first),
    `transform` (3, 3): the rotation applied after building (for interior samples).
    """
    category: str
    vertices: np.ndarray
    faces: np.ndarray
    face_leaf: np.ndarray
    proposals: np.ndarray
    assembly: Assembly
    transform: np.ndarray
    welded: bool
    seed: int
    tessellation: str = "uniform"  # or one of TESSELLATIONS (the weak kinds vary it)

    @property
    def n_leaves(self) -> int:
        return self.proposals.shape[1]

    def group_labels(self, level: str = "leaf") -> np.ndarray:
        """Per-face ground-truth labels: "leaf" parts, or "top" = the coarsest groups."""
        if level == "leaf":
            return self.face_leaf.copy()
        # Coarsest: each leaf mapped to the largest proposal that contains it.
        sizes = self.proposals.sum(1)
        order = np.argsort(-sizes, kind="stable")
        top = np.full(self.n_leaves, -1)
        for p in order:
            free = self.proposals[p] & (top < 0)
            top[free] = p
        return top[self.face_leaf]


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (k = blend radius; 0 is a hard union)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _mesh_loose(asm: Assembly, rng) -> tuple:
    res = int(rng.integers(8, 40))
    verts, faces, labels = [], [], []
    n = 0
    for prim, leaf in zip(asm.prims, asm.prim_leaf):
        r = max(6, int(res * rng.uniform(0.7, 1.3)))
        v, f = mesh_world(prim, r)
        verts.append(v)
        faces.append(f + n)
        labels.append(np.full(len(f), leaf))
        n += len(v)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(labels)


def _mesh_welded(asm: Assembly, rng, blend: float, grid_res: int) -> tuple:
    lo = np.min([p.world_bounds()[0] for p in asm.prims], axis=0)
    hi = np.max([p.world_bounds()[1] for p in asm.prims], axis=0)
    size = float((hi - lo).max())
    h = size / grid_res
    pad = 2 * h + blend
    lo, hi = lo - pad, hi + pad
    axes = [np.arange(lo[i], hi[i] + h, h) for i in range(3)]
    shape = tuple(len(a) for a in axes)
    # Coarse-to-fine: exact values only in a band around the surface (|sdf| is 1-Lipschitz,
    # so a point far from the surface at the coarse level keeps its sign).
    step = 4
    coarse_axes = [a[::step] for a in axes]
    coarse = _union_field(asm, np.stack(np.meshgrid(*coarse_axes, indexing="ij"), -1).reshape(-1, 3), blend)
    coarse = coarse.reshape(tuple(len(a) for a in coarse_axes))
    field = coarse
    for axis in range(3):
        field = np.repeat(field, step, axis=axis)
    field = field[: shape[0], : shape[1], : shape[2]].copy()
    band = np.abs(field) < 1.5 * step * h
    idx = np.nonzero(band)
    pts = np.stack([axes[0][idx[0]], axes[1][idx[1]], axes[2][idx[2]]], -1)
    field[idx] = _union_field(asm, pts, blend)
    field[[0, -1]] = np.abs(field[[0, -1]]) + h  # closed surface
    field[:, [0, -1]] = np.abs(field[:, [0, -1]]) + h
    field[:, :, [0, -1]] = np.abs(field[:, :, [0, -1]]) + h
    v, f = surface_nets(field, lo, h)
    centroids = v[f].mean(1)
    labels = nearest_leaf(asm, centroids)
    return v, f, labels


def prim_sdf(asm: Assembly, i: int, pts: np.ndarray) -> np.ndarray:
    """Signed distance of primitive `i` of `asm` with its cuts (`Assembly.drill`) removed."""
    d = sdf(asm.prims[i], pts)
    for c in asm.cuts.get(i, ()):
        d = np.maximum(d, -sdf(c, pts))
    return d


def _union_field(asm: Assembly, pts: np.ndarray, blend: float) -> np.ndarray:
    field = None
    for i in range(len(asm.prims)):
        d = prim_sdf(asm, i, pts)
        field = d if field is None else _smin(field, d, blend)
    return field


def nearest_leaf(asm: Assembly, pts: np.ndarray) -> np.ndarray:
    """Leaf part of the primitive with the smallest signed distance at each point."""
    d = np.stack([prim_sdf(asm, i, pts) for i in range(len(asm.prims))], axis=1)
    return np.asarray(asm.prim_leaf)[np.argmin(d, axis=1)]


# ---------------------------------------------------------------------------------------
# Tessellations like real assets (the weak kinds: `Assembly.varied_tessellation`).

TESSELLATIONS = ("uniform", "decimated", "irregular", "coarse", "dense")


def decimate_clusters(v: np.ndarray, f: np.ndarray, cell: float, offset: np.ndarray):
    """Vertex clustering: vertices in one grid cell merge at their mean; faces that collapse
    go. Returns (vertices, faces, kept face index)."""
    key = np.floor((v - offset) / cell).astype(np.int64)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    n = int(inv.max()) + 1
    cnt = np.bincount(inv, minlength=n).astype(np.float64)
    nv = np.stack([np.bincount(inv, weights=v[:, k], minlength=n) for k in range(3)], 1) / cnt[:, None]
    nf = inv[f]
    ok = (nf[:, 0] != nf[:, 1]) & (nf[:, 1] != nf[:, 2]) & (nf[:, 0] != nf[:, 2])
    idx = np.nonzero(ok)[0]
    _, first = np.unique(np.sort(nf[idx], axis=1), axis=0, return_index=True)
    idx = idx[np.sort(first)]
    return nv, nf[idx], idx


def split_irregular(v: np.ndarray, f: np.ndarray, fraction: float, rng):
    """Split a random `fraction` of the triangles in three at a random interior point (uneven
    valences and slivers). Returns (vertices, faces, source face of each face)."""
    pick = rng.random(len(f)) < fraction
    idx = np.nonzero(pick)[0]
    w = rng.dirichlet([2.0, 2.0, 2.0], size=len(idx))
    centre = np.einsum("ij,ijk->ik", w, v[f[idx]])
    c = len(v) + np.arange(len(idx))
    a, b, d = f[idx, 0], f[idx, 1], f[idx, 2]
    new = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1), np.stack([d, a, c], 1)])
    keep = np.nonzero(~pick)[0]
    faces = np.concatenate([f[keep], new])
    src = np.concatenate([keep, idx, idx, idx])
    return np.concatenate([v, centre]), faces, src


def _retessellate(v, f, labels, rng, mode: str, size: float):
    if mode == "decimated":
        v, f, kept = decimate_clusters(v, f, size / rng.uniform(30, 60), rng.uniform(0, 1, 3) * size)
        return v, f, labels[kept]
    if mode == "irregular":
        v, f, src = split_irregular(v, f, rng.uniform(0.3, 0.8), rng)
        return v, f, labels[src]
    return v, f, labels


def _orientation(rng) -> np.ndarray:
    """Random up axis (z and y favoured), full yaw, small tilt; sometimes any rotation."""
    if rng.random() < 0.1:
        return random_rotation(rng)
    yaw = rot_axis([0, 0, 1], rng.uniform(0, 2 * np.pi))
    tilt = rot_axis(rng.normal(size=3), np.deg2rad(rng.uniform(0, 12)))
    ups = [
        np.eye(3),  # z up
        np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),  # y up
        np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]),  # x up
        np.diag([1.0, -1.0, -1.0]),  # upside down
    ]
    up = ups[rng.choice(4, p=[0.4, 0.4, 0.12, 0.08])]
    return up @ tilt @ yaw


def make_shape(seed: int, category: str | None = None, welded: bool | None = None,
               orient: bool = True, welded_fraction: float = 0.35) -> PartShape:
    """One procedural shape, fully determined by (seed, category, welded, orient,
    welded_fraction). `welded_fraction`: chance that a non-organic shape (when `welded` is
    None) is meshed as one welded surface rather than loose pieces; organic ones always are."""
    rng = np.random.default_rng(seed)
    if category is None:
        category = _CAT_NAMES[rng.choice(len(_CAT_NAMES), p=_CAT_P)]
    asm = ALL_CATEGORIES[category](rng)
    # Slight jitter of every primitive (placement and angle), then scale variation.
    for p in asm.prims:
        ext = float(np.abs(p.local_extent()).max())
        p.pos = p.pos + rng.normal(scale=0.01 * ext, size=3)
        p.rot = rot_axis(rng.normal(size=3), np.deg2rad(rng.normal(scale=1.5))) @ p.rot
    if welded is None:
        welded = asm.organic or bool(asm.cuts) or rng.random() < welded_fraction
    if asm.cuts:
        welded = True  # holes exist only in the field
    tess = "uniform"
    if asm.varied_tessellation:
        tess = TESSELLATIONS[int(rng.integers(len(TESSELLATIONS)))]
    if welded:
        lo = np.min([p.world_bounds()[0] for p in asm.prims], axis=0)
        hi = np.max([p.world_bounds()[1] for p in asm.prims], axis=0)
        size = float((hi - lo).max())
        if asm.blend_range is not None:
            blend = size * rng.uniform(*asm.blend_range)
        else:
            blend = size * (rng.uniform(0.02, 0.06) if asm.organic else rng.uniform(0.0, 0.012))
        g_lo, g_hi = asm.grid_range or (40, 72)
        grid = int(rng.integers(g_lo, g_hi))
        if tess == "coarse":
            grid = int(rng.integers(max(24, g_lo // 2), max(25, g_lo * 3 // 4)))
        elif tess == "dense":
            grid = int(rng.integers(g_hi, g_hi * 3 // 2))
        v, f, labels = _mesh_welded(asm, rng, blend, grid)
        v, f, labels = _retessellate(v, f, labels, rng, tess, size)
    else:
        v, f, labels = _mesh_loose(asm, rng)
    # Vertex noise, relative to the object size.
    size = float((v.max(0) - v.min(0)).max())
    sigma = size * rng.choice([0.0, 0.0, 0.001, 0.003, 0.006])
    if sigma > 0:
        v = v + rng.normal(scale=sigma, size=v.shape)
    rot = _orientation(rng) if orient else np.eye(3)
    v = v @ rot.T
    props = np.zeros((0, asm.n_leaves), dtype=bool)
    plist = asm.proposals()
    if plist:
        props = np.zeros((len(plist), asm.n_leaves), dtype=bool)
        for i, ids in enumerate(plist):
            props[i, ids] = True
    return PartShape(category, v, f.astype(np.int64), labels.astype(np.int64), props, asm, rot, bool(welded), seed,
                     tess)


# ---------------------------------------------------------------------------------------
# Point sampling.

def normalisation(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """Bounding-box centre and the scale that maps the longest side to 1.8."""
    lo, hi = vertices.min(0), vertices.max(0)
    return (lo + hi) / 2, 1.8 / max(float((hi - lo).max()), 1e-12)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform surface samples: (points (n, 3), face index (n,))."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    cdf = np.cumsum(area)
    fid = np.searchsorted(cdf, rng.random(n) * cdf[-1])
    fid = np.minimum(fid, len(faces) - 1)
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    t = tri[fid]
    pts = (1 - r1)[:, None] * t[:, 0] + (r1 * (1 - r2))[:, None] * t[:, 1] + (r1 * r2)[:, None] * t[:, 2]
    return pts, fid


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(T, 3) unit normals of the triangles (zero for degenerate ones)."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)


def sample_interior(shape: PartShape, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Points inside the closed primitives, labelled by the most interior primitive's leaf."""
    asm = shape.assembly
    vol = np.array([np.prod(p.local_extent()) for p in asm.prims])
    counts = rng.multinomial(n, vol / vol.sum())
    pts = [sample_inside(p, int(c), rng) for p, c in zip(asm.prims, counts) if c > 0]
    pts = np.concatenate(pts) if pts else np.zeros((0, 3))
    if asm.cuts and len(pts):  # not inside a hole
        pts = pts[_union_field(asm, pts, 0.0) < 0.0]
    if len(pts) == 0:
        return pts, np.zeros(0, dtype=np.int64)
    labels = nearest_leaf(asm, pts)
    return pts @ shape.transform.T, labels


def sample_points(shape: PartShape, n_input: int, n_query: int, rng, interior_fraction: float = 0.15):
    """Training sample of one shape, normalised.

    Returns input points (n_input, 3) float32, their unit face normals (n_input, 3) float32,
    query points (n_query, 3) float32 and the leaf label of each query point (n_query,) int64.
    """
    centre, scale = normalisation(shape.vertices)
    pin, fin = sample_surface(shape.vertices, shape.faces, n_input, rng)
    nin = face_normals(shape.vertices, shape.faces)[fin].astype(np.float32)
    n_in = int(round(n_query * interior_fraction))
    qi, li = sample_interior(shape, n_in, rng)
    qs, fs = sample_surface(shape.vertices, shape.faces, n_query - len(qi), rng)
    q = np.concatenate([qs, qi])
    lab = np.concatenate([shape.face_leaf[fs], li])
    norm = lambda p: ((p - centre) * scale).astype(np.float32)  # noqa: E731
    return norm(pin), nin, norm(q), lab.astype(np.int64)
