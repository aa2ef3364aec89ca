"""Cost of test-time augmentation: `segment_mesh` on a ~100k-face mesh with the bundled model
on the CPU (one thread), plain (1 view) against `--views` views, alternating, best of
`--repeats`. Prints one JSON line per run and a summary line.

  .venv/bin/python benchmarks/bench_tta.py --faces 100000 --views 3 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, default=100_000)
    p.add_argument("--views", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from bench_segmentation import torus

    from model_runtime.field_model import FieldModel
    from model_runtime.mesh import MeshArrays
    from model_runtime.pipeline import SegmentOptions, segment_mesh

    v, f = torus(args.faces)
    mesh = MeshArrays.from_triangles(v, f)
    model = FieldModel.load(None, device="cpu", precision="auto")
    best = {}
    for rep in range(args.repeats):
        for views in (1, args.views):
            t = time.perf_counter()
            res = segment_mesh(mesh, model, SegmentOptions(test_time_views=views))
            wall = time.perf_counter() - t
            row = {"views": views, "faces": len(f), "wall_s": round(wall, 3), **res.metadata["timings"],
                   "load": os.getloadavg()[0]}
            print(json.dumps(row), flush=True)
            best[views] = min(best.get(views, 1e9), wall)
    print(json.dumps({"faces": len(f), "plain_s": round(best[1], 3), f"views{args.views}_s": round(best[args.views], 3),
                      "ratio": round(best[args.views] / best[1], 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
