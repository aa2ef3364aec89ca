"""Mesh readers (OBJ, PLY ascii/binary, OFF, GLB) and the coloured PLY writer."""
import json
import struct

import numpy as np
import pytest

from model_runtime.errors import InputError
from model_runtime.mesh import MeshArrays
from model_runtime.meshio import part_colors, read_mesh, write_colored_ply

QUAD_TRI_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]], float)
QUAD_TRI_P = [[0, 1, 2, 3], [0, 1, 4], [1, 2, 4]]


def polys_of(m):
    return [m.loop_vertices[s:s + n].tolist() for s, n in zip(m.loop_starts, m.loop_totals)]


def test_obj_ngons_slashes_and_negative_indices(tmp_path):
    p = tmp_path / "a.obj"
    p.write_text(
        "# comment\no thing\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\n"
        "f 1/1/1 2/1/1 3/1/1 4/1/1\n"
        "v 0.5 0.5 1\n"
        "f -5//1 -4//1 -1//1\n"  # relative to the 5 vertices read so far
        "f 2 3 5\n"
    )
    m = read_mesh(p)
    np.testing.assert_allclose(m.vertices, QUAD_TRI_V)
    assert polys_of(m) == QUAD_TRI_P


def test_off_with_comments_inline_counts_and_colours(tmp_path):
    p = tmp_path / "a.off"
    p.write_text("OFF 5 3 0\n# c\n" + "\n".join(" ".join(map(str, r)) for r in QUAD_TRI_V)
                 + "\n4 0 1 2 3 255 0 0\n3 0 1 4\n3 1 2 4\n")
    m = read_mesh(p)
    assert polys_of(m) == QUAD_TRI_P
    q = tmp_path / "b.off"
    q.write_text("OFF\n5 3 0\n" + "\n".join(" ".join(map(str, r)) for r in QUAD_TRI_V) + "\n4 0 1 2 3\n3 0 1 4\n")
    with pytest.raises(InputError, match="truncated"):
        read_mesh(q)


def test_ply_ascii_and_binary(tmp_path):
    a = tmp_path / "a.ply"
    a.write_text(
        "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nelement face 3\nproperty list uchar int vertex_indices\nend_header\n"
        + "".join(f"{x} {y} {z} 7\n" for x, y, z in QUAD_TRI_V) + "4 0 1 2 3\n3 0 1 4\n3 1 2 4\n"
    )
    m = read_mesh(a)
    np.testing.assert_allclose(m.vertices, QUAD_TRI_V)
    assert polys_of(m) == QUAD_TRI_P
    # big-endian binary, triangles only (fast path), uint vertex indices
    b = tmp_path / "b.ply"
    tris = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4]])
    head = ("ply\nformat binary_big_endian 1.0\nelement vertex 5\nproperty double x\nproperty double y\n"
            "property double z\nelement face 3\nproperty list uint8 uint32 vertex_indices\nend_header\n")
    body = QUAD_TRI_V.astype(">f8").tobytes()
    for t in tris:
        body += struct.pack(">B3I", 3, *t)
    b.write_bytes(head.encode() + body)
    m = read_mesh(b)
    np.testing.assert_allclose(m.vertices, QUAD_TRI_V)
    np.testing.assert_array_equal(m.loop_vertices.reshape(-1, 3), tris)


def test_colored_ply_round_trip_mixed_polygons(tmp_path):
    m = MeshArrays.from_polygons(QUAD_TRI_V, QUAD_TRI_P)
    path = write_colored_ply(tmp_path / "c.ply", m, np.array([0, 1, 1]))
    back = read_mesh(path)
    assert back.num_polygons == 3 and back.num_vertices == m.num_loops  # corners split
    np.testing.assert_allclose(back.vertices, m.vertices[m.loop_vertices])
    np.testing.assert_allclose(back.polygon_areas(), m.polygon_areas())
    data = path.read_bytes()
    # per-corner colours: the quad's 4 corners in colour 0, the rest in colour 1
    body = data[data.index(b"end_header\n") + 11:]
    vert = np.frombuffer(body, np.dtype([("p", "<f4", 3), ("c", "u1", 3)]), m.num_loops)
    cols = part_colors(2)
    assert (vert["c"][:4] == cols[0]).all() and (vert["c"][4:] == cols[1]).all()
    tri_only = MeshArrays.from_triangles(QUAD_TRI_V, [[0, 1, 4], [1, 2, 4]])
    back = read_mesh(write_colored_ply(tmp_path / "d.ply", tri_only, np.array([1, 0])))
    np.testing.assert_allclose(back.polygon_areas(), tri_only.polygon_areas())
    assert len({tuple(c) for c in part_colors(20)}) == 20


def make_glb(path, nodes, meshes, accessors, views, binary, scene_nodes):
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": scene_nodes}], "nodes": nodes,
           "meshes": meshes, "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(binary)}]}
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
                     + struct.pack("<II", len(binary), 0x004E4942) + binary)


def test_glb_indexed_and_plain_primitives_with_node_transforms(tmp_path):
    pos = QUAD_TRI_V.astype("<f4").tobytes()  # 60 bytes
    idx = np.array([0, 1, 4, 1, 2, 4], "<u2").tobytes()  # 12 bytes
    plain = QUAD_TRI_V[[0, 1, 2]].astype("<f4").tobytes()  # 36 bytes
    binary = pos + idx + plain
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": 60}, {"buffer": 0, "byteOffset": 60, "byteLength": 12},
             {"buffer": 0, "byteOffset": 72, "byteLength": 36}]
    accessors = [{"bufferView": 0, "componentType": 5126, "count": 5, "type": "VEC3"},
                 {"bufferView": 1, "componentType": 5123, "count": 6, "type": "SCALAR"},
                 {"bufferView": 2, "componentType": 5126, "count": 3, "type": "VEC3"}]
    meshes = [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]},
              {"primitives": [{"attributes": {"POSITION": 2}}, {"attributes": {"POSITION": 2}, "mode": 1}]}]
    # node 0: translated parent of node 1 (mesh 0, scaled); node 2: mesh 1, rotated 90 deg about z
    s = np.sqrt(0.5)
    nodes = [{"translation": [10, 0, 0], "children": [1]}, {"mesh": 0, "scale": [2, 2, 2]},
             {"mesh": 1, "rotation": [0, 0, s, s]}]
    p = tmp_path / "a.glb"
    make_glb(p, nodes, meshes, accessors, views, binary, [0, 2])
    m = read_mesh(p)
    assert m.num_polygons == 3
    tris = m.loop_vertices.reshape(-1, 3)
    got = {tuple(np.round(m.vertices[t].ravel(), 6)) for t in tris}
    want_a = QUAD_TRI_V * 2 + [10, 0, 0]
    rot = QUAD_TRI_V[[0, 1, 2]] @ np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], float)  # x -> y
    want = {tuple(np.round(want_a[[0, 1, 4]].ravel(), 6)), tuple(np.round(want_a[[1, 2, 4]].ravel(), 6)),
            tuple(np.round(rot.ravel(), 6))}
    assert got == want


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="unsupported"):
        read_mesh(tmp_path / "a.xyz")
    with pytest.raises(InputError, match="need Blender; use the Blender batch script"):
        read_mesh(tmp_path / "a.fbx")
    with pytest.raises(InputError, match="is a folder"):
        (tmp_path / "dir.obj").mkdir()
        read_mesh(tmp_path / "dir.obj")
    with pytest.raises(InputError, match="no such file"):
        read_mesh(tmp_path / "missing.obj")
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"nope" * 10)
    with pytest.raises(InputError, match="not a binary glTF"):
        read_mesh(bad)
    bad = tmp_path / "bad.off"
    bad.write_text("OFF\n2 1 0\n0 0 0\nx y z\n3 0 1 2\n")
    with pytest.raises(InputError, match="cannot parse"):
        read_mesh(bad)
    empty = tmp_path / "e.obj"
    empty.write_text("# nothing\n")
    with pytest.raises(InputError, match="no vertices"):
        read_mesh(empty)


def test_stl_ascii_and_binary_share_corners(tmp_path):
    tris = QUAD_TRI_V[np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4]])]  # (3, 3, 3): a fan sharing corner 4
    text = "solid t\n" + "".join(
        "facet normal 0 0 1\n outer loop\n" + "".join(f"  vertex {x} {y} {z}\n" for x, y, z in t)
        + " endloop\nendfacet\n" for t in tris) + "endsolid t\n"
    (tmp_path / "a.stl").write_text(text)
    rec = np.zeros(3, np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")]))
    rec["v"] = tris
    (tmp_path / "b.stl").write_bytes(b"solid but binary".ljust(80, b" ") + struct.pack("<I", 3) + rec.tobytes())
    for name in ("a.stl", "b.stl"):
        m = read_mesh(tmp_path / name)
        assert m.num_polygons == 3 and len(m.vertices) == 5, name
        got = {tuple(np.round(m.vertices[t].ravel(), 6)) for t in m.loop_vertices.reshape(-1, 3)}
        assert got == {tuple(np.round(t.ravel(), 6)) for t in tris}
    (tmp_path / "c.stl").write_bytes(b"\x01" * 90)
    with pytest.raises(InputError, match="not an STL file"):
        read_mesh(tmp_path / "c.stl")


def test_gltf_with_side_file_and_data_uri_buffers(tmp_path):
    import base64

    pos = QUAD_TRI_V.astype("<f4").tobytes()
    idx = np.array([0, 1, 4, 1, 2, 4], "<u2").tobytes()
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
           "nodes": [{"mesh": 0, "translation": [0, 0, 1]}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 5, "type": "VEC3"},
                         {"bufferView": 1, "componentType": 5123, "count": 6, "type": "SCALAR"}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 60},
                           {"buffer": 1, "byteOffset": 0, "byteLength": 12}],
           "buffers": [{"byteLength": 60, "uri": "a%20pos.bin"},
                       {"byteLength": 12, "uri": "data:application/octet-stream;base64," + base64.b64encode(idx).decode()}]}
    (tmp_path / "a pos.bin").write_bytes(pos)
    (tmp_path / "m.gltf").write_text(json.dumps(doc))
    m = read_mesh(tmp_path / "m.gltf")
    assert m.num_polygons == 2
    np.testing.assert_allclose(m.vertices, QUAD_TRI_V + [0, 0, 1])
    (tmp_path / "a pos.bin").unlink()
    with pytest.raises(InputError, match="not found next to it"):
        read_mesh(tmp_path / "m.gltf")


def test_colored_ply_writes_polygons_past_255_corners(tmp_path):
    """A 300-gon needs a wider corner count than uchar: written with uint, read back exactly,
    and no temporary is left behind."""
    from model_runtime.meshio import write_colored_ply

    n = 300
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    v = np.r_[np.c_[np.cos(a), np.sin(a), np.zeros(n)], [[0, 0, 1], [1, 0, 1], [0, 1, 1]]]
    mesh = MeshArrays.from_polygons(v, [list(range(n)), [n, n + 1, n + 2], [0, 1, n]])
    out = write_colored_ply(tmp_path / "big.ply", mesh, np.array([0, 1, 1]))
    back = read_mesh(out)
    assert back.loop_totals.tolist() == [n, 3, 3]
    assert np.allclose(back.vertices[back.loop_vertices], mesh.vertices[mesh.loop_vertices], atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.ply"]


def test_every_reader_failure_is_a_mesh_file_error_naming_the_file(tmp_path):
    from model_runtime.errors import InputError, MeshFileError

    assert issubclass(MeshFileError, InputError)
    p = tmp_path / "t.ply"
    p.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                  b"property float z\nend_header\n0 0 0\n")  # StopIteration before
    with pytest.raises(MeshFileError, match=r"^t\.ply: truncated ASCII PLY"):
        read_mesh(p)
    # the exported readers translate too (batch calls read_off directly)
    from model_runtime.meshio import read_off

    off = tmp_path / "short.off"
    off.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n")
    with pytest.raises(MeshFileError, match=r"^short\.off: OFF file is truncated"):
        read_off(off)
    off.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 x\n")
    with pytest.raises(MeshFileError, match=r"^short\.off: cannot parse OFF file \(ValueError"):
        read_off(off)
