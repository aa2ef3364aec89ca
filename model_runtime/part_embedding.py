"""The space the part tree clusters in: the network's per-polygon features, optionally
fused with two geometric cues that a feature field alone does not see.

- "features": the L2-normalised network features (the paper's clustering input).
- "fused" (default): the normalised features, concatenated with a spectral embedding of the
  polygon graph whose edge weights fall both where the features change and at concave
  creases (parts meet at concave seams), and, on meshes of several loose pieces, pulled
  towards the mean of their piece (a loose piece rarely holds more than one part).

Above the tree's natural cut, parts that do not touch may also join
(`PartTree.build(free_space=...)`), compared on the feature block alone (`feature_block`): the
spectral block measures where a polygon sits on the graph, which is what keeps apart the
look-alike parts (four legs, two arms) that this step is for.

Everything is vectorised over the graph's edges; the spectral step is one sparse
shift-invert eigensolve (`scipy.sparse.linalg.eigsh`). A `cancel()` callable is polled between
steps (edge chunks, the coarse graph, each smoothing step), at most a few tenths of a second
apart at 500k faces, and raises `Cancelled`; polling changes no result.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from .errors import Cancelled, InputError
from .part_tree import normalize_rows

CLUSTERING_METHODS = ("fused", "features")
DEFAULT_CLUSTERING = "fused"
# Eigenvectors in the spectral block. 32 (12 until 2026-12-01): nearly loose parts of similar size (a
# bearing's balls) take one small eigenvalue each, and with 12 most of them shared coordinates
# (BENCHMARKS.md, "Weak kinds of issue 20: 32 spectral eigenvectors").
SPECTRAL_DIMS = 32
CONVEX_FACTOR = 0.1  # convex creases count this much of a concave one of the same angle
PIECE_PULL = 0.8  # share of a polygon's vector replaced by its loose piece's mean
MIN_WEIGHT = 1e-3  # edge weights are clipped here so the Laplacian stays well conditioned
EXACT_LIMIT = 30_000  # above this many polygons the eigenproblem is solved on a coarse graph
COARSE_NODES = 8_000
SMOOTHING_STEPS = 12
EDGE_CHUNK = 1 << 17  # edges per chunk of the feature weights (a cancel check between chunks)


def _check(cancel):
    if cancel is not None and cancel():
        raise Cancelled("part embedding cancelled")


def feature_block(space, features) -> np.ndarray:
    """The columns of a `part_embedding` result that hold the network features (pulled to
    their loose piece in "fused"): the space in which parts that do not touch are compared."""
    return space[:, : np.shape(features)[1]]


def polygon_normals(mesh, vertices=None) -> np.ndarray:
    """(P,3) unit normals: area-weighted sum of each polygon's triangle normals."""
    tris, t2p = mesh.triangulate()
    v = np.asarray(mesh.vertices if vertices is None else vertices, dtype=np.float64)
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    cross = np.cross(b - a, c - a)
    n = np.stack([np.bincount(t2p, weights=cross[:, i], minlength=mesh.num_polygons) for i in range(3)], 1)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)


def graph_edges(connectivity) -> tuple[np.ndarray, np.ndarray]:
    """Unique polygon pairs (i < j) of a `Connectivity` (or a symmetric sparse matrix)."""
    m = sp.triu(getattr(connectivity, "matrix", connectivity), 1).tocoo()
    return m.row.astype(np.int64), m.col.astype(np.int64)


def crease_weights(centers, normals, i, j, convex_factor=CONVEX_FACTOR) -> np.ndarray:
    """(E,) weights in (0,1]: exp(-d / mean d), d = (1 - cos dihedral), scaled down by
    `convex_factor` where the crease is convex, so concave seams weigh least."""
    cos = np.clip(np.einsum("ij,ij->i", normals[i], normals[j]), -1.0, 1.0)
    concave = np.einsum("ij,ij->i", centers[j] - centers[i], normals[i]) > 1e-9
    d = np.where(concave, 1.0, convex_factor) * (1.0 - cos)
    return np.exp(-d / max(float(d.mean()), 1e-6)) if d.size else d


def feature_weights(x, i, j, cancel=None) -> np.ndarray:
    """(E,) weights in (0,1]: exp(-|x_i - x_j|^2 / mean over edges). Computed `EDGE_CHUNK`
    edges at a time (the same values; a (chunk, F) difference instead of an (E, F) one),
    polling `cancel` between chunks."""
    d = np.empty(len(i))
    for s in range(0, len(i), EDGE_CHUNK):
        _check(cancel)
        diff = x[i[s:s + EDGE_CHUNK]] - x[j[s:s + EDGE_CHUNK]]
        d[s:s + EDGE_CHUNK] = np.einsum("ij,ij->i", diff, diff)
    return np.exp(-d / max(float(d.mean()), 1e-12)) if d.size else d


def _weight_matrix(i, j, w, n):
    return sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([i, j]), np.concatenate([j, i]))),
                         shape=(n, n)).tocsr()


SHIFT = -1e-2  # the eigensolver's shift: just below the Laplacian's smallest eigenvalue, 0
EIGEN_TOL = 1e-6


def _polling_inverse(lap, cancel):
    """The shift-invert operator `eigsh` would build for `lap` (the same sparse LU solve),
    polling `cancel` before every solve, so a cancel stops the eigensolver between its
    iterations with the same results otherwise; None where this scipy lays it out otherwise."""
    try:
        from scipy.sparse.linalg import LinearOperator
        from scipy.sparse.linalg._eigen.arpack.arpack import get_OPinv_matvec
    except ImportError:  # pragma: no cover - another scipy layout: no polling inside eigsh
        return None
    solve = get_OPinv_matvec(lap, None, SHIFT, hermitian=True, tol=EIGEN_TOL)

    def matvec(x):
        _check(cancel)
        return solve(x)

    return LinearOperator(lap.shape, matvec=matvec, dtype=lap.dtype)


def _random_walk_eigenvectors(W, k, cancel=None):
    """Smallest `k` eigenpairs of the normalised Laplacian of `W`, returned as random-walk
    eigenvectors (D^-1/2 u), ascending; the trivial first one dropped. `cancel` is polled
    at every iteration of the eigensolver."""
    n = W.shape[0]
    deg = np.asarray(W.sum(1)).ravel()
    dinv = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
    lap = (sp.identity(n, format="csr") - sp.diags(dinv) @ W @ sp.diags(dinv)).tocsc()
    v0 = np.random.default_rng(0).random(n)  # fixed start vector: reproducible results
    _check(cancel)
    inverse = _polling_inverse(lap, cancel) if cancel is not None else None
    vals, vecs = eigsh(lap, k=k, sigma=SHIFT, which="LM", tol=EIGEN_TOL, maxiter=5000, v0=v0, OPinv=inverse)
    order = np.argsort(vals)
    return vals[order][1:], vecs[:, order][:, 1:] * dinv[:, None]


def coarse_cells(lengths, n_cells, areas=None, seed=0) -> np.ndarray:
    """(n,) cell of each node: graph Voronoi cells around `n_cells` seed nodes (drawn with
    probability ~ area), grown along the edge `lengths` (a symmetric sparse (n, n) matrix)."""
    from scipy.sparse.csgraph import dijkstra

    n = lengths.shape[0]
    p = None if areas is None else np.maximum(areas, 1e-30) / np.maximum(areas, 1e-30).sum()
    seeds = np.random.default_rng(seed).choice(n, size=min(n_cells, n), replace=False, p=p)
    _, _, source = dijkstra(lengths, directed=False, indices=seeds, min_only=True, return_predecessors=True)
    cell_of_seed = np.full(n, -1, np.int64)
    cell_of_seed[seeds] = np.arange(seeds.size)
    cells = cell_of_seed[np.maximum(source, 0)]
    cells[source < 0] = 0  # unreachable (never on a bridged graph)
    return cells


def spectral_embedding(i, j, weights, n, dims=SPECTRAL_DIMS, centers=None, areas=None,
                       exact_limit=None, cancel=None) -> np.ndarray:
    """(n, dims) commute-time-like embedding of the weighted graph (edges `i`-`j`): the
    smallest non-trivial random-walk eigenvectors, unit-normalised, each divided by
    sqrt(eigenvalue). Needs a connected graph.

    Above `exact_limit` nodes the eigenproblem is solved on a graph of `COARSE_NODES`
    Voronoi cells (grown along centre distances / weight, so cells stop at creases) and
    the result is carried back and smoothed by a few random-walk steps on the full graph.
    `cancel` is polled between these steps."""
    k = min(dims + 1, n - 2)
    if k < 2:
        return np.zeros((n, 0))
    w = np.clip(weights, MIN_WEIGHT, 1.0)
    W = _weight_matrix(i, j, w, n)
    exact_limit = EXACT_LIMIT if exact_limit is None else exact_limit
    _check(cancel)
    if n <= exact_limit or centers is None:
        vals, vecs = _random_walk_eigenvectors(W, k, cancel)
    else:
        dist = np.linalg.norm(centers[i] - centers[j], axis=1) + 1e-12
        lengths = _weight_matrix(i, j, dist / w, n)
        _check(cancel)
        cells = coarse_cells(lengths, COARSE_NODES, areas)
        del lengths
        _check(cancel)
        m = int(cells.max()) + 1
        S = sp.csr_matrix((np.ones(n), (np.arange(n), cells)), shape=(n, m))
        Wc = (S.T @ W @ S).tocsr()
        Wc.setdiag(0)
        Wc.eliminate_zeros()
        _check(cancel)
        vals, vc = _random_walk_eigenvectors(Wc, min(k, m - 2), cancel)
        _check(cancel)
        vecs = S @ vc
        deg = np.asarray(W.sum(1)).ravel()
        step = sp.diags(1.0 / np.maximum(deg, 1e-12)) @ W
        for _ in range(SMOOTHING_STEPS):  # lazy random walk: blurs cell edges, keeps creases
            _check(cancel)
            vecs = 0.5 * vecs + 0.5 * (step @ vecs)
    _check(cancel)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=0, keepdims=True), 1e-12)
    return vecs / np.sqrt(np.maximum(vals, 1e-6))[None, :]


def pull_to_pieces(x, piece_labels, areas, pull=PIECE_PULL) -> np.ndarray:
    """(1 - pull) * x + pull * (area-weighted mean of x over the row's loose piece).

    Distances inside one piece shrink uniformly, so on a single-piece mesh the Ward tree is
    unchanged; across pieces, whole pieces move apart relative to their insides."""
    labels = np.asarray(piece_labels, dtype=np.int64)
    n = int(labels.max()) + 1 if labels.size else 0
    if n < 2:
        return x
    w = np.maximum(np.asarray(areas, dtype=np.float64), 1e-30)
    tot = np.bincount(labels, weights=w, minlength=n)
    means = np.stack([np.bincount(labels, weights=x[:, c] * w, minlength=n) for c in range(x.shape[1])], 1)
    means /= tot[:, None]
    return (1.0 - pull) * x + pull * means[labels]


def part_embedding(features, mesh, connectivity, vertices=None, method=DEFAULT_CLUSTERING,
                   stats=None, cancel=None, spectral_dims=SPECTRAL_DIMS) -> np.ndarray:
    """(P, F') float64 vectors for `PartTree.build(..., normalize=False)`.

    `features (P,F)` per polygon; `mesh` a `MeshArrays`; `connectivity` its bridged
    `Connectivity`; `vertices` the (normalised) positions to measure creases with.
    `spectral_dims`: the number of eigenvectors in the spectral block.
    `stats` (a dict) receives what was done, e.g. a fallback when the eigensolver fails.
    `cancel() -> bool` is polled between steps; when true, `Cancelled` is raised.
    """
    if method not in CLUSTERING_METHODS:
        raise InputError(f"unknown clustering method {method!r}; use one of {', '.join(CLUSTERING_METHODS)}")
    _check(cancel)
    x = normalize_rows(features)
    stats = {} if stats is None else stats
    stats["clustering"] = method
    p = x.shape[0]
    if method == "features" or p < 4:
        return x
    _check(cancel)
    v = np.asarray(mesh.vertices if vertices is None else vertices, dtype=np.float64)
    i, j = graph_edges(connectivity)
    centers, areas = mesh.polygon_centers(v), mesh.polygon_areas(v)
    _check(cancel)
    normals = polygon_normals(mesh, v)
    _check(cancel)
    crease = crease_weights(centers, normals, i, j)
    w = crease * feature_weights(x, i, j, cancel=cancel)
    del crease, normals
    _check(cancel)
    try:
        spec = spectral_embedding(i, j, w, p, dims=spectral_dims, centers=centers, areas=areas, cancel=cancel)
    except Cancelled:
        raise
    except Exception as exc:  # ArpackNoConvergence, a singular factorisation: features alone
        warnings.warn(f"spectral embedding failed ({exc}); clustering on features alone", RuntimeWarning,
                      stacklevel=2)
        stats["clustering"] = "features (spectral step failed)"
        spec = np.zeros((p, 0))
    _check(cancel)
    if spec.shape[1]:
        spec /= max(float(np.sqrt(np.einsum("ij,ij->i", spec, spec).mean())), 1e-12)
    out = np.concatenate([x, spec], axis=1)
    _check(cancel)
    labels = getattr(connectivity, "component_labels", None)
    if labels is not None and getattr(connectivity, "num_components", 1) > 1:
        out = pull_to_pieces(out, labels, areas)
    return out
