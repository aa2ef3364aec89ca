"""The loaded network on a device: points -> triplanes once, then features at any query points."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import LoadedWeights, build_network, load_weights
from .device import resolve_device, resolve_precision
from .errors import Cancelled, CheckpointError, DeviceOutOfMemoryError, InputError
from .model_files import DEFAULT_MODEL_FILE, WEIGHTS_DIR, default_model_path  # noqa: F401  (re-exported)
from .network import decode_from_table, triplane_table

MIN_POINTS = 16
DEFAULT_DECODE_MEMORY_MB = 512
DECODE_CHUNK_BYTES = 16 * 2**20

@dataclass
class Triplanes:
    """Encoded part field of one shape: planes (1, 3, F, R, R) on the model's device."""

    planes: torch.Tensor
    _table: torch.Tensor | None = None

    def table(self) -> torch.Tensor:
        """Channels-last texel table for fast decoding (built once, cached)."""
        if self._table is None:
            self._table = triplane_table(self.planes)
        return self._table

    @property
    def feature_dim(self) -> int:
        return self.planes.shape[2]

    @property
    def resolution(self) -> int:
        return self.planes.shape[-1]

    def numpy(self) -> np.ndarray:
        return self.planes[0].float().cpu().numpy()


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class FieldModel:
    """A PartField network ready for inference."""

    def __init__(self, network, device: torch.device, dtype: torch.dtype, source: str,
                 weights: LoadedWeights | None = None):
        self.network = network.to(device).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.device = device
        self.dtype = dtype
        self.source = source
        self.kind = weights.kind if weights else "in-memory"
        self.metadata = dict(weights.metadata) if weights else {}

    # -- construction -------------------------------------------------------------------

    @classmethod
    def load(cls, path=None, device="auto", precision="auto") -> "FieldModel":
        """Load a checkpoint (None: the bundled default model) onto a device."""
        path = Path(path) if path else default_model_path()
        if not path.exists() and path == default_model_path():
            raise CheckpointError(
                f"the bundled default model is missing ({path}); reinstall the extension or "
                "choose a checkpoint file"
            )
        weights = load_weights(path)
        network = build_network(weights, source=path.name)
        try:
            dev = resolve_device(device)
            dtype = resolve_precision(precision, dev)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        return cls(network, dev, dtype, str(path), weights)

    @property
    def config(self):
        return self.network.config

    def describe(self) -> dict:
        """Name, licence, device, precision and file of this model, for UIs and logs."""
        cfg = self.config
        licence = self.metadata.get("licence") or self.metadata.get("license")
        if not licence:
            licence = ("NVIDIA non-commercial licence (research and evaluation only)"
                       if cfg.name == "partfield-objaverse" or self.kind == "lightning" else "unknown")
        return {
            "name": self.metadata.get("name", cfg.name),
            "licence": licence,
            "device": str(self.device),
            "precision": str(self.dtype).replace("torch.", ""),
            "path": self.source,
            "kind": self.kind,
            "feature_dim": cfg.feature_dim,
            "plane_resolution": cfg.plane_resolution,
            "parameters": sum(p.numel() for p in self.network.parameters()),
        }

    # -- inference ------------------------------------------------------------------------

    @property
    def reads_normals(self) -> bool:
        """True when the network also reads a surface normal per input point."""
        return self.config.point_normals

    def encode(self, points, normals=None, cancel=None) -> Triplanes:
        """Normalised points (N, 3) (bbox centred, longest side in [-0.9, 0.9]) -> Triplanes.

        `normals` (N, 3): unit surface normals at the points (sign does not matter); required
        when `reads_normals`, ignored otherwise. `cancel() -> bool` is polled before every
        UNet and transformer block (raises `Cancelled`)."""
        pts = np.asarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise InputError(f"points must have shape (N, 3), got {pts.shape}")
        if len(pts) < MIN_POINTS:
            raise InputError(f"need at least {MIN_POINTS} points to compute a part field, got {len(pts)}")
        if not np.isfinite(pts).all():
            raise InputError("points contain NaN or infinite coordinates")
        x = torch.from_numpy(pts).to(self.device)[None]
        nrm = None
        if self.reads_normals:
            if normals is None:
                raise InputError("this model reads surface normals: pass a normal per input point")
            nrm_np = np.asarray(normals, dtype=np.float32)
            if nrm_np.shape != pts.shape or not np.isfinite(nrm_np).all():
                raise InputError(f"normals must be finite and shaped like the points {pts.shape}, got {nrm_np.shape}")
            nrm = torch.from_numpy(nrm_np).to(self.device)[None]
        try:
            with torch.inference_mode(), self._autocast(), self._cancel_checks(cancel):
                planes = self.network.encode(x, nrm)
        except Exception as exc:
            if _is_oom(exc):
                self._free()
                raise DeviceOutOfMemoryError(
                    f"the {self.device.type.upper()} ran out of memory while encoding {len(pts):,} points; "
                    "switch the device to CPU or sample fewer points"
                ) from exc
            raise
        keep = torch.float16 if self.device.type == "cuda" else torch.float32
        return Triplanes(planes.to(keep).contiguous())

    def decode(self, triplanes: Triplanes, queries, max_memory_mb: float | None = None, cancel=None) -> np.ndarray:
        """Features (Q, F) float32 at normalised query points (Q, 3), decoded in memory-capped
        chunks; `cancel() -> bool` is polled before each chunk (raises `Cancelled`)."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != 3:
            raise InputError(f"query points must have shape (Q, 3), got {q.shape}")
        if not np.isfinite(q).all():
            raise InputError("query points contain NaN or infinite coordinates")
        f = triplanes.feature_dim
        out = np.empty((len(q), f), dtype=np.float32)
        if len(q) == 0:
            return out
        budget = (max_memory_mb or DEFAULT_DECODE_MEMORY_MB) * 2**20
        per_query = 4 * f * 2 + 200  # result + its host copy, corner rows and weights
        # Chunks of ~16 MB of features stay below glibc's mmap threshold, so the allocator
        # reuses the same pages instead of faulting fresh ones in for every chunk.
        chunk = int(max(1024, min(len(q), budget // per_query, DECODE_CHUNK_BYTES // (4 * f))))
        use_table = self.device.type != "mps"  # embedding_bag with weights is not on every MPS build
        try:
            with torch.inference_mode():
                table = triplanes.table() if use_table else None
                for start in range(0, len(q), chunk):
                    if cancel is not None and cancel():
                        raise Cancelled("decoding cancelled")
                    qt = torch.from_numpy(q[start:start + chunk]).to(self.device)
                    if use_table:
                        feats = decode_from_table(table, triplanes.resolution, qt)
                    else:
                        feats = self.network.decode(triplanes.planes, qt[None])[0]
                    out[start:start + len(qt)] = feats.float().cpu().numpy()
        except Exception as exc:
            if _is_oom(exc):
                self._free()
                raise DeviceOutOfMemoryError(
                    f"the {self.device.type.upper()} ran out of memory while decoding features; "
                    "lower the decode memory limit, use fewer query points, or switch to the CPU"
                ) from exc
            raise
        return out

    def features(self, points, queries, max_memory_mb=None, normals=None) -> np.ndarray:
        """Convenience: encode then decode."""
        return self.decode(self.encode(points, normals), queries, max_memory_mb)

    # -- helpers ----------------------------------------------------------------------------

    def _autocast(self):
        if self.dtype == torch.float32:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.dtype)

    @contextlib.contextmanager
    def _cancel_checks(self, cancel):
        """Forward pre-hooks that poll `cancel()` before each block of the network."""
        if cancel is None:
            yield
            return

        def check(_module, _inputs):
            if cancel():
                raise Cancelled("encoding cancelled")

        handles = [m.register_forward_pre_hook(check) for m in self._blocks()]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _blocks(self):
        """The network's big steps, in run order: point encoder, UNet blocks, transformer layers."""
        net = self.network
        out = [net.pvcnn.pc_encoder]
        unet = net.pvcnn.unet_encoder
        out += list(unet.down_convs) + list(unet.up_convs)
        out += list(net.triplane_transformer.transformer.layers)
        return out

    def _free(self):
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------
# Per-process model cache: the slider, repeated computes and batch runs never reload.
# ---------------------------------------------------------------------------

_cache: dict = {}
_cache_lock = threading.Lock()


def get_model(path=None, device="auto", precision="auto") -> FieldModel:
    """Cached FieldModel. One model is kept per device; asking for another file frees the old one."""
    resolved = str(Path(path).resolve()) if path else str(default_model_path())
    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    key = (resolved, str(precision))
    with _cache_lock:
        entry = _cache.get(str(dev))
        if entry is not None and entry[0] == key:
            return entry[1]
        if entry is not None:
            del _cache[str(dev)]
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        model = FieldModel.load(resolved, dev, precision)
        _cache[str(dev)] = (key, model)
        return model


def is_cached(path=None, device="auto", precision="auto") -> bool:
    """True when `get_model` with these arguments would return without loading."""
    resolved = str(Path(path).resolve()) if path else str(default_model_path())
    try:
        dev = resolve_device(device)
    except ValueError:
        return False
    entry = _cache.get(str(dev))
    return entry is not None and entry[0] == (resolved, str(precision))


def clear_model_cache() -> None:
    """Drop every cached model (frees their memory)."""
    with _cache_lock:
        _cache.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
