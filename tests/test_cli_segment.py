"""`python -m model_runtime segment`: real subprocess run on a COSEG mesh with a small real
checkpoint (random weights, small config), outputs for several k, progress bars, errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from model_runtime.cli.segment import parse_parts
from model_runtime.meshio import read_mesh
from test_part_tree import same_partition

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "model_runtime", "segment", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=600)


def test_parse_parts():
    assert parse_parts(["2..5"]) == [2, 3, 4, 5]
    assert parse_parts(["8"]) == [8]
    assert parse_parts(["4,8", "12", "3..4"]) == [3, 4, 8, 12]
    assert parse_parts(["2..10:2"]) == [2, 4, 6, 8, 10]
    for bad in (["0"], ["3-4"], ["auto"]):
        with pytest.raises(ValueError):
            parse_parts(bad)


def test_segment_off_file_several_levels(tmp_path, coseg_dir, checkpoint):
    src = coseg_dir / "chairs" / "shapes" / "15.off"
    out = tmp_path / "out"
    r = run_cli(src, "--parts", "2..4", "--out", out, "--checkpoint", checkpoint, "--device", "cpu",
                "--points", "6000", "--save-result")
    assert r.returncode == 0, r.stderr
    for stage in ("reading mesh", "loading model", "encoding", "features", "part tree"):
        assert stage in r.stderr and "100%" in r.stderr
    mesh = read_mesh(src)
    doc = json.loads((out / "15.labels.json").read_text())
    assert doc["polygons"] == mesh.num_polygons and doc["parts"] == [2, 3, 4]
    assert doc["model"]["name"] == "test-small"
    prev = None
    for k in (2, 3, 4):
        lab = np.load(out / f"15_k{k}.labels.npy")
        assert lab.dtype == np.int32 and lab.shape == (mesh.num_polygons,)
        assert set(lab.tolist()) == set(range(k)) and doc["labels"][str(k)] == lab.tolist()
        colored = read_mesh(out / f"15_k{k}.ply")
        assert colored.num_polygons == mesh.num_polygons
        if prev is not None:  # nested
            assert same_partition(prev * 100 + lab, lab)
        prev = lab
    from model_runtime.result import SegmentationResult

    res = SegmentationResult.load(out / "15.partfield.npz")
    np.testing.assert_array_equal(res.labels(4), prev)
    assert res.metadata["options"]["group_alike"] is True
    assert res.metadata["options"]["test_time_views"] == 4  # our own model's default
    # --touching-only turns the look-alike merges off; the choice is kept with the result
    r = run_cli(src, "--parts", "2", "--out", tmp_path / "touching", "--checkpoint", checkpoint, "--device", "cpu",
                "--points", "6000", "--save-result", "--no-mesh", "--touching-only", "--views", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    res = SegmentationResult.load(tmp_path / "touching" / "15.partfield.npz")
    assert res.metadata["options"]["group_alike"] is False
    assert res.metadata["options"]["test_time_views"] == 1


def test_segment_obj_with_quads(tmp_path, checkpoint):
    # a 6 x 6 grid of quads bent into an L: OBJ with n-gons, labels per quad
    lines = []
    n = 7
    for i in range(n):
        for j in range(n):
            x, z = (i, 0.0) if i < 4 else (3.0, i - 3.0)
            lines.append(f"v {x} {j} {z}")
    for i in range(n - 1):
        for j in range(n - 1):
            a = i * n + j + 1
            lines.append(f"f {a} {a + n} {a + n + 1} {a + 1}")
    src = tmp_path / "bent.obj"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    r = run_cli(src, "--parts", "3", "--out", out, "--checkpoint", checkpoint, "--points", "2000", "--quiet",
                "--no-mesh")
    assert r.returncode == 0, r.stderr
    lab = np.load(out / "bent_k3.labels.npy")
    assert lab.shape == (36,) and len(set(lab.tolist())) == 3
    assert r.stderr == ""


def test_errors_are_one_line_messages(tmp_path, checkpoint):
    bad = tmp_path / "one.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    r = run_cli(bad, "--out", tmp_path / "x", "--checkpoint", checkpoint, "--quiet")
    assert r.returncode == 1 and "error: the mesh has a single face" in r.stderr
    r = run_cli(tmp_path / "missing.glb", "--out", tmp_path / "x", "--checkpoint", checkpoint)
    assert r.returncode == 1 and "no such file" in r.stderr
    r = run_cli(bad, "--out", tmp_path / "x", "--parts", "0", "--checkpoint", checkpoint)
    assert r.returncode == 1 and "--parts" in r.stderr
