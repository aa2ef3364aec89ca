"""Extension scenarios run against the real `bpy` module with the add-on installed.

    python ext_scenarios.py SCENARIO --weights W [--weights2 W2] --workdir DIR

Each scenario asserts what the issue's acceptance asks and exits non-zero on failure; the
pytest file tests/test_blender_extension.py runs one process per scenario.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ext_helpers as H  # noqa: E402  (sets BLENDER_USER_RESOURCES before bpy)

import bpy  # noqa: E402
import numpy as np  # noqa: E402

OPTIONS = None  # pipeline defaults


def reference_result(obj, weights):
    """The same segmentation computed by model_runtime directly (no add-on code)."""
    from model_runtime.field_model import get_model
    from model_runtime.mesh import MeshArrays
    from model_runtime.pipeline import segment_mesh

    me = obj.data
    v = np.array([x.co[:] for x in me.vertices], np.float32)
    mesh = MeshArrays(
        v,
        [p.loop_start for p in me.polygons],
        [p.loop_total for p in me.polygons],
        [lp.vertex_index for lp in me.loops],
    )
    return segment_mesh(mesh, get_model(weights, device="cpu"), OPTIONS)


def corner_colors(obj):
    preview = H.addon_module("preview")
    return preview.read_colors(obj)


def expected_colors(obj, labels):
    preview = H.addon_module("preview")
    pal = preview.palette(int(labels.max()) + 1)
    lp = np.repeat(np.arange(len(obj.data.polygons)), [p.loop_total for p in obj.data.polygons])
    rgba = pal[labels][lp]
    # stored as bytes: compare after the same quantisation
    return rgba


def assert_colors(obj, labels, what):
    got = corner_colors(obj)
    assert got is not None, f"{what}: no preview colours"
    exp = expected_colors(obj, labels)
    err = np.abs(got - exp).max()
    assert err < 0.02, f"{what}: preview colours differ from the labels (max err {err})"


def compute_active(obj, expect="FINISHED"):
    H.activate(obj)
    res = bpy.ops.partfield.compute()
    assert res == {expect}, f"compute returned {res}, expected {expect}"


def check_vertex_groups(obj, labels):
    writers = H.addon_module("writers")
    k = int(labels.max()) + 1
    names = writers.part_names(k)
    present = [g.name for g in obj.vertex_groups if g.name.startswith("Part_")]
    assert sorted(present) == sorted(names), f"vertex groups {present} != {names}"
    groups = H.face_labels_of_writer_groups(obj, names)
    for p, (lab, gs) in enumerate(zip(labels, groups)):
        assert lab in gs, f"polygon {p} (part {lab}) is not inside its group (in {gs})"
    # Each polygon assigned exactly once: by its own label; and the groups hold no vertex
    # outside their part's polygons.
    me = obj.data
    for gi, name in enumerate(names):
        g = obj.vertex_groups[name].index
        in_group = {v.index for v in me.vertices for e in v.groups if e.group == g}
        part_verts = {vi for p in me.polygons if labels[p.index] == gi for vi in p.vertices}
        assert in_group == part_verts, f"group {name} holds other vertices"


def check_face_attribute(obj, labels):
    writers = H.addon_module("writers")
    got = writers.read_face_attribute(obj)
    assert got is not None and np.array_equal(got, labels), "partfield_part != labels"
    sets = writers.read_face_attribute(obj, ".sculpt_face_set")
    assert sets is not None and np.array_equal(sets, labels + 1), "face sets != labels + 1"
    assert obj.data.attributes["partfield_part"].domain == "FACE"


def world_centers(obj):
    """Polygon centres nudged along their normals (coincident faces of touching boxes differ),
    in world space."""
    mw = np.array(obj.matrix_world)
    c = np.array([p.center[:] for p in obj.data.polygons]) + 0.01 * np.array([p.normal[:] for p in obj.data.polygons])
    return c @ mw[:3, :3].T + mw[:3, 3]


def check_separate_objects(obj, labels):
    writers = H.addon_module("writers")
    bpy.context.view_layer.update()
    coll = writers.parts_collection(obj)
    assert coll is not None, "no parts collection"
    parts = sorted(coll.objects, key=lambda o: o["partfield_part"])
    k = int(labels.max()) + 1
    assert len(parts) == k, f"{len(parts)} part objects for {k} parts"
    assert sum(len(p.data.polygons) for p in parts) == len(obj.data.polygons), "polygons not covered once"
    src_c = world_centers(obj)
    src_mat = np.array([p.material_index for p in obj.data.polygons])
    for part in parts:
        lab = part["partfield_part"]
        mine = np.flatnonzero(labels == lab)
        pc = world_centers(part)
        assert len(pc) == len(mine), f"part {lab}: {len(pc)} polygons, expected {len(mine)}"
        # every polygon of the part matches one source polygon of that label, in world space
        d = np.linalg.norm(pc[:, None, :] - src_c[None, mine, :], axis=2)
        nearest = mine[d.argmin(axis=1)]
        assert d.min(axis=1).max() < 1e-4, f"part {lab}: geometry moved"
        assert len(np.unique(nearest)) == len(mine), f"part {lab}: polygons duplicated or missing"
        # materials, UVs, custom normals, other attributes kept
        assert [m.name for m in part.data.materials] == [m.name for m in obj.data.materials]
        pm = np.array([p.material_index for p in part.data.polygons])
        assert np.array_equal(pm, src_mat[nearest]), f"part {lab}: material indices changed"
        assert part.data.uv_layers.get("UVMap") is not None, "UVs lost"
        assert part.data.attributes.get("weight_x") is not None, "attribute lost"
        assert part.data.has_custom_normals, "custom normals lost"
        # origin at the part's centre
        co = np.array([v.co[:] for v in part.data.vertices])
        mid = (co.min(0) + co.max(0)) / 2
        assert np.abs(mid).max() < 1e-5, f"part {lab}: origin not at centre ({mid})"
        assert part.data.attributes.get("partfield_preview") is None
    # custom normals: corner normals of the parts equal the source's (compare sorted sets)
    src_n = np.array([n.vector[:] for n in obj.data.corner_normals])
    part_n = np.concatenate([np.array([n.vector[:] for n in p.data.corner_normals]) for p in parts])
    key = lambda a: a[np.lexsort(np.round(a, 4).T)]  # noqa: E731
    assert np.allclose(key(src_n), key(part_n), atol=1e-3), "custom normals changed"
    assert obj.hide_get() and obj.hide_render, "original not hidden"
    assert obj.name in bpy.data.objects, "original deleted"
    return parts


CHECKS = {
    "VERTEX_GROUPS": check_vertex_groups,
    "FACE_ATTRIBUTE": check_face_attribute,
    "SEPARATE_OBJECTS": check_separate_objects,
}


def snapshot(obj_name):
    """What a writer may change, to compare before/after undo."""
    obj = bpy.data.objects[obj_name]
    return {
        "groups": sorted(g.name for g in obj.vertex_groups),
        "attrs": sorted(a.name for a in obj.data.attributes),
        "objects": sorted(o.name for o in bpy.data.objects),
        "collections": sorted(c.name for c in bpy.data.collections),
        "hidden": obj.hide_get(),
        "polys": len(obj.data.polygons),
    }


# --------------------------------------------------------------------------------------- scenarios
def scenario_writers(args):
    """Compute on a chain of boxes; preview and slider; every writer (twice, then undo); save/reload."""
    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    storage = H.addon_module("storage")
    obj, _ = H.boxes_chain()
    name = obj.name
    obj.location = (0.5, -1.0, 0.25)
    obj.rotation_euler = (0.0, 0.0, 0.3)
    obj.scale = (1.0, 2.0, 1.0)
    compute_active(obj)
    stored = storage.load(obj)
    assert stored is not None, "no result stored"
    ref = reference_result(obj, args.weights)
    k0 = obj.partfield.parts
    assert np.array_equal(stored.face_labels(k0), ref.labels(k0)), "stored labels differ from model_runtime"
    assert_colors(obj, ref.labels(k0), "after compute")

    # Slider: recolours in place through the update callback.
    attr_ptr = obj.data.attributes["partfield_preview"].as_pointer()
    for k in (3, 1, 6, 2):
        obj.partfield.parts = k
        assert_colors(obj, ref.labels(k), f"slider k={k}")
    assert obj.data.attributes["partfield_preview"].as_pointer() == attr_ptr, "preview attribute re-created"
    view_modes = {s.shading.color_type for sc in bpy.data.screens for a in sc.areas if a.type == "VIEW_3D"
                  for s in a.spaces if s.type == "VIEW_3D"}
    assert view_modes == {"VERTEX"}, f"viewport not switched to attribute colour: {view_modes}"

    k = 3
    obj.partfield.parts = k
    labels = ref.labels(k)
    # Headless, bpy.ops only pushes an operator's undo step when asked to (the GUI always
    # does for operators with 'UNDO' in bl_options): call with (EXEC_DEFAULT, undo=True).
    assert "UNDO" in bpy.types.PARTFIELD_OT_apply.bl_options
    bpy.ops.ed.undo_push(message="before writers")
    for mode in ("VERTEX_GROUPS", "FACE_ATTRIBUTE", "SEPARATE_OBJECTS"):
        obj = bpy.data.objects[name]
        H.activate(obj)
        before = snapshot(name)
        assert bpy.ops.partfield.apply("EXEC_DEFAULT", True, mode=mode) == {"FINISHED"}
        obj = bpy.data.objects[name]
        CHECKS[mode](obj, labels)
        after_once = snapshot(name)
        H.activate(obj) if not obj.hide_get() else None
        bpy.context.view_layer.objects.active = obj
        assert bpy.ops.partfield.apply("EXEC_DEFAULT", True, mode=mode) == {"FINISHED"}
        obj = bpy.data.objects[name]
        CHECKS[mode](obj, labels)
        assert snapshot(name) == after_once or mode == "SEPARATE_OBJECTS", f"{mode}: second run changed more"
        if mode == "SEPARATE_OBJECTS":
            a, b = snapshot(name), after_once
            assert len(a["objects"]) == len(b["objects"]) and len(a["collections"]) == len(b["collections"]), \
                f"{mode}: second run duplicated objects"
        # Undo the two runs: back to the state before this writer.
        bpy.ops.ed.undo()
        bpy.ops.ed.undo()
        assert snapshot(name) == before, f"{mode}: undo did not restore: {snapshot(name)} vs {before}"
        obj = bpy.data.objects[name]
        assert storage.has_result(obj), "undo lost the result"
        # write for real for the reload check
        H.activate(obj)
        assert bpy.ops.partfield.apply("EXEC_DEFAULT", True, mode=mode) == {"FINISHED"}

    # Save, reopen, and the slider still works without recomputing.
    path = str(Path(args.workdir) / "segmented.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    from model_runtime import pipeline

    def no_compute(*_a, **_k):
        raise AssertionError("the slider ran a compute")

    pipeline.segment_mesh = no_compute
    obj = bpy.data.objects[name]
    writers = H.addon_module("writers")
    assert storage.has_result(obj) and not storage.is_stale(obj)
    check_vertex_groups(obj, labels)
    check_face_attribute(obj, labels)
    check_separate_objects(obj, labels)
    for k in (2, 5, 4):
        obj.partfield.parts = k
        assert_colors(obj, ref.labels(k), f"after reload k={k}")
    assert writers is not None


def scenario_table_and_modifiers(args):
    """A table, several selected meshes at once, and a mesh with modifiers (base vs evaluated)."""
    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    storage = H.addon_module("storage")
    tbl, _ = H.table()
    chain, _ = H.boxes_chain()
    H.activate(tbl, [chain])
    assert bpy.ops.partfield.compute() == {"FINISHED"}
    for obj in (tbl, chain):
        stored = storage.load(obj)
        assert stored is not None, f"{obj.name}: not computed"
        ref = reference_result(obj, args.weights)
        for k in (1, 2, 5):
            assert np.array_equal(stored.face_labels(k), ref.labels(k)), f"{obj.name}: labels differ at k={k}"
    # Modifiers: a subdivided copy of the table; evaluated mesh has 4x the polygons.
    sub, _ = H.table("TableSub")
    mod = sub.modifiers.new("Subdiv", "SUBSURF")
    mod.levels = 1
    H.activate(sub)
    bpy.context.scene.partfield.use_modifiers = True
    assert bpy.ops.partfield.compute() == {"FINISHED"}
    stored = storage.load(sub)
    assert stored.face_map is not None and len(stored.face_map) == len(sub.data.polygons)
    sub.partfield.parts = 5  # what is written is the slider's cut (it starts at the suggested count)
    labels = stored.face_labels(5)
    assert labels.shape == (len(sub.data.polygons),)
    assert H.addon_module("preview").read_colors(sub) is not None
    assert bpy.ops.partfield.apply(mode="FACE_ATTRIBUTE") == {"FINISHED"}
    check_face_attribute(sub, labels)
    # evaluated result equals model_runtime on the evaluated mesh, mapped back
    depsgraph = bpy.context.evaluated_depsgraph_get()
    ev = sub.evaluated_get(depsgraph)
    me = ev.to_mesh()
    tmp = bpy.data.objects.new("tmp_eval", me.copy())
    ev.to_mesh_clear()
    ref = reference_result(tmp, args.weights)
    assert np.array_equal(stored.result.labels(5), ref.labels(5)), "evaluated labels differ"
    # Clear with "Remove Written Parts": result, preview and every written output go, the
    # original is shown again; the parts objects of the table go too.
    H.activate(tbl)
    assert bpy.ops.partfield.apply(mode="SEPARATE_OBJECTS") == {"FINISHED"}
    assert bpy.ops.partfield.apply(mode="VERTEX_GROUPS") == {"FINISHED"}
    assert bpy.ops.partfield.apply(mode="FACE_ATTRIBUTE") == {"FINISHED"}
    writers = H.addon_module("writers")
    assert writers.parts_collection(tbl) is not None and tbl.hide_get()
    n_objects = len(bpy.data.objects)
    H.activate(tbl)
    bpy.context.scene.partfield.all_selected = False
    assert bpy.ops.partfield.clear(outputs=True) == {"FINISHED"}
    bpy.context.scene.partfield.all_selected = True
    assert writers.parts_collection(tbl) is None and not tbl.hide_get() and not tbl.hide_render
    assert not any(g.name.startswith("Part_") for g in tbl.vertex_groups)
    assert tbl.data.attributes.get("partfield_part") is None and tbl.data.attributes.get(".sculpt_face_set") is None
    assert not storage.has_result(tbl) and storage.has_result(chain)
    assert len(bpy.data.objects) < n_objects
    # base mesh mode on the same object: face_map is None, labels per base polygon
    bpy.context.scene.partfield.use_modifiers = False
    H.activate(sub)
    assert bpy.ops.partfield.compute() == {"FINISHED"}
    stored = storage.load(sub)
    assert stored.face_map is None
    ref = reference_result(sub, args.weights)
    assert np.array_equal(stored.face_labels(3), ref.labels(3))


def _state(obj):
    if obj is None or obj.type != "MESH":
        return None
    # Only what the add-on could write (an Edit Mode round trip itself drops empty layers such
    # as an all-false 'sharp_edge' and adds '.select_*').
    attrs = sorted(a.name for a in obj.data.attributes if a.name.startswith("partfield") or a.name == ".sculpt_face_set")
    return (sorted(obj.keys()), attrs, len(obj.vertex_groups))


def scenario_errors(args):
    """Every error is reported (operator returns CANCELLED), nothing is raised or changed."""
    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    jobs = H.addon_module("jobs")
    storage = H.addon_module("storage")
    ops = H.addon_module("operators")
    from model_runtime.errors import Cancelled

    # No active object.
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    bpy.context.view_layer.objects.active = None
    for op in (bpy.ops.partfield.compute, bpy.ops.partfield.apply, bpy.ops.partfield.clear):
        assert op() == {"CANCELLED"}, f"{op} without an object"
    # A non-mesh.
    empty = bpy.data.objects.new("Empty", None)
    bpy.context.scene.collection.objects.link(empty)
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.scene.collection.objects.link(cam)
    for o in (empty, cam):
        H.activate(o)
        assert bpy.ops.partfield.compute() == {"CANCELLED"}
        assert bpy.ops.partfield.apply() == {"CANCELLED"}
        assert "partfield_result" not in o
    # An empty mesh, and a mesh of loose vertices only.
    for verts in ([], [(0, 0, 0), (1, 0, 0)]):
        me = bpy.data.meshes.new("EmptyMesh")
        me.from_pydata(verts, [], [])
        o = bpy.data.objects.new("EmptyMesh", me)
        bpy.context.scene.collection.objects.link(o)
        H.activate(o)
        before = _state(o)
        assert bpy.ops.partfield.compute() == {"CANCELLED"}
        assert _state(o) == before
    # A mesh in edit mode.
    chain, _ = H.boxes_chain()
    H.activate(chain)
    before = _state(chain)
    bpy.ops.object.mode_set(mode="EDIT")
    assert bpy.ops.partfield.compute() == {"CANCELLED"}
    assert bpy.ops.partfield.apply() == {"CANCELLED"}
    bpy.ops.object.mode_set(mode="OBJECT")
    assert _state(chain) == before, (_state(chain), before)
    assert not storage.has_result(chain)
    # Apply with no result yet.
    assert bpy.ops.partfield.apply() == {"CANCELLED"}
    # No model configured: custom choice without a file, then a missing file.
    p = H.prefs()
    for path in ("", str(Path(args.workdir) / "missing.safetensors")):
        p.model_choice, p.custom_path = "CUSTOM", path
        before = _state(chain)
        assert bpy.ops.partfield.compute() == {"CANCELLED"}
        assert _state(chain) == before
    # A released choice without the download.
    p.model_choice = "RELEASED"
    assert bpy.ops.partfield.compute() == {"CANCELLED"}
    assert _state(chain) == before
    H.use_custom_model(args.weights)
    # A corrupt weights file.
    bad = Path(args.workdir) / "corrupt.safetensors"
    bad.write_bytes(b"not a checkpoint at all" * 10)
    p.custom_path = str(bad)
    # A failure (not a refusal) is an ERROR report; Blender's Python API raises those to script
    # callers as RuntimeError carrying the report text (the GUI shows it in the status bar).
    try:
        bpy.ops.partfield.compute()
        raise AssertionError("a corrupt weights file was accepted")
    except RuntimeError as exc:
        assert str(exc).startswith("Error: 'Chain'"), exc
    assert _state(chain) == before
    H.use_custom_model(args.weights)
    # A cancelled compute: the worker thread stops at its next check; nothing is applied.
    inputs = jobs.extract_inputs(chain)
    job = jobs.ComputeJob([inputs], jobs.ModelSpec(path=args.weights, device="cpu"))
    seen = []
    orig = job._progress

    def progress_then_cancel(stage, fraction):
        seen.append(stage)
        orig(stage, fraction)
        if len(seen) == 2:
            job.cancel()

    job._progress = progress_then_cancel
    job.start()
    assert job.join(120), "cancelled job did not stop"
    outcomes = job.take_finished()
    assert len(outcomes) == 1 and isinstance(outcomes[0].error, Cancelled), outcomes
    assert job.done and job.cancelled

    class Reporter:
        reports = []

        def report(self, kind, msg):
            self.reports.append((kind, msg))

    rep = Reporter()
    assert ops._apply_outcome(rep, bpy.context, outcomes[0], {}) is False
    assert rep.reports and "cancel" in rep.reports[0][1].lower()
    assert _state(chain) == before and not storage.has_result(chain)
    # Threaded path end to end (the modal operator's worker): compute finishes, applied on main thread.
    job = jobs.ComputeJob([jobs.extract_inputs(chain)], jobs.ModelSpec(path=args.weights, device="cpu"))
    stages = []
    record = job._progress
    job._progress = lambda stage, fraction: (stages.append(stage), record(stage, fraction))
    job.start()
    polled = set()
    while not job.done:
        polled.add(job.status()[0])
        time.sleep(0.005)
    assert job.status()[1] == 1.0 or job.status()[0] == "finished"
    (outcome,) = job.take_finished()
    assert outcome.error is None, outcome.error
    assert ops._apply_outcome(rep, bpy.context, outcome, job.model_info) is True
    assert storage.has_result(chain)
    assert len(set(stages)) >= 3, f"progress stages not reported: {stages}"
    # Stale: editing the mesh after the compute is detected; Apply refuses.
    assert not storage.is_stale(chain)
    chain.data.vertices[0].co.x += 0.25
    assert storage.is_stale(chain), "edit not detected"
    H.activate(chain)
    assert bpy.ops.partfield.apply(mode="FACE_ATTRIBUTE") == {"CANCELLED"}
    assert chain.data.attributes.get("partfield_part") is None
    # Clear removes the result and the preview and restores the shading.
    assert bpy.ops.partfield.clear() == {"FINISHED"}
    assert not storage.has_result(chain) and chain.data.attributes.get("partfield_preview") is None
    modes = {s.shading.color_type for sc in bpy.data.screens for a in sc.areas if a.type == "VIEW_3D"
             for s in a.spaces if s.type == "VIEW_3D"}
    assert "VERTEX" not in modes, modes
    # The panel draws in every state without raising and says what can be done (no GUI here:
    # draw into a recording layout).
    texts = panel_draw_smoke()
    assert "No result yet: press Compute PartField." in texts and "Compute PartField" in texts, texts
    compute_active(chain)
    texts = panel_draw_smoke()
    assert "Apply" in texts and "Clear" in texts, texts
    chain.data.vertices[1].co.x += 0.25
    storage.forget_fingerprints()
    assert "Mesh changed since the compute: compute again." in panel_draw_smoke()
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    bpy.context.view_layer.objects.active = None
    assert "Select a mesh object to segment." in panel_draw_smoke()
    H.prefs().model_choice = "CUSTOM"
    H.prefs().custom_path = ""
    assert "No model available:" in panel_draw_smoke()


def panel_draw_smoke():
    """Draw the panel with a recording layout in the states it can be in (no GUI here)."""
    return H.panel_texts()


def scenario_preferences(args):
    """Issue 8: changing the model choice switches the active model, and a compute uses it."""
    H.install_addon()
    H.clear_scene()
    storage = H.addon_module("storage")
    prefs_mod = H.addon_module("preferences")
    from model_runtime import field_model

    chain, _ = H.boxes_chain()
    H.use_custom_model(args.weights)
    spec = prefs_mod.model_spec_from_context(bpy.context)
    assert spec.path == args.weights and spec.device == "cpu"
    compute_active(chain)
    m1 = storage.meta(chain)
    assert m1.get("model_path") == str(Path(args.weights).resolve()), m1
    labels1 = storage.load(chain).face_labels(4)
    ref1 = reference_result(chain, args.weights).labels(4)
    assert np.array_equal(labels1, ref1)

    H.prefs().custom_path = args.weights2
    spec = prefs_mod.model_spec_from_context(bpy.context)
    assert spec.path == args.weights2
    assert not field_model._cache, "switching the model choice did not free the cached model"
    compute_active(chain)
    m2 = storage.meta(chain)
    assert m2.get("model_path") == str(Path(args.weights2).resolve()), m2
    assert m2.get("model_name") == "test-small-b", m2
    ref2 = reference_result(chain, args.weights2)
    stored2 = storage.load(chain)
    assert np.array_equal(stored2.result.features if hasattr(stored2.result, "features") else stored2.face_labels(4),
                          ref2.features if hasattr(ref2, "features") else ref2.labels(4))
    # Built-in choice: the bundled model when it is installed, otherwise a clear error.
    H.prefs().model_choice = "BUILTIN"
    problem = prefs_mod.model_problem(H.prefs())
    if problem:
        assert bpy.ops.partfield.compute() == {"CANCELLED"}
        assert storage.meta(chain).get("model_path") == m2.get("model_path")
    else:
        assert prefs_mod.model_spec_from_context(bpy.context).path is None
        compute_active(chain)
        from model_runtime.field_model import default_model_path

        m3 = storage.meta(chain)
        assert m3.get("model_path") == str(default_model_path()), m3
        assert m3.get("model_path") != m2.get("model_path")
    lines = prefs_mod.describe_lines(H.prefs())
    assert lines[0].startswith("Active model:") and lines[1].startswith("Licence:") and lines[2].startswith("Location:")


def scenario_modal(args):
    """The modal operator's timer loop, driven by hand (bpy has no event loop headless): progress
    in the window-manager state, results applied on this (main) thread, timer removed at the
    end; Esc cancels and changes nothing."""
    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    jobs = H.addon_module("jobs")
    ops = H.addon_module("operators")
    storage = H.addon_module("storage")
    wm = bpy.context.window_manager

    class Event:
        def __init__(self, type_, value="NOTHING"):
            self.type, self.value = type_, value

    def start(objs):
        op = H.fake_compute_operator()
        op._job = ops._running_job = jobs.ComputeJob([jobs.extract_inputs(o) for o in objs],
                                                     jobs.ModelSpec(path=args.weights, device="cpu")).start()
        op._applied = 0
        op._timer = wm.event_timer_add(0.1, window=bpy.context.window)
        wm.progress_begin(0, 1000)
        wm.partfield.running = True
        return op

    a, _ = H.boxes_chain("A")
    b, _ = H.table("B")
    op = start([a, b])
    assert ops.is_running() and not bpy.ops.partfield.compute.poll(), "a second compute may start"
    assert op.modal(bpy.context, Event("MOUSEMOVE")) == {"PASS_THROUGH"}
    seen, result, bar = set(), None, []
    deadline = time.time() + 300
    while time.time() < deadline:
        result = op.modal(bpy.context, Event("TIMER"))
        seen.add(wm.partfield.stage)
        bar.append(op._job.status()[1])
        if result != {"PASS_THROUGH"}:
            break
        time.sleep(0.02)
    assert result == {"FINISHED"}, (result, op.reports)
    # One bar for the whole job (both objects, all stages): it never goes backwards.
    assert all(b >= a for a, b in zip(bar, bar[1:])) and bar[-1] > 0.99, bar
    assert storage.has_result(a) and storage.has_result(b), op.reports
    assert op._timer is None and not ops.is_running() and not wm.partfield.running
    assert len(seen) >= 3 and any("(2/2)" in s for s in seen), seen
    assert [m for k, m in op.reports if "INFO" in k and "segmented" in m], op.reports

    # Esc: the operator ends CANCELLED at once, nothing is applied, the worker stops at its
    # next check (within a second).
    c, _ = H.boxes_chain("C")
    op = start([c])
    t_esc = time.perf_counter()
    assert op.modal(bpy.context, Event("ESC", "PRESS")) == {"CANCELLED"}
    assert not ops.is_running() and not wm.partfield.running
    assert op._job.join(5.0) and time.perf_counter() - t_esc < 5.0, "the worker did not stop"
    assert not storage.has_result(c) and c.data.attributes.get("partfield_preview") is None
    assert any("cancel" in m.lower() for _, m in op.reports), op.reports
    assert op._timer is None and not ops.is_running()
    # Headless INVOKE_DEFAULT runs synchronously (no event loop to poll from).
    H.activate(c)
    assert bpy.ops.partfield.compute("INVOKE_DEFAULT") == {"FINISHED"} and storage.has_result(c)


SCENARIOS = {
    "modal": scenario_modal,
    "writers": scenario_writers,
    "table_and_modifiers": scenario_table_and_modifiers,
    "errors": scenario_errors,
    "preferences": scenario_preferences,
}


# --------------------------------------------------------------------------------------- issue 17
# Reliability: stored results survive recomputes and reloads, damaged ones are reported, and
# removal deletes only what the add-on made. Run by tests/test_blender_reliability.py.
def _holder(obj):
    """Where the result bytes live: the object's Text data-block, or the object (older files)."""
    return obj["partfield_data"] if "partfield_data" in obj else obj


def _result_bytes(obj):
    return bytes(_holder(obj)["partfield_result"])


def _check_stored_whole(obj, what):
    """The stored bytes are the whole result: the length the meta recorded, and they parse."""
    from model_runtime.result import SegmentationResult

    storage = H.addon_module("storage")
    m = storage.meta(obj)
    data = _result_bytes(obj)
    assert len(data) == m["result_bytes"] > 1000, f"{what}: {len(data)} bytes stored, meta says {m.get('result_bytes')}"
    res = SegmentationResult.from_bytes(data, expected_polygons=m["result_polygons"])
    holder = _holder(obj)
    assert holder is not obj and "partfield_result" not in obj, f"{what}: the bytes are on the object"
    assert holder.name.startswith(".partfield ") and holder.users >= 1 and not holder.use_fake_user, what
    if "partfield_face_map" in holder:
        assert len(bytes(holder["partfield_face_map"])) == 4 * len(obj.data.polygons), f"{what}: face map cut"
    return res


def scenario_store_twice(args):
    """Issue 17.1: compute -> compute -> save -> reopen -> slider -> Apply, for a base mesh and
    an evaluated one (with its face map); a write that does not read back keeps the old result."""
    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    storage = H.addon_module("storage")
    chain, _ = H.boxes_chain()
    sub, _ = H.table("TableSub")
    sub.modifiers.new("Subdiv", "SUBSURF").levels = 1
    ref = reference_result(chain, args.weights)
    compute_active(chain)
    first = _result_bytes(chain)
    assert b"\x00" in first[:64], "npz bytes hold NULs (what bpy cut at)"
    compute_active(chain)  # the second compute replaced the stored bytes: the bug cut them to a few bytes
    _check_stored_whole(chain, "chain after two computes")
    bpy.context.scene.partfield.use_modifiers = True
    compute_active(sub)
    compute_active(sub)
    sub_labels = storage.load(sub).face_labels(4)
    _check_stored_whole(sub, "subdivided table after two computes")
    bpy.context.scene.partfield.use_modifiers = False

    # A write that does not read back (what bpy's truncation at the first NUL did when the
    # add-on assigned over the old bytes): reported, and the previous result is left exactly
    # as it was, with no new data-block left behind.
    before = (_result_bytes(chain), storage.meta(chain), _state(chain), sorted(t.name for t in bpy.data.texts))
    assign = storage._assign

    def assign_over(obj, key, value):
        obj[key] = value[: value.index(b"\0")] if isinstance(value, bytes) and b"\0" in value else value

    storage._assign = assign_over
    try:
        H.activate(chain)
        assert bpy.ops.partfield.compute() == {"CANCELLED"}, "a truncated store was accepted"
        from model_runtime.errors import StoredResultError

        inputs = H.addon_module("jobs").extract_inputs(chain)
        try:
            storage.store(chain, ref, inputs.fingerprint)
            raise AssertionError("store did not notice the truncation")
        except StoredResultError as exc:
            assert "could not be saved with the object" in str(exc) and "reads back as" in str(exc), exc
    finally:
        storage._assign = assign
    after = (_result_bytes(chain), storage.meta(chain), _state(chain), sorted(t.name for t in bpy.data.texts))
    assert after == before, "the old result was touched"

    path = str(Path(args.workdir) / "twice.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    assert not storage._cache, "reopening must read the results from the file"
    chain, sub = bpy.data.objects["Chain"], bpy.data.objects["TableSub"]
    _check_stored_whole(chain, "chain after reopening")
    for k in (2, 5, 3):
        chain.partfield.parts = k
        assert_colors(chain, ref.labels(k), f"slider after reopening k={k}")
    H.activate(chain)
    bpy.context.scene.partfield.all_selected = False
    assert bpy.ops.partfield.apply(mode="FACE_ATTRIBUTE") == {"FINISHED"}
    check_face_attribute(chain, ref.labels(3))
    sub.partfield.parts = 4
    H.activate(sub)
    assert bpy.ops.partfield.apply(mode="VERTEX_GROUPS") == {"FINISHED"}
    check_vertex_groups(sub, sub_labels)

    # A file saved before results kept their tree layout (issue 16: no tree_sizes, tree_starts,
    # tree_labels entries) still opens, and its slider gives the same parts.
    sys.path.insert(0, str(H.REPO_ROOT / "tests"))
    import result_crafts as C

    from model_runtime.result import SegmentationResult

    chain = bpy.data.objects["Chain"]
    new = SegmentationResult.from_bytes(_result_bytes(chain))
    arrays = C.arrays_of(new)
    assert {"tree_sizes", "tree_starts", "tree_labels"} <= set(arrays), sorted(arrays)
    old = C.npz({k: v for k, v in arrays.items() if not k.startswith("tree_")})
    storage.store(chain, new, storage.meta(chain)["fingerprint"], data=old)
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    assert not storage._cache
    chain = bpy.data.objects["Chain"]
    assert _result_bytes(chain) == old
    for k in (4, 2, 6):
        chain.partfield.parts = k
        assert_colors(chain, ref.labels(k), f"slider on a result without its tree layout k={k}")
    assert storage.problem(chain) is None


def scenario_batch_resegment(args):
    """Issue 17.1: the batch re-segments a .blend that was segmented before; its output .blend
    carries the whole new result (the bug left a few bytes there)."""
    import json
    import os
    import subprocess

    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    chain, _ = H.boxes_chain()
    compute_active(chain)
    old = _result_bytes(chain)
    work = Path(args.workdir)
    (work / "in").mkdir(exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(work / "in" / "seg.blend"))
    env = dict(os.environ)
    env.pop("BLENDER_USER_RESOURCES", None)
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, str(H.REPO_ROOT / "partfield_blender" / "batch.py"), "--", str(work / "in"),
           "--output", str(work / "out"), "--parts", "3", "--export", "blend", "--checkpoint", args.weights,
           "--device", "cpu", "--threads", "1", "--points", "1500"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=H.REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((work / "out" / "summary.json").read_text())
    assert [r["status"] for r in summary["inputs"]] == ["ok"], summary
    bpy.ops.wm.open_mainfile(filepath=str(work / "out" / "seg_k3.blend"))
    chain = bpy.data.objects["Chain"]
    res = _check_stored_whole(chain, "batch output")
    assert _result_bytes(chain) != old, "the batch did not store its own result"
    labels = res.labels(3)
    check_vertex_groups(chain, labels)
    chain.partfield.parts = 3
    assert_colors(chain, labels, "slider on the batch output")


def scenario_marker_trust(args):
    """Issue 17.5: markers in a crafted file name the user's vertex groups and objects; Apply
    and Remove Written Parts delete only what the add-on wrote."""
    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    writers = H.addon_module("writers")
    ops = H.addon_module("operators")
    chain, _ = H.boxes_chain()
    compute_active(chain)
    nv = len(chain.data.vertices)
    for name, verts in (("Head", [0, 1, 2]), ("Arm", [3, 4]), ("Part_01", [5])):
        chain.vertex_groups.new(name=name).add(verts, 0.5, "REPLACE")
    chain["partfield_vertex_groups"] = ["Head", "Arm", "Part_01"]  # crafted: the old marker form
    lamp_me = bpy.data.meshes.new("LampMesh")
    lamp_me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    lamp = bpy.data.objects.new("Lamp", lamp_me)
    props = bpy.data.collections.new("Props")
    bpy.context.scene.collection.children.link(props)
    props.objects.link(lamp)
    props["partfield_source"] = chain  # crafted: claims the user's collection holds part objects
    lamp["partfield_part"] = 0
    path = str(Path(args.workdir) / "crafted.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    chain = bpy.data.objects["Chain"]
    bpy.context.scene.partfield.all_selected = False

    def user_things():
        groups = {}
        for g in chain.vertex_groups:
            if g.name in ("Head", "Arm", "Part_01"):
                groups[g.name] = sorted((v.index, round(e.weight, 3)) for v in chain.data.vertices
                                        for e in v.groups if e.group == g.index)
        return groups, "Lamp" in bpy.data.objects, "Props" in bpy.data.collections, \
            [o.name for o in bpy.data.collections["Props"].objects] if "Props" in bpy.data.collections else None

    users = user_things()
    assert users[0] == {"Head": [(0, 0.5), (1, 0.5), (2, 0.5)], "Arm": [(3, 0.5), (4, 0.5)], "Part_01": [(5, 0.5)]}
    assert not writers.has_outputs(chain), "crafted markers count as outputs"
    assert "Remove Written Parts" not in panel_draw_smoke()

    H.activate(chain)
    k = chain.partfield.parts
    labels = H.addon_module("storage").load(chain).face_labels(k)
    assert bpy.ops.partfield.apply(mode="VERTEX_GROUPS") == {"FINISHED"}
    assert user_things() == users, "Apply deleted groups a crafted marker named"
    ours = writers.written_vertex_groups(chain)
    assert len(ours) == k and "Part_01" not in ours and "Part_01.001" in ours, ours
    assert bpy.ops.partfield.apply(mode="VERTEX_GROUPS") == {"FINISHED"}  # replaces only its own
    assert user_things() == users and len(writers.written_vertex_groups(chain)) == k
    assert len(chain.vertex_groups) == 3 + k, [g.name for g in chain.vertex_groups]
    # Face sets: the writer's own are removed, the user's own (or edited ones) stay.
    assert bpy.ops.partfield.apply(mode="FACE_ATTRIBUTE") == {"FINISHED"}
    op_kept = []
    writers.remove_face_attribute(chain, op_kept)
    assert chain.data.attributes.get(".sculpt_face_set") is None and not op_kept
    assert bpy.ops.partfield.apply(mode="FACE_ATTRIBUTE") == {"FINISHED"}
    user_sets = writers.read_face_attribute(chain, ".sculpt_face_set")
    user_sets[:4] = 99  # the user sculpts new face sets after Apply
    chain.data.attributes[".sculpt_face_set"].data.foreach_set("value", user_sets)
    assert bpy.ops.partfield.apply(mode="SEPARATE_OBJECTS") == {"FINISHED"}
    assert user_things() == users, "Separate Objects deleted objects of a crafted collection"
    coll = writers.parts_collection(chain)
    assert coll is not None and coll.name != "Props" and len(coll.objects) == k
    # The user moves an object of their own into the parts collection, and a forged marker
    # with a wrong token names their groups.
    mine = bpy.data.objects.new("Mine", bpy.data.meshes.new("MineMesh"))
    coll.objects.link(mine)
    mine["partfield_part"] = 1
    forged = bpy.data.collections.new("Forged")
    bpy.context.scene.collection.children.link(forged)
    forged["partfield_source"] = chain
    forged["partfield_token"] = "0" * 32
    forged.objects.link(bpy.data.objects["Lamp"])

    class Clear:
        outputs = True
        reports = []

        def report(self, kind, msg):
            self.reports.append((set(kind), msg))

    op = Clear()
    assert bpy.types.PARTFIELD_OT_clear.execute(op, bpy.context) == {"FINISHED"}
    assert user_things() == users, "Remove Written Parts deleted the user's groups or objects"
    assert "Mine" in bpy.data.objects and "Lamp" in bpy.data.objects and "Forged" in bpy.data.collections
    assert np.array_equal(writers.read_face_attribute(chain, ".sculpt_face_set"), user_sets), "user face sets lost"
    assert chain.data.attributes.get("partfield_part") is None
    assert writers.written_vertex_groups(chain) == [] and len(chain.vertex_groups) == 3
    assert not any(o.get("partfield_token") for o in bpy.data.objects), "part objects left behind"
    assert not chain.hide_get(), "original not shown again"
    warn = [m for kind, m in op.reports if "WARNING" in kind]
    assert warn and "did not write" in warn[0] and "Mine" in warn[0] and "face sets of 'Chain'" in warn[0], op.reports
    assert mine.users_collection and mine.users_collection[0].get("partfield_source") is None, \
        "the collection kept for the user's object is still marked as a parts collection"
    # a forged dict marker with the right form but a wrong token, and our token on a foreign name
    chain["partfield_vertex_groups"] = {"token": "f" * 32, "names": ["Head", "Arm"]}
    assert writers.remove_vertex_groups(chain) == 0
    chain["partfield_vertex_groups"] = {"token": writers.output_token(chain), "names": ["Head", "Arm"]}
    kept = []
    assert writers.remove_vertex_groups(chain, kept) == 0 and kept == ["Head", "Arm"]
    assert user_things() == users
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    chain = bpy.data.objects["Chain"]
    assert user_things() == users and nv == len(chain.data.vertices)
    assert ops is not None


def _tamper_cases(chain):
    """(what, {property: value}, message part): each makes the stored result unusable."""
    import sys as _sys

    _sys.path.insert(0, str(H.REPO_ROOT / "tests"))
    import result_crafts as C

    from model_runtime.result import SegmentationResult

    storage = H.addon_module("storage")
    good = _result_bytes(chain)
    res = SegmentationResult.from_bytes(good)
    a = C.arrays_of(res)
    p = res.num_polygons
    f = (200 << 20) // (4 * p)
    bomb = C.with_entry(a, "features", C.npy_header((p, f), np.float32), 4 * p * f)
    cyc = dict(a)
    cyc["children"] = C.three_cycle(res.tree, [2 * p - 3, 2 * p - 10, 2 * p - 20])
    lying = dict(a)
    lying["tree_starts"] = a["tree_starts"].copy()
    lying["tree_starts"][p // 2] += 1
    m = storage.meta(chain)
    return [
        ("meta a string", {"partfield_meta": "not a dict"}, "'partfield_meta' is not a dictionary"),
        ("meta without a stamp", {"partfield_meta": {k: v for k, v in m.items() if k != "stamp"}}, "no valid 'stamp'"),
        ("result an int", {"partfield_result": 5}, "it is int, not bytes"),
        ("truncated", {"partfield_result": good[: len(good) // 3]}, "BadZipFile"),
        ("npz bomb", {"partfield_result": bomb}, "bytes uncompressed in a"),
        ("cycle", {"partfield_result": C.npz(cyc)}, "broken merge tree"),
        ("tree layout lies", {"partfield_result": C.npz(lying)}, "broken merge tree: the stored start of node"),
        ("other mesh", {"partfield_meta": dict(m, result_polygons=p + 1, stamp="x" * 32),
                        "partfield_face_map": np.zeros(p, np.int32).tobytes()}, f"is for {p} faces, the mesh has {p + 1}"),
        ("face map short", {"partfield_face_map": b"\x00" * 8}, "'partfield_face_map' holds 8 bytes"),
    ]


def _stored_values(obj, storage, keys):
    """The stored values by key: the meta from the object, the bytes from where they live."""
    out = {}
    for k in keys:
        holder = obj if k == "partfield_meta" else _holder(obj)
        if holder is not None and k in holder:
            out[k] = storage._read_back(holder, k)
    return out


def _write_stored_values(obj, values, keys):
    """Tamper: write `values` where the add-on keeps them (meta on the object, the bytes and the
    face map on its data-block; on the object itself for the layout of older files)."""
    for k in keys:
        holder = obj if k == "partfield_meta" else _holder(obj)
        if k in holder:
            del holder[k]
    for k, v in values.items():
        holder = obj if k == "partfield_meta" else _holder(obj)
        holder[k] = v
    stamp = values.get("partfield_meta", {}).get("stamp") if isinstance(values.get("partfield_meta"), dict) else None
    if stamp and _holder(obj) is not obj:  # a consistent tamper: the block belongs to the meta written
        _holder(obj)["partfield_stamp"] = stamp


def scenario_damaged_results(args):
    """Issue 17.3/17.4: a damaged or tampered stored result (meta not a dict, not bytes, cut,
    an npz bomb, a merge tree with a cycle, counts that do not fit): the slider, Apply, the
    preview toggle and the panel report it or ignore it, never raise, never hang, allocate
    little, and change nothing; Clear and a new compute recover."""
    import tracemalloc

    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    storage = H.addon_module("storage")
    chain, _ = H.boxes_chain()
    compute_active(chain)
    keys = ("partfield_result", "partfield_meta", "partfield_face_map")
    saved = _stored_values(chain, storage, keys)
    cases = _tamper_cases(chain)
    path = str(Path(args.workdir) / "damaged.blend")
    bpy.context.scene.partfield.all_selected = False
    for what, props, message in cases:
        chain = bpy.data.objects["Chain"]
        _write_stored_values(chain, {**saved, **props}, keys)
        bpy.ops.wm.save_as_mainfile(filepath=path)  # reopened, as a user would get the file
        bpy.ops.wm.open_mainfile(filepath=path)
        chain = bpy.data.objects["Chain"]
        H.activate(chain)
        colours = corner_colors(chain)
        before = (_state(chain), _stored_values(chain, storage, keys),
                  sorted(o.name for o in bpy.data.objects), sorted(t.name for t in bpy.data.texts))
        tracemalloc.start()
        t = time.perf_counter()
        try:
            for k in (2, 4):
                chain.partfield.parts = k  # the update callback must neither raise nor hang
            texts = panel_draw_smoke()
            assert bpy.ops.partfield.apply(mode="VERTEX_GROUPS") == {"CANCELLED"}, what
            assert H.addon_module("properties").recolor_object(chain) is False, what  # what the slider runs

            class Apply:
                mode = "FACE_ATTRIBUTE"
                reports = []

                def report(self, kind, msg):
                    self.reports.append((set(kind), msg))

            op = Apply()
            assert bpy.types.PARTFIELD_OT_apply.execute(op, bpy.context) == {"CANCELLED"}
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        seconds = time.perf_counter() - t
        assert seconds < 10, f"{what}: {seconds:.1f} s"
        assert peak < 32 << 20, f"{what}: {peak / 2**20:.0f} MiB allocated"
        assert "The stored PartField result cannot be used:" in texts, (what, texts)
        assert any(message in t for t in texts) or message in " ".join(texts).replace("\n", " ") or \
            message in "".join(texts), (what, message, texts)
        (kind, msg), = op.reports
        assert kind == {"WARNING"} and message in msg and "'Chain'" in msg and "Compute PartField again" in msg, \
            (what, op.reports)
        after = (_state(chain), _stored_values(chain, storage, keys),
                 sorted(o.name for o in bpy.data.objects), sorted(t.name for t in bpy.data.texts))
        assert after == before, f"{what}: the scene changed"
        got = corner_colors(chain)
        assert (got is None and colours is None) or np.array_equal(got, colours), f"{what}: preview changed"
        print(f"  {what}: reported in {seconds * 1000:.0f} ms, peak {peak / 2**20:.1f} MiB: {msg}", flush=True)
    # Recover: Clear forgets the damaged result, a new compute stores a good one.
    assert bpy.ops.partfield.clear() == {"FINISHED"}
    assert not storage.has_result(chain) and "The stored PartField result cannot be used:" not in panel_draw_smoke()
    compute_active(chain)
    _check_stored_whole(chain, "recomputed")
    assert bpy.ops.partfield.apply(mode="FACE_ATTRIBUTE") == {"FINISHED"}


def _to_old_layout(obj):
    """Rewrite a stored result as files from before data-blocks hold it: the bytes on the object."""
    block = obj["partfield_data"]
    values = {k: bytes(block[k]) for k in ("partfield_result", "partfield_face_map") if k in block}
    del obj["partfield_data"]
    bpy.data.texts.remove(block)
    for k, v in values.items():
        obj[k] = v


def _result_texts():
    return sorted(t.name for t in bpy.data.texts if t.name.startswith(".partfield "))


def scenario_result_blocks(args):
    """The result bytes live in a hidden Text data-block the object points to: older files with
    the bytes on the object still load and move over at the next compute; duplicates share the
    block until one recomputes; deleting the object leaves nothing in the saved file; undo and
    redo bring back the matching block; a broken pointer is reported, never raised."""
    H.install_addon()
    H.clear_scene()
    H.use_custom_model(args.weights)
    storage = H.addon_module("storage")
    chain, _ = H.boxes_chain()
    ref = reference_result(chain, args.weights)
    compute_active(chain)
    _check_stored_whole(chain, "after compute")
    assert _result_texts() == [".partfield Chain"], _result_texts()
    assert chain["partfield_data"].users == 1

    # 1. The layout of older files: bytes on the object. It loads after reopening, the slider
    # and Apply use it, and the next compute moves the bytes into a data-block.
    _to_old_layout(chain)
    assert _result_texts() == [] and "partfield_result" in chain
    path = str(Path(args.workdir) / "old_layout.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    chain = bpy.data.objects["Chain"]
    H.activate(chain)
    assert storage.problem(chain) is None and storage.has_result(chain)
    for k in (2, 4):
        chain.partfield.parts = k
        assert_colors(chain, ref.labels(k), f"old layout, slider k={k}")
    bpy.context.scene.partfield.all_selected = False
    assert bpy.ops.partfield.apply(mode="FACE_ATTRIBUTE") == {"FINISHED"}
    check_face_attribute(chain, ref.labels(4))
    compute_active(chain)
    _check_stored_whole(chain, "old layout recomputed")  # no bytes left on the object
    assert _result_texts() == [".partfield Chain"]

    # 2. A duplicate shares the block; recomputing it gives it its own and leaves the original's.
    twin = chain.copy()
    twin.name = "Twin"
    bpy.context.scene.collection.objects.link(twin)
    assert twin["partfield_data"] == chain["partfield_data"] and chain["partfield_data"].users == 2
    original = _result_bytes(chain)
    assert storage.load(twin) is not None and np.array_equal(storage.load(twin).face_labels(3), ref.labels(3))
    compute_active(twin)
    assert twin["partfield_data"] != chain["partfield_data"]
    assert _result_bytes(chain) == original and chain["partfield_data"].users == 1
    assert len(_result_texts()) == 2
    H.activate(twin)
    assert bpy.ops.partfield.clear() == {"FINISHED"}
    assert _result_texts() == [".partfield Chain"], "Clear left the twin's data-block"
    assert storage.load(chain) is not None

    # 3. Deleting the object: its block has no users left and is not saved with the file.
    bpy.data.objects.remove(twin)
    gone, _ = H.boxes_chain("Gone")
    compute_active(gone)
    assert len(_result_texts()) == 2
    bpy.data.objects.remove(gone)
    path = str(Path(args.workdir) / "deleted.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    assert _result_texts() == [".partfield Chain"], _result_texts()
    chain = bpy.data.objects["Chain"]
    H.activate(chain)

    # 4. Undo and redo of a compute bring back the matching block and result.
    first = _result_bytes(chain)
    bpy.ops.ed.undo_push(message="before the second compute")
    compute_active(chain)
    second = _result_bytes(chain)
    assert second != first
    bpy.ops.ed.undo_push(message="after the second compute")
    bpy.ops.ed.undo()
    chain = bpy.data.objects["Chain"]
    assert _result_bytes(chain) == first and storage.problem(chain) is None, "undo did not restore the result"
    assert _result_texts() == [".partfield Chain"]
    bpy.ops.ed.redo()
    chain = bpy.data.objects["Chain"]
    assert _result_bytes(chain) == second and storage.problem(chain) is None, "redo did not restore the result"
    H.activate(chain)

    # 5. Broken pointers: reported by the panel, the slider and Apply; Clear recovers.
    def broken(what, breaker, message):
        breaker(bpy.data.objects["Chain"])
        c = bpy.data.objects["Chain"]
        H.activate(c)
        storage.forget_cache()
        why = storage.problem(c)
        assert why and message in why, (what, why)
        c.partfield.parts = 3  # must not raise
        assert H.addon_module("properties").recolor_object(c) is False, what
        assert bpy.ops.partfield.apply(mode="FACE_ATTRIBUTE") == {"CANCELLED"}, what
        assert "The stored PartField result cannot be used:" in panel_draw_smoke(), what
        assert bpy.ops.partfield.clear() == {"FINISHED"} and not storage.has_result(c), what
        compute_active(c)
        _check_stored_whole(c, f"recomputed after {what}")
        print(f"  {what}: {why}", flush=True)

    broken("block deleted", lambda c: bpy.data.texts.remove(c["partfield_data"]), "data-block was deleted")
    broken("block of another result", lambda c: c["partfield_data"].__setitem__("partfield_stamp", "x" * 32),
           "belongs to another result")
    broken("pointer not a block", lambda c: c.__setitem__("partfield_data", 5), "not a result data-block")
    used = sorted(t.name for t in bpy.data.texts if t.name.startswith(".partfield ") and t.users)
    # (the int left the old block without users, still named ".partfield Chain" until saved)
    assert len(used) == 1 and used[0].startswith(".partfield Chain"), used


SCENARIOS["result_blocks"] = scenario_result_blocks


def scenario_recolor_mixed_polygons(args):
    """The slider's recolour rewrites exactly the corners of the polygons whose part changed,
    on a mesh of triangles, quads and n-gons (corner ranges of different lengths): after every
    step, small (k -> k+1) or large (a jump), the colours equal a full recolour from scratch."""
    import bmesh

    from model_runtime.normalization import Normalization
    from model_runtime.part_tree import PartTree
    from model_runtime.result import SegmentationResult

    H.install_addon()
    H.clear_scene()
    storage = H.addon_module("storage")
    bpy.ops.mesh.primitive_cylinder_add(vertices=24, depth=2.0)  # two 24-gon caps
    obj = bpy.context.active_object
    bm = bmesh.new()
    bm.from_mesh(obj.data)
    bmesh.ops.subdivide_edges(bm, edges=[e for e in bm.edges if abs(e.verts[0].co.z - e.verts[1].co.z) > 1], cuts=6)
    side = [f for f in bm.faces if len(f.verts) == 4]
    bmesh.ops.triangulate(bm, faces=side[::3])
    bm.to_mesh(obj.data)
    bm.free()
    sizes = np.array([p.loop_total for p in obj.data.polygons])
    assert {3, 4}.issubset(set(sizes.tolist())) and sizes.max() >= 24, sorted(set(sizes.tolist()))
    p = len(obj.data.polygons)
    rng = np.random.default_rng(7)
    alive, nxt, children = list(range(p)), p, []
    while len(alive) > 1:  # a random binary tree, so cuts change parts of every size
        i, j = sorted(rng.choice(len(alive), 2, replace=False))
        children.append((alive[i], alive[j]))
        alive = [a for n, a in enumerate(alive) if n not in (i, j)] + [nxt]
        nxt += 1
    res = SegmentationResult(rng.normal(size=(p, 8)).astype(np.float32),
                             PartTree(np.array(children), p, np.arange(p - 1.0)), Normalization((0, 0, 0), 1.0), {})
    storage.store(obj, res, H.addon_module("mesh_data").fingerprint(obj.data))
    steps = [2, 3, 4, 5, 6, 20, 19, 3, 40, 41, 2, 60, 7, 8]
    for k in steps:
        obj.partfield.parts = k
        assert_colors(obj, res.labels(k), f"slider k={k}")
    print(f"  {p} polygons of {len(set(sizes.tolist()))} sizes, {len(steps)} steps checked", flush=True)


SCENARIOS["recolor_mixed_polygons"] = scenario_recolor_mixed_polygons


SCENARIOS.update({
    "store_twice": scenario_store_twice,
    "batch_resegment": scenario_batch_resegment,
    "marker_trust": scenario_marker_trust,
    "damaged_results": scenario_damaged_results,
})

def main():
    H.run_scenario_main(SCENARIOS, weights=True, threads=2)


if __name__ == "__main__":
    main()
