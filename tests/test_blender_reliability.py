"""Issue 17 through the real `bpy` module: a result stored twice survives save and reopen
(also through the batch), damaged or tampered stored results are reported without raising,
hanging or changing the scene, and removal deletes only what the add-on made. Each scenario
runs in its own process (tests/blender_scripts/ext_scenarios.py)."""
import pytest

pytest.importorskip("bpy")

from test_blender_extension import run_scenario, weights  # noqa: E402,F401  (fixture)


def test_compute_twice_save_reopen_slider_apply(weights, tmp_path):  # noqa: F811
    run_scenario("store_twice", weights, tmp_path)


def test_batch_output_of_a_segmented_blend_carries_the_whole_result(weights, tmp_path):  # noqa: F811
    run_scenario("batch_resegment", weights, tmp_path)


def test_markers_in_a_crafted_file_delete_nothing_of_the_users(weights, tmp_path):  # noqa: F811
    run_scenario("marker_trust", weights, tmp_path)


def test_damaged_stored_results_are_reported_and_change_nothing(weights, tmp_path):  # noqa: F811
    run_scenario("damaged_results", weights, tmp_path)


def test_result_bytes_live_in_a_data_block_old_files_load_duplicates_and_undo(weights, tmp_path):  # noqa: F811
    run_scenario("result_blocks", weights, tmp_path)
