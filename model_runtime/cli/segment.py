"""`python -m model_runtime segment IN --parts 8 --out OUT`: segment a mesh file into parts.

Writes into OUT (a folder): `<name>_k<k>.labels.npy` (int32 label per polygon) and
`<name>_k<k>.ply` (faces coloured by part) for every k, and `<name>.labels.json` with all
levels, the model and the timings. `--save-result` also keeps the part tree (npz) so any
other k can be cut later without the network.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def parse_parts(values) -> list:
    """['2..20'] or ['4', '8'] or ['3-6'] -> sorted unique ints >= 1."""
    out = set()
    for v in values:
        for item in str(v).split(","):
            item = item.strip()
            if not item:
                continue
            sep = ".." if ".." in item else ("-" if "-" in item[1:] else None)
            if sep:
                a, b = item.split(sep, 1)
                lo, hi = int(a), int(b)
                if lo > hi:
                    lo, hi = hi, lo
                out.update(range(lo, hi + 1))
            else:
                out.add(int(item))
    if not out or min(out) < 1:
        raise ValueError("--parts needs numbers >= 1, e.g. 8, 4,8,12 or 2..20")
    return sorted(out)


class StageBar:
    """One text progress bar per stage on stderr."""

    def __init__(self, stream=None, width=30):
        self.stream = stream or sys.stderr
        self.width = width
        self.stage = None
        self.t0 = time.perf_counter()
        self.last = -1
        self.drawn = 0.0

    def __call__(self, stage, fraction):
        if stage != self.stage:
            self.finish()
            self.stage, self.t0, self.last = stage, time.perf_counter(), -1
        pct = int(fraction * 100)
        now = time.perf_counter()
        if pct == self.last or (0 < pct < 100 and now - self.drawn < 0.2):
            return  # redraw at most 5 times a second
        self.last, self.drawn = pct, now
        filled = int(self.width * fraction)
        self.stream.write(f"\r{stage:>13} [{'#' * filled}{'.' * (self.width - filled)}] {pct:3d}% "
                          f"{time.perf_counter() - self.t0:6.1f}s")
        self.stream.flush()

    def finish(self):
        if self.stage is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.stage = None


def add_parser(subparsers, help_line):
    p = subparsers.add_parser("segment", help=help_line, description=__doc__)
    p.add_argument("input", type=Path, help="mesh file: .obj, .ply, .off or .glb")
    p.add_argument("--parts", nargs="+", default=["8"], help="part counts: 8, 4,8,12 or 2..20 (default 8)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--checkpoint", type=Path, default=None, help="weights file (default: the bundled model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--precision", default="auto", help="auto, fp32, fp16 or bf16 (default auto)")
    p.add_argument("--points", type=int, default=None, help="network input points (default: the model's)")
    p.add_argument("--features", choices=["quadrature", "random"], default="quadrature",
                   help="per-face features: texel-aware quadrature (default) or the original's random samples")
    p.add_argument("--samples-per-face", type=int, default=1000, help="for --features random (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-memory-mb", type=int, default=None, help="decode memory cap per chunk")
    p.add_argument("--no-weld", action="store_true", help="do not weld coincident vertices (UV seams)")
    p.add_argument("--bridge", default="spanning_tree", choices=["chain", "knn_mst", "spanning_tree"],
                   help="how loose pieces are joined (default spanning_tree)")
    p.add_argument("--clustering", default="fused", choices=["fused", "features"],
                   help="part tree from the features fused with creases and loose pieces (default) "
                        "or from the features alone (as in the paper)")
    p.add_argument("--touching-only", action="store_true",
                   help="never join parts that do not touch (by default, cuts coarser than the tree's "
                        "natural one may join look-alike parts such as a chair's legs)")
    p.add_argument("--save-result", action="store_true", help="also write <name>.partfield.npz (features + tree)")
    p.add_argument("--no-mesh", action="store_true", help="skip the coloured .ply files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..errors import InputError
    from ..meshio import read_mesh, write_colored_ply

    try:
        ks = parse_parts(args.parts)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    bar = None if args.quiet else StageBar()
    t_all = time.perf_counter()
    if bar:
        bar("reading mesh", 0.0)
    mesh = read_mesh(args.input)
    mesh.validate()  # bad input fails here, before torch and the model are loaded
    if bar:
        bar("reading mesh", 1.0)
    from ..face_features import DEFAULT_MAX_MEMORY_MB
    from ..field_model import get_model
    from ..pipeline import SegmentOptions, segment_mesh

    if bar:
        bar("loading model", 0.0)
    model = get_model(args.checkpoint, device=args.device, precision=args.precision)
    if bar:
        bar("loading model", 1.0)
    options = SegmentOptions(
        num_points=args.points, seed=args.seed, feature_method=args.features,
        samples_per_face=args.samples_per_face, max_memory_mb=args.max_memory_mb or DEFAULT_MAX_MEMORY_MB,
        weld=not args.no_weld, bridge=args.bridge, clustering=args.clustering, group_alike=not args.touching_only,
    )
    try:
        result = segment_mesh(mesh, model, options, progress=bar)
    finally:
        if bar:
            bar.finish()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.input.stem
    levels = {}
    for k in ks:
        k_eff = min(k, result.num_polygons)
        labels = result.labels(k_eff)
        levels[str(k)] = labels.tolist()
        import numpy as np

        np.save(out / f"{name}_k{k}.labels.npy", labels.astype(np.int32))
        if not args.no_mesh:
            write_colored_ply(out / f"{name}_k{k}.ply", mesh, labels)
    doc = {
        "input": str(args.input),
        "polygons": result.num_polygons,
        "parts": ks,
        "labels": levels,
        "model": result.metadata.get("model", {}),
        "options": result.metadata.get("options", {}),
        "warnings": result.metadata.get("warnings", []),
        "timings": {**result.metadata.get("timings", {}), "total_s": round(time.perf_counter() - t_all, 3)},
    }
    (out / f"{name}.labels.json").write_text(json.dumps(doc))
    if args.save_result:
        result.save(out / f"{name}.partfield.npz")
    for w in doc["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    span = f"{ks[0]}" if len(ks) == 1 else f"{ks[0]}..{ks[-1]}"
    print(f"{name}: {result.num_polygons:,} polygons -> parts {span} written to {out}")
    return 0
