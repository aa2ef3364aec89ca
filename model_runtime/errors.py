"""Exceptions raised by model_runtime. Every message is meant to be shown to a user as is."""


class PartFieldError(Exception):
    """Base class for all errors that model_runtime raises on purpose."""


class CheckpointError(PartFieldError):
    """A weights file is missing, unreadable, truncated, or does not fit the network."""


class InputError(PartFieldError):
    """A mesh or point cloud cannot be processed (empty, non-finite, too small ...)."""


class MeshFileError(InputError):
    """A mesh file cannot be read: missing, unreadable, truncated, malformed or hostile."""


class DeviceOutOfMemoryError(PartFieldError):
    """The compute device ran out of memory."""


class Cancelled(PartFieldError):
    """The caller asked the running job to stop."""


def accepts_cancel(fn) -> bool:
    """True when callable `fn` takes a `cancel` keyword (the polling protocol of `Cancelled`)."""
    import inspect

    try:
        return "cancel" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class StoredResultError(InputError):
    """A saved segmentation result (npz file or the copy kept in a .blend) is unreadable,
    claims more than it holds, or does not fit the mesh it is stored with."""
