"""Where the bones of a part rig go: part contacts, a spanning tree, bone head/tail/roll, skin weights.

Pure numpy (no bpy). Input is a mesh (`MeshArrays`) and one label per polygon; everything is
in the mesh's object space.

- The surface of each part is sampled (its vertices, plus a barycentric grid on triangles
  longer than `spacing`), so contacts are found between surfaces, not only between vertices.
- Two parts touch where samples of both lie within `spacing` of each other (a shared vertex,
  coincident faces, one part pushed into another). The contact region is the samples of both
  parts within `spacing` of the nearest pair; its centre is their mean. Parts that only come
  close are joined, when the touching graph is not connected, at the nearest pair of samples
  found on coarser grids (the region within `spacing` of that pair).
- The hierarchy is a spanning tree grown from the root (Prim): touching contacts before close
  ones, larger contact regions first.
- Each bone's head is the centre of the contact with its parent (the root's: its part's
  bounding-box centre); the tail lies along the part's main axis (PCA), pointing away from the
  head and reaching the far end of the part. The bone's Z axis (what Blender's roll sets) is the
  parent's Z axis made perpendicular to the bone, so rolls stay consistent down a chain; the
  root's is world +Z made perpendicular (world -Y for a vertical root).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_CONTACT_SAMPLES = 1500  # per part and contact, for the exact distance check
MAX_BLEND_POINTS = 600  # contact region points a skin-weight border is measured from
_GRID_CAP = 24  # barycentric subdivisions per triangle at most


@dataclass
class Contact:
    a: int
    b: int
    distance: float        # nearest distance between the two parts' samples
    centre: np.ndarray     # (3,)
    size: int              # samples in the contact region
    touching: bool
    points: np.ndarray     # (n,3) the contact region (subsampled)


@dataclass
class RigLayout:
    """One bone per non-empty part, parents before children."""

    parts: np.ndarray    # (B,) part label of each bone
    parent: np.ndarray   # (B,) index of the parent bone, -1 for the root
    head: np.ndarray     # (B,3)
    tail: np.ndarray     # (B,3)
    z_axis: np.ndarray   # (B,3) unit, perpendicular to tail - head (the roll)
    touching: np.ndarray  # (B,) bool: the joint is a touching contact (False: close / root)
    spacing: float
    contacts: dict = field(default_factory=dict)  # (a, b) a < b -> Contact

    @property
    def root(self) -> int:
        return int(self.parts[0])

    def bone_of_part(self) -> dict[int, int]:
        return {int(p): i for i, p in enumerate(self.parts)}

    def contact_points(self, bone: int) -> np.ndarray:
        """The contact region between a bone's part and its parent's part ((0,3) for the root)."""
        if self.parent[bone] < 0:
            return np.zeros((0, 3))
        a, b = int(self.parts[bone]), int(self.parts[self.parent[bone]])
        return self.contacts[(min(a, b), max(a, b))].points


# --------------------------------------------------------------------------- sampling
def _grid_barycentrics(m: int) -> np.ndarray:
    """Barycentric points (n,3) of an m-subdivided triangle, corners excluded."""
    i, j = np.meshgrid(np.arange(m + 1), np.arange(m + 1), indexing="ij")
    keep = (i + j) <= m
    b = np.stack([i[keep], j[keep]], 1) / m
    bary = np.column_stack([1 - b.sum(1), b[:, 0], b[:, 1]])
    corner = (np.isclose(bary, 1.0)).any(axis=1)
    return bary[~corner]


def surface_samples(vertices, tris, tri_part, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on each part's surface no further than about `spacing` apart, and their part."""
    v = np.asarray(vertices, np.float64)
    tris = np.asarray(tris, np.int64)
    tri_part = np.asarray(tri_part, np.int64)
    nv = len(v)
    # every (vertex, part) pair once
    keys = np.unique(tri_part[:, None] * nv + tris)
    pts = [v[keys % nv]]
    part = [keys // nv]
    if len(tris):
        p = v[tris]
        longest = np.max(np.linalg.norm(p - np.roll(p, 1, axis=1), axis=2), axis=1)
        m = np.clip(np.ceil(longest / spacing), 1, _GRID_CAP).astype(np.int64)
        for level in np.unique(m[m > 1]):
            sel = np.flatnonzero(m == level)
            bary = _grid_barycentrics(int(level))  # (n,3)
            q = np.einsum("nk,tkd->tnd", bary, p[sel]).reshape(-1, 3)
            pts.append(q)
            part.append(np.repeat(tri_part[sel], len(bary)))
    return np.concatenate(pts), np.concatenate(part)


# --------------------------------------------------------------------------- contacts
def _cell_keys(points, origin, cell):
    c = np.floor((points - origin) / cell).astype(np.int64) + 1
    dims = c.max(axis=0) + 2
    return (c[:, 0] * dims[1] + c[:, 1]) * dims[2] + c[:, 2], dims


def _neighbour_pairs(points, part, k, cell, wanted=None):
    """Part pairs (a < b) with samples in neighbouring cells of size `cell`, and per pair the
    indices of the candidate samples of a and of b. `wanted(a, b)` filters pairs."""
    origin = points.min(axis=0)
    keys, dims = _cell_keys(points, origin, cell)
    ck, inv = np.unique(keys * k + part, return_inverse=True)
    cell_u, part_u = ck // k, ck % k
    flags = []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                off = (dx * dims[1] + dy) * dims[2] + dz
                target = cell_u + off
                lo = np.searchsorted(cell_u, target, "left")
                hi = np.searchsorted(cell_u, target, "right")
                n = hi - lo
                if not n.any():
                    continue
                src = np.repeat(np.arange(len(cell_u)), n)
                dst = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
                other = part_u[dst]
                ok = other != part_u[src]
                flags.append(np.stack([src[ok], other[ok]], 1))
    if not flags:
        return {}
    flags = np.unique(np.concatenate(flags), axis=0)  # (entry of (cell, a), b)
    entry_part = part_u[flags[:, 0]]
    pair_key = entry_part * k + flags[:, 1]
    by_pair = np.argsort(pair_key, kind="stable")
    pair_key, entries = pair_key[by_pair], flags[by_pair, 0]
    keys_u, starts = np.unique(pair_key, return_index=True)
    ends = np.append(starts[1:], len(pair_key))
    span = dict(zip(keys_u.tolist(), zip(starts.tolist(), ends.tolist())))
    # samples grouped by their (cell, part) entry
    point_order = np.argsort(inv, kind="stable")
    entry_bounds = np.searchsorted(inv[point_order], np.arange(len(ck) + 1))

    def gather(ent):
        lo, hi = entry_bounds[ent], entry_bounds[ent + 1]
        n = hi - lo
        return point_order[np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))]

    out = {}
    for key in keys_u.tolist():
        a, b = divmod(key, k)
        if a > b or (b * k + a) not in span or (wanted is not None and not wanted(a, b)):
            continue
        sa, sb = span[key], span[b * k + a]
        out[(a, b)] = (gather(entries[sa[0]:sa[1]]), gather(entries[sb[0]:sb[1]]))
    return out


def voxel_downsample(points, cell):
    """Indices of one point per occupied cube of side `cell` (an even spread over the surface)."""
    if len(points) == 0:
        return np.zeros(0, np.int64)
    keys, _ = _cell_keys(points, points.min(axis=0), cell)
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def _subsample(idx, n):
    if len(idx) <= n:
        return idx
    return idx[np.linspace(0, len(idx) - 1, n).round().astype(np.int64)]


def _nearest_dist(x, y, chunk=1024):
    """For each row of x, the distance to the nearest row of y."""
    out = np.empty(len(x))
    yy = (y * y).sum(1)
    for s in range(0, len(x), chunk):
        xs = x[s:s + chunk]
        d2 = (xs * xs).sum(1)[:, None] + yy[None, :] - 2 * xs @ y.T
        out[s:s + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0))
    return out


def _contact(points, a, b, ia, ib, spacing) -> Contact:
    ia = ia[voxel_downsample(points[ia], spacing / 2)]
    ib = ib[voxel_downsample(points[ib], spacing / 2)]
    pa = points[_subsample(ia, MAX_CONTACT_SAMPLES)]
    pb = points[_subsample(ib, MAX_CONTACT_SAMPLES)]
    da, db = _nearest_dist(pa, pb), _nearest_dist(pb, pa)
    dmin = float(min(da.min(), db.min()))
    band = dmin + spacing
    region = np.concatenate([pa[da <= band], pb[db <= band]])
    return Contact(a, b, dmin, region.mean(axis=0), len(region), dmin <= spacing, region)


def part_contacts(points, part, k, spacing, max_levels: int = 8) -> dict:
    """Contacts between parts: touching ones, then, while the parts are not all connected,
    the nearest pairs between the pieces, found on grids 4x coarser each level."""
    contacts = {}
    for (a, b), (ia, ib) in _neighbour_pairs(points, part, k, spacing).items():
        contacts[(a, b)] = _contact(points, a, b, ia, ib, spacing)
    present = np.unique(part)
    cell = spacing
    for _ in range(max_levels):
        comp = _components(k, contacts, present)
        if len(set(comp[present].tolist())) <= 1:
            break
        cell *= 4
        found = _neighbour_pairs(points, part, k, cell, wanted=lambda a, b: comp[a] != comp[b])
        for (a, b), (ia, ib) in found.items():
            contacts[(a, b)] = _contact(points, a, b, ia, ib, spacing)
    return contacts


def _components(k, contacts, present):
    comp = np.arange(k)

    def find(x):
        while comp[x] != x:
            comp[x] = comp[comp[x]]
            x = comp[x]
        return x

    for a, b in contacts:
        ra, rb = find(a), find(b)
        if ra != rb:
            comp[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(k)])


# --------------------------------------------------------------------------- tree
def spanning_tree(k, contacts, root, present) -> tuple[list[int], dict[int, int]]:
    """Prim from `root` over the contacts: touching before close, larger regions first.
    Returns (parts in the order they join, {part: parent part})."""
    order, parent = [root], {}
    inside = {root}
    present = set(int(p) for p in present)
    while len(inside) < len(present):
        best = None
        for (a, b), c in contacts.items():
            if (a in inside) == (b in inside):
                continue
            key = (0 if c.touching else 1, -c.size, c.distance, min(a, b), max(a, b))
            if best is None or key < best[0]:
                best = (key, a if a in inside else b, b if a in inside else a)
        if best is None:  # (unreachable pieces: cannot happen after part_contacts' levels)
            rest = sorted(present - inside)
            best = (None, root, rest[0])
        _, p, c = best
        parent[c] = p
        inside.add(c)
        order.append(c)
    return order, parent


# --------------------------------------------------------------------------- bones
def _perpendicular(v, d):
    w = v - (v @ d) * d
    n = np.linalg.norm(w)
    return w / n if n > 1e-8 else None


def _root_z(d):
    for ref in (np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])):
        if abs(ref @ d) < 0.9:
            return _perpendicular(ref, d)
    return _perpendicular(np.array([1.0, 0.0, 0.0]), d)


def bone_direction(samples, head, centre, isotropy: float = 0.8):
    """Unit direction and length of a bone from `head` along the part's main axis, away from
    the head; a nearly isotropic part points from the head to its centre instead."""
    x = samples - samples.mean(axis=0)
    w, vecs = np.linalg.eigh(x.T @ x / max(len(x), 1))
    axis = vecs[:, 2]
    away = centre - head
    if w[2] <= 0 or w[1] / w[2] > isotropy:  # no main axis: from the head to the centre, or up
        axis = away / np.linalg.norm(away) if np.linalg.norm(away) > 1e-9 else np.array([0.0, 0.0, 1.0])
    proj = (centre - head) @ axis
    if abs(proj) > 1e-9 * max(1.0, np.abs(samples).max()):
        axis = axis if proj > 0 else -axis
    else:  # head at the centre (the root): a fixed convention, +Z then +Y then +X
        for c in (2, 1, 0):
            if abs(axis[c]) > 1e-6:
                axis = axis if axis[c] > 0 else -axis
                break
    reach = float(((samples - head) @ axis).max())
    extent = float(np.ptp(samples @ axis)) if len(samples) else 0.0
    length = max(reach, 0.5 * extent, 1e-4)
    return axis, length


def rig_layout(mesh, labels, root: int | None = None, spacing: float | None = None) -> RigLayout:
    """The bones of a rig for a mesh (`MeshArrays`) cut into parts (labels per polygon).

    `root`: the part at the top of the hierarchy (default: the part with the largest area).
    `spacing`: the contact tolerance (default 1% of the mesh's bounding-box diagonal)."""
    labels = np.asarray(labels, np.int64)
    if labels.shape != (mesh.num_polygons,):
        raise ValueError(f"{labels.shape} labels for {mesh.num_polygons} polygons")
    k = int(labels.max()) + 1 if len(labels) else 0
    tris, tri_poly = mesh.triangulate()
    v = np.asarray(mesh.vertices, np.float64)
    tri_part = labels[tri_poly]
    present = np.unique(tri_part)
    if len(present) == 0:
        raise ValueError("no part has a face")
    diag = float(np.linalg.norm(np.ptp(v[np.unique(tris)], axis=0))) or 1.0
    spacing = float(spacing) if spacing else 0.01 * diag
    area = 0.5 * np.linalg.norm(np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]]), axis=1)
    part_area = np.bincount(tri_part, weights=area, minlength=k)
    if root is None or root not in set(present.tolist()):
        root = int(present[np.argmax(part_area[present])])
    points, point_part = surface_samples(v, tris, tri_part, spacing)
    contacts = part_contacts(points, point_part, k, spacing)
    order, parent_part = spanning_tree(k, contacts, int(root), present)

    order_idx = {p: i for i, p in enumerate(order)}
    sort = np.argsort(point_part, kind="stable")
    bounds = np.searchsorted(point_part[sort], np.arange(k + 1))
    B = len(order)
    head, tail, zax = np.zeros((B, 3)), np.zeros((B, 3)), np.zeros((B, 3))
    parent = np.full(B, -1, np.int64)
    touching = np.zeros(B, bool)
    for i, p in enumerate(order):
        s = points[sort[bounds[p]:bounds[p + 1]]]
        centre = (s.min(axis=0) + s.max(axis=0)) / 2
        if p in parent_part:
            q = parent_part[p]
            c = contacts[(min(p, q), max(p, q))]
            head[i] = c.centre
            parent[i] = order_idx[q]
            touching[i] = c.touching
        else:
            head[i] = centre
        d, length = bone_direction(s, head[i], centre)
        tail[i] = head[i] + d * length
        z = _perpendicular(zax[parent[i]], d) if parent[i] >= 0 else None
        zax[i] = z if z is not None else _root_z(d)
    return RigLayout(np.asarray(order, np.int64), parent, head, tail, zax, touching, spacing, contacts)


# --------------------------------------------------------------------------- skin weights
def skin_weights(mesh, labels, layout: RigLayout, border: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per bone, (vertex indices, weights): weight 1 on the vertices of its part's polygons
    (vertices shared by several parts are split evenly); with `border` > 0, weights blend
    linearly from 0.5 at a joint's contact region to 1 at `border` away from it, between a
    bone and its parent. Weights of each vertex sum to 1."""
    labels = np.asarray(labels, np.int64)
    nv = mesh.num_vertices
    k = int(labels.max()) + 1
    loop_part = np.repeat(labels, mesh.loop_totals)
    vp = np.unique(loop_part * nv + np.asarray(mesh.loop_vertices, np.int64))
    vert, part = vp % nv, vp // nv
    weight = np.ones(len(vp))
    extra_v, extra_p, extra_w = [], [], []
    if border > 0:
        v = np.asarray(mesh.vertices, np.float64)
        for bone in range(len(layout.parts)):
            if layout.parent[bone] < 0:
                continue
            a, q = int(layout.parts[bone]), int(layout.parts[layout.parent[bone]])
            pts = layout.contact_points(bone)
            if len(pts) == 0:
                continue
            pts = pts[voxel_downsample(pts, border / 4)]
            pts = pts[_subsample(np.arange(len(pts)), MAX_BLEND_POINTS)]
            lo, hi = pts.min(axis=0) - border, pts.max(axis=0) + border
            for me_part, other in ((a, q), (q, a)):
                sel = np.flatnonzero(part == me_part)
                co = v[vert[sel]]
                near = sel[np.all((co >= lo) & (co <= hi), axis=1)]
                if len(near) == 0:
                    continue
                d = _nearest_dist(v[vert[near]], pts)
                inside = d < border
                near, t = near[inside], d[inside] / border
                w_self = 0.5 + 0.5 * t
                weight[near] = np.minimum(weight[near], w_self)
                extra_v.append(vert[near])
                extra_p.append(np.full(len(near), other))
                extra_w.append(1.0 - w_self)
    if extra_v:
        keys = np.concatenate([vp, np.concatenate(extra_p) * nv + np.concatenate(extra_v)])
        w = np.concatenate([weight, np.concatenate(extra_w)])
        uniq, inv = np.unique(keys, return_inverse=True)
        total = np.zeros(len(uniq))
        np.maximum.at(total, inv, w)
        vert, part, weight = uniq % nv, uniq // nv, total
    norm = np.bincount(vert, weights=weight, minlength=nv)
    weight = weight / norm[vert]
    out = []
    for p in layout.parts:
        sel = part == p
        out.append((vert[sel], weight[sel].astype(np.float32)))
    assert k >= len(layout.parts)
    return out
