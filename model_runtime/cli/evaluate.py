"""`python -m model_runtime evaluate`: segmentation quality (the paper's part mIoU).

For each shape: per-face features -> Ward tree on the face adjacency -> cuts k = 2..20;
score = mean over ground-truth parts of the best IoU with a predicted part. Reported as
best-of-k and at one fixed k per dataset, overall and per category, for the model, the
untrained network (control: the model file's architecture with random weights) and the
baselines (one part, Ward on position+normal, spectral features of the face graph).

The COSEG subset is looked up at --coseg-dir, else $PARTFIELD_COSEG_DIR, else
../shared/datasets/coseg_subset next to the checkout.

examples:
  partfield evaluate --dataset procedural --per-category 3
  partfield evaluate --dataset coseg --coseg-dir datasets/coseg_subset --json scores.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

DEFAULT_COSEG = Path(os.environ.get("PARTFIELD_COSEG_DIR")
                     or Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "coseg_subset")
ALL_METHODS = ["model", "model_features", "untrained", "one_part", "ward_posnormal", "spectral", "spectral_alike",
               "model_tta"]


def add_parser(subparsers, help_line: str) -> None:
    p = subparsers.add_parser("evaluate", help=help_line, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="model file (.safetensors/.ckpt/.pt); default: the bundled model")
    p.add_argument("--dataset", default="all", choices=["procedural", "coseg", "all", "weak"],
                   help="weak: the held-out shapes of the weak kinds of issue 20 (busts, humans, animals, "
                        "fish, birds, bearings, machine parts); not part of 'all'")
    p.add_argument("--categories", help="comma-separated categories of the procedural or weak set")
    p.add_argument("--coseg-dir", default=str(DEFAULT_COSEG), help="COSEG subset folder")
    p.add_argument("--per-category", type=int, default=3, help="held-out procedural shapes per category")
    p.add_argument("--methods", default=",".join(ALL_METHODS),
                   help=f"comma-separated subset of {','.join(ALL_METHODS)}")
    p.add_argument("--points", type=int, help="input points per shape (default: the model's num_points)")
    p.add_argument("--face-method", default="quadrature", choices=["quadrature", "random"],
                   help="per-face feature: the runtime's texel quadrature (default) or random samples")
    p.add_argument("--face-samples", type=int, default=4, help="random samples per face (--face-method random)")
    p.add_argument("--touching-only", action="store_true",
                   help="model methods: build the tree on touching parts only (no look-alike merges above "
                        "its natural cut; the runtime's behaviour before 2026-11-29)")
    p.add_argument("--views", type=int, default=None,
                   help="model, model_features and untrained: test-time views, the field averaged over the mesh "
                        "and its mirror images (default: the runtime's for the model file, 4 for our own models "
                        "since 2026-12-01; 1 is off, what 'model' meant before)")
    p.add_argument("--tta", type=int, default=4,
                   help="model_tta: the model's field averaged over this many rigid views of --tta-set "
                        "(test-time augmentation)")
    p.add_argument("--tta-set", default="mirror", choices=["axes", "mirror"],
                   help="model_tta: axes = identity then cyclic axis permutations; mirror = identity then "
                        "mirror images across the coordinate planes")
    p.add_argument("--spectral-dims", type=int,
                   help="model methods: eigenvectors in the fused space's spectral block (default: the runtime's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, help="evaluate only the first N shapes of each dataset")
    p.add_argument("--json", help="write all per-shape scores and summaries here")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def _methods(args, log):
    import torch

    from ..augmentation import default_views
    from ..field_model import FieldModel
    from ..network import PartFieldNet
    from ..training import evaluation as ev

    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(ALL_METHODS))
    if unknown:
        raise SystemExit(f"unknown methods: {', '.join(unknown)}")
    methods, info = [], {}
    if {"model", "model_features", "untrained", "model_tta"} & set(wanted):
        # the untrained control has the architecture of the model file (default: the bundled one)
        model = FieldModel.load(args.checkpoint, device=args.device, precision="fp32")
        cfg = model.config
        # test-time views of the model methods and the untrained control (the runtime's default for the file)
        views = default_views(model) if args.views is None else args.views
    if "model" in wanted or "model_features" in wanted:
        info["model"] = model.describe()
        info["model"]["metadata"] = {k: v for k, v in model.metadata.items() if k != "partfield_config"}
        info["model"]["test_time_views"] = views
        shared: dict = {}  # one network pass per shape for both clusterings
        for name, clustering in (("model", "fused"), ("model_features", "features")):
            if name in wanted:
                methods.append(ev.model_method(name, model, args.points or cfg.num_points, args.face_samples,
                                               args.face_method, clustering, shared,
                                               group_alike=not args.touching_only, views=views,
                                               spectral_dims=args.spectral_dims))
    if "model_tta" in wanted:
        methods.append(ev.model_method("model_tta", model, args.points or cfg.num_points, args.face_samples,
                                       args.face_method, group_alike=not args.touching_only, views=args.tta,
                                       view_set=args.tta_set, spectral_dims=args.spectral_dims))
        info["model_tta"] = {"test_time_views": args.tta, "view_set": args.tta_set}
    if "untrained" in wanted:
        torch.manual_seed(0)
        net = PartFieldNet(cfg)
        control = FieldModel(net, torch.device(args.device), torch.float32, "untrained (random init, seed 0)")
        methods.append(ev.model_method("untrained", control, args.points or cfg.num_points, args.face_samples,
                                       args.face_method, group_alike=not args.touching_only, views=views))
    for m in ev.baseline_methods():
        if m.name in wanted:
            methods.append(m)
    return methods, info


def run(args) -> int:
    import torch

    from ..training import evaluation as ev

    torch.set_num_threads(max(1, args.threads))
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    methods, info = _methods(args, log)
    report = {"command": "python -m model_runtime evaluate " + " ".join(_argv(args)), "models": info,
              "datasets": {}}
    sets = []
    cats = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    if args.dataset == "weak":
        sets.append(("weak", ev.weak_set(args.per_category, cats)))
    if args.dataset in ("procedural", "all"):
        sets.append(("procedural", ev.procedural_set(args.per_category, cats)))
    if args.dataset in ("coseg", "all"):
        sets.append(("coseg", ev.load_coseg(args.coseg_dir)))
    for name, shapes in sets:
        if args.limit:
            shapes = shapes[: args.limit]
        log(f"== {name}: {len(shapes)} shapes, methods: {', '.join(m.name for m in methods)}")
        res = ev.evaluate(shapes, methods, log=log)
        for level, scores in [("", res["scores"])] + sorted(res["levels"].items()):
            key = f"{name}_{level}" if level else name
            summary = ev.summarise(shapes, scores)
            sugg = ev.summarise_suggested(shapes, res["suggested"], level)
            report["datasets"][key] = {"summary": summary, "seconds": res["seconds"], "scores": scores,
                                       "suggested": {m: {s: [k, v[level]] for s, (k, v) in per.items()}
                                                     for m, per in res["suggested"].items()},
                                       "suggested_summary": sugg}
            print(ev.format_table(summary, f"{key} ({len(shapes)} shapes)"), flush=True)
            print(flush=True)
            print(ev.format_suggested(sugg, f"{key} ({len(shapes)} shapes)"), flush=True)
            print(flush=True)
        if args.json:  # written after every dataset, so a long run keeps what it finished
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


def _argv(args) -> list:
    out = []
    for key in ("checkpoint", "dataset", "categories", "per_category", "methods", "points", "face_method", "views",
                "tta", "tta_set", "spectral_dims", "limit"):
        v = getattr(args, key, None)
        if v is not None:
            out.append(f"--{key.replace('_', '-')} {v}")
    if getattr(args, "touching_only", False):
        out.append("--touching-only")
    return out
