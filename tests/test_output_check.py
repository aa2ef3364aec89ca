"""Every output kind the batch writes is checked before its rename: real files written by bpy
and numpy pass; the same files cut short, emptied or overwritten with garbage fail; a failed
check removes the temporary and leaves the final name as it was."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def _load(name, file):
    spec = importlib.util.spec_from_file_location(name, REPO / "partfield_blender" / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bp = _load("pf_batch_plan_oc_test", "batch_plan.py")
oc = bp.output_check

WRITE_REAL = textwrap.dedent("""
    import os, sys, tempfile
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp())
    import bpy, addon_utils
    out = sys.argv[1]
    for name in ("io_scene_gltf2", "io_scene_fbx"):
        addon_utils.enable(name, default_set=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24)
    bpy.ops.wm.save_as_mainfile(filepath=out + "/plain.blend", copy=True, compress=False)
    bpy.ops.wm.save_as_mainfile(filepath=out + "/zstd.blend", copy=True, compress=True)
    bpy.ops.export_scene.gltf(filepath=out + "/parts.glb", export_format="GLB")
    bpy.ops.export_scene.fbx(filepath=out + "/parts.fbx")
    print("WROTE")
""")


@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    proc = subprocess.run([sys.executable, "-c", WRITE_REAL, str(out)], capture_output=True, text=True, timeout=300)
    assert "WROTE" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    np.save(out / "k4.labels.npy", np.arange(1000, dtype=np.int32))
    (out / "chair.labels.json").write_text(json.dumps({"objects": [{"labels": list(range(300))}]}))
    from model_runtime.mesh import MeshArrays
    from model_runtime.meshio import write_colored_ply

    v = np.random.default_rng(0).random((200, 3))
    f = np.arange(198)[:, None] + np.arange(3)
    write_colored_ply(out / "parts.ply", MeshArrays.from_triangles(v, f), np.arange(198) % 4)
    return out


KINDS = ["plain.blend", "zstd.blend", "parts.glb", "parts.fbx", "k4.labels.npy", "chair.labels.json", "parts.ply"]


@pytest.mark.parametrize("name", KINDS)
def test_complete_files_pass_and_cut_files_fail(real_files, tmp_path, name):
    src = real_files / name
    oc.check_file(src)  # a complete file of its kind
    data = src.read_bytes()
    target = tmp_path / name
    for cut in sorted({1, 12, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1}):
        target.write_bytes(data[:cut])
        with pytest.raises(oc.IncompleteOutput):
            oc.check_file(target)
    target.write_bytes(b"")
    with pytest.raises(oc.IncompleteOutput, match="empty"):
        oc.check_file(target)
    target.write_bytes(os.urandom(len(data)))
    with pytest.raises(oc.IncompleteOutput):
        oc.check_file(target)


def test_a_failed_check_removes_the_temp_and_keeps_the_old_file(real_files, tmp_path):
    final = tmp_path / "chair_k4.blend"
    final.write_bytes(b"the user's earlier result")
    data = (real_files / "zstd.blend").read_bytes()
    with pytest.raises(bp.OutputError, match=r"could not write chair_k4\.blend: truncated compressed \.blend"):
        with bp.atomic_path(final) as tmp:
            tmp.write_bytes(data[: len(data) // 2])  # what a full disk leaves while the writer says FINISHED
    assert final.read_bytes() == b"the user's earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chair_k4.blend"]
    with bp.atomic_path(final) as tmp:
        tmp.write_bytes(data)
    assert final.read_bytes() == data


def test_write_errors_become_output_errors(tmp_path):
    """An OSError from write() (ENOSPC, EFBIG) names the file, removes the temp."""
    final = tmp_path / "x.labels.json"
    with pytest.raises(bp.OutputError, match=r"could not write x\.labels\.json: No space left on device \[ENOSPC\]"):
        with bp.atomic_path(final) as tmp:
            tmp.write_text("{")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_output_folder_check(tmp_path):
    assert bp.check_output_folder(tmp_path / "new" / "deep") is None and (tmp_path / "new" / "deep").is_dir()
    assert list((tmp_path / "new" / "deep").iterdir()) == []  # the probe file is gone
    afile = tmp_path / "afile"
    afile.write_text("x")
    why = bp.check_output_folder(afile / "out")
    assert why.startswith("cannot create the output folder") and "[ENOTDIR]" in why, why
    assert bp.check_output_folder(afile) == f"the output path {afile} is a file, not a folder"
