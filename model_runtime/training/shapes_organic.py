"""Procedural shapes of the kinds the bundled model segments worst (issue 20): busts, human
figures with anatomy, four-legged animals in varied poses, fish, birds, bearings and machine
parts. Same `Assembly` format as `shapes.py` (primitives, a leaf per part, groups as coarser
parts); builders work z-up, the front of a figure along +y, animals along +x.

Organic kinds are smooth unions (always welded); the mechanical ones are hard unions with
holes (`Assembly.drill`). All set `varied_tessellation`, so `procedural.make_shape` remeshes
them like real assets (decimated, irregular, coarse or dense).

They are not in the default training mix (`shapes.CATEGORY_WEIGHTS`), so the shapes of the
training seeds of the bundled model stay the same; `WEAK_WEIGHTS` is a mix a training run
can add (`procedural.make_shape(seed, category)` builds any of them by name).
"""
from __future__ import annotations

import numpy as np

from .primitives import Prim, rot_axis, rot_from_z
from .shapes import Assembly, _limb, box, box_rot, caps, cone, cyl, ell, tor

_X, _Y, _Z = np.eye(3)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _flat(c, length_dir, width_dir, radii) -> Prim:
    """An ellipsoid with radii (along length_dir, along width_dir, along their normal)."""
    a = _unit(length_dir)
    b = np.asarray(width_dir, float)
    b = _unit(b - a * (a @ b))
    n = np.cross(a, b)
    return ell(c, radii, np.stack([a, b, n], 1))


def _half_space_below(z: float) -> Prim:
    """A solid filling everything below the plane z (a cutter)."""
    return box([0, 0, z - 5.0], [5.0, 5.0, 5.0])


# ---------------------------------------------------------------------------------------
# Busts: head, neck and shoulders ending in a cut plane.

def bust(rng) -> Assembly:
    a = Assembly("bust", organic=True, blend_range=(0.03, 0.07), grid_range=(56, 96), varied_tessellation=True)
    sw = rng.uniform(0.32, 0.5)  # shoulder half width
    depth = rng.uniform(0.15, 0.24)
    zc = rng.uniform(-0.25, -0.05)  # the cut plane
    chest = ell([0, 0, 0], [sw, depth, rng.uniform(0.25, 0.4)])
    prims = [chest]
    if rng.random() < 0.7:  # deltoids
        prims += [ell([sx * sw * 0.8, 0, 0.08], [0.12, 0.11, 0.1]) for sx in (-1, 1)]
    torso = a.leaf(*prims)
    top = rng.uniform(0.22, 0.32)
    neck_len = rng.uniform(0.12, 0.22)
    rn = rng.uniform(0.06, 0.1)
    lean = rot_axis(_X, rng.normal(scale=0.12))
    n_top = np.array([0, 0.02, top]) + lean @ np.array([0, 0, neck_len])
    neck = a.leaf(caps([0, 0.0, top - 0.08], n_top, rn))
    hr = rng.uniform(0.12, 0.17)
    turn = rot_axis(_Z, rng.normal(scale=0.35)) @ rot_axis(_X, rng.normal(scale=0.15))
    hc = n_top + turn @ np.array([0, 0.02, hr * 0.9])
    head = a.leaf(ell(hc, [hr * 0.82, hr * 0.95, hr * 1.12], turn),
                  ell(hc + turn @ np.array([0, hr * 0.45, -hr * 0.6]), [hr * 0.5, hr * 0.45, hr * 0.4], turn))
    face = [head]
    nose = a.leaf(ell(hc + turn @ np.array([0, hr * 0.95, -hr * 0.05]), [hr * 0.14, hr * 0.25, hr * 0.3], turn))
    face.append(nose)
    if rng.random() < 0.8:
        for sx in (-1, 1):
            face.append(a.leaf(ell(hc + turn @ np.array([sx * hr * 0.82, -hr * 0.05, 0]),
                                   [hr * 0.12, hr * 0.25, hr * 0.35], turn)))
    if rng.random() < 0.45:  # hair or a cap: a shell over the top and back of the head
        face.append(a.leaf(ell(hc + turn @ np.array([0, -hr * 0.15, hr * 0.3]), [hr * 0.9, hr * 0.95, hr * 0.9], turn)))
    head_g = a.group(*face)
    a.group(head_g, neck)
    all_leaves = list(range(a.n_leaves))
    a.drill(all_leaves, _half_space_below(zc))
    if rng.random() < 0.35:  # a pedestal below the cut
        ph = rng.uniform(0.08, 0.2)
        pr = rng.uniform(0.12, 0.2)
        a.leaf(cyl([0, 0, zc - ph], [0, 0, zc + 0.005], pr) if rng.random() < 0.6
               else box([0, 0, zc - ph / 2], [pr, pr, ph / 2]))
        a.group(torso, neck)
    return a


# ---------------------------------------------------------------------------------------
# Human figures: torso, neck, head, upper and lower limbs, hands with fingers, feet.

def _hand(a, rng, wrist, direction, side, size):
    """Palm + four fingers + thumb as one leaf (the part people label "hand")."""
    d = _unit(direction)
    side_v = _unit(np.cross(d, _Y if abs(d @ _Y) < 0.9 else _X)) * side
    palm_c = wrist + d * size * 0.9
    prims = [_flat(palm_c, d, side_v, [size, size * 0.8, size * 0.35])]
    curl = rng.uniform(0.0, 0.9)
    fr = size * rng.uniform(0.18, 0.24)
    normal = np.cross(d, side_v)
    for i in range(4):
        base = palm_c + d * size * 0.85 + side_v * size * (0.55 - 0.37 * i)
        f1 = base + d * size * 0.55
        f2 = f1 + _unit(d * np.cos(curl) + normal * np.sin(curl)) * size * 0.45
        prims += [caps(base, f1, fr), caps(f1, f2, fr * 0.9)]
    tb = palm_c + side_v * size * 0.7 - d * size * 0.2
    prims.append(caps(tb, tb + _unit(side_v + d) * size * 0.7, fr * 1.05))
    return a.leaf(*prims)


def _chain(a, rng, start, dirs, lengths, radii):
    """Consecutive capsule segments, one leaf each; returns (leaf lists, end point)."""
    p = np.asarray(start, float)
    leaves = []
    for d, length, r in zip(dirs, lengths, radii):
        q = p + _unit(d) * length
        leaves.append(a.leaf(caps(p, q, r)))
        p = q
    return leaves, p


def human(rng) -> Assembly:
    a = Assembly("human", organic=True, blend_range=(0.012, 0.03), grid_range=(80, 120), varied_tessellation=True)
    s = rng.uniform(0.9, 1.1)  # overall scale
    hip = 0.95 * s
    tw = rng.uniform(0.15, 0.2) * s
    th = rng.uniform(0.26, 0.32) * s
    fat = rng.uniform(0.85, 1.25)
    torso = a.leaf(ell([0, 0, hip + th * 1.15], [tw, tw * 0.6 * fat, th * 0.65]),  # chest
                   ell([0, 0, hip + th * 0.45], [tw * 0.85 * fat, tw * 0.55 * fat, th * 0.5]),  # abdomen
                   ell([0, 0, hip], [tw * 0.95, tw * 0.6, 0.11 * s]))  # pelvis
    top = hip + th * 1.7
    neck = a.leaf(caps([0, 0, top - 0.04 * s], [0, 0.01, top + 0.08 * s], 0.05 * s))
    hr = rng.uniform(0.1, 0.125) * s
    turn = rot_axis(_Z, rng.normal(scale=0.3)) @ rot_axis(_X, rng.normal(scale=0.12))
    hc = np.array([0, 0.015, top + 0.08 * s + hr])
    head = a.leaf(ell(hc, [hr * 0.8, hr * 0.95, hr * 1.1], turn),
                  ell(hc + turn @ np.array([0, hr * 0.75, -hr * 0.15]), [hr * 0.12, hr * 0.2, hr * 0.25], turn))
    a.group(head, neck)
    ra = 0.045 * s
    arms = []
    pose = rng.choice(["a", "t", "down", "bent", "random"])
    for sx in (-1, 1):
        sh = np.array([sx * tw * 1.05, 0, top - 0.05 * s])
        abduct = {"a": 0.6, "t": 1.5, "down": 0.15, "bent": 0.3}.get(pose, rng.uniform(0.1, 2.6))
        abduct += rng.normal(scale=0.1)
        swing = rng.normal(scale=0.4)
        d1 = rot_axis(_Y, -sx * abduct) @ rot_axis(_X, swing) @ -_Z
        elbow = rng.uniform(0.0, 0.3) if pose != "bent" else rng.uniform(0.8, 1.8)
        d2 = rot_axis(_X, -elbow) @ d1 if pose != "random" else rot_axis(rng.normal(size=3), rng.uniform(0, 1.5)) @ d1
        segs, wrist = _chain(a, rng, sh, [d1, d2], [0.3 * s, 0.27 * s], [ra, ra * 0.8])
        hand = _hand(a, rng, wrist, d2, sx, 0.05 * s)
        arms.append(a.group(*segs, hand))
    a.group(*arms)
    rl = 0.07 * s
    legs = []
    leg_pose = rng.choice(["stand", "walk", "sit", "random"])
    for sx in (-1, 1):
        hp = np.array([sx * tw * 0.5, 0, hip - 0.03 * s])
        flex = {"stand": 0.0, "walk": sx * rng.uniform(0.2, 0.5), "sit": rng.uniform(1.3, 1.6)}.get(
            leg_pose, rng.uniform(-0.4, 1.6))
        d1 = rot_axis(_X, flex) @ rot_axis(_Y, sx * rng.uniform(0.0, 0.15)) @ -_Z
        knee = {"sit": rng.uniform(1.3, 1.7), "stand": rng.uniform(0, 0.1)}.get(leg_pose, rng.uniform(0, 1.2))
        d2 = rot_axis(_X, -knee) @ d1
        segs, ankle = _chain(a, rng, hp, [d1, d2], [0.43 * s, 0.42 * s], [rl, rl * 0.75])
        fwd = _unit(np.array([0, 1.0, 0]) - d2 * (d2 @ _Y))
        foot = a.leaf(caps(ankle + d2 * 0.02, ankle + d2 * 0.04 + fwd * 0.17 * s, rl * 0.55),
                      ell(ankle + d2 * 0.03 + fwd * 0.02, [rl * 0.7, rl * 0.9, rl * 0.6]))
        legs.append(a.group(*segs, foot))
    a.group(*legs)
    del torso
    return a


# ---------------------------------------------------------------------------------------
# Four-legged animals in varied poses, with tails and ears.

def animal(rng) -> Assembly:
    """A quadruped like `shapes.quadruped` with anatomy (chest and hips, snout, paws, three
    leg segments) and a pose: standing, walking, sitting, lying or stretched."""
    a = Assembly("animal", organic=True, blend_range=(0.015, 0.04), grid_range=(64, 100), varied_tessellation=True)
    L = rng.uniform(0.35, 0.6)
    rb = rng.uniform(0.12, 0.2)
    leg_len = rng.uniform(0.7, 1.5) * rb * 2.4
    pose = rng.choice(["stand", "walk", "sit", "lie", "stretch"])
    pitch = {"sit": rng.uniform(0.5, 0.8), "stretch": rng.uniform(-0.3, -0.15)}.get(pose, rng.normal(scale=0.05))
    base_z = {"lie": rb * 0.9, "sit": rb * 0.5}.get(pose, leg_len + rb * 0.6)
    R = rot_axis(_Y, -pitch)
    centre = np.array([0, 0, base_z])

    def at(p):  # body frame -> world (the body pitches about its hip end when sitting)
        p = np.asarray(p, float)
        if pose == "sit":
            return R @ (p + [L * 0.8, 0, 0]) + centre - [L * 0.8, 0, 0] + [0, 0, rb * 0.2]
        return R @ p + centre

    torso = a.leaf(ell(at([L * 0.4, 0, 0]), [L * 0.65, rb, rb * 1.05], R),
                   ell(at([-L * 0.45, 0, 0]), [L * 0.6, rb * 0.9, rb * 0.95], R))
    neck_end = at([L + rb * 0.6, 0, rb * rng.uniform(0.9, 2.0)])
    neck = a.leaf(caps(at([L * 0.75, 0, rb * 0.3]), neck_end, rb * 0.5))
    hr = rb * rng.uniform(0.55, 0.8)
    look = rot_axis(_Z, rng.normal(scale=0.4)) @ rot_axis(_Y, rng.uniform(-0.3, 0.5))
    hc = neck_end + look @ np.array([hr * 0.5, 0, hr * 0.2])
    snout_len = rng.uniform(0.4, 1.2)
    head = a.leaf(ell(hc, [hr, hr * 0.8, hr * 0.8], look),
                  ell(hc + look @ np.array([hr * (0.7 + snout_len * 0.5), 0, -hr * 0.2]),
                      [hr * snout_len * 0.7, hr * 0.45, hr * 0.4], look))
    ears = []
    ear_kind = rng.integers(3)
    for sy in (-1, 1):
        base = hc + look @ np.array([-hr * 0.2, sy * hr * 0.5, hr * 0.6])
        if ear_kind == 0:  # pointed
            ears.append(a.leaf(cone(base, base + look @ np.array([-0.02, sy * 0.03, hr * 1.1]), hr * 0.32, 0.01)))
        elif ear_kind == 1:  # round
            ears.append(a.leaf(_flat(base + look @ np.array([0, sy * hr * 0.1, hr * 0.25]), look @ _Z, look @ _X,
                                     [hr * 0.45, hr * 0.4, hr * 0.1])))
        else:  # floppy, hanging down the side
            ears.append(a.leaf(_flat(base + look @ np.array([0, sy * hr * 0.35, -hr * 0.4]), look @ -_Z, look @ _X,
                                     [hr * 0.7, hr * 0.35, hr * 0.1])))
    a.group(a.group(head, *ears), neck)
    legs = []
    rl = rb * rng.uniform(0.28, 0.4)
    for front in (True, False):
        for sy in (-1, 1):
            hip = at([L * 0.75 if front else -L * 0.8, sy * rb * 0.55, -rb * 0.3])
            if pose == "lie":
                d1 = _unit([1.0 if front else -0.3, sy * 0.4, -0.4])
                d2 = _unit([1.0, sy * 0.1, -0.05]) if front else _unit([0.8, sy * 0.3, -0.1])
            elif pose == "sit" and not front:
                d1 = _unit([0.9, sy * 0.15, -0.25])
                d2 = _unit([-0.6, 0, -1.0])
            elif pose == "sit":
                d1 = _unit([0.1, sy * 0.05, -1.0])
                d2 = _unit([0.0, 0, -1.0])
            else:
                swing = rng.uniform(-0.6, 0.6) if pose in ("walk", "stretch") else rng.normal(scale=0.08)
                if pose == "stretch":
                    swing = 0.7 if front else -0.7
                d1 = rot_axis(_Y, swing) @ _unit([0, sy * 0.08, -1.0])
                bend = rng.uniform(0.0, 0.5) * (1 if front else -1)
                d2 = rot_axis(_Y, bend) @ d1
            segs, end = _chain(a, rng, hip, [d1, d2], [leg_len * 0.5, leg_len * 0.5], [rl, rl * 0.75])
            paw = a.leaf(ell(end + [rl * 0.4, 0, 0], [rl * 1.2, rl * 0.9, rl * 0.6]))
            legs.append(a.group(*segs, paw))
    a.group(*legs[:2])
    a.group(*legs[2:])
    a.group(*legs)
    if rng.random() < 0.9:
        tail_dir = [-1.0, 0, rng.uniform(-0.8, 1.2)]
        if pose == "sit":
            tail_dir = [-0.2, rng.choice([-1, 1]) * 0.8, -0.5]
        _limb(a, rng, at([-L * 1.0, 0, rb * 0.3]), tail_dir, rng.uniform(0.25, 0.7), rb * rng.uniform(0.15, 0.3),
              int(rng.integers(1, 4)), 0.75)
    del torso
    return a


# ---------------------------------------------------------------------------------------
# Fish and birds.

def fish(rng) -> Assembly:
    a = Assembly("fish", organic=True, blend_range=(0.006, 0.015), grid_range=(80, 112), varied_tessellation=True)
    L = rng.uniform(0.5, 0.8)
    h = L * rng.uniform(0.18, 0.45)
    w = h * rng.uniform(0.35, 0.7)
    t = max(0.022, L * 0.025)  # fin half thickness
    body = a.leaf(ell([0, 0, 0], [L, w, h]), caps([-L * 0.6, 0, 0], [-L * 1.0, 0, 0], h * 0.18))
    spread = rng.uniform(0.4, 0.9)
    tl = L * rng.uniform(0.3, 0.5)
    tail_root = np.array([-L * 1.0, 0, 0])
    lobes = []
    for sz in (-1, 1):
        d = _unit([-1.0, 0, sz * spread])
        lobes.append(_flat(tail_root + d * tl * 0.9, d, _Z, [tl, tl * 0.35, t]))
    tail = a.leaf(*[_flat(p.pos, p.rot[:, 0], _Z, p.size) for p in lobes])
    fins = []
    n_dorsal = int(rng.integers(1, 3))
    for i in range(n_dorsal):
        x = L * (0.25 - 0.55 * i) if n_dorsal == 2 else L * rng.uniform(-0.3, 0.2)
        fl = L * rng.uniform(0.2, 0.4) / n_dorsal ** 0.5
        fh = h * rng.uniform(0.4, 0.9)
        c = np.array([x, 0, h * 0.75 + fh * 0.35])
        fins.append(a.leaf(_flat(c, _unit([1.0, 0, -0.25]), _Z, [fl, fh * 0.5, t])))
    dorsal = a.group(*fins) if len(fins) > 1 else fins[0]
    pect = []
    for sy in (-1, 1):
        c = np.array([L * 0.45, sy * w * 0.9, -h * 0.25])
        d = _unit([-0.8, sy * 0.6, -0.3])
        pect.append(a.leaf(_flat(c + d * L * 0.1, d, _unit([0.3, 0, 1.0]), [L * 0.17, h * 0.2, t])))
    a.group(*pect)
    if rng.random() < 0.6:
        pelv = []
        for sy in (-1, 1):
            c = np.array([L * 0.05, sy * w * 0.4, -h * 0.9])
            d = _unit([-0.8, sy * 0.3, -0.6])
            pelv.append(a.leaf(_flat(c + d * L * 0.06, d, _X, [L * 0.12, h * 0.15, t])))
        a.group(*pelv)
    if rng.random() < 0.6:
        a.leaf(_flat(np.array([-L * 0.55, 0, -h * 0.75]), _unit([1.0, 0, 0.3]), _Z, [L * 0.15, h * 0.3, t]))
    del body, tail, dorsal
    return a


def bird(rng) -> Assembly:
    a = Assembly("bird", organic=True, blend_range=(0.008, 0.02), grid_range=(80, 112), varied_tessellation=True)
    L = rng.uniform(0.3, 0.45)
    rb = L * rng.uniform(0.4, 0.6)
    flying = rng.random() < 0.5
    leg_h = 0.0 if flying else rng.uniform(0.15, 0.45)
    zc = leg_h + rb
    body = a.leaf(ell([0, 0, zc], [L, rb, rb * 1.05]))
    hr = rb * rng.uniform(0.5, 0.75)
    neck_len = rng.uniform(0.0, 0.4) * L
    hc = np.array([L * 0.85 + neck_len * 0.5, 0, zc + rb * 0.7 + neck_len])
    head_prims = [ell(hc, [hr * 1.1, hr, hr])]
    if neck_len > 0.05:
        head_prims.append(caps([L * 0.6, 0, zc + rb * 0.3], hc, hr * 0.55))
    head = a.leaf(*head_prims)
    bl = hr * rng.uniform(0.8, 2.2)
    bd = _unit([1.0, 0, rng.uniform(-0.6, 0.1)])
    beak = a.leaf(cone(hc + bd * hr * 0.8, hc + bd * (hr * 0.8 + bl), hr * rng.uniform(0.3, 0.5), 0.006))
    a.group(head, beak)
    t = max(0.03, L * 0.1)  # wing and tail half thickness: thick enough for coarse grids
    span = L * rng.uniform(1.2, 2.5)
    wings = []
    for sy in (-1, 1):
        root = np.array([L * 0.1, sy * rb * 0.7, zc + rb * 0.4])
        if flying:
            dihedral = rng.uniform(-0.3, 0.6)
            d_in = _unit([rng.uniform(-0.3, 0.1), sy, dihedral])
            d_out = _unit(d_in + [-rng.uniform(0.1, 0.6), 0, rng.uniform(-0.4, 0.3)])
            inner = _flat(root + d_in * span * 0.25, d_in, _X, [span * 0.27, L * 0.4, t])
            mid = root + d_in * span * 0.5
            outer = _flat(mid + d_out * span * 0.23, d_out, _X, [span * 0.26, L * 0.28, t])
            wings.append(a.group(a.leaf(inner), a.leaf(outer)))
        else:  # folded along the side
            d = _unit([-1.0, sy * 0.15, -0.15])
            wings.append(a.leaf(_flat(root + d * L * 0.55 + [0, sy * rb * 0.25, 0], d, _Z,
                                      [L * 0.8, rb * 0.6, t])))
    a.group(*wings)
    tail_len = L * rng.uniform(0.4, 1.0)
    td = _unit([-1.0, 0, rng.uniform(-0.3, 0.4)])
    a.leaf(_flat(np.array([-L * 0.9, 0, zc + rb * 0.2]) + td * tail_len * 0.6, td, _Y,
                 [tail_len * 0.7, L * rng.uniform(0.2, 0.45), t]))
    if not flying:
        legs = []
        for sy in (-1, 1):
            hip = np.array([-L * 0.05, sy * rb * 0.4, zc - rb * 0.7])
            ankle = np.array([L * 0.02, sy * rb * 0.45, 0.02])
            leg = a.leaf(caps(hip, ankle, 0.018))
            toes = [caps(ankle, ankle + _unit([np.cos(ang), sy * np.sin(ang), 0]) * L * 0.35, 0.014)
                    for ang in (-0.5, 0.0, 0.5, np.pi)]
            foot = a.leaf(*toes)
            legs.append(a.group(leg, foot))
        a.group(*legs)
    del body
    return a


# ---------------------------------------------------------------------------------------
# Mechanical assemblies: bearings and machine parts (hard unions with holes).

def _ring(a, c0, c1, r_out, r_in, axis_dir=None):
    """A tube from c0 to c1: a cylinder with a bore (one leaf)."""
    leaf = a.leaf(cyl(c0, c1, r_out))
    c0, c1 = np.asarray(c0, float), np.asarray(c1, float)
    d = _unit(c1 - c0)
    a.drill(leaf, cyl(c0 - d * 0.05, c1 + d * 0.05, r_in))
    return leaf


def bearing(rng) -> Assembly:
    a = Assembly("bearing", blend_range=(0.0, 0.004), grid_range=(72, 110), varied_tessellation=True)
    kind = rng.choice(["ball", "roller", "thrust"])
    ro = rng.uniform(0.5, 0.8)
    hw = ro * rng.uniform(0.15, 0.4)  # half width along the axis
    if kind == "thrust":  # two washers along z with balls between
        ri = ro * rng.uniform(0.35, 0.55)
        gap = (ro - ri) * rng.uniform(0.3, 0.45)
        rb = gap * 0.5
        zw = hw * 0.5
        races = [_ring(a, [0, 0, sz * (rb + zw * 2)], [0, 0, sz * rb * 0.8], ro, ri) for sz in (-1, 1)]
        rc = (ro + ri) / 2
        n = int(rng.integers(8, 16))
        balls = [a.leaf(ell([rc * np.cos(t), rc * np.sin(t), 0], [rb] * 3))
                 for t in 2 * np.pi * np.arange(n) / n]
        a.group(*races)
    else:
        r_or = ro * rng.uniform(0.78, 0.86)  # outer race bore
        r_ii = ro * rng.uniform(0.3, 0.5)  # inner race bore
        r_io = r_or - (r_or - r_ii) * rng.uniform(0.35, 0.5)  # inner race outside
        outer = _ring(a, [0, 0, -hw], [0, 0, hw], ro, r_or)
        inner = _ring(a, [0, 0, -hw * 0.95], [0, 0, hw * 0.95], r_io, r_ii)
        gap = r_or - r_io
        rc = (r_or + r_io) / 2
        if kind == "ball":
            rb = gap * 0.52
            n = int(max(6, min(18, np.floor(2 * np.pi * rc / (2.3 * rb)))))
            balls = [a.leaf(ell([rc * np.cos(t), rc * np.sin(t), 0], [rb] * 3))
                     for t in 2 * np.pi * np.arange(n) / n + rng.uniform(0, 1)]
        else:
            rr = gap * 0.52
            n = int(max(6, min(20, np.floor(2 * np.pi * rc / (2.4 * rr)))))
            axis_pts = [np.array([rc * np.cos(t), rc * np.sin(t), 0.0]) for t in 2 * np.pi * np.arange(n) / n]
            balls = [a.leaf(cyl(c - [0, 0, hw * 0.8], c + [0, 0, hw * 0.8], rr)) for c in axis_pts]
        races = a.group(outer, inner)
        if rng.random() < 0.4:  # a shaft through the inner race
            sl = rng.uniform(0.4, 1.2)
            shaft = a.leaf(cyl([0, 0, -hw - sl * rng.uniform(0, 1)], [0, 0, hw + sl], r_ii * 1.01))
            a.group(inner, shaft)
        if rng.random() < 0.4 and kind == "ball":  # cage ring through the balls
            a.leaf(tor([0, 0, 0], rc, rb * 0.3))
        del races
    a.group(*balls)
    return a


def _bolt_circle(a, rng, centre, axis, radius, n, r_bolt, head_h, face_offset):
    """`n` bolts (hexagonal head + shank, one leaf each) around `axis` on a flange face."""
    axis = _unit(axis)
    u = _unit(np.cross(axis, _X if abs(axis @ _X) < 0.9 else _Y))
    v = np.cross(axis, u)
    bolts = []
    for t in 2 * np.pi * np.arange(n) / n:
        p = np.asarray(centre, float) + (u * np.cos(t) + v * np.sin(t)) * radius + axis * face_offset
        head = Prim("cylinder", np.array([r_bolt * 1.7, r_bolt * 1.7, head_h / 2]), p + axis * head_h / 2,
                    rot_from_z(axis) @ rot_axis(_Z, t))
        shank = cyl(p, p + axis * head_h * 1.8, r_bolt)
        bolts.append(a.leaf(head, shank))
    return bolts


def _gear(a, rng, c, radius, width, n_teeth, bore):
    """A spur gear (rim, teeth and bore; one leaf) on the z axis at height c."""
    c = np.asarray(c, float)
    tooth = radius * rng.uniform(0.1, 0.18)
    prims = [cyl(c - [0, 0, width], c + [0, 0, width], radius)]
    for t in 2 * np.pi * np.arange(n_teeth) / n_teeth:
        prims.append(box_rot(c + [np.cos(t) * (radius + tooth * 0.4), np.sin(t) * (radius + tooth * 0.4), 0],
                             [tooth * 0.7, np.pi * radius / n_teeth * 0.45, width], rot_axis(_Z, t)))
    leaf = a.leaf(*prims)
    a.drill(leaf, cyl(c - [0, 0, width * 2], c + [0, 0, width * 2], bore))
    return leaf


def machine_part(rng) -> Assembly:
    """A shaft with flanges (bolt circles, holes), gears, collars and a hub, along z."""
    a = Assembly("machine", blend_range=(0.0, 0.004), grid_range=(72, 110), varied_tessellation=True)
    length = rng.uniform(1.2, 2.0)
    rs = rng.uniform(0.06, 0.12)
    shaft = a.leaf(cyl([0, 0, 0], [0, 0, length], rs))
    z = rng.uniform(0.1, 0.3) * length
    groups = []
    for _ in range(int(rng.integers(2, 5))):
        if z > length * 0.9:
            break
        kind = rng.choice(["flange", "gear", "collar", "hub"])
        if kind == "flange":
            rf = rs * rng.uniform(3.0, 5.5)
            tf = rng.uniform(0.03, 0.07)
            fl = a.leaf(cyl([0, 0, z - tf], [0, 0, z + tf], rf))
            n = int(rng.integers(3, 7))
            rbolt = rf * rng.uniform(0.07, 0.11)
            circle = (rs + rf) / 2 + rf * 0.1
            bolts = []
            if rng.random() < 0.7:
                bolts = _bolt_circle(a, rng, [0, 0, z], _Z, circle, n, rbolt, rbolt * 1.3, tf)
            centres = [np.array([np.cos(t) * circle, np.sin(t) * circle, z]) for t in 2 * np.pi * (np.arange(n) + 0.5) / n]
            holes = [cyl(c - [0, 0, 2 * tf], c + [0, 0, 2 * tf], rbolt * 1.1) for c in centres]
            a.drill(fl, *holes)
            groups.append(a.group(fl, a.group(*bolts)) if bolts else fl)
            z += tf * 2 + rng.uniform(0.1, 0.3)
        elif kind == "gear":
            rg = rs * rng.uniform(2.5, 5.0)
            wg = rng.uniform(0.04, 0.1)
            groups.append(_gear(a, rng, [0, 0, z + wg], rg, wg, int(rng.integers(10, 24)), rs * 1.0))
            z += 2 * wg + rng.uniform(0.1, 0.3)
        elif kind == "collar":
            hc = rng.uniform(0.02, 0.05)
            groups.append(_ring(a, [0, 0, z], [0, 0, z + 2 * hc], rs * rng.uniform(1.4, 2.0), rs * 0.99))
            z += 2 * hc + rng.uniform(0.05, 0.25)
        else:  # a hub with a set screw
            hh = rng.uniform(0.08, 0.2)
            rh = rs * rng.uniform(1.8, 2.8)
            hub = a.leaf(cyl([0, 0, z], [0, 0, z + hh], rh))
            screw = a.leaf(cyl([rh * 0.9, 0, z + hh / 2], [rh * 1.25, 0, z + hh / 2], rh * 0.18))
            groups.append(a.group(hub, screw))
            z += hh + rng.uniform(0.1, 0.3)
    if rng.random() < 0.4:  # a keyway cut along the shaft end
        a.drill(shaft, box([rs, 0, length * 0.95], [rs * 0.3, rs * 0.25, length * 0.08]))
    del groups
    return a


WEAK_CATEGORIES = {
    "bust": bust,
    "human": human,
    "animal": animal,
    "fish": fish,
    "bird": bird,
    "bearing": bearing,
    "machine": machine_part,
}
WEAK_KINDS = tuple(WEAK_CATEGORIES)
# A mix for training runs that add these kinds (relative to `shapes.CATEGORY_WEIGHTS`).
WEAK_WEIGHTS = {"bust": 1.0, "human": 1.5, "animal": 1.3, "fish": 0.8, "bird": 0.8, "bearing": 0.8, "machine": 1.0}
