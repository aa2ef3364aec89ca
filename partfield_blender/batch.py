"""PartField headless batch: segment every mesh of many files into parts, without a GUI.

Run it with Blender:
    blender -b --python partfield_blender/batch.py -- INPUT... --output DIR [options]
or with the `bpy` Python module installed:
    python partfield_blender/batch.py -- INPUT... --output DIR [options]

Inputs are files, folders (searched recursively) and glob patterns of .blend .obj .fbx
.glb/.gltf .ply .stl .off. One bad file is reported and the run goes on; the exit status is
1 when any input failed (2 for bad arguments, 130 after Ctrl-C, 143 after SIGTERM). Finished
inputs are skipped on a re-run (--force redoes them); every output is written under a temporary
name, checked to be complete and renamed, so a killed run or a full disk never leaves a
half-written file. Inputs Blender's importers read (.blend .obj .stl .glb .gltf .fbx) are
first opened in a child process, so a file that crashes an importer fails alone instead of
ending the run; .ply and .off are read with the project's own readers. `--shard I/N` takes
every N-th input of the sorted list, starting at I, for Slurm array jobs, Kubernetes indexed
Jobs or one process per GPU. Run with --help for all options.
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROG = "blender -b --python batch.py --"


def _load_plan():
    """The pure helpers next to this file, loaded by path (works as a top-level script,
    from a checkout or an installed extension, before bpy is imported)."""
    name = "partfield_batch_plan"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "batch_plan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


plan = _load_plan()


# ---------------------------------------------------------------------------- arguments
def script_argv(argv=None) -> list[str]:
    """Our arguments: everything after '--' (Blender ignores those); without '--', all of
    argv[1:] when run by plain Python, nothing when run inside the Blender binary."""
    argv = list(sys.argv if argv is None else argv)
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    if "bpy" in sys.modules:  # inside the Blender binary: its own arguments are not ours
        return []
    return argv[1:]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Segment meshes of many files into parts with PartField, headless.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "outputs (in --output, mirroring the input folders), per part count k:\n"
            "  NAME_kK.blend        the scene with the parts written in --mode\n"
            "  NAME_kK.glb / .fbx   one node (object) per part, for game engines\n"
            "  NAME_kK.labels.npy   int32 part label per polygon (objects concatenated)\n"
            "  NAME.labels.json     labels and part counts per object and k\n"
            "  NAME.done.json       written last: marks the input finished\n"
            "  NAME.running.json    exists only while an input is worked on (or if the process died on it)\n"
            "  summary.json         one record per input; .partfield-batch-output marks the folder\n"
            "\nfolders given as inputs skip earlier outputs: folders marked as batch output and\n"
            "files NAME_kK.* next to a NAME.labels.json or NAME.done.json (outputs of batch and segment)\n"
            "\nexamples:\n"
            "  blender -b --python batch.py -- assets/ --output out --parts 4,8 --export glb,labels\n"
            "  python batch.py -- 'lib/**/*.obj' -o out --parts 2..12 --shard $SLURM_ARRAY_TASK_ID/16\n"
            "  python batch.py -- chair.ply -o out --parts 4,auto --set weld=false --export labels\n"
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders (recursive) or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("-k", "--parts", default="8", metavar="K",
                   help="part count(s): 8, 4,8,12, 2..20, 2..20:2, or auto (each object at its "
                        "suggested count, files named _kauto; default 8)")
    p.add_argument("--mode", choices=plan.MODES, default="vertex-groups",
                   help="how parts are written into the .blend (default vertex-groups)")
    p.add_argument("--export", action="append", metavar="FORMATS",
                   help=f"outputs, comma separated or repeated: {', '.join(plan.EXPORTS)} (default blend,labels)")
    p.add_argument("--checkpoint", metavar="PATH", help="model weights (.safetensors/.ckpt/.pt); default: bundled model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="network precision: auto (fp16 on CUDA, fp32 elsewhere), fp32, bf16 (CPUs with "
                        "AVX512-BF16/AMX, CUDA), fp16 (CUDA, MPS)")
    p.add_argument("--objects", default="*", metavar="PATTERN",
                   help="mesh objects to segment: '*' (all, default) or fnmatch name pattern(s), comma separated")
    p.add_argument("--rig", nargs="?", const="skinned", choices=["skinned", "rigid"],
                   help="also make a rig (one bone per part; default binding: skinned); .blend and "
                        ".glb/.fbx outputs carry it")
    p.add_argument("--use-modifiers", action="store_true", help="segment the evaluated mesh (modifiers applied)")
    p.add_argument("--points", type=int, metavar="N", help="surface sample points for the network (default: model's)")
    p.add_argument("--seed", type=int, help="sampling seed (default: pipeline's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="options",
                   help="any other segmentation option (repeatable), e.g. --set feature_method=random "
                        "--set samples_per_face=4")
    p.add_argument("--shard", metavar="I/N", help="process every N-th input starting at I (0-based)")
    p.add_argument("--force", action="store_true", help="redo inputs whose outputs are already finished")
    p.add_argument("--summary", metavar="PATH",
                   help="JSON summary (default OUTPUT/summary.json, or OUTPUT/summary_shardI-of-N.json)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="give up on an input after the process died on it N times (default 3)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.add_argument("--no-isolate", action="store_true",
                   help="open .blend/.obj/.stl/.glb/.gltf/.fbx inputs in this process only, not first in a "
                        "child process "
                        "that survives an importer crash (each such input is read once instead of twice; "
                        "for trusted files)")
    p.add_argument("--probe-timeout", type=float, default=300.0, metavar="S",
                   help="seconds the child process may take to open one input (default 300)")
    p.add_argument("--list", action="store_true", help="print this shard's inputs and output names, then exit")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print tracebacks of failures and what importers and exporters print")
    return p


class Settings:
    """Validated arguments."""

    def __init__(self, args, parser):
        try:
            self.parts = plan.parse_parts(args.parts)
            self.shard = plan.parse_shard(args.shard)
            self.exports = plan.parse_exports(args.export or ["blend,labels"])
            self.extra = plan.parse_assignments(args.options)
        except ValueError as exc:
            parser.error(str(exc))
        if args.points is not None and args.points < 1:
            parser.error("--points must be >= 1")
        self.args = args
        self.output = Path(args.output).expanduser().resolve()
        i, n = self.shard
        if args.summary:
            self.summary = Path(args.summary).expanduser().resolve()
        else:
            self.summary = self.output / ("summary.json" if n == 1 else f"summary_shard{i}-of-{n}.json")
        self.checkpoint = str(Path(args.checkpoint).expanduser().resolve()) if args.checkpoint else None
        if self.checkpoint and not Path(self.checkpoint).is_file():
            parser.error(f"--checkpoint: no such file {args.checkpoint}")

    def fingerprint_for(self, key: str) -> str:
        a = self.args
        ckpt = None
        if self.checkpoint:
            try:
                ckpt = [self.checkpoint, plan.input_signature(self.checkpoint)]
            except OSError:
                ckpt = [self.checkpoint]
        return plan.settings_fingerprint({
            "format": plan.OUTPUT_FORMAT_VERSION, "key": key, "parts": self.parts, "mode": a.mode,
            "exports": self.exports, "checkpoint": ckpt, "objects": a.objects,
            "use_modifiers": a.use_modifiers, "points": a.points, "seed": a.seed, "extra": self.extra,
            "precision": a.precision,
        })


# ---------------------------------------------------------------------------- Blender setup
def import_bpy():
    """Import bpy; as a plain-Python module it gets a private user-resources folder first
    (never ~/.config, and parallel workers never share one). When this script sits in an
    installed extension (<user resources>/extensions/<repo>/<package>/batch.py), that folder's
    `extensions` is linked in, so the add-on it belongs to is found."""
    if "bpy" not in sys.modules and not os.environ.get("BLENDER_USER_RESOURCES"):
        folder = tempfile.mkdtemp(prefix="pf_batch_user_")
        os.environ["BLENDER_USER_RESOURCES"] = folder
        atexit.register(shutil.rmtree, folder, True)
        extensions = installed_extensions_folder()
        if extensions is not None:
            try:
                os.symlink(extensions, os.path.join(folder, "extensions"), target_is_directory=True)
            except OSError as exc:
                print(f"note: cannot link {extensions} into the temporary Blender user folder ({exc}); "
                      "set BLENDER_USER_RESOURCES to the folder holding extensions/", file=sys.stderr)
    import bpy

    return bpy


def installed_extensions_folder():
    """The `extensions` folder this script was installed in, or None (a source checkout)."""
    if HERE.parent.parent.name == "extensions" and (HERE / "blender_manifest.toml").is_file():
        return str(HERE.parent.parent)
    return None


def enable_addon() -> str:
    """Enable the PartField add-on and return its module name: the checkout this script
    sits in (added to sys.path), else the installed extension (bl_ext.<repo>.partfield_blender)."""
    import addon_utils

    candidates = []
    if (HERE / "__init__.py").is_file() and (HERE.parent / "model_runtime").is_dir():
        root = str(HERE.parent)
        if root not in sys.path:
            sys.path.insert(0, root)
        candidates.append(HERE.name)
    for mod in addon_utils.modules(refresh=False):
        name = mod.__name__
        file = getattr(mod, "__file__", None)
        if file and Path(file).resolve().parent == HERE:
            candidates.insert(0, name)
        elif name == "partfield_blender" or name.endswith(".partfield_blender"):
            candidates.append(name)
    errors = []
    for name in dict.fromkeys(candidates):
        loaded, enabled = addon_utils.check(name)
        if enabled and loaded:
            return name
        mod = addon_utils.enable(name, default_set=True, persistent=True,
                                 handle_error=lambda ex: errors.append(f"{name}: {ex}"))
        if mod is not None:
            return name
    where = os.environ.get("BLENDER_USER_RESOURCES", "")
    raise RuntimeError("PartField add-on not found or failed to enable"
                       + (": " + "; ".join(errors) if errors else
                          f" (searched the extensions of BLENDER_USER_RESOURCES={where or '(unset)'}: install the "
                          "extension there, set BLENDER_USER_RESOURCES to the Blender user folder that holds "
                          "extensions/, or run this script from a source checkout)"))


def ensure_addon(name: str) -> None:
    """Loading files must not leave the add-on disabled (factory settings do); re-enable."""
    import addon_utils

    loaded, enabled = addon_utils.check(name)
    if not (loaded and enabled):
        addon_utils.enable(name, default_set=True, persistent=True)


def enable_io_addons() -> None:
    import addon_utils

    for name in ("io_scene_gltf2", "io_scene_fbx"):
        loaded, enabled = addon_utils.check(name)
        if not (loaded and enabled):
            addon_utils.enable(name, default_set=True, persistent=True)


# ---------------------------------------------------------------------------- quiet native output
class _signals_held:
    """Defer the Interrupted exception of a SIGINT/SIGTERM that lands inside a few lines that
    must not be cut (the signal is recorded; the exception comes at the end of the block)."""

    def __init__(self, raise_at_end: bool = True):
        self.raise_at_end = raise_at_end  # False: keep it deferred for a later block

    def __enter__(self):
        _STOP["held"] += 1

    def __exit__(self, exc_type, *exc):
        _STOP["held"] -= 1
        if not _STOP["held"] and _STOP["deferred"] and exc_type is None and self.raise_at_end:
            _STOP["deferred"] = False
            raise Interrupted(_STOP["signal"])
        return False


class captured_output:
    """Send what importers/exporters/savers print (glTF INFO lines, 'Saved ".x.tmp-1.blend"')
    to a temporary file instead of the log, at the file-descriptor level so C code is caught
    too. `.text` holds it afterwards; with `enabled=False` (--verbose) output passes through."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.text = ""

    def __enter__(self):
        if self.enabled:
            sys.stdout.flush()
            sys.stderr.flush()
            with _signals_held(raise_at_end=False):  # __exit__ restores the log, then raises
                self._file = tempfile.TemporaryFile()
                self._saved = [os.dup(1), os.dup(2)]
                os.dup2(self._file.fileno(), 1)
                os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            with _signals_held():  # an interrupt here must not leave the log pointing at the file
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                except Exception:
                    pass
                os.dup2(self._saved[0], 1)
                os.dup2(self._saved[1], 2)
                for fd in self._saved:
                    os.close(fd)
                self._file.seek(0)
                self.text = self._file.read()[-20000:].decode("utf-8", "replace")
                self._file.close()
        return False

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


# ---------------------------------------------------------------------------- reading inputs
OWN_READERS = (".ply", ".off")  # read with model_runtime.meshio: Blender's PLY importer crashes on bad counts
# Read by Blender's importers: opened in a child process first (a crash there fails the input alone).
ISOLATED = (".blend", ".obj", ".stl", ".glb", ".gltf", ".fbx")
BUILT_IN_READERS = (".blend", ".obj", ".stl")  # no io add-on needed to open these


def load_scene(bpy, path: Path, quiet: bool = True) -> None:
    """Replace the current scene with the contents of `path` (a fresh, empty scene for
    imported formats; the file itself for .blend). Raises InputProblem with a readable reason."""
    with captured_output(quiet) as out:
        try:
            _load_scene(bpy, path)
        except Exception as exc:
            reason = _message(exc)
            if isinstance(exc, RuntimeError) and "unknown error" in reason and out.last_line():
                reason += f" ({out.last_line()})"
            raise InputProblem(f"cannot read {path.suffix.lower().lstrip('.')} file: {reason}") from exc


def _load_scene(bpy, path: Path) -> None:
    ext = path.suffix.lower()
    p = str(path)
    if ext == ".blend":
        bpy.ops.wm.open_mainfile(filepath=p, load_ui=False, use_scripts=False)
        return
    bpy.ops.wm.read_homefile(use_empty=True)
    if ext in OWN_READERS:
        from model_runtime.meshio import read_mesh

        m = read_mesh(p)
        build_mesh_object(bpy, path.stem, m.vertices, m.loop_starts, m.loop_totals, m.loop_vertices)
        return
    if ext == ".obj":
        result = bpy.ops.wm.obj_import(filepath=p)
    elif ext == ".stl":
        result = bpy.ops.wm.stl_import(filepath=p)
    elif ext in (".glb", ".gltf"):
        result = bpy.ops.import_scene.gltf(filepath=p)
    elif ext == ".fbx":
        result = bpy.ops.import_scene.fbx(filepath=p)
    else:
        raise ValueError(f"unsupported file type {ext!r}")
    if "FINISHED" not in result:
        raise RuntimeError(f"importer returned {sorted(result)}")


def probe_command() -> list[str]:
    """The child process that opens inputs first: this script under the same Python (bpy
    module) or the same Blender binary, reading one path per line on stdin."""
    import bpy

    binary = getattr(bpy.app, "binary_path", "") or ""
    if binary and Path(binary).name.lower().startswith("blender"):
        return [binary, "-b", "--factory-startup", "--python", str(HERE / "batch.py"), "--", "--probe-worker"]
    return [sys.executable, str(HERE / "batch.py"), "--", "--probe-worker"]


PROBE_TAG = "PARTFIELD-PROBE "


class ProbeWorker:
    """A long-lived child process that opens each input before this process does (one Blender
    start-up for the whole run, not one per input). If opening a file kills it, that input
    fails with the signal's name and the next probe starts a new worker."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.proc = None
        self.lines = None

    def _start(self):
        import queue
        import threading

        self.proc = subprocess.Popen(probe_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1, env=dict(os.environ))
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()

    @staticmethod
    def _read(proc, lines):
        for line in proc.stdout:
            if line.startswith(PROBE_TAG):
                lines.put(line[len(PROBE_TAG):].rstrip("\n"))
        lines.put(None)  # the worker is gone

    def probe(self, path: Path) -> None:
        """Raise InputProblem when opening `path` crashes, hangs or fails in the worker."""
        import queue

        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write(json.dumps(str(path)) + "\n")
            self.proc.stdin.flush()
            answer = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.close()
            raise InputProblem(f"opening the file took longer than {self.timeout:g}s (see --probe-timeout)") from None
        except OSError:  # the worker died before reading the path
            answer = None
        if answer == "OK":
            return
        if answer is not None:
            raise InputProblem(answer)
        rc = self.proc.wait(timeout=30)
        self.proc = None
        if rc < 0 or rc >= 128:
            sig = -rc if rc < 0 else rc - 128
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            raise InputProblem(f"Blender's importer crashed on this file ({name}); the run goes on without it")
        raise InputProblem(f"opening the file ended its process (exit status {rc})")

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.proc = None


def run_probe_worker() -> int:
    """The worker's loop: open each path read from stdin the way the batch does, answer
    'OK' or the reason on a tagged line; exit without teardown at end of input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the batch decides
    bpy = import_bpy()
    io_enabled = False
    for line in sys.stdin:
        path = Path(json.loads(line))
        if path.suffix.lower() not in BUILT_IN_READERS and not io_enabled:
            enable_io_addons()
            io_enabled = True
        try:
            load_scene(bpy, path)
            answer = "OK"
        except InputProblem as exc:
            answer = " ".join(str(exc).split()) or "cannot read the file"
        print(PROBE_TAG + answer, flush=True)
    sys.stdout.flush()
    os._exit(0)  # no teardown: only the imports were in question


def build_mesh_object(bpy, name, vertices, loop_starts, loop_totals, loop_vertices):
    """A mesh object from polygon arrays, linked to the scene. Polygons with fewer than 3
    corners or corners outside the vertex array are dropped first (Blender must never see an
    out-of-range index)."""
    import numpy as np

    v = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    starts = np.asarray(loop_starts, dtype=np.int64).ravel()
    totals = np.asarray(loop_totals, dtype=np.int64).ravel()
    loops = np.asarray(loop_vertices, dtype=np.int64).ravel()
    if starts.shape != totals.shape or (len(starts) and (starts.min() < 0 or totals.min() < 0
                                                      or (starts + totals).max() > len(loops))):
        raise InputProblem("polygon loop starts/totals point outside the loop array")
    corner_poly = np.repeat(np.arange(len(starts)), totals)
    packed = np.cumsum(totals) - totals  # where each polygon's corners start once packed
    corner_idx = loops[np.arange(int(totals.sum())) + np.repeat(starts - packed, totals)]
    bad_corner = (corner_idx < 0) | (corner_idx >= len(v))
    bad = np.zeros(len(starts), bool)
    np.logical_or.at(bad, corner_poly[bad_corner], True)
    keep = ~bad & (totals >= 3)
    dropped = int((~keep).sum())
    corner_keep = np.repeat(keep, totals)
    kept_loops = corner_idx[corner_keep].astype(np.int32)
    kept_totals = totals[keep]
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(v))
    me.vertices.foreach_set("co", v.ravel())
    me.loops.add(len(kept_loops))
    me.loops.foreach_set("vertex_index", kept_loops)
    me.polygons.add(len(kept_totals))
    me.polygons.foreach_set("loop_start", (np.cumsum(kept_totals) - kept_totals).astype(np.int32))
    me.update(calc_edges=True)
    if dropped:
        print(f"note: {name}: {dropped} polygon(s) with bad vertex indices or under 3 corners dropped")
    if me.validate(verbose=False):
        print(f"note: {name}: invalid geometry was corrected on import")
    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def pick_objects(bpy, pattern: str):
    """Mesh objects of the scene matching --objects, with at least one polygon, by name."""
    meshes = sorted((o for o in bpy.context.scene.objects if o.type == "MESH"), key=lambda o: o.name)
    chosen = set(plan.match_objects([o.name for o in meshes], pattern))
    picked = [o for o in meshes if o.name in chosen and len(o.data.polygons) > 0]
    if not picked:
        if not meshes:
            others = sorted({o.type.lower() for o in bpy.context.scene.objects})
            raise InputProblem("no mesh objects in the file"
                               + (f" (only {', '.join(others)})" if others else ""))
        if not chosen:
            raise InputProblem(f"no mesh object matches --objects {pattern!r} "
                               f"(have: {', '.join(o.name for o in meshes[:8])})")
        raise InputProblem("no mesh object with faces (only loose vertices/edges)")
    return picked


# ---------------------------------------------------------------------------- compute + write
class InputProblem(Exception):
    """An input that cannot be segmented; the message is the whole reason."""


class FatalError(RuntimeError):
    """A problem no later input can escape (the model does not load): the run stops."""


class Runtime:
    """The add-on's modules and the model, loaded once per process."""

    def __init__(self, settings: Settings, addon: str):
        self.settings = settings
        self.addon = addon
        self.jobs = importlib.import_module(f"{addon}.jobs")
        self.writers = importlib.import_module(f"{addon}.writers")
        self.storage = importlib.import_module(f"{addon}.storage")
        self.rig = importlib.import_module(f"{addon}.rig")
        a = settings.args
        self.spec = self.jobs.ModelSpec(path=settings.checkpoint, device=a.device, precision=a.precision,
                                        options=self._option_overrides())
        self._model = None
        self.model_info: dict = {}
        self.quiet = not settings.args.verbose  # importer/exporter chatter kept out of the log
        self.prober = None if settings.args.no_isolate else ProbeWorker(settings.args.probe_timeout)

    def _option_overrides(self) -> dict:
        """Segmentation options from --points/--seed/--set, checked and typed against the
        pipeline's options dataclass."""
        import dataclasses

        a = self.settings.args
        texts = dict(self.settings.extra)
        if a.points is not None:
            texts["num_points"] = str(a.points)
        if a.seed is not None:
            texts["seed"] = str(a.seed)
        if not texts:
            return {}
        from model_runtime import pipeline

        cls = getattr(pipeline, "SegmentOptions", None) or getattr(pipeline, "PipelineOptions", None)
        if cls is None or not dataclasses.is_dataclass(cls):
            return texts
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        out = {}
        for key, text in texts.items():
            if key not in known:
                raise ValueError(f"unknown segmentation option {key!r} (known: {', '.join(sorted(known))})")
            out[key] = plan.coerce_like(text, getattr(defaults, key))
        return out

    def model(self):
        """Load the model once (the first input that needs a compute) and log what it is."""
        if self._model is None:
            t = time.perf_counter()
            try:
                self._model = self.jobs.load_model(self.spec)
            except Exception as exc:  # every input would fail the same way: stop the run
                raise FatalError(f"cannot load the model: {_reason(exc)}") from exc
            info = self._model.describe() if hasattr(self._model, "describe") else {}
            self.model_info = {k: v for k, v in dict(info).items() if isinstance(v, (str, int, float, bool))}
            self.model_info["load_seconds"] = round(time.perf_counter() - t, 3)
            print(f"model: {info.get('name', '?')} on {info.get('device', self.spec.device)} "
                  f"({self.model_info['load_seconds']:.1f}s to load)", flush=True)
        return self._model

    def compute(self, bpy, obj, k_first: int | None):
        """Segment one object through the add-on's compute (the same as the sidebar); the
        result is stored on the object, so the saved .blend can be re-cut in the GUI. An object
        whose up-to-date stored result carries part edits keeps it: the edited parts are written."""
        try:
            kept = self.storage.load(obj)
        except Exception:  # an unreadable stored result is simply computed again
            kept = None
        if kept is not None and kept.edits and not self.storage.is_stale(obj):
            print(f"note: {obj.name}: kept its stored result with {len(kept.edits)} part edit(s)", flush=True)
            return kept
        self.model()
        self.jobs.compute_object(bpy.context, obj, self.spec, use_modifiers=self.settings.args.use_modifiers,
                                 parts=k_first, show_preview=False)
        stored = self.storage.load(obj)
        if stored is None:
            raise RuntimeError(f"no result stored on {obj.name!r} after the compute")
        return stored  # .face_labels(k): labels per base-mesh polygon


WRITER_MODE = {"vertex-groups": "VERTEX_GROUPS", "face-attribute": "FACE_ATTRIBUTE", "objects": "SEPARATE_OBJECTS"}


def select_only(bpy, objects) -> None:
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    for o in objects:
        o.hide_set(False)
        o.select_set(True)
    if objects:
        bpy.context.view_layer.objects.active = objects[0]


def _export_glb(bpy, tmp: Path, rigged: bool):
    return bpy.ops.export_scene.gltf(filepath=str(tmp), export_format="GLB", use_selection=True, export_apply=False)


def _export_fbx(bpy, tmp: Path, rigged: bool):
    types = {"MESH", "ARMATURE"} if rigged else {"MESH"}
    return bpy.ops.export_scene.fbx(filepath=str(tmp), use_selection=True, object_types=types,
                                    add_leaf_bones=False)


# One node (object) per part exporters, by --export name: fn(bpy, temp path, rigged) -> operator result.
PART_EXPORTERS = {"glb": _export_glb, "fbx": _export_fbx}


def export_parts(bpy, rt: Runtime, picked, labels_by_obj, fmt: str, final: Path) -> None:
    """Export one object per part (all picked objects) to .glb / .fbx, atomically."""
    rigged = bool(rt.settings.args.rig)
    separate_here = rt.settings.args.mode != "objects" and not rigged
    parts = []
    try:
        for obj in picked:
            if rigged:  # (made with the outputs of this k by rig.batch_rig)
                parts.extend(rt.rig.export_objects(obj))
            elif separate_here:
                parts.extend(rt.writers.write_separate_objects(obj, labels_by_obj[obj.name]))
            else:
                coll = rt.writers.parts_collection(obj)
                parts.extend(coll.objects if coll is not None else [])
        select_only(bpy, parts)
        with plan.atomic_path(final) as tmp:
            with captured_output(rt.quiet) as out:
                result = PART_EXPORTERS[fmt](bpy, tmp, rigged)
            if "FINISHED" not in result:
                raise RuntimeError(f"{fmt} export returned {sorted(result)}"
                                   + (f": {out.last_line()}" if out.last_line() else ""))
    finally:
        if separate_here:
            for obj in picked:
                rt.writers.remove_separate_objects(obj)


def save_blend(bpy, final: Path, quiet: bool = True) -> None:
    with plan.atomic_path(final) as tmp:
        with captured_output(quiet) as out:
            result = bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, check_existing=False)
        if "FINISHED" not in result:
            raise RuntimeError(f"saving the .blend returned {sorted(result)}: {out.last_line()}")


def write_outputs_for_k(bpy, rt: Runtime, picked, labels_k, k: int, outs: dict) -> None:
    """Every per-k output: the scene with parts written (blend), part exports, label array."""
    import numpy as np

    settings = rt.settings
    if any(f"{e}:{k}" in outs for e in ("blend", *PART_EXPORTERS)):
        mode = WRITER_MODE[settings.args.mode]
        for obj in picked:
            rt.writers.write(obj, labels_k[obj.name], mode)
        if settings.args.rig:
            rt.rig.batch_rig(picked, labels_k, settings.args.rig)
    if f"blend:{k}" in outs:
        save_blend(bpy, outs[f"blend:{k}"], rt.quiet)
    for fmt in PART_EXPORTERS:
        if f"{fmt}:{k}" in outs:
            export_parts(bpy, rt, picked, labels_k, fmt, outs[f"{fmt}:{k}"])
    if f"npy:{k}" in outs:
        plan.atomic_save_npy(outs[f"npy:{k}"], np.concatenate([labels_k[o.name] for o in picked]))


def process_input(bpy, rt: Runtime, item, settings: Settings) -> dict:
    """Segment one input and write its outputs; returns the summary record (raises on failure)."""
    times = {}
    t0 = time.perf_counter()
    path = Path(item.path)
    if path.suffix.lower() in ISOLATED and rt.prober is not None:
        rt.prober.probe(path)
    load_scene(bpy, path, rt.quiet)
    ensure_addon(rt.addon)
    picked = pick_objects(bpy, settings.args.objects)
    times["load"] = time.perf_counter() - t0

    rt.model()  # loaded once, before the first compute's clock starts (the summary has its time)
    t1 = time.perf_counter()
    results = {}
    for obj in picked:
        first = settings.parts[0]
        results[obj.name] = rt.compute(bpy, obj, None if first == plan.AUTO else first)
    times["compute"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    import numpy as np

    outs = plan.output_paths(settings.output, item.key, settings.parts, settings.exports)
    cut = {name: {k: plan.suggested_parts(res.result) if k == plan.AUTO else k for k in settings.parts}
           for name, res in results.items()}  # 'auto' -> each object's own suggested count
    labels = {k: {name: np.asarray(res.face_labels(cut[name][k]), dtype=np.int32) for name, res in results.items()}
              for k in settings.parts}
    part_counts = {name: {str(k): int(len(np.unique(labels[k][name]))) for k in settings.parts}
                   for name in results}
    for k in settings.parts:
        write_outputs_for_k(bpy, rt, picked, labels[k], k, outs)
    if "json" in outs:
        offset = 0
        objects = []
        for obj in picked:
            n = len(labels[settings.parts[0]][obj.name])
            objects.append({
                "name": obj.name, "polygons": n, "offset": offset, "parts": part_counts[obj.name],
                "labels": {str(k): labels[k][obj.name] for k in settings.parts},
            })
            offset += n
        plan.atomic_write_json(outs["json"], {
            "input": str(path), "key": item.key, "parts_requested": list(settings.parts), "objects": objects,
        })
    times["write"] = time.perf_counter() - t2
    return {
        "objects": [o.name for o in picked],
        "polygons": {o.name: len(o.data.polygons) for o in picked},
        "parts": part_counts,
        "outputs": outs,
        "times": times,
    }


# ---------------------------------------------------------------------------- interrupts
class Interrupted(BaseException):
    """Ctrl-C or SIGTERM (a BaseException, so no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_STOP: dict = {"signal": None, "held": 0, "deferred": False}


def _on_signal(signum, _frame):
    if _STOP["signal"] is None:  # later signals only keep the flag: cleanup must not be cut short
        _STOP["signal"] = signum
        if _STOP["held"]:
            _STOP["deferred"] = True
        else:
            raise Interrupted(signum)


def _check_stop() -> None:
    """Raise Interrupted if a signal came (an exporter may have caught the first exception)."""
    if _STOP["signal"] is not None:
        raise Interrupted(_STOP["signal"])


def install_signal_handlers() -> None:
    """After bpy is imported (it may set its own): SIGINT and SIGTERM stop the run cleanly."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    plan.before_commit = _check_stop  # no output is renamed into place after an interrupt


EXIT_FOR_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


# ---------------------------------------------------------------------------- main loop
def _error(text: str) -> None:
    """One error line on stderr, after everything written to stdout so far."""
    sys.stdout.flush()
    print(f"error: {text}", file=sys.stderr, flush=True)


def run(argv=None) -> int:
    ours = script_argv(argv)
    if ours == ["--probe-worker"]:
        return run_probe_worker()
    parser = build_parser()
    args = parser.parse_args(ours)
    settings = Settings(args, parser)
    i, n = settings.shard
    skipped_outputs: list = []
    everything = plan.discover_inputs(args.inputs, exclude=[settings.output], skipped=skipped_outputs)
    items = plan.take_shard(everything, i, n)
    if args.list:
        for it in items:
            print(f"{it.key}\t{it.path}" + (f"\t[{it.error}]" if it.error else ""))
        return 0
    for folder in dict.fromkeys([settings.output, settings.summary.parent]):
        problem = plan.check_output_folder(folder)
        if problem:
            _error(problem)
            return 2
    plan.mark_output_folder(settings.output)
    print(f"partfield batch: {len(items)} of {len(everything)} inputs (shard {i}/{n}), "
          f"parts {','.join(map(str, settings.parts))}, mode {args.mode}, export {','.join(settings.exports)}"
          + (f"; {len(skipped_outputs)} earlier output file(s) in the input folders skipped"
             if skipped_outputs else ""),
          flush=True)

    bpy = import_bpy()
    install_signal_handlers()
    try:
        with captured_output(not args.verbose) as out:
            addon = enable_addon()
            enable_io_addons()
    except RuntimeError as exc:
        _error(f"{exc}" + (f" [{out.last_line()}]" if out.last_line() else ""))
        return 1
    if args.threads:  # after the add-on: inside Blender, torch comes with the extension's wheels
        import torch

        torch.set_num_threads(args.threads)
    try:
        rt = Runtime(settings, addon)
    except ValueError as exc:  # an unknown --set option
        parser.error(str(exc))

    summary = plan.Summary(settings.summary, run={
        "tool": plan.TOOL_NAME, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": ours, "shard": [i, n], "inputs_total": len(everything), "inputs_shard": len(items),
        "output": str(settings.output), "parts": list(settings.parts), "mode": args.mode,
        "exports": list(settings.exports), "blender": bpy.app.version_string, "addon": addon,
    })
    try:
        summary.write()
        stopped = _run_items(bpy, rt, settings, items, summary)
    except Interrupted as exc:
        stopped = exc
    except plan.OutputError as exc:  # the summary itself could not be written
        _error(str(exc))
        return 1
    finally:
        if rt.prober is not None:
            rt.prober.close()
    if rt.model_info:
        summary.run["model"] = rt.model_info
    summary.run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if stopped is not None:
        summary.run["interrupted"] = signal.Signals(stopped.signum).name
        summary.run["not_run"] = len(items) - len(summary.records)
    try:
        summary.write()
    except plan.OutputError as exc:
        _error(str(exc))
        return 1
    c = summary.counts()
    if stopped is not None:
        print(f"interrupted ({signal.Signals(stopped.signum).name}): ok {c['ok']}, skipped {c['skipped']}, "
              f"failed {c['failed']}, not run {summary.run['not_run']}; finished inputs are kept, run again to "
              f"continue; summary: {settings.summary}", file=sys.stderr, flush=True)
        return EXIT_FOR_SIGNAL.get(stopped.signum, 130)
    print(f"done: ok {c['ok']}, skipped {c['skipped']}, failed {c['failed']}; summary: {settings.summary}", flush=True)
    return 1 if c["failed"] else 0


def _run_items(bpy, rt: Runtime, settings: Settings, items, summary) -> Interrupted | None:
    """The per-input loop; returns the interrupt that stopped it, if any."""
    args = settings.args
    progress = plan.Progress(len(items))
    fatal = None
    for item in items:
        _check_stop()
        t0 = time.perf_counter()
        if fatal:
            record = {"input": item.path, "key": item.key, "status": "failed", "reason": f"not run: {fatal}",
                      "seconds": {"total": 0.0}}
            summary.records.append(record)
            progress.update("failed", 0.0)
            continue
        record = {"input": item.path, "key": item.key, "status": "ok", "reason": ""}
        try:
            _run_one(bpy, rt, settings, item, record, t0)
        except Interrupted as exc:
            return exc
        except FatalError as exc:
            fatal = str(exc)
            record.update(status="failed", reason=fatal)
        except Exception as exc:  # one bad input must not stop the run
            if _STOP["signal"] is not None:  # an interrupt that a writer turned into its own error
                return Interrupted(_STOP["signal"])
            record.update(status="failed", reason=_reason(exc))
            if args.verbose:
                traceback.print_exc()
        elapsed = time.perf_counter() - t0
        record.setdefault("seconds", {"total": round(elapsed, 3)})
        summary.add(record)
        progress.update(record["status"], elapsed)
        print(progress.line(record["status"], item.key, elapsed, record["reason"] if record["status"] == "failed" else ""),
              flush=True)
    if fatal:
        _error(f"stopped: {fatal}")
    return None


def _run_one(bpy, rt: Runtime, settings: Settings, item, record: dict, t0: float) -> None:
    """One input: skip it when finished, else segment it and write its outputs and done-marker."""
    args = settings.args
    marker = plan.done_marker_path(settings.output, item.key)
    if item.error:
        raise InputProblem(item.error)
    signature = plan.input_signature(item.path)
    fingerprint = settings.fingerprint_for(item.key)
    expected = plan.output_paths(settings.output, item.key, settings.parts, settings.exports)
    finished, _why = plan.check_finished(marker, fingerprint, signature, expected.values())
    if finished and not args.force:
        done = plan.read_done_record(marker)
        record.update(status="skipped", reason="already finished",
                      parts=done.get("parts", {}), objects=done.get("objects", []),
                      outputs=[str(marker.parent / o) for o in done.get("outputs", [])])
        return
    running = plan.running_marker_path(settings.output, item.key)
    attempts = plan.read_attempts(running)
    if attempts >= args.max_attempts and not args.force:
        raise InputProblem(
            f"the process died while working on this input in {attempts} earlier attempts "
            "(crash or kill); not tried again (--force or a higher --max-attempts retries it)")
    plan.remove_stale_temps(list(expected.values()) + [marker, running])
    if marker.exists():
        marker.unlink()  # until the redo finishes, this input does not count as done
    plan.begin_attempt(running, {
        "input": item.path, "host": socket.gethostname(), "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    try:
        info = process_input(bpy, rt, item, settings)
        rel = [os.path.relpath(p, marker.parent) for p in info["outputs"].values()]
        info["times"]["total"] = time.perf_counter() - t0
        plan.atomic_write_json(marker, {
            "input": item.path, "key": item.key, "fingerprint": fingerprint,
            "input_signature": signature, "outputs": rel, "objects": info["objects"],
            "polygons": info["polygons"], "parts": info["parts"], "seconds": info["times"],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
    finally:  # only a hard death (segfault, SIGKILL) leaves the running-marker behind
        plan.end_attempt(running)
        plan.remove_stale_temps(list(expected.values()) + [marker, running], pid=os.getpid())
    record.update(objects=info["objects"], polygons=info["polygons"], parts=info["parts"],
                  outputs=[str(p) for p in info["outputs"].values()],
                  seconds={k: round(v, 3) for k, v in info["times"].items()})


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[len("Error: "):] if text.startswith("Error: ") else text


def _reason(exc: BaseException) -> str:
    """One line for the summary: our own and model_runtime's messages as they are, anything
    unexpected with its exception type."""
    text = _message(exc)
    try:
        from model_runtime.errors import PartFieldError
    except ImportError:  # pragma: no cover
        PartFieldError = ()
    ours = (InputProblem, FatalError, plan.OutputError)
    if isinstance(exc, ours) or (PartFieldError and isinstance(exc, PartFieldError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv=None) -> int:
    try:
        return run(argv)
    except (KeyboardInterrupt, Interrupted) as exc:  # before the loop started
        print("interrupted: finished inputs are kept; run again to continue", file=sys.stderr, flush=True)
        return 143 if getattr(exc, "signum", None) == signal.SIGTERM else 130


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
