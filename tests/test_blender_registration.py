"""The enabled add-on registers every part: panel, operators, preferences and the download UI;
the precision preference reaches the loaded model."""
import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests/blender_scripts")
    import ext_helpers  # sets BLENDER_USER_RESOURCES before bpy
    import bpy
    ext_helpers.install_addon()
    ui = ext_helpers.addon_module("weights_download_ui")
    assert hasattr(bpy.types, "PARTFIELD_OT_download_weights"), "download operator not registered"
    assert hasattr(bpy.types.WindowManager, "partfield_weights"), "download properties not registered"
    for op in ("compute", "apply", "clear", "preview", "download_weights", "cancel_weights_download"):
        assert hasattr(bpy.ops.partfield, op), op
    assert hasattr(bpy.types, "VIEW3D_PT_partfield")
    # The preferences draw the download section (through a recording layout).
    drawn = []
    original = ui.draw
    ui.draw = lambda layout, context: drawn.append(True)
    try:
        class Layout:
            def __getattr__(self, name):
                return lambda *a, **k: Layout()
        import types
        prefs = ext_helpers.prefs()
        values = {k: getattr(prefs, k) for k in prefs.bl_rna.properties.keys() if k != "rna_type"}
        stand_in = types.SimpleNamespace(layout=Layout(), **values)  # real values, recording layout
        type(prefs).draw(stand_in, bpy.context)
    finally:
        ui.draw = original
    assert drawn, "preferences did not draw the download section"
    # The precision preference reaches the loaded model.
    import torch
    from model_runtime.device import cpu_supports_bf16
    prefs = ext_helpers.prefs()
    prefs.device = "cpu"
    prefs_mod = ext_helpers.addon_module("preferences")
    jobs = ext_helpers.addon_module("jobs")
    assert jobs.load_model(prefs_mod.model_spec_from_prefs(prefs)).dtype == torch.float32
    if cpu_supports_bf16():
        prefs.precision = "bf16"
        spec = prefs_mod.model_spec_from_prefs(prefs)
        assert spec.precision == "bf16"
        assert jobs.load_model(spec).dtype == torch.bfloat16
    # The look-alike grouping preference reaches the segmentation options.
    assert prefs_mod.model_spec_from_prefs(prefs).options["group_alike"] is True
    prefs.group_alike = False
    assert prefs_mod.model_spec_from_prefs(prefs).options["group_alike"] is False
    prefs.group_alike = True
    # Test-time views: Auto leaves them to the runtime; a number reaches the options.
    assert prefs.test_time_views == "AUTO"
    assert "test_time_views" not in prefs_mod.model_spec_from_prefs(prefs).options
    prefs.test_time_views = "1"
    assert prefs_mod.model_spec_from_prefs(prefs).options["test_time_views"] == 1
    prefs.test_time_views = "AUTO"
    import addon_utils
    addon_utils.disable(ext_helpers.ADDON)
    assert not hasattr(bpy.types, "PARTFIELD_OT_download_weights")
    print("REGISTRATION OK")
""")


def test_addon_registers_download_ui_and_unregisters_cleanly():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ})
    assert "REGISTRATION OK" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
