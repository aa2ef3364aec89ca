"""Does Select Similar Parts find the four legs? Generated chairs and tables (random sizes,
welded or loose pieces), segmented by the bundled model through `segment_mesh`; at k = the
number of true parts, Select Similar from the part holding most of one leg, at several
thresholds. A pick is "exact" when it holds >= 90 % of the legs' faces and its faces are
>= 90 % legs.

    .venv/bin/python benchmarks/bench_select_similar.py [--shapes 24] [--thresholds 0.25,0.35,0.5]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def furniture(rng, kind):
    """(Assembly, leaf ids of the four legs)."""
    from model_runtime.training.shapes import Assembly, box, cyl

    a = Assembly(kind)
    w, d = rng.uniform(0.25, 0.6), rng.uniform(0.25, 0.5)
    h = rng.uniform(0.4, 0.8)
    t = rng.uniform(0.02, 0.05)
    r = rng.uniform(0.015, 0.04)
    a.leaf(box([0, 0, h], [w, d, t]))
    if kind == "chair":
        hb = rng.uniform(0.3, 0.6)
        a.leaf(box([0, -d + 0.02, h + t + hb / 2], [w, 0.02, hb / 2]))
    legs = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (w - r - 0.01), sy * (d - r - 0.01)
            legs += a.leaf(cyl([x, y, 0.0], [x, y, h - t], r))
    return a, legs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", type=int, default=24)
    ap.add_argument("--thresholds", default="0.25,0.35,0.5")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from model_runtime import part_edits as E
    from model_runtime.field_model import FieldModel
    from model_runtime.mesh import MeshArrays
    from model_runtime.pipeline import segment_mesh
    from model_runtime.training.procedural import _mesh_loose, _mesh_welded

    model = FieldModel.load(None, device="cpu", precision="fp32")
    ths = [float(x) for x in args.thresholds.split(",")]
    rows = {th: [] for th in ths}
    t0 = time.perf_counter()
    for i in range(args.shapes):
        rng = np.random.default_rng(100 + i)
        kind = "chair" if i % 2 == 0 else "table"
        welded = (i // 2) % 2 == 0
        a, legs = furniture(rng, kind)
        v, f, gt = _mesh_welded(a, rng, 0.005, 64) if welded else _mesh_loose(a, rng)
        res = segment_mesh(MeshArrays.from_triangles(v, f), model)
        labels = res.labels(a.n_leaves)
        is_leg = np.isin(gt, legs)
        seed = int(np.bincount(labels[gt == legs[0]]).argmax())
        for th in ths:
            picked = np.isin(labels, E.similar_parts(res.features, labels, seed, th))
            recall = (picked & is_leg).sum() / is_leg.sum()
            precision = (picked & is_leg).sum() / max(picked.sum(), 1)
            rows[th].append((kind, welded, recall, precision))
    print(f"load {os.getloadavg()[0]:.1f}; {args.shapes} shapes in {time.perf_counter() - t0:.0f} s; "
          "Select Similar from one leg at k = true part count")
    print("| threshold | exact (>= 90 % recall and precision) | mean leg recall | mean precision |")
    print("|---|---|---|---|")
    for th in ths:
        r = np.array([x[2] for x in rows[th]])
        p = np.array([x[3] for x in rows[th]])
        exact = np.mean((r >= 0.9) & (p >= 0.9))
        print(f"| {th:.2f}{' (default)' if th == E.DEFAULT_SIMILARITY else ''} | {exact * 100:.0f} % "
              f"({int(round(exact * len(r)))}/{len(r)}) | {r.mean():.3f} | {p.mean():.3f} |")


if __name__ == "__main__":
    main()
