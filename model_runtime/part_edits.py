"""Local edits of a part tree: split one part deeper, merge parts, and feature similarity
between parts. numpy only (no torch, scipy or sklearn), so the slider stays cheap.

An edit is an override on tree nodes, kept in a list and replayed in order on every cut:

- `split n`: where node n is shown as a part of its own, show its two children instead.
- `merge n1 n2 ...`: where every listed node is shown (alone or inside a part), the parts
  holding them become one part.

An edit whose nodes are not shown at a cut (the slider went coarser than its node, or finer
so that its node is already divided) is inactive there but kept: it applies again wherever
its nodes are shown. Replaying the list at the cut where an edit was made gives exactly what
the user saw, because each edit was recorded against the parts shown after the earlier ones.

The tree is duck-typed (`model_runtime.part_tree.PartTree`: `num_leaves`, `children`,
`cut_nodes(k)`, `label_of_node`, `start`, `size`, `leaf_order`); this module does not import it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

SPLIT = "split"
MERGE = "merge"
KINDS = (SPLIT, MERGE)
DEFAULT_SIMILARITY = 0.35  # Select Similar Parts: threshold on `relative_similarity`


class EditError(ValueError):
    """An edit that cannot be made (a single face cannot split, one part cannot merge)."""


@dataclass(frozen=True)
class Edit:
    kind: str
    nodes: tuple

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown edit kind {self.kind!r}")
        object.__setattr__(self, "nodes", tuple(int(n) for n in self.nodes))
        if self.kind == SPLIT and len(self.nodes) != 1:
            raise ValueError("a split names one node")
        if self.kind == MERGE and len(self.nodes) < 2:
            raise ValueError("a merge names at least two nodes")


def edits_to_json(edits) -> str:
    """A compact JSON list [[kind, [nodes...]], ...]."""
    return json.dumps([[e.kind, list(e.nodes)] for e in edits], separators=(",", ":"))


def edits_from_json(text) -> list:
    """The edits written by `edits_to_json` (entries that do not parse are dropped)."""
    out = []
    for item in json.loads(text or "[]"):
        try:
            out.append(Edit(str(item[0]), tuple(item[1])))
        except (ValueError, TypeError, IndexError):
            continue
    return out


def valid_edits(tree, edits) -> list:
    """The edits whose nodes exist in `tree` (a split also needs an inner node)."""
    n_nodes = 2 * tree.num_leaves - 1
    p = tree.num_leaves
    out = []
    for e in edits:
        if all(0 <= n < n_nodes for n in e.nodes) and (e.kind != SPLIT or e.nodes[0] >= p):
            out.append(e)
    return out


@dataclass
class EditedCut:
    """The parts at one cut after the edits: `groups[label]` = the tree nodes of that part,
    `labels` (P,) int32 per leaf, `active[i]` whether edit i applied at this cut."""

    groups: list
    labels: np.ndarray
    active: list

    @property
    def num_parts(self) -> int:
        return len(self.groups)


def apply_edits(tree, k, edits=()) -> EditedCut:
    """Cut `tree` into k parts, then replay `edits` in order (see the module doc).

    Labels: without active edits they equal `tree.cut(k)`. A part's key is the smallest stable
    tree label of its nodes; keys below the part count keep their value and larger keys take
    the free values in ascending order, so an edit recolours as few parts as possible."""
    p = tree.num_leaves
    k = max(1, min(int(k), p))
    group_of: dict[int, int] = {}  # shown node -> group id
    groups: dict[int, list] = {}
    for gid, n in enumerate(tree.cut_nodes(k).tolist()):
        group_of[n] = gid
        groups[gid] = [n]
    next_gid = len(groups)
    active = []
    for e in edits:
        if e.kind == SPLIT:
            n = e.nodes[0]
            gid = group_of.get(n)
            ok = gid is not None and len(groups[gid]) == 1 and n >= p
            if ok:
                del groups[gid], group_of[n]
                for c in tree.children[n - p].tolist():
                    groups[next_gid] = [c]
                    group_of[c] = next_gid
                    next_gid += 1
            active.append(ok)
        else:
            ok = all(n in group_of for n in e.nodes)
            if ok:
                gids = sorted({group_of[n] for n in e.nodes})
                keep = gids[0]
                for g in gids[1:]:
                    members = groups.pop(g)
                    for n in members:
                        group_of[n] = keep
                    groups[keep].extend(members)
            active.append(ok)
    ordered = _stable_order(tree, list(groups.values()))
    return EditedCut(ordered, _leaf_labels(tree, ordered), active)


def _stable_order(tree, groups) -> list:
    keys = np.array([int(tree.label_of_node[g].min()) for g in groups], np.int64)
    m = len(groups)
    lab = np.full(m, -1, np.int64)
    small = keys < m
    lab[small] = keys[small]
    free = np.setdiff1d(np.arange(m), keys[small])
    big = np.flatnonzero(~small)
    lab[big[np.argsort(keys[big])]] = free
    out = [None] * m
    for i, g in enumerate(groups):
        out[lab[i]] = tuple(sorted(g))
    return out


def _leaf_labels(tree, groups) -> np.ndarray:
    nodes = np.fromiter((n for g in groups for n in g), np.int64)
    lab = np.repeat(np.arange(len(groups), dtype=np.int32), [len(g) for g in groups])
    by_start = np.argsort(tree.start[nodes])
    dfs = np.repeat(lab[by_start], tree.size[nodes][by_start])
    out = np.empty(tree.num_leaves, np.int32)
    out[tree.leaf_order] = dfs
    return out


# ---------------------------------------------------------------------------- making edits
def split_edit(tree, k, edits, part) -> list:
    """The edit list after splitting part `part` of `apply_edits(tree, k, edits)`.

    A part that is one tree node is replaced by its two children (a new `split`); a merged
    part gives back its last merge (that `merge` is removed from the list, at every cut)."""
    cut = apply_edits(tree, k, edits)
    part = int(part)
    if not 0 <= part < cut.num_parts:
        raise EditError(f"there is no part {part}")
    group = set(cut.groups[part])
    if len(group) > 1:
        for i in range(len(edits) - 1, -1, -1):
            e = edits[i]
            if e.kind == MERGE and cut.active[i] and group.intersection(e.nodes):
                return list(edits[:i]) + list(edits[i + 1:])
        raise EditError("this part was not made by a merge")  # pragma: no cover - not reachable
    (n,) = group
    if n < tree.num_leaves:
        raise EditError("a single face cannot be split")
    return list(edits) + [Edit(SPLIT, (n,))]


def merge_edit(tree, k, edits, parts) -> list:
    """The edit list after merging the parts `parts` (labels of `apply_edits(tree, k, edits)`)."""
    cut = apply_edits(tree, k, edits)
    parts = sorted({int(x) for x in parts})
    if any(not 0 <= x < cut.num_parts for x in parts):
        raise EditError(f"parts must be in 0..{cut.num_parts - 1}")
    if len(parts) < 2:
        raise EditError("select faces of at least two parts to merge")
    nodes = sorted(n for x in parts for n in cut.groups[x])
    return list(edits) + [Edit(MERGE, tuple(nodes))]


def node_leaves(tree, node) -> np.ndarray:
    """The leaves (polygons) under a tree node, sorted."""
    s, z = int(tree.start[node]), int(tree.size[node])
    return np.sort(tree.leaf_order[s:s + z])


# ---------------------------------------------------------------------------- similarity
def _unit_rows(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.sqrt(np.einsum("ij,ij->i", x, x))
    n[n == 0] = 1.0
    return x / n[:, None]


def _inverse_norms(x) -> np.ndarray:
    n = np.sqrt(np.einsum("ij,ij->i", x, x))
    n[n == 0] = 1.0
    return 1.0 / n


def part_descriptors(features, labels, num_parts=None, chunk=16384) -> np.ndarray:
    """(K, F) unit vectors: per part, the mean of its L2-normalised face features."""
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if num_parts is None else int(num_parts)
    f = features.shape[1]
    sums = np.zeros((k, f), np.float64)
    for s in range(0, len(labels), chunk):  # chunked: no (P, F) float32 copy of fp16 features
        x = np.asarray(features[s:s + chunk], dtype=np.float32)
        lab = labels[s:s + chunk]
        weights = np.zeros((k, len(lab)), np.float32)  # one-hot rows scaled by 1/|x|
        weights[lab, np.arange(len(lab))] = _inverse_norms(x)
        sums += weights @ x
    return _unit_rows(sums)


def part_similarity(features, labels, num_parts=None) -> np.ndarray:
    """(K, K) cosine similarity between the parts' descriptors."""
    d = part_descriptors(features, labels, num_parts)
    return np.clip(d @ d.T, -1.0, 1.0)


def relative_similarity(cosines, ref) -> np.ndarray:
    """Cosines rescaled so that `ref` itself scores 1 and the least similar entry 0: a scale
    that does not depend on how spread a model's features are."""
    c = np.asarray(cosines, np.float64).copy()
    c[int(ref)] = 1.0
    lo = float(c.min())
    return np.clip((c - lo) / max(1.0 - lo, 1e-9), 0.0, 1.0)


def similar_parts(features, labels, part, threshold=DEFAULT_SIMILARITY, num_parts=None) -> np.ndarray:
    """Parts (sorted, `part` included) whose `relative_similarity` to `part` is >= `threshold`
    (cosines between part descriptors: 1 = `part`, 0 = the object's least similar part)."""
    d = part_descriptors(features, labels, num_parts)
    rel = relative_similarity(d @ d[int(part)], part)
    return np.flatnonzero(rel >= threshold)


def face_similarity(features, face, chunk=16384) -> np.ndarray:
    """(P,) float32 cosine similarity of every face's feature to face `face`'s."""
    ref = _unit_rows(features[int(face):int(face) + 1])[0]
    out = np.empty(features.shape[0], np.float32)
    for s in range(0, features.shape[0], chunk):
        x = np.asarray(features[s:s + chunk], dtype=np.float32)
        out[s:s + chunk] = (x @ ref) * _inverse_norms(x)
    return np.clip(out, -1.0, 1.0)


def heat_colors(values, lo=None, hi=None) -> np.ndarray:
    """(N, 4) float32 linear RGBA for `values`: dark blue (low) -> red -> yellow (high).
    The range defaults to the values' own min..max."""
    v = np.asarray(values, np.float32)
    lo = float(v.min()) if lo is None and len(v) else (0.0 if lo is None else lo)
    hi = float(v.max()) if hi is None and len(v) else (1.0 if hi is None else hi)
    t = np.clip((v - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    stops = np.array([[0.02, 0.03, 0.25], [0.10, 0.25, 0.85], [0.85, 0.10, 0.08], [1.0, 0.95, 0.15]], np.float32)
    pos = t * (len(stops) - 1)
    i = np.minimum(pos.astype(np.int64), len(stops) - 2)
    w = (pos - i)[:, None]
    out = np.ones((len(v), 4), np.float32)
    out[:, :3] = stops[i] * (1 - w) + stops[i + 1] * w
    return out
