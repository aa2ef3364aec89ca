"""Cost of the part edits on the slider and of the similarity operators (numpy only, no bpy).

    .venv/bin/python benchmarks/bench_part_edits.py [--faces 10000,125000,500000] [--edits 10]

A balanced merge tree over P leaves stands in for a real one (a cut costs the same whatever the
merge order). Prints one table: a plain cut (`PartTree.cut`), the same cut with the edits
replayed (`apply_edits`), the part descriptors + Select Similar, and the per-face similarity
of the heat map, in milliseconds (median of --repeat runs).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_runtime import part_edits as E  # noqa: E402
from model_runtime.part_tree import PartTree  # noqa: E402


def balanced_tree(p: int, seed: int = 0) -> PartTree:
    """Pairs neighbours level by level over a shuffled leaf order: a valid merge list."""
    rng = np.random.default_rng(seed)
    level = list(rng.permutation(p))
    children, nxt = [], p
    while len(level) > 1:
        out = []
        for i in range(0, len(level) - 1, 2):
            children.append((level[i], level[i + 1]))
            out.append(nxt)
            nxt += 1
        if len(level) % 2:
            out.append(level[-1])
        level = out
    return PartTree(np.asarray(children, np.int64), p)


def median_ms(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", default="10000,125000,500000")
    ap.add_argument("--edits", type=int, default=10)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    print(f"load {os.getloadavg()[0]:.1f}; k={args.k}, {args.edits} edits, {args.features} fp16 features per face")
    print("| faces | plain cut ms | cut + edits ms | Select Similar ms | similarity map ms |")
    print("|---|---|---|---|---|")
    for p in (int(x) for x in args.faces.split(",")):
        tree = balanced_tree(p)
        edits = []
        for i in range(args.edits):  # alternate: split the largest part, merge the two smallest
            cut = E.apply_edits(tree, args.k, edits)
            sizes = np.bincount(cut.labels)
            if i % 2 == 0:
                edits = E.split_edit(tree, args.k, edits, int(sizes.argmax()))
            else:
                edits = E.merge_edit(tree, args.k, edits, np.argsort(sizes)[:2].tolist())
        feats = np.random.default_rng(1).normal(size=(p, args.features)).astype(np.float16)
        labels = E.apply_edits(tree, args.k, edits).labels
        plain = median_ms(lambda: tree.cut(args.k), args.repeat)
        edited = median_ms(lambda: E.apply_edits(tree, args.k, edits), args.repeat)
        similar = median_ms(lambda: E.similar_parts(feats, labels, 0), args.repeat)
        heat = median_ms(lambda: E.heat_colors(E.face_similarity(feats, 0)), args.repeat)
        print(f"| {p:,} | {plain:.1f} | {edited:.1f} | {similar:.1f} | {heat:.1f} |", flush=True)


if __name__ == "__main__":
    main()
