"""Interaction latency in real bpy, driven the way the UI drives the add-on.

    .venv/bin/python benchmarks/bench_interaction.py [--faces 10000,125000,500000] [--weights FILE]
                                                     [--steps 20] [--threads 2] [--json OUT]

For each mesh size (a bumpy UV sphere, built in bpy) it runs fresh processes:

- "compute": enable the add-on, first panel draw and preferences draw, then Compute as the
  modal operator runs it (the operator's own `start_job` and `modal` methods; a timer tick
  every 0.1 s, as its event timer), timing every tick, the first progress update after the
  click and the click-to-parts time; a repeat Compute; Esc during encoding, features and
  part tree (time until the UI is free, and until the worker has stopped); then slider steps
  as the UI does them: the property update, the depsgraph evaluation that follows (with the
  add-on's handler), and the panel draw; an undo. Saves the .blend.
- "open": open that .blend, first panel draw and first slider move.
- "esc-cold": Esc 0.3 s into the first Compute of a process (during the model load).

Each process also reports whether torch / scipy / sklearn were imported on the main thread
by the panel, preferences or slider. Prints one table per size (milliseconds unless noted).
Bpy has no event loop headless, so the GPU upload of the new colours is not included.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "scipy", "sklearn")


# --------------------------------------------------------------------------- child side
def _child_setup(args):
    sys.path.insert(0, str(REPO / "tests" / "blender_scripts"))
    import ext_helpers as H  # noqa: F401  (temp BLENDER_USER_RESOURCES before bpy)

    import bpy  # noqa: F401

    t = time.perf_counter()
    H.install_addon()
    enable_ms = (time.perf_counter() - t) * 1000
    if args.weights:
        H.use_custom_model(args.weights)
    else:
        H.prefs().device = "cpu"
    return H, enable_ms


def heavy_loaded() -> list[str]:
    return [m for m in HEAVY if m in sys.modules]


def draw_panel():
    import ext_helpers  # (on sys.path after _child_setup)

    return ext_helpers.panel_texts()


def draw_preferences(H):
    return H.preferences_texts()


def ms(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return (time.perf_counter() - t) * 1000, out


class _Event:
    def __init__(self, type_, value="NOTHING"):
        self.type, self.value = type_, value


ORDER = ("loading model", "checking mesh", "sampling", "encoding", "features", "connectivity", "part tree")


def _stage_index(stage: str) -> int:
    hits = [i for i, name in enumerate(ORDER) if name in stage]
    return hits[-1] if hits else -1


def run_compute_ui(esc_at_stage=None, esc_after_s=None, tick_s=0.1):
    """Click Compute, then timer ticks until done (or Esc). Returns timings."""
    import bpy

    import ext_helpers

    op = ext_helpers.fake_compute_operator()
    t0 = time.perf_counter()
    assert op.start_job(bpy.context), op.reports
    invoke_ms = (time.perf_counter() - t0) * 1000
    ticks, bar, first_update, stages, late = [], [], None, [], []
    esc = None
    shown = bpy.context.window_manager.partfield.stage  # what the panel shows right after the click
    while True:
        ts = time.perf_counter()
        time.sleep(tick_s)
        late.append((time.perf_counter() - ts - tick_s) * 1000)  # main thread kept from running
        job = op._job
        stage_now = job.status()[0]
        if esc is None and ((esc_at_stage and _stage_index(stage_now) >= _stage_index(esc_at_stage))
                            or (esc_after_s is not None and time.perf_counter() - t0 >= esc_after_s)):
            te = time.perf_counter()
            result = op.modal(bpy.context, _Event("ESC", "PRESS"))
            ui_free_ms = (time.perf_counter() - te) * 1000
            job.join(60)
            esc = {"stage": stage_now, "ui_free_ms": ui_free_ms,
                   "worker_stopped_ms": (time.perf_counter() - te) * 1000, "result": sorted(result)}
            break
        tt = time.perf_counter()
        result = op.modal(bpy.context, _Event("TIMER"))
        ticks.append((time.perf_counter() - tt) * 1000)
        stage, frac = bpy.context.window_manager.partfield.stage, bpy.context.window_manager.partfield.progress
        if result == {"PASS_THROUGH"}:
            bar.append(frac)
            if not stages or stages[-1] != stage:
                stages.append(stage)
            if first_update is None and stage not in ("", "starting", "waiting"):
                first_update = (time.perf_counter() - t0) * 1000
        if result != {"PASS_THROUGH"}:
            break
    total_s = time.perf_counter() - t0
    monotonic = all(b >= a for a, b in zip(bar, bar[1:]))
    return {"invoke_ms": invoke_ms, "shown_at_click": shown, "late_max_ms": max(late) if late else 0.0,
            "tick_max_ms": max(ticks) if ticks else 0.0,
            "tick_median_ms": sorted(ticks)[len(ticks) // 2] if ticks else 0.0,
            "first_progress_ms": first_update, "total_s": total_s, "bar_monotonic": monotonic,
            "bar_last": bar[-1] if bar else None, "stages": stages, "esc": esc, "reports": [m for _, m in op.reports]}


def slider_steps(obj, ks):
    """Each step as the UI does it: property update, depsgraph evaluation, panel redraw."""
    import bpy

    rows = []
    for k in ks:
        cb, _ = ms(setattr, obj.partfield, "parts", int(k))
        dg, _ = ms(bpy.context.view_layer.update)
        dr, _ = ms(draw_panel)
        rows.append((cb, dg, dr, cb + dg + dr))
    return rows


def child_compute(args):
    H, enable_ms = _child_setup(args)
    import bpy

    H.clear_scene()
    out = {"faces": None, "enable_ms": enable_ms}
    out["prefs_draw_ms"], _ = ms(draw_preferences, H)
    obj = H.bumpy_sphere(int(args.faces))
    H.activate(obj)
    out["faces"] = len(obj.data.polygons)
    out["first_panel_draw_ms"], _ = ms(draw_panel)
    out["heavy_after_panel"] = heavy_loaded()
    first = run_compute_ui()
    out["first"] = first
    out["peak_rss_mb_first"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    storage = H.addon_module("storage")
    assert storage.has_result(obj), first["reports"]
    out["suggested_parts"] = storage.meta(obj).get("suggested_parts")
    out["slider_after_compute"] = obj.partfield.parts
    out["first_redraw_after_compute_ms"], _ = ms(draw_panel)
    out["repeat"] = run_compute_ui()
    out["esc"] = {}
    for stage in ("encoding", "features", "part tree"):
        r = run_compute_ui(esc_at_stage=stage, tick_s=0.02)
        out["esc"][stage] = r["esc"]
    import numpy as np

    kmax = 24
    ks = [2 + (i * 7) % (kmax - 1) for i in range(args.steps)]
    rows = slider_steps(obj, ks)
    out["slider"] = {name: [float(np.median([r[i] for r in rows])), float(max(r[i] for r in rows))]
                     for i, name in enumerate(("update", "depsgraph", "panel", "total"))}
    bpy.ops.ed.undo_push(message="bench slider")
    obj.partfield.parts = 3
    bpy.ops.ed.undo_push(message="bench slider 3")
    out["undo_ms"], _ = ms(bpy.ops.ed.undo)
    out["panel_after_undo_ms"], _ = ms(draw_panel)
    obj = bpy.context.view_layer.objects.active or bpy.data.objects[obj.name]
    bpy.ops.wm.save_as_mainfile(filepath=args.blend)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def child_open(args):
    H, enable_ms = _child_setup(args)
    import bpy

    out = {"enable_ms": enable_ms}
    out["open_ms"], _ = ms(bpy.ops.wm.open_mainfile, filepath=args.blend)
    obj = next(o for o in bpy.data.objects if o.type == "MESH")
    H.activate(obj)
    out["faces"] = len(obj.data.polygons)
    out["first_panel_draw_ms"], _ = ms(draw_panel)
    rows = slider_steps(obj, [obj.partfield.parts + 1, obj.partfield.parts + 2])
    out["first_slider"] = list(rows[0])
    out["second_slider"] = list(rows[1])
    out["heavy_after_slider"] = heavy_loaded()
    return out


def child_esc_cold(args):
    H, _ = _child_setup(args)
    H.clear_scene()
    obj = H.bumpy_sphere(int(args.faces))
    H.activate(obj)
    r = run_compute_ui(esc_after_s=0.3, tick_s=0.02)
    return {"esc": r["esc"], "first_progress_ms": r["first_progress_ms"]}


CHILDREN = {"compute": child_compute, "open": child_open, "esc-cold": child_esc_cold}


# --------------------------------------------------------------------------- parent side
def _run_child(kind, args, faces, blend, timeout=1800):
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="pf_bench_ui_")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    env["OMP_NUM_THREADS"] = str(args.threads)
    cmd = [sys.executable, __file__, "--child", kind, "--faces", str(faces), "--blend", blend,
           "--steps", str(args.steps), "--threads", str(args.threads)]
    if args.weights:
        cmd += ["--weights", args.weights]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{kind} child failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _f(x, fmt="{:.1f}"):
    return "-" if x is None else fmt.format(x)


def table(faces, c, o, e) -> str:
    first, rep, sl = c["first"], c["repeat"], c["slider"]
    rows = [
        ("enable the add-on", _f(c["enable_ms"]), "fresh process"),
        ("first panel draw", _f(c["first_panel_draw_ms"]), f"heavy modules after: {c['heavy_after_panel'] or 'none'}"),
        ("preferences draw", _f(c["prefs_draw_ms"]), ""),
        ("Compute click (invoke: read mesh, start worker)", _f(first["invoke_ms"]), ""),
        ("bar shown with its stage (in the click's redraw)", _f(first["invoke_ms"]), f"'{first['shown_at_click']}'"),
        ("first progress update from a timer tick", _f(first["first_progress_ms"]), f"stages: {' > '.join(first['stages'])}"),
        ("modal tick, median / max (first compute)", f"{_f(first['tick_median_ms'])} / {_f(first['tick_max_ms'])}",
         "the max includes storing + preview of the result"),
        ("main thread held off by the worker (GIL), max", _f(first["late_max_ms"]),
         f"timer tick lateness; repeat compute {_f(c['repeat']['late_max_ms'])} ms"),
        ("first Compute, click to parts", _f(first["total_s"], "{:.2f} s"),
         f"bar monotonic: {first['bar_monotonic']}; peak RSS {c['peak_rss_mb_first']:.0f} MB (whole process)"),
        ("repeat Compute, click to parts", _f(rep["total_s"], "{:.2f} s"),
         f"tick max {_f(rep['tick_max_ms'])} ms"),
        ("suggested parts (slider start)", f"{c['suggested_parts']} ({c['slider_after_compute']})", ""),
        ("first panel redraw after Compute", _f(c["first_redraw_after_compute_ms"]), "hashes the mesh once"),
    ]
    esc = e.get("esc") or {}
    rows.append(("Esc during model load (cold): UI free / worker stopped",
                 f"{_f(esc.get('ui_free_ms'))} / {_f(esc.get('worker_stopped_ms'))}", esc.get("stage", "")))
    for stage, r in c["esc"].items():
        r = r or {}
        rows.append((f"Esc during {stage}: UI free / worker stopped",
                     f"{_f(r.get('ui_free_ms'))} / {_f(r.get('worker_stopped_ms'))}",
                     f"pressed in '{r.get('stage', '?')}'"))
    rows += [
        ("slider step: property update (median / max)", f"{_f(sl['update'][0])} / {_f(sl['update'][1])}", ""),
        ("slider step: depsgraph evaluation", f"{_f(sl['depsgraph'][0])} / {_f(sl['depsgraph'][1])}",
         "Blender's own mesh update, add-on handler included"),
        ("slider step: panel redraw", f"{_f(sl['panel'][0])} / {_f(sl['panel'][1])}", ""),
        ("slider step: total", f"{_f(sl['total'][0])} / {_f(sl['total'][1])}", ""),
        ("undo (one step)", _f(c["undo_ms"]), f"panel after undo {_f(c['panel_after_undo_ms'])} ms"),
        ("open the saved .blend", _f(o["open_ms"]), "fresh process"),
        ("first panel draw after opening", _f(o["first_panel_draw_ms"]), ""),
        ("first slider move after opening (update+depsgraph+panel)", _f(o["first_slider"][3]),
         f"update {_f(o['first_slider'][0])}; heavy modules after: {o['heavy_after_slider'] or 'none'}"),
        ("second slider move after opening", _f(o["second_slider"][3]), ""),
    ]
    w = max(len(r[0]) for r in rows)
    out = [f"### {c['faces']:,} faces", "", f"| {'what'.ljust(w)} | ms | note |", f"|{'-' * (w + 2)}|---:|---|"]
    out += [f"| {a.ljust(w)} | {b} | {n} |" for a, b, n in rows]
    return "\n".join(out)


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default="10000,125000,500000")
    ap.add_argument("--weights", help="weights file (default: the bundled model)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument("--child", choices=sorted(CHILDREN))
    ap.add_argument("--blend")
    args = ap.parse_args(argv)
    if args.child:
        out = CHILDREN[args.child](args)
        print("RESULT " + json.dumps(out), flush=True)
        os._exit(0)  # skip bpy's exit clean-up (minutes with a 500k-face mesh and a worker thread)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min), "
          f"{os.cpu_count()} CPUs, threads {args.threads}", flush=True)
    raw = {}
    with tempfile.TemporaryDirectory(prefix="pf_bench_ui_") as tmp:
        for faces in [int(x) for x in args.faces.split(",")]:
            blend = str(Path(tmp) / f"bench_{faces}.blend")
            c = _run_child("compute", args, faces, blend)
            o = _run_child("open", args, faces, blend)
            e = _run_child("esc-cold", args, faces, blend)
            raw[faces] = {"compute": c, "open": o, "esc_cold": e}
            if args.json:  # after every size, so a later failure keeps what was measured
                Path(args.json).write_text(json.dumps(raw, indent=1))
            print(table(faces, c, o, e), flush=True)
            print(f"load after: {os.getloadavg()[0]:.2f}\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
