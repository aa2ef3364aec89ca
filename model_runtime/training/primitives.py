"""Primitive solids for the procedural part data: a triangle mesh, a signed distance
and an inside test for each, all vectorised numpy.

A `Prim` is a solid in its own local frame (centred at the origin, main axis +z)
placed by a rotation `rot` (3, 3) and a translation `pos` (3,): world = rot @ local + pos.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("box", "ellipsoid", "cylinder", "cone", "capsule", "torus")


@dataclass
class Prim:
    kind: str
    # box: half extents (x, y, z); ellipsoid: radii (x, y, z); cylinder: (rx, ry, half height);
    # cone: (bottom radius, top radius, half height); capsule: (radius, -, half length of
    # the straight part); torus: (major radius, minor radius, -).
    size: np.ndarray
    pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))
    # box corner rounding (fraction of the smallest half extent), only for the SDF.
    round: float = 0.0

    def to_local(self, p: np.ndarray) -> np.ndarray:
        return (p - self.pos) @ self.rot

    def to_world(self, p: np.ndarray) -> np.ndarray:
        return p @ self.rot.T + self.pos

    def local_extent(self) -> np.ndarray:
        """Half extents of the local bounding box."""
        s = np.asarray(self.size, dtype=np.float64)
        if self.kind in ("box", "ellipsoid", "cylinder"):
            return s.copy()
        if self.kind == "cone":
            r = max(s[0], s[1])
            return np.array([r, r, s[2]])
        if self.kind == "capsule":
            return np.array([s[0], s[0], s[2] + s[0]])
        if self.kind == "torus":
            return np.array([s[0] + s[1], s[0] + s[1], s[1]])
        raise ValueError(self.kind)

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        e = self.local_extent()
        half = np.abs(self.rot) @ e
        return self.pos - half, self.pos + half


# ---------------------------------------------------------------------------------------
# Signed distances (local frame). Exact for box/capsule/torus/cylinder, bounds otherwise.

def sdf_local(prim: Prim, p: np.ndarray) -> np.ndarray:
    s = np.asarray(prim.size, dtype=np.float64)
    if prim.kind == "box":
        r = prim.round * float(s.min())
        q = np.abs(p) - (s - r)
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        return outside + np.minimum(q.max(axis=-1), 0.0) - r
    if prim.kind == "ellipsoid":
        k0 = np.linalg.norm(p / s, axis=-1)
        k1 = np.linalg.norm(p / (s * s), axis=-1)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)
    if prim.kind == "cylinder":
        rr = min(s[0], s[1])
        radial = np.linalg.norm(p[:, :2] / s[:2], axis=-1) * rr - rr
        d = np.stack([radial, np.abs(p[:, 2]) - s[2]], axis=-1)
        return np.minimum(d.max(axis=-1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=-1)
    if prim.kind == "cone":
        r0, r1, h = s
        t = np.clip((p[:, 2] + h) / (2 * h), 0.0, 1.0)
        radius = r0 + (r1 - r0) * t
        slope = np.cos(np.arctan2(abs(r1 - r0), 2 * h))
        radial = (np.linalg.norm(p[:, :2], axis=-1) - radius) * slope
        d = np.stack([radial, np.abs(p[:, 2]) - h], axis=-1)
        return np.minimum(d.max(axis=-1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=-1)
    if prim.kind == "capsule":
        q = p.copy()
        q[:, 2] -= np.clip(q[:, 2], -s[2], s[2])
        return np.linalg.norm(q, axis=-1) - s[0]
    if prim.kind == "torus":
        qx = np.linalg.norm(p[:, :2], axis=-1) - s[0]
        return np.sqrt(qx * qx + p[:, 2] ** 2) - s[1]
    raise ValueError(prim.kind)


def sdf(prim: Prim, p_world: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) of world points (M, 3)."""
    return sdf_local(prim, prim.to_local(p_world))


# ---------------------------------------------------------------------------------------
# Meshes (local frame), tessellation set by `res` (segments around / along).

def grid_faces(nu: int, nv: int, wrap_u: bool, wrap_v: bool) -> np.ndarray:
    """Triangles of a (nu, nv) vertex grid laid out row-major (u slow, v fast)."""
    iu = np.arange(nu if wrap_u else nu - 1)
    iv = np.arange(nv if wrap_v else nv - 1)
    u0, v0 = np.meshgrid(iu, iv, indexing="ij")
    u1 = (u0 + 1) % nu
    v1 = (v0 + 1) % nv
    a = u0 * nv + v0
    b = u1 * nv + v0
    c = u1 * nv + v1
    d = u0 * nv + v1
    tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return tris


def _revolve(profile_r: np.ndarray, profile_z: np.ndarray, seg: int, cap_bottom: bool, cap_top: bool,
             rx: float = 1.0, ry: float = 1.0):
    """Surface of revolution of a (r, z) profile (bottom to top) around z."""
    ang = np.linspace(0.0, 2 * np.pi, seg, endpoint=False)
    nr = len(profile_r)
    x = profile_r[:, None] * np.cos(ang)[None, :] * rx
    y = profile_r[:, None] * np.sin(ang)[None, :] * ry
    z = np.broadcast_to(profile_z[:, None], x.shape)
    verts = np.stack([x, y, z], -1).reshape(-1, 3)
    # Rows are u (profile, bottom->top), columns v (angle): outward faces need (a, d, c) order.
    tris = grid_faces(nr, seg, False, True)[:, [0, 2, 1]]
    parts_v, parts_f = [verts], [tris]
    n = len(verts)
    if cap_bottom:
        ring = np.arange(seg)
        parts_v.append(np.array([[0.0, 0.0, profile_z[0]]]))
        parts_f.append(np.stack([np.full(seg, n), (ring + 1) % seg, ring], -1))
        n += 1
    if cap_top:
        ring = (nr - 1) * seg + np.arange(seg)
        nxt = (nr - 1) * seg + (np.arange(seg) + 1) % seg
        parts_v.append(np.array([[0.0, 0.0, profile_z[-1]]]))
        parts_f.append(np.stack([np.full(seg, n), ring, nxt], -1))
    return np.concatenate(parts_v), np.concatenate(parts_f).astype(np.int64)


def _box_mesh(s: np.ndarray, n: int):
    t = np.linspace(-1.0, 1.0, n + 1)
    uu, vv = np.meshgrid(t, t, indexing="ij")
    uu, vv = uu.ravel(), vv.ravel()
    ones = np.ones_like(uu)
    base = grid_faces(n + 1, n + 1, False, False)
    verts, faces = [], []
    # (axis of the normal, sign) -> the two tangent axes in right-handed order.
    for axis in range(3):
        a1, a2 = (axis + 1) % 3, (axis + 2) % 3
        for sign in (1.0, -1.0):
            p = np.zeros((len(uu), 3))
            p[:, axis] = sign * ones
            p[:, a1] = uu
            p[:, a2] = vv
            f = base if sign > 0 else base[:, [0, 2, 1]]
            faces.append(f + sum(len(v) for v in verts))
            verts.append(p)
    return weld(np.concatenate(verts) * s, np.concatenate(faces))


def weld(verts: np.ndarray, tris: np.ndarray, tol: float = 1e-9):
    """Merge coincident vertices."""
    key = np.round(verts / max(tol, 1e-12)).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return verts[first], inverse.reshape(-1)[tris]


def mesh_local(prim: Prim, res: int):
    """(vertices (V, 3), triangles (T, 3)) of the primitive in its local frame."""
    s = np.asarray(prim.size, dtype=np.float64)
    res = max(int(res), 6)
    if prim.kind == "box":
        return _box_mesh(s, max(1, res // 8))
    if prim.kind == "ellipsoid":
        th = np.linspace(np.pi, 0.0, res // 2 + 1)[1:-1]  # bottom -> top, poles as caps
        v, f = _revolve(np.sin(th), np.cos(th), res, True, True)
        v[[-2, -1], 2] = [-1.0, 1.0]
        return v * s, f
    if prim.kind == "cylinder":
        rows = max(2, res // 8)
        z = np.linspace(-s[2], s[2], rows)
        return _revolve(np.ones(rows), z, res, True, True, s[0], s[1])
    if prim.kind == "cone":
        rows = max(2, res // 8)
        t = np.linspace(0.0, 1.0, rows)
        r = s[0] + (s[1] - s[0]) * t
        r = np.maximum(r, 1e-4)
        return _revolve(r, -s[2] + 2 * s[2] * t, res, True, True)
    if prim.kind == "capsule":
        m = max(2, res // 4)
        lo = np.linspace(np.pi, np.pi / 2, m)[1:]
        hi = np.linspace(np.pi / 2, 0.0, m)[:-1]
        r = np.concatenate([np.sin(lo), np.sin(hi)]) * s[0]
        z = np.concatenate([np.cos(lo) * s[0] - s[2], np.cos(hi) * s[0] + s[2]])
        v, f = _revolve(r, z, res, True, True)
        v[[-2, -1], 2] = [-s[2] - s[0], s[2] + s[0]]
        return v, f
    if prim.kind == "torus":
        nu, nv = res, max(6, res // 2)
        a = np.linspace(0, 2 * np.pi, nu, endpoint=False)
        b = np.linspace(0, 2 * np.pi, nv, endpoint=False)
        A, B = np.meshgrid(a, b, indexing="ij")
        rr = s[0] + s[1] * np.cos(B)
        v = np.stack([rr * np.cos(A), rr * np.sin(A), s[1] * np.sin(B)], -1).reshape(-1, 3)
        return v, grid_faces(nu, nv, True, True)
    raise ValueError(prim.kind)


def mesh_world(prim: Prim, res: int):
    v, f = mesh_local(prim, res)
    return prim.to_world(v), f


def sample_inside(prim: Prim, n: int, rng: np.random.Generator) -> np.ndarray:
    """About `n` uniform points inside the solid (rejection in the local box); may return fewer."""
    if n <= 0:
        return np.zeros((0, 3))
    e = prim.local_extent()
    p = rng.uniform(-1.0, 1.0, size=(3 * n, 3)) * e
    p = p[sdf_local(prim, p) < 0.0][:n]
    return prim.to_world(p)


# ---------------------------------------------------------------------------------------
# Rotations.

def rot_axis(axis, angle: float) -> np.ndarray:
    """Rotation matrix about a unit axis (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * (K @ K)


def rot_from_z(direction) -> np.ndarray:
    """A rotation taking local +z onto `direction`."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    z = np.array([0.0, 0.0, 1.0])
    c = float(z @ d)
    if c > 1 - 1e-9:
        return np.eye(3)
    if c < -1 + 1e-9:
        return np.diag([1.0, -1.0, -1.0])
    axis = np.cross(z, d)
    return rot_axis(axis, np.arccos(np.clip(c, -1, 1)))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
