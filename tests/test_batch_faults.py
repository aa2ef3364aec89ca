"""The batch under faults (issue 17 items 2 and 6, issue 19 item 4): inputs that crash Blender's
readers fail alone, a full disk or a read-only output folder never leaves a broken file or a
traceback, Ctrl-C / SIGTERM stop cleanly with 130 / 143, folders skip earlier outputs, the
installed script finds its add-on without BLENDER_USER_RESOURCES, and every `--help` example
runs. Real bpy, real model, crafted inputs generated here."""
import json
import os
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from test_batch import BATCH, POINTS, PY, REPO, _env, _table, _write_obj, _write_ply, run_batch, run_bpy_script

import test_output_check

oc = test_output_check.oc
FAST = ["--device", "cpu", "--threads", "1", "--points", str(POINTS)]


def _records(out: Path, name="summary.json"):
    data = json.loads((out / name).read_text())
    return data, {r["key"]: r for r in data["inputs"]}


def _tail(proc):
    return proc.stdout[-3000:] + proc.stderr[-3000:]


# ---------------------------------------------------------------------------- crafted inputs
def hostile_ply(path: Path):
    """A binary PLY whose header claims 2^31-1 vertices over a 36-byte body: Blender's PLY
    importer tries to allocate 25 GB and aborts the process (rc 139)."""
    head = ("ply\nformat binary_little_endian 1.0\nelement vertex 2147483647\nproperty float x\n"
            "property float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\n"
            "end_header\n").encode()
    path.write_bytes(head + struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0))


CUBE_BLEND = """
import bpy
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.mesh.primitive_cube_add()
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1], copy=True, compress=False)
print("RESULT " + json.dumps({"ok": True}))
"""


def crashing_blend(path: Path):
    """An uncompressed .blend whose mesh data-block past its ID is overwritten with 0x7f bytes:
    opening it segfaults Blender."""
    run_bpy_script(CUBE_BLEND, path)
    data = bytearray(path.read_bytes())
    assert data[:7] == b"BLENDER"
    large = data[7:9].isdigit()  # 'BLENDER17-01v0500': 32-byte block headers with 64-bit lengths
    pos = 17 if large else 12
    while pos < len(data):
        code = bytes(data[pos:pos + 4])
        length = struct.unpack_from("<q" if large else "<i", data, pos + (16 if large else 4))[0]
        body = pos + (32 if large else 24)
        if code[:2] == b"ME":
            data[body + 200: body + length] = b"\x7f" * (length - 200)
            path.write_bytes(bytes(data))
            return
        pos = body + length
    raise AssertionError("no mesh block in the saved .blend")


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    v, f = _table()
    _write_obj(root / "table.obj", v, f)
    _write_ply(root / "table.ply", v, f)
    hostile_ply(root / "hostile.ply")
    crashing_blend(root / "crash.blend")
    return root, v, f


# ---------------------------------------------------------------------------- item 6: hostile inputs
def _blender_dies_on(path: Path) -> int:
    """Exit status of Blender opening `path` with its own reader, in its own process."""
    code = ("import os, sys, tempfile\nos.environ['BLENDER_USER_RESOURCES'] = tempfile.mkdtemp()\nimport bpy\n"
            "p = sys.argv[1]\n"
            "if p.endswith('.ply'):\n    bpy.ops.wm.ply_import(filepath=p)\n"
            "else:\n    bpy.ops.wm.open_mainfile(filepath=p, load_ui=False, use_scripts=False)\n")
    return subprocess.run([PY, "-c", code, str(path)], capture_output=True, timeout=120).returncode


def test_inputs_that_crash_blender_fail_alone(meshes, tmp_path):
    root, _, _ = meshes
    # the crafted inputs really do kill a process that opens them with Blender's readers
    assert _blender_dies_on(root / "hostile.ply") not in (0, 1)
    assert _blender_dies_on(root / "crash.blend") not in (0, 1)
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("table.obj", "hostile.ply", "crash.blend"):
        shutil.copy(root / name, lib / name)
    out = tmp_path / "out"
    proc = run_batch(lib, "-o", out, "--parts", "3", "--export", "labels")
    assert proc.returncode == 1, _tail(proc)  # some inputs failed, the run itself finished
    data, by_key = _records(out)
    assert by_key["table"]["status"] == "ok"
    assert by_key["hostile"]["status"] == "failed" and "cannot read ply file" in by_key["hostile"]["reason"]
    assert by_key["crash"]["status"] == "failed"
    assert "importer crashed on this file (SIG" in by_key["crash"]["reason"], by_key["crash"]
    assert not list(out.rglob("*.running.json"))  # no input counts as a crash of the batch itself
    assert not list(out.glob("crash*")) and not list(out.glob("hostile*"))


# ---------------------------------------------------------------------------- item 2: full disk, read-only
@contextmanager
def tiny_disk(path: Path, size: str):
    """A small tmpfs at `path` (root only); yields True, or False when it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                        capture_output=True).returncode == 0 if shutil.which("mount") else False
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_leaves_no_broken_file_and_keeps_the_old_one(meshes, tmp_path):
    root, _, _ = meshes
    out = tmp_path / "disk"
    earlier = b"the .blend an earlier run wrote"
    with tiny_disk(out, "96k") as mounted:
        (out / "table_k3.blend").write_bytes(earlier)
        cmd = [PY, str(BATCH), "--", str(root / "table.obj"), "-o", str(out), "--parts", "3",
               "--export", "blend,labels", *FAST]
        # without a mount: a 96 KB file-size limit, the same failing write() (EFBIG, not ENOSPC)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=REPO,
                              preexec_fn=None if mounted else _file_size_limit(96 * 1024))
        assert proc.returncode == 1, _tail(proc)
        data, by_key = _records(out)
        reason = by_key["table"]["reason"]
        assert by_key["table"]["status"] == "failed"
        assert reason.startswith("could not write table_k3.blend: truncated"), reason
        assert "Traceback" not in proc.stderr
        assert (out / "table_k3.blend").read_bytes() == earlier  # what the user had is unchanged
        left = sorted(p.name for p in out.iterdir())
        assert left == [".partfield-batch-output", "summary.json", "table_k3.blend"], left
        for p in out.iterdir():
            if p.suffix == ".json":
                oc.check_file(p)


@contextmanager
def read_only_folder(path: Path):
    """A read-only mount at `path` (root ignores permission bits); yields the reason it is
    unwritable to expect, or falls back to a path under a file (ENOTDIR) without mount rights."""
    path.mkdir(parents=True)
    ok = shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        if ok:
            yield path, "Read-only file system [EROFS]"
        else:
            blocker = path / "file"
            blocker.write_text("x")
            yield blocker / "out", "Not a directory [ENOTDIR]"
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_output_folder_is_refused_at_start(meshes, tmp_path):
    root, _, _ = meshes
    with read_only_folder(tmp_path / "ro") as (out, why):
        t = time.perf_counter()
        proc = subprocess.run([PY, str(BATCH), "--", str(root / "table.obj"), "-o", str(out), *FAST],
                              capture_output=True, text=True, timeout=120, env=_env(), cwd=REPO)
        seconds = time.perf_counter() - t
        assert proc.returncode == 2, _tail(proc)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot "), proc.stderr
        assert why in lines[0] and str(out) in lines[0]
        assert "model:" not in proc.stdout and seconds < 30  # refused before bpy or the model
    assert not list(tmp_path.rglob("summary*.json"))


# ---------------------------------------------------------------------------- item 6: interrupts
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_cleanly(meshes, tmp_path, sig, code):
    root, v, f = meshes
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(12):  # enough inputs that the signal lands with work left, even on an idle machine
        _write_ply(lib / f"t{i}.ply", v * (1 + 0.1 * i), f)
    out = tmp_path / "out"
    cmd = [PY, str(BATCH), "--", str(lib), "-o", str(out), "--parts", "3,5", "--export", "blend,glb,labels", *FAST]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    # the signal goes in while a .glb is being written if we catch one, else after the first input
    deadline = time.monotonic() + 240
    seen_ok = False
    while time.monotonic() < deadline and proc.poll() is None:
        if list(out.glob(".*.glb.tmp-*")) or (seen_ok and time.monotonic() > seen_ok + 0.3):
            break
        if not seen_ok and list(out.glob("*.done.json")):
            seen_ok = time.monotonic()
        time.sleep(0.005)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stdout[-3000:] + stderr[-3000:]
    assert f"interrupted ({sig.name})" in stderr
    assert not list(out.rglob("*.running.json")), "an interrupt is not a crash"
    assert not [p.name for p in out.rglob("*") if ".tmp-" in p.name]
    data, by_key = _records(out)
    assert data["interrupted"] == sig.name and data["not_run"] >= 1
    done = {p.name[: -len(".done.json")] for p in out.glob("*.done.json")}
    assert done == {k for k, r in by_key.items() if r["status"] == "ok"}
    for key in done:  # finished inputs have every output, complete
        record = json.loads((out / f"{key}.done.json").read_text())
        for rel in record["outputs"]:
            oc.check_file(out / rel)
    for p in out.iterdir():  # nothing under a final name is incomplete
        if p.is_file() and not p.name.startswith("."):
            oc.check_file(p)
    # the log holds our lines only: no exporter INFO lines, no temporary names
    assert "INFO" not in stdout + stderr and ".tmp-" not in stdout + stderr, stdout + stderr


# ---------------------------------------------------------------------------- issue 19 item 4
def test_folder_input_skips_earlier_outputs(meshes, tmp_path):
    root, v, f = meshes
    lib = tmp_path / "lib"
    (lib / "models").mkdir(parents=True)
    _write_obj(lib / "models" / "chair.obj", v, f)
    # an earlier batch run into lib/out1 (it fails fast: the only input does not exist)
    first = run_batch(tmp_path / "missing.obj", "-o", lib / "out1", "--export", "blend")
    assert first.returncode == 1 and (lib / "out1" / ".partfield-batch-output").is_file(), _tail(first)
    (lib / "out1" / "chair_k8.blend").write_bytes(b"an earlier output")
    # an older batch output folder (summary only, no marker) and the segment CLI's outputs
    (lib / "old").mkdir()
    shutil.copy(lib / "out1" / "summary.json", lib / "old" / "summary.json")
    (lib / "old" / "chair_k4.glb").write_bytes(b"x")
    (lib / "cli").mkdir()
    (lib / "cli" / "chair.labels.json").write_text("{}")
    (lib / "cli" / "chair_k4.ply").write_text("ply")
    (lib / "cli" / "own_k2.ply").write_text("ply")  # no labels.json beside it: a user's mesh
    proc = subprocess.run([PY, str(BATCH), "--", str(lib), "-o", str(lib / "out2"), "--list"],
                          capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 0, _tail(proc)
    listed = sorted(line.split("\t")[0] for line in proc.stdout.splitlines())
    assert listed == ["cli/own_k2", "models/chair"], proc.stdout
    # outputs written next to the inputs (--output is the input folder): a re-run still finds
    # the inputs, not the outputs (an interrupted input's outputs have no done-marker yet)
    shutil.copy(lib / "out1" / ".partfield-batch-output", lib / "models")
    (lib / "models" / "chair_k8.blend").write_bytes(b"an earlier output")
    (lib / "models" / "stool_k3.glb").write_bytes(b"an interrupted input's output")
    for spec in (lib / "models", lib / "models" / "*"):
        proc = subprocess.run([PY, str(BATCH), "--", str(spec), "-o", str(lib / "models"), "--list"],
                              capture_output=True, text=True, timeout=60, env=_env())
        assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == ["chair"], (spec, proc.stdout)


def test_installed_script_finds_its_addon_without_blender_user_resources(meshes, tmp_path):
    root, v, f = meshes
    user = tmp_path / "home_blender"  # stands for ~/.config/blender/X.Y of a user who installed it
    ext = user / "extensions" / "user_default" / "partfield_blender"
    shutil.copytree(REPO / "partfield_blender", ext, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "blender_manifest.toml", ext)
    env = _env()  # no BLENDER_USER_RESOURCES; model_runtime from PYTHONPATH (the extension's wheel in a real install)
    assert "BLENDER_USER_RESOURCES" not in env
    out = tmp_path / "out"
    proc = subprocess.run([PY, str(ext / "batch.py"), "--", str(root / "table.ply"), "-o", str(out),
                           "--parts", "3", "--export", "labels", *FAST],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, _tail(proc)
    data, _ = _records(out)
    assert data["addon"] == "bl_ext.user_default.partfield_blender"
    # the user's preferences and config are not touched: only Blender's own extension cache may appear
    written = [p.relative_to(user).as_posix() for p in user.rglob("*") if p.is_file()
               and ext not in p.parents and "__pycache__" not in p.parts]
    assert all(w.startswith("extensions/.cache/") for w in written), written


def _help_examples(text: str):
    """Example command lines of a --help text: the 'examples:' block, plus every 'e.g. --opt ...'
    at the end of an option's help (run appended to a small base command)."""
    lines = text.splitlines()
    start = lines.index("examples:")
    examples = [ln.strip() for ln in lines[start + 1:] if ln.strip()]
    fragments = []
    options = "\n".join(lines[:start])
    for block in re.split(r"\n(?=  -)", options):  # one block per option: its usage, then its help
        flat = " ".join(block.split())
        m = re.search(r"e\.g\. (--.*)$", flat)
        if m:
            fragments.append(m.group(1).rstrip(").").strip())
    return examples, fragments


def test_every_help_example_runs(meshes, tmp_path):
    root, v, f = meshes
    proc = subprocess.run([PY, str(BATCH), "--", "--help"], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0
    examples, fragments = _help_examples(proc.stdout)
    assert len(examples) >= 3 and fragments, proc.stdout
    # the files the examples name, in a scratch folder
    (tmp_path / "assets").mkdir()
    (tmp_path / "lib" / "sub").mkdir(parents=True)
    _write_obj(tmp_path / "assets" / "crate.obj", v, f)
    _write_obj(tmp_path / "lib" / "sub" / "bench.obj", v, f)
    _write_ply(tmp_path / "chair.ply", v, f)
    runs = [shlex.split(ex.replace("$SLURM_ARRAY_TASK_ID", "0")) for ex in examples]
    runs += [["python", "batch.py", "--", "chair.ply", "-o", "frag_out", "--export", "labels", *shlex.split(fr)]
             for fr in fragments]
    for argv in runs:
        script_args = argv[argv.index("--") + 1:]  # `blender -b --python batch.py --` runs the same script
        assert argv[argv.index("--") - 1] == "batch.py", argv
        run = subprocess.run([PY, str(BATCH), "--", *script_args, *FAST], capture_output=True, text=True,
                             timeout=300, env=_env(), cwd=tmp_path)
        assert run.returncode == 0, f"{argv}\n" + _tail(run)
        out = tmp_path / script_args[script_args.index("-o") + 1 if "-o" in script_args
                                     else script_args.index("--output") + 1]
        data, by_key = _records(out, "summary.json" if "--shard" not in script_args else "summary_shard0-of-16.json")
        assert data["counts"]["ok"] == 1 and data["counts"]["failed"] == 0, data
