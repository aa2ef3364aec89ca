"""Pure planning logic of the batch script (no bpy): parsing, discovery, sharding,
done/skip logic, atomic writes, summary, progress."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

PLAN_FILE = Path(__file__).resolve().parent.parent / "partfield_blender" / "batch_plan.py"


def _load_plan():
    # Loaded by path, exactly like batch.py does: the package __init__ imports bpy.
    spec = importlib.util.spec_from_file_location("pf_batch_plan_under_test", PLAN_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bp = _load_plan()


def test_parse_parts():
    assert bp.parse_parts("8") == (8,)
    assert bp.parse_parts("12,4,8,8") == (4, 8, 12)
    assert bp.parse_parts("2..6") == (2, 3, 4, 5, 6)
    assert bp.parse_parts("2..10:4, 3") == (2, 3, 6, 10)
    assert bp.parse_parts("auto") == (bp.AUTO,) and bp.parse_parts("auto,8,4") == (4, 8, bp.AUTO)
    for bad in ("", "0", "x", "5..2", "2..4:0", "-3"):
        with pytest.raises(ValueError):
            bp.parse_parts(bad)


def test_parse_shard_and_exports():
    assert bp.parse_shard(None) == (0, 1)
    assert bp.parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "1/0", "a/b", "1"):
        with pytest.raises(ValueError):
            bp.parse_shard(bad)
    assert bp.parse_exports(["labels,glb", "blend"]) == ("blend", "glb", "labels")
    assert bp.parse_exports([".npy"]) == ("labels",)
    with pytest.raises(ValueError):
        bp.parse_exports(["usd"])
    with pytest.raises(ValueError):
        bp.parse_exports([])


def test_assignments_and_coercion():
    assert bp.parse_assignments(["num-points=2000", "x = y"]) == {"num_points": "2000", "x": "y"}
    with pytest.raises(ValueError):
        bp.parse_assignments(["novalue"])
    assert bp.coerce_like("2000", 5) == 2000
    assert bp.coerce_like("0.5", 1.0) == 0.5
    assert bp.coerce_like("no", True) is False
    assert bp.coerce_like("7", None) == 7
    with pytest.raises(ValueError):
        bp.coerce_like("maybe", False)


def _touch(path: Path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_discover_folders_files_globs(tmp_path):
    lib = tmp_path / "lib"
    _touch(lib / "chair.obj")
    _touch(lib / "chair.ply")  # same stem: keys must be disambiguated
    _touch(lib / "sub" / "table.glb")
    _touch(lib / "notes.txt")  # not a mesh: ignored inside folders
    _touch(lib / ".hidden" / "x.obj")  # hidden: ignored
    _touch(lib / "out" / "old.blend")  # the output folder: excluded
    lone = _touch(tmp_path / "lone.STL")
    odd = _touch(tmp_path / "readme.md")
    _touch(tmp_path / "g" / "a.off")
    _touch(tmp_path / "g" / "b.off")

    items = bp.discover_inputs(
        [str(lib), str(lone), str(odd), str(tmp_path / "g" / "*.off"), str(tmp_path / "missing.obj"),
         str(lib / "chair.obj")],  # duplicate of a folder entry
        exclude=[lib / "out"],
    )
    keys = [it.key for it in items]
    assert keys == sorted(keys, key=str)  # deterministic order
    by_key = {it.key: it for it in items}
    assert set(by_key) == {"a", "b", "chair_obj", "chair_ply", "lone", "missing", "readme", "sub/table"}
    assert by_key["readme"].error and "unsupported" in by_key["readme"].error
    assert by_key["missing"].error == "file not found"
    assert by_key["lone"].error is None  # extension check is case-insensitive
    assert all(it.error is None for k, it in by_key.items() if k not in ("readme", "missing"))


def test_discover_same_names_from_two_roots(tmp_path):
    _touch(tmp_path / "a" / "m.obj")
    _touch(tmp_path / "b" / "m.obj")
    items = bp.discover_inputs([str(tmp_path / "a"), str(tmp_path / "b")])
    assert sorted(it.key for it in items) == ["m_obj", "m_obj_2"]


def test_discovery_does_not_depend_on_mount_point(tmp_path):
    for root in ("x", "y"):
        for name in ("b.obj", "a.ply", "c/d.off"):
            _touch(tmp_path / root / "lib" / name)
    a = [it.key for it in bp.discover_inputs([str(tmp_path / "x" / "lib")])]
    b = [it.key for it in bp.discover_inputs([str(tmp_path / "y" / "lib")])]
    assert a == b == ["a", "b", "c/d"]


def test_shards_cover_inputs_exactly_once():
    items = list(range(23))
    for n in (1, 2, 3, 7, 30):
        seen = [x for i in range(n) for x in bp.take_shard(items, i, n)]
        assert sorted(seen) == items
    with pytest.raises(ValueError):
        bp.take_shard(items, 2, 2)


def test_match_objects():
    names = ["Chair", "Chair.001", "Lamp", "cube"]
    assert bp.match_objects(names, None) == names
    assert bp.match_objects(names, "*") == names
    assert bp.match_objects(names, "Chair*") == ["Chair", "Chair.001"]
    assert bp.match_objects(names, "Lamp, cu?e") == ["Lamp", "cube"]
    assert bp.match_objects(names, "chair") == []  # case-sensitive like Blender


def test_output_paths_and_done_logic(tmp_path):
    paths = bp.output_paths(tmp_path, "sub/chair", (4, 8), ("blend", "glb", "labels"))
    assert paths["glb:8"] == tmp_path / "sub" / "chair_k8.glb"
    assert paths["npy:4"] == tmp_path / "sub" / "chair_k4.labels.npy"
    assert paths["json"] == tmp_path / "sub" / "chair.labels.json"
    assert "fbx:4" not in paths
    marker = bp.done_marker_path(tmp_path, "sub/chair")
    src = _touch(tmp_path / "chair.obj")
    sig = bp.input_signature(src)
    fp = bp.settings_fingerprint({"parts": [4, 8]})
    assert fp == bp.settings_fingerprint({"parts": [4, 8]}) != bp.settings_fingerprint({"parts": [4]})

    assert bp.check_finished(marker, fp, sig, paths.values()) == (False, "no done-marker")
    for p in paths.values():  # stand-ins: this checks the done logic, not the files' contents
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("data")
    rel = [str(p.relative_to(marker.parent)) for p in paths.values()]
    bp.atomic_write_json(marker, {"fingerprint": fp, "input_signature": sig, "outputs": rel})
    assert bp.check_finished(marker, fp, sig, paths.values()) == (True, "")
    assert bp.check_finished(marker, "other", sig, paths.values())[1] == "settings changed"
    assert bp.check_finished(marker, fp, {"size": 0, "mtime_ns": 1}, paths.values())[1] == "input file changed"
    paths["glb:4"].unlink()
    ok, why = bp.check_finished(marker, fp, sig, paths.values())
    assert not ok and "chair_k4.glb" in why
    marker.write_text("{not json")
    assert bp.check_finished(marker, fp, sig, [])[1] == "unreadable done-marker"


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "deep" / "x.glb"
    with pytest.raises(RuntimeError):
        with bp.atomic_path(final) as tmp:
            assert tmp.suffix == ".glb" and tmp.name.startswith(".")
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(final.parent.iterdir()) == []
    with pytest.raises(OSError):  # a writer that wrote nothing is an error, not a silent success
        with bp.atomic_path(final):
            pass
    assert not final.exists()
    bp.atomic_save_npy(tmp_path / "a.npy", np.arange(5, dtype=np.int32))
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2, 3, 4]
    # A killed run's leftovers (another pid) are cleaned before redoing the input.
    stale = tmp_path / ".a.npy.tmp-99999.npy"
    stale.write_bytes(b"x")
    assert bp.remove_stale_temps([tmp_path / "a.npy"]) == 1
    assert not stale.exists() and (tmp_path / "a.npy").exists()


def test_summary_and_progress(tmp_path):
    s = bp.Summary(tmp_path / "summary.json", run={"shard": [0, 1]})
    s.add({"input": "a", "status": "ok", "reason": "", "seconds": {"total": 1.0}})
    s.add({"input": "b", "status": "failed", "reason": "boom", "seconds": {"total": 0.1}})
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["counts"] == {"ok": 1, "failed": 1, "skipped": 0}
    assert [r["input"] for r in data["inputs"]] == ["a", "b"] and data["shard"] == [0, 1]

    t = [100.0]
    p = bp.Progress(5, clock=lambda: t[0])
    assert p.eta() is None
    p.update("skipped", 0.0)
    assert p.eta() is None  # skips say nothing about the speed
    t[0] += 4
    p.update("ok", 4.0)
    assert p.eta() == pytest.approx(12.0)
    line = p.line("ok", "chair.obj", 4.0)
    assert "[2/5]" in line and "ok 1" in line and "skipped 1" in line and "ETA 0:12" in line
    assert "reason: bad" in p.line("failed", "x", 1.0, "bad")
    assert bp.format_duration(3725) == "1:02:05"


def test_attempt_markers(tmp_path):
    marker = bp.running_marker_path(tmp_path, "sub/chair")
    assert marker == tmp_path / "sub" / "chair.running.json"
    assert bp.read_attempts(marker) == 0
    assert bp.begin_attempt(marker, {"pid": 1}) == 1
    assert bp.begin_attempt(marker, {"pid": 2}) == 2  # the first attempt died without cleaning up
    assert json.loads(marker.read_text()) == {"pid": 2, "attempts": 2}
    bp.end_attempt(marker)
    bp.end_attempt(marker)  # idempotent
    assert bp.read_attempts(marker) == 0
    marker.write_text("garbage")
    assert bp.read_attempts(marker) == 0


def test_discover_skips_earlier_outputs(tmp_path):
    lib = tmp_path / "lib"
    _touch(lib / "chair.obj")
    _touch(lib / "run1" / bp.OUTPUT_MARKER)  # a marked batch output folder
    _touch(lib / "run1" / "chair_k4.blend")
    _touch(lib / "run1" / "deep" / "x.obj")
    _touch(lib / "old" / "summary.json", json.dumps({"tool": bp.TOOL_NAME, "inputs": []}, indent=1))
    _touch(lib / "old" / "chair_k4.glb")
    _touch(lib / "notes" / "summary.json", '{"tool": "something else"}')  # not ours: searched
    _touch(lib / "notes" / "plan.obj")
    _touch(lib / "cli" / "lamp.labels.json")  # the segment CLI's outputs
    _touch(lib / "cli" / "lamp_k8.ply")
    _touch(lib / "cli" / "lamp.ply")  # the input it came from stays an input
    _touch(lib / "cli" / "pipe_k2.ply")  # no labels.json beside it: a user's mesh
    skipped = []
    items = bp.discover_inputs([lib], skipped=skipped)
    assert [it.key for it in items] == ["chair", "cli/lamp", "cli/pipe_k2", "notes/plan"]
    assert sorted(Path(p).name for p in skipped) == ["chair_k4.blend", "chair_k4.glb", "lamp_k8.ply"]  # run1 pruned
    # outputs written beside the inputs: the folder itself is an output folder, its inputs stay
    _touch(lib / bp.OUTPUT_MARKER)
    _touch(lib / "chair_k8.blend")
    assert [it.key for it in bp.discover_inputs([lib], exclude=[lib])][:1] == ["chair"]
    assert [it.key for it in bp.discover_inputs([str(lib / "*.*")])] == ["chair"]
    bp.mark_output_folder(tmp_path / "made")  # no such folder: ignored, not raised
    (tmp_path / "made").mkdir()
    bp.mark_output_folder(tmp_path / "made")
    assert (tmp_path / "made" / bp.OUTPUT_MARKER).is_file()
