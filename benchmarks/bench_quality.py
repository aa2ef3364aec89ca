"""Segmentation quality of a model against the baselines, as markdown tables for BENCHMARKS.md.

Merges the JSON reports of separate `python -m model_runtime evaluate` runs (the baselines do
not depend on the model, so they can be computed once), prints the summary tables, then per
dataset the best-of-k means with bootstrap standard errors (shapes resampled) and the model's
paired margin over every other method with its standard error and 95% interval:

  python -m model_runtime evaluate --methods untrained,one_part,ward_posnormal,spectral \
      --json runs/eval_baselines.json
  python -m model_runtime evaluate --methods model --json runs/eval_model.json
  python benchmarks/bench_quality.py runs/eval_model.json runs/eval_baselines.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime.training.evaluation import (  # noqa: E402
    best_of_k_per_shape,
    format_table,
    format_uncertainty,
    paired_bootstrap,
)


def merge(reports: list, part: str = "summary") -> dict:
    """{dataset: {method: summary}} from several evaluate --json reports (first wins);
    `part="scores"` merges the per-shape scores instead."""
    out: dict = {}
    for rep in reports:
        for ds, body in rep["datasets"].items():
            for method, value in body[part].items():
                out.setdefault(ds, {}).setdefault(method, value)
    return out


ORDER = ("model", "model_features", "untrained", "spectral", "spectral_alike", "ward_posnormal", "one_part")


def ordered(methods) -> list:
    """The methods in table order: the model first, then its control, then the baselines."""
    return [m for m in ORDER if m in methods] + [m for m in methods if m not in ORDER]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="JSON files written by `evaluate --json`")
    ap.add_argument("--resamples", type=int, default=5000,
                    help="bootstrap resamples of the shapes for the standard errors (default 5000)")
    args = ap.parse_args(argv)
    reports = [json.loads(Path(p).read_text()) for p in args.reports]
    for rep in reports:
        print(f"<!-- {rep['command']} -->")
    for ds, summary in merge(reports).items():
        n = next(iter(summary.values()))["n"]
        print(format_table({m: summary[m] for m in ordered(summary)}, f"{ds} ({n} shapes)"))
        print()
    for ds, scores in merge(reports, "scores").items():
        if "model" in scores and len(scores) > 1:
            best = best_of_k_per_shape({m: scores[m] for m in ordered(scores)})
            print(format_uncertainty(paired_bootstrap(best, "model", args.resamples), "model", ds))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
