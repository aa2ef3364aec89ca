"""SegmentationResult: npz round trip without pickle, fp16 features, labels(k), bad files."""
import numpy as np
import pytest

from model_runtime.connectivity import build_connectivity
from model_runtime.errors import InputError
from model_runtime.normalization import Normalization
from model_runtime.part_tree import PartTree
from model_runtime.result import SegmentationResult
from test_connectivity import grid
from model_runtime.mesh import MeshArrays


@pytest.fixture()
def result():
    v, q = grid(12, 9)
    mesh = MeshArrays.from_triangles(v, q)
    rng = np.random.default_rng(0)
    c = mesh.polygon_centers()
    feats = np.c_[np.sin(c[:, 0]), np.cos(c[:, 1]), c[:, 0] * c[:, 1] / 50].astype(np.float32)
    feats += 0.01 * rng.normal(size=feats.shape).astype(np.float32)
    tree = PartTree.build(feats, build_connectivity(mesh))
    meta = {"model": {"name": "test"}, "options": {"seed": 0}, "warnings": ["x"]}
    return SegmentationResult(feats, tree, Normalization.from_mesh(mesh), meta)


def test_round_trip(tmp_path, result):
    path = result.save(tmp_path / "r.partfield")  # any suffix is kept
    assert path.exists() and path.name == "r.partfield"
    back = SegmentationResult.load(path)
    np.testing.assert_array_equal(back.features, result.features)
    assert back.features.dtype == np.float32
    np.testing.assert_array_equal(back.tree.children, result.tree.children)
    np.testing.assert_array_equal(back.tree.costs, result.tree.costs)
    assert back.normalization == result.normalization
    assert back.metadata == result.metadata
    for k in (1, 2, 7, 20, result.num_polygons):
        np.testing.assert_array_equal(back.labels(k), result.labels(k))
    assert back.labels(10_000).max() == result.num_polygons - 1  # clamped
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert "features" in data.files


def test_fp16_features_halve_the_file(tmp_path, result):
    a = result.save(tmp_path / "a.npz")
    b = result.save(tmp_path / "b.npz", features_fp16=True)
    back = SegmentationResult.load(b)
    assert back.features.dtype == np.float16
    np.testing.assert_allclose(back.features, result.features, atol=2e-3)
    assert b.stat().st_size < a.stat().st_size


def test_split_and_merge_through_the_result(result):
    lab = result.labels(3)
    s = result.split_part(lab, 0)
    assert s.max() == 3
    np.testing.assert_array_equal(result.merge_parts(s, 0, 3), lab)


def test_bad_files_raise_input_errors(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read"):
        SegmentationResult.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(InputError, match="not a PartField"):
        SegmentationResult.load(other)
    with pytest.raises(InputError):
        SegmentationResult.load(tmp_path / "missing.npz")
