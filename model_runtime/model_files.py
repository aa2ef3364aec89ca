"""Where model files live and what their headers say, without importing torch (UI-safe)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL_FILE = "partfield_small.safetensors"
_MAX_HEADER = 16 * 2**20


def default_model_path() -> Path:
    """The bundled default model (our own, trained by model_runtime.training)."""
    return WEIGHTS_DIR / DEFAULT_MODEL_FILE


def bundled_model_available() -> bool:
    """True when the bundled model file is installed (a file-exists check)."""
    return default_model_path().is_file()


def safetensors_metadata(path) -> dict:
    """The `__metadata__` strings of a .safetensors file: reads only its JSON header.

    Returns {} for files that are not safetensors or have no metadata."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                return {}
            (size,) = struct.unpack("<Q", head)
            if not 0 < size <= _MAX_HEADER:
                return {}
            header = json.loads(fh.read(size))
    except (OSError, ValueError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
