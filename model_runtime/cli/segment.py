"""`partfield segment IN... --parts 8 --out OUT`: segment mesh files into parts.

Writes into OUT (a folder), per input NAME: `NAME_k<k>.labels.npy` (int32 label per polygon)
and `NAME_k<k>.ply` (faces coloured by part) for every part count k made, and
`NAME.labels.json` with all levels, the model and the timings. `--save-result` also keeps the
part tree (npz) so any other k can be cut later without the network.

Every argument is checked before anything is loaded or written: the part counts, the output
folder, every input (files, or folders of meshes), the checkpoint and the device.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

from ..errors import InputError
from ..part_counts import AUTO, SYNTAX, looks_like_part_counts, parse_part_counts, resolve_part_counts

EXAMPLES = [
    "partfield segment chair.obj --out out",
    "partfield segment chair.obj --parts 2..10:2 --out out",
    "partfield segment chair.obj table.stl --parts 4,8,auto --out out --save-result",
    "partfield segment meshes/ --parts auto --device cpu --out out",
]
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_OUTPUT_MESH = re.compile(r"_k\d+\.ply$", re.IGNORECASE)


def parse_parts(values) -> list:
    """['2..20'] or ['4,8', '12'] -> sorted unique ints >= 1 (the shared syntax, numbers only)."""
    return list(parse_part_counts(values, allow_auto=False))


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


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


class IntermixedParser(argparse.ArgumentParser):
    """Inputs may come before and after options (`segment a.obj --parts 4 b.obj`)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def add_parser(subparsers, help_line):
    p = subparsers.add_parser("segment", help=help_line, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES))
    p.__class__ = IntermixedParser
    p.add_argument("input", type=Path, nargs="+", metavar="INPUT",
                   help="mesh files (.obj .ply .off .stl .glb .gltf) or folders of them (searched recursively; "
                        "hidden files, the --out folder and earlier outputs NAME_kK.ply are left out)")
    p.add_argument("--parts", action="append", default=None, metavar="K",
                   help=f"part counts: {SYNTAX} (the cut the part tree suggests); repeatable (default 8)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--checkpoint", type=Path, default=None, help="weights file (default: the bundled model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="network precision (default auto: fp16 on CUDA, fp32 elsewhere)")
    p.add_argument("--points", type=positive_int, default=None, help="network input points (default: the model's)")
    p.add_argument("--features", choices=["quadrature", "random"], default="quadrature",
                   help="per-face features: texel-aware quadrature (default) or the original's random samples")
    p.add_argument("--samples-per-face", type=positive_int, default=1000, help="for --features random (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-memory-mb", type=positive_int, default=None, help="decode memory cap per chunk")
    p.add_argument("--no-weld", action="store_true", help="do not weld coincident vertices (UV seams)")
    p.add_argument("--bridge", default="spanning_tree", choices=["chain", "knn_mst", "spanning_tree"],
                   help="how loose pieces are joined (default spanning_tree)")
    p.add_argument("--clustering", default="fused", choices=["fused", "features"],
                   help="part tree from the features fused with creases and loose pieces (default) "
                        "or from the features alone (as in the paper)")
    p.add_argument("--touching-only", action="store_true",
                   help="never join parts that do not touch (by default, cuts coarser than the tree's "
                        "natural one may join look-alike parts such as a chair's legs)")
    p.add_argument("--views", type=int, default=None, choices=[1, 2, 3, 4], metavar="N",
                   help="test-time views: the field averaged over the mesh and its mirror images, 1..4 "
                        "(default: the model's, 4 for our own models and 1 for NVIDIA's released one)")
    p.add_argument("--save-result", action="store_true", help="also write <name>.partfield.npz (features + tree)")
    p.add_argument("--no-mesh", action="store_true", help="skip the coloured .ply files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


# ------------------------------------------------------------------------------ validation
def check_out_folder(out: Path) -> Path:
    """The output folder must be a folder (or creatable as one) we can write to."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder (it is created when missing)")
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing != out and not existing.is_dir():
        raise InputError(f"--out {out}: {existing} is a file, so the folder cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: {existing} is not writable")
    return out


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def collect_inputs(specs, out: Path) -> list[Path]:
    """Files as given, folders expanded to the mesh files under them (sorted; hidden files
    and the output folder left out). Raises InputError naming the first bad input."""
    from ..meshio import BATCH_HINT, BLENDER_FORMATS, READERS, format_problem, supported_suffixes

    names = ", ".join(s[1:].upper() for s in supported_suffixes())
    files: list[Path] = []
    for spec in specs:
        spec = Path(spec).expanduser()
        if spec.is_dir():
            found, blender_only = [], []
            for f in sorted(spec.rglob("*")):
                rel = f.relative_to(spec).parts
                if any(part.startswith(".") for part in rel) or not f.is_file() or _inside(f, out):
                    continue
                if _OUTPUT_MESH.search(f.name):
                    continue  # a coloured mesh written by an earlier run
                suffix = f.suffix.lower()
                if suffix in READERS:
                    found.append(f)
                elif suffix in BLENDER_FORMATS:
                    blender_only.append(f)
            if not found:
                extra = (f"; its {len(blender_only)} .blend/.fbx file(s) need Blender: {BATCH_HINT}"
                         if blender_only else "")
                raise InputError(f"{spec}: a folder with no mesh files ({names}){extra}")
            files.extend(found)
        elif spec.is_file():
            problem = format_problem(spec)
            if problem:
                raise InputError(problem)
            files.append(spec)
        elif looks_like_part_counts(spec.name):
            raise InputError(f"{spec}: no such file; several part counts go in one --parts value "
                             f"(--parts 4,8 or --parts 2..8), not as separate words")
        else:
            raise InputError(f"{spec}: no such file or folder")
    unique, seen = [], set()
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def output_names(paths) -> list[str]:
    """One distinct output name per input: the file name without suffix, and where two
    inputs share it, the folder name first (`a-chair`, `b-chair`), then the format, then a
    number."""
    paths = [Path(p).resolve() for p in paths]
    names = [p.stem for p in paths]
    rules = (lambda p: f"{p.parent.name}-{p.stem}" if p.parent.name else p.stem,
             lambda p: f"{p.parent.name}-{p.stem}-{p.suffix[1:].lower()}")

    def clashing(ns):
        counts = Counter(n.lower() for n in ns)
        return [i for i, n in enumerate(ns) if counts[n.lower()] > 1]

    for rule in rules:
        clash = clashing(names)
        if not clash:
            return names
        for i in clash:
            names[i] = rule(paths[i])
    seen = Counter()
    for i in clashing(names):
        seen[names[i].lower()] += 1
        names[i] = f"{names[i]}-{seen[names[i].lower()]}"
    return names


def check_device(device: str, precision: str) -> None:
    """An unavailable device or precision is refused before any mesh is read (imports torch)."""
    name = (device or "auto").lower()
    if not _DEVICE.fullmatch(name):
        raise InputError(f"--device {device}: unknown device; use auto, cpu, cuda, cuda:N or mps")
    if name in ("auto", "cpu") and (precision or "auto").lower() in ("auto", "fp32"):
        return  # always available: no need to import torch yet
    from ..device import resolve_device, resolve_precision

    try:
        dev = resolve_device(name)
        if dev.type == "cuda" and dev.index is not None:
            import torch

            if dev.index >= torch.cuda.device_count():
                raise ValueError(f"there are {torch.cuda.device_count()} CUDA devices, so {name} does not exist")
        resolve_precision(precision, dev)
    except ValueError as exc:
        raise InputError(f"--device {device} --precision {precision}: {exc}") from exc


def _span(ks) -> str:
    ks = list(ks)
    if len(ks) > 2 and ks == list(range(ks[0], ks[-1] + 1)):
        return f"{ks[0]}..{ks[-1]}"
    return ",".join(map(str, ks))


# ------------------------------------------------------------------------------------ run
def run(args) -> int:
    requested = args.parts or ["8"]
    print(f"partfield segment: {len(args.input)} input(s), parts {','.join(requested)} -> {args.out}", flush=True)
    try:
        counts = parse_part_counts(requested)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    out = check_out_folder(args.out)
    inputs = collect_inputs(args.input, out)
    names = output_names(inputs)
    for path, name in zip(inputs, names):
        if name != path.stem:
            print(f"note: {path} is written as {name} (another input has the same file name)", file=sys.stderr)
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise InputError(f"--checkpoint {args.checkpoint}: no such file")
    check_device(args.device, args.precision)

    from ..meshio import read_mesh

    bar = None if args.quiet else StageBar()
    meshes = []
    for i, path in enumerate(inputs):
        if bar:
            bar("reading mesh", i / len(inputs))
        mesh = read_mesh(path)
        mesh.validate()  # every input is checked before the model is loaded
        meshes.append(mesh)
    if bar:
        bar("reading mesh", 1.0)

    from ..face_features import DEFAULT_MAX_MEMORY_MB
    from ..field_model import get_model
    from ..pipeline import SegmentOptions

    if bar:
        bar("loading model", 0.0)
    model = get_model(args.checkpoint, device=args.device, precision=args.precision)
    if bar:
        bar("loading model", 1.0)
        bar.finish()
    options = SegmentOptions(
        num_points=args.points, seed=args.seed, feature_method=args.features,
        samples_per_face=args.samples_per_face, max_memory_mb=args.max_memory_mb or DEFAULT_MAX_MEMORY_MB,
        weld=not args.no_weld, bridge=args.bridge, clustering=args.clustering, group_alike=not args.touching_only,
        test_time_views=args.views,
    )
    failed = 0
    for path, name, mesh in zip(inputs, names, meshes):
        try:
            segment_one(path, name, mesh, model, options, counts, requested, out, args, bar)
        except InputError as exc:
            if len(inputs) == 1:
                raise
            failed += 1
            print(f"error: {path}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def segment_one(path, name, mesh, model, options, counts, requested, out, args, bar) -> None:
    import numpy as np

    from ..meshio import write_colored_ply
    from ..part_counts import suggested_part_count
    from ..pipeline import segment_mesh

    t0 = time.perf_counter()
    try:
        result = segment_mesh(mesh, model, options, progress=bar)
    finally:
        if bar:
            bar.finish()
    suggested = suggested_part_count(result) if AUTO in counts else None
    ks, notes = resolve_part_counts(counts, result.num_polygons, suggested)
    for note in notes:
        print(f"note: {name}: {note}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    levels = {}
    for k in ks:
        labels = result.labels(k).astype(np.int32)
        levels[str(k)] = labels.tolist()
        _atomic_write(out / f"{name}_k{k}.labels.npy", _npy_bytes(labels))
        if not args.no_mesh:
            write_colored_ply(out / f"{name}_k{k}.ply", mesh, labels)
    doc = {
        "input": str(path),
        "polygons": result.num_polygons,
        "parts": ks,
        "requested_parts": list(requested),
        "suggested_parts": suggested,
        "labels": levels,
        "model": result.metadata.get("model", {}),
        "options": result.metadata.get("options", {}),
        "warnings": result.metadata.get("warnings", []) + notes,
        "timings": {**result.metadata.get("timings", {}), "total_s": round(time.perf_counter() - t0, 3)},
    }
    _atomic_write(out / f"{name}.labels.json", json.dumps(doc).encode())
    if args.save_result:
        result.save(out / f"{name}.partfield.npz")
    for w in result.metadata.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    print(f"{name}: {result.num_polygons:,} polygons -> parts {_span(ks)} written to {out}", flush=True)


def _npy_bytes(array) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _atomic_write(path, data: bytes) -> None:
    """Write `data` under a temporary name next to `path`, then rename: a failed write (disk
    full, interrupt) leaves no truncated file under the final name."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
