"""The part-count syntax shared by `partfield segment` and the batch script."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from model_runtime.part_counts import (AUTO, looks_like_part_counts, parse_part_counts, resolve_part_counts,
                                       suggested_part_count)

PLAN_FILE = Path(__file__).resolve().parent.parent / "partfield_blender" / "batch_plan.py"


def test_syntax():
    assert parse_part_counts("8") == (8,)
    assert parse_part_counts("12,4,8,8") == (4, 8, 12)
    assert parse_part_counts(["2..6"]) == (2, 3, 4, 5, 6)
    assert parse_part_counts("2..20:2") == tuple(range(2, 21, 2))
    assert parse_part_counts(["2..10:4, 3", "auto", "AUTO"]) == (2, 3, 6, 10, AUTO)
    assert parse_part_counts("auto") == (AUTO,)
    for bad, message in (("", "at least one"), ("0", ">= 1"), ("x", "cannot read 'x'"), ("5..2", "goes down"),
                         ("2..4:0", "step"), ("-3", "cannot read"), ("3-4", "cannot read"), ("4 8", "cannot read")):
        with pytest.raises(ValueError, match=message):
            parse_part_counts(bad)
    with pytest.raises(ValueError, match="'auto' is not available here"):
        parse_part_counts("4,auto", allow_auto=False)
    assert looks_like_part_counts("8") and looks_like_part_counts("2..4") and not looks_like_part_counts("a.obj")


def test_resolve_clamps_and_says_so():
    ks, notes = resolve_part_counts((4, 200, 1000), 156)
    assert ks == [4, 156]
    assert notes == ["--parts 200,1000: the mesh has only 156 faces, so 156 parts (one per face) are written instead"]
    ks, notes = resolve_part_counts((4, AUTO), 156, suggested=4)
    assert ks == [4] and "suggests 4" in notes[0]
    with pytest.raises(ValueError):
        resolve_part_counts((AUTO,), 10)


def test_suggested_count_uses_the_result_or_the_natural_cut():
    from model_runtime.part_tree import PartTree, natural_cut

    rng = np.random.default_rng(0)
    # four well-separated clusters of 10 points on a chain graph: the natural cut is 4
    x = np.concatenate([rng.normal(c * 10.0, 0.1, size=(10, 2)) for c in range(4)])
    edges = np.stack([np.arange(39), np.arange(1, 40)], 1)
    tree = PartTree.build(x, edges, normalize=False)

    class Plain:  # a result without suggested_parts: the tree's natural cut
        pass

    plain = Plain()
    plain.tree = tree
    assert suggested_part_count(plain) == natural_cut(tree.costs, 40) == 4
    plain.suggested_parts = 7  # a result that suggests its own count wins
    assert suggested_part_count(plain) == 7


def test_batch_uses_the_same_parser_and_formats():
    spec = importlib.util.spec_from_file_location("pf_batch_plan_counts", PLAN_FILE)
    bp = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bp
    spec.loader.exec_module(bp)
    for text in ("8", "2..10:2", "4,8,12", "2..20", "auto", "4,auto"):
        assert bp.parse_parts(text) == parse_part_counts(text)
    assert bp.AUTO == AUTO
    from model_runtime.meshio import BLENDER_FORMATS, READERS

    assert set(bp.SUPPORTED_EXTENSIONS) == set(READERS) | set(BLENDER_FORMATS)
