"""Pure planning logic of the headless batch (no bpy, no torch): argument parsing helpers,
input discovery, deterministic sharding, output naming, the done/skip decision, atomic
writes, the JSON summary and progress lines with ETA.

`batch.py` loads this file by path, so it must stay importable on its own: standard
library and numpy only, no package-relative imports.
"""
from __future__ import annotations

import errno
import fnmatch
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def _load_output_check():
    """output_check.py next to this file, by path (this module is itself loaded by path)."""
    name = "partfield_batch_output_check"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "output_check.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


output_check = _load_output_check()
IncompleteOutput = output_check.IncompleteOutput

SUPPORTED_EXTENSIONS = (".blend", ".obj", ".fbx", ".glb", ".gltf", ".ply", ".stl", ".off")
MODES = ("vertex-groups", "face-attribute", "objects")
EXPORTS = ("blend", "glb", "fbx", "labels")
# Bump when the meaning of outputs changes, so older done-markers stop counting as finished.
OUTPUT_FORMAT_VERSION = 1
TOOL_NAME = "partfield_blender/batch.py"  # the summary's "tool": marks a folder as batch output
OUTPUT_MARKER = ".partfield-batch-output"  # written into every output folder; such folders are not inputs
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


AUTO = "auto"  # a part count: each object at its own result's suggested count (outputs '<key>_kauto.*')


def parse_parts(text: str) -> tuple:
    """'8' -> (8,), '4,8,12' -> (4, 8, 12), '2..20' -> (2, ..., 20), '2..10:2' -> (2, 4, ..., 10),
    'auto' -> ('auto',), '4,auto' -> (4, 'auto').

    Items may be mixed ('2,4..6'); the numbers are sorted and unique, every k >= 1, `AUTO` last.
    The syntax is model_runtime.part_counts' (shared with `partfield segment`).
    """
    return _part_counts().parse_part_counts(text, allow_auto=True)


def suggested_parts(result) -> int:
    """The part count `auto` stands for on one object's `SegmentationResult`."""
    return int(_part_counts().suggested_part_count(result))


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


def _scan_folder(root: Path, extensions, exclude: list[Path], skipped: list | None = None) -> list[tuple[Path, str]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        in_output = is_output_folder(here, filenames) or any(_same_path(here, ex) for ex in exclude)
        if in_output and here != root:  # a batch output folder inside the inputs: none of it is input
            if skipped is not None:
                skipped.extend(str(here / f) for f in filenames if Path(f).suffix.lower() in extensions)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and not any(_same_path(here / d, ex) for ex in exclude)
        )
        made_here = _output_stems(filenames)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            if path.suffix.lower() in extensions:
                if _is_earlier_output(name, made_here, in_output):
                    if skipped is not None:
                        skipped.append(str(path))
                    continue
                rel = path.relative_to(root).with_suffix("")
                found.append((path, rel.as_posix()))
    return found


def _found_output(path: Path, exclude) -> bool:
    """A file a pattern matched that is an earlier output."""
    try:
        names = os.listdir(path.parent)
    except OSError:
        return False
    in_output = is_output_folder(path.parent, names) or any(_same_path(path.parent, ex) for ex in exclude)
    return _is_earlier_output(path.name, _output_stems(names), in_output)


def mark_output_folder(folder) -> None:
    """Mark `folder` as batch output, so a later run given a parent folder skips it."""
    marker = Path(folder) / OUTPUT_MARKER
    if not marker.exists():
        try:
            marker.write_text(f"written by {TOOL_NAME}; folders holding this file are not searched for inputs\n")
        except OSError:
            pass


def is_output_folder(folder: Path, filenames) -> bool:
    """A folder the batch wrote into: its marker, or a summary naming this tool."""
    names = set(filenames)
    if OUTPUT_MARKER in names:
        return True
    for name in names:
        if name == "summary.json" or (name.startswith("summary_shard") and name.endswith(".json")):
            try:
                with open(folder / name, encoding="utf-8") as fh:
                    head = fh.read(4096)
            except OSError:
                continue
            if f'"tool": "{TOOL_NAME}"' in head:
                return True
    return False


_LABELS_SUFFIX = ".labels.json"
_K_SUFFIX = re.compile(r"^(?P<stem>.+)_k\d+$")


def _output_stems(filenames) -> set[str]:
    """Names NAME with a NAME.labels.json or NAME.done.json here: both the batch and the
    `segment` CLI write one next to their NAME_kK.* outputs."""
    stems = set()
    for name in filenames:
        for suffix in (_LABELS_SUFFIX, DONE_SUFFIX):
            if name.endswith(suffix) and len(name) > len(suffix):
                stems.add(name[: -len(suffix)])
    return stems


def _is_earlier_output(name: str, stems: set[str], in_output_folder: bool = False) -> bool:
    """NAME_kK.ext beside NAME.labels.json / NAME.done.json, or anywhere in a batch output
    folder (an interrupted input's outputs have no done-marker yet)."""
    m = _K_SUFFIX.match(Path(name).stem)
    return bool(m and (in_output_folder or m.group("stem") in stems))


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def discover_inputs(specs, extensions=SUPPORTED_EXTENSIONS, exclude=(), skipped: list | None = None) -> list[InputItem]:
    """Expand files, folders (recursive) and glob patterns into a sorted, de-duplicated list.

    Files named explicitly are kept even with an unsupported extension (they are reported as
    failed, not silently dropped); files found inside folders are filtered by extension;
    hidden files/folders and the `exclude` folders (e.g. the output folder) are skipped, and so
    are earlier outputs found inside folders (see `is_output_folder`, `_is_earlier_output`):
    their paths are appended to `skipped`.
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
                        for p, rel in _scan_folder(mp, extensions, exclude, skipped)
                    )
                elif mp.suffix.lower() in extensions and not mp.name.startswith("."):
                    if _found_output(mp, exclude):
                        if skipped is not None:
                            skipped.append(str(mp))
                        continue
                    raw.append(InputItem(str(mp), mp.stem, None, spec))
        elif path.is_dir():
            raw.extend(InputItem(str(p), rel, None, spec)
                       for p, rel in _scan_folder(path, extensions, exclude, skipped))
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


class OutputError(OSError):
    """An output could not be written completely (disk full, read-only, a writer that failed);
    its temporary was removed and the final name left as it was."""


def commit_temp(tmp, final) -> None:
    """Check a finished temp file (complete for its type, flushed to disk), then rename it
    onto its final name (atomic on one file system). On any failure the temp file is removed
    and OutputError raised; `final` is left untouched."""
    tmp, final = Path(tmp), Path(final)
    try:
        if not tmp.is_file():
            raise OSError(f"writer produced no file at {tmp.name}")
        _fsync_file(tmp)
        output_check.check_file(tmp, output_check.kind_of(final))
        os.replace(tmp, final)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"could not write {final.name}: {_describe_os_error(exc)}{_space_hint(final)}") from exc


def _describe_os_error(exc: OSError) -> str:
    if isinstance(exc, IncompleteOutput):
        text = str(exc)
        name, sep, rest = text.partition(": ")
        return rest if sep and name.startswith(".") else text
    if exc.errno is not None and exc.strerror:
        return f"{exc.strerror} [{errno.errorcode.get(exc.errno, exc.errno)}]"
    return str(exc) or type(exc).__name__


def _space_hint(path: Path) -> str:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    return f" ({free / 1e6:.1f} MB free on that disk)" if free < 512e6 else ""


def _remove(path: Path) -> None:
    try:
        Path(path).unlink()
    except OSError:
        pass


def _fsync_file(path: Path) -> None:
    """Flush to disk; an error a delayed write reports only now (ENOSPC, EIO) is raised."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):  # no fsync on this file system
            raise
    finally:
        os.close(fd)


# Called before every rename of a finished output: raises to stop (an interrupt was asked for),
# so a half-done input never gets a new final file after Ctrl-C / SIGTERM.
before_commit = None


class atomic_path:
    """Context manager: yields a temp path to write; on success checks and renames it to
    `final`, on error (or when the check fails) deletes it. `with atomic_path(p) as tmp: write(tmp)`."""

    def __init__(self, final, interruptible: bool = True):
        self.final = Path(final)
        self.tmp = temp_path_for(self.final)
        self.interruptible = interruptible  # False: the summary, which must record the interrupt

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                if before_commit is not None and self.interruptible:
                    before_commit()
            except BaseException:
                _remove(self.tmp)
                raise
            commit_temp(self.tmp, self.final)
        else:
            _remove(self.tmp)
            if isinstance(exc, OSError) and not isinstance(exc, OutputError):  # e.g. ENOSPC from write()
                raise OutputError(f"could not write {self.final.name}: {_describe_os_error(exc)}"
                                  f"{_space_hint(self.final)}") from exc
        return False


def check_output_folder(path) -> str | None:
    """None when files can be created in folder `path` (made if missing), else the reason.
    Writes and removes a probe file: permission bits do not stop root, a read-only mount does."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"the output path {path} is a file, not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the output folder {path}: {_describe_os_error(exc)}"
    probe = path / f".partfield-write-test-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"ok")
        probe.unlink()
    except OSError as exc:
        _remove(probe)
        return f"cannot write in the output folder {path}: {_describe_os_error(exc)}"
    return None


def atomic_write_text(path, text: str, interruptible: bool = True) -> None:
    with atomic_path(path, interruptible) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def atomic_write_json(path, data, interruptible: bool = True) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False, default=_json_default) + "\n", interruptible)


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


def remove_stale_temps(paths, pid: int | None = None) -> int:
    """Delete temp files a killed run left next to these final paths (any pid, or only `pid`'s),
    including a writer's own side files ('.x.blend.tmp-12.blend@')."""
    removed = 0
    tag = f"{TEMP_TAG}{pid}." if pid is not None else TEMP_TAG
    for final in paths:
        final = Path(final)
        if not final.parent.is_dir():
            continue
        for p in final.parent.glob(f".{glob.escape(final.name)}{glob.escape(tag)}*"):
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
            atomic_write_json(self.path, self.to_dict(), interruptible=False)


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
