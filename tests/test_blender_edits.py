"""Local edits of the part tree in real `bpy` with the extension installed and the bundled
model, on a generated chair (seat, back, four legs): Split gives exactly the node's children,
Merge the union, Select Similar finds the four legs, the similarity heat map, edits survive
save/reload and undo (Object and Edit Mode), the writers and the batch write the edited parts,
and the slider rule holds. Each scenario runs in its own process
(tests/blender_scripts/edit_scenarios.py)."""
import pytest

from tests.scenario_runner import run_scenario_script

pytest.importorskip("bpy")


def run_scenario(name, tmp_path, timeout=900):
    return run_scenario_script("edit_scenarios.py", name, tmp_path, timeout=timeout)


def test_split_merge_select_similar_slider_writers_reload(tmp_path):
    run_scenario("edits", tmp_path)


def test_each_edit_is_one_undo_step_in_object_and_edit_mode(tmp_path):
    run_scenario("undo", tmp_path)


def test_similarity_heat_map_and_batch_writes_edited_parts(tmp_path):
    run_scenario("similarity_and_batch", tmp_path)


def test_edits_with_modifiers_act_on_the_evaluated_tree(tmp_path):
    run_scenario("modifiers", tmp_path)
