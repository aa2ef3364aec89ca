"""Packaging: build.py, the extension zip, and installing it into a fresh Blender user folder.

The end-to-end tests (marked SLOW in their names; about 1-2 minutes on 2 cores) build the
linux-x64 / CPython 3.11 / CPU zip offline from a local wheel folder (the CPU torch wheel on
this machine's disk + the other pinned wheels fetched once with pip), validate it with
Blender's validator, install it with `bpy.ops.extensions.package_install_files` into a temp
`BLENDER_USER_RESOURCES`, enable it and run Compute PartField on a mesh, all in a Python
that can see only bpy and numpy: torch, scipy, scikit-learn and model_runtime must come from
the zip's wheels.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# build.py at the repo root, under a name that cannot clash with PyPA's `build` package.
_spec = importlib.util.spec_from_file_location("partfield_build_script", REPO / "build.py")
build = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = build
_spec.loader.exec_module(build)

TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
DEFAULT_MODEL = REPO / "model_runtime" / "weights" / build.DEFAULT_MODEL
SITE_PACKAGES = Path(importlib.util.find_spec("bpy").submodule_search_locations[0]).parent


def run_build(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "build.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def runtime_copy(dest: Path, with_model: bool = True) -> Path:
    """A copy of model_runtime/ (code only) plus, optionally, a stand-in default model file."""
    rt = dest / "model_runtime"
    shutil.copytree(REPO / "model_runtime", rt, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    if with_model:
        (rt / "weights").mkdir()
        (rt / "weights" / build.DEFAULT_MODEL).write_bytes(b"stand-in: failure tests stop before using it")
    return rt


# ---------------------------------------------------------------------------------------------
# Manifest and configuration

def test_source_manifest_is_valid_for_blender():
    blender_ext = build.find_blender_ext(None)
    data, _text = build.read_manifest(build.SOURCE_MANIFEST, blender_ext)
    assert data["type"] == "add-on" and data["schema_version"] == "1.0.0"
    assert data["blender_version_min"] == "4.2.0"
    runtime_init = (REPO / "model_runtime" / "__init__.py").read_text()
    assert f'__version__ = "{data["version"]}"' in runtime_init  # extension and runtime versions agree
    assert data["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(data["permissions"]) == {"files", "network"}
    excludes = data["build"]["paths_exclude_pattern"]
    for pattern in ("/tests/", "__pycache__/", "*.ckpt", "*coseg*"):
        assert pattern in excludes
    assert (REPO / "LICENSE").read_text().startswith(" " * 20 + "GNU GENERAL PUBLIC LICENSE")
    assert "Version 3, 29 June 2007" in (REPO / "LICENSE").read_text()


def test_staged_manifest_sets_platform_and_wheels_and_stays_valid():
    blender_ext = build.find_blender_ext(None)
    text = build.SOURCE_MANIFEST.read_text()
    wheels = ["./wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
              "./wheels/partfield_model_runtime-0.1.0-py3-none-any.whl"]
    staged = build.staged_manifest_text(text, "linux-x64", wheels)
    data = tomllib.loads(staged)
    assert data["platforms"] == ["linux-x64"]
    assert data["wheels"] == wheels
    assert data["permissions"] == tomllib.loads(text)["permissions"]
    ext = build.load_blender_ext(blender_ext)
    manifest = ext.pkg_manifest_from_dict_and_validate_all_errros(data, from_repo=False, strict=True)
    assert not isinstance(manifest, list), manifest
    assert manifest.wheels == wheels


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace('type = "add-on"', 'type = "addon"'), "type"),
    (lambda t: t.replace('id = "partfield_blender"\n', ""), "id"),
    (lambda t: t.replace('files = "Read and write meshes, part results and model weight files"',
                         'files = "Read and write files."'), "files"),
    (lambda t: t.replace('version = "0.1.0"', 'version = 0.1.0'), "TOML"),
])
def test_bad_manifest_fails_naming_it(tmp_path, edit, field):
    bad = tmp_path / "blender_manifest.toml"
    bad.write_text(edit(build.SOURCE_MANIFEST.read_text()))
    proc = run_build("--platform", "linux-x64", "--python", "3.11", "--wheel-dir", str(tmp_path),
                     "--manifest", str(bad), "--out", str(tmp_path / "dist"), timeout=60)
    assert proc.returncode != 0
    assert "blender_manifest.toml" in proc.stderr and field in proc.stderr, proc.stderr
    assert not (tmp_path / "dist").exists()


def test_missing_wheel_fails_naming_it(tmp_path):
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    if TORCH_WHEEL.is_file():
        (wheel_dir / TORCH_WHEEL.name).symlink_to(TORCH_WHEEL)
        missing = "scipy"
    else:
        missing = "torch"
    proc = run_build("--platform", "linux-x64", "--python", "3.11", "--wheel-dir", str(wheel_dir),
                     "--runtime-dir", str(runtime_copy(tmp_path)), "--out", str(tmp_path / "dist"),
                     "--staging", str(tmp_path / "stage"), timeout=120)
    assert proc.returncode != 0
    assert "missing wheel" in proc.stderr and missing in proc.stderr, proc.stderr
    assert not (tmp_path / "dist").exists()


def test_missing_default_model_fails_naming_it(tmp_path):
    proc = run_build("--platform", "linux-x64", "--python", "3.11", "--wheel-dir", str(tmp_path),
                     "--runtime-dir", str(runtime_copy(tmp_path, with_model=False)),
                     "--out", str(tmp_path / "dist"), timeout=60)
    assert proc.returncode != 0
    assert "missing default model" in proc.stderr and build.DEFAULT_MODEL in proc.stderr, proc.stderr


def test_cuda_is_refused_on_macos(tmp_path):
    proc = run_build("--platform", "macos-arm64", "--python", "3.11", "--torch", "cuda",
                     "--wheel-dir", str(tmp_path), "--runtime-dir", str(runtime_copy(tmp_path)),
                     "--out", str(tmp_path / "dist"), timeout=60)
    assert proc.returncode != 0 and "no CUDA build for macos-arm64" in proc.stderr, proc.stderr


def test_cuda_build_refuses_the_cpu_torch_wheel(tmp_path):
    if not TORCH_WHEEL.is_file():
        pytest.skip(f"the CPU torch wheel is not on this machine ({TORCH_WHEEL})")
    (tmp_path / TORCH_WHEEL.name).symlink_to(TORCH_WHEEL)
    with pytest.raises(build.BuildError, match="is the CPU build"):
        build.collect_wheels(build.TARGETS["linux-x64"], "3.11", "cuda", tmp_path, tmp_path)


def test_bundle_pins_are_the_tested_environment():
    """The zip ships exactly the versions the dev/test environment runs."""
    for name, pin in build.BUNDLE_PINS.items():
        installed = importlib.metadata.version(name)
        assert installed.split("+")[0] == pin, f"{name}: bundle pins {pin}, environment has {installed}"
    assert "numpy" in build.NOT_BUNDLED


def test_wheel_lookup_respects_platform_and_python(tmp_path):
    names = ["scipy-1.17.1-cp311-cp311-win_amd64.whl",
             "scipy-1.17.1-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
             "scipy-1.17.1-cp311-cp311-manylinux_2_34_x86_64.whl",  # too new a glibc for Blender
             "safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
             "jinja2-3.1.6-py3-none-any.whl"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    from packaging.requirements import Requirement
    linux311 = build.supported_tags(build.TARGETS["linux-x64"], "3.11")
    assert build.find_wheel([tmp_path], Requirement("scipy==1.17.1"), linux311) is None
    linux313 = build.supported_tags(build.TARGETS["linux-x64"], "3.13")
    assert build.find_wheel([tmp_path], Requirement("scipy==1.17.1"), linux313).filename == names[1]
    win311 = build.supported_tags(build.TARGETS["windows-x64"], "3.11")
    assert build.find_wheel([tmp_path], Requirement("scipy==1.17.1"), win311).filename == names[0]
    assert build.find_wheel([tmp_path], Requirement("safetensors==0.8.0"), linux311).filename == names[3]
    assert build.find_wheel([tmp_path], Requirement("safetensors==0.8.0"), win311) is None
    assert build.find_wheel([tmp_path], Requirement("jinja2==3.1.6"), win311).filename == names[4]
    assert build.find_wheel([tmp_path], Requirement("jinja2==3.1.7"), win311) is None


def _fake_wheel(folder: Path, filename: str, requires: list[str]) -> None:
    name, version = filename.split("-")[:2]
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(folder / filename, "w") as zf:
        zf.writestr(f"{name}-{version}.dist-info/METADATA", meta)


def test_dependency_closure_uses_target_markers_and_extras(tmp_path):
    """Markers are evaluated for the target platform/Python (not this machine); extras count."""
    _fake_wheel(tmp_path, "alpha-1.0-py3-none-any.whl", [
        'beta[fast]==2.0; platform_system == "Windows"',
        'gamma; sys_platform == "linux"',
        'numpy>=1.26',  # Blender's own: never bundled
        'delta; python_version >= "3.13"',
        'epsilon; extra == "docs"',
    ])
    _fake_wheel(tmp_path, "beta-2.0-cp311-cp311-win_amd64.whl", ['zeta; extra == "fast"', 'eta; extra == "slow"'])
    for fn in ("gamma-1.0-py3-none-any.whl", "delta-1.0-py3-none-any.whl", "epsilon-1.0-py3-none-any.whl",
               "zeta-1.0-py3-none-any.whl", "eta-1.0-py3-none-any.whl"):
        _fake_wheel(tmp_path, fn, [])

    def closure(platform, python):
        wheels = build.collect_wheels(build.TARGETS[platform], python, "cpu", tmp_path, tmp_path, roots=["alpha"])
        return sorted(w.name for w in wheels)

    assert closure("windows-x64", "3.11") == ["alpha", "beta", "zeta"]
    assert closure("linux-x64", "3.13") == ["alpha", "delta", "gamma"]
    with pytest.raises(build.BuildError, match=r"missing wheel: beta\[fast\]==2.0 for windows-x64 / CPython 3.13"):
        closure("windows-x64", "3.13")  # beta only has a cp311 wheel


def test_runtime_wheel_ships_code_and_default_model_only(tmp_path):
    """pyproject.toml + the staged copy: code, the small model and its card; nothing else."""
    rt = runtime_copy(tmp_path / "src")
    (rt / "weights" / "MODEL_CARD.md").write_text("# card\n")
    (rt / "weights" / "partfield_released.safetensors").write_bytes(b"x")  # a hand-placed release
    (rt / "weights" / "model.ckpt").write_bytes(b"x")
    (rt / "training" / "cache").mkdir(parents=True, exist_ok=True)
    (rt / "training" / "cache" / "shapes.npz").write_bytes(b"x")
    (rt / "training" / "cache" / "stale.py").write_text("")
    (rt / "tests").mkdir(exist_ok=True)
    (rt / "tests" / "test_x.py").write_text("")
    whl = build.build_runtime_wheel(rt, tmp_path / "work", tmp_path / "out")
    with zipfile.ZipFile(whl) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"model_runtime/weights/{build.DEFAULT_MODEL}" in names
    assert "model_runtime/weights/MODEL_CARD.md" in names
    expected_py = {f"model_runtime/{p.relative_to(REPO / 'model_runtime').as_posix()}"
                   for p in (REPO / "model_runtime").rglob("*.py") if "__pycache__" not in p.parts}
    assert expected_py <= names
    for bad in ("released", ".ckpt", "cache", "tests", ".npz"):
        assert not [n for n in names if bad in n], bad
    assert "Name: partfield-model-runtime" in metadata
    assert "License-Expression: GPL-3.0-or-later" in metadata
    assert whl.name.endswith("-py3-none-any.whl")


def test_oversized_default_model_is_refused(tmp_path):
    rt = runtime_copy(tmp_path)
    with open(rt / "weights" / build.DEFAULT_MODEL, "wb") as fh:
        fh.truncate(build.MAX_BUNDLED_MODEL_BYTES + 1)  # sparse: the released checkpoint's size class
    with pytest.raises(build.BuildError, match="never ship"):
        build.check_default_model(rt)


# ---------------------------------------------------------------------------------------------
# End to end: build, validate, install into a fresh Blender, enable, compute

INSTALL_SCRIPT = r'''
import json, os, sys, time
t0 = time.time()
import bpy, addon_utils
zip_path, out_path = sys.argv[1], sys.argv[2]
report = {}
res = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
report["install"] = sorted(res)
report["install_s"] = round(time.time() - t0, 1)
module = "bl_ext.user_default.partfield_blender"
report["enabled"] = module in bpy.context.preferences.addons.keys()
addon_utils.enable(module, default_set=True)  # idempotent; what a later session does

import importlib
import model_runtime, torch, scipy, sklearn, safetensors
report["files"] = {m.__name__: m.__file__ for m in (model_runtime, torch, scipy, sklearn, safetensors)}
torch.set_num_threads(2)
jobs = importlib.import_module(module + ".jobs")
report["addon_file"] = jobs.__file__

# A mesh with parts: a sphere on a box.
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.mesh.primitive_cube_add(size=2.0, location=(0, 0, 0))
box = bpy.context.active_object
box.scale = (1.5, 1.0, 0.4)
bpy.ops.object.transform_apply(scale=True)
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.8, location=(0, 0, 1.2), segments=24, ring_count=12)
bpy.ops.object.select_all(action="SELECT")
bpy.context.view_layer.objects.active = box
bpy.ops.object.join()
obj = bpy.context.active_object

t1 = time.time()
spec = jobs.ModelSpec(path=None, device="cpu")
result = jobs.compute_object(bpy.context, obj, spec, parts=3, show_preview=True)
report["compute_s"] = round(time.time() - t1, 1)
labels = result.labels(3)
report["faces"] = len(obj.data.polygons)
report["labels_len"] = int(len(labels))
report["label_count"] = int(len(set(int(x) for x in labels)))
model = jobs.load_model(spec)
report["model"] = {k: str(v) for k, v in model.describe().items()}
with open(out_path, "w") as fh:
    json.dump(report, fh)
print("REPORT", json.dumps(report), flush=True)
'''


@pytest.fixture(scope="module")
def built_zip():
    """SLOW: build the linux-x64 / cp311 / cpu zip once, offline from a local wheel folder."""
    if not TORCH_WHEEL.is_file():
        pytest.skip(f"the CPU torch wheel is not on this machine ({TORCH_WHEEL})")
    if not DEFAULT_MODEL.is_file():
        pytest.fail(f"the bundled default model {DEFAULT_MODEL} is missing: the extension cannot ship")
    with tempfile.TemporaryDirectory(prefix="pf_build_") as tmp:
        tmp = Path(tmp)
        wheel_dir = tmp / "wheels"
        wheel_dir.mkdir()
        (wheel_dir / TORCH_WHEEL.name).symlink_to(TORCH_WHEEL)
        # The local wheel folder: torch from disk, the other pinned wheels fetched with pip
        # (from pip's cache / the configured indexes; a few MB but scipy).
        build.collect_wheels(build.TARGETS["linux-x64"], "3.11", "cpu", None, wheel_dir)
        proc = run_build("--platform", "linux-x64", "--python", "3.11", "--torch", "cpu",
                         "--wheel-dir", str(wheel_dir), "--out", str(tmp / "dist"),
                         "--staging", str(tmp / "stage"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        zips = list((tmp / "dist").glob("*.zip"))
        assert [z.name for z in zips] == ["partfield_blender-0.1.0-linux_x64-cp311-cpu.zip"]
        yield zips[0], proc.stdout
    # the temp folder (zip, staging, wheels) is removed here


def test_SLOW_zip_is_valid_and_holds_the_bundle(built_zip):
    zip_path, log = built_zip
    assert "validated with Blender's extension validator" in log
    assert f"{zip_path.stat().st_size} bytes" in log  # the size is printed
    blender_ext = build.find_blender_ext(None)
    proc = subprocess.run([sys.executable, str(blender_ext), "validate", str(zip_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Success" in proc.stdout, proc.stdout + proc.stderr
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
        runtime_whl = next(n for n in names if n.startswith("wheels/partfield_model_runtime-"))
        with zf.open(runtime_whl) as fh, zipfile.ZipFile(fh) as inner:
            inner_names = inner.namelist()
            bundled_model = inner.read(f"model_runtime/weights/{build.DEFAULT_MODEL}")
    assert manifest["platforms"] == ["linux-x64"]
    # What Blender reads from the wheels to refuse the zip in a Blender with another Python.
    assert build.load_blender_ext(blender_ext).python_versions_from_wheels(manifest["wheels"]) == {(3, 11)}
    wheel_names = sorted(w.rsplit("/", 1)[1] for w in manifest["wheels"])
    assert sorted(n[len("wheels/"):] for n in names if n.startswith("wheels/")) == wheel_names
    projects = {w.split("-")[0].lower() for w in wheel_names}
    assert {"torch", "scipy", "scikit_learn", "safetensors", "partfield_model_runtime", "joblib",
            "threadpoolctl", "narwhals", "sympy", "jinja2", "markupsafe"} <= projects
    assert "numpy" not in projects and "setuptools" not in projects
    assert TORCH_WHEEL.name in wheel_names
    assert bundled_model == DEFAULT_MODEL.read_bytes()
    assert "__init__.py" in names and "LICENSE" in names and "jobs.py" in names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n or n.endswith(".ckpt")]
    assert not [n for n in inner_names if n.endswith((".ckpt", ".npz"))]


def test_SLOW_install_enable_and_compute_in_fresh_blender(built_zip, tmp_path):
    zip_path, _ = built_zip
    # A Python that sees bpy and numpy only (as Blender does): everything else must come from
    # the zip's wheels, so a dependency missing from the bundle fails here.
    sp = tmp_path / "site"
    sp.mkdir()
    for entry in SITE_PACKAGES.iterdir():
        if entry.name.split("-")[0] in ("bpy", "numpy", "numpy.libs"):
            (sp / entry.name).symlink_to(entry)
    script = tmp_path / "install_check.py"
    script.write_text(INSTALL_SCRIPT)
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    with tempfile.TemporaryDirectory(prefix="pf_user_") as user:  # removed with the ~1 GB install
        env.update(BLENDER_USER_RESOURCES=user, PYTHONPATH=str(sp), OMP_NUM_THREADS="2")
        proc = subprocess.run([sys.executable, "-S", str(script), str(zip_path), str(out)], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 and out.is_file(), (proc.stdout + proc.stderr)[-6000:]
        report = json.loads(out.read_text())
        local = str(Path(user) / "extensions" / ".local")
        repo_dir = str(Path(user) / "extensions" / "user_default" / "partfield_blender")
    assert report["install"] == ["FINISHED"] and report["enabled"], report
    for name, path in report["files"].items():
        assert path.startswith(local), f"{name} was imported from {path}, not from the bundled wheels"
    assert report["addon_file"].startswith(repo_dir)
    assert report["model"]["path"].startswith(local) and report["model"]["path"].endswith(build.DEFAULT_MODEL)
    assert report["model"]["device"] == "cpu"
    assert report["labels_len"] == report["faces"] > 0
    assert report["label_count"] == 3
    print(f"install+enable {report['install_s']} s, compute {report['compute_s']} s, {report['faces']} faces")
