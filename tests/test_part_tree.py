"""Ward part tree: equal to scikit-learn's structured Ward on a real COSEG mesh for k=2..20,
nested cuts with stable labels, fast cuts, split/merge, KMeans."""
import time

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering

from model_runtime.connectivity import build_connectivity
from model_runtime.mesh import MeshArrays
from model_runtime.normalization import Normalization
from model_runtime.part_tree import PartTree, kmeans_labels, normalize_rows
from test_pipeline_double import decode_planes, smooth_planes


def load_off(path):
    tok = path.read_text().split()
    nv, nf = int(tok[1]), int(tok[2])
    v = np.array(tok[4:4 + 3 * nv], float).reshape(nv, 3)
    f = np.array(tok[4 + 3 * nv:4 + 3 * nv + 4 * nf], int).reshape(nf, 4)[:, 1:]
    return MeshArrays.from_triangles(v, f)


def same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.fixture(scope="module")
def chair(coseg_dir):
    mesh = load_off(coseg_dir / "chairs" / "shapes" / "13.off")  # 5,504 faces
    norm = Normalization.from_mesh(mesh)
    con = build_connectivity(mesh, vertices=norm.apply(mesh.vertices))
    feats = decode_planes(smooth_planes(64, 32, seed=5), norm.apply(mesh.polygon_centers())).numpy()
    return mesh, con, feats


def test_cut_equals_sklearn_ward_and_is_nested(chair):
    mesh, con, feats = chair
    tree = PartTree.build(feats, con)
    x = normalize_rows(feats)
    prev = None
    for k in range(2, 21):
        ref = AgglomerativeClustering(n_clusters=k, linkage="ward", connectivity=con.matrix).fit_predict(x)
        lab = tree.cut(k)
        assert lab.dtype == np.int32 and set(lab.tolist()) == set(range(k))
        assert same_partition(lab, ref), f"k={k} differs from scikit-learn"
        if prev is not None:
            # nested: every part of k+1 lies in one part of k; stable: exactly one old part
            # changed, and it kept its label on its larger half
            assert same_partition(np.c_[prev, lab] @ [k, 1], lab)
            changed = lab != prev
            assert set(lab[changed].tolist()) == {k - 1}
            old = int(np.unique(prev[changed])[0])
            assert (lab == old).sum() >= changed.sum()
        prev = lab


def test_cut_extremes_sizes_and_speed(chair):
    mesh, con, feats = chair
    tree = PartTree.build(feats, con)
    p = mesh.num_polygons
    assert (tree.cut(1) == 0).all()
    np.testing.assert_array_equal(np.sort(tree.cut(p)), np.arange(p))
    lab = tree.cut(6, order="size")
    sizes = np.bincount(lab)
    assert (np.diff(sizes) <= 0).all()  # largest first
    assert same_partition(lab, tree.cut(6))
    with pytest.raises(ValueError):
        tree.cut(0)
    with pytest.raises(ValueError):
        tree.cut(p + 1)
    t = time.perf_counter()
    for k in range(2, 200):
        tree.cut(k)
    assert (time.perf_counter() - t) / 198 < 0.005


def test_split_and_merge_parts(chair):
    mesh, con, feats = chair
    tree = PartTree.build(feats, con)
    lab4, lab5 = tree.cut(4), tree.cut(5)
    # splitting the part that cut(5) splits gives cut(5)
    split_part = int(np.unique(lab4[lab5 == 4])[0])
    np.testing.assert_array_equal(tree.split_part(lab4, split_part), lab5)
    # splitting another part goes one level down inside that part only
    other = (split_part + 1) % 4
    s = tree.split_part(lab4, other)
    assert s.max() == 4 and set(np.unique(lab4[s == 4]).tolist()) == {other}
    assert ((s == other) | (s == 4)).sum() == (lab4 == other).sum()
    # merge: labels stay 0..k-2, only the top label is renamed
    m = PartTree.merge_parts(lab5, 1, 3)
    assert set(m.tolist()) == set(range(4))
    assert ((m == 1) == ((lab5 == 1) | (lab5 == 3))).all()
    assert ((m == 3) == (lab5 == 4)).all()
    # a merged part splits back along the tree
    again = tree.split_part(m, 1)
    assert same_partition(again, lab5)


def test_features_need_a_connected_graph_and_matching_size(chair):
    mesh, con, feats = chair
    with pytest.raises(Exception, match="polygons"):
        PartTree.build(feats[:-1], con)
    from scipy.sparse import csr_matrix

    with pytest.raises(Exception, match="not connected"):
        PartTree.build(np.random.default_rng(0).normal(size=(4, 3)), csr_matrix((4, 4)))


def test_kmeans_alternative_groups_clusters_largest_first():
    rng = np.random.default_rng(0)
    centers = np.eye(3)
    x = np.r_[centers[0] + 0.01 * rng.normal(size=(50, 3)), centers[1] + 0.01 * rng.normal(size=(30, 3)),
              centers[2] + 0.01 * rng.normal(size=(20, 3))]
    lab = kmeans_labels(x, 3)
    np.testing.assert_array_equal(lab, np.repeat([0, 1, 2], [50, 30, 20]))


def test_numpy_cost_fallback_gives_the_same_tree(chair, monkeypatch):
    from model_runtime import part_tree

    mesh, con, feats = chair
    fast = PartTree.build(feats, con)
    monkeypatch.setattr(part_tree, "_ward_cost", part_tree._ward_cost_numpy)
    slow = PartTree.build(feats, con)
    for k in (2, 5, 10, 20):
        assert same_partition(fast.cut(k), slow.cut(k))


def _legs_on_a_path():
    """A path graph 0-1-...-8 whose two ends look alike: rows 0-1 and 7-8 ("legs") share a
    feature, 2-6 ("the top between them") another. No edge joins the two ends."""
    x = np.array([[0.0, 0], [0, 0.02], [5, 5], [5, 5.02], [5, 5.01], [5, 5.03], [5, 5.0], [0, 0.01], [0, 0.03]])
    edges = np.array([[i, i + 1] for i in range(8)])
    from scipy.sparse import coo_matrix

    return x, coo_matrix((np.ones(8), (edges[:, 0], edges[:, 1])), shape=(9, 9))


def test_natural_cut_is_where_a_merge_first_costs_far_more():
    from model_runtime.part_tree import natural_cut

    p = 40
    costs = np.linspace(0.01, 0.02, p - 1)  # merge t: p - t -> p - t - 1 parts
    costs[p - 5:] *= 100.0  # every merge below 5 parts is expensive: 5 parts are whole
    assert natural_cut(costs, p) == 5
    assert natural_cut(costs, p, lo=6) != 5  # the range bounds the answer
    assert natural_cut(np.ones(2), 3) == 3  # trees with at most `lo` leaves: all of them


def test_free_merges_join_look_alike_parts_that_do_not_touch():
    from model_runtime.part_tree import free_merges

    x, graph = _legs_on_a_path()
    plain = PartTree.build(x, graph, normalize=False)
    # on the graph alone, two parts are a contiguous run of the path: the ends never join
    two = plain.cut(2)
    assert two[0] != two[8]
    children, costs = free_merges(plain.children, x, 3)
    assert children.shape == (2, 2) and costs.shape == (2,)
    free = PartTree.build(x, graph, normalize=False, free_space=x)
    # natural cut here: 3 parts (left end, middle, right end); above it the ends join
    assert same_partition(free.cut(3), plain.cut(3))
    for k in range(3, 10):
        assert same_partition(free.cut(k), plain.cut(k))  # the natural cut and finer are unchanged
    np.testing.assert_array_equal(free.cut(2, order="size"), [1, 1, 0, 0, 0, 0, 0, 1, 1])
    with pytest.raises(Exception, match="free-merge space"):
        free_merges(plain.children, x[:-1], 3)


def test_layout_loops_poll_cancel_and_stop():
    """Issue 16 (Esc within 1 s): the Python loops that lay out a freshly built tree (0.5 s or
    more at 500k faces) poll `cancel` every `LOOP_BLOCK` merges."""
    import model_runtime.part_tree as pt
    from model_runtime.errors import Cancelled

    p = 3 * pt.LOOP_BLOCK + 5
    ch = np.c_[np.r_[0, p + np.arange(p - 2)], np.arange(1, p)]  # a caterpillar
    calls = []
    tree = PartTree(ch, p, cancel=lambda: calls.append(1) and False)
    assert len(calls) == 2 * 4  # sizes, then starts: 4 blocks each
    ref = PartTree(ch, p)
    for key in ("size", "start", "label_of_node"):
        np.testing.assert_array_equal(getattr(tree, key), getattr(ref, key))
    stop = []
    with pytest.raises(Cancelled, match="part tree cancelled"):
        PartTree(ch, p, cancel=lambda: stop.append(1) or len(stop) >= 6)
    assert len(stop) == 6


def test_ward_polls_cancel_every_few_hundred_merges_and_polling_changes_nothing(monkeypatch):
    """Issue 16 (Esc within 1 s): the Ward loop polls `cancel` every `WARD_POLL` merges (its
    1 % progress steps were seconds apart at 500k faces), and its set-up and heap clean-ups
    between their passes; a true answer stops it at once."""
    import model_runtime.part_tree as pt
    from model_runtime.errors import Cancelled
    from test_connectivity import grid

    v, q = grid(60, 50)
    mesh = MeshArrays.from_polygons(v, q)
    con = build_connectivity(mesh)
    x = normalize_rows(np.random.default_rng(3).normal(size=(mesh.num_polygons, 8)))
    ref = pt.ward_merges(x, con)
    monkeypatch.setattr(pt, "WARD_POLL", 8)  # (3,000 faces: progress steps of 30 merges)
    calls = []
    got = pt.ward_merges(x, con, cancel=lambda: calls.append(1) and False)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    assert len(calls) >= (mesh.num_polygons - 1) // 8
    stop = []
    with pytest.raises(Cancelled, match="part tree cancelled"):
        pt.ward_merges(x, con, cancel=lambda: stop.append(1) or len(stop) >= len(calls) // 2)
    assert len(stop) == len(calls) // 2
