"""Read OBJ / PLY / OFF / STL / glTF (.glb, .gltf) files into `MeshArrays`; write a
part-coloured PLY.

Small readers of our own (no extra dependency): OBJ with n-gons and negative indices,
PLY ascii and binary (little/big endian), OFF (with optional colours), STL ascii and binary
(coincident corners shared), and glTF triangle meshes with node transforms (.glb, or .gltf
with embedded or side-by-side buffers). `.blend` and `.fbx` need Blender: `BLENDER_FORMATS`
names them so callers can point to the batch script.
"""
from __future__ import annotations

import functools
import json
import os
import struct
from pathlib import Path

import numpy as np

from .errors import InputError, MeshFileError
from .mesh import MeshArrays

READERS = {}
# Mesh formats only Blender reads (the batch script: partfield_blender/batch.py).
BLENDER_FORMATS = (".blend", ".fbx")
BATCH_HINT = "use the Blender batch script: python partfield_blender/batch.py -- FILE --output DIR"


def supported_suffixes() -> tuple:
    """The suffixes `read_mesh` reads, sorted."""
    return tuple(sorted(READERS))


def format_problem(path) -> str | None:
    """Why `path` cannot be read by its suffix (a one-line message), or None when it can."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in READERS:
        return None
    if suffix in BLENDER_FORMATS:
        return f"{path.name}: {suffix[1:].upper()} files need Blender; {BATCH_HINT}"
    names = ", ".join(s[1:].upper() for s in supported_suffixes())
    return f"{path.name}: unsupported mesh format '{suffix}' (use {names})"


def read_mesh(path) -> MeshArrays:
    """Read a mesh file by its suffix (see `supported_suffixes()`).

    Whatever the bytes are, the only error is `MeshFileError` (an `InputError`) naming the file:
    parse failures, truncation, hostile structure (cycles, out-of-range views), running out of
    memory and OS read errors are all reported that way."""
    path = Path(path)
    suffix = path.suffix.lower()
    problem = format_problem(path)
    if problem:
        raise MeshFileError(problem)
    if path.is_dir():
        raise MeshFileError(f"{path}: is a folder, not a mesh file")
    if not path.is_file():
        raise MeshFileError(f"{path}: no such file")
    return READERS[suffix](path)


def _reader(suffix):
    """Register a reader; the registered (and exported) function reports any failure on the
    file's bytes as `MeshFileError` naming the file, also when called directly (batch does)."""
    kind = suffix[1:].upper()

    def wrap(fn):
        @functools.wraps(fn)
        def read(path):
            path = Path(path)
            try:
                return fn(path)
            except MeshFileError:
                raise
            except InputError as exc:
                raise MeshFileError(str(exc) if path.name in str(exc) else f"{path.name}: {exc}") from None
            except MemoryError:
                raise MeshFileError(f"{path.name}: not enough memory to read this {kind} file") from None
            except OSError as exc:
                raise MeshFileError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from None
            except Exception as exc:  # IndexError, KeyError, TypeError, RecursionError, struct.error ...
                raise MeshFileError(
                    f"{path.name}: cannot parse {kind} file ({type(exc).__name__}: {str(exc)[:200]})"
                ) from None

        READERS[suffix] = read
        return read
    return wrap


def _polygons_to_mesh(vertices, polys) -> MeshArrays:
    return MeshArrays.from_polygons(np.asarray(vertices, np.float64).reshape(-1, 3), polys)


# ------------------------------------------------------------------------------------ OBJ
@_reader(".obj")
def read_obj(path) -> MeshArrays:
    verts, polys = [], []
    nv = 0
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("v "):
                parts = line.split()
                verts.append(parts[1:4])
                nv += 1
            elif line.startswith("f "):
                idx = [int(tok.split("/", 1)[0]) for tok in line.split()[1:]]
                # 1-based; negative = relative to the vertices read so far
                polys.append([i - 1 if i > 0 else nv + i for i in idx])
    if not verts:
        raise InputError(f"{Path(path).name}: no vertices in OBJ file")
    return _polygons_to_mesh(np.array(verts, dtype=np.float64), polys)


# ------------------------------------------------------------------------------------ OFF
@_reader(".off")
def read_off(path) -> MeshArrays:
    lines = []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    if not lines or not lines[0].upper().startswith(("OFF", "COFF", "NOFF", "CNOFF", "STOFF")):
        raise InputError(f"{Path(path).name}: not an OFF file")
    head = lines[0].split()
    rest = lines[1:]
    if len(head) >= 3:  # counts on the header line
        counts = head[1:4]
    else:
        counts = rest[0].split()
        rest = rest[1:]
    nv, nf = int(counts[0]), int(counts[1])
    if nv < 0 or nf < 0:
        raise InputError(f"{Path(path).name}: negative element counts in the OFF header")
    if len(rest) < nv + nf:
        raise InputError(f"{Path(path).name}: OFF file is truncated ({len(rest)} of {nv + nf} lines)")
    verts = np.array([ln.split()[:3] for ln in rest[:nv]], dtype=np.float64)
    polys = []
    for ln in rest[nv:nv + nf]:
        tok = ln.split()
        n = int(tok[0])
        if n < 0 or len(tok) < 1 + n:
            raise InputError(f"{Path(path).name}: a face line declares {n} corners but lists {len(tok) - 1} values")
        polys.append([int(t) for t in tok[1:1 + n]])  # anything after is a colour
    return _polygons_to_mesh(verts, polys)


# ------------------------------------------------------------------------------------ PLY
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@_reader(".ply")
def read_ply(path) -> MeshArrays:
    data = Path(path).read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(f"{Path(path).name}: not a PLY file")
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements = None, []
    for line in header:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append({"name": tok[1], "count": int(tok[2]), "props": []})
            if elements[-1]["count"] < 0:
                raise InputError(f"{Path(path).name}: negative element count in the PLY header")
        elif tok[0] == "property" and elements:
            if tok[1] == "list":
                elements[-1]["props"].append((tok[4], "list", _PLY_TYPES[tok[2]], _PLY_TYPES[tok[3]]))
            else:
                elements[-1]["props"].append((tok[2], _PLY_TYPES[tok[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise InputError(f"{Path(path).name}: unknown PLY format {fmt!r}")
    if fmt == "ascii":
        return _ply_ascii(data[body_start:].decode("ascii", errors="replace"), elements, path)
    return _ply_binary(data, body_start, elements, "<" if fmt == "binary_little_endian" else ">", path)


def _ply_ascii(text, elements, path):
    all_lines = text.splitlines()
    need = sum(el["count"] for el in elements)
    if need > len(all_lines):
        raise InputError(f"{Path(path).name}: truncated ASCII PLY (the header announces {need:,} element "
                         f"lines, the body has {len(all_lines):,})")
    lines = iter(all_lines)
    verts, polys = None, []
    for el in elements:
        names = [p[0] for p in el["props"]]
        if el["name"] == "vertex":
            rows = [next(lines).split() for _ in range(el["count"])]
            arr = np.array([r[:len(names)] for r in rows], dtype=np.float64).reshape(-1, len(names))
            verts = arr[:, [names.index("x"), names.index("y"), names.index("z")]]
        elif el["name"] == "face":
            for _ in range(el["count"]):
                tok = next(lines).split()
                n = int(tok[0])
                if n < 0 or len(tok) < 1 + n:
                    raise InputError(f"{Path(path).name}: a face line declares {n} corners but lists {len(tok) - 1}")
                polys.append([int(t) for t in tok[1:1 + n]])
        else:
            for _ in range(el["count"]):
                next(lines)
    if verts is None:
        raise InputError(f"{Path(path).name}: PLY file has no vertex element")
    return _polygons_to_mesh(verts, polys)


def _ply_binary(data, offset, elements, endian, path):
    verts, mesh_polys = None, None
    for el in elements:
        props = el["props"]
        if any(p[1] == "list" for p in props):
            if el["name"] != "face" or len(props) != 1:
                if el["name"] == "face":
                    raise InputError(f"{Path(path).name}: PLY faces with extra properties are not supported")
                break  # an unknown list element after the faces: ignore the rest
            _, _, ctype, itype = props[0]
            cdt, idt = np.dtype(endian + ctype), np.dtype(endian + itype)
            count = el["count"]
            if count == 0:
                mesh_polys = ([], offset)
                continue
            n0 = int(np.frombuffer(data, cdt, 1, offset)[0])
            rec = np.dtype([("n", cdt), ("i", idt, (n0,))])
            fixed = np.frombuffer(data, rec, count, offset) if offset + rec.itemsize * count <= len(data) else None
            if fixed is not None and (fixed["n"] == n0).all():  # every face has n0 corners
                mesh_polys = fixed["i"].astype(np.int64)
                offset += rec.itemsize * count
            else:
                polys = []
                for _ in range(count):
                    n = int(np.frombuffer(data, cdt, 1, offset)[0])
                    offset += cdt.itemsize
                    polys.append(np.frombuffer(data, idt, n, offset).astype(np.int64))
                    offset += idt.itemsize * n
                mesh_polys = polys
        else:
            dt = np.dtype([(p[0], endian + p[1]) for p in props])
            arr = np.frombuffer(data, dt, el["count"], offset)
            offset += dt.itemsize * el["count"]
            if el["name"] == "vertex":
                verts = np.stack([arr["x"], arr["y"], arr["z"]], 1).astype(np.float64)
    if verts is None:
        raise InputError(f"{Path(path).name}: PLY file has no vertex element")
    if isinstance(mesh_polys, np.ndarray):
        return MeshArrays.from_triangles(verts, mesh_polys)
    return _polygons_to_mesh(verts, [] if mesh_polys is None else [list(p) for p in mesh_polys])


# ------------------------------------------------------------------------------------ GLB
_GLTF_COMPONENTS = {5120: "i1", 5121: "u1", 5122: "i2", 5123: "u2", 5125: "u4", 5126: "f4"}
_GLTF_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def _accessor(doc, buffers, index):
    acc = doc["accessors"][index]
    if "sparse" in acc:
        raise InputError("sparse glTF accessors are not supported")
    view = doc["bufferViews"][acc["bufferView"]]
    binary = buffers[view.get("buffer", 0)]
    comp = np.dtype("<" + _GLTF_COMPONENTS[acc["componentType"]])
    width = _GLTF_WIDTH[acc["type"]]
    count = acc["count"]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride") or comp.itemsize * width
    ints = (count, start, stride, view.get("byteOffset", 0), view.get("byteLength", 0))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints) or \
            stride < comp.itemsize * width:
        raise InputError("malformed glTF accessor or buffer view")
    # The accessor must lie inside its view and the view inside the binary chunk.
    view_end = view.get("byteOffset", 0) + view.get("byteLength", 0)
    end = start + (count - 1) * stride + comp.itemsize * width if count else start
    if end > min(view_end, len(binary)):
        raise InputError(f"a glTF accessor reaches past its buffer ({end:,} > {min(view_end, len(binary)):,} bytes)")
    if stride == comp.itemsize * width:
        arr = np.frombuffer(binary, comp, count * width, start).reshape(count, width)
    else:
        rows = np.lib.stride_tricks.as_strided(
            np.frombuffer(binary, np.uint8, len(binary) - start, start), (count, stride), (stride, 1))
        arr = rows[:, :comp.itemsize * width].copy().view(comp).reshape(count, width)
    return arr


def _node_matrix(node):
    if "matrix" in node:
        return np.array(node["matrix"], np.float64).reshape(4, 4).T  # column-major
    t = np.array(node.get("translation", [0, 0, 0]), np.float64)
    x, y, z, w = node.get("rotation", [0, 0, 0, 1])
    s = np.array(node.get("scale", [1, 1, 1]), np.float64)
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3] = r * s[None, :]
    m[:3, 3] = t
    return m


@_reader(".glb")
def read_glb(path) -> MeshArrays:
    data = Path(path).read_bytes()
    if len(data) < 20 or data[:4] != b"glTF":
        raise InputError(f"{Path(path).name}: not a binary glTF (.glb) file")
    version, total = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise InputError(f"{Path(path).name}: glTF version {version} is not supported (2 is)")
    offset, doc, binary = 12, None, b""
    while offset + 8 <= min(total, len(data)):
        length, kind = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8:offset + 8 + length]
        if kind == 0x4E4F534A:
            doc = json.loads(chunk.decode("utf-8"))
        elif kind == 0x004E4942:
            binary = chunk
        offset += 8 + length
    if doc is None:
        raise InputError(f"{Path(path).name}: GLB file has no JSON chunk")
    buffers = [binary] + [None] * max(0, len(doc.get("buffers", [])) - 1)
    for i, buf in enumerate(doc.get("buffers", [])):
        if "uri" in buf:
            buffers[i] = _gltf_buffer(path, buf["uri"])
    return _gltf_mesh(doc, buffers, path)


@_reader(".gltf")
def read_gltf(path) -> MeshArrays:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    buffers = [_gltf_buffer(path, buf.get("uri")) for buf in doc.get("buffers", [])]
    return _gltf_mesh(doc, buffers, path)


def _gltf_buffer(path, uri) -> bytes:
    """A .gltf buffer: a base64 data URI or a file next to the .gltf."""
    import base64
    import urllib.parse

    if not uri:
        raise InputError(f"{Path(path).name}: glTF buffer without data (a .gltf needs a uri per buffer)")
    if uri.startswith("data:"):
        return base64.b64decode(uri.split(",", 1)[1])
    target = Path(path).parent / urllib.parse.unquote(uri)
    if not target.is_file():
        raise InputError(f"{Path(path).name}: glTF buffer file {target.name} not found next to it")
    return target.read_bytes()


def _gltf_mesh(doc, buffers, path) -> MeshArrays:
    if "KHR_draco_mesh_compression" in doc.get("extensionsUsed", []):
        raise InputError(f"{Path(path).name}: Draco-compressed glTF is not supported; export without compression")
    # (mesh index, world matrix) for every mesh instance in the default scene
    instances = []
    nodes = doc.get("nodes", [])
    scenes = doc.get("scenes", [])
    if scenes:
        stack = [(i, np.eye(4)) for i in scenes[doc.get("scene", 0)].get("nodes", [])]
        seen = set()
        while stack:
            i, parent = stack.pop()
            if not isinstance(i, int) or i in seen:
                raise InputError(f"{Path(path).name}: the glTF node hierarchy is not a tree (node {i!r:.20} repeats)")
            seen.add(i)
            node = nodes[i]
            world = parent @ _node_matrix(node)
            if "mesh" in node:
                instances.append((node["mesh"], world))
            stack.extend((c, world) for c in node.get("children", []))
    else:
        instances = [(i, np.eye(4)) for i in range(len(doc.get("meshes", [])))]
    verts, faces, base = [], [], 0
    for mesh_index, world in instances:
        for prim in doc["meshes"][mesh_index].get("primitives", []):
            mode = prim.get("mode", 4)
            if mode != 4:
                continue  # points, lines, strips: not surfaces we segment
            pos = _accessor(doc, buffers, prim["attributes"]["POSITION"]).astype(np.float64)
            if "indices" in prim:
                idx = _accessor(doc, buffers, prim["indices"]).reshape(-1).astype(np.int64)
            else:
                idx = np.arange(len(pos), dtype=np.int64)
            if idx.size % 3:
                raise InputError(f"{Path(path).name}: triangle index count {idx.size} is not a multiple of 3")
            pos = pos @ world[:3, :3].T + world[:3, 3]
            verts.append(pos)
            faces.append(idx.reshape(-1, 3) + base)
            base += len(pos)
    if not verts:
        raise InputError(f"{Path(path).name}: glTF file has no triangle meshes")
    return MeshArrays.from_triangles(np.concatenate(verts), np.concatenate(faces))


# ------------------------------------------------------------------------------------ STL
@_reader(".stl")
def read_stl(path) -> MeshArrays:
    """ASCII or binary STL; corners with equal coordinates become one vertex."""
    data = Path(path).read_bytes()
    count = struct.unpack_from("<I", data, 80)[0] if len(data) >= 84 else -1
    if count >= 0 and len(data) == 84 + 50 * count:  # binary: the size is exact
        rec = np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
        corners = np.frombuffer(data, rec, count, 84)["v"].reshape(-1, 3).astype(np.float64)
    elif data.lstrip()[:5].lower() == b"solid":
        words = np.array(data.decode("ascii", errors="replace").split())
        at = np.flatnonzero(np.char.lower(words) == "vertex")
        if at.size % 3 or (at.size and at[-1] + 3 >= words.size):
            raise ValueError(f"{at.size} 'vertex' lines (a multiple of 3 expected)")
        corners = words[at[:, None] + np.arange(1, 4)].astype(np.float64)
    else:
        raise InputError(f"{Path(path).name}: not an STL file (neither 'solid ...' text nor a binary STL)")
    if corners.size == 0:
        raise InputError(f"{Path(path).name}: STL file has no triangles")
    vertices, index = np.unique(corners, axis=0, return_inverse=True)
    return MeshArrays.from_triangles(vertices, index.reshape(-1, 3))


# ------------------------------------------------------------------------------------ writing
def part_colors(num_parts) -> np.ndarray:
    """(K,3) uint8 well-separated colours (golden-ratio hues), the same for a label at any k."""
    k = np.arange(int(num_parts))
    h = (k * 0.6180339887498949) % 1.0
    s = 0.55 + 0.35 * ((k // 7) % 2)
    v = 0.95 - 0.25 * ((k // 3) % 2)
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = np.choose(i[:, None], [np.stack(c, 1) for c in
                                 [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]])
    return np.round(rgb * 255).astype(np.uint8)


def write_colored_ply(path, mesh: MeshArrays, labels) -> Path:
    """Binary PLY whose faces are coloured by part: every corner gets its own vertex carrying
    its face's colour, so any viewer (Blender, MeshLab) shows flat part colours."""
    path = Path(path)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (mesh.num_polygons,):
        raise InputError(f"labels must have one entry per polygon ({mesh.num_polygons}), got {labels.shape}")
    colors = part_colors(int(labels.max()) + 1 if labels.size else 1)[labels]
    poly_of_loop = np.repeat(np.arange(mesh.num_polygons), mesh.loop_totals)
    vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vert = np.empty(mesh.num_loops, vdt)
    pos = mesh.vertices[mesh.loop_vertices]
    vert["x"], vert["y"], vert["z"] = pos[:, 0], pos[:, 1], pos[:, 2]
    c = colors[poly_of_loop]
    vert["red"], vert["green"], vert["blue"] = c[:, 0], c[:, 1], c[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment partfield parts\n"
        f"element vertex {mesh.num_loops}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {mesh.num_polygons}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    totals = mesh.loop_totals
    wide = bool(mesh.num_polygons) and int(totals.max()) > 255  # n-gons past 255 corners: uint counts
    if wide:
        header = header.replace("property list uchar int vertex_indices", "property list uint int vertex_indices")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(vert.tobytes())
            f.write(_face_records(mesh, 4 if wide else 1))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _face_records(mesh: MeshArrays, count_bytes: int) -> bytes:
    """Binary PLY face records (count, then int32 indices of the corner vertices), vectorised.
    Corner vertex i of the written file is loop i of the mesh."""
    totals = mesh.loop_totals
    p = mesh.num_polygons
    rec_len = count_bytes + 4 * totals
    rec_start = np.cumsum(rec_len) - rec_len
    buf = np.zeros(int(rec_len.sum()), np.uint8)
    counts = totals.astype("<u4").view(np.uint8).reshape(p, 4)[:, :count_bytes]
    buf[rec_start[:, None] + np.arange(count_bytes)] = counts
    poly = np.repeat(np.arange(p), totals)
    local = np.arange(poly.size) - np.repeat(np.cumsum(totals) - totals, totals)
    idx = (mesh.loop_starts[poly] + local).astype("<i4").view(np.uint8).reshape(-1, 4)
    pos = rec_start[poly] + count_bytes + 4 * local
    buf[pos[:, None] + np.arange(4)] = idx
    return buf.tobytes()
