"""`SegmentationResult`: per-polygon features, the part tree, the normalisation and metadata;
saved and loaded as a plain npz (no pickle)."""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, PartFieldError, StoredResultError
from .normalization import Normalization
from .part_tree import PartTree, check_layout, check_merges

FORMAT = "partfield-segmentation"
FORMAT_VERSION = 1


class SegmentationResult:
    """What a compute produces; `labels(k)` gives the parts at any granularity."""

    def __init__(self, features, tree: PartTree, normalization: Normalization, metadata=None):
        self.features = features  # (P, F) float32 or float16
        self.tree = tree
        self.normalization = normalization
        self.metadata = dict(metadata or {})

    @property
    def features(self) -> np.ndarray:
        """(P, F) float32 or float16. A result read by `from_bytes` decodes them on first use
        (the slider needs the tree only; Select Similar and the heat map read them): their
        size, dtype and shape were checked on load, the bytes' checksum is checked here."""
        if self._read_features is not None:
            self._features, self._read_features = self._read_features(), None
        return self._features

    @features.setter
    def features(self, value) -> None:
        self._features, self._read_features = value, None

    @property
    def features_decoded(self) -> bool:
        return self._read_features is None

    @property
    def num_polygons(self) -> int:
        return self.tree.num_leaves

    @property
    def max_parts(self) -> int:
        return self.tree.num_leaves

    @property
    def suggested_parts(self) -> int:
        """The tree's own part count (its natural cut), 1..P: stored at build time in the
        metadata; for results saved before that, found from the stored merge costs (numpy)."""
        p = self.num_polygons
        value = self.metadata.get("suggested_parts")
        if value is None:
            from .part_tree import natural_cut

            value = natural_cut(self.tree.costs, p) if self.tree.costs is not None else min(5, p)
        try:
            return max(1, min(int(value), p))
        except (TypeError, ValueError):
            return max(1, min(5, p))

    def labels(self, k) -> np.ndarray:
        """(P,) int32 part labels 0..k-1 (k clamped to 1..P), nested and stable across k."""
        k = max(1, min(int(k), self.num_polygons))
        return self.tree.cut(k)

    def split_part(self, labels, part) -> np.ndarray:
        return self.tree.split_part(labels, part)

    def merge_parts(self, labels, a, b) -> np.ndarray:
        return self.tree.merge_parts(labels, a, b)

    # ------------------------------------------------------------------ storage
    def save(self, path, features_fp16=None) -> Path:
        """Write an npz. `features_fp16` (default: keep the current dtype) halves its size."""
        path = Path(path)
        with open(path, "wb") as f:  # np.savez would append ".npz" to other suffixes
            self._write(f, features_fp16)
        return path

    def to_bytes(self, features_fp16=None) -> bytes:
        """The npz that `save` writes, as bytes."""
        buf = io.BytesIO()
        self._write(buf, features_fp16)
        return buf.getvalue()

    def _write(self, f, features_fp16) -> None:
        feats = np.asarray(self.features)
        if features_fp16 is True:
            feats = feats.astype(np.float16)
        elif features_fp16 is False:
            feats = feats.astype(np.float32)
        arrays = {
            "format": np.array(FORMAT),
            "format_version": np.array(FORMAT_VERSION, np.int64),
            "features": feats,
            "children": self.tree.children.astype(np.int32 if self.num_polygons < 2**30 else np.int64),
            "num_leaves": np.array(self.tree.num_leaves, np.int64),
            "normalization": self.normalization.to_array(),
            "metadata": np.array(json.dumps(self.metadata, default=str)),
        }
        if self.tree.costs is not None:
            arrays["costs"] = self.tree.costs.astype(np.float64)
        # the merge nodes' sizes, DFS starts and labels: loading then needs no Python loop over the
        # merges (checked against them in O(P), `check_layout`); files without them still load
        for key, values in zip(_LAYOUT, self.tree.internal_layout):
            arrays[key] = values.astype(arrays["children"].dtype)
        np.savez(f, **arrays)

    @classmethod
    def load(cls, path, expected_polygons: int | None = None) -> "SegmentationResult":
        """Read a file written by `save` (never unpickles anything).

        Bounded: every entry's size is read from the zip headers and its npy header checked
        (dtype, shape, counts consistent with one another and with `expected_polygons`)
        before anything is decompressed; see `LIMITS`. The merge tree is validated
        (`check_merges`). Any failure raises `StoredResultError` naming the file."""
        return _read(path, str(path), expected_polygons)

    @classmethod
    def from_bytes(cls, data, name: str = "stored result", expected_polygons: int | None = None) -> "SegmentationResult":
        """`load` for npz bytes (the copy a .blend keeps); `name` appears in error messages."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise StoredResultError(f"cannot read segmentation result {name}: it is {type(data).__name__}, not bytes")
        return _read(io.BytesIO(bytes(data)), name, expected_polygons)

    @staticmethod
    def check_bytes(data, name: str = "stored result", expected_polygons: int | None = None) -> int:
        """Every check `from_bytes` makes (sizes, dtypes, shapes, counts, the merge tree)
        without unpacking the features or building the tree; returns the face count or
        raises `StoredResultError`. Cheap enough for a panel's first draw."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise StoredResultError(f"cannot read segmentation result {name}: it is {type(data).__name__}, not bytes")
        return _read(io.BytesIO(bytes(data)), name, expected_polygons, build=False)


# ---------------------------------------------------------------------- bounded reading
@dataclass(frozen=True)
class Limits:
    """What a stored result may claim. A file written by `save` is an uncompressed npz, so
    its entries hold about as many bytes as the file; `compression` leaves room for files
    compressed by other tools."""

    max_polygons: int = 1 << 25  # 33.5M faces
    max_features: int = 4096  # feature channels per face
    max_metadata_chars: int = 1 << 20
    compression: int = 8  # declared (uncompressed) bytes <= compression * file bytes + slack
    slack_bytes: int = 1 << 20


LIMITS = Limits()

# entry -> (dtype kinds allowed, ndim); shapes are checked against each other below
_ENTRIES = {
    "format": ("U", 0),
    "format_version": ("iu", 0),
    "features": ("f", 2),
    "children": ("iu", 2),
    "num_leaves": ("iu", 0),
    "normalization": ("f", 1),
    "metadata": ("U", 0),
    "costs": ("f", 1),
    "tree_sizes": ("iu", 1),
    "tree_starts": ("iu", 1),
    "tree_labels": ("iu", 1),
}
_LAYOUT = ("tree_sizes", "tree_starts", "tree_labels")  # `PartTree.internal_layout`
_OPTIONAL = {"costs", *_LAYOUT}  # (results saved before the tree layout lack it)


def _read(source, name: str, expected_polygons, build=True):
    try:
        return _read_checked(source, name, expected_polygons, LIMITS, build)
    except StoredResultError:
        raise
    except PartFieldError as exc:
        raise StoredResultError(f"segmentation result {name} is damaged: {exc}") from exc
    except MemoryError as exc:
        raise StoredResultError(f"segmentation result {name} does not fit in memory") from exc
    except Exception as exc:  # any failure on bad bytes (BadZipFile, zlib, EOF, header syntax ...)
        raise StoredResultError(f"cannot read segmentation result {name}: {type(exc).__name__}: {exc}") from exc


def _file_size(source) -> int:
    if isinstance(source, io.BytesIO):
        size = source.seek(0, io.SEEK_END)  # (getbuffer() would copy the bytes the BytesIO shares)
        source.seek(0)
        return size
    return os.path.getsize(source)


def _headers(zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    """(shape, fortran_order, dtype, header bytes) of one npy entry, reading only its header."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise StoredResultError(f"entry {info.filename} has npy format version {version}")
        return shape, fortran, dtype, f.tell()


def _read_checked(source, name, expected_polygons, limits: Limits, build=True):
    size = _file_size(source)
    with zipfile.ZipFile(source) as zf:
        infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        if "format" not in infos:
            raise StoredResultError(f"{name} is not a PartField segmentation result")
        missing = [k for k in _ENTRIES if k not in infos and k not in _OPTIONAL]
        if missing:
            raise StoredResultError(f"segmentation result {name} lacks {', '.join(missing)}")
        declared = sum(infos[k].file_size for k in _ENTRIES if k in infos)
        budget = limits.compression * size + limits.slack_bytes
        if declared > budget:
            raise StoredResultError(
                f"segmentation result {name} claims {declared:,} bytes uncompressed in a {size:,}-byte file "
                f"(at most {budget:,} allowed): refusing to unpack it")
        heads = {}
        for key, (kinds, ndim) in _ENTRIES.items():
            if key not in infos:
                continue
            shape, fortran, dtype, head = _headers(zf, infos[key])
            if dtype.hasobject or dtype.kind not in kinds or len(shape) != ndim:
                raise StoredResultError(f"segmentation result {name}: entry {key} is {dtype} {shape}, "
                                        f"expected a {ndim}-d array of kind {kinds!r}")
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if any(d < 0 for d in shape) or head + nbytes != infos[key].file_size:
                raise StoredResultError(f"segmentation result {name}: entry {key} claims shape {shape} of {dtype} "
                                        f"but holds {infos[key].file_size - head:,} bytes")
            heads[key] = (shape, fortran, dtype, head)

        def read(key):
            shape, fortran, dtype, head = heads[key]
            with zf.open(infos[key]) as f:
                f.read(head)
                raw = f.read(infos[key].file_size - head)
            arr = np.frombuffer(raw, dtype=dtype)
            return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)

        fmt = read("format")
        if fmt.dtype.itemsize > 256 or str(fmt) != FORMAT:
            raise StoredResultError(f"{name} is not a PartField segmentation result")
        version = int(read("format_version"))
        if version > FORMAT_VERSION:
            raise StoredResultError(f"{name} was written by a newer version (format {version})")
        p = int(read("num_leaves"))
        if not 1 <= p <= limits.max_polygons:
            raise StoredResultError(f"segmentation result {name} claims {p:,} faces "
                                    f"(1..{limits.max_polygons:,} allowed)")
        if expected_polygons is not None and p != int(expected_polygons):
            raise StoredResultError(f"segmentation result {name} is for {p:,} faces, the mesh has "
                                    f"{int(expected_polygons):,}")
        want = {"features": (p, None), "children": (p - 1, 2), "normalization": (4,), "costs": (p - 1,),
                **{key: (p - 1,) for key in _LAYOUT}}
        for key, shape in want.items():
            if key in heads:
                got = heads[key][0]
                if any(w is not None and g != w for g, w in zip(got, shape)):
                    raise StoredResultError(f"segmentation result {name}: entry {key} has shape {got}, "
                                            f"expected {tuple('F' if w is None else w for w in shape)} for {p} faces")
        nfeat = heads["features"][0][1]
        if not 1 <= nfeat <= limits.max_features:
            raise StoredResultError(f"segmentation result {name} has {nfeat} feature channels "
                                    f"(1..{limits.max_features} allowed)")
        if heads["metadata"][2].itemsize // 4 > limits.max_metadata_chars:
            raise StoredResultError(f"segmentation result {name}: metadata over {limits.max_metadata_chars:,} characters")
        norm = read("normalization").astype(np.float64)
        if not (np.isfinite(norm).all() and norm[3] > 0):
            raise StoredResultError(f"segmentation result {name}: bad normalisation {norm.tolist()}")
        try:
            children = check_merges(read("children"), p)
        except InputError as exc:
            raise StoredResultError(f"segmentation result {name} has a broken merge tree: {exc}") from exc
        layout = None
        if any(key in heads for key in _LAYOUT):
            if not all(key in heads for key in _LAYOUT):
                raise StoredResultError(f"segmentation result {name} has part of the tree layout "
                                        f"({', '.join(k for k in _LAYOUT if k in heads)}), not all of it")
            try:
                layout = check_layout(children, p, *(read(key) for key in _LAYOUT))
            except InputError as exc:
                raise StoredResultError(f"segmentation result {name} has a broken merge tree: {exc}") from exc
        costs = read("costs") if "costs" in heads else None
        metadata = json.loads(str(read("metadata")))
        if not isinstance(metadata, dict):
            raise StoredResultError(f"segmentation result {name}: metadata is not a JSON object")
        if not build:
            return p
        tree = PartTree(children, p, costs, layout=layout)
        lazy = isinstance(source, io.BytesIO) and infos["features"].compress_type == zipfile.ZIP_STORED
        result = SegmentationResult(None if lazy else read("features"), tree, Normalization.from_array(norm), metadata)
        if lazy:  # bytes in memory, stored uncompressed: decoded on first use (`features`)
            result._read_features = lambda: _read_entry_later(source, infos["features"], heads["features"], name)
        return result


def _read_entry_later(source, info, head, name):
    """One npy entry of an npz already checked by `_read_checked` (its header is `head`)."""
    shape, fortran, dtype, offset = head
    try:
        with zipfile.ZipFile(source) as zf, zf.open(info) as f:
            f.read(offset)
            raw = f.read(info.file_size - offset)  # zipfile checks the CRC at the entry's end
    except Exception as exc:  # noqa: BLE001 - bytes that changed or were damaged since
        raise StoredResultError(f"cannot read the features of segmentation result {name}: "
                                f"{type(exc).__name__}: {exc}") from exc
    arr = np.frombuffer(raw, dtype=dtype)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
