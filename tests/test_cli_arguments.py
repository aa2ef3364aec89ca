"""`partfield segment` checks every argument before loading anything: each refusal gives a
one-line message and exit status 1 (2 for argparse's own), prints its first line before
torch is imported, and leaves nothing computed or written. Then the cases that used to go
wrong and now work: several inputs, folders, STL/glTF, part counts above the face count,
the batch syntax, names that clash, and every example of the --help."""
import base64
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from model_runtime.cli.segment import EXAMPLES, output_names

REPO = Path(__file__).resolve().parent.parent
STAGES = ("reading mesh", "loading model", "encoding")


def grid(rows, cols):
    """A rows x cols grid of quads bent into an L: (vertices (V,3), quads (F,4))."""
    i, j = np.meshgrid(np.arange(rows + 1), np.arange(cols + 1), indexing="ij")
    x = np.minimum(i, rows // 2).astype(float)
    z = np.maximum(i - rows // 2, 0).astype(float)
    v = np.stack([x, j.astype(float), z], -1).reshape(-1, 3)
    a = (i[:-1, :-1] * (cols + 1) + j[:-1, :-1]).ravel()
    return v, np.stack([a, a + cols + 1, a + cols + 2, a + 1], 1)


def write_obj(path, rows=6, cols=6):
    v, f = grid(rows, cols)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"v {x} {y} {z}\n" for x, y, z in v) + "".join(
        "f " + " ".join(str(k + 1) for k in q) + "\n" for q in f))
    return path


def write_stl(path, rows=5, cols=5):
    v, f = grid(rows, cols)
    tris = v[np.concatenate([f[:, [0, 1, 2]], f[:, [0, 2, 3]]])]
    path.write_text("solid g\n" + "".join(
        "facet normal 0 0 0\nouter loop\n" + "".join(f"vertex {x} {y} {z}\n" for x, y, z in t)
        + "endloop\nendfacet\n" for t in tris) + "endsolid g\n")
    return path


def write_gltf(path, rows=4, cols=5):
    v, f = grid(rows, cols)
    idx = np.concatenate([f[:, [0, 1, 2]], f[:, [0, 2, 3]]]).astype("<u4").tobytes()
    pos = v.astype("<f4").tobytes()
    uri = "data:application/octet-stream;base64," + base64.b64encode(pos + idx).decode()
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": len(v), "type": "VEC3"},
                         {"bufferView": 1, "componentType": 5125, "count": len(idx) // 4, "type": "SCALAR"}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(pos)},
                           {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx)}],
           "buffers": [{"byteLength": len(pos) + len(idx), "uri": uri}]}
    path.write_text(json.dumps(doc))
    return path


def run_cli(*args, cwd=REPO, prog=("-m", "model_runtime")):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *prog, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


def refused(r, message, out=None):
    """Exit 1, the message on stderr as one 'error:' line, nothing loaded or written."""
    assert r.returncode == 1, (r.stdout, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not any(stage in r.stderr for stage in STAGES), r.stderr
    assert r.stdout.startswith("partfield segment: "), r.stdout
    if out is not None:
        assert not Path(out).exists()


def test_refusals_before_anything_is_loaded(tmp_path, checkpoint):
    mesh = write_obj(tmp_path / "m.obj")
    out = tmp_path / "out"
    common = ["--checkpoint", checkpoint, "--device", "cpu"]
    afile = tmp_path / "afile"
    afile.write_text("keep")
    refused(run_cli("segment", mesh, "--out", afile, *common), f"--out {afile}: is a file")
    assert afile.read_text() == "keep"
    refused(run_cli("segment", mesh, "--out", afile / "sub", *common), "is a file, so the folder cannot be created")
    refused(run_cli("segment", mesh, "--parts", "4", "8", "--out", out, *common),
            "8: no such file; several part counts go in one --parts value", out)
    refused(run_cli("segment", mesh, "--parts", "2..x", "--out", out, *common), "--parts: cannot read '2..x'", out)
    refused(run_cli("segment", mesh, "--parts", "9..3", "--out", out, *common), "goes down", out)
    refused(run_cli("segment", tmp_path / "nope.obj", "--out", out, *common), "nope.obj: no such file or folder", out)
    for suffix in (".blend", ".fbx"):
        (tmp_path / f"scene{suffix}").write_bytes(b"x")
        refused(run_cli("segment", tmp_path / f"scene{suffix}", "--out", out, *common),
                f"scene{suffix}: {suffix[1:].upper()} files need Blender; use the Blender batch script", out)
    (tmp_path / "notes.txt").write_text("x")
    refused(run_cli("segment", tmp_path / "notes.txt", "--out", out, *common), "unsupported mesh format '.txt'", out)
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(run_cli("segment", empty, "--out", out, *common), "a folder with no mesh files (GLB, GLTF, OBJ, OFF", out)
    blends = tmp_path / "blends"
    blends.mkdir()
    (blends / "a.blend").write_bytes(b"x")
    refused(run_cli("segment", blends, "--out", out, *common), "its 1 .blend/.fbx file(s) need Blender", out)
    refused(run_cli("segment", mesh, "--out", out, "--checkpoint", tmp_path / "w.safetensors"),
            "--checkpoint", out)
    refused(run_cli("segment", mesh, "--out", out, *common, "--device", "gpu"), "--device gpu: unknown device", out)
    refused(run_cli("segment", mesh, "--out", out, *common, "--precision", "fp16"),
            "--device cpu --precision fp16: fp16 is not supported on the CPU", out)
    # a bad mesh among good ones: refused while reading, before the model is loaded
    bad = tmp_path / "bad.off"
    bad.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\nx y z\n3 0 1 2\n")
    r = run_cli("segment", mesh, bad, "--out", out, *common, "--quiet")
    assert r.returncode == 1 and "error: bad.off: cannot parse OFF file" in r.stderr and not out.exists()
    # argparse's own checks: exit 2
    r = run_cli("segment", mesh, "--out", out, "--points", "0")
    assert r.returncode == 2 and "--points: 0 must be >= 1" in r.stderr and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU, so --device cuda is valid")
def test_cuda_without_gpu_is_refused_first_and_the_first_line_comes_before_torch(tmp_path, checkpoint):
    mesh = write_obj(tmp_path / "m.obj")
    out = tmp_path / "out"
    refused(run_cli("segment", mesh, "--out", out, "--checkpoint", checkpoint, "--device", "cuda"),
            "--device cuda --precision auto: CUDA was requested but no CUDA GPU is available", out)
    # The first line is written before torch (or any mesh) is imported.
    probe = textwrap.dedent("""
        import sys
        class Probe:
            def __init__(self, inner):
                self.inner, self.seen = inner, False
            def write(self, text):
                if not self.seen and text.strip():
                    self.seen = True
                    sys.stderr.write(f"FIRST-LINE torch={'torch' in sys.modules} numpy={'numpy' in sys.modules}\\n")
                return self.inner.write(text)
            def flush(self):
                self.inner.flush()
        sys.stdout = Probe(sys.stdout)
        from model_runtime.cli import main
        raise SystemExit(main(sys.argv[1:]))
    """)
    r = run_cli("segment", mesh, "--out", out, "--device", "cuda", prog=("-c", probe))
    assert r.returncode == 1 and "FIRST-LINE torch=False numpy=False" in r.stderr, r.stderr


def test_several_inputs_folders_formats_clamping_and_clashing_names(tmp_path, checkpoint):
    src = tmp_path / "src"
    write_obj(src / "a" / "chair.obj", 12, 13)  # 156 faces
    write_obj(src / "b" / "chair.obj", 6, 6)  # same file name, other folder
    write_stl(src / "b" / "table.stl")
    write_gltf(src / "lamp.gltf")
    write_obj(src / ".hidden" / "skip.obj")
    write_obj(src / "old_k4.ply".replace(".ply", ".obj"))  # an OBJ named like an output: still a mesh
    (src / "earlier_k4.ply").write_text("ply\n")  # an earlier run's output: left out
    out = src / "out"  # inside the input folder: left out when the folder is searched
    write_obj(out / "inside.obj")
    extra = write_obj(tmp_path / "extra.obj", 3, 4)  # after the options: still an input
    r = run_cli("segment", src, "--parts", "2..10:2", "--parts", "1000", extra, "--out", out,
                "--checkpoint", checkpoint, "--device", "cpu", "--points", "2000", "--quiet", "--no-mesh")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("partfield segment: 2 input(s), parts 2..10:2,1000 -> ")
    written = {p.name for p in out.iterdir()}
    names = {"a-chair", "b-chair", "table", "lamp", "old_k4", "extra"}
    assert {n[:-len(".labels.json")] for n in written if n.endswith(".labels.json")} == names
    assert "note: " in r.stderr and "is written as a-chair (another input has the same file name)" in r.stderr
    docs = {n: json.loads((out / f"{n}.labels.json").read_text()) for n in names}
    chair = docs["a-chair"]
    assert chair["polygons"] == 156 and chair["parts"] == [2, 4, 6, 8, 10, 156]
    assert "--parts 1000: the mesh has only 156 faces, so 156 parts (one per face) are written instead" in r.stderr
    assert "a-chair_k156.labels.npy" in written and not any("_k1000" in n for n in written)
    assert len(set(np.load(out / "a-chair_k156.labels.npy").tolist())) == 156
    assert docs["b-chair"]["polygons"] == 36 and docs["b-chair"]["parts"] == [2, 4, 6, 8, 10, 36]
    assert docs["table"]["polygons"] == 50 and docs["lamp"]["polygons"] == 40
    for n, doc in docs.items():
        for k in doc["parts"]:
            labels = np.load(out / f"{n}_k{k}.labels.npy")
            assert labels.shape == (doc["polygons"],) and len(set(labels.tolist())) == k
    assert "a-chair: 156 polygons -> parts 2,4,6,8,10,156 written to" in r.stdout


def test_auto_part_count(tmp_path, checkpoint):
    mesh = write_obj(tmp_path / "m.obj", 8, 8)
    out = tmp_path / "out"
    r = run_cli("segment", mesh, "--parts", "auto,2", "--out", out, "--checkpoint", checkpoint, "--device", "cpu",
                "--points", "2000", "--quiet", "--save-result")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "m.labels.json").read_text())
    from model_runtime.part_tree import natural_cut
    from model_runtime.result import SegmentationResult

    res = SegmentationResult.load(out / "m.partfield.npz")
    k = getattr(res, "suggested_parts", None) or natural_cut(res.tree.costs, res.num_polygons)
    assert doc["suggested_parts"] == k and doc["parts"] == sorted({2, k})
    assert f"--parts auto: the part tree suggests {k} parts" in r.stderr
    np.testing.assert_array_equal(np.load(out / f"m_k{k}.labels.npy"), res.labels(k))


def test_output_names_never_clash():
    names = output_names([Path("/x/a/chair.obj"), Path("/x/b/chair.obj"), Path("/x/a/chair.ply"),
                          Path("/y/a/chair.obj"), Path("/x/table.obj")])
    assert len({n.lower() for n in names}) == 5
    assert names[4] == "table" and names[1] == "b-chair"


def help_examples(command):
    r = run_cli(command, "--help")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("examples:", 1)[1].splitlines() if "examples:" in r.stdout else []
    return [line.strip() for line in lines if line.strip().startswith("partfield ")]


def test_every_segment_help_example_runs(tmp_path, checkpoint):
    examples = help_examples("segment")
    assert examples == EXAMPLES and len(examples) >= 4
    write_obj(tmp_path / "chair.obj", 8, 6)
    write_stl(tmp_path / "table.stl")
    write_obj(tmp_path / "meshes" / "one.obj", 5, 5)
    write_gltf(tmp_path / "meshes" / "two.gltf")
    for example in examples:
        argv = shlex.split(example)[1:]  # `partfield` is `python -m model_runtime`
        r = run_cli(*argv, "--checkpoint", checkpoint, "--points", "2000", "--quiet", cwd=tmp_path)
        assert r.returncode == 0, (example, r.stderr)
        assert "written to out" in r.stdout, (example, r.stdout)


@pytest.mark.parametrize("command", ["info", "evaluate"])
def test_other_help_examples_run(tmp_path, command):
    """The examples in `info` and `evaluate` --help run as written (evaluate on a small share:
    --limit and --per-category appended)."""
    from tests.conftest import COSEG_DIR, missing_data

    examples = help_examples(command)
    assert examples, f"{command} --help shows no examples"
    needs_coseg = []
    for example in examples:
        argv = shlex.split(example)[1:]
        if "--coseg-dir" in argv:  # the example's folder is where this machine keeps the subset
            if not (COSEG_DIR / "chairs").is_dir():
                needs_coseg.append(example)
                continue
            argv[argv.index("--coseg-dir") + 1] = str(COSEG_DIR)
        if command == "evaluate":
            argv += ["--limit", "1", "--per-category", "1", "--points", "2000", "--methods", "model,one_part",
                     "--quiet"]
        r = run_cli(*argv, cwd=tmp_path)
        assert r.returncode == 0, (example, r.stdout, r.stderr)
        if command == "evaluate" and "--json" in argv:
            assert (tmp_path / argv[argv.index("--json") + 1]).is_file()
    if needs_coseg:
        missing_data(f"COSEG subset not found at {COSEG_DIR}: not run: {needs_coseg}")
