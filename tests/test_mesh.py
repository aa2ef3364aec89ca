"""MeshArrays layout, triangulation, validation (each bad input: a clear InputError or a
warning), and the normalisation transform."""
import numpy as np
import pytest

from model_runtime.errors import InputError
from model_runtime.mesh import MeshArrays
from model_runtime.normalization import Normalization

CUBE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
CUBE_Q = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]]


def test_polygon_layout_and_triangulation_of_quads_and_ngons():
    # a quad, a triangle and a regular hexagon (n-gon)
    hexv = np.c_[np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3), np.zeros(6)] + [5, 0, 0]
    v = np.r_[[[0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0], [0, 0, 1]], hexv]
    m = MeshArrays.from_polygons(v, [[0, 1, 2, 3], [0, 1, 4], list(range(5, 11))])
    assert (m.num_polygons, m.num_loops) == (3, 13)
    np.testing.assert_array_equal(m.loop_starts, [0, 4, 7])
    tris, t2p = m.triangulate()
    np.testing.assert_array_equal(t2p, [0, 0, 1, 2, 2, 2, 2])
    np.testing.assert_allclose(m.polygon_areas(), [2.0, 1.0, 3 * np.sqrt(3) / 2])
    np.testing.assert_allclose(m.polygon_centers()[0], [1, 0.5, 0])
    assert m.validate().warnings == []


def test_concave_quad_uses_the_inner_diagonal():
    # arrow-head quad, reflex corner at vertex 3: diagonal 0-2 would lie outside
    v = np.array([[0, 0, 0], [2, 1, 0], [0, 2, 0], [0.5, 1, 0]], float)
    m = MeshArrays.from_polygons(v, [[0, 1, 2, 3]])
    # true area: triangle (0,1,2) = 2 minus triangle (0,3,2) = 0.5
    assert m.polygon_areas()[0] == pytest.approx(1.5)


def test_from_triangles_matches_from_polygons():
    f = np.array([[0, 1, 2], [0, 2, 3]])
    a = MeshArrays.from_triangles(CUBE_V, f)
    b = MeshArrays.from_polygons(CUBE_V, f.tolist())
    np.testing.assert_array_equal(a.triangulate()[0], b.triangulate()[0])


@pytest.mark.parametrize(
    "mesh, message",
    [
        (MeshArrays.from_triangles(CUBE_V, np.zeros((0, 3), int)), "no faces"),
        (MeshArrays.from_triangles(np.zeros((0, 3)), np.zeros((0, 3), int)), "no vertices"),
        (MeshArrays.from_triangles(CUBE_V, [[0, 1, 2]]), "single face"),
        (MeshArrays.from_triangles(CUBE_V, [[0, 1, 2], [0, 2, 99]]), "outside 0..7"),
        (MeshArrays.from_triangles(CUBE_V, [[0, 1, 2], [0, 2, -1]]), "outside 0..7"),
        (MeshArrays.from_triangles(np.r_[CUBE_V, [[np.nan, 0, 0]]], [[0, 1, 2], [0, 1, 8]]), "NaN or infinite"),
        (MeshArrays.from_triangles(np.r_[CUBE_V, [[np.inf, 0, 0]]], [[0, 1, 2], [0, 1, 8]]), "NaN or infinite"),
        (MeshArrays.from_triangles(CUBE_V, [[0, 1, 1], [2, 2, 2]]), "zero area"),
        (MeshArrays.from_triangles(np.zeros((3, 3)), [[0, 1, 2], [0, 2, 1]]), "single point"),
    ],
)
def test_bad_meshes_raise_clear_input_errors(mesh, message):
    with pytest.raises(InputError, match=message):
        mesh.validate()


def test_shape_errors_are_input_errors():
    with pytest.raises(InputError, match=r"shape \(V, 3\)"):
        MeshArrays(np.zeros((4, 2)), [0], [3], [0, 1, 2])
    with pytest.raises(InputError, match="differ in length"):
        MeshArrays(np.zeros((4, 3)), [0, 3], [3], [0, 1, 2])


def test_handled_problems_are_reported_not_fatal():
    v = np.r_[CUBE_V, [[9, 9, 9], [np.nan, 0, 0]]]  # one unused vertex, one unused NaN vertex
    polys = CUBE_Q + [CUBE_Q[0][::-1], [0, 1, 1], [0, 1]]  # duplicate face, zero-area, 2-corner
    m = MeshArrays.from_polygons(v, polys)
    rep = m.validate()
    assert rep.unreferenced_vertices == 2
    assert rep.duplicate_polygons == 1
    assert rep.degenerate_polygons == 2
    assert len(rep.warnings) == 3
    tris, t2p = m.triangulate()
    assert 9 not in t2p  # the 2-corner polygon has no triangle
    assert np.isfinite(Normalization.from_mesh(m).to_array()).all()  # the NaN vertex is ignored


def test_normalization_bbox_centre_and_longest_side():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(500, 3)) * [3, 1, 0.5] + [10, -4, 2]
    n = Normalization.from_points(p)
    q = n.apply(p)
    np.testing.assert_allclose((q.min(0) + q.max(0)) / 2, 0, atol=1e-12)
    assert np.ptp(q, axis=0).max() == pytest.approx(1.8)
    assert q[:, 0].min() == pytest.approx(-0.9) and q[:, 0].max() == pytest.approx(0.9)
    np.testing.assert_allclose(n.invert(q), p, atol=1e-9)
    assert Normalization.from_array(n.to_array()) == n
    with pytest.raises(InputError, match="no extent"):
        Normalization.from_points(np.ones((4, 3)))
