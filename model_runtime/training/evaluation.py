"""Segmentation quality against ground truth, and the baselines.

Metric (the paper's): for each ground-truth part, the best IoU (over face sets) with any
predicted part, averaged over the ground-truth parts of the shape; computed for every
k = 2..20 cut of the part tree. Reported per shape as "best of k" (max over k), and per
dataset at one fixed k (the single k with the best dataset mean, named in the report).

Methods, all ending in Ward on the face adjacency (`part_tree.PartTree`):
- `model`: per-face features of a PartField network (the runtime's texel quadrature), in the
  runtime's default clustering space (`part_embedding`, "fused": the L2-normalised features
  with a crease- and feature-weighted spectral embedding, pulled together per loose piece);
- `model_features`: the same features alone, L2-normalised (the paper's clustering input);
- `untrained`: the same network architecture with random weights, fused like `model`
  (control: what the clustering gets without training);
- `ward_posnormal`: face centre and normal;
- `spectral`: Laplacian eigenvectors of the face graph (concave edges weigh less);
- `one_part`: every face in one part (no tree).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..connectivity import build_connectivity
from ..mesh import MeshArrays
from ..part_embedding import (
    DEFAULT_CLUSTERING,
    SPECTRAL_DIMS,
    crease_weights,
    feature_block,
    graph_edges,
    part_embedding,
    spectral_embedding,
)
from ..part_tree import PartTree
from ..augmentation import augmented, default_views
from .procedural import make_shape, normalisation, sample_surface
from .shapes import CATEGORIES
from .shapes_organic import WEAK_KINDS

EVAL_SEED_BASE = 10**9  # held-out procedural seeds; training seeds stay below 10**9
# The held-out set of the weak kinds (issue 20), fixed before any run: kind i, shape j has
# seed WEAK_SEED_BASE + 1000 i + j (kinds in `WEAK_KINDS` order). Above the validation seeds
# of bench_clustering (2e9 + 1000 c + j) and of the shapes looked at while writing the builders.
WEAK_SEED_BASE = 3 * 10**9 + 10**6
K_RANGE = range(2, 21)


@dataclass
class EvalShape:
    name: str
    category: str
    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (T, 3)
    labels: np.ndarray  # (T,) ground-truth part per face
    # Further ground truths of the same shape, scored on the same trees: {level: (T,) labels}.
    other_levels: dict = None
    meshing: str | None = None  # procedural shapes: "welded" (one surface) or "loose" (pieces)


# ---------------------------------------------------------------------------------------
# Datasets.

def read_off(path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of an OFF file (polygons fan-triangulated)."""
    tokens = Path(path).read_text().split()
    if tokens[0].upper() != "OFF":
        raise ValueError(f"{path}: not an OFF file")
    nv, nf = int(tokens[1]), int(tokens[2])
    pos = 4
    v = np.array(tokens[pos: pos + 3 * nv], dtype=np.float64).reshape(nv, 3)
    pos += 3 * nv
    rest = np.array(tokens[pos:], dtype=np.int64)
    if len(rest) >= 4 * nf and (rest[: 4 * nf: 4] == 3).all():
        f = rest[: 4 * nf].reshape(nf, 4)[:, 1:]
    else:
        faces, i = [], 0
        for _ in range(nf):
            n = rest[i]
            poly = rest[i + 1: i + 1 + n]
            if n != 3:
                raise ValueError(f"{path}: only triangle meshes are supported here")
            faces.append(poly)
            i += 1 + n
        f = np.array(faces)
    return v, f


def load_coseg(root) -> list[EvalShape]:
    """The COSEG subset: <category>/shapes/<id>.off with <category>/gt/<id>.seg."""
    root = Path(root)
    out = []
    for cat_dir in sorted(p for p in root.iterdir() if (p / "shapes").is_dir()):
        for off in sorted((cat_dir / "shapes").glob("*.off"), key=lambda p: int(p.stem) if p.stem.isdigit() else p.stem):
            seg = cat_dir / "gt" / f"{off.stem}.seg"
            v, f = read_off(off)
            lab = np.loadtxt(seg, dtype=np.int64).reshape(-1)
            if len(lab) != len(f):
                raise ValueError(f"{seg}: {len(lab)} labels for {len(f)} faces")
            out.append(EvalShape(f"{cat_dir.name}/{off.stem}", cat_dir.name, v, f, lab))
    return out


def procedural_set(per_category: int = 4, categories=None, seed_base: int = EVAL_SEED_BASE) -> list[EvalShape]:
    """Held-out procedural shapes (seeds never used in training), leaf parts as ground truth
    (and the coarsest part groups as a second ground truth, level "top")."""
    out = []
    for ci, cat in enumerate(categories or CATEGORIES):
        for i in range(per_category):
            seed = seed_base + ci * 1000 + i
            s = make_shape(seed, cat)
            meshing = ("welded" if s.welded else "loose") if s.tessellation == "uniform" else s.tessellation
            out.append(EvalShape(f"{cat}/{seed}", cat, s.vertices, s.faces, s.face_leaf,
                                 {"top": s.group_labels("top")}, meshing))
    return out


def weak_set(per_kind: int = 10, kinds=None) -> list[EvalShape]:
    """The held-out shapes of the weak kinds (busts, humans, animals, fish, birds, bearings,
    machine parts; `shapes_organic.py`), all welded; `meshing` names the tessellation."""
    kinds = list(kinds or WEAK_KINDS)
    unknown = sorted(set(kinds) - set(WEAK_KINDS))
    if unknown:
        raise ValueError(f"not weak kinds: {', '.join(unknown)}")
    out = []
    for cat in kinds:  # the seed depends on the kind's place in WEAK_KINDS, not on the selection
        out += procedural_set(per_kind, [cat], seed_base=WEAK_SEED_BASE + 1000 * WEAK_KINDS.index(cat))
    return out


# ---------------------------------------------------------------------------------------
# Metric.

def part_miou(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean over ground-truth parts of the best IoU with any predicted part (face counts)."""
    _, g = np.unique(gt, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    ng, npr = g.max() + 1, p.max() + 1
    inter = np.bincount(g * npr + p, minlength=ng * npr).reshape(ng, npr).astype(np.float64)
    sg = inter.sum(1, keepdims=True)
    sp_ = inter.sum(0, keepdims=True)
    iou = inter / (sg + sp_ - inter)
    return float(iou.max(1).mean())


# ---------------------------------------------------------------------------------------
# Per-face features.

def face_geometry(v: np.ndarray, f: np.ndarray):
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(n, axis=1)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    return tri.mean(1), n, area


def network_face_features(model, v: np.ndarray, f: np.ndarray, n_points: int, face_samples: int = 4,
                          seed: int = 0, method: str = "quadrature") -> np.ndarray:
    """(T, F) per-face mean of the field, as the runtime computes it.

    `model` is a `FieldModel`; the mesh is normalised like the runtime does it and
    `n_points` area-weighted samples are encoded. `method`: "quadrature" (the runtime's
    texel-aware average, `face_features.polygon_features`) or "random" (`face_samples`
    uniform random points per face).
    """
    centre, scale = normalisation(v)
    vn = (v - centre) * scale
    rng = np.random.default_rng(seed)
    pts, fid = sample_surface(vn, f, n_points, rng)
    planes = model.encode(pts.astype(np.float32), face_geometry(vn, f)[1][fid])  # normals: read if the model does
    if method == "quadrature":
        from ..face_features import polygon_features

        mesh = MeshArrays.from_triangles(vn, f)
        return polygon_features(mesh, lambda q: model.decode(planes, q), vertices=vn, method="quadrature",
                                plane_resolution=model.config.plane_resolution)
    t = len(f)
    r1 = np.sqrt(rng.random((t, face_samples, 1)))
    r2 = rng.random((t, face_samples, 1))
    tri = vn[f]
    q = (1 - r1) * tri[:, None, 0] + r1 * (1 - r2) * tri[:, None, 1] + r1 * r2 * tri[:, None, 2]
    feats = model.decode(planes, q.reshape(-1, 3).astype(np.float32))
    return feats.reshape(t, face_samples, -1).mean(1)


def posnormal_features(v: np.ndarray, f: np.ndarray, normal_weight: float = 0.5) -> np.ndarray:
    centre, scale = normalisation(v)
    c, n, _ = face_geometry((v - centre) * scale, f)
    return np.concatenate([c, normal_weight * n], 1)


def spectral_features(v: np.ndarray, f: np.ndarray, conn, dims: int = 12) -> np.ndarray:
    """Laplacian eigenvectors of the face graph; edge weights from dihedral angles
    (concave edges weigh much less). The runtime's spectral step (`part_embedding`) on crease
    weights alone, always solved exactly (no coarse graph), with no network features."""
    centre, scale = normalisation(v)
    c, n, _ = face_geometry((v - centre) * scale, f)
    i, j = graph_edges(conn)
    return spectral_embedding(i, j, crease_weights(c, n, i, j), len(f), dims=dims)


# ---------------------------------------------------------------------------------------
# Evaluation driver.

def suggested_parts(tree: PartTree) -> int:
    """The part count the runtime suggests for a tree (`pipeline.suggested_parts`: the natural
    cut of the graph tree, before look-alike merges replaced the coarse merges). Until
    2026-12-01 this read the natural cut off the costs of the final tree instead, a different
    count on most shapes: the "at the suggested part count" figures before then are of that."""
    from ..pipeline import suggested_parts as runtime_suggested

    return runtime_suggested(tree)


def tree_scores(features, conn, gt, normalize: bool, ks=K_RANGE, other_levels=None, free_space=None, info=None):
    """{k: mIoU} for the Ward tree of `features` (look-alike merges on `free_space` above its
    natural cut, as `PartTree.build`); with `other_levels` ({level: labels}) also returns
    {level: {k: mIoU}} scored on the same tree. With `info` (a dict), also fills
    info["suggested"] = (k, {level: mIoU at the suggested part count k})."""
    tree = PartTree.build(features, conn, normalize=normalize, free_space=free_space)
    levels = {"": gt, **(other_levels or {})}
    if info is not None:
        k_s = suggested_parts(tree)
        cut = tree.cut(k_s)
        info["suggested"] = (int(k_s), {name: part_miou(lab, cut) for name, lab in levels.items()})
    out = {name: {} for name in levels}
    for k in ks:
        if k > tree.num_leaves:
            break
        cut = tree.cut(k)
        for name, lab in levels.items():
            out[name][int(k)] = part_miou(lab, cut)
    if other_levels is None:
        return out[""]
    return out


class Method:
    """A named way to get per-face features (None: no tree, one part). With `free`,
    `features(shape, conn)` returns `(space, free_space)` and the tree joins look-alike parts
    that do not touch above its natural cut."""

    def __init__(self, name: str, features=None, normalize: bool = True, free: bool = False):
        self.name = name
        self.features = features
        self.normalize = normalize
        self.free = free


def model_method(name: str, model, n_points: int, face_samples: int = 4, face_method: str = "quadrature",
                 clustering: str = DEFAULT_CLUSTERING, shared: dict | None = None,
                 group_alike: bool = True, views: int | None = None, view_set: str = "mirror",
                 spectral_dims: int | None = None) -> Method:
    """The network's per-face features in the runtime's clustering space (`part_embedding`:
    "fused" by default, or "features" alone as in the paper), with the runtime's look-alike
    merges above the tree's natural cut unless `group_alike` is False. `views`: the field
    averaged over that many rigid views of `view_set` (`augmentation`, the runtime's
    test_time_views; None: the runtime's default for this model, `default_views`).
    `spectral_dims`: eigenvectors in the fused space's spectral block (None: the runtime's).
    Methods given the same `shared` dict run the network once per shape: it keeps the last
    shape's features."""
    shared = {} if shared is None else shared
    model = augmented(model, default_views(model) if views is None else views, view_set)

    def features(s, conn):
        if shared.get("shape") is not s:
            shared["shape"] = s
            shared["features"] = network_face_features(model, s.vertices, s.faces, n_points, face_samples,
                                                       method=face_method)
        space = part_embedding(shared["features"], MeshArrays.from_triangles(s.vertices, s.faces), conn,
                               method=clustering,
                               spectral_dims=SPECTRAL_DIMS if spectral_dims is None else int(spectral_dims))
        return (space, feature_block(space, shared["features"])) if group_alike else space

    return Method(name, features, normalize=False, free=group_alike)


def baseline_methods() -> list[Method]:
    """One part; Ward on (position, normal); spectral features of the face graph, also with the
    runtime's look-alike merges on those same features (`spectral_alike`), so the model can be
    compared with the better of the two."""
    shared: dict = {}

    def spectral(s, conn):
        if shared.get("shape") is not s:
            shared["shape"], shared["spectral"] = s, spectral_features(s.vertices, s.faces, conn)
        return shared["spectral"]

    return [
        Method("one_part"),
        Method("ward_posnormal", lambda s, conn: posnormal_features(s.vertices, s.faces), normalize=False),
        Method("spectral", spectral, normalize=False),
        Method("spectral_alike", lambda s, conn: (spectral(s, conn), spectral(s, conn)), normalize=False, free=True),
    ]


def evaluate(shapes: list[EvalShape], methods: list[Method], ks=K_RANGE, log=None) -> dict:
    """{"scores": {method: {shape name: {k: mIoU}}}, "levels": {level: same for another
    ground truth}, "seconds": {method: s}}."""
    results = {m.name: {} for m in methods}
    levels: dict = {}
    suggested: dict = {m.name: {} for m in methods}  # {method: {shape: (k, {level: mIoU})}}
    times = {m.name: 0.0 for m in methods}
    for si, s in enumerate(shapes):
        conn = build_connectivity(MeshArrays.from_triangles(s.vertices, s.faces))
        extra = s.other_levels or {}
        for m in methods:
            t0 = time.perf_counter()
            if m.features is None:
                one = np.zeros(len(s.faces), np.int64)
                sc = {"": {k: part_miou(s.labels, one) for k in ks}}
                sc.update({name: {k: part_miou(lab, one) for k in ks} for name, lab in extra.items()})
                suggested[m.name][s.name] = (1, {name: sc[name][min(ks)] for name in sc})
            else:
                space, free = m.features(s, conn) if m.free else (m.features(s, conn), None)
                info: dict = {}
                sc = tree_scores(space, conn, s.labels, m.normalize, ks, other_levels=extra, free_space=free,
                                 info=info)
                suggested[m.name][s.name] = info["suggested"]
            times[m.name] += time.perf_counter() - t0
            results[m.name][s.name] = sc[""]
            for name in extra:
                levels.setdefault(name, {}).setdefault(m.name, {})[s.name] = sc[name]
        if log:
            log(f"[{si + 1}/{len(shapes)}] {s.name}: " + "  ".join(
                f"{m.name} {max(results[m.name][s.name].values()):.3f}" for m in methods))
    return {"scores": results, "levels": levels, "seconds": times, "suggested": suggested}


def summarise_suggested(shapes: list[EvalShape], suggested: dict, level: str = "") -> dict:
    """{method: {"k_mean", "miou", "categories": {cat: {"k_mean", "miou", "n"}}}} at the
    suggested part count (`evaluate`'s "suggested" entry) for one ground-truth level."""
    out = {}
    for name, per_shape in suggested.items():
        def agg(sel):
            ks = [per_shape[s.name][0] for s in sel]
            ms = [per_shape[s.name][1][level] for s in sel]
            return {"k_mean": float(np.mean(ks)), "miou": float(np.mean(ms)), "n": len(sel)}
        entry = agg(shapes)
        cats = sorted({s.category for s in shapes})
        entry["categories"] = {c: agg([s for s in shapes if s.category == c]) for c in cats}
        out[name] = entry
    return out


def format_suggested(summary: dict, title: str) -> str:
    """Markdown table: mIoU at the suggested part count (mean suggested k), per category."""
    names = list(summary)
    if not names:
        return ""
    cats = list(summary[names[0]]["categories"])
    lines = [f"### {title}: at the suggested part count (mIoU, mean k)", "",
             "| category | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for label, cells in [("all", [summary[n] for n in names])] + [(c, [summary[n]["categories"][c] for n in names])
                                                                  for c in cats]:
        row = " | ".join(f"{c['miou']:.3f} ({c['k_mean']:.1f})" for c in cells)
        lines.append(f"| {label} | {cells[0]['n']} | {row} |")
    return "\n".join(lines)


def summarise(shapes: list[EvalShape], scores: dict, ks=K_RANGE) -> dict:
    """Per method: best-of-k mean, best fixed k and its mean, per category (same two), and
    per meshing ("welded" / "loose") for procedural shapes."""
    cats = sorted({s.category for s in shapes})
    meshings = sorted({s.meshing for s in shapes if s.meshing})
    out = {}
    for name, per_shape in scores.items():
        def agg(sel):
            best = [max(per_shape[s.name].values()) for s in sel]
            by_k = {k: np.mean([per_shape[s.name].get(k, max(per_shape[s.name].values())) for s in sel]) for k in ks}
            k_star = max(by_k, key=by_k.get)
            return {"best_of_k": float(np.mean(best)), "fixed_k": int(k_star), "at_fixed_k": float(by_k[k_star]),
                    "n": len(sel)}
        entry = agg(shapes)
        entry["categories"] = {c: agg([s for s in shapes if s.category == c]) for c in cats}
        if meshings:
            entry["meshing"] = {m: agg([s for s in shapes if s.meshing == m]) for m in meshings}
        out[name] = entry
    return out


def _group_table(summary: dict, names: list, group: str, label: str, heading: str) -> list:
    """Markdown rows of best-of-k (fixed k: mIoU) per member of `summary[name][group]`."""
    members = list(summary[names[0]][group])
    lines = ["", heading, "", f"| {label} | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for g in members:
        cells = [summary[n][group][g] for n in names]
        row = [f"{c['best_of_k']:.3f} ({c['fixed_k']}: {c['at_fixed_k']:.3f})" for c in cells]
        lines.append(f"| {g} | {cells[0]['n']} | " + " | ".join(row) + " |")
    return lines


def format_table(summary: dict, title: str) -> str:
    names = list(summary)
    lines = [f"### {title}", "", "| method | best-of-k mIoU | fixed k | mIoU at fixed k |", "|---|---|---|---|"]
    for n in names:
        e = summary[n]
        lines.append(f"| {n} | {e['best_of_k']:.3f} | {e['fixed_k']} | {e['at_fixed_k']:.3f} |")
    if not names:
        return "\n".join(lines)
    lines += _group_table(summary, names, "categories", "category", "Per category, best-of-k (fixed k: mIoU):")
    if all(summary[n].get("meshing") for n in names):
        lines += _group_table(summary, names, "meshing", "meshing",
                              "By meshing (one welded surface / loose pieces), best-of-k (fixed k: mIoU):")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Uncertainty of the best-of-k means (shapes resampled with replacement).

def best_of_k_per_shape(scores: dict) -> dict:
    """{method: {shape: best mIoU over k}} from evaluate's {method: {shape: {k: mIoU}}}."""
    return {m: {s: max(by_k.values()) for s, by_k in per_shape.items()} for m, per_shape in scores.items()}


def paired_bootstrap(best: dict, reference: str, resamples: int = 5000, seed: int = 0) -> dict:
    """Bootstrap over shapes of the best-of-k means in `best` ({method: {shape: score}}).

    Per method: `mean`, `se` (the standard error of the mean), the 2.5 / 97.5 percentiles of
    the resampled mean (`low` / `high`) and, for every method but
    `reference`, the paired margin `reference - method` (`margin`, `margin_se`, and the
    2.5 / 97.5 percentiles `margin_low` / `margin_high`). Every method is resampled with the
    same shape draws, so the margin's error is that of the per-shape differences. Only the
    shapes scored by every method count."""
    shapes = sorted(set.intersection(*(set(v) for v in best.values())))
    if not shapes:
        raise ValueError("no shape is scored by every method")
    values = {m: np.array([best[m][s] for s in shapes], dtype=np.float64) for m in best}
    draws = np.random.default_rng(seed).integers(0, len(shapes), size=(resamples, len(shapes)))
    out = {}
    for m, v in values.items():
        means = v[draws].mean(1)
        e = {"mean": float(v.mean()), "se": float(means.std(ddof=1)), "low": float(np.percentile(means, 2.5)),
             "high": float(np.percentile(means, 97.5)), "n": len(shapes)}
        if m != reference:
            diff = values[reference] - v  # (shapes,) paired per-shape margins
            d = diff[draws].mean(1)
            e.update(margin=float(diff.mean()), margin_se=float(d.std(ddof=1)),
                     margin_low=float(np.percentile(d, 2.5)), margin_high=float(np.percentile(d, 97.5)))
        out[m] = e
    return out


def format_uncertainty(stats: dict, reference: str, title: str) -> str:
    """Markdown table of `paired_bootstrap`'s output."""
    lines = [f"### {title}: bootstrap over shapes", "",
             f"| method | best-of-k | SE | 95% interval | {reference} minus method | SE | 95% interval |",
             "|---|---|---|---|---|---|---|"]
    for m, e in stats.items():
        mean = f"| {m} | {e['mean']:.3f} | {e['se']:.3f} | {e['low']:.3f} .. {e['high']:.3f} |"
        if m == reference:
            lines.append(mean + " | | |")
        else:
            lines.append(mean + f" {100 * e['margin']:+.1f} pts | {100 * e['margin_se']:.1f} | "
                         f"{100 * e['margin_low']:+.1f} .. {100 * e['margin_high']:+.1f} |")
    return "\n".join(lines)
