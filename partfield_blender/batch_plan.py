"""Pure planning logic of the headless batch (no bpy, no torch): argument parsing helpers,
input discovery, deterministic sharding, output naming, the done/skip decision, atomic
writes, the JSON summary and progress lines with ETA.

`batch.py` loads this file by path, so it must stay importable on its own: standard
library and numpy only, no package-relative imports.
"""
from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED_EXTENSIONS = (".blend", ".obj", ".fbx", ".glb", ".gltf", ".ply", ".stl", ".off")
MODES = ("vertex-groups", "face-attribute", "objects")
EXPORTS = ("blend", "glb", "fbx", "labels")
# Bump when the meaning of outputs changes, so older done-markers stop counting as finished.
OUTPUT_FORMAT_VERSION = 1
DONE_SUFFIX = ".done.json"
RUNNING_SUFFIX = ".running.json"
TEMP_TAG = ".tmp-"


# ---------------------------------------------------------------------------- parsing
def _part_counts():
    """model_runtime.part_counts (the syntax shared with `partfield segment`): imported when
    model_runtime is importable, else loaded by path from the checkout next to this file or
    from the installed extension's wheels (before bpy has put them on sys.path)."""
    try:
        from model_runtime import part_counts
        return part_counts
    except ImportError:
        pass
    import importlib.util
    import sys

    name = "partfield_part_counts"
    if name in sys.modules:
        return sys.modules[name]
    here = Path(__file__).resolve().parent
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [here.parent / "model_runtime" / "part_counts.py",  # a source checkout
                  here.parent.parent / ".local" / "lib" / version / "site-packages" / "model_runtime" / "part_counts.py"]
    for path in candidates:
        if path.is_file():
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
            return module
    raise ImportError("model_runtime is not importable (install it, or run batch.py from a checkout or the "
                      "installed extension)")


def parse_parts(text: str) -> tuple[int, ...]:
    """'8' -> (8,), '4,8,12' -> (4, 8, 12), '2..20' -> (2, ..., 20), '2..10:2' -> (2, 4, ..., 10).

    Items may be mixed ('2,4..6'); the result is sorted and unique, every k >= 1. The syntax
    is model_runtime.part_counts' (`auto` is refused here: the batch needs numbers).
    """
    return _part_counts().parse_part_counts(text, allow_auto=False)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; None -> (0, 1)."""
    if text is None or text == "":
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"--shard: expected I/N (e.g. 0/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard: need 0 <= I < N, got {i}/{n}")
    return i, n


def parse_exports(values) -> tuple[str, ...]:
    """Accepts a list of names and/or comma-separated strings; returns them in EXPORTS order."""
    names: set[str] = set()
    for value in values or ():
        for item in str(value).split(","):
            item = item.strip().lower().lstrip(".")
            if not item:
                continue
            if item == "npy" or item == "json":
                item = "labels"
            if item not in EXPORTS:
                raise ValueError(f"--export: unknown format {item!r} (choose from {', '.join(EXPORTS)})")
            names.add(item)
    if not names:
        raise ValueError("--export: give at least one of " + ", ".join(EXPORTS))
    return tuple(e for e in EXPORTS if e in names)


def parse_assignments(values) -> dict[str, str]:
    """['key=value', ...] -> {'key': 'value'} (values kept as text; the caller coerces)."""
    out: dict[str, str] = {}
    for value in values or ():
        key, sep, val = str(value).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set: expected KEY=VALUE, got {value!r}")
        out[key.strip().replace("-", "_")] = val.strip()
    return out


def coerce_like(text: str, current):
    """Convert `text` to the type of `current` (bool/int/float/str/None)."""
    if isinstance(current, bool):
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if current is None:
        for conv in (int, float):
            try:
                return conv(text)
            except ValueError:
                pass
        return None if text.lower() == "none" else text
    return text


# ---------------------------------------------------------------------------- discovery
@dataclass
class InputItem:
    """One input file. `key` is its output name (relative, no extension, '/'-separated);
    `error` is set when the input cannot even be attempted (not found, unsupported type)."""

    path: str
    key: str = ""
    error: str | None = None
    origin: str = ""  # the command-line spec that produced it

    @property
    def extension(self) -> str:
        return Path(self.path).suffix.lower()


def _is_hidden(rel_parts) -> bool:
    return any(p.startswith(".") for p in rel_parts)


def _scan_folder(root: Path, extensions, exclude: list[Path]) -> list[tuple[Path, str]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and not any(_same_path(here / d, ex) for ex in exclude)
        )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            if path.suffix.lower() in extensions:
                rel = path.relative_to(root).with_suffix("")
                found.append((path, rel.as_posix()))
    return found


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def discover_inputs(specs, extensions=SUPPORTED_EXTENSIONS, exclude=()) -> list[InputItem]:
    """Expand files, folders (recursive) and glob patterns into a sorted, de-duplicated list.

    Files named explicitly are kept even with an unsupported extension (they are reported as
    failed, not silently dropped); files found inside folders are filtered by extension;
    hidden files/folders and the `exclude` folders (e.g. the output folder) are skipped.
    The order (by output key, then path) does not depend on where the tree is mounted, so
    every shard of a scale-out run sees the same list.
    """
    extensions = tuple(e.lower() for e in extensions)
    exclude = [Path(e) for e in exclude]
    raw: list[InputItem] = []
    for spec in specs:
        spec = str(spec)
        path = Path(spec).expanduser()
        if glob.has_magic(spec):
            matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
            if not matches:
                raw.append(InputItem(spec, Path(spec).stem or "input", "no file matches this pattern", spec))
            for match in matches:
                mp = Path(match)
                if mp.is_dir():
                    raw.extend(
                        InputItem(str(p), f"{mp.name}/{rel}", None, spec)
                        for p, rel in _scan_folder(mp, extensions, exclude)
                    )
                elif mp.suffix.lower() in extensions and not mp.name.startswith("."):
                    raw.append(InputItem(str(mp), mp.stem, None, spec))
        elif path.is_dir():
            raw.extend(InputItem(str(p), rel, None, spec) for p, rel in _scan_folder(path, extensions, exclude))
        elif path.is_file():
            err = None
            if path.suffix.lower() not in extensions:
                err = f"unsupported file type {path.suffix or '(none)'!r} (supported: {' '.join(extensions)})"
            raw.append(InputItem(str(path), path.stem, err, spec))
        else:
            raw.append(InputItem(spec, path.stem or "input", "file not found", spec))

    # De-duplicate by real path (first occurrence wins), then sort deterministically.
    seen: set[str] = set()
    items: list[InputItem] = []
    for item in raw:
        try:
            real = os.path.realpath(item.path)
        except OSError:
            real = item.path
        if real in seen:
            continue
        seen.add(real)
        items.append(item)
    items.sort(key=lambda it: (it.key, it.extension, it.path))
    assign_unique_keys(items)
    return items


def assign_unique_keys(items: list[InputItem]) -> None:
    """Make output keys unique over the whole (un-sharded) list: a clash gets the source
    extension appended ('chair_obj'), a remaining clash a counter ('chair_obj_2')."""
    counts: dict[str, int] = {}
    for it in items:
        counts[it.key.lower()] = counts.get(it.key.lower(), 0) + 1
    used: set[str] = set()
    for it in items:
        key = _sanitize_key(it.key)
        if counts[it.key.lower()] > 1:
            key = f"{key}_{it.extension.lstrip('.') or 'file'}"
        base, n = key, 2
        while key.lower() in used:
            key = f"{base}_{n}"
            n += 1
        used.add(key.lower())
        it.key = key


def _sanitize_key(key: str) -> str:
    parts = [re.sub(r"[^\w.\-+ ]", "_", p).strip() or "_" for p in key.replace("\\", "/").split("/")]
    parts = [("_" + p) if p.startswith(".") else p for p in parts if p not in ("", ".")]
    parts = ["_" if p == ".." else p for p in parts]
    return "/".join(parts) or "input"


def take_shard(items: list, index: int, count: int) -> list:
    """Every `count`-th item starting at `index` (items already in deterministic order)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"bad shard {index}/{count}")
    return items[index::count]


def match_objects(names, pattern: str | None) -> list[str]:
    """Object names matching an fnmatch pattern ('*' or None = all); comma-separated
    patterns are alternatives. Case-sensitive, like Blender names."""
    if not pattern or pattern.strip() in ("*", "all", "ALL"):
        return list(names)
    pats = [p.strip() for p in pattern.split(",") if p.strip()]
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]


# ---------------------------------------------------------------------------- outputs
def output_paths(out_dir, key: str, parts, exports) -> dict[str, Path]:
    """Every file the batch writes for one input, by a stable id.

    Per part count k: '<key>_k<k>.blend' / '.glb' / '.fbx' / '.labels.npy'; per input:
    '<key>.labels.json' (all k, all objects) and the done-marker '<key>.done.json'.
    """
    out = Path(out_dir)
    base = out / key
    paths: dict[str, Path] = {}
    for k in parts:
        for ext in ("blend", "glb", "fbx"):
            if ext in exports:
                paths[f"{ext}:{k}"] = base.parent / f"{base.name}_k{k}.{ext}"
        if "labels" in exports:
            paths[f"npy:{k}"] = base.parent / f"{base.name}_k{k}.labels.npy"
    if "labels" in exports:
        paths["json"] = base.parent / f"{base.name}.labels.json"
    return paths


def done_marker_path(out_dir, key: str) -> Path:
    base = Path(out_dir) / key
    return base.parent / f"{base.name}{DONE_SUFFIX}"


def running_marker_path(out_dir, key: str) -> Path:
    base = Path(out_dir) / key
    return base.parent / f"{base.name}{RUNNING_SUFFIX}"


def read_attempts(marker: Path) -> int:
    """How many earlier attempts on an input ended without Python regaining control
    (a crash in an importer, a SIGKILL, a pre-empted job): their running-markers remain."""
    try:
        return int(json.loads(Path(marker).read_text()).get("attempts", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def begin_attempt(marker: Path, info: dict) -> int:
    """Record that an input is being worked on (attempt count + who); returns the count."""
    attempts = read_attempts(marker) + 1
    atomic_write_json(marker, {**info, "attempts": attempts})
    return attempts


def end_attempt(marker: Path) -> None:
    try:
        Path(marker).unlink()
    except FileNotFoundError:
        pass


def settings_fingerprint(settings: dict) -> str:
    """Stable short hash of everything that changes an input's outputs."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def input_signature(path) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def check_finished(marker: Path, fingerprint: str, signature: dict | None, expected_outputs) -> tuple[bool, str]:
    """An input counts as finished when its done-marker exists, was written with the same
    settings fingerprint for the same input file (size, mtime), and every output it
    lists, and every output expected now, exists. Returns (finished, why-not)."""
    try:
        record = json.loads(Path(marker).read_text())
    except FileNotFoundError:
        return False, "no done-marker"
    except (OSError, ValueError):
        return False, "unreadable done-marker"
    if record.get("fingerprint") != fingerprint:
        return False, "settings changed"
    if signature is not None and record.get("input_signature") != signature:
        return False, "input file changed"
    listed = [Path(marker).parent / p for p in record.get("outputs", [])]
    for p in list(listed) + [Path(p) for p in expected_outputs]:
        if not p.is_file():
            return False, f"missing output {p.name}"
    return True, ""


def read_done_record(marker: Path) -> dict:
    try:
        return json.loads(Path(marker).read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------------------- atomic writes
def temp_path_for(final) -> Path:
    """A hidden sibling of `final` that keeps its extension (exporters that append a
    missing extension leave it alone): 'dir/.name.tmp-<pid>.ext'."""
    final = Path(final)
    ext = final.suffix
    return final.parent / f".{final.name}{TEMP_TAG}{os.getpid()}{ext}"


def commit_temp(tmp, final) -> None:
    """Rename a finished temp file onto its final name (atomic on one file system)."""
    tmp, final = Path(tmp), Path(final)
    if not tmp.is_file():
        raise OSError(f"writer produced no file at {tmp}")
    _fsync_file(tmp)
    os.replace(tmp, final)


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class atomic_path:
    """Context manager: yields a temp path to write; on success renames it to `final`,
    on error deletes it. `with atomic_path(p) as tmp: write(tmp)`."""

    def __init__(self, final):
        self.final = Path(final)
        self.tmp = temp_path_for(self.final)

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            commit_temp(self.tmp, self.final)
        else:
            try:
                self.tmp.unlink()
            except OSError:
                pass
        return False


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def atomic_write_json(path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False, default=_json_default) + "\n")


def atomic_save_npy(path, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array))


def _json_default(obj):
    try:
        import numpy as np

        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.floating):
            return float(obj)
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def remove_stale_temps(paths) -> int:
    """Delete temp files a killed run left next to these final paths (any pid)."""
    removed = 0
    for final in paths:
        final = Path(final)
        if not final.parent.is_dir():
            continue
        for p in final.parent.glob(f".{glob.escape(final.name)}{TEMP_TAG}*"):
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
    return removed


# ---------------------------------------------------------------------------- summary + progress
@dataclass
class Summary:
    """Run summary: one record per input (status ok / failed / skipped), rewritten
    atomically after every input so a killed run still leaves a valid file."""

    path: Path | None
    run: dict = field(default_factory=dict)
    records: list = field(default_factory=list)

    def add(self, record: dict) -> None:
        self.records.append(record)
        self.write()

    def counts(self) -> dict:
        c = {"ok": 0, "failed": 0, "skipped": 0}
        for r in self.records:
            c[r["status"]] = c.get(r["status"], 0) + 1
        return c

    def to_dict(self) -> dict:
        return {**self.run, "counts": self.counts(), "inputs": self.records}

    def write(self) -> None:
        if self.path is not None:
            atomic_write_json(self.path, self.to_dict())


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(max(0.0, seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


class Progress:
    """Counts and ETA. The ETA uses the mean time of inputs actually processed (skips are
    near-free and would make it optimistic)."""

    def __init__(self, total: int, clock=time.monotonic):
        self.total = total
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.worked = 0
        self.work_seconds = 0.0
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}

    def update(self, status: str, seconds: float) -> None:
        self.done += 1
        self.counts[status] = self.counts.get(status, 0) + 1
        if status != "skipped":
            self.worked += 1
            self.work_seconds += seconds

    def eta(self) -> float | None:
        remaining = self.total - self.done
        if remaining <= 0:
            return 0.0
        if not self.worked:
            return None
        return remaining * self.work_seconds / self.worked

    def line(self, status: str, name: str, seconds: float, reason: str = "") -> str:
        c = self.counts
        text = (
            f"[{self.done}/{self.total}] {status:<7} {name} ({seconds:.1f}s)"
            f"  | ok {c.get('ok', 0)} failed {c.get('failed', 0)} skipped {c.get('skipped', 0)}"
            f" | elapsed {format_duration(self.clock() - self.start)} ETA {format_duration(self.eta())}"
        )
        if reason:
            text += f"\n    reason: {reason}"
        return text
