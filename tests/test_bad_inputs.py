"""Every reader against crafted bad bytes: one table, one row per input (issue 17, item 4).

A row names its reader, writes its crafted input (generated here, never committed), and says
which error and message it must give. For every row the test also checks that nothing in the
input's folder was written or changed (no payload ran, no partial output), and for rows whose
defect was a blow-up it runs the reader in a fresh process and bounds the peak memory growth
and the time (generous for a loaded 2-core machine, far below the blow-up).

A new reader joins by adding an entry to READERS (how to call it in this process and in a
child process, and the error class it raises) and rows to CASES.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch

from model_runtime.checkpoint import COMPACT_FORMAT, build_network, expected_manifest, load_weights, save_compact
from model_runtime.config import PartFieldConfig
from model_runtime.errors import CheckpointError, MeshFileError, PartFieldError, StoredResultError
from model_runtime.meshio import read_mesh
from model_runtime.result import SegmentationResult
from tests.bounded import run_bounded
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(Path(__file__).parent))
from test_weights_download_server import WeightsServer  # noqa: E402

from model_runtime import weights_download as wd  # noqa: E402


# ------------------------------------------------------------------------------------------ readers
@dataclass
class Reader:
    read: Callable  # read(input) in this process
    setup: str  # child process: imports
    call: str  # child process: a statement reading PATH
    error: type


def _read_checkpoint(path):
    return build_network(load_weights(path), source=Path(path).name)  # what `info` does


def _read_training(path):
    from model_runtime.training.trainer import read_training_checkpoint

    return read_training_checkpoint(path)


def _download(spec):
    """spec: {"server": WeightsServer kwargs, "payload": bytes, "dest": Path, "kwargs": download_file kwargs}."""
    with WeightsServer(spec["payload"], **spec.get("server", {})) as srv:
        return wd.download_file(srv.url, spec["dest"] / wd.CHECKPOINT_FILENAME, **spec.get("kwargs", {}))


READERS = {
    "checkpoint": Reader(_read_checkpoint,
                         "from model_runtime.checkpoint import load_weights, build_network",
                         "build_network(load_weights(PATH), source='x')", CheckpointError),
    "training": Reader(_read_training, "from model_runtime.training.trainer import read_training_checkpoint",
                       "read_training_checkpoint(PATH)", CheckpointError),
    "mesh": Reader(read_mesh, "from model_runtime.meshio import read_mesh", "read_mesh(PATH)", MeshFileError),
    "download": Reader(_download, "", "", wd.DownloadError),
    "result": Reader(lambda p: SegmentationResult.load(p), "from model_runtime.result import SegmentationResult",
                     "SegmentationResult.load(PATH)", StoredResultError),
}


@dataclass
class Case:
    id: str
    reader: str
    make: Callable  # make(folder) -> the reader's input (a path, or a download spec)
    match: str  # regex the message must contain
    error: Optional[type] = None  # default: the reader's error class
    peak_mb: Optional[float] = None  # bound on peak RSS growth (child process)
    seconds: Optional[float] = None  # bound on time (child process for file readers)
    leaves: tuple = ()  # files the reader may leave by design (a resumable partial download)


# ------------------------------------------------------------------------------------------ crafting
def _small():
    torch.manual_seed(0)
    from model_runtime.network import PartFieldNet

    cfg = PartFieldConfig.small()
    return cfg, PartFieldNet(cfg).state_dict()


def _released_shape(key):
    return expected_manifest(PartFieldConfig.released())[key]


def ckpt_stride0_huge(d):
    """651 bytes: one stored float viewed as 350 M elements (1.4 GB if materialised)."""
    p = d / "stride0.ckpt"
    torch.save({"state_dict": {"model.triplane_transformer.pos_embed": torch.zeros(1).expand(350_000_000)}}, p)
    assert p.stat().st_size < 2000
    return p


def ckpt_stride0_right_shape(d):
    p = d / "stride0_shape.ckpt"
    shape = _released_shape("triplane_transformer.pos_embed")
    torch.save({"triplane_transformer.pos_embed": torch.zeros(1).expand(shape)}, p)
    return p


def ckpt_deflate_bomb(d):
    """A torch zip whose one storage entry inflates to 512 MB (under 1 MB on disk); the tensor
    that uses it needs 1 KB."""
    key = "pvcnn.unet_encoder.conv_final.bias"
    plain = d / "plain.tmp"
    torch.save({key: torch.zeros(_released_shape(key))}, plain)
    p = d / "bomb.ckpt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(p, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith("/data/0"):
                zi = zipfile.ZipInfo(info.filename)
                zi.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(zi, "w", force_zip64=True) as out:
                    block = bytes(16 << 20)
                    for _ in range(32):
                        out.write(block)
            else:
                dst.writestr(info.filename, src.read(info))
    plain.unlink()
    assert p.stat().st_size < 2 << 20
    return p


def _safetensors_with_config(d, name, **overrides):
    from safetensors.torch import save_file

    cfg, state = _small()
    p = d / name
    save_file({k: v.contiguous() for k, v in state.items()}, str(p), metadata={
        "format": COMPACT_FORMAT, "partfield_config": json.dumps({**cfg.to_dict(), **overrides})})
    return p


def st_depth_100000(d):
    return _safetensors_with_config(d, "deep.safetensors", transformer_depth=100_000)


def st_giant_widths(d):
    return _safetensors_with_config(d, "wide.safetensors", transformer_width=8192, transformer_depth=64,
                                    plane_resolution=1024, transformer_heads=8)


def st_string_depth(d):
    return _safetensors_with_config(d, "str.safetensors", transformer_depth="6")


def st_header_length_lie(d):
    p = d / "lie.safetensors"
    p.write_bytes((2**40).to_bytes(8, "little") + b'{"a": 1}')
    return p


def st_header_not_json(d):
    p = d / "notjson.safetensors"
    body = b"\xff\xfe{not json"
    p.write_bytes(len(body).to_bytes(8, "little") + body)
    return p


def st_offsets_past_end(d):
    p = d / "offsets.safetensors"
    header = json.dumps({"triplane_transformer.pos_embed": {
        "dtype": "F32", "shape": [1, 3072, 1024], "data_offsets": [0, 3072 * 1024 * 4]}}).encode()
    p.write_bytes(len(header).to_bytes(8, "little") + header + bytes(64))
    return p


class _Payload:
    """Pickles as a call of os.system: loading it must never run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def ckpt_pickle_payload(d):
    p = d / "payload.ckpt"
    torch.save({"state_dict": _Payload(d / "PAYLOAD_RAN")}, p)
    return p


def ckpt_integer_weights(d):
    key = "pvcnn.unet_encoder.conv_final.bias"
    p = d / "ints.pt"
    torch.save({key: torch.zeros(_released_shape(key), dtype=torch.int64)}, p)
    return p


def ckpt_huge_object_table(d):
    key = "pvcnn.unet_encoder.conv_final.bias"
    p = d / "bigpkl.ckpt"
    torch.save({"state_dict": {key: torch.zeros(_released_shape(key))}, "junk": "x" * (9 << 20)}, p)
    return p


def ckpt_many_unknown_globals(d):
    """A pickle naming 100k distinct unknown globals (a placeholder class each, before)."""
    import io

    key = "pvcnn.unet_encoder.conv_final.bias"
    plain = d / "plain.tmp"
    torch.save({key: torch.zeros(_released_shape(key))}, plain)
    body = io.BytesIO()
    body.write(b"\x80\x02(")  # PROTO 2, MARK
    for i in range(100_000):
        body.write(f"cevil\nname{i}\n".encode())  # GLOBAL
    body.write(b"l.")  # LIST, STOP
    p = d / "globals.ckpt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(p, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, body.getvalue() if info.filename.endswith("data.pkl") else src.read(info))
    plain.unlink()
    return p


def ckpt_not_a_zip_entry(d):
    p = d / "zipjunk.ckpt"
    p.write_bytes(b"PK\x03\x04" + os.urandom(600))
    return p


def training_payload(d):
    run = d / "run"
    run.mkdir()
    p = run / "checkpoint.pt"
    torch.save({"model": {}, "x": _Payload(d / "PAYLOAD_RAN")}, p)
    return p


def training_wrong_content(d):
    p = d / "checkpoint.pt"
    torch.save({"model": {}, "step": 3}, p)
    return p


def _ply(d, name, text, body=b""):
    p = d / name
    p.write_bytes(text.encode("ascii") + body)
    return p


def ply_ascii_truncated(d):
    return _ply(d, "cut.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                "0 0 0\n1 0 0\n")


def ply_unknown_type(d):
    return _ply(d, "type.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty flot x\nend_header\n0\n")


def ply_binary_count_lie(d):
    return _ply(d, "count.ply", "ply\nformat binary_little_endian 1.0\nelement vertex 1000000000\n"
                "property float x\nproperty float y\nproperty float z\nend_header\n", bytes(12))


def obj_bad_face(d):
    p = d / "bad.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 x 3\n")
    return p


def off_short_face(d):
    p = d / "short.off"
    p.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n100000 0 1 2\n")
    return p


def _glb(d, name, doc, binary=b""):
    js = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(js), 0x4E4F534A) + js
    if binary:
        chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
    p = d / name
    p.write_bytes(b"glTF" + struct.pack("<II", 2, 12 + len(chunks)) + chunks)
    return p


def glb_node_cycle(d):
    """A node that is its own child: the hierarchy walk never ended."""
    return _glb(d, "cycle.glb", {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
                                 "nodes": [{"children": [0]}], "meshes": []})


def glb_accessor_past_buffer(d):
    """A strided accessor for a million vertices over a 36-byte buffer (read out of bounds before)."""
    return _glb(d, "oob.glb", {
        "asset": {"version": "2.0"}, "buffers": [{"byteLength": 36}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36, "byteStride": 16}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 1_000_000, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}]}, bytes(36))


def glb_json_list(d):
    return _glb(d, "list.glb", [1, 2, 3])


def glb_deep_json(d):
    return _glb(d, "deep.glb", b"[" * 200_000 + b"]" * 200_000)


def mesh_is_a_folder(d):
    p = d / "folder.obj"
    p.mkdir()
    return p


def _result():
    import numpy as np

    from model_runtime.connectivity import build_connectivity
    from model_runtime.mesh import MeshArrays
    from model_runtime.normalization import Normalization
    from model_runtime.part_tree import PartTree
    from test_connectivity import grid

    v, q = grid(8, 6)
    mesh = MeshArrays.from_triangles(v, q)
    c = mesh.polygon_centers()
    feats = np.c_[np.sin(c[:, 0]), np.cos(c[:, 1]), c[:, 0] * c[:, 1] / 50].astype(np.float32)
    return SegmentationResult(feats, PartTree.build(feats, build_connectivity(mesh)), Normalization.from_mesh(mesh), {})


def result_npz_bomb(d):
    """A stored result whose features entry unpacks to 200 MB (well under 1 MB on disk)."""
    import numpy as np
    from result_crafts import arrays_of, npy_header, with_entry

    res = _result()
    p, f = res.num_polygons, (200 << 20) // (4 * res.num_polygons)
    out = d / "bomb.partfield.npz"
    out.write_bytes(with_entry(arrays_of(res), "features", npy_header((p, f), np.float32), 4 * p * f))
    return out


def result_tree_layout_lies(d):
    """A stored result whose merge nodes' DFS starts (the layout that spares the loops on
    load) do not fit its merges: one is off by one."""
    from result_crafts import arrays_of, npz

    a = arrays_of(_result())
    a["tree_starts"][len(a["tree_starts"]) // 2] += 1
    out = d / "layout.partfield.npz"
    out.write_bytes(npz(a))
    return out


def result_garbage(d):
    out = d / "garbage.partfield.npz"
    out.write_bytes(b"PK\x03\x04" + bytes(300))
    return out


PAYLOAD = bytes(range(256)) * 60  # 15,360 bytes standing in for the checkpoint


def _dl(server=None, **kwargs):
    def make(d):
        (d / "dl").mkdir()
        return {"payload": PAYLOAD, "server": server or {}, "dest": d / "dl",
                "kwargs": {"sha256": hashlib.sha256(PAYLOAD).hexdigest(), "backoff": 0, **kwargs}}
    return make


CASES = [
    # checkpoints
    Case("ckpt-stride0-1.4GB", "checkpoint", ckpt_stride0_huge,
         r"pos_embed is \(350000000,\), expected \(1, 3072, 1024\)", peak_mb=300, seconds=60),
    Case("ckpt-stride0-right-shape", "checkpoint", ckpt_stride0_right_shape, r"strided layout .* refused"),
    Case("ckpt-deflate-bomb-512MB", "checkpoint", ckpt_deflate_bomb, r"202 missing keys", peak_mb=300, seconds=60),
    Case("st-depth-100000", "checkpoint", st_depth_100000,
         r"transformer_depth = 100000 is outside the supported range 0\.\.64", seconds=30),
    Case("st-giant-widths", "checkpoint", st_giant_widths, r"parameters, more than the 1,000,000,000 supported",
         peak_mb=300, seconds=60),
    Case("st-config-field-type", "checkpoint", st_string_depth, r"transformer_depth must be an integer"),
    Case("st-header-length-lie", "checkpoint", st_header_length_lie, r"header length .* does not fit"),
    Case("st-header-not-json", "checkpoint", st_header_not_json, r"not a checkpoint this runtime can read"),
    Case("st-offsets-past-end", "checkpoint", st_offsets_past_end, r"truncated or its offsets are inconsistent"),
    Case("ckpt-pickle-payload", "checkpoint", ckpt_pickle_payload, r"no weights found"),
    Case("ckpt-integer-weights", "checkpoint", ckpt_integer_weights, r"not floating point"),
    Case("ckpt-object-table-9MB", "checkpoint", ckpt_huge_object_table, r"object table \(data\.pkl\) claims"),
    Case("ckpt-many-unknown-globals", "checkpoint", ckpt_many_unknown_globals, r"more than 256 unknown globals",
         peak_mb=150, seconds=60),
    Case("ckpt-zip-garbage", "checkpoint", ckpt_not_a_zip_entry, r"truncated or corrupt checkpoint"),
    # training checkpoints (train --resume)
    Case("train-pickle-payload", "training", training_payload, r"cannot read the training checkpoint \(UnpicklingError"),
    Case("train-wrong-content", "training", training_wrong_content, r"not a training checkpoint of this project"),
    # meshes
    Case("ply-ascii-truncated", "mesh", ply_ascii_truncated, r"cut\.ply: truncated ASCII PLY"),
    Case("ply-unknown-type", "mesh", ply_unknown_type, r"type\.ply: cannot parse PLY file \(KeyError"),
    Case("ply-binary-count-lie", "mesh", ply_binary_count_lie, r"count\.ply: cannot parse PLY file"),
    Case("obj-bad-face", "mesh", obj_bad_face, r"bad\.obj: cannot parse OBJ file \(ValueError"),
    Case("off-short-face", "mesh", off_short_face, r"short\.off: a face line declares 100000 corners"),
    Case("glb-node-cycle", "mesh", glb_node_cycle, r"cycle\.glb: the glTF node hierarchy is not a tree", seconds=30),
    Case("glb-accessor-past-buffer", "mesh", glb_accessor_past_buffer, r"oob\.glb: .*reaches past its buffer"),
    Case("glb-json-not-object", "mesh", glb_json_list, r"list\.glb: cannot parse GLB file \(AttributeError"),
    Case("glb-json-nesting", "mesh", glb_deep_json, r"deep\.glb: cannot parse GLB file \(RecursionError"),
    Case("mesh-is-a-folder", "mesh", mesh_is_a_folder, r"folder\.obj: is a folder, not a mesh file"),
    # stored results (the rows of their own bounds tests live in test_stored_result_bounds.py)
    Case("result-npz-bomb-200MB", "result", result_npz_bomb, r"claims [\d,]+ bytes uncompressed", peak_mb=100,
         seconds=30),
    Case("result-garbage", "result", result_garbage, r"garbage\.partfield\.npz"),
    Case("result-tree-layout-lies", "result", result_tree_layout_lies,
         r"layout\.partfield\.npz has a broken merge tree: the stored start of node \d+ is"),
    # the download (a real HTTP server on 127.0.0.1)
    Case("dl-ignores-range-and-drops", "download",
         _dl({"support_range": False, "drop_after": 5000, "drops": 10**9}, retries=3, size=None),
         r"3 retries in a row made no progress", seconds=30,
         leaves=("dl/model_objaverse.ckpt.part", "dl/model_objaverse.ckpt.part.json")),
    Case("dl-content-length-not-the-release", "download", _dl(sha256=None),
         r"offers 15,360 bytes but the expected size is 1,243,631,761", error=wd.ChecksumError),
    Case("dl-disk-too-small", "download", _dl({"declared_length": 2**60}, size=None),
         r"not enough free space", error=wd.DiskSpaceError),
    Case("dl-cut-no-length-no-hash", "download", _dl({"send_length": False, "drop_after": 9000, "drops": 1},
                                                     sha256=None, size=None),
         r"no way to tell a complete download from a cut one"),
]


def snapshot(folder: Path) -> dict:
    """name -> (size, sha256) of every file under `folder` (folders as None)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = None if p.is_dir() else (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_its_readers_error_and_changes_nothing(case, tmp_path):
    reader = READERS[case.reader]
    inp = case.make(tmp_path)
    before = snapshot(tmp_path)
    error = case.error or reader.error
    bounded = (case.peak_mb is not None or case.seconds is not None) and reader.call
    if bounded:
        res = run_bounded(f"{reader.setup}\nPATH = {str(inp)!r}", reader.call)
        assert res["error"] == error.__name__, res
        assert __import__("re").search(case.match, res["message"]), res["message"]
        if case.peak_mb is not None:
            assert res["peak_mb"] < case.peak_mb, res
        if case.seconds is not None:
            assert res["seconds"] < case.seconds, res
    else:
        import time

        t0 = time.monotonic()
        with pytest.raises(error, match=case.match) as info:
            reader.read(inp)
        assert isinstance(info.value, PartFieldError)
        assert "\n" not in str(info.value)
        if case.seconds is not None:
            assert time.monotonic() - t0 < case.seconds
    after = snapshot(tmp_path)
    for name in case.leaves:
        after.pop(name, None)
    assert after == before  # nothing written, nothing changed, no payload ran


def test_every_reader_has_rows():
    assert {c.reader for c in CASES} == set(READERS)


# ------------------------------------------------------------------------------------------ the CLI
def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "model_runtime", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _one_error_line(r):
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("command,make,needle", [
    (["info"], ckpt_stride0_huge, "stride0.ckpt does not fit the network"),
    (["info"], ckpt_pickle_payload, "payload.ckpt: no weights found"),
    (["segment"], ply_ascii_truncated, "cut.ply: truncated ASCII PLY"),
    (["segment"], glb_node_cycle, "cycle.glb: the glTF node hierarchy is not a tree"),
    (["segment"], glb_deep_json, "deep.glb: cannot parse GLB file"),
], ids=["info-stride0", "info-payload", "segment-ply-cut", "segment-glb-cycle", "segment-glb-deep"])
def test_cli_prints_one_error_line_and_exits_1(tmp_path, command, make, needle):
    inp = make(tmp_path)
    before = snapshot(tmp_path)
    extra = ["--out", tmp_path / "out", "--quiet"] if command == ["segment"] else []
    line = _one_error_line(_cli(*command, inp, *extra))
    assert needle in line
    assert snapshot(tmp_path) == before  # no output folder, no partial output


def test_cli_os_errors_are_one_line(tmp_path):
    cfg, state = _small()
    src = save_compact(tmp_path / "m.safetensors", state, cfg, {})
    line = _one_error_line(_cli("convert", src, tmp_path / "no" / "such" / "dir" / "out.safetensors"))
    assert "No such file or directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_train_resume_refuses_a_pickled_payload(tmp_path):
    """`train --resume` read OUT/checkpoint.pt with weights_only=False: a payload ran."""
    ckpt = training_payload(tmp_path)
    run = ckpt.parent
    before = snapshot(tmp_path)
    line = _one_error_line(_cli("train", "--out", run, "--config", "tiny", "--steps", "1", "--resume",
                                "--device", "cpu"))
    assert "checkpoint.pt: cannot read the training checkpoint (UnpicklingError" in line
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "PAYLOAD_RAN").exists()


def test_hundred_thousand_gon_is_segmented_and_written(tmp_path):
    """A polygon with 100k corners used to fail after the compute, when writing the coloured PLY
    (a uchar corner count), leaving the labels of the first cut behind. Now it is handled: the
    PLY uses a uint count and reads back with the same polygons."""
    import numpy as np

    n = 100_000
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    v = np.r_[np.c_[np.cos(a), np.sin(a), np.zeros(n)], [[0, 0, 1], [0.5, 0, 1], [0, 0.5, 1], [0.5, 0.5, 1.3]]]
    obj = tmp_path / "ngon.obj"
    with open(obj, "w") as f:
        f.writelines(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in v)
        f.write("f " + " ".join(str(i + 1) for i in range(n)) + "\n")
        f.write(f"f {n + 1} {n + 2} {n + 3}\nf {n + 2} {n + 4} {n + 3}\n")
    out = tmp_path / "out"
    r = _cli("segment", obj, "--out", out, "--parts", "2", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    back = read_mesh(out / "ngon_k2.ply")
    assert back.loop_totals.tolist() == [n, 3, 3]
    assert sorted(p.name for p in out.iterdir()) == ["ngon.labels.json", "ngon_k2.labels.npy", "ngon_k2.ply"]
