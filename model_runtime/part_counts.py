"""The part-count syntax shared by `partfield segment` and the batch script.

`8`, `4,8,12`, `2..20`, `2..20:2` (every 2nd), `auto` (the cut the part tree suggests), and
any mix of them separated by commas or given as several values. Standard library only at
import time: the batch script loads this before anything else.
"""
from __future__ import annotations

import re

AUTO = "auto"  # stands for the result's suggested part count
NUMBER_SYNTAX = "8, 4,8,12, 2..20 or 2..20:2"
SYNTAX = f"{NUMBER_SYNTAX} or auto"
_RANGE = re.compile(r"(\d+)\s*\.\.\s*(\d+)(?:\s*:\s*(\d+))?")


def parse_part_counts(values, allow_auto: bool = True, option: str = "--parts") -> tuple:
    """A string or several strings -> sorted unique ints >= 1, then `AUTO` last when asked for.

    Raises ValueError with a one-line message naming `option` and the piece it cannot read."""
    if isinstance(values, (str, int)):
        values = [values]
    counts: set[int] = set()
    auto = False
    for value in values:
        for raw in str(value).split(","):
            item = raw.strip().lower()
            if not item:
                continue
            if item == AUTO:
                if not allow_auto:
                    raise ValueError(f"{option}: 'auto' is not available here; give numbers ({NUMBER_SYNTAX})")
                auto = True
                continue
            m = _RANGE.fullmatch(item)
            if m:
                lo, hi, step = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
                if step < 1:
                    raise ValueError(f"{option}: the step in {raw.strip()!r} must be >= 1")
                if hi < lo:
                    raise ValueError(f"{option}: {raw.strip()!r} goes down; write the smaller count first")
                counts.update(range(lo, hi + 1, step))
            elif item.isdigit():
                counts.add(int(item))
            else:
                raise ValueError(f"{option}: cannot read {raw.strip()!r} as part counts (use {SYNTAX})")
    if not counts and not auto:
        raise ValueError(f"{option}: give at least one part count ({SYNTAX})")
    if counts and min(counts) < 1:
        raise ValueError(f"{option}: part counts must be >= 1")
    return tuple(sorted(counts)) + ((AUTO,) if auto else ())


def looks_like_part_counts(text: str) -> bool:
    """True for a word that reads as part counts (`4`, `2..8`, `auto`): used to explain a
    part count given where a file was expected."""
    try:
        parse_part_counts(text)
    except ValueError:
        return False
    return True


def suggested_part_count(result) -> int:
    """The part count a `SegmentationResult` suggests: its `suggested_parts` when it has one,
    else the tree's natural cut (where a merge first costs far more than the one before)."""
    k = getattr(result, "suggested_parts", None)
    if k is None:
        from .part_tree import natural_cut

        tree = result.tree
        if getattr(tree, "costs", None) is None:
            raise ValueError("this result's part tree has no merge costs, so it suggests no part count")
        k = natural_cut(tree.costs, tree.num_leaves)
    return int(k)


def resolve_part_counts(counts, num_polygons: int, suggested: int | None = None):
    """Requested counts -> (the counts that can be made, notes). `AUTO` becomes `suggested`;
    counts above the polygon count become it (a note says so); duplicates go."""
    made: set[int] = set()
    notes: list[str] = []
    too_many: list[int] = []
    for k in counts:
        if k == AUTO:
            if suggested is None:
                raise ValueError("--parts auto needs the result's suggested count")
            notes.append(f"--parts auto: the part tree suggests {suggested} parts")
            k = int(suggested)
        if k > num_polygons:
            too_many.append(k)
            k = num_polygons
        made.add(k)
    if too_many:
        asked = ",".join(str(k) for k in sorted(set(too_many)))
        notes.append(f"--parts {asked}: the mesh has only {num_polygons:,} faces, so {num_polygons:,} parts "
                     "(one per face) are written instead")
    return sorted(made), notes
