"""Where the bundled model lives, without importing torch (safe on Blender's main thread)."""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL_FILE = "partfield_small.safetensors"


def default_model_path() -> Path:
    """The bundled default model (our own, trained by model_runtime.training)."""
    return WEIGHTS_DIR / DEFAULT_MODEL_FILE


def bundled_model_available() -> bool:
    """True when the bundled model file is installed (a file-exists check)."""
    return default_model_path().is_file()
