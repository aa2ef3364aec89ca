#!/usr/bin/env python3
"""Build the PartField Blender extension zip for one platform and one CPython version.

    python build.py --platform linux-x64 --python 3.11 [--torch cpu|cuda] [--wheel-dir DIR] [--out dist]

Steps: check the source manifest with Blender's own validator, collect the platform's wheels
(torch, scipy, scikit-learn, safetensors and what they need at runtime; never numpy, which
Blender ships), build `model_runtime` as its own wheel (with the bundled default model), stage
partfield_blender/ + blender_manifest.toml + LICENSE + wheels/ as the extension root, write the
`platforms` and `wheels` lists into the staged manifest, zip it with Blender's extension builder
and validate the zip with Blender's validator. Every failure exits non-zero with a message
that names what is wrong (the manifest field, the missing wheel, the missing weights file).

`--wheel-dir DIR` builds offline from the wheels in DIR. Without it, wheels are looked up in
wheels/ and missing ones are fetched there with `pip download --only-binary=:all:`.
The extension builder is `blender_ext.py` from the `bpy` wheel (or `--blender-ext PATH`).
"""
from __future__ import annotations

import argparse
import email.parser
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

try:  # `packaging` is in every pip; prefer the standalone one when installed.
    from packaging import markers as pk_markers
    from packaging import requirements as pk_requirements
    from packaging import tags as pk_tags
    from packaging import utils as pk_utils
    from packaging import version as pk_version
except ImportError:  # pragma: no cover - depends on the interpreter running build.py
    from pip._vendor.packaging import markers as pk_markers
    from pip._vendor.packaging import requirements as pk_requirements
    from pip._vendor.packaging import tags as pk_tags
    from pip._vendor.packaging import utils as pk_utils
    from pip._vendor.packaging import version as pk_version

REPO = Path(__file__).resolve().parent
ADDON_DIR = REPO / "partfield_blender"
RUNTIME_DIR = REPO / "model_runtime"
SOURCE_MANIFEST = REPO / "blender_manifest.toml"
LICENSE_FILE = REPO / "LICENSE"
PYPROJECT = REPO / "pyproject.toml"
DEFAULT_WHEEL_CACHE = REPO / "wheels"
STAGING_ROOT = REPO / "build_staging"
DEFAULT_MODEL = "partfield_small.safetensors"
# Our small model is a few MB; anything near the released checkpoint's size (about 1.4 GB,
# ~0.7 GB as fp16) is refused so it can never ship by accident.
MAX_BUNDLED_MODEL_BYTES = 200 * 1024 * 1024

# Which CPython each Blender runs: a zip holds cpXY wheels, and Blender refuses a zip whose
# wheels do not match its Python, so each Python needs its own zip.
PYTHONS = {"3.11": "Blender 4.2 LTS - 5.0", "3.13": "Blender 5.1 and newer"}


@dataclass(frozen=True)
class Target:
    """One Blender platform: its wheel platform tags (preferred first) and marker values."""

    platform: str
    wheel_platforms: tuple[str, ...]
    marker_env: dict
    torch_cuda: bool  # PyTorch publishes CUDA wheels for this platform


def _manylinux(arch: str) -> tuple[str, ...]:
    # Blender 4.2+ needs glibc 2.28, so manylinux_2_28 is the newest tag we accept.
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(28, 4, -1)]
    tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tuple(tags)


def _macos(arch: str) -> tuple[str, ...]:
    # Oldest macOS first, so pip and the wheel-dir lookup prefer the most compatible build.
    versions = [(10, m) for m in range(9, 17)] + [(major, 0) for major in range(11, 15)]
    tags = []
    for major, minor in versions:
        if arch == "arm64" and major < 11:
            tags.append(f"macosx_{major}_{minor}_universal2")
            continue
        tags += [f"macosx_{major}_{minor}_{arch}", f"macosx_{major}_{minor}_universal2"]
    return tuple(tags)


def _env(os_name, sys_platform, system, machine):
    return {"os_name": os_name, "sys_platform": sys_platform, "platform_system": system,
            "platform_machine": machine, "platform_release": "", "platform_version": "",
            "implementation_name": "cpython", "platform_python_implementation": "CPython"}


TARGETS = {
    "linux-x64": Target("linux-x64", _manylinux("x86_64"), _env("posix", "linux", "Linux", "x86_64"), True),
    "windows-x64": Target("windows-x64", ("win_amd64",), _env("nt", "win32", "Windows", "AMD64"), True),
    "macos-arm64": Target("macos-arm64", _macos("arm64"), _env("posix", "darwin", "Darwin", "arm64"), False),
    "macos-x64": Target("macos-x64", _macos("x86_64"), _env("posix", "darwin", "Darwin", "x86_64"), False),
}

# Exact versions of everything bundled: the versions the pinned dev/test environment runs
# (requirements.txt), so the zip ships what the tests exercised. Dependencies not listed
# here (the nvidia-* libraries of a CUDA build) follow torch's own exact pins.
BUNDLE_PINS = {
    "torch": "2.13.0",
    "scipy": "1.17.1",
    "scikit-learn": "1.9.1",
    "safetensors": "0.8.0",
    "joblib": "1.6.0",
    "threadpoolctl": "3.8.0",
    "narwhals": "2.29.0",
    "cloudpickle": "3.1.3",
    "filelock": "4.3.1",
    "typing-extensions": "4.16.0",
    "sympy": "1.14.0",
    "mpmath": "1.3.0",
    "networkx": "3.6.1",
    "jinja2": "3.1.6",
    "markupsafe": "3.0.4",
    "fsspec": "2026.9.0",
}
# What the extension imports directly; the rest follows from their Requires-Dist.
ROOT_REQUIREMENTS = ("torch", "scipy", "scikit-learn", "safetensors")
# Declared requirements that are deliberately left out, with the reason.
NOT_BUNDLED = {
    "numpy": "Blender ships numpy; a second copy would clash with the one bpy uses",
    "setuptools": "torch needs it only to compile C++ extensions, never at inference",
}
# Why a torch wheel can be missing for a target, added to the "missing wheel" message.
TORCH_HINTS = {
    "macos-x64": "PyTorch publishes no macOS Intel (x86_64) wheels after torch 2.2, so there is no "
                 "macos-x64 build with torch 2.13",
    "linux-x64": "the Linux CPU build (+cpu) comes from https://download.pytorch.org/whl/cpu; without "
                 "network access put it in --wheel-dir",
}
TORCH_INDEX = {
    ("linux-x64", "cpu"): "https://download.pytorch.org/whl/cpu",
    ("windows-x64", "cuda"): "https://download.pytorch.org/whl/cu130",
}


class BuildError(RuntimeError):
    """A build step failed; the message says what and where."""


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Blender's extension builder

def find_blender_ext(explicit: str | None) -> Path:
    """Locate Blender's `blender_ext.py` (shipped in the bpy wheel) without importing bpy."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise BuildError(f"--blender-ext {path} does not exist")
        return path
    spec = importlib.util.find_spec("bpy")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        hits = sorted(Path(root).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    raise BuildError("Blender's extension builder (blender_ext.py) was not found: install the pinned "
                     "bpy wheel (requirements.txt) or pass --blender-ext PATH")


def blender_tags_file(blender_ext: Path) -> Path | None:
    """Blender's list of valid extension tags, next to the builder in the same bpy tree."""
    path = blender_ext.parents[3] / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    return path if path.is_file() else None


def load_blender_ext(blender_ext: Path):
    spec = importlib.util.spec_from_file_location("_pf_blender_ext", blender_ext)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_blender_ext(blender_ext: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(blender_ext), *args], capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise BuildError(f"Blender's extension tool failed ({' '.join(args[:1])}):\n{out}")
    return out


# ---------------------------------------------------------------------------------------------
# Manifest

GENERATED_KEYS = ("platforms", "wheels")


def read_manifest(path: Path, blender_ext: Path) -> tuple[dict, str]:
    """Parse and validate the source manifest with Blender's own rules; return (data, text)."""
    if not path.is_file():
        raise BuildError(f"manifest {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as ex:
        raise BuildError(f"{path.name}: not valid TOML: {ex}") from None
    ext = load_blender_ext(blender_ext)
    result = ext.pkg_manifest_from_dict_and_validate_all_errros(data, from_repo=False, strict=True)
    errors = list(result) if isinstance(result, list) else []
    if "build" in data:
        build = ext.PkgManifest_Build.from_dict_all_errors(data["build"], extra_paths=())
        if isinstance(build, list):
            errors += build
    if data.get("type") != "add-on":
        errors.append(f'"type" must be "add-on", found {data.get("type")!r}')
    if errors:
        raise BuildError(f"{path.name} is invalid:\n  " + "\n  ".join(errors))
    tags_file = blender_tags_file(blender_ext)
    if tags_file and data.get("tags"):
        valid = ext.pkg_manifest_tags_load_valid_map(str(tags_file))
        if not isinstance(valid, str):
            bad = [t for t in data["tags"] if t not in valid.get("add-on", ())]
            if bad:
                raise BuildError(f"{path.name} is invalid: unknown tags {bad}")
    for key in GENERATED_KEYS:
        lines = [ln for ln in text.splitlines() if re.match(rf"\s*{key}\s*=", ln)]
        if key in data and (len(lines) != 1 or not lines[0].rstrip().endswith("]")):
            raise BuildError(f'{path.name}: keep "{key} = [...]" on one line (build.py rewrites it)')
    return data, text


def staged_manifest_text(text: str, platform: str, wheel_paths: list[str]) -> str:
    """The source manifest with `platforms` / `wheels` set for this build (top-level keys)."""
    lines = [ln for ln in text.splitlines() if not re.match(r"\s*(platforms|wheels)\s*=", ln)]
    generated = [
        "# Written by build.py for this zip.",
        f"platforms = [{json.dumps(platform)}]",
        "wheels = [",
        *[f"  {json.dumps(w)}," for w in wheel_paths],
        "]",
    ]
    first_table = next((i for i, ln in enumerate(lines) if re.match(r"\s*\[", ln)), len(lines))
    out = lines[:first_table] + generated + [""] + lines[first_table:]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Wheels

@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # canonical project name
    version: object  # packaging Version

    @property
    def filename(self) -> str:
        return self.path.name


def supported_tags(target: Target, python: str) -> list:
    """Interpreter/ABI/platform tags a Blender on `target` with CPython `python` accepts."""
    pyver = tuple(int(x) for x in python.split("."))
    interp = f"cp{pyver[0]}{pyver[1]}"
    plats = list(target.wheel_platforms)
    tags = list(pk_tags.cpython_tags(pyver, abis=[interp], platforms=plats))
    tags += list(pk_tags.compatible_tags(pyver, interpreter=interp, platforms=plats))
    return tags


def wheel_requires(path: Path) -> list[str]:
    """Requires-Dist lines from a wheel's METADATA."""
    with zipfile.ZipFile(path) as zf:
        meta = next((n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
        if meta is None:
            raise BuildError(f"{path.name} is not a valid wheel (no .dist-info/METADATA)")
        msg = email.parser.BytesParser().parsebytes(zf.read(meta), headersonly=True)
    return msg.get_all("Requires-Dist") or []


def find_wheel(dirs: list[Path], req, tags: list) -> Wheel | None:
    """Best wheel in `dirs` for requirement `req` (newest version, then preferred tag)."""
    rank = {t: i for i, t in enumerate(tags)}
    best = None
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.whl")):
            try:
                name, ver, _build, wtags = pk_utils.parse_wheel_filename(path.name)
            except Exception:
                continue
            if name != pk_utils.canonicalize_name(req.name):
                continue
            if not req.specifier.contains(ver, prereleases=True):
                continue
            hits = [rank[t] for t in wtags if t in rank]
            if not hits:
                continue
            key = (ver, -min(hits))
            if best is None or key > best[0]:
                best = (key, Wheel(path, name, ver))
    return best[1] if best else None


def pip_download(req_str: str, target: Target, python: str, dest: Path, index_url: str | None) -> None:
    """Fetch one binary wheel for the target platform/Python with pip (no dependencies)."""
    interp = "cp" + python.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--dest", str(dest), "--python-version", python, "--implementation", "cp",
           "--abi", interp, "--abi", "abi3", "--abi", "none", "--quiet", "--disable-pip-version-check"]
    for plat in target.wheel_platforms:
        cmd += ["--platform", plat]
    if index_url:
        cmd += ["--extra-index-url", index_url]
    cmd.append(req_str)
    log(f"  pip download {req_str} ({target.platform}, cp{python.replace('.', '')})")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise BuildError(f"missing wheel: pip could not download {req_str} for {target.platform} / "
                         f"CPython {python}:\n{tail}")


def marker_env(target: Target, python: str) -> dict:
    env = dict(target.marker_env)
    env.update(python_version=python, python_full_version=python + ".0",
               implementation_version=python + ".0", extra="")
    return env


def torch_requirement(target: Target, torch: str) -> str:
    pin = BUNDLE_PINS["torch"]
    if target.platform == "linux-x64" and torch == "cpu":
        return f"torch=={pin}+cpu"  # PyPI's Linux torch is the CUDA build; the CPU one is +cpu
    return f"torch=={pin}"


def check_torch_flavour(wheel: Wheel, target: Target, torch: str) -> None:
    local = wheel.version.local or ""
    if torch == "cuda":
        if not target.torch_cuda:
            raise BuildError(f"--torch cuda: PyTorch has no CUDA build for {target.platform}")
        if local == "cpu":
            raise BuildError(f"--torch cuda, but {wheel.filename} is the CPU build")
    elif local.startswith("cu") or local.startswith("rocm"):
        raise BuildError(f"--torch cpu, but {wheel.filename} is a GPU build")
    elif target.platform == "linux-x64" and local != "cpu":
        raise BuildError(f"--torch cpu on linux-x64 needs torch's +cpu wheel; {wheel.filename} is "
                         "PyPI's CUDA build (pulls several GB of nvidia-* wheels)")


def _find_or_fetch(req, name, target, python, torch, wheel_dir, cache_dir, dirs, tags, needed_by) -> Wheel:
    wheel = find_wheel(dirs, req, tags)
    hint = f" ({TORCH_HINTS[target.platform]})" if name == "torch" and target.platform in TORCH_HINTS else ""
    if wheel is None and wheel_dir is None:
        index = TORCH_INDEX.get((target.platform, torch)) if name == "torch" else None
        try:
            pip_download(str(req), target, python, cache_dir, index)
        except BuildError as ex:
            raise BuildError(f"{ex}{hint}") from None
        wheel = find_wheel(dirs, req, tags)
    if wheel is None:
        where = f"in --wheel-dir {wheel_dir}" if wheel_dir else f"after pip download into {cache_dir}"
        raise BuildError(f"missing wheel: {req} for {target.platform} / CPython {python} {where} "
                         f"(needed by {needed_by}){hint}")
    if name == "torch":
        check_torch_flavour(wheel, target, torch)
    return wheel


def collect_wheels(target: Target, python: str, torch: str, wheel_dir: Path | None,
                   cache_dir: Path, roots: list[str] | None = None) -> list[Wheel]:
    """Resolve the bundle's dependency closure for the target and return its wheels.

    Requirements are followed through each wheel's Requires-Dist, with markers evaluated for
    the target (not this machine) and requested extras honoured. With `wheel_dir` (offline)
    only that folder is searched; otherwise `cache_dir` is searched and missing wheels are
    downloaded into it. `roots` replaces the default top-level requirements (tests).
    """
    tags = supported_tags(target, python)
    env = marker_env(target, python)
    dirs = [wheel_dir] if wheel_dir else [cache_dir]
    if wheel_dir is None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    queue = list(roots) if roots is not None else (
        [torch_requirement(target, torch)] + [f"{n}=={BUNDLE_PINS[n]}" for n in ROOT_REQUIREMENTS[1:]])
    chosen: dict[str, Wheel] = {}
    done_extras: dict[str, set] = {}
    wanted_by: dict[str, str] = {}
    while queue:
        req = pk_requirements.Requirement(queue.pop(0))
        name = pk_utils.canonicalize_name(req.name)
        if name in NOT_BUNDLED:
            continue
        extras = set(req.extras)
        if name in BUNDLE_PINS and name != "torch":
            req = pk_requirements.Requirement(f"{name}=={BUNDLE_PINS[name]}")
        if name in chosen:
            if not req.specifier.contains(chosen[name].version, prereleases=True):
                raise BuildError(f"version conflict: {chosen[name].filename} does not satisfy {req} "
                                 f"(required by {wanted_by.get(name, '?')})")
            pending = extras - done_extras[name]
        else:
            chosen[name] = _find_or_fetch(req, name, target, python, torch, wheel_dir, cache_dir, dirs, tags,
                                          wanted_by.get(name, "the extension"))
            done_extras[name] = set()
            pending = {""} | extras
        for extra in sorted(pending):  # "" = the unconditional requirements
            done_extras[name].add(extra)
            for dep in wheel_requires(chosen[name].path):
                dreq = pk_requirements.Requirement(dep)
                if dreq.marker is not None:
                    if not dreq.marker.evaluate({**env, "extra": extra}):
                        continue
                    if extra and dreq.marker.evaluate({**env, "extra": ""}):
                        continue  # a base requirement, queued with extra ""
                elif extra:
                    continue
                dreq.marker = None
                wanted_by.setdefault(pk_utils.canonicalize_name(dreq.name), chosen[name].filename)
                queue.append(str(dreq))
    return list(chosen.values())


# ---------------------------------------------------------------------------------------------
# model_runtime wheel

def runtime_package_data() -> list[str]:
    """The allow-listed package data patterns of model_runtime (from pyproject.toml)."""
    cfg = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    return list(cfg["tool"]["setuptools"]["package-data"]["model_runtime"])


def check_default_model(runtime_dir: Path) -> Path:
    weights = runtime_dir / "weights"
    model = weights / DEFAULT_MODEL
    if not model.is_file():
        raise BuildError(f"missing default model: {model.relative_to(REPO) if model.is_relative_to(REPO) else model} "
                         "(the extension ships it inside the model_runtime wheel; train or copy it first)")
    if model.stat().st_size > MAX_BUNDLED_MODEL_BYTES:
        raise BuildError(f"{model.name} is {model.stat().st_size / 2**20:.0f} MB: refusing to bundle a model of "
                         "the released checkpoint's size (NVIDIA's weights never ship in the zip)")
    if not (weights / "MODEL_CARD.md").is_file():
        log(f"warning: {weights / 'MODEL_CARD.md'} is missing; the wheel ships without a model card")
    return model


def _runtime_file_allowed(rel: str, data_patterns: list[str]) -> bool:
    parts = rel.split("/")
    if any(p in ("__pycache__", "tests", "cache", "data") or p.startswith(".") for p in parts[:-1]):
        return False
    if rel.endswith(".py"):
        return not parts[-1].startswith("test_")
    return any(fnmatch.fnmatchcase(rel, pat) for pat in data_patterns)


def stage_runtime_source(dest: Path, runtime_dir: Path) -> list[str]:
    """Copy pyproject.toml, LICENSE and the allow-listed model_runtime files into `dest`."""
    patterns = runtime_package_data()
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "model_runtime").mkdir(parents=True)
    shutil.copy2(PYPROJECT, dest / "pyproject.toml")
    shutil.copy2(LICENSE_FILE, dest / "LICENSE")
    copied = []
    for path in sorted(runtime_dir.rglob("*")):
        rel = path.relative_to(runtime_dir).as_posix()
        if path.is_file() and _runtime_file_allowed(rel, patterns):
            out = dest / "model_runtime" / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
            copied.append(rel)
    return copied


def build_runtime_wheel(runtime_dir: Path, work: Path, out_dir: Path) -> Path:
    """Build model_runtime's wheel from a staged copy (the repo tree stays clean)."""
    src = work / "model_runtime_src"
    stage_runtime_source(src, runtime_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("partfield_model_runtime-*.whl"):
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--wheel-dir", str(out_dir), str(src)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(4, "--no-build-isolation")  # offline: use the installed setuptools
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    wheels = sorted(out_dir.glob("partfield_model_runtime-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise BuildError("building the model_runtime wheel failed:\n" + (proc.stdout + proc.stderr)[-3000:])
    with zipfile.ZipFile(wheels[0]) as zf:
        names = zf.namelist()
    if f"model_runtime/weights/{DEFAULT_MODEL}" not in names:
        raise BuildError(f"{wheels[0].name} lacks model_runtime/weights/{DEFAULT_MODEL}")
    return wheels[0]


# ---------------------------------------------------------------------------------------------
# Staging, zipping, checks

ADDON_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "tests", "test_*.py", "*.blend1")
# Never inside a release zip, whatever the manifest's exclude patterns say.
FORBIDDEN_IN_ZIP = ("*.ckpt", "*coseg*", "tests/*", "*/tests/*", "*.npz", "*.npy", "__pycache__/*",
                    "*/__pycache__/*")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_extension(stage: Path, manifest_text: str, platform: str, wheels: list[Path],
                    addon_dir: Path = ADDON_DIR) -> list[str]:
    """Write the extension root: add-on files, LICENSE, wheels/ and the generated manifest."""
    if stage.exists():
        shutil.rmtree(stage)
    if not (addon_dir / "__init__.py").is_file():
        raise BuildError(f"{addon_dir}/__init__.py is missing: not an add-on package")
    shutil.copytree(addon_dir, stage, ignore=ADDON_IGNORE)
    for reserved in ("blender_manifest.toml", "LICENSE", "wheels"):
        if (stage / reserved).exists():
            raise BuildError(f"partfield_blender/{reserved} clashes with a file build.py writes")
    shutil.copy2(LICENSE_FILE, stage / "LICENSE")
    (stage / "wheels").mkdir()
    rel = []
    for whl in sorted(wheels, key=lambda p: p.name.lower()):
        _link_or_copy(whl, stage / "wheels" / whl.name)
        rel.append(f"./wheels/{whl.name}")
    (stage / "blender_manifest.toml").write_text(staged_manifest_text(manifest_text, platform, rel),
                                                 encoding="utf-8")
    return rel


def check_zip(zip_path: Path, platform: str, wheel_rel: list[str]) -> dict:
    """Check the built zip: generated manifest, exactly our wheels, nothing forbidden."""
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
    if manifest.get("platforms") != [platform]:
        raise BuildError(f"{zip_path.name}: manifest platforms {manifest.get('platforms')} != [{platform!r}]")
    if manifest.get("wheels") != wheel_rel:
        raise BuildError(f"{zip_path.name}: manifest wheels differ from the staged wheels")
    in_zip_wheels = sorted("./" + n for n in names if n.startswith("wheels/") and n.endswith(".whl"))
    if in_zip_wheels != sorted(wheel_rel):
        raise BuildError(f"{zip_path.name}: wheels in the zip {in_zip_wheels} != manifest {wheel_rel}")
    bad = [n for n in names if any(fnmatch.fnmatch(n, pat) for pat in FORBIDDEN_IN_ZIP)]
    bad += [n for n in names if re.match(r"wheels/numpy-", n)]
    if bad:
        raise BuildError(f"{zip_path.name} contains files that must never ship: {bad[:10]}")
    return {"infos": infos, "manifest": manifest}


def minimum_os(wheel_names: list[str], target: Target) -> str:
    """The oldest OS release every bundled wheel supports (glibc for Linux, macOS version)."""
    need = (0, 0)
    for name in wheel_names:
        plats = {t.platform for t in pk_utils.parse_wheel_filename(name)[3]} & set(target.wheel_platforms)
        versions = []
        for plat in plats:
            m = re.match(r"manylinux_(\d+)_(\d+)_", plat) or re.match(r"macosx_(\d+)_(\d+)_", plat)
            legacy = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}
            if m:
                versions.append((int(m.group(1)), int(m.group(2))))
            elif plat.split("_")[0] in legacy:
                versions.append(legacy[plat.split("_")[0]])
        if versions:
            need = max(need, min(versions))
    if need == (0, 0):
        return ""
    return (f"glibc >= {need[0]}.{need[1]}" if target.platform.startswith("linux")
            else f"macOS >= {need[0]}.{need[1]}")


def human(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def summarize(zip_path: Path, info: dict) -> str:
    infos = info["infos"]
    wheels = [i for i in infos if i.filename.startswith("wheels/")]
    other = [i for i in infos if not i.filename.startswith("wheels/")]
    lines = [f"zip: {zip_path} ({human(zip_path.stat().st_size)}, {zip_path.stat().st_size} bytes, "
             f"{len(infos)} files)",
             f"  add-on files: {len(other)} ({human(sum(i.compress_size for i in other))} compressed): "
             + ", ".join(sorted(i.filename for i in other if "/" not in i.filename))]
    lines.append(f"  wheels: {len(wheels)} ({human(sum(i.compress_size for i in wheels))})")
    for i in sorted(wheels, key=lambda i: -i.file_size):
        lines.append(f"    {human(i.file_size):>9}  {i.filename[len('wheels/'):]}")
    return "\n".join(lines)


def zip_name(manifest: dict, platform: str, python: str, torch: str) -> str:
    return (f"{manifest['id']}-{manifest['version']}-{platform.replace('-', '_')}"
            f"-cp{python.replace('.', '')}-{torch}.zip")


def build(args) -> Path:
    target = TARGETS[args.platform]
    blender_ext = find_blender_ext(args.blender_ext)
    log(f"builder: {blender_ext}")
    manifest_path = Path(args.manifest).resolve() if args.manifest else SOURCE_MANIFEST
    manifest, manifest_text = read_manifest(manifest_path, blender_ext)
    log(f"manifest ok: {manifest['id']} {manifest['version']} ({manifest_path.name})")
    runtime_dir = Path(args.runtime_dir).resolve() if args.runtime_dir else RUNTIME_DIR
    model = check_default_model(runtime_dir)
    log(f"default model: {model.name} ({human(model.stat().st_size)})")
    if args.torch == "cuda" and not target.torch_cuda:
        raise BuildError(f"--torch cuda: PyTorch has no CUDA build for {target.platform}")

    wheel_dir = Path(args.wheel_dir).resolve() if args.wheel_dir else None
    if wheel_dir is not None and not wheel_dir.is_dir():
        raise BuildError(f"--wheel-dir {wheel_dir} is not a folder")
    log(f"collecting wheels for {target.platform} / CPython {args.python} / torch {args.torch} from "
        + (f"{wheel_dir} (offline)" if wheel_dir else f"{DEFAULT_WHEEL_CACHE} + pip download"))
    deps = collect_wheels(target, args.python, args.torch, wheel_dir, DEFAULT_WHEEL_CACHE)

    tag = f"{target.platform}-cp{args.python.replace('.', '')}-{args.torch}"
    work = Path(args.staging).resolve() / tag if args.staging else STAGING_ROOT / tag
    work.mkdir(parents=True, exist_ok=True)
    runtime_whl = build_runtime_wheel(runtime_dir, work, work / "runtime_wheel")
    log(f"built {runtime_whl.name} ({human(runtime_whl.stat().st_size)})")

    stage = work / "extension"
    addon_dir = Path(args.addon_dir).resolve() if args.addon_dir else ADDON_DIR
    wheel_rel = stage_extension(stage, manifest_text, target.platform, [w.path for w in deps] + [runtime_whl],
                                addon_dir)
    run_blender_ext(blender_ext, "validate", str(stage), *_tags_args(blender_ext))

    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / zip_name(manifest, target.platform, args.python, args.torch)
    run_blender_ext(blender_ext, "build", "--source-dir", str(stage), "--output-filepath", str(zip_path),
                    *_tags_args(blender_ext))
    run_blender_ext(blender_ext, "validate", str(zip_path), *_tags_args(blender_ext))
    info = check_zip(zip_path, target.platform, wheel_rel)
    log("validated with Blender's extension validator")
    log(summarize(zip_path, info))
    needs = minimum_os([Path(w).name for w in wheel_rel], target)
    log(f"for {PYTHONS[args.python]} on {target.platform}" + (f" ({needs}, from the wheels' tags)" if needs else ""))
    if not args.keep_staging:
        shutil.rmtree(work, ignore_errors=True)
    return zip_path


def _tags_args(blender_ext: Path) -> list[str]:
    tags = blender_tags_file(blender_ext)
    return [f"--valid-tags={tags}"] if tags else []


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--platform", required=True, choices=sorted(TARGETS))
    p.add_argument("--python", required=True, choices=sorted(PYTHONS),
                   help="CPython of the target Blender: 3.11 = Blender 4.2-5.0, 3.13 = Blender 5.1+")
    p.add_argument("--torch", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--wheel-dir", help="build offline from the wheels in this folder")
    p.add_argument("--out", default=str(REPO / "dist"), help="output folder for the zip (default dist/)")
    p.add_argument("--manifest", help="source manifest (default blender_manifest.toml)")
    # For tests: build from model_runtime / partfield_blender trees elsewhere.
    p.add_argument("--runtime-dir", help=argparse.SUPPRESS)
    p.add_argument("--addon-dir", help=argparse.SUPPRESS)
    p.add_argument("--staging", help="staging folder (default build_staging/)")
    p.add_argument("--keep-staging", action="store_true", help="keep the staged tree after the build")
    p.add_argument("--blender-ext", help="path to Blender's blender_ext.py (default: from the bpy wheel)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        build(args)
    except BuildError as ex:
        print(f"build.py: error: {ex}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
