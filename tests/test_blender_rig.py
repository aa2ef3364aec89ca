"""Issue 18 in real `bpy`: Separate Objects keeps what a rigger needs; Make Rig (rigid and
skinned, operator + undo + Clear, glTF round trip). One process per scenario
(tests/blender_scripts/rig_scenarios.py)."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("bpy")

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "tests" / "blender_scripts" / "rig_scenarios.py"


def run_scenario(name, tmp_path, timeout=600):
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="pf_rig_", dir=tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run([sys.executable, str(SCRIPT), name, "--workdir", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"SCENARIO OK {name}" in out, out[-6000:]
    return out


def test_separated_parts_keep_modifiers_groups_properties_and_nothing_of_ours(tmp_path):
    run_scenario("separate_keeps", tmp_path)


def test_rigid_rig_of_three_boxes(tmp_path):
    run_scenario("rig_rigid", tmp_path)


def test_skinned_rig_of_three_boxes(tmp_path):
    run_scenario("rig_skinned", tmp_path)


def test_make_rig_operator_undo_replace_root_and_clear(tmp_path):
    run_scenario("rig_operator", tmp_path)


def test_gltf_export_reimports_with_the_skin(tmp_path):
    run_scenario("gltf", tmp_path)


def test_batch_export_glb_with_rig(tmp_path):
    run_scenario("batch_glb", tmp_path)


def test_separated_parts_of_a_big_mesh_keep_exact_group_weights(tmp_path):
    run_scenario("separate_big_groups", tmp_path)
