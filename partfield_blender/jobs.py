"""The compute, as plain functions shared by the modal operator, the batch script and tests.

    inputs = extract_inputs(obj)                      # main thread: reads bpy data
    result = run_compute(inputs, spec, progress, cancel)  # any thread: no bpy at all
    apply_result(obj, inputs, result)                 # main thread: stores, previews

`compute_object` does the three in a row. `ComputeJob` runs `run_compute` for several inputs in
a worker thread and is polled from the main thread (the modal operator's timer does that).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

DEFAULT_PARTS = 5


@dataclass
class ModelSpec:
    """Which model to run and where: `path` None = the bundled model."""

    path: str | None = None
    device: str = "auto"
    precision: str = "auto"
    max_memory_mb: int | None = None
    options: dict = field(default_factory=dict)


@dataclass
class ComputeInputs:
    """Everything `run_compute` needs, copied out of Blender on the main thread."""

    object_name: str
    mesh: object  # model_runtime.mesh.MeshArrays
    face_map: np.ndarray | None
    fingerprint: str
    base_polygons: int
    use_modifiers: bool = False


def object_problem(obj) -> str | None:
    """Why `obj` cannot be segmented (a user-facing sentence), or None when it can."""
    if obj is None:
        return "No active object: select a mesh object."
    if obj.type != "MESH":
        return f"'{obj.name}' is a {obj.type.lower()} object, not a mesh."
    if obj.mode == "EDIT" or getattr(obj.data, "is_editmode", False):
        return f"'{obj.name}' is in Edit Mode: switch to Object Mode first."
    if len(obj.data.polygons) == 0:
        return f"'{obj.name}' has no faces."
    return None


def extract_inputs(obj, use_modifiers: bool = False, depsgraph=None) -> ComputeInputs:
    """Read an object's mesh (base, or evaluated with modifiers) on the main thread.

    Raises `InputError` with a user-facing message for objects that cannot be segmented."""
    from model_runtime.errors import InputError

    from .mesh_data import read_object

    problem = object_problem(obj)
    if problem:
        raise InputError(problem)
    read = read_object(obj, use_modifiers=use_modifiers, depsgraph=depsgraph)
    from . import storage

    storage.remember_fingerprint(obj.data, read.fingerprint)  # an edit meanwhile drops it again
    if read.mesh.num_polygons == 0:
        raise InputError(f"'{obj.name}' has no faces after its modifiers.")
    return ComputeInputs(obj.name, read.mesh, read.face_map, read.fingerprint, read.base_polygons, use_modifiers)


def load_model(spec: ModelSpec, progress=None, cancel=None):
    """The model for `spec`, from the per-process cache (`model_runtime.field_model.get_model`).

    The first call imports torch (most of a cold load); `progress(stage, fraction)` hears of
    it and `cancel()` is checked before and after each step."""
    from model_runtime.errors import Cancelled
    from model_runtime.progress import LOADING

    def check():
        if cancel is not None and cancel():
            raise Cancelled("Compute cancelled.")

    check()
    from model_runtime.field_model import get_model  # imports torch the first time

    if progress:
        progress(LOADING, 0.8)
    check()
    model = get_model(spec.path, device=spec.device, precision=spec.precision)
    if progress:
        progress(LOADING, 1.0)
    check()
    return model


def model_is_loaded(spec: ModelSpec) -> bool:
    """True when `spec`'s model is already in memory (never imports torch)."""
    import sys

    fm = sys.modules.get("model_runtime.field_model")
    if fm is None:
        return False
    try:
        return bool(fm.is_cached(spec.path, device=spec.device, precision=spec.precision))
    except Exception:  # informative only (progress weights)
        return False


def _options(spec: ModelSpec):
    """`segment_mesh` options from a ModelSpec (None = pipeline defaults)."""
    kwargs = dict(spec.options)
    if spec.max_memory_mb:
        kwargs.setdefault("max_memory_mb", int(spec.max_memory_mb))
    if not kwargs:
        return None
    from model_runtime import pipeline

    options_cls = getattr(pipeline, "SegmentOptions", None) or getattr(pipeline, "PipelineOptions", None)
    if options_cls is None:
        return kwargs
    import dataclasses

    if dataclasses.is_dataclass(options_cls):
        known = {f.name for f in dataclasses.fields(options_cls)}
        kwargs = {k: v for k, v in kwargs.items() if k in known}
    return options_cls(**kwargs)


def run_compute(inputs: ComputeInputs, model_spec: ModelSpec | None = None, progress=None, cancel=None):
    """Network pass, face features and part tree for one mesh. Touches no bpy data: safe in a thread.

    `progress(stage, fraction)`; `cancel() -> bool` (raises `Cancelled` at the next check)."""
    from model_runtime.progress import LOADING

    spec = model_spec or ModelSpec()
    if progress:
        progress(LOADING, 0.0)
    model = load_model(spec, progress, cancel)
    from model_runtime.pipeline import segment_mesh

    return segment_mesh(inputs.mesh, model, _options(spec), progress=progress, cancel=cancel)


def _model_info(model) -> dict:
    try:
        d = model.describe()
    except Exception:  # describe is informative only
        return {}
    return {f"model_{k}": str(v) for k, v in d.items() if isinstance(v, (str, int, float))}


def apply_result(obj, inputs: ComputeInputs, result, parts: int | None = None, show_preview: bool = True,
                 info: dict | None = None, data: bytes | None = None) -> int:
    """Store `result` on `obj`, set its parts slider and colour the preview. Returns the part count shown.

    `parts` None: the slider starts at the result's suggested part count (its natural cut).
    `data`: the result's stored bytes when the worker made them (`storage.result_bytes`)."""
    from . import preview, storage

    if len(obj.data.polygons) != inputs.base_polygons:
        from model_runtime.errors import InputError

        raise InputError(f"'{obj.name}' changed while it was being computed; compute again.")
    suggested = suggested_parts(result)
    info = dict(info or {})
    info["suggested_parts"] = suggested  # in the stored meta: the panel reads it without loading
    storage.store(obj, result, inputs.fingerprint, inputs.face_map, info=info, data=data)
    stored = storage.load(obj)
    props = getattr(obj, "partfield", None)
    k = int(parts or suggested)
    k = max(1, min(k, max_parts(stored)))
    if props is not None and props.parts != k:
        props["parts"] = k  # set without firing the update callback; we colour just below
    if show_preview:
        preview.recolor(obj, stored.face_labels(k))
        import bpy

        if bpy.context.scene is not None:
            preview.show_attribute_shading(bpy.context.scene)
    return k


def suggested_parts(result) -> int:
    """The result's own part count (`SegmentationResult.suggested_parts`), DEFAULT_PARTS for
    result objects that do not offer one."""
    try:
        return int(result.suggested_parts)
    except (AttributeError, TypeError, ValueError):
        return DEFAULT_PARTS


def max_parts(stored) -> int:
    """Largest sensible slider value for a stored result."""
    return max(1, min(256, stored.num_faces))


def compute_object(context, obj, model_spec: ModelSpec | None = None, use_modifiers: bool = False,
                   parts: int | None = None, progress=None, cancel=None, show_preview: bool = True):
    """Extract, compute and apply for one object, synchronously. Returns the SegmentationResult.

    `model_spec` None = the add-on preferences when enabled, else the bundled model."""
    if model_spec is None:
        from .preferences import model_spec_from_context

        model_spec = model_spec_from_context(context)
    depsgraph = context.evaluated_depsgraph_get() if (context is not None and use_modifiers) else None
    inputs = extract_inputs(obj, use_modifiers=use_modifiers, depsgraph=depsgraph)
    result = run_compute(inputs, model_spec, progress=progress, cancel=cancel)
    apply_result(obj, inputs, result, parts=parts, show_preview=show_preview, info=_model_info(load_model(model_spec)))
    return result


@dataclass
class JobOutcome:
    inputs: ComputeInputs
    result: object = None
    data: bytes | None = None  # storage.result_bytes(result), made in the worker
    error: BaseException | None = None
    seconds: float = 0.0


class ComputeJob:
    """Runs `run_compute` over several inputs in one worker thread; the main thread polls.

    The worker only reads the copied `ComputeInputs` and writes plain Python state guarded by a
    lock; the main thread takes finished outcomes with `take_finished()` and applies them."""

    def __init__(self, inputs: list[ComputeInputs], model_spec: ModelSpec, after=None):
        import sys

        from model_runtime.progress import JobProgress

        self.inputs = list(inputs)
        self.model_spec = model_spec
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._finished: list[JobOutcome] = []
        loaded = model_is_loaded(model_spec)
        self.stage = "starting" if loaded else "loading model"  # shown from the click on
        self.fraction = 0.0  # of the whole job: all stages of all inputs, never decreasing
        self.current = 0  # index of the input being computed
        self.done = False
        self.model_info: dict = {}
        self.progress = JobProgress(
            [i.mesh.num_polygons for i in self.inputs], model_loaded=loaded,
            tree_imported="sklearn.cluster._hierarchical_fast" in sys.modules)
        self._after = after  # a cancelled job still winding down: this one starts when it ended
        self._thread = threading.Thread(target=self._run, name="PartFieldCompute", daemon=True)

    # -- main thread
    def start(self) -> "ComputeJob":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def take_finished(self) -> list[JobOutcome]:
        with self._lock:
            out, self._finished = self._finished, []
        return out

    def status(self) -> tuple[str, float]:
        """(stage text, fraction 0..1 of the whole job; never decreases)."""
        with self._lock:
            n = max(1, len(self.inputs))
            name = self.inputs[self.current].object_name if self.current < len(self.inputs) else ""
            stage = self.stage if len(self.inputs) == 1 else f"{name}: {self.stage} ({self.current + 1}/{n})"
            return stage, min(self.fraction, 1.0)

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        """True while the worker thread runs (a cancelled job stops at its next check)."""
        return self._thread.is_alive()

    # -- worker thread
    def _progress(self, stage: str, fraction: float) -> None:
        overall = self.progress.update(self.current, stage, fraction)
        with self._lock:
            self.stage = stage
            self.fraction = overall

    def _run(self) -> None:
        from model_runtime.errors import Cancelled

        if self._after is not None:  # never two computes at once: wait for the cancelled one
            self._after.join()
            self._after = None
        for i, inputs in enumerate(self.inputs):
            with self._lock:
                self.current = i
            t0 = time.perf_counter()
            outcome = JobOutcome(inputs)
            try:
                if self._cancel.is_set():
                    raise Cancelled("Compute cancelled.")
                outcome.result = run_compute(inputs, self.model_spec, self._progress, self._cancel.is_set)
                from . import storage

                outcome.data = storage.result_bytes(outcome.result)  # serialised here, not on the main thread
                if not self.model_info:
                    self.model_info = _model_info(load_model(self.model_spec))
            except BaseException as exc:  # reported on the main thread
                outcome.error = exc
            outcome.seconds = time.perf_counter() - t0
            overall = self.progress.finish_item(i)
            with self._lock:
                self.fraction = overall
                self._finished.append(outcome)
            if isinstance(outcome.error, Cancelled):
                break
        with self._lock:
            self.done = True
            self.stage = "cancelled" if self._cancel.is_set() else "finished"
