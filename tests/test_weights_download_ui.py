"""The bpy side of the weights download: registration, the offline/online section, the worker
job against a real 127.0.0.1 server. Runs bpy in a subprocess (see the preamble's bpy pitfalls)."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from model_runtime import weights_download as wd

from test_weights_download_server import WeightsServer

SCRIPT = textwrap.dedent(r"""
    import importlib, json, os, sys
    import bpy

    url, sha, out_dir = sys.argv[1:4]
    ui = importlib.import_module("partfield_blender.weights_download_ui")
    from model_runtime import weights_download as wd
    res = {}
    ui.register()
    wm = bpy.context.window_manager
    res["prop_registered"] = hasattr(wm, "partfield_weights") and wm.partfield_weights.accept_licence is False
    res["online_access"] = bool(bpy.app.online_access)
    try:  # offline (the bpy module's default): the operator refuses to run
        bpy.ops.partfield.download_weights()
        res["op_refused_offline"] = False
    except RuntimeError as exc:
        res["op_refused_offline"] = "poll" in str(exc).lower() or "online" in str(exc).lower()

    folder = ui.weights_folder(create=False)
    res["folder"] = folder
    res["offline_rows"] = ui.section_lines(False, folder, False)
    res["online_rows"] = ui.section_lines(True, folder, False)
    res["online_accepted_rows"] = ui.section_lines(True, folder, True)

    # draw() through a recording layout, offline and with the licence ticked
    class Rec:
        def __init__(self, log): self.log = log; self.enabled = True
        def _child(self, *a, **k): return Rec(self.log)
        box = column = row = _child
        def label(self, text="", icon="NONE"): self.log.append(["label", text, icon])
        def separator(self, **k): pass
        def prop(self, data, name, text=""): self.log.append(["prop", name, text])
        def progress(self, factor=0.0, type="BAR", text=""): self.log.append(["progress", text, factor])
        def operator(self, idname, text="", icon="NONE"):
            self.log.append(["operator", idname, text])
            class P: pass
            return P()
    log = []
    wm.partfield_weights.accept_licence = True
    ui.draw(Rec(log), bpy.context)
    res["draw_log"] = log

    # the worker job the modal operator polls, against the test server
    job = ui.DownloadJob(os.path.join(out_dir, "a"), url=url, sha256=sha).start()
    res["job_finished"] = job.wait(60)
    res["job_error"] = job.error
    res["job_weights"] = str(job.result.weights_path) if job.result else None
    res["job_status"] = job.status_text()
    res["installed_rows"] = ui.section_lines(True, os.path.join(out_dir, "a"), True, job,
                                             installed=res["job_weights"])
    bad = ui.DownloadJob(os.path.join(out_dir, "b"), url=url, sha256="0" * 64).start()
    bad.wait(60)
    res["bad_error"] = bad.error
    res["bad_rows"] = ui.section_lines(True, os.path.join(out_dir, "b"), True, bad)
    res["bad_left"] = sorted(os.listdir(os.path.join(out_dir, "b")))
    stop = ui.DownloadJob(os.path.join(out_dir, "c"), url=url, sha256=sha)
    stop.cancel()
    stop.start().wait(60)
    res["cancelled"] = stop.cancelled
    res["cancel_installed"] = wd.installed_weights(os.path.join(out_dir, "c")) is not None
    # a checkpoint placed by hand (offline): the section offers the compact copy, the operator makes it
    import shutil
    placed = os.path.join(ui.weights_folder(create=True), wd.CHECKPOINT_FILENAME)
    shutil.copyfile(sys.argv[4], placed)
    res["placed_rows"] = ui.section_lines(False, folder, False, installed=str(wd.installed_weights(folder)))
    res["convert_result"] = sorted(bpy.ops.partfield.convert_weights())
    res["after_convert"] = str(wd.installed_weights(folder))
    res["convert_meta"] = wd.read_safetensors_metadata(os.path.join(folder, wd.COMPACT_FILENAME))
    ui.unregister()
    res["prop_removed"] = not hasattr(bpy.types.WindowManager, "partfield_weights")
    print("RESULT " + json.dumps(res))
""")


@pytest.fixture(scope="module")
def ui_result(reference_dir, tmp_path_factory):
    payload = (reference_dir / "lightning_format_sample.ckpt").read_bytes()
    out = tmp_path_factory.mktemp("ui")
    env = os.environ.copy()
    env["BLENDER_USER_RESOURCES"] = str(out / "blender_user")
    with WeightsServer(payload) as srv:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, srv.url, hashlib.sha256(payload).hexdigest(), str(out),
             str(reference_dir / "lightning_format_sample.ckpt")],
            capture_output=True, text=True, timeout=300, env=env,
        )
        n_requests = len(srv.file_requests())
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    res["n_requests"] = n_requests
    res["out"] = str(out)
    return res


def kinds(rows):
    return [k for k, _ in rows]


def test_registration_and_offline_refusal(ui_result):
    assert ui_result["prop_registered"] and ui_result["prop_removed"]
    assert ui_result["online_access"] is False
    assert ui_result["op_refused_offline"]
    assert ui_result["folder"].startswith(ui_result["out"])  # the isolated user folder


def test_offline_section_says_how_to_place_the_file(ui_result):
    rows = ui_result["offline_rows"]
    text = "\n".join(t for _, t in rows)
    assert "consent" not in kinds(rows) and "download" not in kinds(rows)
    assert f"named exactly {wd.CHECKPOINT_FILENAME}, in: {ui_result['folder']}" in text
    assert wd.MODEL_PAGE_URL in text and wd.LICENSE_URL in text


def test_online_section_needs_explicit_consent(ui_result):
    rows = ui_result["online_rows"]
    assert "manual" not in kinds(rows)
    assert ["link", wd.LICENSE_URL] in rows
    assert any(k == "terms" and "non-commercial" in t for k, t in rows)
    assert kinds(rows).index("consent") < kinds(rows).index("download")
    assert any("Tick the licence checkbox" in t for _, t in rows)
    assert not any("Tick the licence" in t for _, t in ui_result["online_accepted_rows"])


def test_draw_maps_rows_to_widgets(ui_result):
    log = ui_result["draw_log"]  # bpy's default is offline: the hand-placement text and buttons
    assert ["operator", "partfield.open_weights_folder", "Open the weights folder"] in log
    assert ["operator", "wm.url_open", "Open the download page"] in log
    assert any(e[0] == "label" and wd.CHECKPOINT_FILENAME in e[1] for e in log)
    assert not any(e[0] == "operator" and e[1] == "partfield.download_weights" for e in log)


def test_worker_job_downloads_verifies_and_converts(ui_result):
    assert ui_result["job_finished"] and ui_result["job_error"] is None
    assert ui_result["job_weights"].endswith(wd.COMPACT_FILENAME)
    assert os.path.isfile(ui_result["job_weights"])
    rows = ui_result["installed_rows"]
    assert rows[1][0] == "info" and rows[1][1].startswith("Installed:")
    assert "download" not in kinds(rows)


def test_worker_job_reports_a_bad_checksum_and_cancel(ui_result):
    assert "SHA-256" in ui_result["bad_error"]
    assert ["error", ui_result["bad_error"]] in ui_result["bad_rows"]
    assert ui_result["bad_left"] == []  # nothing half-written, nothing under the final name
    assert ui_result["cancelled"] and not ui_result["cancel_installed"]
    assert ui_result["n_requests"] == 2  # good + bad; the cancelled job never connected


def test_hand_placed_checkpoint_is_converted_by_the_operator(ui_result, reference_dir):
    rows = ui_result["placed_rows"]
    assert rows[1] == ["info", f"Installed: {os.path.join(ui_result['folder'], wd.CHECKPOINT_FILENAME)}"]
    assert ["convert", "Make the fast-loading compact copy"] in rows
    assert ui_result["convert_result"] == ["FINISHED"]
    assert ui_result["after_convert"] == os.path.join(ui_result["folder"], wd.COMPACT_FILENAME)
    sample_sha = hashlib.sha256((reference_dir / "lightning_format_sample.ckpt").read_bytes()).hexdigest()
    assert ui_result["convert_meta"]["source_sha256"] == sample_sha
    assert ui_result["convert_meta"]["licence_url"] == wd.LICENSE_URL
