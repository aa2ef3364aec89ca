"""Loading the released-format Lightning checkpoint vs the compact fp16 safetensors copy.

Writes full-size stand-in weights (``reference_state_dict`` of the 203-key manifest, ~107M
parameters) in the released checkpoint's Lightning structure, with a fake Adam state of the same
size (so the file is ~1.3 GB like the real one), converts it once with the download path's
``convert_to_compact``, then times ``checkpoint.load_weights`` on both files: until it returns,
until every byte has been read (the criterion: >= 3x), until fp32 copies exist, and end to end
through ``FieldModel.load``; with the page cache warm and with the files evicted from it
(``posix_fadvise(DONTNEED)``, where the OS supports it).
Everything is written under a temporary folder (default /tmp) and deleted at the end.

    .venv/bin/python benchmarks/bench_checkpoint_load.py [--repeats 5] [--threads 2] [--tmp /tmp] [--no-field-model]
"""
import argparse
import collections
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _yacs_cfgnode_class():
    """A stand-in for yacs' CfgNode that pickles under the name ``yacs.config.CfgNode``, as the
    released file's ``hyper_parameters["cfg"]`` does (registered only while saving)."""
    mod = types.ModuleType("yacs.config")

    class CfgNode(dict):
        pass

    CfgNode.__module__ = "yacs.config"
    CfgNode.__qualname__ = "CfgNode"
    mod.CfgNode = CfgNode
    return mod, CfgNode


def write_lightning_standin(path: Path, state: dict) -> None:
    import torch

    mod, CfgNode = _yacs_cfgnode_class()
    cfg = CfgNode(triplane_channels_low=128, triplane_channels_high=512, triplane_resolution=128,
                  n_point_per_face=1000, n_sample_each=10000, is_pc=False)
    cfg["pvcnn"] = CfgNode(point_encoder_type="pvcnn", z_triplane_channels=256, z_triplane_resolution=128)
    for node in (cfg, cfg["pvcnn"]):
        node.__dict__.update({"__immutable__": False, "__deprecated_keys__": set(),
                              "__renamed_keys__": {}, "__new_allowed__": False})
    adam_state = {}
    for i, t in enumerate(state.values()):  # Adam moments: same shapes as the weights
        adam_state[i] = {"step": torch.tensor(123456.0), "exp_avg": t * 1e-3, "exp_avg_sq": t * t * 1e-6}
    ckpt = {
        "epoch": 50,
        "global_step": 123456,
        "pytorch-lightning_version": "2.2.0",
        "state_dict": collections.OrderedDict(state),
        "loops": {},
        "callbacks": {},
        "optimizer_states": [{
            "state": adam_state,
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                              "amsgrad": False, "params": list(range(len(state)))}],
        }],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"cfg": cfg},
    }
    saved = {k: sys.modules.get(k) for k in ("yacs", "yacs.config")}
    sys.modules["yacs"] = types.ModuleType("yacs")
    sys.modules["yacs.config"] = mod
    try:
        torch.save(ckpt, path)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def evict(path: Path) -> bool:
    """Drop the file from the page cache (no root needed); False where unsupported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def time_load(path: Path, cold: bool) -> dict:
    """Seconds until: ``load_weights`` returns ("load"); every page of every tensor has been read
    ("read", the criterion: safetensors hands back memory-mapped tensors whose bytes arrive only on
    first use, so "load" alone flatters it); every tensor is fp32 in memory ("fp32", the extra
    step ``build_network`` does before copying into the network)."""
    import torch

    from model_runtime.checkpoint import load_weights

    if cold:
        evict(path)
    out = {}
    t0 = time.perf_counter()
    w = load_weights(path)
    out["load"] = time.perf_counter() - t0
    for t in w.state_dict.values():  # one element per 1 KiB: faults in every 4 KiB page
        flat = t.reshape(-1)
        step = max(1, 1024 // flat.element_size())
        float(flat[::step].float().sum())
    out["read"] = time.perf_counter() - t0
    ready = {k: v.float() for k, v in w.state_dict.items()}
    out["fp32"] = time.perf_counter() - t0
    assert len(ready) >= 170, len(ready)  # the compact file drops the dead keys
    del w, ready
    return out


def time_field_model(path: Path) -> float:
    """End to end: ``FieldModel.load`` on the CPU (network construction included)."""
    from model_runtime.field_model import FieldModel

    t0 = time.perf_counter()
    m = FieldModel.load(path, device="cpu", precision="fp32")
    dt = time.perf_counter() - t0
    del m
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-field-model", dest="field_model", action="store_false",
                    help="skip the end-to-end FieldModel.load timing")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where to write the ~1.5 GB of files")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from model_runtime import weights_download as wd
    from tests.reference_model import reference_state_dict

    work = Path(tempfile.mkdtemp(prefix="pf_bench_ckpt_", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        state = reference_state_dict()
        n_params = sum(t.numel() for t in state.values())
        ckpt = work / wd.CHECKPOINT_FILENAME
        write_lightning_standin(ckpt, state)
        del state
        t_write = time.perf_counter() - t0

        t0 = time.perf_counter()
        compact = wd.convert_to_compact(ckpt)
        t_convert = time.perf_counter() - t0

        modes = ("warm", "cold") if evict(ckpt) else ("warm",)
        times = {n: {} for n in ("lightning", "compact")}
        for _ in range(args.repeats):
            for name, path in (("lightning", ckpt), ("compact", compact)):
                for m in modes:
                    for what, dt in time_load(path, cold=(m == "cold")).items():
                        times[name].setdefault(f"{m}_{what}", []).append(dt)
                if args.field_model:
                    times[name].setdefault("warm_fieldmodel", []).append(time_field_model(path))

        med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in times.items()}
        summary = {
            "parameters": n_params,
            "keys": len(manifest),
            "lightning_bytes": ckpt.stat().st_size,
            "compact_bytes": compact.stat().st_size,
            "write_standin_s": round(t_write, 2),
            "convert_once_s": round(t_convert, 2),
            "threads": args.threads,
            "repeats": args.repeats,
            "median_s": {n: {k: round(v, 3) for k, v in d.items()} for n, d in med.items()},
            "speedup": {k: round(med["lightning"][k] / med["compact"][k], 2) for k in med["compact"]},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"stand-in weights: {summary['keys']} keys, {summary['parameters']:,} parameters")
    print(f"Lightning file {summary['lightning_bytes'] / 1e6:,.0f} MB, compact fp16 file "
          f"{summary['compact_bytes'] / 1e6:,.0f} MB; one-time conversion {summary['convert_once_s']} s")
    labels = {"load": "load_weights returns", "read": "+ every byte read (criterion)",
              "fp32": "+ fp32 copies in memory", "fieldmodel": "FieldModel.load (CPU, fp32)"}
    for key in summary["speedup"]:
        mode, what = key.split("_")
        lm, cm = summary["median_s"]["lightning"][key], summary["median_s"]["compact"][key]
        print(f"{mode} cache, {labels[what]:<30}: Lightning {lm:.3f} s, compact {cm:.3f} s "
              f"-> {summary['speedup'][key]}x")
    print("JSON " + json.dumps(summary))
    ok = all(v >= 3.0 for k, v in summary["speedup"].items() if k.endswith("_read"))
    print("PASS (>= 3x)" if ok else "FAIL (< 3x)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
