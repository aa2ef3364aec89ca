"""The clustering space: loose pieces and concave creases steer the fused part tree."""
import time

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


def _bumpy_grid(n):
    from test_connectivity import grid

    v, q = grid(n, n)
    v[:, 2] = 0.3 * np.sin(v[:, 0] / 7) * np.cos(v[:, 1] / 5) * n / 20
    mesh = MeshArrays.from_polygons(v / n, q)
    c = mesh.polygon_centers()
    feats = np.c_[np.sin(c[:, 0] * 9), np.cos(c[:, 1] * 7), c[:, 0] * c[:, 1],
                  noise_features(mesh.num_polygons) * 0.05].astype(np.float32)
    return mesh, build_connectivity(mesh), feats


class Polls:
    """A cancel callable: records when it was asked; true from call `stop_at` on."""

    def __init__(self, stop_at=None):
        self.times, self.stop_at = [], stop_at

    def __call__(self):
        self.times.append(time.perf_counter())
        return self.stop_at is not None and len(self.times) >= self.stop_at


@pytest.mark.parametrize("n", [80, 200])  # 6,400 faces: exact eigensolve; 40,000: on the coarse graph
def test_cancel_stops_the_embedding_promptly_and_polling_changes_nothing(n):
    """Issue 16 (Esc within 1 s): the embedding polls `cancel` between its steps and at every
    iteration of the eigensolver; a true answer raises `Cancelled` at once, and a run that
    polls gives the very same embedding as one that does not."""
    from model_runtime.errors import Cancelled

    mesh, con, feats = _bumpy_grid(n)
    assert (mesh.num_polygons > pe.EXACT_LIMIT) == (n == 200)
    mesh.triangulate()  # (cached, as in the pipeline, where sampling made it)
    plain = pe.part_embedding(feats, mesh, con)
    polls = Polls()
    t0 = time.perf_counter()
    polled = pe.part_embedding(feats, mesh, con, cancel=polls)
    t1 = time.perf_counter()
    np.testing.assert_array_equal(polled, plain)
    gaps = np.diff([t0, *polls.times, t1])
    assert len(polls.times) >= 20 and gaps.max() < 0.5, (len(polls.times), gaps.max())
    print(f"{mesh.num_polygons} faces: {len(polls.times)} polls in {t1 - t0:.2f} s, longest gap {gaps.max():.3f} s")
    for stop_at in (2, len(polls.times) // 2, len(polls.times) - 4):
        stopper = Polls(stop_at)
        with pytest.raises(Cancelled, match="part embedding cancelled") as info:
            pe.part_embedding(feats, mesh, con, cancel=stopper)
        assert len(stopper.times) == stop_at  # raised at the first true answer
        assert time.perf_counter() - stopper.times[-1] < 0.05
    # the middle poll of the exact solve lies inside the eigensolver's iterations
    if n == 80:
        stopper = Polls(len(polls.times) // 2)
        with pytest.raises(Cancelled) as info:
            pe.part_embedding(feats, mesh, con, cancel=stopper)
        assert "eigsh" in "".join(str(f) for f in info.traceback)


def test_cancel_during_the_embedding_is_not_taken_for_a_failed_eigensolve():
    """The spectral step falls back to features alone when the eigensolver fails; a cancel
    raised inside it must not be swallowed by that fallback."""
    from model_runtime.errors import Cancelled

    mesh, con, feats = _bumpy_grid(40)
    stats = {}
    with pytest.raises(Cancelled):
        pe.part_embedding(feats, mesh, con, stats=stats, cancel=Polls(8))
    assert "failed" not in stats.get("clustering", "")


def test_spectral_block_has_the_asked_width():
    v, q = cube([0, 0, 0], 1.0, 6)
    mesh = MeshArrays.from_polygons(v, q)
    con = build_connectivity(mesh)
    feats = noise_features(mesh.num_polygons)
    assert pe.part_embedding(feats, mesh, con).shape == (mesh.num_polygons, 16 + pe.SPECTRAL_DIMS)
    assert pe.part_embedding(feats, mesh, con, spectral_dims=5).shape == (mesh.num_polygons, 16 + 5)


def test_a_bearings_balls_come_apart_with_the_default_spectral_block():
    """A welded ball bearing (two races, 15 balls: 17 leaf parts) with features that know
    nothing: only the spectral block can find the balls, one nearly loose part each. With 12
    eigenvectors (the default until 2026-12-01) most balls share coordinates and the races
    split first; the default 32 finds them (best-of-k over k = 2..20)."""
    from model_runtime.training.evaluation import part_miou
    from model_runtime.training.procedural import make_shape

    shape = make_shape(3_001_005_503, "bearing")  # a development seed of the weak kinds, not a held-out one
    mesh = MeshArrays.from_triangles(shape.vertices, shape.faces)
    con = build_connectivity(mesh)
    feats = np.random.default_rng(0).normal(size=(mesh.num_polygons, 16)).astype(np.float32)

    def best_of_k(dims):
        tree = PartTree.build(pe.part_embedding(feats, mesh, con, spectral_dims=dims), con, normalize=False)
        return max(part_miou(shape.face_leaf, tree.cut(k)) for k in range(2, 21))

    assert len(np.unique(shape.face_leaf)) == 17
    assert best_of_k(pe.SPECTRAL_DIMS) > 0.85
    assert best_of_k(12) < 0.75
