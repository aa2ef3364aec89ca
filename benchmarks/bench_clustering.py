"""Ablation of the clustering space (`model_runtime/part_embedding.py`) on a validation set of
procedural shapes (seeds disjoint from training, < 10^9, and from the evaluation set,
10^9..): which of the fused space's parts earns its place. Never run on COSEG to choose.

    python benchmarks/bench_clustering.py [--checkpoint runs/x/model.safetensors] \
        [--seed-base 2000000000] [--per-category 2] [--json out.json]

Variants, all Ward on the bridged face graph, k = 2..20, the paper's mIoU (best-of-k):
- features: the L2-normalised network features alone (the paper's clustering input);
- + pieces: features pulled towards their loose piece's mean;
- + spectral (no creases): features + spectral embedding of the feature-weighted graph;
- fused, touching parts only: features + crease- and feature-weighted spectral + pieces;
- fused (default): the same, and above the tree's natural cut look-alike parts may join
  although they do not touch (`PartTree.build(free_space=...)`);
- spectral baseline: crease-weighted spectral features alone (no network).
Scores against the leaf parts, split by meshing (one welded surface / loose pieces), and
against the coarsest part groups ("top": a table's legs are one group).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime import part_embedding as pe  # noqa: E402
from model_runtime.connectivity import build_connectivity  # noqa: E402
from model_runtime.mesh import MeshArrays  # noqa: E402
from model_runtime.part_tree import normalize_rows  # noqa: E402
from model_runtime.training import evaluation as ev  # noqa: E402


def variants():
    def features(f, mesh, con):
        return normalize_rows(f)

    def pieces(f, mesh, con):
        x = normalize_rows(f)
        if con.num_components > 1:
            x = pe.pull_to_pieces(x, con.component_labels, mesh.polygon_areas())
        return x

    def spectral_no_creases(f, mesh, con):
        x = normalize_rows(f)
        i, j = pe.graph_edges(con)
        s = pe.spectral_embedding(i, j, pe.feature_weights(x, i, j), len(x), centers=mesh.polygon_centers(),
                                  areas=mesh.polygon_areas())
        s /= max(float(np.sqrt((s ** 2).sum(1).mean())), 1e-12)
        return np.concatenate([x, s], 1)

    def fused(f, mesh, con):
        return pe.part_embedding(f, mesh, con)

    def fused_alike(f, mesh, con):
        x = pe.part_embedding(f, mesh, con)
        return x, pe.feature_block(x, f)

    return {"features": features, "+ pieces": pieces, "+ spectral (no creases)": spectral_no_creases,
            "fused, touching parts only": fused, "fused (default)": fused_alike}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="model file; default: the bundled model")
    ap.add_argument("--seed-base", type=int, default=2 * 10**9)
    ap.add_argument("--per-category", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.seed_base < 2 * 10**9:
        ap.error("--seed-base must be >= 2e9 (below are the training and evaluation seeds)")
    import torch

    from model_runtime.field_model import FieldModel

    torch.set_num_threads(args.threads)
    model = FieldModel.load(args.checkpoint, device="cpu", precision="fp32")
    shapes = ev.procedural_set(args.per_category, seed_base=args.seed_base)
    names = list(variants()) + ["spectral baseline"]
    best = {n: {} for n in names}
    best_top = {n: {} for n in names}
    seconds = {n: 0.0 for n in names}
    for s in shapes:
        mesh = MeshArrays.from_triangles(s.vertices, s.faces)
        con = build_connectivity(mesh)
        f = ev.network_face_features(model, s.vertices, s.faces, model.config.num_points)
        spaces = variants()
        for n in names:
            t = time.perf_counter()
            if n == "spectral baseline":
                x = ev.spectral_features(s.vertices, s.faces, con)
            else:
                x = spaces[n](f, mesh, con)
            x, free = x if isinstance(x, tuple) else (x, None)
            sc = ev.tree_scores(x, con, s.labels, normalize=False, other_levels=s.other_levels, free_space=free)
            seconds[n] += time.perf_counter() - t
            best[n][s.name] = max(sc[""].values())
            best_top[n][s.name] = max(sc["top"].values())
    kinds = {"all": shapes, "welded": [s for s in shapes if s.meshing == "welded"],
             "loose": [s for s in shapes if s.meshing == "loose"]}
    print(f"<!-- python benchmarks/bench_clustering.py {' '.join(argv if argv is not None else sys.argv[1:])} -->")
    print(f"model: {model.describe().get('name')} ({args.checkpoint or 'bundled'}); {len(shapes)} validation "
          f"shapes, seeds from {args.seed_base}\n")
    print("| clustering space | all | welded | loose | top groups | seconds |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for n in names:
        r = {k: float(np.mean([best[n][s.name] for s in sel])) if sel else float("nan") for k, sel in kinds.items()}
        r["n"] = {k: len(sel) for k, sel in kinds.items()}
        r["top"] = float(np.mean([best_top[n][s.name] for s in shapes]))
        r["seconds"] = seconds[n]
        rows[n] = r
        print(f"| {n} | {r['all']:.3f} | {r['welded']:.3f} | {r['loose']:.3f} | {r['top']:.3f} | {seconds[n]:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "per_shape": best, "per_shape_top": best_top}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
