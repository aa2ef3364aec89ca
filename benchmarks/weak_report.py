"""Per-kind tables of several `evaluate --json` reports of the same shapes, with methods
renamed per report, and the paired bootstrap of every method against a reference:

  python benchmarks/weak_report.py --reference model runs/h20_weak10.json \
      runs/h20_weak10_mirror.json:model_tta=model_tta_mirror

A report given as PATH:OLD=NEW[,OLD=NEW] has its methods renamed (the first report that has a
name wins). Prints, per dataset in the reports: best-of-k (fixed k: mIoU at it) per category,
the mIoU at the suggested part count (mean k), and the bootstrap table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime.training.evaluation import (  # noqa: E402
    K_RANGE,
    best_of_k_per_shape,
    format_uncertainty,
    paired_bootstrap,
)


def _load(spec: str) -> tuple[dict, dict]:
    path, _, ren = spec.partition(":")
    rename = dict(r.split("=", 1) for r in ren.split(",") if r)
    rep = json.loads(Path(path).read_text())
    return rep, rename


def _agg(per_shape: dict, names: list) -> str:
    best = np.mean([max(per_shape[n].values()) for n in names])
    by_k = {k: np.mean([per_shape[n].get(str(k), per_shape[n].get(k, max(per_shape[n].values()))) for n in names])
            for k in K_RANGE}
    k_star = max(by_k, key=by_k.get)
    return f"{best:.3f} ({k_star}: {by_k[k_star]:.3f})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--reference", default="model")
    args = ap.parse_args(argv)
    scores: dict = {}
    sugg: dict = {}
    for spec in args.reports:
        rep, rename = _load(spec)
        for ds, body in rep["datasets"].items():
            for m, v in body["scores"].items():
                scores.setdefault(ds, {}).setdefault(rename.get(m, m), v)
            for m, v in body.get("suggested", {}).items():
                sugg.setdefault(ds, {}).setdefault(rename.get(m, m), v)
    for ds, per_method in scores.items():
        methods = list(per_method)
        shapes = sorted(set.intersection(*(set(v) for v in per_method.values())))
        cats = sorted({s.split("/")[0] for s in shapes})
        print(f"### {ds} ({len(shapes)} shapes): best-of-k (fixed k: mIoU)\n")
        print("| kind | n | " + " | ".join(methods) + " |")
        print("|---|---|" + "---|" * len(methods))
        for c in ["all"] + cats:
            sel = [s for s in shapes if c == "all" or s.startswith(c + "/")]
            print(f"| {c} | {len(sel)} | " + " | ".join(_agg(per_method[m], sel) for m in methods) + " |")
        if ds in sugg:
            ms = [m for m in methods if m in sugg[ds]]
            print(f"\n### {ds}: mIoU at the suggested part count (mean k)\n")
            print("| kind | n | " + " | ".join(ms) + " |")
            print("|---|---|" + "---|" * len(ms))
            for c in ["all"] + cats:
                sel = [s for s in shapes if c == "all" or s.startswith(c + "/")]
                cells = []
                for m in ms:
                    miou = np.mean([sugg[ds][m][s][1] for s in sel])
                    k = np.mean([sugg[ds][m][s][0] for s in sel])
                    cells.append(f"{miou:.3f} ({k:.1f})")
                print(f"| {c} | {len(sel)} | " + " | ".join(cells) + " |")
        if args.reference in per_method:
            best = best_of_k_per_shape({m: {s: {int(k): v for k, v in per_method[m][s].items()} for s in shapes}
                                        for m in methods})
            order = {args.reference: best.pop(args.reference), **best}
            print()
            print(format_uncertainty(paired_bootstrap(order, args.reference), args.reference, ds))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
