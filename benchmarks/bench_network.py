"""Network runtime benchmark: forward time and peak memory for N input points, decoding time
per million query points, fp32 vs bf16 (CPU) or fp16 (CUDA), with the released configuration
and stand-in weights (tests/reference_model.py).

    .venv/bin/python benchmarks/bench_network.py [--points 100000] [--queries 1000000] [--threads 2]
        [--original ADAPTER.py [--rounds 3]]

`--original ADAPTER.py` also times the original implementation in the same run: ours (fp32)
and the original alternate, one process each, `--rounds` times; medians of process CPU time.
ADAPTER.py sits next to (or imports) a checkout of the original and defines
    load(state_dict) -> model                      the 203-key released state_dict, CPU, fp32
    encode(model, points: np.ndarray (N,3)) -> planes
    decode(model, planes, queries: np.ndarray (Q,3)) -> (Q,448) array or tensor
Without it (or when the file is missing) that comparison is skipped, and the output says so.
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model_runtime.checkpoint import LoadedWeights, build_network  # noqa: E402
from model_runtime.config import PartFieldConfig  # noqa: E402
from model_runtime.device import cpu_supports_bf16  # noqa: E402
from model_runtime.field_model import FieldModel  # noqa: E402


DECODE_CALL = 131_072


def stand_in_model(device, dtype, config_name):
    if config_name == "released":
        from tests.reference_model import reference_state_dict

        weights = LoadedWeights(reference_state_dict(), PartFieldConfig.released(), "state_dict")
    else:
        from model_runtime.network import PartFieldNet

        torch.manual_seed(0)
        cfg = PartFieldConfig.small()
        weights = LoadedWeights(PartFieldNet(cfg).state_dict(), cfg, "state_dict")
    return FieldModel(build_network(weights), torch.device(device), dtype, f"stand-in {config_name}", weights)


def surface_points(n, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    p *= np.array([0.9, 0.5, 0.3])
    return p.astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", default="released", choices=["released", "small"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", default="all",
                    choices=["all", "fp32", "bf16", "fp16", "original", "original-impl"],
                    help="one precision per process gives a clean peak-memory figure")
    ap.add_argument("--original", type=Path, default=None, metavar="ADAPTER.py",
                    help="time the original implementation through this adapter file, alternated with ours")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of ours and the original (default 3)")
    ap.add_argument("--save-features", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.precision == "all":
        return run_all(args)
    torch.set_num_threads(args.threads)
    if args.precision == "original-impl":
        return time_original(args)
    dev = torch.device(args.device)
    original_only = args.precision == "original"
    dtypes = [{"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
               "original": torch.float32}[args.precision]]
    pts = surface_points(args.points)
    queries = surface_points(args.queries, seed=1)
    results = {}
    ref_feats = None
    for dtype in dtypes:
        model = stand_in_model(dev, dtype, args.config)
        model.encode(pts[:5000])  # warm-up
        times, cpu_times = [], []
        for _ in range(args.repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            tri = model.encode(pts)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        if original_only:
            # The original's work: PVConv blocks 1-3 and the SDF channels are computed too,
            # and decoding is three grid_sample calls. Same machine, same run.
            net = model.network
            x = torch.from_numpy(pts)[None]
            t0 = time.perf_counter()
            with torch.inference_mode():
                enc = net.pvcnn.pc_encoder
                f0 = torch.cat([x, 2 * x, torch.zeros_like(x[..., :2])], -1).transpose(1, 2).contiguous()
                f = enc.encoder[0](f0, x)
                for block in enc.encoder[1:]:
                    f = block(f, x)
                full = net.triplane_transformer(net.pvcnn(x), field_only=False)
            row_orig = {"forward_s": time.perf_counter() - t0}
            t0 = time.perf_counter()
            with torch.inference_mode():
                nq = min(len(queries), 200_000)
                net.decode(full[:, :, net.config.sdf_channels:], torch.from_numpy(queries[:nq])[None])
            row_orig["decode_s_per_million"] = (time.perf_counter() - t0) * 1e6 / nq
            row_orig["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            print(json.dumps({"original_work_fp32": row_orig}), flush=True)
            return
        # Decode as the per-face feature code does: calls of ~128k queries, results consumed.
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(queries), DECODE_CALL):
            feats = model.decode(tri, queries[start:start + DECODE_CALL])
            if start == 0:
                first = feats[:20000].copy()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dec, dec_cpu = time.perf_counter() - t0, time.process_time() - c0
        feats = first
        name = str(dtype).replace("torch.", "")
        row = {"forward_s": min(times), "decode_s_per_million": dec * 1e6 / len(queries),
               "forward_cpu_s": min(cpu_times), "decode_cpu_s_per_million": dec_cpu * 1e6 / len(queries)}
        if args.save_features:
            np.save(args.save_features, feats[:20000])
        row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if dev.type == "cuda":
            row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        print(json.dumps({name: row}), flush=True)


def load_adapter(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("original_adapter", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    spec.loader.exec_module(module)
    for name in ("load", "encode", "decode"):
        if not callable(getattr(module, name, None)):
            raise SystemExit(f"{path}: the adapter defines no {name}() (see this script's docstring)")
    return module


def time_original(args):
    """The original implementation through the adapter: one forward after a warm-up, then the
    queries decoded in the same calls as ours; process CPU time and wall."""
    from tests.reference_model import reference_state_dict

    adapter = load_adapter(args.original)
    pts = surface_points(args.points)
    queries = surface_points(args.queries, seed=1)
    model = adapter.load(reference_state_dict())
    with torch.inference_mode():
        adapter.encode(model, pts[:5000])  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        planes = adapter.encode(model, pts)
        row = {"forward_s": time.perf_counter() - t0, "forward_cpu_s": time.process_time() - c0}
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(queries), DECODE_CALL):
            adapter.decode(model, planes, queries[start:start + DECODE_CALL])
        row["decode_s_per_million"] = (time.perf_counter() - t0) * 1e6 / len(queries)
        row["decode_cpu_s_per_million"] = (time.process_time() - c0) * 1e6 / len(queries)
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"original_implementation": row}), flush=True)


def compare_with_original(args) -> dict:
    """Ours (fp32) and the original alternated, one process each, medians of process CPU time."""
    import subprocess
    from statistics import median

    if args.original is None:
        return {"skipped": "no --original ADAPTER.py given: the original implementation was not timed"}
    if not args.original.is_file():
        return {"skipped": f"--original {args.original}: no such file; the original implementation was not timed"}
    base = [sys.executable, __file__, "--points", str(args.points), "--queries", str(args.queries),
            "--threads", str(args.threads), "--device", "cpu", "--config", "released", "--repeats", "1"]
    runs = {"ours_fp32": [], "original": []}
    for _ in range(args.rounds):
        for side, extra in (("ours_fp32", ["--precision", "fp32"]),
                            ("original", ["--precision", "original-impl", "--original", str(args.original)])):
            res = subprocess.run(base + extra, capture_output=True, text=True, check=True)
            row = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")][-1]
            runs[side].append(next(iter(row.values())))
    out = {}
    for key in ("forward_cpu_s", "decode_cpu_s_per_million"):
        ours = median(r[key] for r in runs["ours_fp32"])
        theirs = median(r[key] for r in runs["original"])
        out[key] = {"ours_fp32": round(ours, 3), "original": round(theirs, 3), "ratio": round(theirs / ours, 2)}
    out["rounds"] = args.rounds
    return out


def run_all(args):
    """Each precision in its own process; cosine of decoded features against fp32."""
    import subprocess
    import tempfile

    precisions = ["fp32"]
    if args.device.startswith("cuda"):
        precisions += ["fp16", "bf16"]
    elif cpu_supports_bf16():
        precisions.append("bf16")
    rows, feats = {}, {}
    runs = (["original"] if args.config == "released" and args.device == "cpu" else []) + precisions
    with tempfile.TemporaryDirectory() as tmp:
        for prec in runs:
            out = f"{tmp}/{prec}.npy"
            cmd = [sys.executable, __file__, "--points", str(args.points), "--queries", str(args.queries),
                   "--threads", str(args.threads), "--device", args.device, "--config", args.config,
                   "--repeats", str(args.repeats), "--precision", prec, "--save-features", out]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            for line in res.stdout.strip().splitlines():
                if line.startswith("{"):
                    rows.update(json.loads(line))
            if prec != "original":
                feats[prec] = np.load(out)
    a = feats["fp32"]
    for prec in precisions[1:]:
        b = feats[prec]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        name = {"fp16": "float16", "bf16": "bfloat16"}[prec]
        rows[name]["cosine_vs_fp32_min"] = round(float(cos.min()), 6)
        rows[name]["cosine_vs_fp32_mean"] = round(float(cos.mean()), 6)
    summary = {"points": args.points, "queries": args.queries, "threads": args.threads,
               "device": args.device, "config": args.config, "results": rows}
    if args.config == "released" and args.device == "cpu":
        summary["against_the_original_same_run"] = compare_with_original(args)
        skipped = summary["against_the_original_same_run"].get("skipped")
        if skipped:
            print(f"skipped: {skipped}", file=sys.stderr)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
