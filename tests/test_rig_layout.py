"""model_runtime.rig_layout: part contacts, spanning tree, bone head/tail/roll, skin weights (no bpy)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from model_runtime.mesh import MeshArrays
from model_runtime.rig_layout import rig_layout, skin_weights, surface_samples

_spec = importlib.util.spec_from_file_location(
    "ext_helpers_geometry", Path(__file__).parent / "blender_scripts" / "ext_helpers.py")


def _box(center, size, subdiv=2):
    h = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(h)  # (only its numpy box builder is used: no bpy import happens)
    return h._box(center, size, subdiv)


def boxes(parts, subdiv=2):
    verts, faces, labels = [], [], []
    for i, (c, s) in enumerate(parts):
        v, q = _box(c, s, subdiv)
        base = sum(len(x) for x in verts)
        verts.append(v)
        faces += [[base + j for j in f] for f in q]
        labels += [i] * len(q)
    return MeshArrays.from_polygons(np.concatenate(verts), faces), np.array(labels)


def test_chain_of_three_boxes_joints_at_shared_faces():
    mesh, labels = boxes([((x, 0, 0), (1, 1, 1)) for x in (0.0, 1.0, 2.0)])
    lay = rig_layout(mesh, labels, root=0)
    assert lay.parts.tolist() == [0, 1, 2] and lay.parent.tolist() == [-1, 0, 1]
    assert np.allclose(lay.head[0], [0, 0, 0], atol=1e-6)
    assert np.allclose(lay.head[1], [0.5, 0, 0], atol=0.01)
    assert np.allclose(lay.head[2], [1.5, 0, 0], atol=0.01)
    assert lay.touching[1:].all()
    # tails point away from the head, to the far end of the part
    assert np.allclose(lay.tail[1], [1.5, 0, 0], atol=0.02) and np.allclose(lay.tail[2], [2.5, 0, 0], atol=0.02)
    # rolls: Z axes perpendicular to the bones and the same down the chain
    d = lay.tail - lay.head
    assert np.abs(np.einsum("ij,ij->i", d, lay.z_axis)).max() < 1e-6
    assert np.allclose(lay.z_axis[1], lay.z_axis[2], atol=1e-6)


def test_root_defaults_to_largest_part_and_can_be_chosen():
    mesh, labels = boxes([((0, 0, 0), (1, 1, 1)), ((1.5, 0, 0), (2, 2, 2)), ((3.0, 0, 0), (1, 1, 1))])
    assert rig_layout(mesh, labels).root == 1
    lay = rig_layout(mesh, labels, root=2)
    assert lay.root == 2 and lay.parts.tolist() == [2, 1, 0] and lay.parent.tolist() == [-1, 0, 1]


def test_table_legs_hang_from_the_top():
    parts = [((0, 0, 1.0), (2.0, 1.2, 0.1))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(((sx * 0.85, sy * 0.45, 0.475), (0.1, 0.1, 0.95)))
    mesh, labels = boxes(parts)
    lay = rig_layout(mesh, labels)
    assert lay.root == 0 and sorted(lay.parts[1:].tolist()) == [1, 2, 3, 4]
    assert (lay.parent[1:] == 0).all()
    for i, p in enumerate(lay.parts[1:], start=1):
        c = np.array(parts[p][0])
        # head at the leg's top face centre (the table's faces there are coarse: surface samples
        # find the contact), the tail down along the leg's main axis
        assert np.allclose(lay.head[i], [c[0], c[1], 0.95], atol=0.02), lay.head[i]
        assert np.allclose(lay.tail[i], [c[0], c[1], 0.0], atol=0.03), lay.tail[i]


def test_parts_that_only_come_close_join_at_the_nearest_pair():
    mesh, labels = boxes([((0, 0, 0), (1, 1, 1)), ((1.3, 0, 0), (1, 1, 1)), ((0, 0, 3.0), (1, 1, 1))])
    lay = rig_layout(mesh, labels, root=0)
    assert len(lay.parts) == 3 and (lay.parent[1:] >= 0).all()
    b1 = lay.bone_of_part()[1]
    assert not lay.touching[b1]
    assert np.allclose(lay.head[b1], [0.65, 0, 0], atol=0.02), lay.head[b1]  # between the gap's faces
    b2 = lay.bone_of_part()[2]
    assert np.allclose(lay.head[b2][2], 1.5, atol=0.05) and abs(lay.head[b2][0]) < 0.2  # mid-gap


def test_shared_vertices_give_the_contact_along_the_cut():
    n = 40
    xs, ys = np.meshgrid(np.linspace(0, 4, n + 1), np.linspace(0, 1, 11), indexing="ij")
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], 1)
    idx = np.arange(xs.size).reshape(xs.shape)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    mesh = MeshArrays.from_polygons(v, quads.tolist())
    centre_x = v[quads].mean(1)[:, 0]
    labels = (centre_x > 1.0).astype(int) + (centre_x > 2.5).astype(int)
    lay = rig_layout(mesh, labels, root=0)
    assert lay.parent.tolist() == [-1, 0, 1]
    assert np.allclose(lay.head[1], [1.0, 0.5, 0], atol=0.02) and np.allclose(lay.head[2], [2.5, 0.5, 0], atol=0.02)
    # an elongated part: the tail runs along its long (x) axis to the far end
    assert np.allclose(lay.tail[2], [4.0, 0.5, 0], atol=0.05)


def test_surface_samples_cover_large_triangles():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    pts, part = surface_samples(v, np.array([[0, 1, 2]]), np.array([3]), spacing=0.1)
    assert (part == 3).all() and len(pts) > 50
    assert pts[:, 2].max() == 0 and (pts[:, :2].sum(1) <= 1 + 1e-9).all()


def test_skin_weights_sum_to_one_and_blend_over_the_border():
    n = 40
    xs, ys = np.meshgrid(np.linspace(0, 4, n + 1), np.linspace(0, 1, 11), indexing="ij")
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], 1)
    idx = np.arange(xs.size).reshape(xs.shape)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    mesh = MeshArrays.from_polygons(v, quads.tolist())
    labels = (v[quads].mean(1)[:, 0] > 2.0).astype(int)
    lay = rig_layout(mesh, labels, root=0)
    for border in (0.0, 0.5):
        w = np.zeros((len(v), 2))
        for bone, (vid, wt) in enumerate(skin_weights(mesh, labels, lay, border=border)):
            w[vid, lay.parts[bone]] = wt
        assert np.allclose(w.sum(1), 1.0)
        far0, far1 = v[:, 0] < 2.0 - border - 0.1, v[:, 0] > 2.0 + border + 0.1
        assert (w[far0, 0] == 1).all() and (w[far1, 1] == 1).all()
        on_cut = np.isclose(v[:, 0], 2.0)
        assert np.allclose(w[on_cut], 0.5)
    # with a border, weights fall off smoothly: at 0.25 from the cut, 0.75 / 0.25
    at = np.isclose(v[:, 0], 2.3)
    assert np.allclose(w[at, 1], 0.5 + 0.5 * 0.3 / 0.5, atol=0.03), w[at, 1]


def test_labels_must_match_polygons():
    mesh, labels = boxes([((0, 0, 0), (1, 1, 1))])
    with pytest.raises(ValueError):
        rig_layout(mesh, labels[:-1])
