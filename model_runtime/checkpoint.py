"""Checkpoint files: read them without running pickled code, check them, write compact ones.

Accepted formats:
- the released Lightning checkpoint (`model_objaverse.ckpt`): a torch zip pickle with the
  weights under `state_dict`, a yacs `CfgNode` and optimizer state beside them. It is read
  by a restricted unpickler that only knows tensors, dicts, lists and the config node
  (as a plain dict), so neither `yacs` nor Lightning is needed and no pickled code runs.
  Only the tensors under `state_dict` are read from disk.
- a plain state_dict saved with `torch.save` (same restricted reader);
- safetensors; our own files carry their `PartFieldConfig` in the metadata.
"""
from __future__ import annotations

import collections
import json
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import PartFieldConfig
from .errors import CheckpointError

COMPACT_FORMAT = "partfield-compact/1"
DEAD_PREFIXES = ("pvcnn.pc_encoder.encoder.1.", "pvcnn.pc_encoder.encoder.2.",
                 "pvcnn.pc_encoder.encoder.3.", "sdf_decoder.", "logit_scale")


@dataclass
class LoadedWeights:
    """A state_dict with the network configuration it belongs to."""

    state_dict: dict
    config: PartFieldConfig
    kind: str  # "lightning", "state_dict", "safetensors", "compact"
    metadata: dict = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return sum(t.numel() for t in self.state_dict.values())


# ---------------------------------------------------------------------------
# Restricted torch-zip reader
# ---------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


@dataclass
class _StorageRef:
    key: str
    dtype: torch.dtype


@dataclass
class _TensorRef:
    """A tensor whose bytes are read only when materialised."""

    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _ConfigNode(dict):
    """Stands in for yacs' CfgNode (a dict subclass): keeps the items, drops the flags."""

    def __setstate__(self, state):
        pass


class _RestrictedUnpickler(pickle.Unpickler):
    _allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("yacs.config", "CfgNode"): _ConfigNode,
        ("__builtin__", "set"): set,
        ("builtins", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("builtins", "frozenset"): frozenset,
        ("torch", "Size"): tuple,
    }

    def find_class(self, module, name):
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in ("float32", "float16", "bfloat16", "float64", "int64"):
            return getattr(torch, name)
        # Anything else (Lightning callbacks, lr schedulers, arbitrary callables) is
        # replaced by an inert placeholder: it is never called with its real code.
        return _opaque_global(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else torch.uint8
        return _StorageRef(key, dtype)


def _opaque_global(module, name):
    qualname = f"{module}.{name}"

    class Opaque:
        def __new__(cls, *args, **kwargs):
            obj = object.__new__(cls)
            obj.qualname = qualname
            return obj

        def __setstate__(self, state):
            pass

        def __repr__(self):
            return f"<not loaded: {qualname}>"

    Opaque.__qualname__ = Opaque.__name__ = f"Opaque[{qualname}]"
    return Opaque


def _read_torch_zip(path: Path) -> tuple[object, zipfile.ZipFile, str]:
    zf = zipfile.ZipFile(path)
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl")]
    if not pkl:
        raise CheckpointError(f"{path.name}: not a PyTorch checkpoint (no data.pkl inside)")
    prefix = pkl[0][: -len("data.pkl")]
    byteorder = prefix + "byteorder"
    if byteorder in names and zf.read(byteorder).decode().strip() != "little":
        raise CheckpointError(f"{path.name}: big-endian checkpoints are not supported")
    with zf.open(pkl[0]) as fh:
        obj = _RestrictedUnpickler(fh).load()
    return obj, zf, prefix


def _materialise(ref: _TensorRef, zf: zipfile.ZipFile, prefix: str, cache: dict) -> torch.Tensor:
    key = ref.storage.key
    if key not in cache:
        raw = bytearray(zf.read(f"{prefix}data/{key}"))
        cache[key] = torch.frombuffer(raw, dtype=ref.storage.dtype) if raw else torch.empty(0, dtype=ref.storage.dtype)
    flat = cache[key]
    return torch.as_strided(flat, ref.size, ref.stride, ref.offset).clone()


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, _TensorRef) for v in obj.values())


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def load_weights(path) -> LoadedWeights:
    """Read a checkpoint file of any accepted format. Raises CheckpointError with a clear message."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"checkpoint file is not readable (permissions): {path}")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{path.name}: file is empty or truncated ({path.stat().st_size} bytes)")
    if head[:4] == b"PK\x03\x04":
        return _load_torch_zip(path)
    return _load_safetensors(path)


def _load_torch_zip(path: Path) -> LoadedWeights:
    try:
        obj, zf, prefix = _read_torch_zip(path)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: truncated or corrupt checkpoint ({exc})") from exc
    with zf:
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            refs, kind = obj["state_dict"], "lightning"
            hyper = obj.get("hyper_parameters") or {}
            cfg_node = hyper.get("cfg") if isinstance(hyper, dict) else None
            metadata = {
                "lightning_version": str(obj.get("pytorch-lightning_version", "")),
                "epoch": obj.get("epoch"),
                "global_step": obj.get("global_step"),
                "training_config": _plain(cfg_node) if cfg_node is not None else None,
            }
        elif _is_tensor_dict(obj):
            refs, kind, metadata = obj, "state_dict", {}
        else:
            raise CheckpointError(
                f"{path.name}: no weights found (expected a Lightning checkpoint with 'state_dict' "
                "or a plain state_dict)"
            )
        cache: dict = {}
        try:
            state = {}
            for key, ref in refs.items():
                if not isinstance(ref, _TensorRef):
                    raise CheckpointError(f"{path.name}: state_dict entry {key!r} is not a tensor")
                state[_strip_prefix(key)] = _materialise(ref, zf, prefix, cache)
        except KeyError as exc:
            raise CheckpointError(f"{path.name}: truncated checkpoint, tensor data missing ({exc})") from exc
        except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{path.name}: truncated or corrupt tensor data ({exc})") from exc
    config = infer_config(state)
    return LoadedWeights(state, config, kind, metadata)


def _load_safetensors(path: Path) -> LoadedWeights:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            state = {_strip_prefix(k): fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"{path.name}: not a checkpoint this runtime can read (not a PyTorch zip, not a valid "
            f"safetensors file, or truncated): {exc}"
        ) from exc
    config = None
    if "partfield_config" in meta:
        try:
            config = PartFieldConfig.from_dict(json.loads(meta["partfield_config"]))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path.name}: invalid network config in metadata ({exc})") from exc
    metadata = {k: _json_or_str(v) for k, v in meta.items() if k != "partfield_config"}
    kind = "compact" if meta.get("format") == COMPACT_FORMAT else "safetensors"
    return LoadedWeights(state, config or infer_config(state), kind, metadata)


def infer_config(state: dict) -> PartFieldConfig:
    """Work out the network configuration from the tensor shapes.

    Head count and SDF channel count are not visible in shapes: the released values
    are assumed when the released model's dead modules are present.
    """
    released = PartFieldConfig.released()
    try:
        v0 = state["pvcnn.pc_encoder.encoder.0.voxel_layers.0.weight"]
        pos = state["triplane_transformer.pos_embed"]
        up = state["triplane_transformer.upsampler.weight"]
        c0 = state["pvcnn.unet_encoder.down_convs.0.block.conv1.weight"].shape[0]
    except KeyError:
        return released  # let the strict load name the missing keys
    depth = len({k.split(".")[3] for k in state if k.startswith("pvcnn.unet_encoder.down_convs.")})
    layers = len({k.split(".")[3] for k in state if k.startswith("triplane_transformer.transformer.layers.")})
    tokens = pos.shape[1]
    token_res = int(round((tokens / 3) ** 0.5))
    dead = "logit_scale" in state or "sdf_decoder.layers.0.weight" in state
    width = pos.shape[2]
    cfg = PartFieldConfig(
        name=released.name if dead else "partfield-custom",
        point_in_channels=v0.shape[1],
        pvconv_channels=v0.shape[0],
        dead_modules=dead,
        plane_resolution=token_res * 4,
        unet_channels=c0,
        unet_depth=depth,
        transformer_width=width,
        transformer_depth=layers,
        transformer_heads=released.transformer_heads if width % released.transformer_heads == 0 else 1,
        out_channels=up.shape[1],
        sdf_channels=released.sdf_channels if dead else 0,
    )
    if cfg == released:
        return released
    return cfg


def check_state_dict(state: dict, model: torch.nn.Module, source: str = "checkpoint") -> None:
    """Raise CheckpointError naming missing/unexpected keys, wrong shapes or non-finite values."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
    if problems:
        raise CheckpointError(f"{source} does not fit the network: " + "; ".join(problems))
    wrong = [
        f"{k} is {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise CheckpointError(
            f"{source} does not fit the network: {len(wrong)} tensors have the wrong shape ({'; '.join(wrong[:3])})"
        )
    bad = [k for k, t in state.items() if t.is_floating_point() and not _all_finite(t)]
    if bad:
        raise CheckpointError(
            f"{source} contains NaN or infinite weights in {len(bad)} tensors (first: {', '.join(bad[:3])})"
        )


def _all_finite(t: torch.Tensor) -> bool:
    """Exact finiteness check. Fast path: a finite sum means no NaN or inf (an overflowing sum
    of finite values falls through to the elementwise check)."""
    if bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def build_network(weights: LoadedWeights, source: str = "checkpoint"):
    """A PartFieldNet for these weights, loaded strictly (fp32, CPU, eval mode)."""
    from .network import PartFieldNet

    try:
        with torch.device("meta"):  # no memory until the real weights are assigned
            net = PartFieldNet(weights.config)
    except ValueError as exc:
        raise CheckpointError(f"{source}: invalid network config ({exc})") from exc
    state = dict(weights.state_dict)
    if not weights.config.dead_modules:
        state = {k: v for k, v in state.items() if not k.startswith(DEAD_PREFIXES)}
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    check_state_dict(state, net, source)
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval()


def save_compact(path, state_dict: dict, config: PartFieldConfig, metadata: dict | None = None,
                 dtype: torch.dtype = torch.float16, drop_dead: bool = True) -> Path:
    """Write a weights-only safetensors file carrying its config (dead weights dropped)."""
    from safetensors.torch import save_file

    path = Path(path)
    if drop_dead:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(DEAD_PREFIXES)}
        config = PartFieldConfig.from_dict({**config.to_dict(), "dead_modules": False})
    tensors = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in state_dict.items()
    }
    meta = {"format": COMPACT_FORMAT, "partfield_config": json.dumps(config.to_dict())}
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def _strip_prefix(key: str) -> str:
    return key[len("model."):] if key.startswith("model.") else key


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return repr(obj)


def _json_or_str(value: str):
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value
