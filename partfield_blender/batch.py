"""PartField headless batch: segment every mesh of many files into parts, without a GUI.

Run it with Blender:
    blender -b --python partfield_blender/batch.py -- INPUT... --output DIR [options]
or with the `bpy` Python module installed:
    python partfield_blender/batch.py -- INPUT... --output DIR [options]

Inputs are files, folders (searched recursively) and glob patterns of .blend .obj .fbx
.glb/.gltf .ply .stl .off. One bad file is reported and the run goes on; the exit status is
1 when any input failed (2 for bad arguments). Finished inputs are skipped on a re-run
(--force redoes them); every output is written under a temporary name and renamed, so a
killed run never leaves a half-written file. `--shard I/N` takes every N-th input of the
sorted list, starting at I, for Slurm array jobs, Kubernetes indexed Jobs or one process per
GPU. Run with --help for all options.
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import importlib.util
import os
import shutil
import socket
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
            "\nexamples:\n"
            "  blender -b --python batch.py -- assets/ --output out --parts 4,8 --export glb,labels\n"
            "  python batch.py -- 'lib/**/*.obj' -o out --parts 2..12 --shard $SLURM_ARRAY_TASK_ID/16\n"
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders (recursive) or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("-k", "--parts", default="8", metavar="K",
                   help="part count(s): 8, 4,8,12 or 2..20 (default 8)")
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
    p.add_argument("--use-modifiers", action="store_true", help="segment the evaluated mesh (modifiers applied)")
    p.add_argument("--points", type=int, metavar="N", help="surface sample points for the network (default: model's)")
    p.add_argument("--seed", type=int, help="sampling seed (default: pipeline's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="options",
                   help="any other segmentation option (repeatable), e.g. --set face_samples=4")
    p.add_argument("--shard", metavar="I/N", help="process every N-th input starting at I (0-based)")
    p.add_argument("--force", action="store_true", help="redo inputs whose outputs are already finished")
    p.add_argument("--summary", metavar="PATH",
                   help="JSON summary (default OUTPUT/summary.json, or OUTPUT/summary_shardI-of-N.json)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="give up on an input after the process died on it N times (default 3)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.add_argument("--list", action="store_true", help="print this shard's inputs and output names, then exit")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
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
    (never ~/.config, and parallel workers never share one)."""
    if "bpy" not in sys.modules and not os.environ.get("BLENDER_USER_RESOURCES"):
        folder = tempfile.mkdtemp(prefix="pf_batch_user_")
        os.environ["BLENDER_USER_RESOURCES"] = folder
        atexit.register(shutil.rmtree, folder, True)
    import bpy

    return bpy


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
    raise RuntimeError("PartField add-on not found or failed to enable"
                       + (": " + "; ".join(errors) if errors else
                          " (install the extension, or run this script from a source checkout)"))


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


# ---------------------------------------------------------------------------- reading inputs
def load_scene(bpy, path: Path) -> None:
    """Replace the current scene with the contents of `path` (a fresh, empty scene for
    imported formats; the file itself for .blend). Raises InputProblem with a readable reason."""
    from model_runtime.errors import PartFieldError

    try:
        _load_scene(bpy, path)
    except (RuntimeError, ValueError, OSError, IndexError, PartFieldError) as exc:
        raise InputProblem(f"cannot read {path.suffix.lower().lstrip('.')} file: {_message(exc)}") from exc


def _load_scene(bpy, path: Path) -> None:
    ext = path.suffix.lower()
    p = str(path)
    if ext == ".blend":
        bpy.ops.wm.open_mainfile(filepath=p, load_ui=False, use_scripts=False)
        return
    bpy.ops.wm.read_homefile(use_empty=True)
    if ext == ".obj":
        result = bpy.ops.wm.obj_import(filepath=p)
    elif ext == ".ply":
        result = bpy.ops.wm.ply_import(filepath=p)
    elif ext == ".stl":
        result = bpy.ops.wm.stl_import(filepath=p)
    elif ext in (".glb", ".gltf"):
        result = bpy.ops.import_scene.gltf(filepath=p)
    elif ext == ".fbx":
        result = bpy.ops.import_scene.fbx(filepath=p)
    elif ext == ".off":  # no Blender importer: the project's own reader
        from model_runtime.meshio import read_off

        m = read_off(p)
        build_mesh_object(bpy, path.stem, m.vertices, m.loop_starts, m.loop_totals, m.loop_vertices)
        result = {"FINISHED"}
    else:
        raise ValueError(f"unsupported file type {ext!r}")
    if "FINISHED" not in result:
        raise RuntimeError(f"importer returned {sorted(result)}")


def build_mesh_object(bpy, name, vertices, loop_starts, loop_totals, loop_vertices):
    """A mesh object from polygon arrays, linked to the scene (for OFF, which Blender has
    no importer for)."""
    import numpy as np

    me = bpy.data.meshes.new(name)
    me.vertices.add(len(vertices))
    me.vertices.foreach_set("co", np.asarray(vertices, dtype=np.float32).ravel())
    me.loops.add(len(loop_vertices))
    me.loops.foreach_set("vertex_index", np.asarray(loop_vertices, dtype=np.int32))
    me.polygons.add(len(loop_starts))
    me.polygons.foreach_set("loop_start", np.asarray(loop_starts, dtype=np.int32))
    me.update(calc_edges=True)
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
        a = settings.args
        self.spec = self.jobs.ModelSpec(path=settings.checkpoint, device=a.device, precision=a.precision,
                                        options=self._option_overrides())
        self._model = None
        self.model_info: dict = {}

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

    def compute(self, bpy, obj, k_first: int):
        """Segment one object through the add-on's compute (the same as the sidebar); the
        result is stored on the object, so the saved .blend can be re-cut in the GUI. An object
        whose up-to-date stored result carries part edits keeps it: the edited parts are written."""
        try:
            kept = self.storage.load(obj)
        except Exception:  # an unreadable stored result is simply computed again
            kept = None
        if kept is not None and kept.edits and not self.storage.is_stale(obj):
            print(f"{obj.name}: kept its stored result with {len(kept.edits)} part edit(s)", flush=True)
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


def export_parts(bpy, rt: Runtime, picked, labels_by_obj, fmt: str, final: Path) -> None:
    """Export one object per part (all picked objects) to .glb / .fbx, atomically."""
    separate_here = rt.settings.args.mode != "objects"
    parts = []
    for obj in picked:
        if separate_here:
            parts.extend(rt.writers.write_separate_objects(obj, labels_by_obj[obj.name]))
        else:
            coll = rt.writers.parts_collection(obj)
            parts.extend(coll.objects if coll is not None else [])
    try:
        select_only(bpy, parts)
        with plan.atomic_path(final) as tmp:
            if fmt == "glb":
                result = bpy.ops.export_scene.gltf(filepath=str(tmp), export_format="GLB", use_selection=True,
                                                   export_apply=False)
            else:
                result = bpy.ops.export_scene.fbx(filepath=str(tmp), use_selection=True, object_types={"MESH"},
                                                  add_leaf_bones=False)
            if "FINISHED" not in result:
                raise RuntimeError(f"{fmt} export returned {sorted(result)}")
    finally:
        if separate_here:
            for obj in picked:
                rt.writers.remove_separate_objects(obj)


def save_blend(bpy, final: Path) -> None:
    with plan.atomic_path(final) as tmp:
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, check_existing=False)


def process_input(bpy, rt: Runtime, item, settings: Settings) -> dict:
    """Segment one input and write its outputs; returns the summary record (raises on failure)."""
    times = {}
    t0 = time.perf_counter()
    path = Path(item.path)
    load_scene(bpy, path)
    ensure_addon(rt.addon)
    picked = pick_objects(bpy, settings.args.objects)
    times["load"] = time.perf_counter() - t0

    rt.model()  # loaded once, before the first compute's clock starts (the summary has its time)
    t1 = time.perf_counter()
    results = {}
    for obj in picked:
        results[obj.name] = rt.compute(bpy, obj, settings.parts[0])
    times["compute"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    import numpy as np

    outs = plan.output_paths(settings.output, item.key, settings.parts, settings.exports)
    labels = {k: {name: np.asarray(res.face_labels(k), dtype=np.int32) for name, res in results.items()}
              for k in settings.parts}
    part_counts = {name: {str(k): int(len(np.unique(labels[k][name]))) for k in settings.parts}
                   for name in results}
    mode = WRITER_MODE[settings.args.mode]
    for k in settings.parts:
        needs_scene = any(f"{e}:{k}" in outs for e in ("blend", "glb", "fbx"))
        if needs_scene:
            for obj in picked:
                rt.writers.write(obj, labels[k][obj.name], mode)
        if f"blend:{k}" in outs:
            save_blend(bpy, outs[f"blend:{k}"])
        for fmt in ("glb", "fbx"):
            if f"{fmt}:{k}" in outs:
                export_parts(bpy, rt, picked, labels[k], fmt, outs[f"{fmt}:{k}"])
        if f"npy:{k}" in outs:
            plan.atomic_save_npy(outs[f"npy:{k}"], np.concatenate([labels[k][o.name] for o in picked]))
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


# ---------------------------------------------------------------------------- main loop
def run(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(script_argv(argv))
    settings = Settings(args, parser)
    i, n = settings.shard
    everything = plan.discover_inputs(args.inputs, exclude=[settings.output])
    items = plan.take_shard(everything, i, n)
    if args.list:
        for it in items:
            print(f"{it.key}\t{it.path}" + (f"\t[{it.error}]" if it.error else ""))
        return 0
    print(f"partfield batch: {len(items)} of {len(everything)} inputs (shard {i}/{n}), "
          f"parts {','.join(map(str, settings.parts))}, mode {args.mode}, export {','.join(settings.exports)}",
          flush=True)
    settings.output.mkdir(parents=True, exist_ok=True)

    bpy = import_bpy()
    try:
        addon = enable_addon()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    enable_io_addons()
    if args.threads:  # after the add-on: inside Blender, torch comes with the extension's wheels
        import torch

        torch.set_num_threads(args.threads)
    try:
        rt = Runtime(settings, addon)
    except ValueError as exc:  # an unknown --set option
        parser.error(str(exc))

    summary = plan.Summary(settings.summary, run={
        "tool": "partfield_blender/batch.py", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": script_argv(argv), "shard": [i, n], "inputs_total": len(everything), "inputs_shard": len(items),
        "output": str(settings.output), "parts": list(settings.parts), "mode": args.mode,
        "exports": list(settings.exports), "blender": bpy.app.version_string, "addon": addon,
    })
    summary.write()
    progress = plan.Progress(len(items))
    fatal = None
    for item in items:
        t0 = time.perf_counter()
        if fatal:
            record = {"input": item.path, "key": item.key, "status": "failed", "reason": f"not run: {fatal}",
                      "seconds": {"total": 0.0}}
            summary.records.append(record)
            progress.update("failed", 0.0)
            continue
        record = {"input": item.path, "key": item.key, "status": "ok", "reason": ""}
        marker = plan.done_marker_path(settings.output, item.key)
        try:
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
            else:
                running = plan.running_marker_path(settings.output, item.key)
                attempts = plan.read_attempts(running)
                if attempts >= args.max_attempts and not args.force:
                    raise InputProblem(
                        f"the process died while working on this input in {attempts} earlier attempts "
                        "(crash or kill); not tried again (--force or a higher --max-attempts retries it)")
                plan.remove_stale_temps(list(expected.values()) + [marker])
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
                record.update(objects=info["objects"], polygons=info["polygons"], parts=info["parts"],
                              outputs=[str(p) for p in info["outputs"].values()],
                              seconds={k: round(v, 3) for k, v in info["times"].items()})
        except KeyboardInterrupt:
            raise
        except FatalError as exc:
            fatal = str(exc)
            record.update(status="failed", reason=fatal)
        except Exception as exc:  # one bad input must not stop the run
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
        print(f"stopped: {fatal}", file=sys.stderr, flush=True)
    if rt.model_info:
        summary.run["model"] = rt.model_info
    summary.run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    summary.write()
    c = summary.counts()
    print(f"done: ok {c['ok']}, skipped {c['skipped']}, failed {c['failed']}; summary: {settings.summary}", flush=True)
    return 1 if c["failed"] else 0


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
    if isinstance(exc, (InputProblem, FatalError)) or (PartFieldError and isinstance(exc, PartFieldError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv=None) -> int:
    try:
        return run(argv)
    except KeyboardInterrupt:
        print("interrupted: finished inputs are kept; run again to continue", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
