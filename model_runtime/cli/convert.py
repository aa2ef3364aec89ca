"""`python -m model_runtime convert IN OUT`: compact weights-only safetensors (fp16 by default)."""
import time
from pathlib import Path


def add_parser(subparsers, help_line):
    p = subparsers.add_parser("convert", help=help_line, description=help_line)
    p.add_argument("checkpoint", help="input checkpoint (.ckpt Lightning file, .pt state_dict, .safetensors)")
    p.add_argument("output", help="output .safetensors file")
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16",
                   help="storage precision (default fp16: half the size, features within ~1e-3)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..checkpoint import build_network, load_weights, save_compact

    src, dst = Path(args.checkpoint), Path(args.output)
    t0 = time.perf_counter()
    weights = load_weights(src)
    build_network(weights, source=src.name)  # refuse to convert something that does not load
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    meta = {k: v for k, v in weights.metadata.items() if v is not None}
    meta["converted_from"] = src.name
    if weights.kind == "lightning" and "licence" not in meta:
        meta["licence"] = "NVIDIA non-commercial licence (research and evaluation only)"
        meta["name"] = "PartField (NVIDIA, model_objaverse)"
    save_compact(dst, weights.state_dict, weights.config, meta, dtype=dtype)
    print(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MB, {args.dtype}) from {src.name} "
          f"({src.stat().st_size / 2**20:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    return 0
