"""`python -m model_runtime train`: train our own PartField model on procedural part data.

Example (the bundled model): `python -m model_runtime train --out runs/small --minutes 70`
Resume after an interruption with the same command plus `--resume`.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers, help_line: str) -> None:
    p = subparsers.add_parser("train", help=help_line, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, model.safetensors, log.jsonl)")
    p.add_argument("--config", default="small", choices=["small", "small-normals", "tiny"],
                   help="network: small (default), small-normals (also reads surface normals), tiny")
    p.add_argument("--steps", type=int, help="stop after this many optimiser steps (in total, across resumes)")
    p.add_argument("--minutes", type=float, help="stop after this many minutes of training (in total)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt when present")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4, help="shapes per step (default 4)")
    p.add_argument("--points", type=int, help="input points per shape (default: the config's num_points)")
    p.add_argument("--queries", type=int, default=2048, help="labelled query points per shape")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100, help="linear learning-rate warm-up steps (default 100)")
    p.add_argument("--init", metavar="PATH",
                   help="fine-tune: start the network from this model file (e.g. "
                        "model_runtime/weights/partfield_small.safetensors; its config must equal --config's), "
                        "with a fresh optimiser")
    p.add_argument("--mix", default="default", choices=["default", "weak", "weak-heavy"],
                   help="training categories: default (the bundled model's mix), weak (the default plus the "
                        "weak kinds of issue 20: busts, humans, animals, fish, birds, bearings, machine parts; "
                        "about 29%% of the shapes) or weak-heavy (the same kinds, about 55%%)")
    p.add_argument("--checkpoint-minutes", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: on a shared 2-core machine one thread is fastest)")
    p.add_argument("--welded-fraction", type=float, default=0.5,
                   help="share of non-organic training shapes meshed as one welded surface (default 0.5; "
                        "the rest are loose pieces, one per primitive)")
    p.add_argument("--autocast", default="auto", choices=["auto", "bf16", "off"],
                   help="mixed precision for the encoder (default auto: bf16 on CUDA and on CPUs with "
                        "native bf16 such as AVX512-BF16, fp32 elsewhere; off = fp32 throughout)")
    p.add_argument("--proposals", type=int, default=8,
                   help="part proposals scored per shape and step (default 8; each gets 64 anchor/positive "
                        "pairs against 192 negatives)")
    p.add_argument("--export", metavar="PATH", help="also write the compact fp16 model here at the end")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..training.loss import LossConfig
    from ..training.trainer import Trainer, TrainOptions, export_compact

    if args.steps is None and args.minutes is None:
        print("error: give --steps or --minutes", file=sys.stderr)
        return 2
    if args.proposals < 1:
        print("error: --proposals must be at least 1", file=sys.stderr)
        return 2
    opts = TrainOptions(out=args.out, config=args.config, steps=args.steps, minutes=args.minutes,
                        device=args.device, resume=args.resume, seed=args.seed, batch=args.batch,
                        n_input=args.points, n_query=args.queries, lr=args.lr, warmup=args.warmup,
                        init=args.init, mix=args.mix,
                        checkpoint_minutes=args.checkpoint_minutes, threads=args.threads,
                        welded_fraction=args.welded_fraction, autocast=args.autocast,
                        loss=LossConfig(proposals_per_shape=args.proposals))
    if args.warmup < 0:
        print("error: --warmup must be at least 0", file=sys.stderr)
        return 2
    trainer = Trainer(opts, log=lambda s: print(s, flush=True))  # a bad --init: CheckpointError, one line
    print(f"training {trainer.cfg.name} on {trainer.device} "
          f"({sum(p.numel() for p in trainer.net.parameters()):,} parameters, encoder "
          f"{'bf16 autocast' if trainer.use_bf16 else 'fp32'}) -> {args.out}", flush=True)
    trainer.run()
    if args.export:
        export_compact(trainer.net, args.export, trainer.metadata())
        print(f"exported {args.export}")
    return 0
