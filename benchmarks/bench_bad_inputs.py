"""Cost of the crafted inputs that used to blow up (issue 17), each in a fresh process.

    .venv/bin/python benchmarks/bench_bad_inputs.py [--runtime DIR]

Prints, for every row of tests/test_bad_inputs.py that carries a memory or time bound (plus
the welding case), the error, the seconds and the peak resident-set growth. `--runtime DIR`
puts another copy of `model_runtime` first on the path (e.g. an older commit unpacked with
`git archive COMMIT model_runtime | tar -x -C DIR`) to measure the same inputs before a fix.
"""
import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bounded import run_bounded  # noqa: E402
from tests.test_bad_inputs import CASES, READERS  # noqa: E402

WELD_SETUP = """
import numpy as np
from model_runtime.connectivity import build_connectivity
from model_runtime.mesh import MeshArrays
n = 20000
v = np.concatenate([np.zeros((n, 3)), np.random.default_rng(0).uniform(-1, 1, (3 * n, 3))])
mesh = MeshArrays.from_triangles(v, np.stack([np.arange(n), n + np.arange(n), 2 * n + np.arange(n)], 1))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", help="folder holding another model_runtime to measure instead")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--only", nargs="*", help="row names to run (the old welding takes ~9 GB: leave it out)")
    args = ap.parse_args()
    prefix = f"import sys; sys.path.insert(0, {args.runtime!r})\n" if args.runtime else ""
    env = {"PYTHONPATH": args.runtime} if args.runtime else {}
    rows = [(c.id, READERS[c.reader].setup, READERS[c.reader].call, c.make) for c in CASES
            if (c.peak_mb is not None or c.seconds is not None) and READERS[c.reader].call]
    rows.append(("weld-20k-on-one-point", WELD_SETUP, "build_connectivity(mesh)", None))
    if args.only:
        rows = [r for r in rows if r[0] in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        for name, setup, call, make in rows:
            folder = Path(tmp) / name
            folder.mkdir()
            path = make(folder) if make else None
            try:
                r = run_bounded(f"{prefix}{setup}\nPATH = {str(path)!r}", call, timeout=args.timeout, env=env)
                print(f"{name:28s} {str(r['error']):16s} {r['seconds']:7.1f} s {r['peak_mb']:8.0f} MB")
            except Exception as exc:  # e.g. the old code running past the timeout
                print(f"{name:28s} {type(exc).__name__}: {str(exc)[-80:]}")


if __name__ == "__main__":
    main()
