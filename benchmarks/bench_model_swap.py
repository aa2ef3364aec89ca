"""Segment time of two model files on the same ~100k-face mesh (CPU, one thread), alternated,
median of `--repeats`: the check that a model swap of the same architecture leaves the
runtime's cost unchanged (`--before-dims` / `--after-dims`: also a change of the spectral
eigenvector count; `--before-views` / `--after-views`: of the test-time views). Prints one JSON
line per run and a summary line.

  .venv/bin/python benchmarks/bench_model_swap.py model_runtime/weights/partfield_small.safetensors \
      runs/ft_weak/model.safetensors --faces 100000 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--faces", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--before-dims", type=int, help="spectral eigenvectors of the before side (default: the runtime's)")
    p.add_argument("--after-dims", type=int, help="the same for the after side")
    p.add_argument("--before-views", type=int, help="test-time views of the before side (default: the runtime's)")
    p.add_argument("--after-views", type=int, help="the same for the after side")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from bench_segmentation import torus

    from model_runtime.field_model import FieldModel
    from model_runtime.mesh import MeshArrays
    from model_runtime.pipeline import SegmentOptions, segment_mesh

    v, f = torus(args.faces)
    mesh = MeshArrays.from_triangles(v, f)
    models = {name: FieldModel.load(path, device="cpu", precision="auto")
              for name, path in (("before", args.before), ("after", args.after))}
    walls: dict = {name: [] for name in models}
    options = {name: {key: value for key, value in (("spectral_dims", getattr(args, f"{name}_dims")),
                                                    ("test_time_views", getattr(args, f"{name}_views")))
                      if value is not None} for name in models}
    for rep in range(args.repeats):
        for name, model in models.items():
            t = time.perf_counter()
            res = segment_mesh(mesh, model, SegmentOptions(**options[name]))
            wall = time.perf_counter() - t
            walls[name].append(wall)
            print(json.dumps({"model": name, "faces": len(f), "wall_s": round(wall, 3),
                              "views": res.metadata["options"]["test_time_views"], **res.metadata["timings"],
                              "load": os.getloadavg()[0]}), flush=True)
    med = {name: statistics.median(w) for name, w in walls.items()}
    print(json.dumps({"faces": len(f), "before_median_s": round(med["before"], 3),
                      "after_median_s": round(med["after"], 3), "ratio": round(med["after"] / med["before"], 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
