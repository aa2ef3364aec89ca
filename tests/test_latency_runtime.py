"""Issue 16, the bpy-free parts: one monotonic weighted progress bar for a job, the suggested
part count, cancellation inside encoding, a model load that skips random init (and never
imports torch._dynamo), and the modules the UI reads never importing torch/scipy/sklearn."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_runtime.progress import LOADING, JobProgress, stage_costs

REPO = Path(__file__).resolve().parent.parent
STAGES = ("checking mesh", "sampling", "encoding", "features", "connectivity", "part tree")


def _fresh(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_job_bar_spans_all_objects_and_never_goes_back():
    bar = JobProgress([10_000, 500_000], model_loaded=False)
    seen = [bar.update(0, LOADING, 0.0), bar.update(0, LOADING, 1.0)]
    for item in (0, 1):
        for stage in STAGES:
            for f in (0.0, 0.5, 1.0):
                seen.append(bar.update(item, stage, f))
            seen.append(bar.update(item, "features", 0.0))  # a late or restarted report
        seen.append(bar.finish_item(item))
    assert all(b >= a for a, b in zip(seen, seen[1:]))
    assert seen[-1] == pytest.approx(1.0)
    # weighted by expected cost: the 500k mesh is most of the bar, its tree most of that
    after_first = bar.position(1, "checking mesh", 0.0)
    assert after_first < 0.2
    tree = stage_costs(500_000)["part tree"]
    assert tree > 0.5 * sum(stage_costs(500_000).values())


def test_a_warm_model_load_is_a_small_part_of_the_bar():
    cold = JobProgress([10_000], model_loaded=False).position(0, "checking mesh", 0.0)
    warm = JobProgress([10_000], model_loaded=True).position(0, "checking mesh", 0.0)
    assert warm < 0.1 < cold


def _tree_and_costs():
    from model_runtime.connectivity import build_connectivity
    from model_runtime.mesh import MeshArrays
    from model_runtime.part_tree import PartTree, natural_cut, ward_merges
    from test_connectivity import grid

    v, q = grid(16, 10)
    mesh = MeshArrays.from_triangles(v, q)
    c = mesh.polygon_centers()
    feats = np.c_[np.floor(c[:, 0] / 4), np.floor(c[:, 1] / 5), 0.01 * c[:, 0]].astype(np.float64)
    con = build_connectivity(mesh)
    _, costs = ward_merges(feats, con)
    tree = PartTree.build(feats, con, normalize=False, free_space=feats)
    return tree, natural_cut(costs, mesh.num_polygons), feats


def test_suggested_parts_is_the_graph_trees_natural_cut_and_survives_save(tmp_path):
    from model_runtime.normalization import Normalization
    from model_runtime.pipeline import suggested_parts
    from model_runtime.result import SegmentationResult

    tree, natural, feats = _tree_and_costs()
    assert tree.natural_parts == natural and 3 <= natural <= 20
    meta = {"suggested_parts": suggested_parts(tree)}
    res = SegmentationResult(feats.astype(np.float32), tree, Normalization(np.zeros(3), 1.0), meta)
    assert res.suggested_parts == natural
    back = SegmentationResult.load(res.save(tmp_path / "r.npz"))
    assert back.suggested_parts == natural
    # a result saved before the field existed: found from its stored merge costs (numpy only)
    old = SegmentationResult(feats.astype(np.float32), tree, Normalization(np.zeros(3), 1.0), {})
    from model_runtime.part_tree import natural_cut

    assert old.suggested_parts == natural_cut(tree.costs, tree.num_leaves)
    assert 1 <= old.suggested_parts <= tree.num_leaves


def test_encoding_polls_cancel_between_blocks():
    import torch

    from model_runtime.config import PartFieldConfig
    from model_runtime.errors import Cancelled
    from model_runtime.field_model import FieldModel
    from model_runtime.network import PartFieldNet

    torch.manual_seed(0)
    cfg = PartFieldConfig.small()
    model = FieldModel(PartFieldNet(cfg), torch.device("cpu"), torch.float32, "test")
    pts = np.random.default_rng(0).uniform(-0.9, 0.9, (cfg.num_points, 3)).astype(np.float32)
    nrm = np.tile(np.float32([0, 0, 1]), (len(pts), 1))
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(Cancelled):
        model.encode(pts, nrm, cancel=cancel)
    assert len(calls) == 3  # stopped inside the network, at its third block
    planes = model.encode(pts, nrm, cancel=lambda: False)  # hooks removed, still encodes
    assert planes.planes.shape[2] == cfg.feature_dim
    assert not any(m._forward_pre_hooks for m in model.network.modules())


def test_model_load_skips_random_init_and_dynamo():
    out = _fresh(
        "import sys\n"
        "from model_runtime.field_model import FieldModel\n"
        "m = FieldModel.load(None, 'cpu')\n"
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'clean')\n")
    assert out.strip().endswith("clean")


def test_modules_the_ui_reads_import_no_torch_scipy_sklearn():
    out = _fresh(
        "import sys\n"
        "import model_runtime.result, model_runtime.part_tree, model_runtime.progress, model_runtime.model_files\n"
        "assert model_runtime.model_files.bundled_model_available()\n"
        "print([m for m in ('torch', 'scipy', 'sklearn') if m in sys.modules])\n")
    assert out.strip().endswith("[]")


def test_decoding_polls_cancel_between_chunks():
    import torch

    from model_runtime.config import PartFieldConfig
    from model_runtime.errors import Cancelled
    from model_runtime.field_model import FieldModel
    from model_runtime.network import PartFieldNet

    torch.manual_seed(0)
    cfg = PartFieldConfig.small()
    model = FieldModel(PartFieldNet(cfg), torch.device("cpu"), torch.float32, "test")
    planes = model.encode(np.random.default_rng(0).uniform(-0.9, 0.9, (cfg.num_points, 3)).astype(np.float32),
                          np.tile(np.float32([0, 0, 1]), (cfg.num_points, 1)))
    q = np.random.default_rng(1).uniform(-1, 1, (300_000, 3)).astype(np.float32)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 2

    with pytest.raises(Cancelled):
        model.decode(planes, q, cancel=cancel)
    assert len(calls) == 2  # several chunks: stopped before the second
    assert model.decode(planes, q[:10], cancel=lambda: False).shape == (10, cfg.feature_dim)


def test_evaluation_scores_the_count_the_runtime_suggests():
    """Look-alike blocks: the graph tree's natural cut (8 blocks) is what the runtime suggests;
    the final tree's costs (look-alike merges above it cost almost nothing) would say 4.
    The evaluation's "at the suggested part count" must score the runtime's 8."""
    from model_runtime.connectivity import build_connectivity
    from model_runtime.mesh import MeshArrays
    from model_runtime.part_tree import PartTree, natural_cut
    from model_runtime.pipeline import suggested_parts
    from model_runtime.training import evaluation as ev
    from test_connectivity import grid

    v, q = grid(16, 10)
    mesh = MeshArrays.from_triangles(v, q)
    c = mesh.polygon_centers()
    bx, by = np.floor(c[:, 0] / 4), np.floor(c[:, 1] / 5)
    feats = np.c_[bx % 2, by % 2, 0.01 * c[:, 0]].astype(np.float64)  # blocks alike in a checkerboard
    con = build_connectivity(mesh)
    tree = PartTree.build(feats, con, normalize=False, free_space=feats)
    assert suggested_parts(tree) == tree.natural_parts == 8
    assert natural_cut(tree.costs, tree.num_leaves) != 8  # what the evaluation read before
    assert ev.suggested_parts(tree) == 8
    info = {}
    ev.tree_scores(feats, con, (bx * 10 + by).astype(np.int64), False, free_space=feats, info=info)
    assert info["suggested"][0] == 8 and info["suggested"][1][""] > 0.99
