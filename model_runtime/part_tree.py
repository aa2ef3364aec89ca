"""The part tree: Ward linkage on L2-normalised per-polygon features, restricted to the
polygon graph, built once; `cut(k)` gives the parts at any granularity in about a
millisecond, nested, with stable labels.

The merge order is the greedy one of scikit-learn's structured `ward_tree` (always merge the
connected pair with the smallest Ward cost), so `cut(k)` equals
`AgglomerativeClustering(n_clusters=k, linkage="ward", connectivity=...)` up to label names.
It is written here because scikit-learn's loop is quadratic in the number of polygons and
keeps a (2P, F) float64 table (2.4 GB at 200k faces x 448 features); this one keeps (P, F).

Optionally (`PartTree.build(free_space=...)`) the merges above the tree's natural cut
(`natural_cut`: where a merge first costs far more than the one before it, so the parts are
whole) are redone without the graph (`free_merges`): parts that do not touch but look alike,
such as a chair's four legs or a creature's arms, then join into one part at coarse
granularity, while that cut and every finer one are unchanged.
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush

import numpy as np

from .errors import Cancelled, InputError

# scipy and scikit-learn are imported only where a tree is built: cutting a stored tree
# (the slider, on Blender's main thread) needs numpy alone.


def _ward_cost_numpy(count, sums, rows, cols, out):
    """Ward cost n_r n_c / (n_r + n_c) * |sum_r / n_r - sum_c / n_c|^2 for slot pairs."""
    nr, nc = count[rows], count[cols]
    diff = sums[rows] / nr[:, None] - sums[cols] / nc[:, None]
    out[:] = np.einsum("ij,ij->i", diff, diff) * (nr * nc / (nr + nc))


def _compiled_ward_cost():
    """scikit-learn's compiled Ward cost (the same arithmetic, several times faster per call),
    or the numpy version when this scikit-learn has another layout. Imported here, not at
    module level: importing scikit-learn takes about a second."""
    try:
        from sklearn.cluster._hierarchical_fast import compute_ward_dist
    except ImportError:  # pragma: no cover - older/newer scikit-learn layouts
        return _ward_cost_numpy
    return compute_ward_dist


_ward_cost = None  # the cost function `ward_merges` uses; None: compiled when available
WARD_POLL = 512  # merges between cancel checks in the Ward loop (a few tenths of a second at most)


def normalize_rows(features) -> np.ndarray:
    """L2-normalised float64 copy of `features (P,F)` (zero rows stay zero)."""
    x = np.array(features, dtype=np.float64, order="C")
    n = np.sqrt(np.einsum("ij,ij->i", x, x))
    n[n == 0] = 1.0
    x /= n[:, None]
    return x


def _as_pairs(connectivity, p):
    """Unique (i>j) pairs of a connectivity (a `Connectivity`, a sparse matrix or (E,2) pairs)."""
    import scipy.sparse as sp

    mat = getattr(connectivity, "matrix", connectivity)
    if sp.issparse(mat):
        m = sp.coo_matrix(mat)
        if m.shape != (p, p):
            raise InputError(f"connectivity is {m.shape} but there are {p} polygons")
        r, c = m.row.astype(np.int64), m.col.astype(np.int64)
    else:
        e = np.asarray(mat, dtype=np.int64).reshape(-1, 2)
        r, c = e[:, 0], e[:, 1]
    hi, lo = np.maximum(r, c), np.minimum(r, c)
    keep = hi != lo
    code = np.unique(hi[keep] * np.int64(p) + lo[keep])
    return code // p, code % p


def ward_merges(x, connectivity, progress=None, cancel=None, overwrite=False):
    """Greedy structured Ward on rows of `x (P,F)`: `(children (P-1,2), costs (P-1,))`.

    Merge t creates node P+t from `children[t]`; leaves are 0..P-1. The graph must be
    connected (`connectivity.build_connectivity` bridges pieces). Cost = Ward's increase of
    within-cluster squared error, n_a n_b / (n_a + n_b) * |mean_a - mean_b|^2.
    Pairs of equal cost are taken in the order (cost, larger node id, smaller node id),
    as scikit-learn's heap does. With `overwrite`, `x` (float64, C order) is used as scratch.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not overwrite:
        x = x.copy()
    p = x.shape[0]
    if p < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    _poll(cancel)
    hi, lo = _as_pairs(connectivity, p)
    _poll(cancel)
    ward_cost = _ward_cost or _compiled_ward_cost()  # (the first call imports scikit-learn)
    ones = np.ones(p)
    d0 = np.empty(hi.size)
    _poll(cancel)
    ward_cost(ones, x, hi.astype(np.intp), lo.astype(np.intp), d0)
    n_nodes = 2 * p - 1
    _poll(cancel)
    # heap entries (cost, larger id * n_nodes + smaller id): ties break as scikit-learn's do.
    # A sorted list is a heap: sorted by numpy and listed in chunks, it needs no heapify (one
    # long call at 500k faces); the entries are unique, so the pops come in the same order.
    codes = hi * n_nodes + lo
    order = np.lexsort((codes, d0))
    d0, codes = d0[order], codes[order]
    heap = []
    for e0 in range(0, len(order), 4 * LOOP_BLOCK):
        _poll(cancel)
        heap += zip(d0[e0:e0 + 4 * LOOP_BLOCK].tolist(), codes[e0:e0 + 4 * LOOP_BLOCK].tolist())
    del order, codes
    _poll(cancel)
    # neighbour sets per node id (leaves first, new nodes appended)
    nbrs = []
    for s0 in range(0, p, 2 * LOOP_BLOCK):
        _poll(cancel)
        nbrs.extend(set() for _ in range(min(2 * LOOP_BLOCK, p - s0)))
    his, los = hi.tolist(), lo.tolist()
    for e0 in range(0, len(his), LOOP_BLOCK):
        _poll(cancel)
        for a, b in zip(his[e0:e0 + LOOP_BLOCK], los[e0:e0 + LOOP_BLOCK]):
            nbrs[a].add(b)
            nbrs[b].add(a)
    del his, los
    nbrs.extend([None] * (p - 1))
    alive = [True] * p + [False] * (p - 1)
    sums = x  # row s: feature sum of the cluster living in slot s (as scikit-learn's moments)
    count = np.ones(p)
    slot = np.empty(n_nodes, np.intp)
    slot[:p] = np.arange(p)
    children = np.empty((p - 1, 2), np.int64)
    costs = np.empty(p - 1)
    step = max(1, p // 100)  # progress every 1 %
    poll_every = min(step, WARD_POLL)
    rowbuf = np.empty(64, np.intp)
    colbuf = np.empty(64, np.intp)
    resbuf = np.empty(64)
    live = p  # clusters alive
    live_edges = len(heap)
    for k in range(p, n_nodes):
        # Mostly stale entries: drop them in one pass (the pop order of live ones is unchanged).
        # Amortised O(1) per push: after a pass the heap holds exactly the live edges.
        if len(heap) > 2 * live_edges + 1024:
            kept = []
            for e0 in range(0, len(heap), 4 * LOOP_BLOCK):  # (a second or more at 500k: poll between)
                _poll(cancel)
                kept += [e for e in heap[e0:e0 + 4 * LOOP_BLOCK] if alive[e[1] // n_nodes] and alive[e[1] % n_nodes]]
            heap = kept
            _poll(cancel)
            heapify(heap)
        live -= 1
        while True:
            if not heap:
                raise InputError("the polygon graph is not connected; bridge its pieces first")
            cost, code = heappop(heap)
            i, j = divmod(code, n_nodes)
            if alive[i] and alive[j]:
                break
        t = k - p
        children[t, 0], children[t, 1] = j, i
        costs[t] = cost
        alive[i] = alive[j] = False
        alive[k] = True
        si, sj = slot[i], slot[j]
        sums[si] += sums[sj]
        count[si] += count[sj]
        slot[k] = si
        live_edges -= len(nbrs[i]) + len(nbrs[j]) - 1
        nb = nbrs[i] | nbrs[j]
        nb.discard(i)
        nb.discard(j)
        live_edges += len(nb)
        nbrs[i] = nbrs[j] = None
        nbrs[k] = nb
        if nb:
            cols = list(nb)
            for c in cols:
                s = nbrs[c]
                s.discard(i)
                s.discard(j)
                s.add(k)
            m = len(cols)
            if m > rowbuf.size:
                rowbuf = np.empty(2 * m, np.intp)
                colbuf = np.empty(2 * m, np.intp)
                resbuf = np.empty(2 * m)
            rows, cc, res = rowbuf[:m], colbuf[:m], resbuf[:m]
            rows.fill(si)
            cc[:] = slot[cols]
            ward_cost(count, sums, rows, cc, res)
            kk = k * n_nodes
            for dc, c in zip(res.tolist(), cols):
                heappush(heap, (dc, kk + c))
        if t % poll_every == 0:
            _poll(cancel)
            if progress is not None and t % step == 0:
                progress(t / (p - 1))
    return children, costs


NATURAL_CUT_RANGE = (3, 20)


def natural_cut(costs, num_leaves: int, lo: int = NATURAL_CUT_RANGE[0], hi: int = NATURAL_CUT_RANGE[1]) -> int:
    """The number of parts k in [lo, hi] whose next merge (k -> k-1 parts) costs the most
    relative to the merge that made it (k+1 -> k): the cut where the parts are whole.
    Trees with at most `lo` leaves return their leaf count."""
    costs = np.asarray(costs, dtype=np.float64)
    p = int(num_leaves)
    ks = np.arange(lo, min(hi, p - 1) + 1)
    if ks.size == 0:
        return p
    # merge t takes the tree from p - t to p - t - 1 parts
    ratio = costs[p - ks] / np.maximum(costs[p - ks - 1], 1e-12)
    return int(ks[np.argmax(ratio)])


def free_merges(children, x, parts: int):
    """Redo the merges above the `parts`-part cut of a merge tree as unconstrained Ward on
    rows of `x (P,F)`: `(children (parts-1,2), costs (parts-1,))` that replace the tree's
    last `parts - 1` merges (node ids continue where the kept merges end).

    The kept merges define `parts` clusters; from there the pair with the smallest Ward cost
    in `x` merges whether or not the clusters touch in the polygon graph. Ties go to the
    pair with the smaller (larger id, smaller id), as in `ward_merges`."""
    import scipy.sparse as sp

    children = np.asarray(children, dtype=np.int64).reshape(-1, 2)
    p = children.shape[0] + 1
    m = min(int(parts), p)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != p:
        raise InputError(f"free-merge space must be ({p}, F), got {x.shape}")
    if m < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    keep = children[: p - m]
    n = p + len(keep)  # nodes that exist after the kept merges
    root = np.arange(n)
    root[keep[:, 0]] = root[keep[:, 1]] = np.arange(p, n)
    while True:  # pointer jumping: every leaf to the cluster it ends in
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    ids, which = np.unique(root[:p], return_inverse=True)  # the m cluster nodes, ascending
    count = np.bincount(which, minlength=m).astype(np.float64)
    sums = sp.csr_matrix((np.ones(p), (which, np.arange(p))), shape=(m, p)) @ x  # (m, F)
    ids = ids.astype(np.int64)
    alive = np.ones(m, bool)
    upper = np.triu(np.ones((m, m), bool), 1)
    out = np.empty((m - 1, 2), np.int64)
    costs = np.empty(m - 1)
    for t in range(m - 1):
        mean = sums / np.maximum(count, 1.0)[:, None]
        sq = np.einsum("ij,ij->i", mean, mean)
        d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * mean @ mean.T, 0.0)  # (m, m) squared distances
        a_idx, b_idx = np.nonzero(alive[:, None] & alive[None, :] & upper)
        na, nb = count[a_idx], count[b_idx]
        cost = na * nb / (na + nb) * d[a_idx, b_idx]
        hi, lo = np.maximum(ids[a_idx], ids[b_idx]), np.minimum(ids[a_idx], ids[b_idx])
        best = np.lexsort((lo, hi, cost))[0]
        a, b = a_idx[best], b_idx[best]
        out[t] = (lo[best], hi[best])
        costs[t] = cost[best]
        sums[a] += sums[b]
        count[a] += count[b]
        alive[b] = False
        ids[a] = n + t
    return out, costs


def check_merges(children, num_leaves: int) -> np.ndarray:
    """`children` as an (P-1, 2) int64 merge list over `num_leaves` leaves, or `InputError`
    naming what is wrong: merge t may only join nodes made before it (ids < P + t, so no
    cycles) and every node but the root is merged exactly once. Vectorised, O(P); for trees
    read from files, before `PartTree` (whose pointer jumping would loop on a cycle)."""
    p = int(num_leaves)
    if p < 1:
        raise InputError(f"a merge tree needs at least one leaf, got {p}")
    ch = np.asarray(children)
    if ch.dtype.kind not in "iu":
        raise InputError(f"merge tree children must be integers, got {ch.dtype}")
    if ch.size != 2 * (p - 1):
        raise InputError(f"a tree over {p} leaves needs {p - 1} merges, got {ch.size / 2:g}")
    ch = ch.astype(np.int64).reshape(-1, 2)
    if p == 1:
        return ch
    limit = p + np.arange(p - 1, dtype=np.int64)  # merge t makes node P + t
    bad = (ch < 0) | (ch >= limit[:, None])
    if bad.any():
        t = int(np.flatnonzero(bad.any(axis=1))[0])
        raise InputError(f"merge {t} joins nodes {ch[t].tolist()}; only nodes 0..{limit[t] - 1} exist then "
                         "(a merge refers to itself, a later merge or a node that does not exist)")
    uses = np.bincount(ch.ravel(), minlength=2 * p - 1)[: 2 * p - 2]
    wrong = np.flatnonzero(uses > 1)
    if wrong.size == 0:
        wrong = np.flatnonzero(uses == 0)
    if wrong.size:
        n = int(wrong[0])
        raise InputError(f"node {n} is merged {int(uses[n])} times; every node but the root is merged once")
    return ch


def _smaller_children(a, b, sa, sb):
    """Per merge of children `a`, `b` (sizes `sa`, `sb`), the child that gets the new label
    when the merge is undone: the smaller one, on a tie the larger id."""
    return np.where((sa > sb) | ((sa == sb) & (b > a)), b, a)


def _stable_labels(ch, size, parent, p):
    """`label_of_node` (see `PartTree`): undoing merge t (node P+t) gives P-t parts; its
    smaller child gets the new label P-t-1, the larger keeps its parent's."""
    n = 2 * p - 1
    own = np.full(n, -1, np.int64)
    own[n - 1] = 0
    if p > 1:
        a, b = ch[:, 0], ch[:, 1]
        own[_smaller_children(a, b, size[a], size[b])] = p - 1 - np.arange(p - 1)
        # larger children inherit: pointer jumping up to the nearest labelled ancestor
        ptr = np.where(own >= 0, np.arange(n), parent)
        while True:
            nxt = ptr[ptr]
            if np.array_equal(nxt, ptr):
                break
            ptr = nxt
        own = own[ptr]
    return own


def check_layout(children, num_leaves: int, sizes, starts, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(size, start, label_of_node)` of all 2P-1 nodes from a stored tree's `sizes`,
    `starts` and `labels` of its P-1 merge nodes (`PartTree.internal_layout`), or
    `InputError` when they disagree with the merges. Vectorised, O(P); `children` must have
    passed `check_merges` (so it is a tree).

    A leaf's size is 1 and every node's the sum of its children's; the root starts at 0, a
    left child where its parent starts and a right child that many leaves later; the root's
    label is 0, the smaller child of merge t gets P-1-t and the larger its parent's. Children
    precede their parents, so these local equations, checked at every merge, determine all
    three arrays: a file whose sizes, starts or labels lie fails here."""
    p = int(num_leaves)
    n = 2 * p - 1
    ch = np.asarray(children, np.int64).reshape(-1, 2)
    sizes, starts, labels = np.asarray(sizes), np.asarray(starts), np.asarray(labels)
    for what, arr in (("sizes", sizes), ("starts", starts), ("labels", labels)):
        if arr.dtype.kind not in "iu" or arr.shape != (p - 1,):
            raise InputError(f"the tree's stored {what} must be {p - 1} integers, got {arr.dtype} {arr.shape}")
    # int32 (when P allows) and few fresh arrays: at 500k faces this is memory-bound
    kind = np.int32 if 2 * p < np.iinfo(np.int32).max else np.int64
    size = np.ones(n, kind)
    size[p:] = sizes
    if p == 1:
        return size, np.zeros(1, kind), np.zeros(1, kind)
    a, b = np.ascontiguousarray(ch[:, 0]), np.ascontiguousarray(ch[:, 1])
    sa, sb = np.take(size, a), np.take(size, b)
    tmp = np.add(sa, sb, dtype=np.int64)
    t = _first_mismatch(tmp, size[p:])
    if t is not None:
        raise InputError(f"the stored size of node {p + t} is {int(size[p + t])}, but its children "
                         f"{ch[t].tolist()} hold {int(tmp[t])} leaves")
    start = np.empty(n, kind)
    start[a] = starts
    start[b] = np.add(starts, sa, out=tmp)
    start[n - 1] = 0
    t = _first_mismatch(start[p:], starts)
    if t is not None:
        raise InputError(f"the stored start of node {p + t} is {int(starts[t])}, but its place in the tree "
                         f"puts it at {int(start[p + t])}")
    own = np.empty(n, kind)
    own[a] = labels  # larger children inherit (the smaller ones are overwritten next)
    own[b] = labels
    own[_smaller_children(a, b, sa, sb)] = np.arange(p - 1, 0, -1, dtype=kind)  # merge t: P-1-t
    own[n - 1] = 0
    t = _first_mismatch(own[p:], labels)
    if t is not None:
        raise InputError(f"the stored label of node {p + t} is {int(labels[t])}, but the merges give it "
                         f"{int(own[p + t])}")
    return size, start, own


def _first_mismatch(derived, stored) -> int | None:
    """The first merge index where `derived` and `stored` differ, or None."""
    wrong = np.flatnonzero(derived != stored)
    return int(wrong[0]) if wrong.size else None


class PartTree:
    """Merge tree over P polygons with O(P) cuts at any k and stable labels.

    Labels: cutting at k+1 splits one part of cut k in two; the larger half keeps the
    part's label and the smaller half gets label k, so colours never jump while a slider
    moves. Label 0 is always the part holding the largest lineage. Use
    `cut(k, order="size")` for labels sorted by part size (largest first) instead.
    """

    def __init__(self, children, num_leaves, costs=None, layout=None, cancel=None):
        """`layout`: `(size, start, label_of_node)` of all 2P-1 nodes as `check_layout`
        returns them (a stored tree's own, checked); None computes them from the merges,
        polling `cancel` every `LOOP_BLOCK` merges."""
        self.children = np.asarray(children, dtype=np.int64).reshape(-1, 2)
        self.num_leaves = int(num_leaves)
        p = self.num_leaves
        if self.children.shape[0] != p - 1:
            raise InputError(f"a tree over {p} leaves needs {p - 1} merges, got {self.children.shape[0]}")
        self.costs = None if costs is None else np.asarray(costs, dtype=np.float64)
        self._prepare(layout, cancel)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, features, connectivity, normalize=True, progress=None, cancel=None,
              free_space=None) -> "PartTree":
        """Ward tree of `features (P,F)` (L2-normalised first) on `connectivity`. With
        `free_space (P,F')`, the merges above the tree's `natural_cut` are redone on
        `free_space` without the graph (`free_merges`), so look-alike parts can join."""
        x = normalize_rows(features) if normalize else np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[0] < 1:
            raise InputError("features must be a (P, F) array with P >= 1")
        p = x.shape[0]
        children, costs = ward_merges(x, connectivity, progress=progress, cancel=cancel,
                                      overwrite=normalize)
        natural = natural_cut(costs, p) if p >= 2 else 1
        if free_space is not None and p >= 2:
            extra, extra_costs = free_merges(children, free_space, natural)
            kept = p - 1 - len(extra)
            children = np.concatenate([children[:kept], extra])
            costs = np.concatenate([costs[:kept], extra_costs])
        tree = cls(children, p, costs, cancel=cancel)
        tree.natural_parts = natural  # the graph tree's natural cut: the suggested part count
        return tree

    def _prepare(self, layout=None, cancel=None):
        """Sizes, parents, DFS leaf order (every node's leaves contiguous) and labels."""
        p, ch = self.num_leaves, self.children
        n = 2 * p - 1
        parent = np.full(n, -1, np.int64)
        if p > 1:
            parent[ch[:, 0]] = np.arange(p, n)
            parent[ch[:, 1]] = np.arange(p, n)
            if (parent[: n - 1] < 0).any():
                raise InputError("the merge list is not a single tree")
        self.parent = parent
        if layout is not None:
            size, start, own = (np.asarray(a) for a in layout)  # (int32 from `check_layout`)
            if size.shape != (n,) or start.shape != (n,) or own.shape != (n,):
                raise InputError(f"a tree layout over {p} leaves needs {n} sizes, starts and labels")
        else:
            size, start = np.ones(n, np.int64), np.zeros(n, np.int64)
            if p > 1:
                size = _subtree_sizes(ch, p, cancel)
                # DFS start of each node: root at 0; left child at parent's start, right after it.
                start = _dfs_starts(ch, size, p, cancel)
            own = _stable_labels(ch, size, parent, p)
        self.size, self.start, self.label_of_node = size, start, own
        self.leaf_order = np.empty(p, np.int64)  # leaf_order[position] = leaf
        self.leaf_order[start[:p]] = np.arange(p)

    @property
    def internal_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sizes, starts, labels) of the P-1 merge nodes: what a stored tree keeps so that
        loading it needs no loop over the merges (`check_layout` rebuilds and checks the rest)."""
        p = self.num_leaves
        return self.size[p:], self.start[p:], self.label_of_node[p:]

    # ------------------------------------------------------------------ cuts
    @property
    def num_nodes(self) -> int:
        return 2 * self.num_leaves - 1

    def cut_nodes(self, k) -> np.ndarray:
        """The k node ids alive after P-k merges."""
        p = self.num_leaves
        k = int(k)
        if not 1 <= k <= p:
            raise ValueError(f"k must be in 1..{p}, got {k}")
        if k == 1:
            return np.array([2 * p - 2], np.int64)
        cand = self.children[p - k:].ravel()
        return cand[cand < 2 * p - k]

    def cut(self, k, order="stable") -> np.ndarray:
        """(P,) int32 labels 0..k-1 of the partition into k parts (nested across k).

        order="stable": labels inherited across k (see class doc); "size": largest first."""
        nodes = self.cut_nodes(k)
        return self._labels_of(nodes, order)

    def _labels_of(self, nodes, order="stable"):
        if order == "stable":
            lab = self.label_of_node[nodes]  # 0..k-1 for the nodes of a cut
        elif order == "size":
            lab = np.empty(len(nodes), np.int64)
            lab[np.lexsort((self.start[nodes], -self.size[nodes]))] = np.arange(len(nodes))
        else:
            raise ValueError("order must be 'stable' or 'size'")
        by_start = np.argsort(self.start[nodes])
        dfs_labels = np.repeat(lab[by_start].astype(np.int32), self.size[nodes][by_start])
        out = np.empty(self.num_leaves, np.int32)
        out[self.leaf_order] = dfs_labels
        return out

    def cuts(self, ks, order="stable") -> dict:
        return {int(k): self.cut(k, order) for k in ks}

    # ------------------------------------------------------------------ editing
    def maximal_nodes(self, mask) -> np.ndarray:
        """Largest tree nodes whose leaves all lie in the boolean leaf `mask (P,)`."""
        mask = np.asarray(mask, bool)
        c = np.zeros(self.num_leaves + 1, np.int64)
        np.cumsum(mask[self.leaf_order], out=c[1:])
        inside = c[self.start + self.size] - c[self.start]
        full = inside == self.size
        par = self.parent
        top = full & np.where(par >= 0, ~full[np.maximum(par, 0)], True)
        return np.flatnonzero(top)

    def split_part(self, labels, part) -> np.ndarray:
        """Split part `part` of `labels` one level down the tree; the smaller side gets the
        new label `labels.max() + 1`. A part that is one tree node splits into its two
        children; a part made of several tree nodes (after `merge_parts`) first gives back
        its most recently built node."""
        labels = np.array(labels, dtype=np.int32, copy=True)
        mask = labels == part
        if not mask.any():
            raise ValueError(f"there is no part {part}")
        nodes = self.maximal_nodes(mask)
        if nodes.size > 1:
            side = np.zeros(self.num_leaves, bool)
            v = nodes.max()
            side[self.leaf_order[self.start[v]:self.start[v] + self.size[v]]] = True
        elif nodes[0] >= self.num_leaves:
            a, b = self.children[nodes[0] - self.num_leaves]
            v = a if (self.size[a], -a) < (self.size[b], -b) else b  # as in cut()
            side = np.zeros(self.num_leaves, bool)
            side[self.leaf_order[self.start[v]:self.start[v] + self.size[v]]] = True
        else:
            return labels  # a single polygon: nothing to split
        if side.sum() > (mask & ~side).sum():
            side = mask & ~side
        labels[side] = labels.max() + 1
        return labels

    @staticmethod
    def merge_parts(labels, a, b) -> np.ndarray:
        """Merge part `b` into part `a` (the result keeps the smaller of the two labels); the
        highest label is renamed to the freed one, so labels stay 0..k-2 and only it changes."""
        labels = np.array(labels, dtype=np.int32, copy=True)
        a, b = int(a), int(b)
        if a == b:
            return labels
        keep, gone = min(a, b), max(a, b)
        labels[labels == gone] = keep
        top = int(labels.max())
        if top > gone:
            labels[labels == top] = gone
        return labels


LOOP_BLOCK = 1 << 16  # merges between cancel checks in the layout loops (~0.05 s)


def _poll(cancel):
    if cancel is not None and cancel():
        raise Cancelled("part tree cancelled")


def _subtree_sizes(children, p, cancel=None):
    """Leaf counts of all 2P-1 nodes; merges are processed in order (children precede parents)."""
    s = [1] * (2 * p - 1)
    a_list, b_list = children[:, 0].tolist(), children[:, 1].tolist()
    for t0 in range(0, p - 1, LOOP_BLOCK):
        _poll(cancel)
        for t in range(t0, min(t0 + LOOP_BLOCK, p - 1)):
            s[p + t] = s[a_list[t]] + s[b_list[t]]
    return np.asarray(s, np.int64)


def _dfs_starts(children, size, p, cancel=None):
    """Start position of each node's leaf range in a DFS order (root range is 0..P)."""
    n = 2 * p - 1
    st = [0] * n
    a_list, b_list = children[:, 0].tolist(), children[:, 1].tolist()
    sz = size.tolist()
    for t1 in range(p - 2, -1, -LOOP_BLOCK):  # parents before children
        _poll(cancel)
        for t in range(t1, max(t1 - LOOP_BLOCK, -1), -1):
            s0 = st[p + t]
            a = a_list[t]
            st[a] = s0
            st[b_list[t]] = s0 + sz[a]
    return np.asarray(st, np.int64)


def kmeans_labels(features, k, seed=0, n_init=3) -> np.ndarray:
    """KMeans alternative (point clouds, meshes without faces): labels 0..k-1 of L2-normalised
    `features`, largest cluster first."""
    from sklearn.cluster import KMeans

    x = normalize_rows(features)
    k = int(k)
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in 1..{x.shape[0]}")
    lab = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit_predict(x)
    sizes = np.bincount(lab, minlength=k)
    rank = np.empty(k, np.int64)
    rank[np.lexsort((np.arange(k), -sizes))] = np.arange(k)
    return rank[lab].astype(np.int32)
