"""Registration: the package registers and unregisters cleanly twice; the built zip installs and enables."""

from __future__ import annotations

import sys
import zipfile

OPS = ("generate", "refine", "cancel", "smart_uv", "start_engine", "stop_engine", "unload_model",
       "reload_token", "refresh_status", "clear_error")


def _registered(bpy) -> dict[str, bool]:
    return {
        "panel": hasattr(bpy.types, "VIEW3D_PT_texbridge"),
        "scene_prop": hasattr(bpy.types.Scene, "texbridge"),
        "object_prop": hasattr(bpy.types.Object, "texbridge"),
        "generate_op": hasattr(bpy.types, "TEXBRIDGE_OT_generate"),
        "timer": False,
    }


def test_register_unregister_twice(bpy_mod):
    bpy = bpy_mod
    import blender_addon

    for _ in range(2):
        blender_addon.register()
        try:
            state = _registered(bpy)
            assert all(v for k, v in state.items() if k != "timer"), state
            assert bpy.app.timers.is_registered(blender_addon.jobs.timer_pump)
            assert blender_addon._on_load_pre in bpy.app.handlers.load_pre
            for op in OPS:
                assert getattr(bpy.ops.texbridge, op).idname() == f"TEXBRIDGE_OT_{op}"
            assert bpy.context.scene.texbridge.method == "bridge"
            assert bpy.context.scene.texbridge.steps == 600  # Balanced preset
            bpy.context.scene.texbridge.preset = "BEST"
            assert (bpy.context.scene.texbridge.steps, bpy.context.scene.texbridge.use_custom_render_size) == (1000, False)
            bpy.context.scene.texbridge.preset = "BALANCED"
        finally:
            blender_addon.unregister()
        state = _registered(bpy)
        assert not any(state.values()), state
        assert not bpy.app.timers.is_registered(blender_addon.jobs.timer_pump)
        assert blender_addon._on_load_pre not in bpy.app.handlers.load_pre


def test_built_zip_installs_and_enables(bpy_mod, tmp_path):
    bpy = bpy_mod
    import addon_utils

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "scripts"))
    try:
        import build_addon
    finally:
        sys.path.pop(0)
    zpath = build_addon.build(tmp_path / "dist")
    builtin = build_addon.build_builtin(build_addon.SOURCE, tmp_path / "builtin")
    names = sorted(zipfile.ZipFile(zpath).namelist())
    assert names == sorted(zipfile.ZipFile(builtin).namelist())  # the fallback builder makes the same file set
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)

    module = "bl_ext.user_default.texbridge"
    result = bpy.ops.extensions.package_install_files(filepath=str(zpath), repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}
    try:
        assert module in {a.module for a in bpy.context.preferences.addons}
        mod = sys.modules[module]
        prefs = mod.prefs.get_prefs()
        assert type(prefs).__name__ == "TexbridgePreferences"  # real AddonPreferences, not the fallback
        assert prefs.start_command == "texbridge serve --port 0"
        assert hasattr(bpy.types, "VIEW3D_PT_texbridge") and hasattr(bpy.types.Scene, "texbridge")
    finally:
        addon_utils.disable(module, default_set=True)
        repos = [r.module for r in bpy.context.preferences.extensions.repos]
        bpy.ops.extensions.package_uninstall(repo_index=repos.index("user_default"), pkg_id="texbridge")
    assert not hasattr(bpy.types, "VIEW3D_PT_texbridge")
    assert module not in {a.module for a in bpy.context.preferences.addons}


def test_addon_imports_only_blender_stdlib_and_numpy():
    import ast
    from pathlib import Path

    allowed_third_party = {"bpy", "numpy", "addon_utils", "mathutils", "bmesh"}
    stdlib = set(sys.stdlib_module_names)
    src = Path(__file__).resolve().parents[2] / "blender_addon"
    for path in src.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in stdlib or root in allowed_third_party or root == "__future__", f"{path.name} imports {root}"
