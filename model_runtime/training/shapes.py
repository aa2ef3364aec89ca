"""Procedural shape categories: assemblies of primitives with a part hierarchy.

Each builder takes a numpy Generator and returns an `Assembly`: primitives, the leaf part
of each primitive, and groups of leaves (every group at every level is a part proposal).
Builders work in a z-up frame with the object roughly 1-2 units tall; orientation, scale
and meshing are varied later (see `procedural.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .primitives import Prim, rot_axis, rot_from_z


@dataclass
class Assembly:
    category: str
    prims: list = field(default_factory=list)  # list[Prim]
    prim_leaf: list = field(default_factory=list)  # leaf id of each primitive
    groups: list = field(default_factory=list)  # list[list[int]] of leaf ids (size >= 2)
    organic: bool = False  # smooth blends between parts (always meshed welded)
    n_leaves: int = 0
    # Solids cut out of single primitives: {primitive index: [Prim]} (holes, bores, cut
    # planes). Shapes with cuts are always meshed welded (surface nets of the field).
    cuts: dict = field(default_factory=dict)
    # Meshing overrides of the weak-kind builders (`shapes_organic.py`); None: the defaults.
    blend_range: tuple | None = None  # smooth-union radius, fraction of the object size
    grid_range: tuple | None = None  # surface-nets cells along the longest side
    varied_tessellation: bool = False  # re-tessellate (decimated / irregular / coarse / dense)

    # -- building -----------------------------------------------------------------------
    def leaf(self, *prims: Prim) -> list:
        """A new leaf part made of `prims`; returns [leaf id]."""
        lid = self.n_leaves
        self.n_leaves += 1
        for p in prims:
            self.prims.append(p)
            self.prim_leaf.append(lid)
        return [lid]

    def drill(self, leaf_ids, *cutters: Prim) -> None:
        """Cut `cutters` out of every primitive of the leaves `leaf_ids` (not from others)."""
        for i, lid in enumerate(self.prim_leaf):
            if lid in leaf_ids:
                self.cuts.setdefault(i, []).extend(cutters)

    def group(self, *children) -> list:
        """Group leaf-id lists into one coarser part; returns the flattened leaf ids."""
        ids = sorted({i for c in children for i in c})
        if len(ids) >= 2 and ids not in self.groups:
            self.groups.append(ids)
        return ids

    def proposals(self) -> list:
        """Every part at every level: leaves and groups, the whole object excluded."""
        out = [[i] for i in range(self.n_leaves)]
        out += [g for g in self.groups if len(g) < self.n_leaves]
        return out


# ---------------------------------------------------------------------------------------
# Primitive helpers (z-up world frame).

def box(c, half, yaw: float = 0.0, rnd: float = 0.0) -> Prim:
    rot = rot_axis([0, 0, 1], yaw) if yaw else np.eye(3)
    return Prim("box", np.asarray(half, float), np.asarray(c, float), rot, rnd)


def box_rot(c, half, rot) -> Prim:
    return Prim("box", np.asarray(half, float), np.asarray(c, float), np.asarray(rot, float))


def _between(kind, p0, p1, size_xy, extra=None) -> Prim:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    length = float(np.linalg.norm(d))
    rot = rot_from_z(d if length > 1e-9 else [0, 0, 1])
    if kind == "capsule":
        size = np.array([size_xy, size_xy, max(length / 2, 1e-4)])
    elif kind == "cone":
        size = np.array([size_xy, extra, max(length / 2, 1e-4)])
    else:
        size = np.array([size_xy, size_xy if extra is None else extra, max(length / 2, 1e-4)])
    return Prim(kind, size, (p0 + p1) / 2, rot)


def cyl(p0, p1, r, r2=None) -> Prim:
    return _between("cylinder", p0, p1, r, r2)


def cone(p0, p1, r0, r1) -> Prim:
    return _between("cone", p0, p1, r0, r1)


def caps(p0, p1, r) -> Prim:
    return _between("capsule", p0, p1, r)


def ell(c, radii, rot=None) -> Prim:
    return Prim("ellipsoid", np.asarray(radii, float), np.asarray(c, float),
                np.eye(3) if rot is None else np.asarray(rot, float))


def tor(c, major, minor, axis=(0, 0, 1)) -> Prim:
    return Prim("torus", np.array([major, minor, 0.0]), np.asarray(c, float), rot_from_z(axis))


def _leg(rng, top, bottom, r, style):
    if style == 0:
        return cyl(bottom, top, r)
    if style == 1:
        return cone(bottom, top, r * 0.6, r)
    c = (np.asarray(top) + np.asarray(bottom)) / 2
    return box(c, [r, r, abs(top[2] - bottom[2]) / 2])


# ---------------------------------------------------------------------------------------
# Furniture.

def table(rng) -> Assembly:
    a = Assembly("table")
    w, d, h = rng.uniform(0.5, 1.2), rng.uniform(0.35, 0.8), rng.uniform(0.45, 0.9)
    t = rng.uniform(0.02, 0.06)
    round_top = rng.random() < 0.25
    if round_top:
        top = a.leaf(cyl([0, 0, h - t], [0, 0, h + t], min(w, d)))
    else:
        top = a.leaf(box([0, 0, h], [w, d, t], rnd=rng.uniform(0, 0.5)))
    if rng.random() < 0.2:  # pedestal
        col = a.leaf(cyl([0, 0, 0.04], [0, 0, h - t], rng.uniform(0.03, 0.08)))
        base = a.leaf(cyl([0, 0, 0], [0, 0, 0.04], rng.uniform(0.2, 0.4) * min(w, d) / 0.5))
        a.group(col, base)
        return a
    r = rng.uniform(0.02, 0.05)
    inset = rng.uniform(0.02, 0.12)
    style = int(rng.integers(3))
    legs = []
    sx, sy = (w - inset) * (0.7 if round_top else 1), (d - inset) * (0.7 if round_top else 1)
    corners = [(sx, sy), (-sx, sy), (-sx, -sy), (sx, -sy)]
    for x, y in corners:
        legs.append(a.leaf(_leg(rng, [x, y, h - t], [x, y, 0.0], r, style)))
    legs_g = a.group(*legs)
    parts = [legs_g]
    if rng.random() < 0.4:  # apron / stretchers
        zz = h - t - rng.uniform(0.03, 0.3) if rng.random() < 0.5 else rng.uniform(0.08, 0.25)
        bars = []
        for i in range(4):
            (x0, y0), (x1, y1) = corners[i], corners[(i + 1) % 4]
            bars.append(a.leaf(cyl([x0, y0, zz], [x1, y1, zz], r * 0.6)))
        parts.append(a.group(*bars))
    if rng.random() < 0.25:  # lower shelf
        parts.append(a.leaf(box([0, 0, rng.uniform(0.1, 0.3) * h], [sx, sy, t * 0.7])))
    if len(parts) > 1:
        a.group(*parts)
    return a


def chair(rng) -> Assembly:
    a = Assembly("chair")
    w, d = rng.uniform(0.22, 0.4), rng.uniform(0.22, 0.4)
    hs, t = rng.uniform(0.35, 0.55), rng.uniform(0.02, 0.06)
    seat = a.leaf(box([0, 0, hs], [w, d, t], rnd=rng.uniform(0, 0.6)))
    hb = rng.uniform(0.3, 0.7)
    tb = rng.uniform(0.015, 0.05)
    tilt = rng.uniform(-0.05, 0.25)
    back_rot = rot_axis([1, 0, 0], -tilt)
    bottom = np.array([0, -d + tb, hs + t])
    axis = back_rot @ np.array([0, 0, 1.0])
    style = rng.integers(3)
    if style == 0:  # solid panel
        back = a.leaf(box_rot(bottom + axis * hb / 2, [w, tb, hb / 2], back_rot))
    else:  # posts + slats or a top rail
        posts = [a.leaf(cyl(bottom + [sx * (w - 0.02), 0, 0], bottom + [sx * (w - 0.02), 0, 0] + axis * hb,
                            rng.uniform(0.012, 0.03))) for sx in (-1, 1)]
        n = 1 if style == 1 else int(rng.integers(2, 5))
        slats = []
        for i in range(n):
            f = 1.0 - i * rng.uniform(0.15, 0.25) if style == 2 else 0.92
            hh = rng.uniform(0.03, 0.08) if style == 2 else hb * 0.1
            slats.append(a.leaf(box_rot(bottom + axis * hb * f, [w - 0.02, tb * 0.8, hh], back_rot)))
        back = a.group(a.group(*posts), a.group(*slats) if len(slats) > 1 else slats[0])
    legs = []
    if rng.random() < 0.2:  # swivel base
        col = a.leaf(cyl([0, 0, 0.08], [0, 0, hs - t], rng.uniform(0.02, 0.04)))
        arms_ = []
        n = int(rng.integers(4, 6))
        for i in range(n):
            ang = 2 * np.pi * i / n
            tip = [0.9 * w * np.cos(ang), 0.9 * w * np.sin(ang), 0.05]
            arms_.append(a.leaf(cyl([0, 0, 0.08], tip, 0.02), ell(np.array(tip) - [0, 0, 0.03], [0.03] * 3)))
        legs = a.group(col, a.group(*arms_))
    else:
        r = rng.uniform(0.012, 0.035)
        ls = int(rng.integers(3))
        spread = rng.uniform(0.0, 0.06)
        for sx in (-1, 1):
            for sy in (-1, 1):
                x, y = sx * (w - r - 0.01), sy * (d - r - 0.01)
                legs.append(a.leaf(_leg(rng, [x, y, hs - t], [x + sx * spread, y + sy * spread, 0], r, ls)))
        legs = a.group(*legs)
    parts = [seat, back, legs]
    if rng.random() < 0.35:  # arm rests
        ha = rng.uniform(0.15, 0.28)
        arms = []
        for sx in (-1, 1):
            x = sx * (w + 0.02)
            sup = a.leaf(cyl([x, d * 0.6, hs], [x, d * 0.6, hs + ha], 0.02))
            rest = a.leaf(box([x, 0, hs + ha], [0.03, d * 0.9, 0.02]))
            arms.append(a.group(sup, rest))
        parts.append(a.group(*arms))
    a.group(seat, back) if rng.random() < 0.3 else None
    return a


def sofa(rng) -> Assembly:
    a = Assembly("sofa")
    w, d, hb = rng.uniform(0.6, 1.2), rng.uniform(0.3, 0.45), rng.uniform(0.12, 0.25)
    base = a.leaf(box([0, 0, 0.05 + hb], [w, d, hb], rnd=0.3))
    n = int(rng.integers(1, 4))
    cw = w / n
    cush = [a.leaf(box([-w + cw * (2 * i + 1), 0.03, 0.05 + 2 * hb + 0.05], [cw * 0.97, d * 0.9, 0.05], rnd=0.8))
            for i in range(n)]
    backs = [a.leaf(box([-w + cw * (2 * i + 1), -d + 0.06, 0.05 + 2 * hb + 0.25], [cw * 0.97, 0.06, 0.2], rnd=0.8))
             for i in range(n)]
    arms = [a.leaf(box([sx * (w + 0.06), 0, 0.05 + hb + 0.12], [0.06, d, hb + 0.12], rnd=0.5)) for sx in (-1, 1)]
    feet = [a.leaf(cyl([sx * (w - 0.05), sy * (d - 0.05), 0], [sx * (w - 0.05), sy * (d - 0.05), 0.05], 0.025))
            for sx in (-1, 1) for sy in (-1, 1)]
    a.group(*cush)
    a.group(*backs)
    a.group(*arms)
    a.group(*feet)
    a.group(base, *feet)
    return a


def cabinet(rng) -> Assembly:
    a = Assembly("cabinet")
    w, d, h = rng.uniform(0.3, 0.8), rng.uniform(0.15, 0.35), rng.uniform(0.4, 1.2)
    t = rng.uniform(0.01, 0.03)
    sides = [a.leaf(box([sx * (w - t), 0, h / 2], [t, d, h / 2])) for sx in (-1, 1)]
    top = a.leaf(box([0, 0, h - t], [w, d, t]))
    bottom = a.leaf(box([0, 0, t + 0.03], [w - 2 * t, d, t]))
    frame = a.group(*sides, top, bottom)
    n = int(rng.integers(1, 5))
    if rng.random() < 0.5:  # open shelves
        shelves = [a.leaf(box([0, 0, h * (i + 1) / (n + 1)], [w - 2 * t, d * 0.95, t])) for i in range(n)]
        a.group(*shelves)
        if rng.random() < 0.5:
            a.leaf(box([0, -d + t, h / 2], [w - 2 * t, t, h / 2 - t]))
    else:  # drawers with handles
        drawers = []
        hh = (h - 0.1) / n
        for i in range(n):
            zc = 0.06 + hh * (i + 0.5)
            front = a.leaf(box([0, d + t, zc], [w - 2 * t, t, hh / 2 - 0.01]))
            handle = a.leaf(cyl([-0.06, d + 3 * t, zc], [0.06, d + 3 * t, zc], 0.01))
            drawers.append(a.group(front, handle))
        a.group(*drawers)
    if rng.random() < 0.5:
        feet = [a.leaf(cyl([sx * (w - 0.04), sy * (d - 0.04), -0.04], [sx * (w - 0.04), sy * (d - 0.04), 0.02], 0.02))
                for sx in (-1, 1) for sy in (-1, 1)]
        a.group(*feet)
    del frame
    return a


def bed(rng) -> Assembly:
    a = Assembly("bed")
    w, l = rng.uniform(0.45, 0.9), rng.uniform(0.9, 1.1)
    frame = a.leaf(box([0, 0, 0.2], [w, l, 0.08]))
    mattress = a.leaf(box([0, 0.02, 0.36], [w * 0.96, l * 0.96, 0.08], rnd=0.6))
    head = a.leaf(box([0, -l - 0.03, 0.45], [w, 0.03, 0.35]))
    pillows = [a.leaf(ell([sx * w * 0.45, -l * 0.8, 0.47], [w * 0.35, 0.1, 0.05])) for sx in (-1, 1)]
    feet = [a.leaf(cyl([sx * (w - 0.05), sy * (l - 0.05), 0], [sx * (w - 0.05), sy * (l - 0.05), 0.12], 0.03))
            for sx in (-1, 1) for sy in (-1, 1)]
    a.group(*pillows)
    a.group(*feet)
    a.group(frame, head, *feet)
    a.group(mattress, *pillows)
    return a


# ---------------------------------------------------------------------------------------
# Lamps, vessels, tools.

def lamp(rng) -> Assembly:
    a = Assembly("lamp")
    rb = rng.uniform(0.1, 0.25)
    hb = rng.uniform(0.02, 0.06)
    base = a.leaf(cone([0, 0, 0], [0, 0, hb], rb, rb * rng.uniform(0.6, 1.0)) if rng.random() < 0.5
                  else cyl([0, 0, 0], [0, 0, hb], rb))
    rs = rng.uniform(0.01, 0.03)
    if rng.random() < 0.5:  # straight floor/desk lamp
        hs = rng.uniform(0.4, 1.5)
        top = np.array([0, 0, hb + hs])
        stem = a.leaf(cyl([0, 0, hb], top, rs))
        stand = a.group(base, stem)
        shade_dir = np.array([0, 0, -1.0])
    else:  # articulated arm
        j1 = np.array([0, 0, hb + rng.uniform(0.25, 0.5)])
        j2 = j1 + np.array([rng.uniform(0.1, 0.4), 0, rng.uniform(0.0, 0.3)])
        s1 = a.leaf(cyl([0, 0, hb], j1, rs))
        joint = a.leaf(ell(j1, [rs * 2] * 3))
        s2 = a.leaf(cyl(j1, j2, rs))
        stand = a.group(base, a.group(s1, joint, s2))
        top = j2
        shade_dir = np.array([rng.uniform(0.2, 0.8), 0, -1.0])
        shade_dir /= np.linalg.norm(shade_dir)
    rsh = rng.uniform(0.1, 0.3)
    lsh = rng.uniform(0.1, 0.3)
    kind = rng.integers(3)
    if kind == 0:
        shade = a.leaf(cone(top + shade_dir * lsh, top - shade_dir * 0.02, rsh, rsh * rng.uniform(0.3, 0.8)))
    elif kind == 1:
        shade = a.leaf(ell(top + shade_dir * rsh * 0.3, [rsh, rsh, rsh * 0.7], rot_from_z(shade_dir)))
    else:
        shade = a.leaf(cyl(top + shade_dir * lsh, top, rsh))
    if rng.random() < 0.5:
        bulb = a.leaf(ell(top + shade_dir * (lsh * 0.7), [rsh * 0.3] * 3))
        a.group(shade, bulb)
    del stand
    return a


def mug(rng) -> Assembly:
    a = Assembly("mug")
    r, h = rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.8)
    body = a.leaf(cyl([0, 0, 0], [0, 0, h], r) if rng.random() < 0.6 else cone([0, 0, 0], [0, 0, h], r * 0.8, r))
    hr = rng.uniform(0.3, 0.45) * h
    handle = a.leaf(tor([r + hr * 0.4, 0, h * rng.uniform(0.4, 0.6)], hr, rng.uniform(0.02, 0.05), axis=(0, 1, 0)))
    if rng.random() < 0.3:  # saucer
        saucer = a.leaf(cyl([0, 0, -0.03], [0, 0, 0], r * 1.8))
        a.group(body, handle)
        del saucer
    return a


def vase(rng) -> Assembly:
    a = Assembly("vase")
    rb = rng.uniform(0.25, 0.5)
    hb = rng.uniform(0.3, 0.7)
    body = a.leaf(ell([0, 0, hb], [rb, rb, hb]))
    rn = rng.uniform(0.08, 0.5) * rb
    hn = rng.uniform(0.15, 0.5)
    neck = a.leaf(cyl([0, 0, 1.8 * hb], [0, 0, 1.8 * hb + hn], rn))
    lip = a.leaf(tor([0, 0, 1.8 * hb + hn], rn, rng.uniform(0.015, 0.04)))
    a.group(neck, lip)
    if rng.random() < 0.4:
        foot = a.leaf(cone([0, 0, -0.05], [0, 0, 0.05], rb * 0.6, rb * 0.4))
        a.group(body, foot)
    if rng.random() < 0.4:  # two handles
        hs = [a.leaf(tor([sx * (rn + 0.1), 0, 1.8 * hb + hn * 0.3], 0.12, 0.02, axis=(0, 1, 0))) for sx in (-1, 1)]
        a.group(*hs)
    return a


def bottle(rng) -> Assembly:
    a = Assembly("bottle")
    r, h = rng.uniform(0.15, 0.3), rng.uniform(0.4, 0.9)
    body = a.leaf(cyl([0, 0, 0], [0, 0, h], r))
    hs = rng.uniform(0.1, 0.25)
    rn = r * rng.uniform(0.25, 0.45)
    shoulder = a.leaf(cone([0, 0, h], [0, 0, h + hs], r, rn))
    neck = a.leaf(cyl([0, 0, h + hs], [0, 0, h + hs + rng.uniform(0.1, 0.3)], rn))
    zc = h + hs + 0.3
    cap = a.leaf(cyl([0, 0, zc - 0.05], [0, 0, zc + rng.uniform(0.03, 0.08)], rn * 1.2))
    a.group(shoulder, neck)
    a.group(body, shoulder)
    del cap
    return a


def teapot(rng) -> Assembly:
    a = Assembly("teapot")
    r = rng.uniform(0.35, 0.5)
    body = a.leaf(ell([0, 0, r * 0.8], [r, r, r * rng.uniform(0.6, 0.9)]))
    lid = a.leaf(ell([0, 0, r * 1.45], [r * 0.45, r * 0.45, r * 0.12]))
    knob = a.leaf(ell([0, 0, r * 1.6], [0.05, 0.05, 0.05]))
    spout = a.leaf(cone([r * 0.8, 0, r * 0.7], [r * 1.5, 0, r * 1.3], 0.08, 0.035))
    handle = a.leaf(tor([-r * 1.0, 0, r * 0.85], r * 0.35, 0.03, axis=(0, 1, 0)))
    a.group(lid, knob)
    del body, spout, handle
    return a


def tool(rng) -> Assembly:
    a = Assembly("tool")
    kind = rng.integers(4)
    lh = rng.uniform(0.6, 1.2)
    rh = rng.uniform(0.03, 0.06)
    if kind == 0:  # hammer / axe
        handle = a.leaf(cyl([0, 0, 0], [0, 0, lh], rh))
        if rng.random() < 0.5:
            head = a.leaf(box([0, 0, lh], [rng.uniform(0.12, 0.25), 0.05, 0.05]))
        else:
            head = a.leaf(box([0.05, 0, lh - 0.05], [0.15, 0.015, 0.12]), box([-0.06, 0, lh - 0.05], [0.04, 0.04, 0.05]))
        del head, handle
    elif kind == 1:  # screwdriver
        grip = a.leaf(caps([0, 0, 0], [0, 0, lh * 0.35], rh * 1.3))
        shaft = a.leaf(cyl([0, 0, lh * 0.35], [0, 0, lh], rh * 0.3))
        tip = a.leaf(cone([0, 0, lh], [0, 0, lh + 0.06], rh * 0.3, 0.003))
        a.group(shaft, tip)
        del grip
    elif kind == 2:  # wrench
        shaft = a.leaf(box([0, 0, lh / 2], [0.03, 0.01, lh / 2]))
        heads = [a.leaf(tor([0, 0, z], 0.07, 0.025, axis=(0, 1, 0))) for z in (0, lh)]
        a.group(*heads)
        del shaft
    else:  # shovel / spatula
        handle = a.leaf(cyl([0, 0, 0.2], [0, 0, lh], rh))
        grip = a.leaf(cyl([-0.08, 0, lh], [0.08, 0, lh], rh * 0.8))
        blade = a.leaf(box([0, 0, 0.05], [rng.uniform(0.08, 0.2), 0.01, 0.15], rnd=0.3))
        a.group(handle, grip)
        del blade
    return a


# ---------------------------------------------------------------------------------------
# Vehicles, aircraft, boats.

def vehicle(rng) -> Assembly:
    a = Assembly("vehicle")
    L, W = rng.uniform(0.8, 1.2), rng.uniform(0.35, 0.5)
    rw = rng.uniform(0.12, 0.2)
    hb = rng.uniform(0.12, 0.2)
    zb = rw + hb * 0.5
    truck = rng.random() < 0.3
    body = a.leaf(box([0, 0, zb], [L, W, hb], rnd=rng.uniform(0, 0.7)))
    if truck:
        cab = a.leaf(box([L * 0.7, 0, zb + hb + 0.2], [L * 0.28, W * 0.95, 0.2], rnd=0.3))
        cargo = a.leaf(box([-L * 0.25, 0, zb + hb + 0.25], [L * 0.7, W, 0.25]))
        upper = a.group(cab, cargo)
        axles = [L * 0.7, -L * 0.2, -L * 0.7]
    else:
        cab = a.leaf(box([rng.uniform(-0.2, 0.1) * L, 0, zb + hb + 0.1], [L * rng.uniform(0.4, 0.6), W * 0.85, 0.12],
                         rnd=rng.uniform(0.2, 0.9)))
        upper = cab
        axles = [L * 0.65, -L * 0.65]
    wheels = []
    tire = rng.random() < 0.5
    for x in axles:
        for sy in (-1, 1):
            c = np.array([x, sy * (W + 0.02), rw])
            if tire:
                t = a.leaf(tor(c, rw * 0.7, rw * 0.3, axis=(0, 1, 0)))
                hub = a.leaf(cyl(c - [0, 0.03, 0], c + [0, 0.03, 0], rw * 0.45))
                wheels.append(a.group(t, hub))
            else:
                wheels.append(a.leaf(cyl(c - [0, 0.06, 0], c + [0, 0.06, 0], rw)))
    a.group(*wheels)
    if rng.random() < 0.4:
        lights = [a.leaf(ell([L, sy * W * 0.6, zb + 0.02], [0.02, 0.06, 0.03])) for sy in (-1, 1)]
        a.group(body, *lights)
    a.group(body, upper) if truck else None
    return a


def aircraft(rng) -> Assembly:
    a = Assembly("aircraft")
    L = rng.uniform(1.0, 1.4)
    rf = rng.uniform(0.07, 0.14)
    fus = a.leaf(caps([-L, 0, 0], [L, 0, 0], rf))
    span = rng.uniform(0.8, 1.5)
    sweep = rng.uniform(0.0, 0.5)
    xw = rng.uniform(-0.2, 0.2)
    wings, engines = [], []
    chord = rng.uniform(0.15, 0.3)
    for sy in (-1, 1):
        tip = np.array([xw - sweep * span, sy * span, rng.uniform(0, 0.1)])
        d = tip - np.array([xw, 0, 0])
        n = np.linalg.norm(d)
        yaw = np.arctan2(d[0], abs(d[1])) * -sy
        wing = box([xw + d[0] / 2, d[1] / 2, d[2] / 2], [chord, n / 2, 0.02], yaw=yaw)
        w = a.leaf(wing)
        if rng.random() < 0.6:
            ne = int(rng.integers(1, 3))
            eng = []
            for k in range(ne):
                f = (k + 1) / (ne + 1)
                c = np.array([xw + d[0] * f + chord * 0.4, d[1] * f, -0.08])
                eng.append(a.leaf(cyl(c - [0.15, 0, 0], c + [0.15, 0, 0], 0.05)))
            engines += eng
            wings.append(a.group(w, *eng))
        else:
            wings.append(w)
    a.group(*wings)
    tail = []
    hs = rng.uniform(0.2, 0.4)
    for sy in (-1, 1):
        tail.append(a.leaf(box([-L + 0.05, sy * hs / 2, 0.02], [0.08, hs / 2, 0.015])))
    fin = a.leaf(box_rot([-L + 0.05, 0, rf + 0.12], [0.1, 0.015, 0.14], rot_axis([0, 1, 0], -0.3)))
    a.group(a.group(*tail), fin)
    if engines and rng.random() < 0.3:
        a.group(*engines)
    del fus
    return a


def boat(rng) -> Assembly:
    a = Assembly("boat")
    L, W = rng.uniform(0.8, 1.3), rng.uniform(0.2, 0.4)
    hull = a.leaf(ell([0, 0, 0.05], [L, W, 0.18]))
    deck = a.leaf(box([0, 0, 0.1], [L * 0.8, W * 0.8, 0.03]))
    cabin = a.leaf(box([-L * 0.2, 0, 0.25], [L * 0.25, W * 0.6, 0.12]))
    parts = [a.group(hull, deck), cabin]
    if rng.random() < 0.6:
        mast = a.leaf(cyl([L * 0.2, 0, 0.1], [L * 0.2, 0, rng.uniform(0.8, 1.4)], 0.02))
        if rng.random() < 0.7:
            sail = a.leaf(box([L * 0.0, 0, 0.6], [L * 0.18, 0.01, 0.35]))
            parts.append(a.group(mast, sail))
    return a


# ---------------------------------------------------------------------------------------
# Buildings, robots.

def building(rng) -> Assembly:
    a = Assembly("building")
    w, d, h = rng.uniform(0.4, 0.8), rng.uniform(0.4, 0.8), rng.uniform(0.4, 1.2)
    tower = rng.random() < 0.3
    if tower:
        r = min(w, d) * 0.6
        base = a.leaf(cyl([0, 0, 0], [0, 0, h], r))
        roof = a.leaf(cone([0, 0, h], [0, 0, h + rng.uniform(0.2, 0.6)], r * 1.15, 0.005))
        if rng.random() < 0.5:
            a.leaf(tor([0, 0, h * 0.6], r, 0.03))
        return a
    floors = int(rng.integers(1, 4))
    fh = h / floors
    levels = []
    for i in range(floors):
        s = 1.0 - 0.12 * i * rng.random()
        levels.append(a.leaf(box([0, 0, fh * (i + 0.5)], [w * s, d * s, fh / 2])))
    body = a.group(*levels)
    if rng.random() < 0.5:  # gable roof: two slanted slabs
        ang = rng.uniform(0.3, 0.6)
        slabs = []
        for sy in (-1, 1):
            rot = rot_axis([1, 0, 0], sy * ang)
            c = np.array([0, sy * d * 0.5, h + np.tan(ang) * d * 0.5])
            slabs.append(a.leaf(box_rot(c, [w * 1.05, d / np.cos(ang) * 0.55, 0.02], rot)))
        roof = a.group(*slabs)
    else:
        roof = a.leaf(box([0, 0, h + 0.03], [w * 1.05, d * 1.05, 0.03]))
    if rng.random() < 0.6:
        ch = a.leaf(box([w * 0.5, d * 0.3, h + 0.2], [0.05, 0.05, 0.2]))
        a.group(roof, ch)
    door = a.leaf(box([0, d + 0.01, 0.15], [0.08, 0.015, 0.15]))
    wins = []
    for i in range(int(rng.integers(0, 5))):
        x = (i - 1.5) * w * 0.45
        wins.append(a.leaf(box([x, d + 0.01, fh * 0.65], [0.06, 0.012, 0.07])))
    if wins:
        a.group(door, *wins)
    del body
    return a


def robot(rng) -> Assembly:
    a = Assembly("robot")
    tw, td, th = rng.uniform(0.2, 0.35), rng.uniform(0.12, 0.2), rng.uniform(0.25, 0.4)
    hip = rng.uniform(0.5, 0.8)
    torso = a.leaf(box([0, 0, hip + th], [tw, td, th], rnd=rng.uniform(0, 0.5)))
    hs = rng.uniform(0.1, 0.18)
    head = a.leaf(box([0, 0, hip + 2 * th + hs + 0.05], [hs, hs, hs], rnd=rng.uniform(0, 0.8))
                  if rng.random() < 0.6 else ell([0, 0, hip + 2 * th + hs + 0.05], [hs] * 3))
    neck = a.leaf(cyl([0, 0, hip + 2 * th], [0, 0, hip + 2 * th + 0.07], 0.04))
    heads = [head, neck]
    if rng.random() < 0.4:
        heads.append(a.leaf(cyl([0, 0, hip + 2 * th + 2 * hs], [0, 0, hip + 2 * th + 2 * hs + 0.15], 0.01)))
    a.group(*heads)
    ra = rng.uniform(0.03, 0.06)
    arms = []
    for sx in (-1, 1):
        sh = np.array([sx * (tw + ra), 0, hip + 2 * th - 0.05])
        el = sh + [sx * rng.uniform(0, 0.15), rng.uniform(-0.1, 0.1), -rng.uniform(0.2, 0.3)]
        wr = el + [sx * rng.uniform(0, 0.1), rng.uniform(0, 0.2), -rng.uniform(0.1, 0.3)]
        up = a.leaf(cyl(sh, el, ra))
        lo = a.leaf(cyl(el, wr, ra * 0.9))
        hand = a.leaf(box(wr - [0, 0, 0.04], [ra * 1.3, ra * 1.3, 0.05]))
        arms.append(a.group(up, lo, hand))
    a.group(*arms)
    rl = rng.uniform(0.04, 0.08)
    legs = []
    for sx in (-1, 1):
        x = sx * tw * 0.5
        up = a.leaf(cyl([x, 0, hip + 0.02], [x, 0, hip / 2], rl))
        lo = a.leaf(cyl([x, 0, hip / 2], [x, 0, 0.06], rl * 0.9))
        foot = a.leaf(box([x, 0.05, 0.03], [rl * 1.5, rl * 2.5, 0.03]))
        legs.append(a.group(up, lo, foot))
    a.group(*legs)
    del torso
    return a


# ---------------------------------------------------------------------------------------
# Organic forms: smooth unions, labelled by nearest primitive.

def _limb(a, rng, start, direction, length, r, segments, taper=0.8):
    pts = [np.asarray(start, float)]
    d = np.asarray(direction, float)
    d /= np.linalg.norm(d)
    ids = []
    for i in range(segments):
        bend = rng.normal(scale=0.3, size=3)
        dd = d + bend
        dd /= np.linalg.norm(dd)
        nxt = pts[-1] + dd * length / segments
        ids.append(a.leaf(caps(pts[-1], nxt, r * taper**i)))
        pts.append(nxt)
        d = dd
    return a.group(*ids) if len(ids) > 1 else ids[0], pts[-1]


def quadruped(rng) -> Assembly:
    a = Assembly("creature", organic=True)
    L, rb = rng.uniform(0.4, 0.7), rng.uniform(0.15, 0.25)
    hl = rng.uniform(0.3, 0.6)
    body = a.leaf(ell([0, 0, hl + rb], [L, rb * rng.uniform(0.8, 1.1), rb]))
    neck_end = np.array([L + rng.uniform(0.1, 0.3), 0, hl + rb + rng.uniform(0.1, 0.4)])
    neck = a.leaf(caps([L * 0.8, 0, hl + rb], neck_end, rb * 0.45))
    hr = rb * rng.uniform(0.5, 0.9)
    head = a.leaf(ell(neck_end + [hr * 0.6, 0, 0], [hr * 1.3, hr * 0.8, hr * 0.8]))
    ears = []
    if rng.random() < 0.6:
        for sy in (-1, 1):
            base = neck_end + [hr * 0.3, sy * hr * 0.5, hr * 0.6]
            ears.append(a.leaf(cone(base, base + [-0.02, sy * 0.03, rng.uniform(0.08, 0.2)], hr * 0.3, 0.01)))
    a.group(head, *ears)
    a.group(neck, head, *ears)
    legs = []
    rl = rb * rng.uniform(0.25, 0.4)
    for x in (L * 0.7, -L * 0.7):
        for sy in (-1, 1):
            g, _ = _limb(a, rng, [x, sy * rb * 0.5, hl + rb * 0.5], [0, sy * 0.1, -1], hl + rb * 0.5, rl, 2)
            legs.append(g)
    a.group(*legs)
    if rng.random() < 0.8:
        _limb(a, rng, [-L * 0.9, 0, hl + rb * 1.2], [-1, 0, rng.uniform(-0.5, 1)], rng.uniform(0.3, 0.8),
              rb * rng.uniform(0.15, 0.3), int(rng.integers(1, 4)), 0.7)
    del body
    return a


def humanoid(rng) -> Assembly:
    a = Assembly("character", organic=True)
    hip = rng.uniform(0.6, 0.9)
    tw, th = rng.uniform(0.15, 0.28), rng.uniform(0.25, 0.4)
    torso = a.leaf(ell([0, 0, hip + th], [tw, tw * 0.6, th]))
    pelvis = a.leaf(ell([0, 0, hip], [tw * 0.9, tw * 0.55, 0.1]))
    body = a.group(torso, pelvis)
    hr = rng.uniform(0.1, 0.2)
    head = a.leaf(ell([0, 0, hip + 2 * th + hr * 1.1], [hr, hr * 0.9, hr * 1.15]))
    neck = a.leaf(caps([0, 0, hip + 2 * th - 0.05], [0, 0, hip + 2 * th + 0.1], hr * 0.4))
    extra = []
    if rng.random() < 0.4:  # antennae / horns
        for sx in (-1, 1):
            b = np.array([sx * hr * 0.5, 0, hip + 2 * th + hr * 1.9])
            extra.append(a.leaf(caps(b, b + [sx * 0.1, 0, rng.uniform(0.1, 0.25)], 0.02)))
    a.group(head, neck, *extra)
    arms = []
    ra = rng.uniform(0.035, 0.07)
    la = rng.uniform(0.5, 0.8)
    for sx in (-1, 1):
        sh = np.array([sx * tw * 0.9, 0, hip + 1.7 * th])
        g, end = _limb(a, rng, sh, [sx * rng.uniform(0.2, 1.0), 0, -1], la, ra, 2, 0.85)
        hand = a.leaf(ell(end, [ra * 1.2] * 3))
        arms.append(a.group(g, hand))
    a.group(*arms)
    legs = []
    rl = rng.uniform(0.05, 0.09)
    for sx in (-1, 1):
        g, end = _limb(a, rng, [sx * tw * 0.5, 0, hip], [sx * 0.1, 0, -1], hip, rl, 2, 0.85)
        foot = a.leaf(ell(end + [0, 0.06, 0], [rl, rl * 2, rl * 0.6]))
        legs.append(a.group(g, foot))
    a.group(*legs)
    if rng.random() < 0.3:
        _limb(a, rng, [0, -tw * 0.5, hip], [0, -1, -0.3], rng.uniform(0.3, 0.6), 0.05, 2, 0.7)
    del body
    return a


def blob_creature(rng) -> Assembly:
    """Random organic assembly: a body with blended appendages of random count and direction."""
    a = Assembly("organic", organic=True)
    rb = rng.uniform(0.2, 0.35, size=3)
    body = a.leaf(ell([0, 0, 0], rb))
    n = int(rng.integers(2, 7))
    for _ in range(n):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        start = d * rb * 0.8
        if rng.random() < 0.3:
            r = rng.uniform(0.08, 0.18)
            a.leaf(ell(start + d * r * 0.8, [r, r * rng.uniform(0.7, 1.2), r * rng.uniform(0.7, 1.2)]))
        else:
            _limb(a, rng, start, d, rng.uniform(0.3, 0.7), rng.uniform(0.04, 0.09), int(rng.integers(1, 4)))
    del body
    return a


# ---------------------------------------------------------------------------------------
# Generic random assemblies (no category semantics).

def random_assembly(rng) -> Assembly:
    a = Assembly("assembly")
    kinds = ("box", "ellipsoid", "cylinder", "cone", "capsule", "torus")

    def make(center, scale):
        k = kinds[int(rng.integers(len(kinds)))]
        s = scale * rng.uniform(0.3, 1.0, size=3)
        rot = rot_axis(rng.normal(size=3), rng.uniform(0, np.pi)) if rng.random() < 0.5 else np.eye(3)
        if k == "cone":
            s = np.array([s[0], s[0] * rng.uniform(0.1, 0.9), s[2]])
        if k == "capsule":
            s = np.array([s[0] * 0.5, s[0] * 0.5, s[2]])
        if k == "torus":
            s = np.array([s[0], s[0] * rng.uniform(0.1, 0.35), 0])
        return Prim(k, s, np.asarray(center, float), rot)

    root = make([0, 0, 0], 0.4)
    nodes = [(a.leaf(root), root, 0.4)]
    groups = []
    for _ in range(int(rng.integers(2, 6))):
        parent_ids, parent, ps = nodes[int(rng.integers(len(nodes)))]
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        lo, hi = parent.world_bounds()
        c = parent.pos + d * np.linalg.norm(hi - lo) * 0.45
        ps2 = ps * rng.uniform(0.4, 0.8)
        child = make(c, ps2)
        ids = a.leaf(child)
        # Symmetric copy (mirror across x) as a sibling: the pair is a group.
        if rng.random() < 0.4:
            m = np.diag([-1.0, 1.0, 1.0])
            twin = Prim(child.kind, child.size.copy(), m @ child.pos, m @ child.rot @ m)
            if np.linalg.det(twin.rot) < 0:
                twin.rot[:, 0] *= -1
            ids = a.group(ids, a.leaf(twin))
        groups.append(ids)
        nodes.append((ids, child, ps2))
    return a


CATEGORIES = {
    "table": table,
    "chair": chair,
    "sofa": sofa,
    "cabinet": cabinet,
    "bed": bed,
    "lamp": lamp,
    "mug": mug,
    "vase": vase,
    "bottle": bottle,
    "teapot": teapot,
    "tool": tool,
    "vehicle": vehicle,
    "aircraft": aircraft,
    "boat": boat,
    "building": building,
    "robot": robot,
    "creature": quadruped,
    "character": humanoid,
    "organic": blob_creature,
    "assembly": random_assembly,
}

# Sampling weights: chairs/tables and characters are over-represented (what artists segment most).
CATEGORY_WEIGHTS = {
    "table": 1.2, "chair": 2.0, "sofa": 0.6, "cabinet": 0.6, "bed": 0.4, "lamp": 1.0, "mug": 0.6,
    "vase": 0.5, "bottle": 0.4, "teapot": 0.4, "tool": 0.6, "vehicle": 1.0, "aircraft": 1.0, "boat": 0.5,
    "building": 0.7, "robot": 1.0, "creature": 1.3, "character": 1.5, "organic": 1.0, "assembly": 1.5,
}
