"""Polygon adjacency: shared edges, welding of split vertices, non-manifold edges, and the
bridging of loose pieces (the three ways), including thousands of pieces."""
import time

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from model_runtime.connectivity import build_connectivity, edge_pairs
from model_runtime.mesh import MeshArrays


def grid(n, m, offset=(0, 0, 0)):
    """n x m quads in the xy plane."""
    ii, jj = np.meshgrid(np.arange(n + 1), np.arange(m + 1), indexing="ij")
    v = np.c_[ii.ravel(), jj.ravel(), np.zeros(ii.size)] + offset
    a = (ii[:-1, :-1] * (m + 1) + jj[:-1, :-1]).ravel()
    quads = np.stack([a, a + m + 1, a + m + 2, a + 1], 1)
    return v.astype(float), quads


def edges_of(con):
    m = con.matrix.tocoo()
    return {(int(r), int(c)) for r, c in zip(m.row, m.col) if r < c}


def test_grid_adjacency_is_shared_edges_only():
    v, q = grid(3, 2)
    con = build_connectivity(MeshArrays.from_triangles(v, q))
    # polygon index = i*2 + j; neighbours along both grid directions, no diagonals
    assert edges_of(con) == {(0, 1), (2, 3), (4, 5), (0, 2), (2, 4), (1, 3), (3, 5)}
    assert con.num_components == 1 and len(con.bridges) == 0
    assert (con.matrix != con.matrix.T).nnz == 0 and con.matrix.diagonal().sum() == 0


def test_uv_seam_split_vertices_are_welded():
    v, q = grid(2, 1)  # two quads sharing the edge of vertices 2, 3
    v2 = np.r_[v, v[[2, 3]] + 1e-9]  # the right quad uses duplicated seam vertices
    q2 = q.copy()
    q2[1] = np.where(q2[1] == 2, 6, np.where(q2[1] == 3, 7, q2[1]))
    m = MeshArrays.from_triangles(v2, q2)
    unwelded = build_connectivity(m, weld=False)
    assert unwelded.num_components == 2 and len(unwelded.bridges) == 1  # bridged anyway
    welded = build_connectivity(m, weld=True)
    assert welded.num_components == 1 and welded.welded_vertices == 2
    assert edges_of(welded) == {(0, 1)}


def test_non_manifold_edge_links_every_polygon_on_it():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], float)
    m = MeshArrays.from_triangles(v, [[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    pairs, non_manifold = edge_pairs(m)
    assert non_manifold == 1
    assert {tuple(p) for p in pairs} == {(0, 1), (0, 2), (1, 2)}


def scattered_tetrahedra(n, seed=0, spread=100.0):
    rng = np.random.default_rng(seed)
    base = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    tet = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    centres = rng.uniform(0, spread, size=(n, 3))
    v = (base[None] + centres[:, None]).reshape(-1, 3)
    f = (tet[None] + 4 * np.arange(n)[:, None, None]).reshape(-1, 3)
    return MeshArrays.from_triangles(v, f)


@pytest.mark.parametrize("method", ["chain", "knn_mst", "spanning_tree", 0, 1, 2])
def test_every_bridge_method_connects_all_pieces(method):
    m = scattered_tetrahedra(300, seed=1)
    con = build_connectivity(m, bridge=method)
    assert con.num_components == 300
    assert len(con.bridges) == 299  # a spanning tree over the pieces
    assert connected_components(con.matrix, directed=False)[0] == 1


def test_knn_mst_falls_back_when_far_pieces_stay_apart():
    # two far clusters of 30 pieces each: a 10-NN graph never links the clusters
    a = scattered_tetrahedra(30, seed=2, spread=5)
    b = scattered_tetrahedra(30, seed=3, spread=5)
    v = np.r_[a.vertices, b.vertices + 1000]
    f = np.r_[a.loop_vertices.reshape(-1, 3), b.loop_vertices.reshape(-1, 3) + len(a.vertices)]
    con = build_connectivity(MeshArrays.from_triangles(v, f), bridge="knn_mst")
    assert connected_components(con.matrix, directed=False)[0] == 1


def test_spanning_tree_joins_pieces_where_they_face_each_other():
    # a long bar (many quads along x) and a small plate above its right end
    v, q = grid(20, 1)
    v2, q2 = grid(1, 1, offset=(19, 0, 0.5))
    m = MeshArrays.from_triangles(np.r_[v, v2], np.r_[q, q2 + len(v)])
    con = build_connectivity(m)
    (a, b), = con.bridges
    assert (a, b) == (19, 20)  # the bar's last quad, under the plate


def test_thousands_of_loose_pieces_are_fast():
    m = scattered_tetrahedra(5000, seed=4)
    t = time.perf_counter()
    con = build_connectivity(m)
    elapsed = time.perf_counter() - t
    assert con.num_components == 5000
    assert connected_components(con.matrix, directed=False)[0] == 1
    assert elapsed < 10, elapsed


def _weld_brute_force(v, tol):
    """Reference: components of all vertex pairs within tol x diagonal (dense distances)."""
    import scipy.sparse as sp

    t = tol * np.linalg.norm(np.ptp(v, axis=0))
    d = np.linalg.norm(v[:, None] - v[None], axis=2)
    _, lab = connected_components(sp.csr_matrix(d <= t), directed=False)
    first = np.full(lab.max() + 1, len(v))
    np.minimum.at(first, lab, np.arange(len(v)))
    return first[lab]


@pytest.mark.parametrize("seed", range(6))
def test_grid_hash_welding_equals_all_pairs_within_tolerance(seed):
    from model_runtime.connectivity import weld_map

    rng = np.random.default_rng(seed)
    v = rng.uniform(-1, 1, (600, 3))
    src = rng.integers(0, 600, 400)
    jitter = rng.choice([0.0, 1e-7, 1e-5, 3e-5, 1e-3], size=(400, 1))
    v = np.concatenate([v, v[src] + rng.normal(size=(400, 3)) * jitter])
    # clusters dense enough that cell pairs go through the KD-tree path
    v = np.concatenate([v, rng.uniform(-1, 1, (1, 3)) + rng.normal(0, 2e-5, (300, 3))])
    for tol in (1e-5, 1e-3, 2e-2):
        assert (weld_map(v, tol) == _weld_brute_force(v, tol)).all(), tol


def test_twenty_thousand_vertices_on_one_point_weld_in_bounded_memory():
    """Issue 17: 20k vertices collapsed to one point made welding O(N^2) (8.9 GB, then
    MemoryError in query_pairs). Measured in a fresh process: peak growth and time."""
    from tests.bounded import run_bounded

    setup = """
        import numpy as np
        from model_runtime.connectivity import build_connectivity
        from model_runtime.mesh import MeshArrays
        rng = np.random.default_rng(0)
        n = 20000
        v = np.concatenate([np.zeros((n, 3)), rng.uniform(-1, 1, (3 * n, 3))])
        tris = np.stack([np.arange(n), n + np.arange(n), 2 * n + np.arange(n)], 1)
        mesh = MeshArrays.from_triangles(v, tris)
    """
    res = run_bounded(setup, """
        con = build_connectivity(mesh)
        assert con.welded_vertices == 19999, con.welded_vertices
        assert con.matrix.shape == (20000, 20000)
    """)
    assert res["error"] is None, res
    assert res["peak_mb"] < 400, res  # was 8,900 MB
    assert res["seconds"] < 30, res
