"""Headless batch, end to end: `python partfield_blender/batch.py -- ...` through the real bpy
module and the real model, on a folder of generated meshes in several formats plus a corrupt
file and files without a mesh."""
import json
import re
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
BATCH = REPO / "partfield_blender" / "batch.py"
PY = sys.executable
POINTS = 2000  # low sample count keeps the runs fast; the expected labels use the same
PARTS = (3, 5)
TIMEOUT = 300


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    env.pop("BLENDER_USER_RESOURCES", None)  # the script must make its own
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_batch(*args, timeout=TIMEOUT):
    cmd = [PY, str(BATCH), "--", *map(str, args), "--device", "cpu", "--threads", "1", "--points", str(POINTS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=REPO)
    return proc


def run_bpy_script(code: str, *args, timeout=TIMEOUT):
    """Run a bpy script in a fresh process; it prints one JSON line prefixed 'RESULT '."""
    env = _env()
    script = "import os, sys, json\n" + textwrap.dedent(code)
    with tempfile.TemporaryDirectory(prefix="pf_test_bpy_user_") as user:
        env["BLENDER_USER_RESOURCES"] = user
        proc = subprocess.run([PY, "-c", script, *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


# ---------------------------------------------------------------------------- test meshes
def _box_quads(lo, hi, n):
    """A closed box made of n x n quads per side: (vertices (V,3), quads (F,4)), shared vertices."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    t = np.linspace(0.0, 1.0, n + 1)
    verts, quads = [], []
    for axis in range(3):
        for side in (0.0, 1.0):
            u, v = (axis + 1) % 3, (axis + 2) % 3
            base = len(verts)
            for a in t:
                for b in t:
                    p = np.empty(3)
                    p[axis], p[u], p[v] = side, a, b
                    verts.append(lo + p * (hi - lo))
            for i in range(n):
                for j in range(n):
                    q = [base + i * (n + 1) + j, base + (i + 1) * (n + 1) + j,
                         base + (i + 1) * (n + 1) + j + 1, base + i * (n + 1) + j + 1]
                    quads.append(q if side else q[::-1])
    verts = np.asarray(verts)
    # weld the duplicated edge vertices of the six sides
    uniq, inverse = np.unique(np.round(verts, 9), axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)[np.asarray(quads)]


def _assembly(boxes, n=3):
    verts, faces = [], []
    offset = 0
    for lo, hi in boxes:
        v, f = _box_quads(lo, hi, n)
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def _table():
    legs = [((x, y, 0.0), (x + 0.1, y + 0.1, 0.7)) for x in (0.0, 0.9) for y in (0.0, 0.5)]
    return _assembly([((0.0, 0.0, 0.7), (1.0, 0.6, 0.8))] + legs)


def _lamp():
    return _assembly([((-0.3, -0.3, 0.0), (0.3, 0.3, 0.05)), ((-0.03, -0.03, 0.05), (0.03, 0.03, 0.9)),
                      ((-0.2, -0.2, 0.9), (0.2, 0.2, 1.2))])


def _chair():
    legs = [((x, y, 0.0), (x + 0.08, y + 0.08, 0.45)) for x in (0.0, 0.42) for y in (0.0, 0.42)]
    return _assembly([((0.0, 0.0, 0.45), (0.5, 0.5, 0.52)), ((0.0, 0.42, 0.52), (0.5, 0.5, 1.1))] + legs)


def _stool():
    legs = [((x, y, 0.0), (x + 0.06, y + 0.06, 0.5)) for x in (0.0, 0.34) for y in (0.0, 0.34)]
    return _assembly([((-0.05, -0.05, 0.5), (0.45, 0.45, 0.58))] + legs, n=2)


def _tris(faces):
    return np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])


def _write_obj(path, v, f):
    lines = ["# test"] + [f"v {a:.9g} {b:.9g} {c:.9g}" for a, b, c in v]
    lines += ["f " + " ".join(str(i + 1) for i in face) for face in f]
    path.write_text("\n".join(lines) + "\n")


def _write_off(path, v, f):
    lines = ["OFF", f"{len(v)} {len(f)} 0"] + [f"{a:.9g} {b:.9g} {c:.9g}" for a, b, c in v]
    lines += [f"{len(face)} " + " ".join(map(str, face)) for face in f]
    path.write_text("\n".join(lines) + "\n")


def _write_ply(path, v, f):
    head = ["ply", "format ascii 1.0", f"element vertex {len(v)}", "property float x", "property float y",
            "property float z", f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    body = [f"{a:.9g} {b:.9g} {c:.9g}" for a, b, c in v] + [f"{len(x)} " + " ".join(map(str, x)) for x in f]
    path.write_text("\n".join(head + body) + "\n")


MAKE_BLENDER_INPUTS = """
import numpy as np, bpy, addon_utils
data = np.load(sys.argv[1])
folder = sys.argv[2]
addon_utils.enable("io_scene_gltf2", default_set=True)

def build(name, v, f):
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(v)); me.vertices.foreach_set("co", v.astype(np.float32).ravel())
    me.loops.add(f.size); me.loops.foreach_set("vertex_index", f.ravel().astype(np.int32))
    me.polygons.add(len(f)); me.polygons.foreach_set("loop_start", (np.arange(len(f)) * f.shape[1]).astype(np.int32))
    me.update(calc_edges=True)
    ob = bpy.data.objects.new(name, me); bpy.context.scene.collection.objects.link(ob)
    return ob

bpy.ops.wm.read_homefile(use_empty=True)
build("Chair", data["chair_v"], data["chair_f"])
bpy.ops.wm.save_as_mainfile(filepath=folder + "/chair.blend")

bpy.ops.wm.read_homefile(use_empty=True)
build("Lamp", data["lamp_v"], data["lamp_f"])
bpy.ops.export_scene.gltf(filepath=folder + "/lamps/lamp.glb", export_format="GLB")

bpy.ops.wm.read_homefile(use_empty=True)
bpy.context.scene.collection.objects.link(bpy.data.objects.new("JustAnEmpty", None))
bpy.ops.wm.save_as_mainfile(filepath=folder + "/empty.blend")
print("RESULT " + json.dumps({"ok": True}))
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The input folder and, per good input, the mesh arrays Blender will see."""
    root = tmp_path_factory.mktemp("batch")
    lib = root / "library"
    (lib / "lamps").mkdir(parents=True)
    (lib / "more").mkdir()
    tv, tf = _table()
    sv, sf = _stool()
    cv, cf = _chair()
    lv, lf = _lamp()
    lf = _tris(lf)  # glTF stores triangles: make the source triangles so the round trip is exact
    _write_obj(lib / "table.obj", tv, tf)
    _write_off(lib / "more" / "stool.off", sv, sf)
    _write_ply(lib / "table.ply", tv[:, [1, 0, 2]] * 1.3, tf[:, ::-1])  # same stem as table.obj
    (lib / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00" + os.urandom(64))
    (lib / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (lib / "more" / "cut.off").write_text("OFF\n8 2 0\n0 0 0\n1 0 0\n")  # truncated
    (lib / "notes.txt").write_text("not a mesh, ignored")
    np.savez(root / "arrays.npz", chair_v=cv, chair_f=cf, lamp_v=lv, lamp_f=lf)
    run_bpy_script(MAKE_BLENDER_INPUTS, root / "arrays.npz", lib)
    expected_meshes = {
        "table_obj": (tv, tf),
        "table_ply": (tv[:, [1, 0, 2]] * 1.3, tf[:, ::-1]),
        "more/stool": (sv, sf),
        "chair": (cv, cf),
        "lamps/lamp": (lv, lf),
    }
    return root, lib, expected_meshes


_EXPECTED = {}


def expected_labels(vertices, faces, k):
    """What model_runtime alone gives for the same mesh arrays and options."""
    key = (np.asarray(vertices).tobytes(), np.asarray(faces).tobytes())
    if key not in _EXPECTED:
        _EXPECTED[key] = _segment(vertices, faces)
    return np.asarray(_EXPECTED[key].labels(k))


def _segment(vertices, faces):
    import torch

    from model_runtime.field_model import get_model
    from model_runtime.mesh import MeshArrays
    from model_runtime.pipeline import SegmentOptions, segment_mesh

    faces = np.asarray(faces)
    mesh = MeshArrays(vertices.astype(np.float32), np.arange(len(faces)) * faces.shape[1],
                      np.full(len(faces), faces.shape[1]), faces.ravel())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the batch runs (--threads 1)
    try:
        result = segment_mesh(mesh, get_model(None, device="cpu"), SegmentOptions(num_points=POINTS))
    finally:
        torch.set_num_threads(threads)
    return result


GOOD = {"table_obj", "table_ply", "more/stool", "chair", "lamps/lamp"}
BAD = {"broken": "glb", "empty": "no mesh", "points": "no mesh object with faces", "more/cut": "truncated"}


def _summary(path):
    data = json.loads(Path(path).read_text())
    return data, {r["key"]: r for r in data["inputs"]}


@pytest.fixture(scope="module")
def sharded_run(library):
    """Shards 0/2 and 1/2 into one output folder, then an un-sharded re-run over it."""
    root, lib, _ = library
    out = root / "out"
    args = [lib, "--output", out, "--parts", ",".join(map(str, PARTS)), "--export", "blend,glb,fbx,labels"]
    shards = [run_batch(*args, "--shard", f"{i}/2") for i in range(2)]
    rerun = run_batch(*args)
    return out, shards, rerun


def test_shards_cover_every_input_exactly_once(sharded_run):
    out, shards, _ = sharded_run
    seen = []
    for i, proc in enumerate(shards):
        data, by_key = _summary(out / f"summary_shard{i}-of-2.json")
        failed = any(r["status"] == "failed" for r in by_key.values())
        assert proc.returncode == (1 if failed else 0), proc.stdout[-3000:] + proc.stderr[-3000:]
        assert data["shard"] == [i, 2] and data["inputs_total"] == len(GOOD) + len(BAD)
        seen += list(by_key)
        assert "ETA" in proc.stdout and f"[{len(by_key)}/{len(by_key)}]" in proc.stdout
        # the log is the batch's own lines: no exporter INFO lines, no FBX 'Progress: 100%\r' left
        # unterminated before the next line, no temporary names
        ours = ("partfield batch:", "model:", "[", "    reason:", "done:", "note:")
        strays = [ln for ln in proc.stdout.splitlines() if ln and not ln.startswith(ours)]
        assert not strays and "\r" not in proc.stdout and ".tmp-" not in proc.stdout + proc.stderr, strays
    assert sorted(seen) == sorted(GOOD | set(BAD))


def test_good_inputs_ok_bad_inputs_reported(sharded_run):
    out, _, _ = sharded_run
    records = {}
    for i in range(2):
        records.update(_summary(out / f"summary_shard{i}-of-2.json")[1])
    for key in GOOD:
        r = records[key]
        assert r["status"] == "ok", r
        assert r["parts"] and all(set(v) == {str(k) for k in PARTS} for v in r["parts"].values())
        assert r["seconds"]["compute"] > 0
    for key, words in BAD.items():
        assert records[key]["status"] == "failed"
        assert words.lower() in records[key]["reason"].lower(), records[key]
    # nothing half-written and no output at all for failed inputs
    leftovers = [p.name for p in out.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
    assert not list(out.glob("broken*")) and not list(out.glob("empty*")) and not list(out.glob("more/cut*"))


def test_labels_match_model_runtime(sharded_run, library):
    out, _, _ = sharded_run
    _, _, meshes = library
    for key, (v, f) in meshes.items():
        doc = json.loads((out / f"{key}.labels.json").read_text())
        assert len(doc["objects"]) == 1 and doc["objects"][0]["polygons"] == len(f)
        for k in PARTS:
            got = np.load(out / f"{key}_k{k}.labels.npy")
            want = expected_labels(v, f, k)
            assert got.dtype == np.int32 and got.shape == (len(f),)
            np.testing.assert_array_equal(got, want, err_msg=f"{key} k={k}")
            assert doc["objects"][0]["labels"][str(k)] == want.tolist()
            assert doc["objects"][0]["parts"][str(k)] == len(np.unique(want))


def test_rerun_skips_finished_work(sharded_run):
    out, _, rerun = sharded_run
    assert rerun.returncode == 1, rerun.stdout[-3000:] + rerun.stderr[-3000:]  # the bad ones still fail
    data, by_key = _summary(out / "summary.json")
    assert data["counts"] == {"ok": 0, "failed": len(BAD), "skipped": len(GOOD)}
    assert {k for k, r in by_key.items() if r["status"] == "skipped"} == GOOD
    assert "model:" not in rerun.stdout  # nothing to compute: the model is never loaded


VERIFY_OUTPUTS = """
import bpy, addon_utils, numpy as np
out = sys.argv[1]
res = {}
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.import_scene.gltf(filepath=out + "/lamps/lamp_k5.glb")
res["glb_meshes"] = sorted(o.name for o in bpy.context.scene.objects if o.type == "MESH")
res["glb_faces"] = sum(len(o.data.polygons) for o in bpy.context.scene.objects if o.type == "MESH")
bpy.ops.wm.read_homefile(use_empty=True)
addon_utils.enable("io_scene_fbx", default_set=True)
bpy.ops.import_scene.fbx(filepath=out + "/table_obj_k5.fbx")
res["fbx_meshes"] = len([o for o in bpy.context.scene.objects if o.type == "MESH"])
bpy.ops.wm.open_mainfile(filepath=out + "/chair_k3.blend")
ob = bpy.data.objects["Chair"]
res["groups"] = [g.name for g in ob.vertex_groups]
res["has_result"] = "partfield_meta" in ob.keys() and len(bytes(ob["partfield_data"]["partfield_result"])) > 1000
print("RESULT " + json.dumps(res))
"""


def test_glb_fbx_have_one_node_per_part_and_blend_has_groups(sharded_run):
    out, _, _ = sharded_run
    res = run_bpy_script(VERIFY_OUTPUTS, out)
    lamp = np.load(out / "lamps" / "lamp_k5.labels.npy")
    assert len(res["glb_meshes"]) == len(np.unique(lamp)) >= 2
    assert res["glb_faces"] == len(lamp)
    assert res["fbx_meshes"] == len(np.unique(np.load(out / "table_obj_k5.labels.npy")))
    chair = np.load(out / "chair_k3.labels.npy")
    assert len(res["groups"]) == len(np.unique(chair))
    assert res["has_result"]  # the saved .blend can be re-cut in the sidebar


def test_force_redoes_and_modes(library, tmp_path):
    _, lib, meshes = library
    out = tmp_path / "out"
    args = [lib / "more" / "stool.off", "--output", out, "--parts", "4", "--mode", "face-attribute",
            "--export", "blend,labels", "--checkpoint", REPO / "model_runtime" / "weights" / "partfield_small.safetensors"]
    # an input that killed the process in 3 earlier attempts is not tried a 4th time ...
    out.mkdir()
    (out / "stool.running.json").write_text(json.dumps({"attempts": 3}))
    crashed = run_batch(*args)
    assert crashed.returncode == 1
    assert "died" in _summary(out / "summary.json")[1]["stool"]["reason"]
    assert "model:" not in crashed.stdout
    # ... unless forced; a finished input is skipped; --force redoes it
    for extra, status in (["--force"], "ok"), ([], "skipped"), (["--force"], "ok"):
        proc = run_batch(*args, *extra)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert _summary(out / "summary.json")[1]["stool"]["status"] == status
    assert not (out / "stool.running.json").exists()
    code = """
import bpy, numpy as np
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
ob = bpy.data.objects["stool"]
a = ob.data.attributes["partfield_part"]
vals = np.empty(len(a.data), np.int32); a.data.foreach_get("value", vals)
print("RESULT " + json.dumps(vals.tolist()))
"""
    stored = run_bpy_script(code, out / "stool_k4.blend")
    np.testing.assert_array_equal(stored, np.load(out / "stool_k4.labels.npy"))
    np.testing.assert_array_equal(stored, expected_labels(*meshes["more/stool"], 4))


def test_parts_auto_writes_each_objects_suggested_count(library, tmp_path):
    """--parts auto: the labels of each object's own suggested part count (the tree's natural
    cut), in files named _kauto, beside the numbered counts."""
    _, lib, meshes = library
    out = tmp_path / "out"
    proc = run_batch(lib / "more" / "stool.off", "--output", out, "--parts", "4,auto", "--export", "labels")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    v, f = meshes["more/stool"]
    expected_labels(v, f, 4)  # fills the cache of model_runtime's own result
    result = _EXPECTED[(np.asarray(v).tobytes(), np.asarray(f).tobytes())]
    k = result.suggested_parts
    assert k != 4  # (so the test tells 'auto' from the first number)
    got = np.load(out / "stool_kauto.labels.npy")
    np.testing.assert_array_equal(got, np.asarray(result.labels(k)))
    np.testing.assert_array_equal(np.load(out / "stool_k4.labels.npy"), np.asarray(result.labels(4)))
    doc = json.loads((out / "stool.labels.json").read_text())
    assert doc["parts_requested"] == [4, "auto"]
    assert doc["objects"][0]["parts"]["auto"] == len(np.unique(result.labels(k)))


def test_help_and_bad_arguments():
    proc = subprocess.run([PY, str(BATCH), "--", "--help"], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0 and "--shard" in proc.stdout and "--export" in proc.stdout
    proc = subprocess.run([PY, str(BATCH), "--", "x", "-o", "y", "--shard", "2/2"], capture_output=True,
                          text=True, env=_env(), timeout=60)
    assert proc.returncode == 2 and "shard" in proc.stderr
    proc = subprocess.run([PY, str(BATCH), "--", "x", "-o", "y", "--checkpoint", "/nonexistent.safetensors"],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 2 and "checkpoint" in proc.stderr


def _complete(path: Path) -> bool:
    """A finished file of each kind we write (a half-written one fails these checks)."""
    data = path.read_bytes()
    if path.name.endswith(".npy"):
        np.load(path)
        return True
    if path.suffix == ".json":
        json.loads(data)
        return True
    if path.suffix == ".glb":
        return data[:4] == b"glTF" and int.from_bytes(data[8:12], "little") == len(data)
    if path.suffix == ".blend":
        if data[:4] == b"\x28\xb5\x2f\xfd":  # zstd (Blender's default): seekable-format footer last
            return data[-4:] == b"\xb1\xea\x92\x8f"
        return data[:7] == b"BLENDER" and b"ENDB" in data[-32:]
    return True


def test_killed_run_resumes_without_half_written_files(library, tmp_path):
    _, lib, _ = library
    out = tmp_path / "out"
    cmd = [PY, str(BATCH), "--", lib, "--output", out, "--parts", "3,5", "--export", "blend,glb,labels",
           "--device", "cpu", "--threads", "1", "--points", str(POINTS)]
    env = _env()
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "blender_user")  # a SIGKILLed run cannot clean up its own
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=REPO)
    try:
        for line in proc.stdout:  # kill hard as soon as the first input is finished
            if re.match(r"\[\d+/\d+\] ok ", line):
                break
        proc.kill()
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    finished = {p.name[: -len(".done.json")] for p in out.rglob("*.done.json")}
    assert finished  # at least the first good input
    for p in out.rglob("*"):
        if p.is_file() and ".tmp-" not in p.name:
            assert _complete(p), p
    # a leftover of a killed writer next to an unfinished input is cleaned on the re-run
    stale = out / ".table_ply_k3.glb.tmp-999999.glb"
    stale.write_bytes(b"glTF half")
    rerun = run_batch(lib, "--output", out, "--parts", "3,5", "--export", "blend,glb,labels")
    assert rerun.returncode == 1
    data, by_key = _summary(out / "summary.json")
    assert {Path(k).name for k, r in by_key.items() if r["status"] == "skipped"} == finished
    assert {k for k, r in by_key.items() if r["status"] == "ok"} == GOOD - {k for k in GOOD if Path(k).name in finished}
    assert not stale.exists() and not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_runs_from_an_installed_extension(library, tmp_path):
    """The script as users get it: inside the installed extension, enabling the add-on it sits
    in (bl_ext.user_default.partfield_blender), not a checkout's copy."""
    import shutil

    _, lib, meshes = library
    user = tmp_path / "blender_user"
    ext = user / "extensions" / "user_default" / "partfield_blender"
    shutil.copytree(REPO / "partfield_blender", ext, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "blender_manifest.toml", ext)
    env = _env()  # model_runtime stays importable from PYTHONPATH (the extension's wheel in a real install)
    env["BLENDER_USER_RESOURCES"] = str(user)
    out = tmp_path / "out"
    proc = subprocess.run([PY, str(ext / "batch.py"), "--", str(lib / "more" / "stool.off"), "-o", str(out),
                           "--parts", "4", "--export", "labels", "--device", "cpu", "--threads", "1",
                           "--points", str(POINTS)], capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data, by_key = _summary(out / "summary.json")
    assert data["addon"] == "bl_ext.user_default.partfield_blender"
    np.testing.assert_array_equal(np.load(out / "stool_k4.labels.npy"), expected_labels(*meshes["more/stool"], 4))
