"""Local edits of the part tree (model_runtime.part_edits): split gives exactly a node's
children, merge the union, edits replay on every cut where their nodes are shown and are
inactive (but kept) elsewhere, labels stay stable, similarity finds look-alike parts."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_runtime import part_edits as E
from model_runtime.part_tree import PartTree

REPO_ROOT = Path(__file__).resolve().parent.parent


def leaf_sets(labels):
    return {frozenset(np.flatnonzero(labels == i).tolist()) for i in np.unique(labels)}


@pytest.fixture(scope="module")
def tree():
    """Ward tree over a 12 x 12 grid of faces with random features (graph = grid)."""
    rng = np.random.default_rng(3)
    n = 12
    idx = np.arange(n * n).reshape(n, n)
    pairs = np.concatenate([np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], 1),
                            np.stack([idx[:-1].ravel(), idx[1:].ravel()], 1)])
    feats = rng.normal(size=(n * n, 8))
    return PartTree.build(feats, pairs)


def shown_node(tree, labels, part):
    nodes = tree.maximal_nodes(labels == part)
    assert len(nodes) == 1
    return int(nodes[0])


def test_no_edits_is_the_plain_cut(tree):
    for k in (1, 2, 5, 17, tree.num_leaves):
        cut = E.apply_edits(tree, k, [])
        assert np.array_equal(cut.labels, tree.cut(k))
        assert cut.num_parts == k


def test_split_gives_exactly_the_nodes_children_and_repeats_in_that_branch(tree):
    k = 4
    base = tree.cut(k)
    part = int(np.bincount(base).argmax())
    n = shown_node(tree, base, part)
    edits = E.split_edit(tree, k, [], part)
    assert edits == [E.Edit(E.SPLIT, (n,))]
    cut = E.apply_edits(tree, k, edits)
    assert cut.num_parts == k + 1 and cut.active == [True]
    a, b = tree.children[n - tree.num_leaves]
    want = (leaf_sets(base) - {frozenset(E.node_leaves(tree, n).tolist())}) | {
        frozenset(E.node_leaves(tree, a).tolist()), frozenset(E.node_leaves(tree, b).tolist())}
    assert leaf_sets(cut.labels) == want
    # stable labels: untouched parts keep theirs, the split part's larger child keeps its label
    untouched = base != part
    assert np.array_equal(cut.labels[untouched], base[untouched])
    assert set(np.unique(cut.labels[base == part])) == {part, k}
    # deeper in just that branch: split the larger child again
    big = a if tree.size[a] >= tree.size[b] else b
    lab_big = int(cut.labels[E.node_leaves(tree, big)[0]])
    if big >= tree.num_leaves:
        edits2 = E.split_edit(tree, k, edits, lab_big)
        cut2 = E.apply_edits(tree, k, edits2)
        assert cut2.num_parts == k + 2
        c1, c2 = tree.children[big - tree.num_leaves]
        assert frozenset(E.node_leaves(tree, c1).tolist()) in leaf_sets(cut2.labels)
        assert frozenset(E.node_leaves(tree, c2).tolist()) in leaf_sets(cut2.labels)
        assert np.array_equal(cut2.labels[untouched], base[untouched])


def test_merge_gives_the_union_and_split_of_a_merge_gives_it_back(tree):
    k = 6
    base = tree.cut(k)
    edits = E.merge_edit(tree, k, [], [1, 4, 5])
    cut = E.apply_edits(tree, k, edits)
    assert cut.num_parts == k - 2
    union = frozenset(np.flatnonzero(np.isin(base, [1, 4, 5])).tolist())
    assert leaf_sets(cut.labels) == (leaf_sets(base) - {frozenset(np.flatnonzero(base == i).tolist())
                                                         for i in (1, 4, 5)}) | {union}
    assert set(cut.labels.tolist()) == set(range(k - 2))  # labels stay 0..K-1
    merged = int(cut.labels[next(iter(union))])
    assert E.split_edit(tree, k, edits, merged) == []  # splitting the merged part undoes the merge
    with pytest.raises(E.EditError):
        E.merge_edit(tree, k, [], [2])


def test_merge_of_split_children_and_merge_after_a_merge(tree):
    k = 3
    base = tree.cut(k)
    e1 = E.split_edit(tree, k, [], 0)
    cut1 = E.apply_edits(tree, k, e1)
    e2 = E.merge_edit(tree, k, e1, [k, 1])  # one child of the split with another part
    cut2 = E.apply_edits(tree, k, e2)
    assert cut2.num_parts == k and cut2.active == [True, True]
    union = frozenset(np.flatnonzero((cut1.labels == k) | (cut1.labels == 1)).tolist())
    assert union in leaf_sets(cut2.labels)
    e3 = E.merge_edit(tree, k, e2, [0, int(cut2.labels[next(iter(union))])])
    assert E.apply_edits(tree, k, e3).num_parts == k - 1
    assert np.array_equal(E.apply_edits(tree, k, E.split_edit(tree, k, e3, 0)).labels, cut2.labels)
    assert base is not None


def test_slider_rule_edits_apply_where_their_nodes_are_shown(tree):
    """The documented rule: at every cut where an edit's nodes are shown it applies; coarser
    than its node (node inside a shown ancestor) or finer (node already divided) it is
    inactive, kept, and that cut is the plain tree cut."""
    p = tree.num_leaves
    k = 5
    base = tree.cut(k)
    part = int(np.bincount(base).argmax())
    n = shown_node(tree, base, part)
    edits = E.split_edit(tree, k, [], part)
    # node n is shown for k in [2p - parent(n), 2p - 1 - n]
    lo = 2 * p - int(tree.parent[n]) if tree.parent[n] >= 0 else 1
    hi = 2 * p - 1 - n
    assert lo <= k <= hi
    for kk in range(1, min(p, hi + 4) + 1):
        cut = E.apply_edits(tree, kk, edits)
        plain = tree.cut(kk)
        if lo <= kk <= hi:
            assert cut.active == [True] and cut.num_parts == kk + 1, kk
            assert np.array_equal(cut.labels, E.apply_edits(tree, kk + 0, edits).labels)
            a, b = tree.children[n - p]
            assert frozenset(E.node_leaves(tree, a).tolist()) in leaf_sets(cut.labels)
        else:
            assert cut.active == [False] and np.array_equal(cut.labels, plain), kk
    # a merge: active exactly where both merged nodes are shown
    m_edits = E.merge_edit(tree, k, [], [0, 1])
    nodes = m_edits[0].nodes
    for kk in range(1, 30):
        shown = set(tree.cut_nodes(kk).tolist())
        cut = E.apply_edits(tree, kk, m_edits)
        assert cut.active == [set(nodes) <= shown], kk
        if not cut.active[0]:
            assert np.array_equal(cut.labels, tree.cut(kk))


def test_edits_round_trip_json_and_invalid_nodes_are_dropped(tree):
    edits = [E.Edit(E.SPLIT, (tree.num_nodes - 1,)), E.Edit(E.MERGE, (3, 170))]
    assert E.edits_from_json(E.edits_to_json(edits)) == edits
    assert E.edits_from_json('[["split",[1,2]],["bogus",[1]],["merge",[4,5]]]') == [E.Edit(E.MERGE, (4, 5))]
    bad = edits + [E.Edit(E.SPLIT, (2,)), E.Edit(E.MERGE, (1, 10**6))]  # a leaf split, a node that is not there
    assert E.valid_edits(tree, bad) == edits
    with pytest.raises(E.EditError):  # a single face cannot split
        E.split_edit(tree, tree.num_leaves, [], 0)


def test_similarity_finds_look_alike_parts():
    rng = np.random.default_rng(0)
    f = 64
    leg, seat, back = rng.normal(size=f), rng.normal(size=f), rng.normal(size=f)
    labels = np.repeat(np.arange(6), 50)  # parts 0..3 legs, 4 seat, 5 back
    centres = np.stack([leg + 0.3 * rng.normal(size=f) for _ in range(4)] + [seat, back])
    feats = (centres[labels] + 0.2 * rng.normal(size=(len(labels), f))).astype(np.float16)
    for leg_part in range(4):
        assert E.similar_parts(feats, labels, leg_part).tolist() == [0, 1, 2, 3]
    assert E.similar_parts(feats, labels, 4).tolist() == [4]
    assert E.similar_parts(feats, labels, 4, threshold=0.0).tolist() == list(range(6))
    sim = E.part_similarity(feats, labels)
    assert sim.shape == (6, 6) and np.allclose(np.diag(sim), 1.0, atol=1e-5)
    heat = E.face_similarity(feats, 0)
    assert heat[0] == pytest.approx(1.0, abs=1e-3)
    assert heat[labels == 1].mean() > heat[labels == 4].mean() + 0.3
    colors = E.heat_colors(heat)
    assert colors.shape == (len(labels), 4) and colors.dtype == np.float32
    assert colors[:, :3].min() >= 0 and colors[:, :3].max() <= 1
    # chunking does not change the result
    assert np.allclose(E.part_descriptors(feats, labels, chunk=7), E.part_descriptors(feats, labels), atol=1e-5)


def test_part_edits_imports_numpy_only():
    code = ("import sys; import model_runtime.part_edits; "
            "bad = [m for m in ('torch', 'scipy', 'sklearn') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
