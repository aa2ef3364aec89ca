"""The Blender extension with the real `bpy` module: compute, preview/slider, writers, undo,
save/reload, errors, model preferences. Each scenario runs in its own process
(tests/blender_scripts/ext_scenarios.py) with the add-on installed as a development extension
and a small real PartField network (random weights, seeded) saved by the fixture."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.scenario_runner import run_scenario_script

pytest.importorskip("bpy")

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "tests" / "blender_scripts" / "ext_scenarios.py"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    sys.path.insert(0, str(REPO_ROOT / "tests" / "blender_scripts"))
    d = tmp_path_factory.mktemp("weights")
    from model_runtime.checkpoint import save_compact
    from model_runtime.config import PartFieldConfig
    from model_runtime.network import PartFieldNet
    import torch

    out = []
    for seed, name in ((0, "test-small"), (1, "test-small-b")):
        torch.manual_seed(seed)
        cfg = PartFieldConfig.small()
        path = d / f"{name}.safetensors"
        save_compact(path, PartFieldNet(cfg).state_dict(), cfg, {"name": name})
        out.append(str(path))
    return out


def run_scenario(name, weights, tmp_path, timeout=600):
    return run_scenario_script("ext_scenarios.py", name, tmp_path,
                               args=("--weights", weights[0], "--weights2", weights[1]), timeout=timeout)


def test_compute_preview_writers_undo_reload(weights, tmp_path):
    run_scenario("writers", weights, tmp_path)


def test_table_several_objects_and_modifiers(weights, tmp_path):
    run_scenario("table_and_modifiers", weights, tmp_path)


def test_errors_are_reported_and_change_nothing(weights, tmp_path):
    run_scenario("errors", weights, tmp_path)


def test_modal_compute_polls_thread_and_cancels(weights, tmp_path):
    run_scenario("modal", weights, tmp_path)


def test_preference_model_choice_switches_model(weights, tmp_path):
    run_scenario("preferences", weights, tmp_path)


def test_slider_recolours_100k_polygons_under_100ms(weights, tmp_path):
    """Acceptance: a ~100k-polygon mesh recolours in under 100 ms per slider step (the
    benchmark script exits non-zero otherwise; figures in BENCHMARKS.md)."""
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="pf_bench_", dir=tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_recolor.py"), "--weights", weights[0],
           "--steps", "15"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "| whole step (update callback) |" in out, out[-4000:]


def test_slider_recolours_only_changed_corners_exactly_on_mixed_polygons(weights, tmp_path):
    run_scenario("recolor_mixed_polygons", weights, tmp_path)
