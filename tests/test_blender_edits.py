"""Local edits of the part tree in real `bpy` with the extension installed and the bundled
model, on a generated chair (seat, back, four legs): Split gives exactly the node's children,
Merge the union, Select Similar finds the four legs, the similarity heat map, edits survive
save/reload and undo (Object and Edit Mode), the writers and the batch write the edited parts,
and the slider rule holds. Each scenario runs in its own process
(tests/blender_scripts/edit_scenarios.py)."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("bpy")

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "tests" / "blender_scripts" / "edit_scenarios.py"


def run_scenario(name, tmp_path, timeout=900):
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="pf_edit_", dir=tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    env.setdefault("OMP_NUM_THREADS", "2")
    cmd = [sys.executable, str(SCRIPT), name, "--workdir", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"SCENARIO OK {name}" in out, out[-6000:]
    return out


def test_split_merge_select_similar_slider_writers_reload(tmp_path):
    run_scenario("edits", tmp_path)


def test_each_edit_is_one_undo_step_in_object_and_edit_mode(tmp_path):
    run_scenario("undo", tmp_path)


def test_similarity_heat_map_and_batch_writes_edited_parts(tmp_path):
    run_scenario("similarity_and_batch", tmp_path)


def test_edits_with_modifiers_act_on_the_evaluated_tree(tmp_path):
    run_scenario("modifiers", tmp_path)
