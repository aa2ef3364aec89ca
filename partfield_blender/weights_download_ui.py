"""The "Download PartField weights" operator and its section in the add-on preferences.

The download itself (``model_runtime.weights_download.fetch_weights``: resume, size and SHA-256
check, atomic rename, compact fp16 copy) runs in a worker thread (``DownloadJob``, no bpy inside);
a modal operator polls it from a window-manager timer, redraws the progress and cancels on Esc
or the Cancel button. Shown only with Blender's online access on, and only after the user ticks
the licence checkbox; offline the section explains how to place the file by hand.

``preferences.py`` calls ``draw(layout, context)``; ``classes`` are registered with the add-on
(the package's ``register()`` adds ``WindowManager.partfield_weights`` through
``register_properties()`` after registering them: a PointerProperty added from inside a class's
own ``register`` classmethod makes Blender 4.2 segfault at exit).
"""
from __future__ import annotations

import os
import threading

import bpy
from bpy.props import BoolProperty, PointerProperty, StringProperty
from bpy.types import Operator, PropertyGroup

from model_runtime import weights_download as wd
from model_runtime.errors import Cancelled

ADDON_ID = __package__


def weights_folder(create: bool = False) -> str:
    """The add-on's user folder for the released weights (shared with the preferences)."""
    try:
        from .preferences import weights_folder as prefs_folder
    except ImportError:
        prefs_folder = None
    if prefs_folder is not None:
        return prefs_folder(create=create)
    return bpy.utils.extension_path_user(ADDON_ID, path="weights", create=create)


def online_access() -> bool:
    return bool(getattr(bpy.app, "online_access", False))


class DownloadJob:
    """``fetch_weights`` in a daemon thread, with thread-safe progress and cancel. No bpy."""

    def __init__(self, folder, url=None, sha256=wd.EXPECTED_SHA256, convert=True, **kwargs):
        self.folder, self.url, self.sha256, self.convert = str(folder), url, sha256, convert
        self.kwargs = kwargs
        self.stage, self.done, self.total = "starting", 0, None
        self.result = None
        self.error: str | None = None
        self.cancelled = False
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "DownloadJob":
        self._thread = threading.Thread(target=self._run, name="partfield-weights-download", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.finished

    def wait(self, timeout=None) -> bool:
        return self._finished.wait(timeout)

    def _progress(self, stage, done, total):
        self.stage, self.done, self.total = stage, done, total

    def _run(self):
        try:
            self.result = wd.fetch_weights(
                self.folder, url=self.url, sha256=self.sha256, convert=self.convert,
                progress=self._progress, cancel=self._cancel.is_set, **self.kwargs,
            )
        except Cancelled:
            self.cancelled = True
        except Exception as exc:  # shown to the user; the thread must never die silently
            self.error = str(exc) or type(exc).__name__
        finally:
            self._finished.set()

    @property
    def fraction(self) -> float:
        if self.stage == "convert":
            return 1.0
        return min(self.done / self.total, 1.0) if self.total else 0.0

    def status_text(self) -> str:
        if self.cancel_requested and not self.finished:
            return "Cancelling..."
        mb = self.done / 1e6
        if self.stage == "download":
            if self.total:
                return f"Downloading {mb:.0f} / {self.total / 1e6:.0f} MB ({100 * self.fraction:.0f}%)"
            return f"Downloading {mb:.0f} MB"
        if self.stage == "hash":
            return f"Checking the partial download ({mb:.0f} MB)"
        if self.stage == "verify":
            return f"Checking the existing file ({mb:.0f} MB)"
        if self.stage == "convert":
            return "Writing the compact fp16 copy..."
        return "Starting..."


_job: DownloadJob | None = None


def current_job() -> DownloadJob | None:
    """The running download, or the last one (for its outcome), or None."""
    return _job


def section_lines(online: bool, folder: str, accepted: bool, job: DownloadJob | None = None,
                  installed: str | None = None, partial_bytes: int | None = None) -> list:
    """What the preferences section shows, as ``(kind, text)`` rows; ``draw`` turns kinds into
    widgets: heading, info, terms, link (text = URL), consent, download, progress, cancel,
    error, manual, convert, folder. Pure, so tests check it without a UI."""
    rows = [("heading", f"NVIDIA's released PartField weights ({wd.CHECKPOINT_FILENAME}, {wd.APPROX_SIZE_TEXT})")]
    if installed:
        rows.append(("info", f"Installed: {installed}"))
    running = job is not None and job.running
    if not online:
        if not running:
            if not installed:
                rows += [("manual", line) for line in wd.manual_install_lines(folder)]
                rows.append(("link", wd.MODEL_PAGE_URL))
            elif installed.endswith(wd.CHECKPOINT_FILENAME):
                rows.append(("convert", "Make the fast-loading compact copy"))
            rows.append(("folder", folder))
            return rows
    if installed and not running:
        if installed.endswith(wd.CHECKPOINT_FILENAME):
            rows.append(("convert", "Make the fast-loading compact copy"))
        rows.append(("folder", folder))
        return rows
    rows += [("terms", line) for line in wd.LICENSE_TERMS if line != wd.LICENSE_URL]
    rows.append(("link", wd.LICENSE_URL))
    rows.append(("consent", "I accept NVIDIA's non-commercial licence"))
    if running:
        rows.append(("progress", job.status_text()))
        rows.append(("cancel", "Cancel (Esc)"))
        return rows
    if job is not None and job.error:
        rows.append(("error", job.error))
    elif job is not None and job.cancelled:
        rows.append(("info", "Download cancelled."))
    if partial_bytes:
        rows.append(("download", f"Resume download ({partial_bytes / 1e6:.0f} MB already here)"))
    else:
        rows.append(("download", "Download PartField weights"))
    if not accepted:
        rows.append(("info", "Tick the licence checkbox to enable the download."))
    rows.append(("folder", folder))
    return rows


def _accepted(context) -> bool:
    props = getattr(context.window_manager, "partfield_weights", None)
    return bool(props is not None and props.accept_licence)


def draw(layout, context) -> None:
    """Draw the download section (called from the add-on preferences' ``draw``)."""
    folder = weights_folder()
    installed = wd.installed_weights(folder) if os.path.isdir(folder) else None
    partial = wd.partial_download(folder) if os.path.isdir(folder) else None
    accepted = _accepted(context)
    rows = section_lines(online_access(), folder, accepted, _job,
                         str(installed) if installed else None, partial[1] if partial else None)
    box = layout.box()
    col = box.column(align=True)
    props = getattr(context.window_manager, "partfield_weights", None)
    for kind, text in rows:
        if kind == "heading":
            col.label(text=text, icon="IMPORT")
        elif kind == "info":
            col.label(text=text, icon="CHECKMARK" if text.startswith("Installed") else "INFO")
        elif kind in ("terms", "manual"):
            col.label(text=text, icon="BLANK1")
        elif kind == "error":
            col.label(text=text, icon="ERROR")
        elif kind == "link":
            label = "Read the licence" if text == wd.LICENSE_URL else "Open the download page"
            col.operator("wm.url_open", text=label, icon="URL").url = text
        elif kind == "consent":
            if props is not None:
                col.separator()
                col.prop(props, "accept_licence", text=text)
        elif kind == "download":
            row = col.row()
            row.enabled = accepted
            row.operator(PARTFIELD_OT_download_weights.bl_idname, text=text, icon="IMPORT")
        elif kind == "progress":
            job = _job
            if hasattr(col, "progress"):
                col.progress(factor=job.fraction if job else 0.0, type="BAR", text=text)
            else:
                col.label(text=text, icon="TIME")
        elif kind == "cancel":
            col.operator(PARTFIELD_OT_cancel_weights_download.bl_idname, text=text, icon="CANCEL")
        elif kind == "convert":
            col.operator(PARTFIELD_OT_convert_weights.bl_idname, text=text, icon="FILE_REFRESH")
        elif kind == "folder":
            col.operator(PARTFIELD_OT_open_weights_folder.bl_idname, text="Open the weights folder",
                         icon="FILE_FOLDER")


def _redraw_all(context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            area.tag_redraw()


class PARTFIELD_PG_weights_download(PropertyGroup):
    """Per-session state of the download section (window-manager data is never saved)."""

    accept_licence: BoolProperty(
        name="I accept NVIDIA's non-commercial licence",
        description="Required before downloading: the released PartField weights may only be used "
                    "non-commercially (research or evaluation) and not redistributed",
        default=False,
    )


def register_properties() -> None:
    """Add ``WindowManager.partfield_weights`` (call after the classes are registered)."""
    bpy.types.WindowManager.partfield_weights = PointerProperty(type=PARTFIELD_PG_weights_download)


def unregister_properties() -> None:
    if hasattr(bpy.types.WindowManager, "partfield_weights"):
        del bpy.types.WindowManager.partfield_weights


class PARTFIELD_OT_download_weights(Operator):
    """Download NVIDIA's released PartField checkpoint (about 1.4 GB, non-commercial licence) to the
    add-on's user folder, verify its size and SHA-256, and write a compact copy for fast loading"""

    bl_idname = "partfield.download_weights"
    bl_label = "Download PartField weights"
    # No UNDO: it writes files in the user folder, not .blend data; an undo step would undo nothing.
    bl_options = {"REGISTER"}

    url: StringProperty(name="URL", default="", options={"HIDDEN", "SKIP_SAVE"},
                        description="Download from here instead of the public host")
    sha256: StringProperty(name="SHA-256", default=wd.EXPECTED_SHA256, options={"HIDDEN", "SKIP_SAVE"})

    _timer = None
    _job = None  # the DownloadJob this operator polls

    @classmethod
    def poll(cls, context):
        if not online_access():
            cls.poll_message_set("Online access is off (Preferences > System > Network)")
            return False
        if not _accepted(context):
            cls.poll_message_set("Accept NVIDIA's non-commercial licence first")
            return False
        if _job is not None and _job.running:
            cls.poll_message_set("A download is already running")
            return False
        return True

    def execute(self, context):
        global _job
        if not online_access() or not _accepted(context):
            self.report({"ERROR"}, "Needs online access and your acceptance of NVIDIA's licence")
            return {"CANCELLED"}
        if _job is not None and _job.running:
            self.report({"ERROR"}, "A download is already running")
            return {"CANCELLED"}
        try:
            folder = weights_folder(create=True)
        except Exception as exc:
            self.report({"ERROR"}, f"Cannot create the weights folder: {exc}")
            return {"CANCELLED"}
        _job = self._job = DownloadJob(folder, url=self.url or None, sha256=self.sha256 or None).start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = self._job
        if event.type == "ESC" and event.value == "PRESS" and not job.finished:
            job.cancel()
            _redraw_all(context)
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":
            _redraw_all(context)
            if job.finished:
                return self._finish(context)
        return {"PASS_THROUGH"}

    def _finish(self, context):
        self._stop_timer(context)
        _redraw_all(context)
        job = self._job
        if job.error:
            self.report({"ERROR"}, job.error)
            return {"CANCELLED"}
        if job.cancelled:
            self.report({"WARNING"}, "Download cancelled; the partial file is kept to resume later")
            return {"CANCELLED"}
        if not getattr(job.result, "verified", True):
            self.report({"WARNING"}, f"PartField weights ready but NOT verified (no SHA-256 was compared, only "
                                     f"the size): {job.result.weights_path}")
            return {"FINISHED"}
        self.report({"INFO"}, f"PartField weights ready and verified: {job.result.weights_path}. "
                              "Choose 'PartField (NVIDIA, released)' as the model to use them.")
        return {"FINISHED"}

    def _stop_timer(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None

    def cancel(self, context):
        # Blender ends the modal operator (its window closed, a file loaded): the download goes on
        # in its thread and the section shows its state when drawn again; the Cancel button and
        # disabling the add-on still stop it. Quitting Blender keeps the .part for a resume.
        self._stop_timer(context)


class PARTFIELD_OT_cancel_weights_download(Operator):
    """Stop the running PartField weights download (the part already downloaded is kept to resume)"""

    bl_idname = "partfield.cancel_weights_download"
    bl_label = "Cancel PartField weights download"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return _job is not None and _job.running

    def execute(self, context):
        _job.cancel()
        _redraw_all(context)
        return {"FINISHED"}


class PARTFIELD_OT_open_weights_folder(Operator):
    """Open the folder where the add-on looks for the released PartField weights"""

    bl_idname = "partfield.open_weights_folder"
    bl_label = "Open the weights folder"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context):
        try:
            folder = weights_folder(create=True)
        except Exception as exc:
            self.report({"ERROR"}, f"Cannot create the weights folder: {exc}")
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=folder)
        return {"FINISHED"}


class PARTFIELD_OT_convert_weights(Operator):
    """Write the compact fp16 copy of a model_objaverse.ckpt placed in the weights folder by hand,
    so later loads are fast (a few seconds, once)"""

    bl_idname = "partfield.convert_weights"
    bl_label = "Make the fast-loading compact copy"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return not (_job is not None and _job.running)

    def execute(self, context):
        from model_runtime.errors import PartFieldError

        ckpt = os.path.join(weights_folder(), wd.CHECKPOINT_FILENAME)
        if not os.path.isfile(ckpt):
            self.report({"ERROR"}, f"No {wd.CHECKPOINT_FILENAME} in {weights_folder()}")
            return {"CANCELLED"}
        try:
            out = wd.convert_to_compact(ckpt, metadata={
                "source_file": wd.CHECKPOINT_FILENAME, "licence": wd.LICENSE_NAME,
                "source_sha256": wd.sha256_file(ckpt).hexdigest(),
                "licence_url": wd.LICENSE_URL})
        except (PartFieldError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _redraw_all(context)
        self.report({"INFO"}, f"Compact copy written: {out}")
        return {"FINISHED"}


classes = (
    PARTFIELD_PG_weights_download,
    PARTFIELD_OT_download_weights,
    PARTFIELD_OT_cancel_weights_download,
    PARTFIELD_OT_open_weights_folder,
    PARTFIELD_OT_convert_weights,
)


def register():
    """Stand-alone registration (tests); the add-on registers through the package."""
    for cls in classes:
        bpy.utils.register_class(cls)
    register_properties()


def stop_job() -> None:
    """Cancel a running download (the add-on is being disabled)."""
    global _job
    if _job is not None and _job.running:
        _job.cancel()
    _job = None


def unregister():
    stop_job()
    unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
