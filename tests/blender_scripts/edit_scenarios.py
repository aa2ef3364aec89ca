"""Part-edit scenarios against the real `bpy` module with the add-on installed and the bundled
model, on a generated chair (seat, back, four legs):

    python edit_scenarios.py SCENARIO --workdir DIR

Each scenario asserts what issue 16 item 2 asks and exits non-zero on failure; the pytest file
tests/test_blender_edits.py runs one process per scenario.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ext_helpers as H  # noqa: E402  (sets BLENDER_USER_RESOURCES before bpy)

import bpy  # noqa: E402
import numpy as np  # noqa: E402

import ext_scenarios as X  # noqa: E402  (writer checks)

K = 6  # seat, back and four legs
SEAT, BACK, LEGS = 0, 1, (2, 3, 4, 5)


def chair_mesh(name="Chair"):
    """A welded chair from the procedural shapes: (obj, ground-truth part per polygon)."""
    from model_runtime.training.procedural import _mesh_welded
    from model_runtime.training.shapes import Assembly, box, cyl

    a = Assembly("chair")
    a.leaf(box([0, 0, 0.45], [0.3, 0.3, 0.03]))  # seat
    a.leaf(box([0, -0.28, 0.8], [0.3, 0.02, 0.32]))  # back
    for x, y in ((0.26, 0.26), (-0.26, 0.26), (-0.26, -0.26), (0.26, -0.26)):
        a.leaf(cyl([x, y, 0.0], [x, y, 0.42], 0.025))  # legs
    v, f, gt = _mesh_welded(a, np.random.default_rng(0), 0.005, 64)
    me = bpy.data.meshes.new(name)
    me.from_pydata(v.tolist(), [], f.tolist())
    me.update()
    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    return obj, np.asarray(gt)


def majority(labels, gt, part):
    return int(np.bincount(labels[gt == part]).argmax())


def leaf_sets(labels):
    return {frozenset(np.flatnonzero(labels == i).tolist()) for i in np.unique(labels)}


def node_faces(tree, node):
    from model_runtime.part_edits import node_leaves

    return frozenset(node_leaves(tree, node).tolist())


def selected(obj):
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    sel = np.zeros(len(obj.data.polygons), bool)
    obj.data.polygons.foreach_get("select", sel)
    return np.flatnonzero(sel)


def edits_of(obj):
    return list(H.addon_module("storage").load(obj).edits)


def setup():
    H.install_addon()
    H.clear_scene()
    H.prefs().device = "cpu"
    obj, gt = chair_mesh()
    H.activate(obj)
    assert bpy.ops.partfield.compute() == {"FINISHED"}
    obj.partfield.parts = K
    storage = H.addon_module("storage")
    stored = storage.load(obj)
    assert stored.result.metadata.get("model_name", storage.meta(obj).get("model_name")) is not None
    labels = stored.face_labels(K)
    parts = [majority(labels, gt, p) for p in range(6)]
    assert len(set(parts)) == 6, f"the bundled model did not give seat, back and four legs at k={K}: {parts}"
    return obj, gt, storage


def world_centres(obj):
    me = obj.data
    c = np.empty(len(me.polygons) * 3, np.float32)
    me.polygons.foreach_get("center", c)
    mw = np.array(obj.matrix_world)
    return c.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]


def check_separate_objects(obj, labels):
    """One object per edited part, holding exactly that part's polygons (in world space)."""
    writers = H.addon_module("writers")
    bpy.context.view_layer.update()
    coll = writers.parts_collection(obj)
    assert coll is not None, "no parts collection"
    parts = {int(o["partfield_part"]): o for o in coll.objects}
    assert sorted(parts) == sorted(np.unique(labels).tolist()), f"part objects {sorted(parts)}"
    from scipy.spatial import cKDTree

    src = world_centres(obj)
    for lab, part in parts.items():
        got, want = world_centres(part), src[labels == lab]
        assert got.shape == want.shape, f"part {lab}: {len(got)} polygons, expected {len(want)}"
        d, idx = cKDTree(want).query(got)
        assert d.max() < 1e-4 and len(np.unique(idx)) == len(want), f"part {lab}: not its polygons"


def op(name, **kw):
    """Call a partfield operator as the GUI does (EXEC with its undo push)."""
    return getattr(bpy.ops.partfield, name)("EXEC_DEFAULT", True, **kw)


# --------------------------------------------------------------------------------------- scenarios
def scenario_edits(args):
    """Select Part / Similar, Split (twice, deeper), Merge, the slider rule, writers, save/reload."""
    from model_runtime.part_edits import apply_edits

    obj, gt, storage = setup()
    name = obj.name
    stored = storage.load(obj)
    tree = stored.result.tree
    base = stored.face_labels(K)
    leg_parts = sorted(majority(base, gt, p) for p in LEGS)
    seat_part = majority(base, gt, SEAT)
    leg_face = int(np.flatnonzero((gt == LEGS[0]) & (base == majority(base, gt, LEGS[0])))[0])
    seat_face = int(np.flatnonzero((gt == SEAT) & (base == seat_part))[0])

    # Select Part / Select Similar Parts (Object Mode, from the active face).
    assert op("select_part", face=seat_face) == {"FINISHED"}
    assert np.array_equal(selected(obj), np.flatnonzero(base == seat_part)), "Select Part: not the seat part"
    assert op("select_similar", face=leg_face) == {"FINISHED"}
    got = sorted(set(base[selected(obj)].tolist()))
    assert got == leg_parts, f"Select Similar from a leg: parts {got}, the legs are {leg_parts}"
    assert np.array_equal(selected(obj), np.flatnonzero(np.isin(base, leg_parts)))
    assert op("select_similar", face=leg_face, threshold=1.0) == {"FINISHED"}
    assert sorted(set(base[selected(obj)].tolist())) == [majority(base, gt, LEGS[0])], "threshold 1: the part only"
    assert op("select_similar", face=seat_face) == {"FINISHED"}
    assert not set(base[selected(obj)].tolist()) & set(leg_parts), "Select Similar from the seat took legs"

    # Split the seat: exactly the seat node's two children; the other parts unchanged.
    n = int(tree.maximal_nodes(stored.result_labels(K) == seat_part)[0])
    assert op("split_part", face=seat_face) == {"FINISHED"}
    after = storage.load(obj).face_labels(K)
    assert len(np.unique(after)) == K + 1
    a, b = tree.children[n - tree.num_leaves]
    want = (leaf_sets(base) - {node_faces(tree, n)}) | {node_faces(tree, a), node_faces(tree, b)}
    assert leaf_sets(after) == want, "split did not give exactly the node's children"
    assert np.array_equal(after[base != seat_part], base[base != seat_part]), "split changed other parts' labels"
    X.assert_colors(obj, after, "preview after split")
    # Deeper in that branch only: split the larger child.
    big = a if tree.size[a] >= tree.size[b] else b
    big_face = int(min(node_faces(tree, big)))
    assert op("split_part", face=big_face) == {"FINISHED"}
    deeper = storage.load(obj).face_labels(K)
    c1, c2 = tree.children[big - tree.num_leaves]
    assert {node_faces(tree, c1), node_faces(tree, c2)} <= leaf_sets(deeper)
    assert len(np.unique(deeper)) == K + 2
    assert np.array_equal(deeper[base != seat_part], base[base != seat_part])

    # Merge two legs from an Edit Mode face selection: the union.
    l0, l1 = leg_parts[:2]
    faces = np.concatenate([np.flatnonzero(deeper == l0)[:3], np.flatnonzero(deeper == l1)[:2]])
    ops = H.addon_module("edit_operators")
    ops.select_faces(obj.data, faces)
    bpy.ops.object.mode_set(mode="EDIT")
    assert op("merge_parts") == {"FINISHED"}
    assert obj.mode == "OBJECT", "Merge from Edit Mode shows the parts in Object Mode"
    merged = storage.load(obj).face_labels(K)
    union = frozenset(np.flatnonzero((deeper == l0) | (deeper == l1)).tolist())
    assert union in leaf_sets(merged), "merge is not the union of the two legs"
    assert len(np.unique(merged)) == K + 1
    edits = edits_of(obj)
    assert [e.kind for e in edits] == ["split", "split", "merge"]

    # The slider rule: each edit applies at every cut where its nodes are shown, else it is
    # inactive but kept; moving back restores the edited parts.
    seen = set()
    for k in (1, 2, 3, 4, 5, 7, 9, 12, K):
        obj.partfield.parts = k
        want = apply_edits(tree, k, edits)
        seen.add(want.active[0])
        got = storage.load(obj).face_labels(k)
        assert np.array_equal(got, want.labels), f"slider k={k}: labels are not the edits replayed"
        X.assert_colors(obj, got, f"slider k={k}")
        shown = set(tree.cut_nodes(k).tolist())
        if n not in shown:  # coarser than the split seat or finer: the split is inactive there
            assert not want.active[0]
        if k < K and not any(want.active):
            assert np.array_equal(got, tree.cut(k)), f"k={k}: inactive edits changed the cut"
        assert edits_of(obj) == edits, "moving the slider dropped edits"
    assert seen == {True, False}, "the slider range did not cover both an active and an inactive split"
    obj.partfield.parts = K
    assert np.array_equal(storage.load(obj).face_labels(K), merged)

    # Writers write the edited parts.
    for mode in ("VERTEX_GROUPS", "FACE_ATTRIBUTE", "SEPARATE_OBJECTS"):
        obj = bpy.data.objects[name]
        H.activate(obj)
        assert bpy.ops.partfield.apply(mode=mode) == {"FINISHED"}
        check = check_separate_objects if mode == "SEPARATE_OBJECTS" else X.CHECKS[mode]
        check(bpy.data.objects[name], merged)

    # Save / reload: the edits and the edited parts come back.
    path = str(Path(args.workdir) / "edited.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    obj = bpy.data.objects[name]
    assert edits_of(obj) == edits, "edits lost by save/reload"
    assert np.array_equal(storage.load(obj).face_labels(K), merged)
    # The panel shows the edit block in Object and Edit Mode; the Face menu has the operators.
    H.activate(obj)
    texts = X.panel_draw_smoke()
    assert {"Split", "Merge", "Select Part", "Similar", "Similarity Map", "Clear Edits"} <= set(texts), texts
    bpy.ops.object.mode_set(mode="EDIT")
    assert "Split" in X.panel_draw_smoke()
    bpy.ops.object.mode_set(mode="OBJECT")
    ops = H.addon_module("edit_operators")
    from model_runtime.part_edits import DEFAULT_SIMILARITY

    assert ops.DEFAULT_SIMILARITY == DEFAULT_SIMILARITY, "operator default != model_runtime default"
    assert ops._face_menu in bpy.types.VIEW3D_MT_edit_mesh_faces._dyn_ui_initialize()
    # Clear Part Edits: back to the plain cut.
    assert op("clear_edits") == {"FINISHED"}
    assert np.array_equal(storage.load(obj).face_labels(K), base)
    assert "Clear Edits" not in X.panel_draw_smoke()
    # Disabling the add-on removes the operators and the menu entries.
    import addon_utils

    addon_utils.disable(H.ADDON)
    assert not hasattr(bpy.types, "PARTFIELD_OT_split_part")
    assert ops._face_menu not in bpy.types.VIEW3D_MT_edit_mesh_faces._dyn_ui_initialize()


def scenario_undo(args):
    """Each edit is one undo step, in Object Mode and in Edit Mode; redo brings it back."""
    obj, gt, storage = setup()
    name = obj.name
    base = storage.load(obj).face_labels(K)
    seat_face = int(np.flatnonzero(gt == SEAT)[0])
    leg_parts = sorted(majority(base, gt, p) for p in LEGS)
    bpy.ops.ed.undo_push(message="computed")

    assert op("split_part", face=seat_face) == {"FINISHED"}
    obj = bpy.data.objects[name]
    split1 = storage.load(obj).face_labels(K)
    assert len(edits_of(obj)) == 1
    bpy.ops.ed.undo()
    obj = bpy.data.objects[name]
    assert edits_of(obj) == [] and np.array_equal(storage.load(obj).face_labels(K), base), "undo of split"
    bpy.ops.ed.redo()
    obj = bpy.data.objects[name]
    assert np.array_equal(storage.load(obj).face_labels(K), split1), "redo of split"

    # Edit Mode: select faces of two legs, merge (that ends in Object Mode, one undo step), undo:
    # back to the split only and to Edit Mode with the same selection.
    faces = np.concatenate([np.flatnonzero(split1 == leg_parts[0])[:1], np.flatnonzero(split1 == leg_parts[1])[:1]])
    H.addon_module("edit_operators").select_faces(obj.data, faces)
    bpy.context.tool_settings.mesh_select_mode = (False, False, True)
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.ed.undo_push(message="edit mode")
    assert op("select_part") == {"FINISHED"} and obj.mode == "EDIT", "Select Part stays in Edit Mode"
    picked = selected(obj)
    assert np.array_equal(picked, np.flatnonzero(np.isin(split1, split1[faces]))), "Select Part in Edit Mode"
    bpy.ops.ed.undo()  # a selection is an Edit Mode undo step
    obj = bpy.data.objects[name]
    assert obj.mode == "EDIT" and np.array_equal(selected(obj), np.sort(faces)), "undo of Select Part"
    one = np.flatnonzero(split1 == leg_parts[0])
    bpy.ops.object.mode_set(mode="OBJECT")
    H.addon_module("edit_operators").select_faces(obj.data, one)
    bpy.ops.object.mode_set(mode="EDIT")
    assert op("merge_parts") == {"CANCELLED"} and obj.mode == "EDIT", "a refused merge left Edit Mode"
    bpy.ops.object.mode_set(mode="OBJECT")
    H.addon_module("edit_operators").select_faces(obj.data, faces)
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.ed.undo_push(message="two legs selected")
    assert op("merge_parts") == {"FINISHED"}
    obj = bpy.data.objects[name]
    assert obj.mode == "OBJECT" and [e.kind for e in edits_of(obj)] == ["split", "merge"]
    merged = storage.load(obj).face_labels(K)
    bpy.ops.ed.undo()
    obj = bpy.data.objects[name]
    got = [e.kind for e in edits_of(obj)]
    assert got == ["split"], f"undo of a merge made from Edit Mode: {got}"
    assert obj.mode == "EDIT", f"undo did not return to Edit Mode ({obj.mode})"
    bpy.ops.object.mode_set(mode="OBJECT")
    obj = bpy.data.objects[name]
    assert [e.kind for e in edits_of(obj)] == ["split"]
    assert np.array_equal(storage.load(obj).face_labels(K), split1)
    assert len(np.unique(merged)) == len(np.unique(split1)) - 1


def scenario_similarity_and_batch(args):
    """The similarity heat map in the preview attribute; the batch writes the edited parts."""
    obj, gt, storage = setup()
    name = obj.name
    stored = storage.load(obj)
    base = stored.face_labels(K)
    leg_face = int(np.flatnonzero(gt == LEGS[0])[0])
    assert op("similarity_preview", face=leg_face) == {"FINISHED"}
    colors = X.corner_colors(obj)
    lp = np.repeat(np.arange(len(obj.data.polygons)), [p.loop_total for p in obj.data.polygons])
    face_rgb = np.zeros((len(obj.data.polygons), 3))
    np.add.at(face_rgb, lp, colors[:, :3])
    face_rgb /= np.bincount(lp)[:, None]
    from model_runtime.part_edits import face_similarity, heat_colors

    sim = face_similarity(stored.result.features, leg_face)
    assert np.abs(face_rgb - heat_colors(sim)[:, :3]).max() < 1e-4, "heat map is not the similarity"
    warmth = face_rgb[:, 0] + face_rgb[:, 1]  # red + green: yellow = alike
    legs = np.isin(gt, LEGS)
    assert warmth[legs].mean() > warmth[gt == SEAT].mean() + 0.3
    assert warmth[legs].mean() > warmth[gt == BACK].mean() + 0.3
    assert H.addon_module("preview").is_previewing(bpy.context.scene)
    # The slider shows parts again.
    obj.partfield.parts = K - 1
    obj.partfield.parts = K
    X.assert_colors(obj, base, "slider after the heat map")

    # Merge the four legs (Object Mode, stored selection), save, and run the batch on the file.
    H.activate(obj)
    leg_parts = sorted(majority(base, gt, p) for p in LEGS)
    ops = H.addon_module("edit_operators")
    ops.select_faces(obj.data, [int(np.flatnonzero(base == p)[0]) for p in leg_parts])
    assert op("merge_parts") == {"FINISHED"}
    edited = storage.load(obj).face_labels(K)
    assert len(np.unique(edited)) == K - 3
    path = Path(args.workdir) / "chair_edited.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    out = Path(args.workdir) / "batch_out"
    batch = H.REPO_ROOT / "partfield_blender" / "batch.py"
    proc = subprocess.run([sys.executable, str(batch), "--", str(path), "-o", str(out), "--parts", str(K),
                           "--export", "labels", "--device", "cpu", "--threads", "1"],
                          capture_output=True, text=True, timeout=600, cwd=H.REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "part edit" in proc.stdout, proc.stdout[-2000:]
    npys = sorted(out.rglob(f"*_k{K}.labels.npy"))
    assert len(npys) == 1, sorted(str(p) for p in out.rglob("*"))
    got = np.load(npys[0])
    assert np.array_equal(got, edited), "batch --parts did not write the edited parts"
    assert name


def scenario_modifiers(args):
    """With Use Modifiers the tree is over the evaluated mesh: edits made from base-mesh faces
    act on the right parts, and the base mesh gets the mapped edited labels."""
    from model_runtime.part_edits import apply_edits

    H.install_addon()
    H.clear_scene()
    H.prefs().device = "cpu"
    storage = H.addon_module("storage")
    tbl, owner = H.table("TableSub")  # box 0 = top, 1..4 = legs
    mod = tbl.modifiers.new("Subdiv", "SUBSURF")
    mod.levels = 1
    H.activate(tbl)
    bpy.context.scene.partfield.use_modifiers = True
    assert bpy.ops.partfield.compute() == {"FINISHED"}
    tbl.partfield.parts = 5
    stored = storage.load(tbl)
    assert stored.face_map is not None and len(stored.result_labels(5)) > len(tbl.data.polygons)
    base = stored.face_labels(5)
    top_face = int(np.flatnonzero(owner == 0)[0])
    top_part = int(base[top_face])
    assert op("split_part", face=top_face) == {"FINISHED"}
    stored = storage.load(tbl)
    tree = stored.result.tree
    want = apply_edits(tree, 5, stored.edits).labels
    assert np.array_equal(stored.face_labels(5), want[stored.face_map]), "edited labels not mapped to the base"
    n = int(tree.maximal_nodes(storage.load(tbl).result.labels(5) == top_part)[0])
    assert stored.edits[0].nodes == (n,), "the split did not act on the top's node of the evaluated tree"
    assert op("select_similar", face=int(np.flatnonzero(owner == 1)[0])) == {"FINISHED"}
    got = set(stored.face_labels(5)[selected(tbl)].tolist())
    legs = {int(np.bincount(base[owner == i]).argmax()) for i in (1, 2, 3, 4)}
    assert legs <= got and top_part not in got, f"similar from a leg: {got}, legs {legs}"


SCENARIOS = {
    "modifiers": scenario_modifiers,
    "edits": scenario_edits,
    "undo": scenario_undo,
    "similarity_and_batch": scenario_similarity_and_batch,
}


def main():
    H.run_scenario_main(SCENARIOS, threads=2)


if __name__ == "__main__":
    main()
