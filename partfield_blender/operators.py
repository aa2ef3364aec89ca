"""Operators: Compute PartField (modal, threaded), Apply, Clear, Preview toggle.

Every operator reports problems with `self.report` and returns {'CANCELLED'} without changing
anything; only the main thread touches bpy data. Refusals the user can fix (nothing selected,
not a mesh, Edit Mode, no model configured, stale result) are WARNING reports; failures of the
work itself (unreadable weights, a compute error) are ERROR reports, which Blender's Python
API turns into a RuntimeError for script callers (the GUI shows them in the status bar)."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty
from bpy.types import Operator

from . import jobs, preview, storage, writers
from .properties import OUTPUT_ITEMS, recolor_object

_running_job = None  # the ComputeJob of the modal operator, if one runs
_winding_down = None  # a cancelled ComputeJob whose worker may still be finishing its step


def is_running() -> bool:
    return _running_job is not None


def target_objects(context, all_selected: bool | None = None) -> list:
    """The active object plus, with the scene option on, every other selected mesh."""
    active = context.view_layer.objects.active if context.view_layer else None
    if all_selected is None:
        all_selected = context.scene.partfield.all_selected
    objs = [active] if active is not None else []
    if all_selected:
        objs += [o for o in context.selected_objects if o.type == "MESH" and o not in objs]
    return objs


def _check_targets(op, objs) -> list:
    """Objects that can be segmented; reports why the others cannot."""
    if not objs:
        op.report({"WARNING"}, "No active object: select a mesh object.")
        return []
    good = []
    for obj in objs:
        problem = jobs.object_problem(obj)
        if problem:
            op.report({"WARNING"}, problem)
        else:
            good.append(obj)
    return good


def _model_spec(op, context):
    from model_runtime.errors import PartFieldError

    from .preferences import get_preferences, model_problem, model_spec_from_context

    problem = model_problem(get_preferences(context))
    if problem:
        op.report({"WARNING"}, problem)
        return None
    try:
        return model_spec_from_context(context)
    except PartFieldError as exc:
        op.report({"WARNING"}, str(exc))
        return None


def _extract(op, context, objs) -> list:
    from model_runtime.errors import PartFieldError

    use_mod = context.scene.partfield.use_modifiers
    depsgraph = context.evaluated_depsgraph_get() if use_mod else None
    out = []
    for obj in objs:
        try:
            out.append(jobs.extract_inputs(obj, use_modifiers=use_mod, depsgraph=depsgraph))
        except PartFieldError as exc:
            op.report({"WARNING"}, str(exc))
    return out


def _apply_outcome(op, context, outcome, info) -> bool:
    from model_runtime.errors import Cancelled, PartFieldError

    name = outcome.inputs.object_name
    if outcome.error is not None:
        if isinstance(outcome.error, Cancelled):
            op.report({"WARNING"}, f"Compute cancelled; '{name}' is unchanged.")
        elif isinstance(outcome.error, (PartFieldError, MemoryError)):
            op.report({"ERROR"}, f"'{name}': {outcome.error}")
        else:
            op.report({"ERROR"}, f"'{name}': unexpected error: {outcome.error!r}")
        return False
    obj = bpy.data.objects.get(name)
    problem = jobs.object_problem(obj) if obj is not None else f"'{name}' was renamed or deleted meanwhile."
    if problem:
        op.report({"WARNING"}, f"Result not applied: {problem}")
        return False
    try:
        k = jobs.apply_result(obj, outcome.inputs, outcome.result, info=info, data=outcome.data)
    except PartFieldError as exc:
        op.report({"WARNING"}, str(exc))
        return False
    op.report({"INFO"}, f"'{name}': segmented in {outcome.seconds:.1f} s, showing {k} parts.")
    return True


class PARTFIELD_OT_compute(Operator):
    """Run PartField on the selected mesh(es): one network pass, then a part tree for the slider"""

    bl_idname = "partfield.compute"
    bl_label = "Compute PartField"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if is_running():
            cls.poll_message_set("A PartField compute is already running (Esc cancels it).")
            return False
        return True  # every other problem is reported by execute/invoke, not by a failing poll

    def _prepare(self, context):
        objs = _check_targets(self, target_objects(context))
        if not objs:
            return None, None
        spec = _model_spec(self, context)
        if spec is None:
            return None, None
        inputs = _extract(self, context, objs)
        return (inputs or None), spec

    def execute(self, context):
        """Synchronous compute (scripts, batch, tests, F3 redo)."""
        inputs, spec = self._prepare(context)
        if not inputs:
            return {"CANCELLED"}
        global _winding_down
        after, _winding_down = _winding_down, None
        job = jobs.ComputeJob(inputs, spec, after=after)
        job._run()  # same code path as the worker, on this thread
        ok = False
        for outcome in job.take_finished():
            ok |= _apply_outcome(self, context, outcome, job.model_info)
        return {"FINISHED"} if ok else {"CANCELLED"}

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:  # no event loop to poll from
            return self.execute(context)
        if not self.start_job(context):
            return {"CANCELLED"}
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def start_job(self, context) -> bool:
        """Read the meshes (main thread), start the worker and the polling timer. Heavy
        imports (torch, scipy, scikit-learn) happen in the worker, never here."""
        global _running_job, _winding_down
        inputs, spec = self._prepare(context)
        if not inputs:
            return False
        after = _winding_down if _winding_down is not None and _winding_down.alive else None
        _winding_down = None
        self._job = _running_job = jobs.ComputeJob(inputs, spec, after=after).start()
        self._applied = 0
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 1000)
        runtime = wm.partfield
        runtime.stage, runtime.progress = self._job.status()
        runtime.running = True
        _redraw(context)  # the bar and its stage show at once, before the first tick
        return True

    def modal(self, context, event):
        """One timer tick: apply finished results, show the job's progress. Esc ends the
        operator at once (nothing more is applied); the worker stops at its next check."""
        if event.type == "ESC" and event.value == "PRESS":
            return self._stop(context)
        if event.type != "TIMER":  # (any timer tick polls; other add-ons' ticks are harmless)
            return {"PASS_THROUGH"}
        for outcome in self._job.take_finished():
            self._applied += _apply_outcome(self, context, outcome, self._job.model_info)
        stage, fraction = self._job.status()
        wm = context.window_manager
        wm.partfield.stage, wm.partfield.progress = stage, fraction
        wm.progress_update(int(fraction * 1000))
        if context.workspace is not None:
            context.workspace.status_text_set(f"PartField: {stage} {fraction * 100:.0f}%   (Esc: cancel)")
        _redraw(context)
        if self._job.done:
            for outcome in self._job.take_finished():
                self._applied += _apply_outcome(self, context, outcome, self._job.model_info)
            cancelled = self._job.cancelled
            self._finish(context)
            return {"FINISHED"} if self._applied and not cancelled else {"CANCELLED"}
        return {"PASS_THROUGH"}

    def _stop(self, context):
        """Esc: cancel the job and give the UI back now; results not yet applied are dropped."""
        global _winding_down
        job = self._job
        job.cancel()
        job.take_finished()  # not applied: the user cancelled
        waiting = [i.object_name for i in job.inputs[job.current:]] if not job.done else []
        if waiting:
            self.report({"WARNING"}, "Compute cancelled; " + ", ".join(f"'{n}'" for n in waiting)
                        + (" is" if len(waiting) == 1 else " are") + " unchanged.")
        else:
            self.report({"WARNING"}, "Compute cancelled.")
        _winding_down = job if job.alive else None
        self._finish(context)
        return {"CANCELLED"}

    def cancel(self, context):  # Blender closes the window / file while running
        self._job.cancel()
        self._job.join(5.0)
        self._finish(context)

    def _finish(self, context):
        global _running_job
        wm = context.window_manager
        if getattr(self, "_timer", None) is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        wm.partfield.running, wm.partfield.stage, wm.partfield.progress = False, "", 0.0
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        _running_job = None
        _redraw(context)


def _redraw(context):
    screen = context.screen
    if screen is None:
        return
    for area in screen.areas:
        if area.type in {"VIEW_3D", "STATUSBAR"}:
            area.tag_redraw()


class PARTFIELD_OT_apply(Operator):
    """Write the current parts in the chosen output form (one undo step; re-running replaces the previous output)"""

    bl_idname = "partfield.apply"
    bl_label = "Apply Parts"
    bl_options = {"REGISTER", "UNDO"}

    mode: EnumProperty(
        name="Output", items=(("SCENE", "Panel Setting", "Use the output chosen in the panel"),) + OUTPUT_ITEMS,
        default="SCENE", description="What to write",
    )

    def execute(self, context):
        mode = context.scene.partfield.output if self.mode == "SCENE" else self.mode
        objs = [o for o in target_objects(context) if o is not None]
        if not objs:
            self.report({"WARNING"}, "No active object: select a mesh object.")
            return {"CANCELLED"}
        from model_runtime.errors import PartFieldError

        done = 0
        for obj in objs:
            problem = jobs.object_problem(obj)
            if problem is None and not storage.has_result(obj):
                problem = f"'{obj.name}' has no PartField result: run Compute PartField first."
            if problem is None and storage.problem(obj):
                problem = f"{storage.problem(obj)}: run Compute PartField again, or Clear."
            if problem is None and storage.is_stale(obj):
                problem = f"'{obj.name}' was edited after the compute: run Compute PartField again."
            if problem is None:
                try:  # a damaged stored result is a report, never a traceback; nothing is written
                    stored = storage.load_checked(obj)
                    k = max(1, min(obj.partfield.parts, jobs.max_parts(stored)))
                    labels = stored.face_labels(k)
                except PartFieldError as exc:
                    problem = f"{exc}: run Compute PartField again, or Clear."
            if problem:
                self.report({"WARNING"}, problem)
                continue
            try:
                writers.write(obj, labels, mode)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                self.report({"ERROR"}, f"'{obj.name}': writing the parts failed: {exc}")
                continue
            done += 1
        if not done:
            return {"CANCELLED"}
        label = dict((i[0], i[1]) for i in OUTPUT_ITEMS)[mode]
        self.report({"INFO"}, f"Wrote {label} for {done} object(s).")
        return {"FINISHED"}


class PARTFIELD_OT_clear(Operator):
    """Forget the PartField result and its colour preview (written outputs stay)"""

    bl_idname = "partfield.clear"
    bl_label = "Clear"
    bl_options = {"REGISTER", "UNDO"}

    outputs: BoolProperty(
        name="Remove Written Parts", default=False,
        description="Also remove what Apply and Make Rig wrote (part vertex groups, the part face attribute "
                    "and face sets, the part objects, the rig) and show the original object again",
    )

    @classmethod
    def description(cls, context, properties):
        if properties.outputs:
            return ("Remove what Apply and Make Rig wrote (part vertex groups, the part face attribute and face "
                    "sets, the part objects, the rig), forget the result and show the original object again")
        return "Forget the PartField result and its colour preview (written outputs stay)"

    def execute(self, context):
        objs = [o for o in target_objects(context) if o is not None and o.type == "MESH"]
        if not objs:
            self.report({"WARNING"}, "No active object: select a mesh object.")
            return {"CANCELLED"}
        if any(o.mode == "EDIT" for o in objs):
            self.report({"WARNING"}, "Switch to Object Mode first.")
            return {"CANCELLED"}
        cleared = 0
        kept = []  # named by a marker, but not provably written by the add-on: left alone
        for obj in objs:
            cleared += storage.clear(obj) | preview.remove(obj)
            if self.outputs:
                had_attr = obj.data.attributes.get(writers.FACE_ATTRIBUTE) is not None
                writers.remove_face_attribute(obj, kept)
                from . import rig

                cleared += bool(rig.remove_rig(obj, kept) + writers.remove_vertex_groups(obj, kept)
                                + writers.remove_separate_objects(obj, kept=kept) + had_attr)
        if not any(storage.has_result(o) for o in context.scene.objects):
            preview.restore_shading(context.scene)
        if kept:
            shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
            self.report({"WARNING"}, f"Kept {len(kept)} item(s) PartField did not write: {shown}.")
        if not cleared:
            if not kept:
                self.report({"INFO"}, "Nothing to clear.")
            return {"CANCELLED"}
        return {"FINISHED"}


class PARTFIELD_OT_preview(Operator):
    """Show or hide the part colours in the viewport (solid shading, attribute colour)"""

    bl_idname = "partfield.preview"
    bl_label = "Toggle Preview"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        if preview.is_previewing(scene):
            preview.restore_shading(scene)
            return {"FINISHED"}
        shown = 0
        for obj in target_objects(context):
            if obj is not None and obj.type == "MESH" and obj.mode != "EDIT":
                shown += recolor_object(obj)
        if not shown:
            self.report({"WARNING"}, "No up-to-date PartField result on the selection.")
            return {"CANCELLED"}
        preview.show_attribute_shading(scene)
        return {"FINISHED"}


classes = (PARTFIELD_OT_compute, PARTFIELD_OT_apply, PARTFIELD_OT_clear, PARTFIELD_OT_preview)
