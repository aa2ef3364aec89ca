"""segment_mesh end to end: stages and progress, cancellation, metadata, bad input, the
real FieldModel (small config), and the KMeans path for point clouds."""
import numpy as np
import pytest
import torch

from model_runtime.errors import Cancelled, InputError
from model_runtime.mesh import MeshArrays
from model_runtime.pipeline import STAGES, SegmentOptions, segment_mesh, segment_points
from test_part_tree import load_off, same_partition
from test_pipeline_double import RandomTriplaneField


@pytest.fixture(scope="module")
def chair(coseg_dir):
    return load_off(coseg_dir / "chairs" / "shapes" / "0.off")  # 1,712 faces


def test_segment_mesh_reports_every_stage_and_is_reproducible(chair):
    model = RandomTriplaneField(resolution=64, channels=16)
    calls = []
    res = segment_mesh(chair, model, SegmentOptions(num_points=5000), progress=lambda s, f: calls.append((s, f)))
    stages = [s for s, _ in calls]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == list(STAGES)
    assert all(0.0 <= f <= 1.0 for _, f in calls)
    for st in STAGES:
        fr = [f for s, f in calls if s == st]
        assert fr == sorted(fr) and fr[-1] == 1.0
    assert model.encode_calls == 1
    assert res.features.shape == (chair.num_polygons, 16)
    lab = res.labels(5)
    assert lab.shape == (chair.num_polygons,) and set(lab.tolist()) == set(range(5))
    md = res.metadata
    assert md["num_polygons"] == chair.num_polygons and md["options"]["num_points"] == 5000
    assert md["model"]["name"] == "random-triplane-test-field" and md["plane_resolution"] == 64
    assert set(md["timings"]) >= {"encoding_s", "features_s", "tree_s"}
    again = segment_mesh(chair, RandomTriplaneField(resolution=64, channels=16), SegmentOptions(num_points=5000))
    np.testing.assert_array_equal(again.labels(8), res.labels(8))


def test_labels_follow_polygons_not_triangles(chair):
    # the same surface as quads where possible: labels stay per polygon
    tris = chair.loop_vertices.reshape(-1, 3)
    quads = MeshArrays.from_polygons(chair.vertices, [list(t) for t in tris[:100]] + [list(t) for t in tris[100:]])
    res = segment_mesh(quads, RandomTriplaneField(), SegmentOptions(num_points=3000, features_fp16=True))
    assert res.features.dtype == np.float16 and res.labels(4).shape == (quads.num_polygons,)


def test_cancel_between_chunks(chair):
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 4

    with pytest.raises(Cancelled):
        segment_mesh(chair, RandomTriplaneField(), SegmentOptions(num_points=3000, max_memory_mb=1), cancel=cancel)


def test_bad_mesh_fails_before_the_network():
    model = RandomTriplaneField()
    with pytest.raises(InputError, match="no faces"):
        segment_mesh(MeshArrays.from_triangles(np.zeros((3, 3)), np.zeros((0, 3), int)), model)
    assert model.encode_calls == 0


def test_loose_pieces_welded_and_bridged():
    # two cubes with split (unwelded) vertices per face: 12 pieces before welding, 2 after
    cube = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
    quads = np.array([[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]])
    v, polys = [], []
    for off in ([0, 0, 0], [3, 0, 0]):
        for q in quads:
            polys.append(list(range(len(v), len(v) + 4)))
            v.extend(cube[q] + off)
    res = segment_mesh(MeshArrays.from_polygons(np.array(v), polys), RandomTriplaneField(), SegmentOptions(num_points=2000))
    assert res.metadata["pieces"] == 2 and res.metadata["bridges"] == 1
    assert res.metadata["welded_vertices"] == 2 * 16
    assert same_partition(res.labels(2), np.repeat([0, 1], 6))


def small_field_model():
    from model_runtime.checkpoint import LoadedWeights, build_network
    from model_runtime.config import PartFieldConfig
    from model_runtime.field_model import FieldModel
    from model_runtime.network import PartFieldNet

    torch.manual_seed(0)
    cfg = PartFieldConfig.small()
    weights = LoadedWeights(PartFieldNet(cfg).state_dict(), cfg, "state_dict")
    return FieldModel(build_network(weights), torch.device("cpu"), torch.float32, "test small", weights)


def test_real_field_model_small_config(chair):
    torch.set_num_threads(1)
    model = small_field_model()
    res = segment_mesh(chair, model, SegmentOptions(num_points=8000))
    assert res.features.shape == (chair.num_polygons, model.config.feature_dim)
    assert np.isfinite(res.features).all()
    assert res.metadata["plane_resolution"] == 64
    assert len(set(res.labels(6).tolist())) == 6


def test_point_cloud_kmeans():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 3)) * 0.1
    pts = np.r_[a, a + [3, 0, 0]]
    labs = segment_points(pts, RandomTriplaneField(), ks=[2, 3], options=SegmentOptions(num_points=500))
    assert set(labs) == {2, 3}
    assert labs[2].shape == (600,) and len(set(labs[3].tolist())) == 3
    with pytest.raises(InputError):
        segment_points(np.zeros((1, 3)), RandomTriplaneField())


def test_thousands_of_loose_pieces_end_to_end():
    from test_connectivity import scattered_tetrahedra

    mesh = scattered_tetrahedra(3000, seed=7)
    res = segment_mesh(mesh, RandomTriplaneField(), SegmentOptions(num_points=5000))
    assert res.metadata["pieces"] == 3000 and res.metadata["bridges"] == 2999
    assert len(set(res.labels(20).tolist())) == 20


def test_messy_mesh_is_handled_with_warnings():
    # a strip of quads plus: a duplicate face, a zero-area face, a 2-corner face, a fin on a
    # non-manifold edge, an unused vertex
    from test_connectivity import grid

    v, q = grid(8, 2)
    n = len(v)
    v = np.r_[v, [[0, 0, 1.0], [50, 50, 50]]]
    polys = [list(p) for p in q] + [list(q[0]), [0, 1, 1], [2, 3], [0, 3, n]]
    mesh = MeshArrays.from_polygons(v, polys)
    res = segment_mesh(mesh, RandomTriplaneField(), SegmentOptions(num_points=3000))
    warnings = " ".join(res.metadata["warnings"])
    assert "not used" in warnings and "duplicate" in warnings and "zero area" in warnings
    assert res.metadata["non_manifold_edges"] >= 1
    assert res.labels(3).shape == (len(polys),)
    assert np.isfinite(res.features.astype(np.float64)).all()


def test_spectral_dims_option_reaches_the_clustering_and_the_metadata(chair):
    from model_runtime.part_embedding import SPECTRAL_DIMS

    model = RandomTriplaneField(resolution=64, channels=16)
    default = segment_mesh(chair, model, SegmentOptions(num_points=5000))
    narrow = segment_mesh(chair, model, SegmentOptions(num_points=5000, spectral_dims=2))
    assert default.metadata["options"]["spectral_dims"] == SPECTRAL_DIMS == 32
    assert narrow.metadata["options"]["spectral_dims"] == 2
    # two eigenvectors instead of 32 give another tree on the same features
    assert any(not same_partition(default.labels(k), narrow.labels(k)) for k in range(3, 9))
