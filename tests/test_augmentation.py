"""Test-time augmentation (`model_runtime.augmentation`) with the bundled model: the identity
view is the plain path, every view reads its field at the queries mapped like the input, and
the pipeline option is deterministic."""
import numpy as np
import pytest
import torch

from model_runtime.augmentation import VIEWS, AugmentedField, augmented, views
from model_runtime.errors import InputError
from model_runtime.field_model import FieldModel
from model_runtime.pipeline import SegmentOptions, segment_mesh
from model_runtime.training.evaluation import network_face_features
from test_part_tree import load_off


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return FieldModel.load(None, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def chair(coseg_dir):
    return load_off(coseg_dir / "chairs" / "shapes" / "0.off")  # 1,712 faces


def _points(n=4096, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3)) * [0.5, 0.3, 0.2]
    p = p / np.abs(p).max(0) * 0.9  # a normalised cloud: bbox centred, longest side 1.8
    nrm = rng.normal(size=(n, 3))
    return p.astype(np.float32), (nrm / np.linalg.norm(nrm, axis=1, keepdims=True)).astype(np.float32)


def test_identity_view_is_the_plain_model(model):
    p, n = _points()
    q = p[:500]
    plain = model.decode(model.encode(p, n), q)
    tta = AugmentedField(model, [np.eye(3)])
    np.testing.assert_array_equal(tta.decode(tta.encode(p, n), q), plain)
    assert augmented(model, 1) is model


def test_each_view_reads_the_rotated_frame(model):
    p, n = _points()
    q = p[:300]
    for r in VIEWS[1:4]:
        tta = AugmentedField(model, [r])
        direct = model.decode(model.encode(p @ r.T, n @ r.T), (q @ r.T).astype(np.float32))
        np.testing.assert_allclose(tta.decode(tta.encode(p, n), q), direct, rtol=1e-5, atol=1e-6)
    # a general rotation is renormalised into the network's frame, queries with it
    r = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    tta = AugmentedField(model, [r])
    enc = tta.encode(p, n)
    rp = p.astype(np.float64) @ r.T
    assert np.allclose(np.abs(enc[0].map(p)).max(), 0.9, atol=1e-5)
    np.testing.assert_allclose(enc[0].map(p), (rp - (rp.min(0) + rp.max(0)) / 2) * 1.8 / (rp.max(0) - rp.min(0)).max(),
                               atol=1e-5)


def test_average_of_views(model):
    p, n = _points()
    q = p[:200]
    three = AugmentedField(model, views(3))
    singles = [AugmentedField(model, [r]) for r in views(3)]
    mean = np.mean([s.decode(s.encode(p, n), q) for s in singles], axis=0)
    np.testing.assert_allclose(three.decode(three.encode(p, n), q), mean, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mean, model.decode(model.encode(p, n), q), atol=1e-3)  # the views differ
    mirror = views(4, "mirror")
    assert all(np.allclose(np.abs(r), np.eye(3)) for r in mirror) and np.linalg.det(mirror[1]) < 0
    with pytest.raises(InputError):
        views(2, "sideways")
    with pytest.raises(InputError):
        views(0)
    with pytest.raises(InputError):
        AugmentedField(model, [np.diag([2.0, 1.0, 1.0])])


def test_default_views_are_four_for_our_models_and_one_for_the_released_network(chair, model):
    import dataclasses

    from model_runtime.augmentation import OWN_MODEL_VIEWS, default_views
    from model_runtime.config import PartFieldConfig
    from model_runtime.network import PartFieldNet

    assert OWN_MODEL_VIEWS == 4 and default_views(model) == 4
    assert default_views(AugmentedField(model, [np.eye(3)])) == 1  # never augmented twice
    from test_pipeline_double import RandomTriplaneField

    assert default_views(RandomTriplaneField()) == 1  # other field objects are used as given
    # the released network is told by its config name (a small net under that name: cheap to build)
    cfg = dataclasses.replace(PartFieldConfig.small(), name=PartFieldConfig.released().name)
    released = FieldModel(PartFieldNet(cfg), torch.device("cpu"), torch.float32, "stand-in")
    assert default_views(released) == 1
    # the pipeline's default (None) is the model's, and the result says what was used
    res = segment_mesh(chair, model, SegmentOptions(num_points=4096))
    assert res.metadata["options"]["test_time_views"] == 4 and res.metadata["model"]["test_time_views"] == 4


def test_segment_option_is_deterministic_and_identity_equals_plain(chair, model):
    opts = SegmentOptions(num_points=4096, test_time_views=1)
    plain = segment_mesh(chair, model, opts)
    ident = segment_mesh(chair, AugmentedField(model, [np.eye(3)]), opts)
    np.testing.assert_array_equal(ident.features, plain.features)
    np.testing.assert_array_equal(ident.labels(6), plain.labels(6))
    a = segment_mesh(chair, model, SegmentOptions(num_points=4096, test_time_views=3))
    b = segment_mesh(chair, model, SegmentOptions(num_points=4096, test_time_views=3))
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.labels(6), b.labels(6))
    assert a.metadata["options"]["test_time_views"] == 3 and a.metadata["model"]["test_time_views"] == 3
    assert not np.allclose(a.features, plain.features, atol=1e-3)


def test_evaluation_uses_the_same_views(chair, model):
    v, f = chair.vertices, chair.loop_vertices.reshape(-1, 3)
    plain = network_face_features(model, v, f, 2048)
    ident = network_face_features(AugmentedField(model, [np.eye(3)]), v, f, 2048)
    np.testing.assert_array_equal(ident, plain)


def test_views_poll_cancel_in_encode_and_decode(model):
    from model_runtime.errors import Cancelled

    p, n = _points()
    tta = AugmentedField(model, views(4, "mirror"))
    polls = []

    def never():
        polls.append(1)
        return False

    enc = tta.encode(p, n, cancel=never)
    assert len(polls) > 4  # between views and, passed on, inside each view's encoder
    np.testing.assert_array_equal(tta.decode(enc, p[:256], cancel=never), tta.decode(tta.encode(p, n), p[:256]))
    with pytest.raises(Cancelled):
        tta.encode(p, n, cancel=lambda: True)
    with pytest.raises(Cancelled):
        tta.decode(enc, p[:256], cancel=lambda: True)
