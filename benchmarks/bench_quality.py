"""Segmentation quality of a model against the baselines, as markdown tables for BENCHMARKS.md.

Runs `python -m model_runtime evaluate` logic in-process, or merges the JSON reports of
separate runs (the baselines do not depend on the model, so they can be computed once):

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

from model_runtime.training.evaluation import format_table  # noqa: E402


def merge(reports: list) -> dict:
    """{dataset: {method: summary}} from several evaluate --json reports (first wins)."""
    out: dict = {}
    for rep in reports:
        for ds, body in rep["datasets"].items():
            for method, summ in body["summary"].items():
                out.setdefault(ds, {}).setdefault(method, summ)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="JSON files written by `evaluate --json`")
    args = ap.parse_args(argv)
    reports = [json.loads(Path(p).read_text()) for p in args.reports]
    merged = merge(reports)
    for rep in reports:
        print(f"<!-- {rep['command']} -->")
    for ds, summary in merged.items():
        order = [m for m in ("model", "untrained", "spectral", "ward_posnormal", "one_part") if m in summary]
        order += [m for m in summary if m not in order]
        n = next(iter(summary.values()))["n"]
        print(format_table({m: summary[m] for m in order}, f"{ds} ({n} shapes)"))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
