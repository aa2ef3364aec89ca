"""Is a just-written output file complete? Checks by file type, without bpy.

Writers can report success on a full disk (Blender's `save_as_mainfile` returns FINISHED with a
truncated file on ENOSPC), so the batch checks every temporary output before renaming it onto
its final name. `check_file(path)` raises `IncompleteOutput` with the reason, else returns.

Checks: .blend: 'BLENDER' header and the closing ENDB block, or, zstd-compressed (Blender's
"compress" option), the seekable-format seek table whose frame sizes add up to the file size and
a first frame that decompresses to a 'BLENDER' header; .glb: 'glTF' v2, declared length equals
the file size, chunks in bounds, JSON chunk parses; .fbx: binary header, top-level node records
in bounds, closing footer magic (ASCII FBX: non-empty, ends in a newline); .npy: np.load
(memory-mapped, so a short file fails); .json: json.load; .ply: header through end_header and,
for binary vertex/face counts, a body at least as long as the fixed-size vertex block.
Anything else: not empty. Standard library and numpy only (loaded by path, like batch_plan).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_SEEKABLE_FOOTER = b"\xb1\xea\x92\x8f"  # 0x8F92EAB1 little-endian
ZSTD_SKIPPABLE_SEEK_TABLE = 0x184D2A5E
FBX_HEADER = b"Kaydara FBX Binary  \x00\x1a\x00"
FBX_FOOTER_MAGIC = bytes.fromhex("f85a8c6adef5d97eece90ce3758f290b")


class IncompleteOutput(OSError):
    """The file on disk is not a complete file of its type (truncated, empty, garbage)."""


def kind_of(path) -> str:
    name = Path(path).name.lower()
    if name.endswith(".npy"):
        return "npy"
    return Path(name).suffix.lstrip(".")


def check_file(path, kind: str | None = None) -> None:
    """Raise IncompleteOutput unless `path` is a complete file of `kind` (default: by extension)."""
    path = Path(path)
    kind = kind or kind_of(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IncompleteOutput(f"{path.name}: not written ({exc.strerror or exc})") from None
    if size == 0:
        raise IncompleteOutput(f"{path.name}: empty file (0 bytes)")
    checker = _CHECKS.get(kind)
    if checker is None:
        return
    try:
        checker(path, size)
    except IncompleteOutput:
        raise
    except Exception as exc:  # any failure to re-read is an incomplete file
        raise IncompleteOutput(f"{path.name}: unreadable {kind} ({type(exc).__name__}: {exc})") from None


def _fail(path, why):
    raise IncompleteOutput(f"{Path(path).name}: {why}")


# ---------------------------------------------------------------------------- .blend
def _check_blend(path, size):
    with open(path, "rb") as fh:
        head = fh.read(12)
        if head.startswith(b"BLENDER"):
            end_block = _endb_size(head)
            fh.seek(max(0, size - end_block))
            tail = fh.read()
            if len(tail) < end_block or tail[:4] != b"ENDB" or tail[4:].strip(b"\x00"):
                _fail(path, f"truncated .blend ({size} bytes, no closing ENDB block)")
            return
        if head.startswith(ZSTD_MAGIC):
            _check_zstd_blend(path, fh, size)
            return
    _fail(path, "not a .blend file (no BLENDER header)")


def _endb_size(head: bytes) -> int:
    """Size of the closing ENDB block header: 'BLENDER17-01v0500' (4.3+ large headers) 32 bytes;
    'BLENDER-v402' 24 (8-byte pointers), 'BLENDER_v402' 20 (4-byte pointers)."""
    if head[7:9].isdigit():
        return 32
    return 20 if head[7:8] == b"_" else 24


def _check_zstd_blend(path, fh, size):
    if size < 4 + 9:
        _fail(path, f"truncated compressed .blend ({size} bytes)")
    fh.seek(size - 9)
    frames, descriptor, magic = struct.unpack("<IB4s", fh.read(9))
    if magic != ZSTD_SEEKABLE_FOOTER:
        _fail(path, f"truncated compressed .blend ({size} bytes, no zstd seek table at the end)")
    entry = 12 if descriptor & 0x80 else 8
    table = 8 + frames * entry + 9
    if frames == 0 or table > size:
        _fail(path, "compressed .blend with a bad zstd seek table")
    fh.seek(size - table)
    skip_magic, skip_len = struct.unpack("<II", fh.read(8))
    if skip_magic != ZSTD_SKIPPABLE_SEEK_TABLE or skip_len != table - 8:
        _fail(path, "compressed .blend with a bad zstd seek table")
    raw = fh.read(frames * entry)
    compressed = sum(struct.unpack_from("<I", raw, i * entry)[0] for i in range(frames))
    if compressed + table != size:
        _fail(path, f"compressed .blend whose frames ({compressed} + {table} bytes) do not fill the file ({size})")
    try:
        import zstandard
    except ImportError:  # the structure check above already caught truncation
        return
    fh.seek(0)
    first = struct.unpack_from("<I", raw, 0)[0]
    with zstandard.ZstdDecompressor().stream_reader(fh.read(first)) as reader:
        if not reader.read(7) == b"BLENDER":
            _fail(path, "compressed .blend that does not decompress to a BLENDER header")


# ---------------------------------------------------------------------------- .glb
def _check_glb(path, size):
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"glTF":
            _fail(path, "not a binary glTF (no glTF header)")
        version, length = struct.unpack("<II", head[4:12])
        if version != 2:
            _fail(path, f"glTF version {version}, expected 2")
        if length != size:
            _fail(path, f"truncated .glb (header says {length} bytes, file has {size})")
        pos, first = 12, True
        while pos < size:
            fh.seek(pos)
            chunk = fh.read(8)
            if len(chunk) < 8:
                _fail(path, "truncated .glb chunk header")
            clen, ctype = struct.unpack("<I4s", chunk)
            if pos + 8 + clen > size:
                _fail(path, "truncated .glb chunk")
            if first:
                if ctype != b"JSON":
                    _fail(path, "first .glb chunk is not JSON")
                json.loads(fh.read(clen).decode("utf-8"))
                first = False
            pos += 8 + clen
        if first:
            _fail(path, ".glb without a JSON chunk")


def _check_gltf(path, size):
    json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- .fbx
def _check_fbx(path, size):
    with open(path, "rb") as fh:
        head = fh.read(27)
        if not head.startswith(FBX_HEADER):
            if head.lstrip().startswith(b";") or head.lstrip().startswith(b"FBXHeaderExtension"):
                fh.seek(size - 1)
                if fh.read(1) not in (b"\n", b"}"):
                    _fail(path, "truncated ASCII .fbx")
                return
            _fail(path, "not an FBX file (no Kaydara header)")
        if len(head) < 27:
            _fail(path, "truncated .fbx header")
        version = struct.unpack_from("<I", head, 23)[0]
        wide = version >= 7500
        rec = struct.Struct("<QQQB" if wide else "<IIIB")
        pos = 27
        while True:  # top-level node records: each says where it ends; a null record closes the list
            fh.seek(pos)
            data = fh.read(rec.size)
            if len(data) < rec.size:
                _fail(path, "truncated .fbx (node list not closed)")
            end, _nprops, _plen, _nlen = rec.unpack(data)
            if end == 0:
                break
            if end <= pos or end > size:
                _fail(path, f"truncated .fbx (a node ends at {end}, file has {size} bytes)")
            pos = end
        fh.seek(size - 16)
        if fh.read(16) != FBX_FOOTER_MAGIC:
            _fail(path, "truncated .fbx (no footer)")


# ---------------------------------------------------------------------------- arrays, text
def _check_npy(path, size):
    import numpy as np

    arr = np.load(path, mmap_mode="r", allow_pickle=False)  # a short file fails to map
    del arr


def _check_json(path, size):
    with open(path, "r", encoding="utf-8") as fh:
        json.load(fh)


_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
              "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def _check_ply(path, size):
    with open(path, "rb") as fh:
        head = fh.read(min(size, 1 << 16))
    if not head.startswith(b"ply"):
        _fail(path, "not a PLY file")
    end = head.find(b"end_header")
    if end < 0:
        _fail(path, "truncated PLY header")
    body_start = head.index(b"\n", end) + 1 if b"\n" in head[end:] else len(head)
    lines = head[:end].decode("ascii", "replace").split("\n")
    fmt = next((ln.split()[1] for ln in lines if ln.startswith("format ")), "")
    body = size - body_start
    if fmt == "ascii":
        if body <= 0:
            _fail(path, "PLY without a body")
        return
    need, count, least = 0, 0, 0  # a lower bound of the body size: lists count 3 items (a triangle)
    for ln in lines + ["element _end 0"]:
        parts = ln.split()
        if parts[:1] == ["element"] and len(parts) >= 3:
            need += count * least
            count, least = int(parts[2]), 0
        elif parts[:2] == ["property", "list"] and len(parts) >= 4:
            least += _PLY_SIZES.get(parts[2], 1) + 3 * _PLY_SIZES.get(parts[3], 4)
        elif parts[:1] == ["property"] and len(parts) >= 2:
            least += _PLY_SIZES.get(parts[1], 4)
    if body < need:
        _fail(path, f"truncated PLY ({body} body bytes, at least {need} expected)")


_CHECKS = {
    "blend": _check_blend,
    "glb": _check_glb,
    "gltf": _check_gltf,
    "fbx": _check_fbx,
    "npy": _check_npy,
    "json": _check_json,
    "ply": _check_ply,
}
