"""Issue 18 in real `bpy`: Separate Objects keeps what a rigger needs; Make Rig (rigid and
skinned, operator + undo + Clear, glTF round trip). One process per scenario
(tests/blender_scripts/rig_scenarios.py)."""
import pytest

from tests.scenario_runner import run_scenario_script

pytest.importorskip("bpy")


def run_scenario(name, tmp_path, timeout=600):
    return run_scenario_script("rig_scenarios.py", name, tmp_path, timeout=timeout)


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
