"""Clustering variants on a development set of the weak kinds (issue 20), never the held-out one.

Development shapes: kind i, shape j has seed WEAK_SEED_BASE + 1000 i + 500 + j (j = 0..N-1):
the held-out set uses j = 0..49, so these never overlap it. Network features are computed once
per shape and cached (`--cache`); each variant re-runs only the clustering space and the tree.

    python benchmarks/weak_dev_sweep.py --per-kind 6 --variants base,dims24,touching --threads 1
    python benchmarks/weak_dev_sweep.py --views 4 --variants base,free1   # TTA; free1: look-alike
                                                    # merges compared on the 1-view features
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEV_OFFSET = 500


def dev_shapes(per_kind, kinds=None, which="weak"):
    """Development shapes: the weak kinds (seeds above), or with `which="procedural"` the 20
    default categories at bench_clustering's validation seeds 2e9 + 1000 c + j."""
    from model_runtime.training import evaluation as ev
    from model_runtime.training.shapes import CATEGORIES
    from model_runtime.training.shapes_organic import WEAK_KINDS

    if which == "procedural":
        return ev.procedural_set(per_kind, kinds or list(CATEGORIES), seed_base=2 * 10**9)

    out = []
    for cat in kinds or WEAK_KINDS:
        base = ev.WEAK_SEED_BASE + 1000 * WEAK_KINDS.index(cat) + DEV_OFFSET
        out += ev.procedural_set(per_kind, [cat], seed_base=base)
    return out


def space_for(variant, feats, shape, conn):
    """(space, free_space or None) for one named variant."""
    import model_runtime.part_embedding as pe
    from model_runtime.mesh import MeshArrays
    from model_runtime.part_tree import normalize_rows

    opts = dict(dims=pe.SPECTRAL_DIMS, spec_scale=1.0, convex=pe.CONVEX_FACTOR, alike=True, feat_w=True, keep=False)
    for tok in variant.split("+"):
        if tok == "base":
            continue
        elif tok.startswith("dims"):
            opts["dims"] = int(tok[4:])
        elif tok.startswith("spec"):
            opts["spec_scale"] = float(tok[4:])
        elif tok.startswith("convex"):
            opts["convex"] = float(tok[6:])
        elif tok == "touching":
            opts["alike"] = False
        elif tok == "keep":  # scale the block by the RMS of its first SPECTRAL_DIMS columns only
            opts["keep"] = True
        elif tok == "nofeatw":
            opts["feat_w"] = False
        elif tok == "features":
            opts["spec_scale"] = 0.0
        elif tok == "free1":  # handled by the caller: look-alike merges on the 1-view features
            continue
        else:
            raise SystemExit(f"unknown variant token {tok}")
    x = normalize_rows(feats)
    mesh = MeshArrays.from_triangles(shape.vertices, shape.faces)
    if opts["spec_scale"] == 1.0 and opts["convex"] == pe.CONVEX_FACTOR and opts["feat_w"] and not opts["keep"]:
        # the runtime's own function (loose pieces pulled together as in the runtime)
        space = pe.part_embedding(feats, mesh, conn, spectral_dims=opts["dims"])
        return space, (pe.feature_block(space, feats) if opts["alike"] else None)
    v = np.asarray(mesh.vertices, np.float64)
    i, j = pe.graph_edges(conn)
    centers, areas = mesh.polygon_centers(v), mesh.polygon_areas(v)
    normals = pe.polygon_normals(mesh, v)
    w = pe.crease_weights(centers, normals, i, j, convex_factor=opts["convex"])
    if opts["feat_w"]:
        w = w * pe.feature_weights(x, i, j)
    if opts["spec_scale"] > 0:
        spec = pe.spectral_embedding(i, j, w, len(x), dims=opts["dims"], centers=centers, areas=areas)
        head = spec[:, : pe.SPECTRAL_DIMS] if opts["keep"] else spec
        spec /= max(float(np.sqrt(np.einsum("ij,ij->i", head, head).mean())), 1e-12)
        space = np.concatenate([x, opts["spec_scale"] * spec], 1)
    else:
        space = x
    return space, (x if opts["alike"] else None)


def cached_features(path, net, shape, n_points):
    """The network's per-face features of `shape` from `path`, computed and saved there first."""
    from model_runtime.training import evaluation as ev

    if path.exists():
        return np.load(path)
    feats = ev.network_face_features(net, shape.vertices, shape.faces, n_points)
    np.save(path, feats.astype(np.float32))
    return feats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-kind", type=int, default=6)
    p.add_argument("--kinds", default=None)
    p.add_argument("--set", default="weak", choices=["weak", "procedural"])
    p.add_argument("--variants", default="base")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--views", type=int, default=1)
    p.add_argument("--cache", default="runs/dev")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from model_runtime.augmentation import augmented
    from model_runtime.connectivity import build_connectivity
    from model_runtime.field_model import FieldModel
    from model_runtime.mesh import MeshArrays
    from model_runtime.training import evaluation as ev

    model = FieldModel.load(args.checkpoint, device="cpu", precision="fp32")
    # the cache is keyed by the weights' bytes (the bundled file changes between sessions)
    import hashlib

    from model_runtime.model_files import default_model_path

    weights = Path(args.checkpoint) if args.checkpoint else Path(default_model_path())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:8]
    tag = f"{weights.stem}-{digest}" + (f"_v{args.views}" if args.views > 1 else "")
    net = augmented(model, args.views, "mirror")
    shapes = dev_shapes(args.per_kind, args.kinds.split(",") if args.kinds else None, args.set)
    variants = args.variants.split(",")
    scores = {v: {} for v in variants}
    sugg = {v: {} for v in variants}
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    for si, s in enumerate(shapes):
        feats = cached_features(cache / f"{tag}_{s.name.replace('/', '_')}.npy", net, s, model.config.num_points)
        conn = build_connectivity(MeshArrays.from_triangles(s.vertices, s.faces))
        single = None
        if args.views > 1 and any("free1" in v.split("+") for v in variants):
            single = cached_features(cache / f"{tag.rsplit('_v', 1)[0]}_{s.name.replace('/', '_')}.npy", model, s,
                                     model.config.num_points)
        line = []
        for var in variants:
            t0 = time.perf_counter()
            space, free = space_for(var, feats.astype(np.float64), s, conn)
            if free is not None and single is not None and "free1" in var.split("+"):
                # the same loose-piece pull as the runtime's feature block, on the 1-view features
                free = space_for(var, single.astype(np.float64), s, conn)[1]
            info = {}
            sc = ev.tree_scores(space, conn, s.labels, False, free_space=free, info=info)
            scores[var][s.name] = sc
            sugg[var][s.name] = info["suggested"]
            line.append(f"{var} {max(sc.values()):.3f} ({time.perf_counter() - t0:.1f}s)")
        print(f"[{si + 1}/{len(shapes)}] {s.name} T={len(s.faces)}: " + "  ".join(line), flush=True)
    summary = ev.summarise(shapes, scores)
    print(ev.format_table(summary, f"dev {args.set} ({len(shapes)} shapes, {tag})"))
    print(ev.format_suggested(ev.summarise_suggested(shapes, sugg), "dev weak"))
    if args.json:
        Path(args.json).write_text(json.dumps({"scores": scores, "suggested": sugg}, default=str))


if __name__ == "__main__":
    main()
