"""`partfield info CKPT`: what a checkpoint file is."""
import argparse
import json
from pathlib import Path

EXAMPLES = [
    "partfield info",
    "partfield info --json",
]


def add_parser(subparsers, help_line):
    p = subparsers.add_parser("info", help=help_line, description=help_line,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES))
    p.add_argument("checkpoint", nargs="?", help="checkpoint file (.ckpt, .pt, .safetensors); default: the bundled model")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..checkpoint import DEAD_PREFIXES, build_network, load_weights
    from ..field_model import default_model_path

    path = Path(args.checkpoint) if args.checkpoint else default_model_path()
    weights = load_weights(path)
    net = build_network(weights, source=path.name)  # validates keys, shapes, finiteness
    used = sum(t.numel() for k, t in weights.state_dict.items() if not k.startswith(DEAD_PREFIXES))
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in weights.state_dict.values()})
    info = {
        "file": str(path),
        "size_mb": round(path.stat().st_size / 2**20, 1),
        "format": weights.kind,
        "config": weights.config.to_dict(),
        "tensors": len(weights.state_dict),
        "parameters": weights.parameter_count,
        "parameters_used_at_inference": used,
        "network_parameters": sum(p.numel() for p in net.parameters()),
        "dtypes": dtypes,
        "metadata": {k: v for k, v in weights.metadata.items() if k != "training_config"},
    }
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    cfg = weights.config
    print(f"file:        {info['file']} ({info['size_mb']} MB)")
    print(f"format:      {weights.kind}  ({', '.join(dtypes)})")
    print(f"network:     {cfg.name}: planes {cfg.plane_resolution}^2 x {cfg.feature_dim} features, "
          f"transformer {cfg.transformer_depth} x {cfg.transformer_width}, PVConv {cfg.pvconv_channels}; "
          f"input: points{' + normals' if cfg.point_normals else ''}")
    print(f"tensors:     {info['tensors']}")
    print(f"parameters:  {info['parameters']:,} ({used:,} used at inference)")
    for k, v in info["metadata"].items():
        print(f"{k + ':':<13}{v}")
    return 0
