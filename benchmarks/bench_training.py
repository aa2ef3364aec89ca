"""Training step time of the bundled configuration: CPU threads x encoder precision.

Each setting builds a fresh `Trainer` (small config, batch 4, 16k input points, 2,048 queries)
and times real optimiser steps on the procedural data, including data generation; the first
two steps are warm-up and not counted. Run it on an otherwise idle machine: the figures are
per step, and a second busy process on a 2-core machine changes them a lot.

    .venv/bin/python benchmarks/bench_training.py [--steps 5] [--threads 1,2] [--autocast off,bf16]
"""
import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model_runtime.device import cpu_supports_bf16  # noqa: E402
from model_runtime.training.trainer import Trainer, TrainOptions  # noqa: E402


def time_steps(threads: int, autocast: str, steps: int, warmup: int = 2) -> dict:
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(TrainOptions(out=out, steps=steps + warmup, threads=threads, autocast=autocast,
                                       device="cpu"), log=lambda s: None)
        rows = [trainer.train_step() for _ in range(steps + warmup)][warmup:]
    return {"sec": sum(r["sec"] for r in rows) / len(rows), "data_sec": sum(r["data_sec"] for r in rows) / len(rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps per setting (after 2 warm-up steps)")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--autocast", default="off,bf16")
    args = p.parse_args()
    print(f"CPU native bf16: {cpu_supports_bf16()}; {args.steps} timed steps per setting")
    print("| threads | encoder | s/step | of which data | steps per hour |")
    print("|---|---|---|---|---|")
    base = None
    for threads in (int(t) for t in args.threads.split(",")):
        for mode in args.autocast.split(","):
            r = time_steps(threads, mode, args.steps)
            base = base or r["sec"]
            print(f"| {threads} | {'bf16 autocast' if mode == 'bf16' else 'fp32'} | {r['sec']:.3f} "
                  f"({base / r['sec']:.2f}x) | {r['data_sec']:.3f} | {3600 / r['sec']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
