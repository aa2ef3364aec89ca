"""The bundled model (our own weights): it loads as the default, is small, carries its
licence, and segments a generated table into its top and its four legs."""
import numpy as np
import pytest
import torch

from model_runtime.connectivity import build_connectivity
from model_runtime.field_model import FieldModel, default_model_path
from model_runtime.mesh import MeshArrays
from model_runtime.part_tree import PartTree
from model_runtime.training.evaluation import network_face_features, part_miou
from model_runtime.training.procedural import _mesh_loose, _mesh_welded
from model_runtime.training.shapes import Assembly, box, cyl


@pytest.fixture(scope="module")
def model():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield FieldModel.load(None, device="cpu", precision="fp32")
    torch.set_num_threads(old)


def test_bundled_model_is_ours_and_small(model):
    path = default_model_path()
    assert path.exists()
    assert path.stat().st_size < 20 * 2**20  # at most 20 MB
    info = model.describe()
    assert info["name"] == "partfield-small-normals" and info["kind"] == "compact"
    assert model.reads_normals  # the runtime feeds it the sampled surface normals
    assert "GPL-3.0-or-later" in info["licence"]
    assert int(model.metadata["training_steps"]) > 0


def _table(welded: bool):
    """A plain table (z up): one top and four legs, leaf parts 0 (top) and 1..4 (legs)."""
    a = Assembly("table")
    a.leaf(box([0, 0, 0.75], [0.8, 0.5, 0.04]))
    for x, y in ((0.7, 0.4), (-0.7, 0.4), (-0.7, -0.4), (0.7, -0.4)):
        a.leaf(cyl([x, y, 0.0], [x, y, 0.71], 0.04))
    rng = np.random.default_rng(0)
    v, f, lab = _mesh_welded(a, rng, 0.005, 64) if welded else _mesh_loose(a, rng)
    # Tilt it a little and put y up, as an OBJ export would be.
    rot = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    return v @ rot.T, f, lab


@pytest.mark.parametrize("welded", [False, True], ids=["loose-pieces", "welded"])
def test_bundled_model_splits_a_table_into_top_and_legs(model, welded):
    v, f, gt = _table(welded)
    assert set(np.unique(gt)) == {0, 1, 2, 3, 4}
    feats = network_face_features(model, v, f, model.config.num_points, face_samples=4, seed=0)
    tree = PartTree.build(feats, build_connectivity(MeshArrays.from_triangles(v, f)))
    # k = 5: the top and each of the four legs.
    pred = tree.cut(5)
    score = part_miou(gt, pred)
    assert score >= 0.85, score
    # Every leg is (mostly) its own part, and the top is one part.
    top_part = np.bincount(pred[gt == 0]).argmax()
    assert np.mean(pred[gt == 0] == top_part) > 0.9
    legs = {np.bincount(pred[gt == i]).argmax() for i in range(1, 5)}
    assert len(legs) == 4 and top_part not in legs


def test_default_pipeline_splits_the_welded_table(model):
    """The product path (`segment_mesh`, fused clustering) on the same welded table."""
    from model_runtime.pipeline import segment_mesh

    v, f, gt = _table(True)
    result = segment_mesh(MeshArrays.from_triangles(v, f), model)
    assert result.metadata["clustering"] == "fused"
    assert part_miou(gt, result.labels(5)) >= 0.85


def test_default_pipeline_groups_the_welded_tables_legs_at_two_parts(model):
    """Above the tree's natural cut (top + four legs) look-alike parts may join although they
    do not touch: at k = 2 the four legs are one part. Touching parts only cannot do that."""
    from model_runtime.pipeline import SegmentOptions, segment_mesh

    v, f, gt = _table(True)
    top_and_legs = np.where(gt == 0, 0, 1)
    mesh = MeshArrays.from_triangles(v, f)
    grouped = segment_mesh(mesh, model)
    assert grouped.metadata["options"]["group_alike"] is True
    assert part_miou(top_and_legs, grouped.labels(2)) >= 0.9
    assert part_miou(gt, grouped.labels(5)) >= 0.85  # the finer cut keeps every leg
    touching = segment_mesh(mesh, model, SegmentOptions(group_alike=False))
    assert part_miou(top_and_legs, touching.labels(2)) < 0.8
