"""Add-on preferences: which model (bundled / NVIDIA's released checkpoint / custom file),
device, decoding memory cap, and what is active. Also turns them into a `jobs.ModelSpec`."""
from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import AddonPreferences

ADDON_ID = __package__

MODEL_CHOICES = (
    ("BUILTIN", "Built-in (small)", "Our own small PartField model, bundled with the add-on; works offline"),
    ("RELEASED", "PartField (NVIDIA, released)",
     "NVIDIA's released PartField checkpoint: much stronger, about 1.4 GB, non-commercial licence; "
     "download it below or place it by hand"),
    ("CUSTOM", "Custom file", "A PartField checkpoint or weights file of your own (.ckpt, .pt, .safetensors)"),
)
DEVICE_CHOICES = (
    ("auto", "Auto", "The best available device: CUDA, then Apple MPS, then the CPU"),
    ("cuda", "CUDA", "An NVIDIA GPU"),
    ("cpu", "CPU", "The processor (slow for the released model, fine for the built-in one)"),
    ("mps", "MPS", "Apple Silicon GPU (Metal)"),
)
PRECISION_CHOICES = (
    ("auto", "Auto", "Half precision (fp16) on CUDA, full precision (fp32) elsewhere"),
    ("fp32", "Full (fp32)", "Full precision everywhere: slowest, the reference result"),
    ("bf16", "bfloat16", "bfloat16 on CPUs with native support (AVX512-BF16/AMX) and on CUDA: "
             "about 1.8x faster on such CPUs, features within cosine 0.9999 of fp32"),
    ("fp16", "Half (fp16)", "Half precision; CUDA and MPS only"),
)
CLUSTERING_CHOICES = (
    ("fused", "Features + Geometry", "Cluster the network's features together with the mesh's concave creases "
              "and its loose pieces (recommended)"),
    ("features", "Features Only", "Cluster the network's features alone, as in the PartField paper"),
)
# Test-time views (`SegmentOptions.test_time_views`): AUTO leaves it to the runtime
# (`model_runtime.augmentation.default_views`: 4 for our own models, 1 for the released one).
VIEW_CHOICES = (
    ("AUTO", "Auto", "4 mirror views with our own models (the built-in one and files trained with this "
                     "project), 1 with NVIDIA's released model (recommended)"),
    ("1", "1 View (Fastest)", "One network pass, no averaging"),
    ("4", "4 Mirror Views", "Average the field over the mesh and its three mirror images: better parts, "
                            "4 network passes"),
)


def weights_folder(create: bool = False) -> str:
    """The add-on's user folder for downloaded weights."""
    try:
        return bpy.utils.extension_path_user(ADDON_ID, path="weights", create=create)
    except (ValueError, RuntimeError, TypeError):  # enabled as a plain add-on, not an extension
        path = os.path.join(bpy.utils.user_resource("EXTENSIONS", path=".user"), ADDON_ID.split(".")[-1], "weights")
        if create:
            os.makedirs(path, exist_ok=True)
        return path


def _free_models(_self=None, _context=None) -> None:
    """Drop cached models when the choice changes. Runs on the main thread: when no model was
    ever loaded (field_model, hence torch, not imported) there is nothing to free."""
    import sys

    field_model = sys.modules.get("model_runtime.field_model")
    if field_model is None:
        return
    for name in ("clear_cache", "free_models", "clear_model_cache"):
        fn = getattr(field_model, name, None)
        if callable(fn):
            fn()
            return


class PartFieldPreferences(AddonPreferences):
    bl_idname = ADDON_ID

    model_choice: EnumProperty(
        name="Model", items=MODEL_CHOICES, default="BUILTIN", update=_free_models,
        description="Which PartField network segments meshes",
    )
    custom_path: StringProperty(
        name="Weights File", subtype="FILE_PATH", default="", update=_free_models,
        description="Path of a PartField checkpoint or weights file (.ckpt, .pt, .safetensors)",
    )
    device: EnumProperty(
        name="Device", items=DEVICE_CHOICES, default="auto", update=_free_models,
        description="Where the network runs",
    )
    precision: EnumProperty(
        name="Precision", items=PRECISION_CHOICES, default="auto", update=_free_models,
        description="Arithmetic precision of the network pass",
    )
    clustering: EnumProperty(
        name="Part Tree From", items=CLUSTERING_CHOICES, default="fused",
        description="What the part tree is built on (applies to the next Compute)",
    )
    group_alike: BoolProperty(
        name="Group Look-Alike Parts", default=True,
        description="Coarse granularity may join parts that do not touch but look alike (a chair's legs, "
                    "a creature's arms); the tree's natural cut and finer ones are unchanged "
                    "(applies to the next Compute)",
    )
    test_time_views: EnumProperty(
        name="Test-Time Views", items=VIEW_CHOICES, default="AUTO",
        description="How many views of the mesh the part field is averaged over (applies to the next Compute)",
    )
    decode_memory_mb: IntProperty(
        name="Decode Memory Limit", default=2048, min=128, soft_max=16384, subtype="NONE",
        description="Upper bound in MB for memory used while decoding per-face features "
                    "(larger is faster, smaller fits small GPUs)",
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "model_choice")
        if self.model_choice == "CUSTOM":
            col.prop(self, "custom_path")
        col.prop(self, "device")
        col.prop(self, "precision")
        col.prop(self, "clustering")
        col.prop(self, "group_alike")
        col.prop(self, "test_time_views")
        col.prop(self, "decode_memory_mb")
        box = layout.box()
        for i, line in enumerate(describe_lines(self)):
            box.label(text=line, icon="INFO" if i == 0 else "BLANK1")
        from . import weights_download_ui

        weights_download_ui.draw(layout, context)


def get_preferences(context=None):
    """The add-on preferences, or None when the add-on is not enabled."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def model_path(prefs) -> str | None:
    """The weights path the preferences select (None = bundled). Raises CheckpointError when unset."""
    from model_runtime.errors import CheckpointError

    if prefs is None or prefs.model_choice == "BUILTIN":
        return None
    if prefs.model_choice == "RELEASED":
        from model_runtime.weights_download import installed_weights

        found = installed_weights(weights_folder())
        if found is None:
            raise CheckpointError(
                "The released PartField weights are not installed: download them in the add-on "
                "preferences or place model_objaverse.ckpt in " + weights_folder()
            )
        return str(found)
    path = bpy.path.abspath(prefs.custom_path) if prefs.custom_path else ""
    if not path:
        raise CheckpointError("No model configured: choose a weights file in the add-on preferences.")
    if not os.path.isfile(path):
        raise CheckpointError(f"Model file not found: {path}")
    return path


def model_spec_from_prefs(prefs):
    """A `jobs.ModelSpec` for these preferences (bundled defaults when prefs is None)."""
    from .jobs import ModelSpec

    if prefs is None:
        return ModelSpec()
    options = {"clustering": getattr(prefs, "clustering", "fused"),
               "group_alike": bool(getattr(prefs, "group_alike", True))}
    views = getattr(prefs, "test_time_views", "AUTO")
    if views != "AUTO":
        options["test_time_views"] = int(views)
    return ModelSpec(path=model_path(prefs), device=prefs.device, precision=prefs.precision,
                     max_memory_mb=prefs.decode_memory_mb, options=options)


def model_spec_from_context(context=None):
    return model_spec_from_prefs(get_preferences(context))


def bundled_model_available() -> bool:
    """A file-exists check (never imports torch: the panel calls it on every redraw)."""
    from model_runtime.model_files import bundled_model_available as available

    return available()


def model_problem(prefs) -> str | None:
    """Why no model can run with these preferences, or None."""
    from model_runtime.errors import PartFieldError

    try:
        path = model_path(prefs)
    except PartFieldError as exc:
        return str(exc)
    if path is None and not bundled_model_available():
        return "The bundled model file is missing from this installation: choose another model in the preferences."
    return None


def _device_text(device: str) -> str:
    """The device setting, with what "auto" resolves to once torch is loaded (never imports it)."""
    import sys

    if device != "auto" or "torch" not in sys.modules:
        return device.upper() if device != "auto" else "auto"
    try:
        from model_runtime.device import resolve_device

        return f"auto ({resolve_device('auto').type.upper()})"
    except Exception:
        return "auto"


def describe_lines(prefs) -> list[str]:
    """Active model, its licence and where it lives, without loading it."""
    choice = prefs.model_choice if prefs is not None else "BUILTIN"
    device = prefs.device if prefs is not None else "auto"
    problem = model_problem(prefs)
    if choice == "BUILTIN":
        name, licence = "PartField small (built-in)", "GPL-3.0-or-later, our own weights (see MODEL_CARD.md)"
    elif choice == "RELEASED":
        name, licence = "PartField (NVIDIA, released)", "NVIDIA License, non-commercial use only"
    else:
        name, licence = "Custom weights", "the licence of your file"
    try:
        path = model_path(prefs)
        if path is None:
            from model_runtime.model_files import default_model_path

            path = str(default_model_path())
    except Exception:
        path = "(not available)"
    lines = [f"Active model: {name} on {_device_text(device)}", f"Licence: {licence}", f"Location: {path}"]
    if problem:
        lines.append(problem)
    return lines


classes = (PartFieldPreferences,)
