"""PartField runtime: the network, checkpoints, sampling, per-face features and part trees.

Pure Python + numpy + PyTorch. Never imports bpy, so it runs and is tested without Blender.
"""
from .errors import Cancelled, CheckpointError, DeviceOutOfMemoryError, InputError, PartFieldError

__version__ = "0.1.0"

__all__ = [
    "Cancelled",
    "CheckpointError",
    "DeviceOutOfMemoryError",
    "InputError",
    "PartFieldError",
    "__version__",
]
