"""The clustering space: loose pieces and concave creases steer the fused part tree."""
import numpy as np
import pytest

import model_runtime.part_embedding as pe
from model_runtime.connectivity import build_connectivity
from model_runtime.errors import InputError
from model_runtime.mesh import MeshArrays
from model_runtime.part_tree import PartTree


def grid_sheet(origin, du, dv, n):
    """(vertices, quads) of an n x n grid spanning origin + s du + t dv, normal du x dv."""
    s, t = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1), indexing="ij")
    v = origin + s[..., None] * du + t[..., None] * dv
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    q = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    return v.reshape(-1, 3), q


def join(parts):
    vs, qs, off = [], [], 0
    for v, q in parts:
        vs.append(v)
        qs.append(q + off)
        off += len(v)
    return np.concatenate(vs), np.concatenate(qs)


def cube(center, size, n):
    """A closed cube of six welded grid sides, outward normals."""
    c, h = np.asarray(center, float), size / 2
    e = np.eye(3) * size
    sides = []
    for a in range(3):
        b, d = (a + 1) % 3, (a + 2) % 3
        lo = c - h
        sides.append(grid_sheet(lo, e[d], e[b], n))  # the -a side
        sides.append(grid_sheet(lo + e[a], e[b], e[d], n))  # the +a side
    return join(sides)


def noise_features(p, seed=0):
    return np.random.default_rng(seed).normal(size=(p, 16)).astype(np.float32)


def pieces_kept_whole(labels, truth):
    return all(len(np.unique(labels[truth == t])) == 1 for t in np.unique(truth)) and \
        len(np.unique(labels)) == len(np.unique(truth))


def test_loose_pieces_stay_whole_in_the_fused_tree():
    # a big box with three small loose boxes around it (bolts on a plate)
    parts = [cube([0, 0, 0], 1.0, 10), cube([0.75, 0, 0], 0.3, 3), cube([0, 0.75, 0], 0.3, 3),
             cube([0, 0, 0.75], 0.3, 3)]
    v, q = join(parts)
    mesh = MeshArrays.from_polygons(v, q)
    con = build_connectivity(mesh)
    assert con.num_components == 4
    truth = np.repeat(np.arange(4), [len(p[1]) for p in parts])
    feats = noise_features(mesh.num_polygons)  # the features know nothing: geometry must decide
    fused = PartTree.build(pe.part_embedding(feats, mesh, con), con, normalize=False).cut(4)
    assert pieces_kept_whole(fused, truth)
    plain = PartTree.build(pe.part_embedding(feats, mesh, con, method="features"), con, normalize=False).cut(4)
    assert not pieces_kept_whole(plain, truth)  # noise alone splits the big box first


def test_concave_crease_is_where_the_fused_tree_splits():
    # an L: a floor facing up and a wall facing the floor, meeting at a concave 90 degree seam
    floor = grid_sheet(np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), 12)
    wall = grid_sheet(np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), np.array([0, 1.0, 0]), 12)
    v, q = join([floor, wall])
    mesh = MeshArrays.from_polygons(v, q)
    con = build_connectivity(mesh)
    assert con.num_components == 1
    n = pe.polygon_normals(mesh)
    assert np.allclose(n[: len(floor[1])], [0, 0, 1]) and np.allclose(n[len(floor[1]):], [-1, 0, 0])
    feats = np.ones((mesh.num_polygons, 8), np.float32)  # constant: no feature boundary at all
    labels = PartTree.build(pe.part_embedding(feats, mesh, con), con, normalize=False).cut(2)
    truth = np.repeat([0, 1], len(floor[1]))
    assert len(np.unique(labels[truth == 0])) == 1 and len(np.unique(labels[truth == 1])) == 1
    assert labels[0] != labels[-1]


def test_coarse_spectral_path_agrees_with_the_exact_one(monkeypatch):
    v, q = cube([0, 0, 0], 1.0, 16)
    mesh = MeshArrays.from_polygons(v * [1.0, 1.7, 2.9], q)  # a brick: no symmetric eigenspaces
    monkeypatch.setattr(pe, "COARSE_NODES", 300)
    con = build_connectivity(mesh)
    i, j = pe.graph_edges(con)
    centers = mesh.polygon_centers()
    w = pe.crease_weights(centers, pe.polygon_normals(mesh), i, j)
    exact = pe.spectral_embedding(i, j, w, mesh.num_polygons, dims=4)
    coarse = pe.spectral_embedding(i, j, w, mesh.num_polygons, dims=4, centers=centers,
                                   areas=mesh.polygon_areas(), exact_limit=100)
    assert exact.shape == coarse.shape == (mesh.num_polygons, 4)
    # the leading subspaces coincide: every exact direction is well explained by the coarse ones
    qe, _ = np.linalg.qr(exact[:, :2])
    qc, _ = np.linalg.qr(coarse)
    agreement = np.linalg.svd(qc.T @ qe, compute_uv=False).min()
    assert agreement > 0.9


def test_unknown_method_and_solver_failure(monkeypatch):
    v, q = cube([0, 0, 0], 1.0, 4)
    mesh = MeshArrays.from_polygons(v, q)
    con = build_connectivity(mesh)
    feats = noise_features(mesh.num_polygons)
    with pytest.raises(InputError, match="unknown clustering"):
        pe.part_embedding(feats, mesh, con, method="kmeans")

    def broken(*a, **k):
        raise RuntimeError("no convergence")

    monkeypatch.setattr(pe, "eigsh", broken)
    stats = {}
    with pytest.warns(RuntimeWarning, match="features alone"):
        out = pe.part_embedding(feats, mesh, con, stats=stats)
    assert out.shape == feats.shape and "failed" in stats["clustering"]
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
