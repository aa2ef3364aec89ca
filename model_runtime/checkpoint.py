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
import functools
import io
import json
import math
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
# Limits: what a checkpoint may ask of this process before it is refused
# ---------------------------------------------------------------------------

# The pickle (data.pkl) of the released checkpoint is about 0.1 MB (tensor references,
# optimizer bookkeeping, the training config); a safetensors header is a few tens of KB.
MAX_PICKLE_BYTES = 8 << 20
MAX_HEADER_BYTES = 16 << 20
# Parameters a config may describe (the released network has 107 M).
MAX_PARAMETERS = 1_000_000_000
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_READ_CHUNK = 4 << 20
_MAX_OPAQUE_GLOBALS = 256


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
    dtype: object  # torch.dtype, or None for a storage type this reader does not know


@dataclass
class _TensorRef:
    """A tensor whose bytes are read only when materialised."""

    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple

    @property
    def shape(self) -> tuple:
        return self.size

    @property
    def dtype(self):
        return self.storage.dtype


@dataclass
class _Spec:
    """Name-less description of a stored tensor: what is checked before its bytes are read."""

    shape: tuple
    dtype: object


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**62


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    size, stride = tuple(size), tuple(stride)
    if not isinstance(storage, _StorageRef) or not _is_count(storage_offset) or len(size) != len(stride) \
            or len(size) > 8 or not all(_is_count(v) for v in size + stride):
        raise pickle.UnpicklingError("malformed tensor record")
    return _TensorRef(storage, int(storage_offset), size, stride)


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
        # replaced by an inert placeholder: it is never called with its real code. One class
        # per name, and few names: a checkpoint names a handful, a hostile pickle could name
        # millions (a class each).
        opaque = self.__dict__.setdefault("_opaque", {})
        key = (str(module)[:200], str(name)[:200])
        if key not in opaque:
            if len(opaque) >= _MAX_OPAQUE_GLOBALS:
                raise pickle.UnpicklingError(f"more than {_MAX_OPAQUE_GLOBALS} unknown globals")
            opaque[key] = _opaque_global(*key)
        return opaque[key]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise pickle.UnpicklingError("unsupported persistent id")
        storage_type, key = pid[1], str(pid[2])[:64]
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else None
        return _StorageRef(key, dtype)


def _opaque_global(module, name):
    qualname = f"{module}.{name}"[:200]

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


class _TorchZip:
    """An open torch zip: the unpickled object (tensor references only) and the entries."""

    def __init__(self, path: Path):
        self.path = path
        self.zf = zipfile.ZipFile(path)
        try:
            self._open()
        except BaseException:
            self.zf.close()
            raise

    def _open(self):
        path = self.path
        self.infos = {i.filename: i for i in self.zf.infolist()}
        pkl = sorted((n for n in self.infos if n.endswith("/data.pkl") or n == "data.pkl"), key=len)
        if not pkl:
            raise CheckpointError(f"{path.name}: not a PyTorch checkpoint (no data.pkl inside)")
        self.prefix = pkl[0][: -len("data.pkl")]
        byteorder = self.infos.get(self.prefix + "byteorder")
        if byteorder is not None and self._read_small(byteorder, 16).decode("ascii", "replace").strip() != "little":
            raise CheckpointError(f"{path.name}: big-endian checkpoints are not supported")
        info = self.infos[pkl[0]]
        if info.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(
                f"{path.name}: its object table (data.pkl) claims {info.file_size:,} bytes, more than the "
                f"{MAX_PICKLE_BYTES:,} a PartField checkpoint needs; refused"
            )
        self.obj = _RestrictedUnpickler(io.BytesIO(self._read_small(info, MAX_PICKLE_BYTES))).load()

    def _read_small(self, info, limit) -> bytes:
        with self.zf.open(info) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise CheckpointError(f"{self.path.name}: entry {info.filename} is larger than it may be")
        return data

    def close(self):
        self.zf.close()

    def read_tensors(self, refs: dict) -> dict:
        """Materialise `refs` {name: _TensorRef}. Every reference was checked against the expected
        network; here the layout is checked against its storage entry, and each storage is read
        once, straight into its tensor, no further than the tensors need."""
        name = self.path.name
        need: dict = {}  # storage key -> (dtype, elements needed)
        for key, ref in refs.items():
            dtype = ref.storage.dtype
            if dtype is None:
                raise CheckpointError(f"{name}: tensor {key!r} has a storage type this loader does not know")
            numel = math.prod(ref.size)
            if not _dense_layout(ref.size, ref.stride):
                raise CheckpointError(
                    f"{name}: tensor {key!r} has a strided layout (size {ref.size}, stride {ref.stride}) "
                    "that a saved network does not use; refused"
                )
            end = ref.offset + numel if numel else 0
            if numel and ref.offset > numel + 1024:
                raise CheckpointError(f"{name}: tensor {key!r} starts {ref.offset:,} elements into its storage; refused")
            prev = need.get(ref.storage.key)
            if prev is not None and prev[0] != dtype:
                raise CheckpointError(f"{name}: storage {ref.storage.key!r} is read with two data types")
            need[ref.storage.key] = (dtype, max(end, prev[1] if prev else 0))
        storages = {}
        for skey, (dtype, elements) in need.items():
            info = self.infos.get(f"{self.prefix}data/{skey}")
            if info is None:
                raise CheckpointError(f"{name}: truncated checkpoint, tensor data missing (storage {skey!r})")
            itemsize = torch.empty(0, dtype=dtype).element_size()
            nbytes = elements * itemsize
            if info.file_size < nbytes:
                raise CheckpointError(
                    f"{name}: truncated or corrupt tensor data (storage {skey!r} holds {info.file_size:,} "
                    f"bytes, its tensors need {nbytes:,})"
                )
            storages[skey] = self._read_storage(info, dtype, elements, nbytes)
        out = {}
        for key, ref in refs.items():
            flat = storages[ref.storage.key]
            numel = math.prod(ref.size)
            if ref.offset == 0 and numel == flat.numel() and ref.stride == _contiguous_stride(ref.size):
                out[key] = flat.view(ref.size)
            else:
                out[key] = torch.as_strided(flat, ref.size, ref.stride, ref.offset).clone()
        return out

    def _read_storage(self, info, dtype, elements, nbytes) -> torch.Tensor:
        flat = torch.empty(elements, dtype=dtype)
        if not nbytes:
            return flat
        buf = memoryview(flat.view(torch.uint8).numpy())
        pos = 0
        with self.zf.open(info) as fh:
            while pos < nbytes:
                block = fh.read(min(_READ_CHUNK, nbytes - pos))
                if not block:
                    raise CheckpointError(f"{self.path.name}: truncated tensor data in {info.filename}")
                buf[pos:pos + len(block)] = block
                pos += len(block)
        return flat


def _contiguous_stride(size) -> tuple:
    stride, acc = [], 1
    for s in reversed(size):
        stride.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(stride))


def _dense_layout(size, stride) -> bool:
    """True when (size, stride) covers numel distinct consecutive elements (a contiguous tensor,
    possibly with its dimensions permuted): no stride-0 or overlapping views, no gaps."""
    dims = sorted((st, sz) for sz, st in zip(size, stride) if sz != 1)
    if any(sz == 0 for sz in size):
        return True
    acc = 1
    for st, sz in dims:
        if st != acc:
            return False
        acc *= sz
    return True


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, _TensorRef) for v in obj.values())


# ---------------------------------------------------------------------------
# The network a checkpoint must fit
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _manifest(config: PartFieldConfig) -> tuple:
    from .network import PartFieldNet

    config.validate()
    with torch.device("meta"):  # shapes only, no memory
        net = PartFieldNet(config)
    items = tuple((k, tuple(v.shape)) for k, v in net.state_dict().items())
    count = sum(math.prod(s) for _, s in items)
    if count > MAX_PARAMETERS:
        raise ValueError(f"the config describes {count:,} parameters, more than the {MAX_PARAMETERS:,} supported")
    return items


def expected_manifest(config: PartFieldConfig) -> dict:
    """{state_dict key: shape} of the network `config` describes, built without memory.
    ValueError when the config is out of range or describes too large a network."""
    return dict(_manifest(config))


def check_index(index: dict, config: PartFieldConfig, source: str) -> dict:
    """Check stored tensor names, shapes and dtypes (`index` {key: object with .shape, .dtype})
    against the network `config` describes, before any tensor is read. Returns the subset of
    `index` to read (the released model's dead modules are skipped when the config drops them).
    Missing keys are left to `build_network`, which names them."""
    try:
        manifest = expected_manifest(config)
    except ValueError as exc:
        raise CheckpointError(f"{source}: invalid network config ({exc})") from exc
    keep = {k: v for k, v in index.items() if config.dead_modules or not k.startswith(DEAD_PREFIXES)}
    unexpected = [k for k in keep if k not in manifest]
    if unexpected:
        raise CheckpointError(
            f"{source} does not fit the network: {len(unexpected)} unexpected keys "
            f"(first: {', '.join(k[:80] for k in unexpected[:3])})"
        )
    wrong = [f"{k} is {tuple(v.shape)}, expected {manifest[k]}" for k, v in keep.items()
             if tuple(v.shape) != manifest[k]]
    if wrong:
        raise CheckpointError(
            f"{source} does not fit the network: {len(wrong)} tensors have the wrong shape ({'; '.join(wrong[:3])})"
        )
    bad = [f"{k} ({v.dtype})" for k, v in keep.items() if v.dtype not in _FLOAT_DTYPES]
    if bad:
        raise CheckpointError(
            f"{source} does not fit the network: {len(bad)} tensors are not floating point (first: {', '.join(bad[:3])})"
        )
    return keep


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def load_weights(path) -> LoadedWeights:
    """Read a checkpoint file of any accepted format. Raises CheckpointError with a clear message
    for any file that is missing, unreadable, corrupt, hostile or does not fit the network."""
    path = Path(path)
    try:
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
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{path.name}: not enough memory to read this checkpoint") from None
    except OSError as exc:
        raise CheckpointError(f"{path.name}: cannot read the checkpoint ({exc.strerror or exc})") from None
    except Exception as exc:  # anything else the bytes provoke is a corrupt file, said once
        raise CheckpointError(
            f"{path.name}: truncated or corrupt checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def _load_torch_zip(path: Path) -> LoadedWeights:
    try:
        tz = _TorchZip(path)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{path.name}: not enough memory to read this checkpoint") from None
    except Exception as exc:  # BadZipFile, EOFError, UnpicklingError, RecursionError ...
        raise CheckpointError(f"{path.name}: truncated or corrupt checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        obj = tz.obj
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            refs, kind = obj["state_dict"], "lightning"
            hyper = obj.get("hyper_parameters") or {}
            cfg_node = hyper.get("cfg") if isinstance(hyper, dict) else None
            metadata = {
                "lightning_version": str(obj.get("pytorch-lightning_version", ""))[:100],
                "epoch": _plain(obj.get("epoch")),
                "global_step": _plain(obj.get("global_step")),
                "training_config": _plain(cfg_node) if cfg_node is not None else None,
            }
        elif _is_tensor_dict(obj):
            refs, kind, metadata = obj, "state_dict", {}
        else:
            raise CheckpointError(
                f"{path.name}: no weights found (expected a Lightning checkpoint with 'state_dict' "
                "or a plain state_dict)"
            )
        index = {}
        for key, ref in refs.items():
            if not isinstance(ref, _TensorRef) or not isinstance(key, str):
                raise CheckpointError(f"{path.name}: state_dict entry {str(key)[:80]!r} is not a tensor")
            index[_strip_prefix(key)] = ref
        config = infer_config(index, source=path.name)
        keep = check_index(index, config, path.name)
        try:
            state = tz.read_tensors(keep)
        except CheckpointError:
            raise
        except MemoryError:
            raise CheckpointError(f"{path.name}: not enough memory to read this checkpoint") from None
        except Exception as exc:  # BadZipFile (bad CRC, bad deflate), EOFError, zlib.error, OSError
            raise CheckpointError(f"{path.name}: truncated or corrupt tensor data ({type(exc).__name__}: {exc})") from None
    finally:
        tz.close()
    return LoadedWeights(state, config, kind, metadata)


_ST_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def _read_safetensors_index(path: Path) -> tuple:
    """(index {key: _Spec}, metadata {str: str}) from a safetensors header, checked for
    consistency with the file size; nothing but the header is read."""
    bad = (f"{path.name}: not a checkpoint this runtime can read (not a PyTorch zip, not a valid "
           "safetensors file, or truncated)")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if n < 2 or n > size - 8:
            raise CheckpointError(f"{bad}: header length {n:,} does not fit a {size:,}-byte file")
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path.name}: safetensors header of {n:,} bytes is larger than a checkpoint needs; refused")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{bad}: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad}: the header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CheckpointError(f"{bad}: its metadata is not a string table")
    data_len = size - 8 - n
    index = {}
    for key, ent in header.items():
        try:
            dtype = _ST_DTYPES[ent["dtype"]]
            shape = tuple(ent["shape"])
            a, b = ent["data_offsets"]
            ok = all(_is_count(v) for v in shape + (a, b)) and len(shape) <= 8
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{bad}: malformed entry for {key[:80]!r}")
        nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        if b - a != nbytes or b > data_len:
            raise CheckpointError(f"{bad}: tensor {key[:80]!r} is truncated or its offsets are inconsistent")
        index[key] = _Spec(shape, dtype)
    return index, meta


def _load_safetensors(path: Path) -> LoadedWeights:
    index, meta = _read_safetensors_index(path)
    config = None
    if "partfield_config" in meta:
        try:
            config = PartFieldConfig.from_dict(json.loads(meta["partfield_config"]))
        except (ValueError, TypeError, RecursionError) as exc:
            raise CheckpointError(f"{path.name}: invalid network config in metadata ({exc})") from None
    stripped = {_strip_prefix(k): (k, v) for k, v in index.items()}
    specs = {k: v for k, (_, v) in stripped.items()}
    config = config or infer_config(specs, source=path.name)
    keep = check_index(specs, config, path.name)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            state = {k: fh.get_tensor(stripped[k][0]) for k in keep}
    except MemoryError:
        raise CheckpointError(f"{path.name}: not enough memory to read this checkpoint") from None
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"{path.name}: not a checkpoint this runtime can read (not a PyTorch zip, not a valid "
            f"safetensors file, or truncated): {exc}"
        ) from None
    metadata = {k: _json_or_str(v) for k, v in meta.items() if k != "partfield_config"}
    kind = "compact" if meta.get("format") == COMPACT_FORMAT else "safetensors"
    return LoadedWeights(state, config, kind, metadata)


# Shape-visible fields: two configs equal on these build state_dicts of identical shapes.
_SHAPE_FIELDS = ("point_in_channels", "point_normals", "pvconv_channels", "dead_modules", "plane_resolution",
                 "unet_channels", "unet_depth", "transformer_width", "transformer_depth",
                 "transformer_mlp_ratio", "out_channels")


def known_configs() -> list:
    """The family members this project knows, matched by shape when a file carries no config."""
    return [PartFieldConfig.released(), PartFieldConfig.small(), PartFieldConfig.small_normals()]


def infer_config(state: dict, source: str = "checkpoint") -> PartFieldConfig:
    """Work out the network configuration from the tensor shapes (`state` values need only
    `.shape`: tensors, or the references read before any tensor is).

    A known family member (released, small, small-normals) whose shapes match is returned as
    is, with its head count and SDF channels. Otherwise head count and SDF channel count, which
    shapes do not show, are guessed (the released values when the released model's dead
    modules are present). Raises CheckpointError when the shapes describe no valid network."""
    released = PartFieldConfig.released()
    try:
        v0 = state["pvcnn.pc_encoder.encoder.0.voxel_layers.0.weight"].shape
        pos = state["triplane_transformer.pos_embed"].shape
        up = state["triplane_transformer.upsampler.weight"].shape
        c0 = state["pvcnn.unet_encoder.down_convs.0.block.conv1.weight"].shape[0]
    except (KeyError, IndexError):
        return released  # let the strict load name the missing keys
    try:
        depth = len({k.split(".")[3] for k in state if k.startswith("pvcnn.unet_encoder.down_convs.")})
        layers = len({k.split(".")[3] for k in state if k.startswith("triplane_transformer.transformer.layers.")})
        tokens = pos[1]
        token_res = int(round((tokens / 3) ** 0.5))
        dead = "logit_scale" in state or "sdf_decoder.layers.0.weight" in state
        width = pos[2]
        mlp = state.get("triplane_transformer.transformer.layers.0.mlp.0.weight")
        ratio = mlp.shape[0] // width if mlp is not None and width else released.transformer_mlp_ratio
        cfg = PartFieldConfig(
            name=released.name if dead else "partfield-custom",
            point_in_channels=int(v0[1]),
            point_normals=int(v0[1]) == 9,
            pvconv_channels=int(v0[0]),
            dead_modules=dead,
            plane_resolution=token_res * 4,
            unet_channels=int(c0),
            unet_depth=depth,
            transformer_width=int(width),
            transformer_depth=layers,
            transformer_heads=released.transformer_heads if width % released.transformer_heads == 0 else 1,
            transformer_mlp_ratio=int(ratio),
            out_channels=int(up[1]),
            sdf_channels=released.sdf_channels if dead else 0,
        )
        for known in known_configs():
            if all(getattr(cfg, f) == getattr(known, f) for f in _SHAPE_FIELDS):
                return known
        cfg.validate()
    except (IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise CheckpointError(f"{source}: the tensor shapes describe no network this runtime can build ({exc})") from None
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
        if str(k) in ("format", "partfield_config"):
            continue
        # Metadata read from a pickle can hold anything (sets, tensors, NaN): keep a JSON form.
        meta[str(k)] = v if isinstance(v, str) else json.dumps(_plain(v))
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, KeyboardInterrupt, SystemExit, MemoryError)):
            raise
        # safetensors reports a full disk or a missing folder as its own error type
        raise OSError(f"cannot write {path}: {' '.join(str(exc).split())}") from None
    return path


def _strip_prefix(key: str) -> str:
    return key[len("model."):] if key.startswith("model.") else key


def _plain(obj, depth: int = 0):
    """A JSON-serialisable copy of pickled metadata (nesting cut at 32 levels)."""
    if depth > 32:
        return "..."
    if isinstance(obj, dict):
        return {str(k)[:200]: _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, (int, str, bool)) or obj is None:
        return obj
    return repr(obj)[:200]


def _json_or_str(value: str):
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value
