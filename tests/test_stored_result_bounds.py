"""Issue 17 item 3: what a stored segmentation result may claim is bounded before anything is
unpacked, and a loaded merge tree is validated (a cycle must not hang the slider or Apply).
Every crafted input is generated here; each must raise `StoredResultError` naming the problem,
within a memory and time bound."""
import io
import json
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from model_runtime.connectivity import build_connectivity
from model_runtime.errors import InputError, PartFieldError, StoredResultError
from model_runtime.mesh import MeshArrays
from model_runtime.normalization import Normalization
from model_runtime.part_tree import PartTree, check_merges
from model_runtime.result import FORMAT, FORMAT_VERSION, LIMITS, SegmentationResult
from result_crafts import arrays_of, npy_header, npz, three_cycle, with_entry
from test_connectivity import grid

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def result():
    v, q = grid(8, 6)
    mesh = MeshArrays.from_triangles(v, q)
    c = mesh.polygon_centers()
    feats = np.c_[np.sin(c[:, 0]), np.cos(c[:, 1]), c[:, 0] * c[:, 1] / 50].astype(np.float32)
    tree = PartTree.build(feats, build_connectivity(mesh))
    return SegmentationResult(feats, tree, Normalization.from_mesh(mesh), {"model": "test"})


def test_round_trip_through_bytes(result):
    data = result.to_bytes(features_fp16=True)
    back = SegmentationResult.from_bytes(data, expected_polygons=result.num_polygons)
    for k in (1, 3, 9, result.num_polygons):
        np.testing.assert_array_equal(back.labels(k), result.labels(k))
    assert back.features.dtype == np.float16 and back.metadata == {"model": "test"}
    with pytest.raises(StoredResultError, match=rf"is for {result.num_polygons} faces, the mesh has 7"):
        SegmentationResult.from_bytes(data, "'Cube'", expected_polygons=7)


def test_deflate_bomb_is_refused_from_its_headers(result):
    """A ~200 KB npz whose features entry unpacks to 200 MB: refused before unpacking; memory
    and time stay small (the old loader allocated and filled the 200 MB)."""
    a = arrays_of(result)
    p = result.num_polygons
    f = (200 << 20) // (4 * p)
    bomb = with_entry(a, "features", npy_header((p, f), np.float32), 4 * p * f)
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(StoredResultError, match=r"claims [\d,]+ bytes uncompressed in a [\d,]+-byte file"):
            SegmentationResult.from_bytes(bomb, "'Bomb'")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB while refusing a bomb"
    assert time.perf_counter() - t < 2.0


def test_bomb_file_on_disk_names_the_file(tmp_path, result):
    a = arrays_of(result)
    path = tmp_path / "bomb.npz"
    path.write_bytes(with_entry(a, "children", npy_header((result.num_polygons - 1, 2), np.int32), 64 << 20))
    with pytest.raises(StoredResultError, match="bomb.npz claims"):
        SegmentationResult.load(path)


def _tampered(result):
    """(what, bytes, message regex): each a crafted stored result."""
    p = result.num_polygons
    a = arrays_of(result)
    cases = []

    def case(what, regex, **changes):
        b = dict(a)
        b.update(changes)
        for k in [k for k, v in changes.items() if v is None]:
            del b[k]
        cases.append((what, npz(b), regex))

    ch = a["children"].copy()
    ch[-1, 0] = 2 * p - 2  # the root merges itself: a cycle
    case("root merges itself", r"broken merge tree: merge \d+ joins nodes", children=ch)
    ch = a["children"].copy()
    ch[0] = (p + 3, 1)  # the first merge refers to a node made later
    case("forward reference", r"broken merge tree: merge 0 joins", children=ch)
    ch = a["children"].copy()
    ch[5, 1] = ch[4, 0]  # one node merged twice (and another never)
    case("node merged twice", r"is merged 2 times", children=ch)
    ch = a["children"].copy()
    ch[3, 0] = -1
    case("negative child", r"merge 3 joins nodes \[-1", children=ch)
    case("children of the wrong length", r"entry children has shape", children=a["children"][:-1])
    case("features rows != faces", r"entry features has shape", features=a["features"][:-2])
    case("too many leaves claimed", r"claims 1,000,000,000 faces", num_leaves=np.array(10**9, np.int64))
    case("zero leaves", r"claims 0 faces", num_leaves=np.array(0, np.int64))
    case("string features", r"entry features is <U", features=np.array([["x"] * 3] * p))
    case("features as 1-d", r"entry features is float32 \(", features=a["features"].ravel())
    case("float children", r"entry children is float64", children=a["children"].astype(np.float64))
    case("non-finite normalisation", r"bad normalisation", normalization=np.array([0, 0, 0, np.nan]))
    case("zero scale", r"bad normalisation", normalization=np.array([0.0, 0, 0, 0]))
    case("metadata a list", r"metadata is not a JSON object", metadata=np.array("[1, 2]"))
    case("metadata too deep", r"RecursionError|nest", metadata=np.array("[" * 100_000 + "]" * 100_000))
    case("missing children", r"lacks children", children=None)
    case("newer format", r"newer version \(format 99\)", format_version=np.array(99, np.int64))
    case("other format", r"is not a PartField segmentation result", format=np.array("something-else"))
    case("too many channels", r"has 5000 feature channels", features=np.zeros((p, 5000), np.float16))
    # the stored tree layout (sizes, DFS starts, labels of the merge nodes) must fit the merges
    sizes = a["tree_sizes"].copy()
    sizes[-1] += 1
    case("a size that lies", r"broken merge tree: the stored size of node \d+ is", tree_sizes=sizes)
    starts = a["tree_starts"].copy()
    starts[p // 2] += 1
    case("a start that lies", r"broken merge tree: the stored start of node \d+ is", tree_starts=starts)
    mirrored = PartTree(a["children"][:, ::-1], p)  # a true DFS, of the other child order
    case("starts of another DFS", r"broken merge tree: the stored start of node",
         tree_starts=mirrored.internal_layout[1].astype(np.int32))
    case("root not at 0", r"broken merge tree: the stored start of node \d+ is",
         tree_starts=np.r_[a["tree_starts"][:-1], 3].astype(np.int32))
    labels = a["tree_labels"].copy()
    labels[-1] = 1
    case("a label that lies", r"broken merge tree: the stored label of node \d+ is", tree_labels=labels)
    case("half a layout", r"has part of the tree layout \(tree_sizes, tree_starts\), not all of it", tree_labels=None)
    case("layout of the wrong length", r"entry tree_sizes has shape", tree_sizes=a["tree_sizes"][:-1])
    case("float layout", r"entry tree_starts is float64", tree_starts=a["tree_starts"].astype(np.float64))
    good = npz(a)
    cases.append(("truncated", good[: len(good) // 2], r"cannot read segmentation result 'X': BadZipFile"))
    cases.append(("not a zip", b"PK\x03\x04" + bytes(40), r"cannot read segmentation result 'X'"))
    cases.append(("shape lies", with_entry(a, "features", npy_header((10**9, 448), np.float32), 1000),
                  r"entry features claims shape \(1000000000, 448\) of float32 but holds 1,000 bytes"))
    cases.append(("object dtype", with_entry(a, "features", npy_header((p, 3), object), 24),
                  r"entry features is object"))
    return cases


def test_tampered_results_raise_clear_errors(result):
    for what, data, regex in _tampered(result):
        t = time.perf_counter()
        with pytest.raises(StoredResultError, match=regex) as info:
            SegmentationResult.from_bytes(data, "'X'")
        assert "'X'" in str(info.value), (what, str(info.value))
        assert isinstance(info.value, (InputError, PartFieldError))
        assert time.perf_counter() - t < 2.0, what


def test_check_bytes_refuses_a_lying_layout(result):
    a = arrays_of(result)
    a["tree_sizes"] = a["tree_sizes"] + 1
    with pytest.raises(StoredResultError, match="stored size of node"):
        SegmentationResult.check_bytes(npz(a), "'X'")


def test_stored_layout_loads_without_the_loops_and_old_results_still_load(result, monkeypatch):
    """Issue 16: a result stores its merge nodes' sizes, DFS starts and labels, so loading it
    (the first slider move after opening a file) needs no Python loop over the merges; a
    result saved before that (no layout entries) still loads, through the loops, the same."""
    import model_runtime.part_tree as pt

    new = result.to_bytes(features_fp16=True)
    a = arrays_of(result)
    assert {"tree_sizes", "tree_starts", "tree_labels"} <= set(a)
    old = npz({k: v for k, v in a.items() if not k.startswith("tree_")})
    calls = []
    loops = pt._subtree_sizes
    monkeypatch.setattr(pt, "_subtree_sizes", lambda *args: calls.append(1) or loops(*args))
    fast = SegmentationResult.from_bytes(new)
    assert calls == []
    slow = SegmentationResult.from_bytes(old)
    assert calls == [1]
    for tree in (fast.tree, slow.tree):
        for key in ("size", "start", "label_of_node", "leaf_order", "parent"):
            np.testing.assert_array_equal(getattr(tree, key), getattr(result.tree, key), err_msg=key)
        for k in (1, 2, 5, 17, result.num_polygons):
            np.testing.assert_array_equal(tree.cut(k), result.tree.cut(k))
            np.testing.assert_array_equal(tree.cut(k, "size"), result.tree.cut(k, "size"))
    # the part edits (split, merge) replay the same on a loaded tree
    from model_runtime.part_edits import apply_edits, merge_edit, split_edit

    edits = merge_edit(result.tree, 6, split_edit(result.tree, 4, [], 0), [0, 1])
    for tree in (fast.tree, slow.tree):
        assert merge_edit(tree, 6, split_edit(tree, 4, [], 0), [0, 1]) == edits
        for k in (3, 4, 6, 9):
            np.testing.assert_array_equal(apply_edits(tree, k, edits).labels, apply_edits(result.tree, k, edits).labels)
    # the features are decoded on first use only, and are the stored ones
    assert not fast.features_decoded
    np.testing.assert_array_equal(fast.features, result.features.astype(np.float16))
    assert fast.features_decoded and fast.features.dtype == np.float16
    assert SegmentationResult.from_bytes(fast.to_bytes()).features.shape == result.features.shape


def test_features_damaged_after_loading_raise_a_stored_result_error(result):
    """Lazily decoded features still go through the zip checksum."""
    p = result.num_polygons
    wide = SegmentationResult(np.random.default_rng(0).normal(size=(p, 64)).astype(np.float32), result.tree,
                              result.normalization, {})
    data = bytearray(wide.to_bytes())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("features.npy")
    assert info.file_size > 3 * 4096  # (zipfile reads 4 KB at a time: the header read stops before the end)
    end = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size
    data[end - 8] ^= 0xFF  # the last feature, past what loading reads
    damaged = SegmentationResult.from_bytes(bytes(data), "'Damaged'")
    np.testing.assert_array_equal(damaged.labels(5), result.labels(5))  # the slider works
    with pytest.raises(StoredResultError, match="cannot read the features of segmentation result 'Damaged'"):
        damaged.features


def test_not_bytes():
    with pytest.raises(StoredResultError, match="it is int, not bytes"):
        SegmentationResult.from_bytes(5, "'X'")


def test_cycle_does_not_hang_in_a_fresh_process(tmp_path, result):
    """Before the fix the tree's pointer jumping looped forever on a cycle: run the load in a
    child process with a deadline, so a regression fails instead of hanging the suite."""
    a = arrays_of(result)
    p = result.num_polygons
    a["children"] = three_cycle(result.tree, [p + 40, p + 30, p + 20])
    ch = a["children"].ravel()
    assert sorted(ch.tolist()) == list(range(2 * p - 2)), "every node still merged exactly once"
    path = tmp_path / "cycle.npz"
    path.write_bytes(npz(a))
    code = ("import sys; from model_runtime.result import SegmentationResult as R\n"
            "from model_runtime.errors import StoredResultError\n"
            "try:\n    R.load(sys.argv[1])\nexcept StoredResultError as e:\n    print('ERR', e)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ERR segmentation result") and "broken merge tree" in proc.stdout, proc.stdout


def test_check_merges_accepts_real_trees_fast():
    rng = np.random.default_rng(1)
    for p in (1, 2, 3, 50):
        x = rng.normal(size=(p, 4))
        pairs = np.c_[np.arange(1, p), np.arange(p - 1)]
        tree = PartTree.build(x, pairs)
        np.testing.assert_array_equal(check_merges(tree.children, p), tree.children)
    # a million leaves (a caterpillar tree): vectorised, well under a second
    p = 1_000_000
    ch = np.c_[np.r_[0, p + np.arange(p - 2)], np.arange(1, p)]
    t = time.perf_counter()
    check_merges(ch, p)
    assert time.perf_counter() - t < 1.0
    with pytest.raises(InputError, match="needs 2 merges"):
        check_merges(np.zeros((3, 2), np.int64), 3)


def test_limits_allow_any_result_save_writes(result):
    """The bound leaves honest files alone: the npz `save` writes holds about its own size."""
    data = result.to_bytes()
    declared = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    assert declared <= len(data) <= LIMITS.compression * len(data)
    assert FORMAT == "partfield-segmentation" and FORMAT_VERSION == 1
    json.dumps(LIMITS.__dict__)
