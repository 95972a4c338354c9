"""Images and materials: pixels applied in place (row order), wiring to one object only, save / pack."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.addon.blender_helpers import add_monkey


def _rgba8(w: int, h: int) -> np.ndarray:
    """(H, W, 4) uint8 test pattern, row 0 = top: red ramps across, green encodes the row."""
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = np.arange(h, dtype=np.uint8)[:, None] * (255 // max(h - 1, 1))
    img[..., 2] = 7
    img[..., 3] = 255
    return img


def test_rgba8_to_pixels_flips_rows_and_scales():
    from blender_addon import materials

    top_down = _rgba8(8, 4)
    px = materials.rgba8_to_pixels(top_down.tobytes(), 8, 4).reshape(4, 8, 4)
    assert px.dtype == np.float32
    np.testing.assert_allclose(px[0], top_down[3] / 255.0, atol=1e-7)  # Blender row 0 = bottom = engine's last row
    np.testing.assert_allclose(px[3], top_down[0] / 255.0, atol=1e-7)


def test_apply_pixels_in_place_and_resize(scene):
    bpy = scene
    from blender_addon import materials

    img = materials.new_image("tb test", 16, 16)
    assert np.allclose(materials.image_pixels(img).reshape(-1, 4)[:, :3], 0.5, atol=1 / 255)
    ptr = img.as_pointer()
    src = _rgba8(32, 32)
    materials.apply_pixels(img, materials.rgba8_to_pixels(src.tobytes(), 32, 32), 32, 32)
    assert img.as_pointer() == ptr and tuple(img.size) == (32, 32)  # same image, resized in place
    got = np.rint(materials.image_pixels(img).reshape(32, 32, 4)[::-1] * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, src)


def _base_color_image(mat):
    for node in mat.node_tree.nodes:
        if node.type == "BSDF_PRINCIPLED" and node.inputs["Base Color"].is_linked:
            src = node.inputs["Base Color"].links[0].from_node
            return src.image if src.type == "TEX_IMAGE" else None
    return None


def test_wire_image_touches_only_this_object(scene):
    bpy = scene
    from blender_addon import materials

    a = add_monkey(bpy, "A", subdiv=0)
    b = add_monkey(bpy, "B", subdiv=0)
    shared = bpy.data.materials.new("Shared")
    shared.use_nodes = True
    shared.diffuse_color = (0.1, 0.2, 0.3, 1.0)
    a.data.materials.append(shared)
    b.data.materials.append(shared)
    img = materials.new_image("tb img", 8, 8)

    mats = materials.wire_image(a, img, "UVMap")
    assert mats[0] is not shared and a.material_slots[0].material == mats[0]
    assert _base_color_image(a.material_slots[0].material) == img
    assert b.material_slots[0].material == shared and _base_color_image(shared) is None
    n_mats = len(bpy.data.materials)
    materials.wire_image(a, img, "UVMap")  # idempotent: no new material, still wired
    assert len(bpy.data.materials) == n_mats and materials.is_wired(a.material_slots[0].material, img)

    # no material at all: one is created
    c = add_monkey(bpy, "C", subdiv=0)
    materials.wire_image(c, img)
    assert len(c.material_slots) == 1 and _base_color_image(c.material_slots[0].material) == img

    # linked duplicate (shared mesh data): the slot becomes object-linked, the twin keeps its material
    d = bpy.data.objects.new("D", a.data)
    bpy.context.collection.objects.link(d)
    twin_mat = d.material_slots[0].material
    img2 = materials.new_image("tb img2", 8, 8)
    materials.wire_image(d, img2)
    assert d.material_slots[0].link == "OBJECT"
    assert _base_color_image(d.material_slots[0].material) == img2
    assert a.material_slots[0].material == twin_mat and _base_color_image(twin_mat) == img


def test_encode_png_roundtrip(scene):
    from blender_addon import materials

    img = materials.new_image("tb png", 16, 8)
    src = _rgba8(16, 8)
    materials.apply_pixels(img, materials.rgba8_to_pixels(src.tobytes(), 16, 8), 16, 8)
    decoded = np.asarray(PILImage.open(io.BytesIO(materials.encode_png(img))).convert("RGBA"))
    np.testing.assert_array_equal(decoded, src)


def test_pack_when_unsaved_then_save_next_to_blend(scene, tmp_path):
    bpy = scene
    from blender_addon import materials

    assert bpy.data.filepath == ""
    img = materials.new_image("tb packed", 16, 16)
    src = _rgba8(16, 16)
    materials.apply_pixels(img, materials.rgba8_to_pixels(src.tobytes(), 16, 16), 16, 16)
    assert materials.save_or_pack(img, "Monkey_texbridge") == ""
    assert img.packed_file is not None

    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    try:
        img2 = materials.new_image("tb saved", 16, 16)
        materials.apply_pixels(img2, materials.rgba8_to_pixels(src.tobytes(), 16, 16), 16, 16)
        path = materials.save_or_pack(img2, "Monkey_texbridge")
        assert path == str(tmp_path / "Monkey_texbridge.png")
        assert img2.filepath == "//Monkey_texbridge.png" and img2.packed_file is None
        np.testing.assert_array_equal(np.asarray(PILImage.open(path).convert("RGBA")), src)
    finally:
        bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.data.filepath == ""


@pytest.mark.parametrize("w,h", [(64, 32)])
def test_new_image_is_opaque_gray(scene, w, h):
    from blender_addon import materials

    px = materials.image_pixels(materials.new_image("tb gray", w, h)).reshape(-1, 4)
    assert np.allclose(px[:, :3], 0.5, atol=1 / 255) and np.allclose(px[:, 3], 1.0)


def test_pump_applies_queued_results_and_survives_undo_like_changes(scene):
    """The main-thread half of a job, fed as the worker would feed it (no engine needed here:
    the record's client is never called by ``pump``)."""
    bpy = scene
    from blender_addon import client, jobs, materials

    obj = add_monkey(bpy, "P", subdiv=0)
    img = materials.new_image("texbridge P test", 8, 8)
    rec = jobs.JobRecord(job_id="local-test", object_name="P", image_name=img.name, spec={"prompt": "x"},
                         client=client.EngineClient("http://127.0.0.1:9", "t"), state="running", total_steps=4)
    jobs._JOBS[rec.job_id] = rec
    try:
        frame = _rgba8(8, 8)
        rec._put_pixels(1, 8, 8, materials.rgba8_to_pixels(frame.tobytes(), 8, 8))
        rec.inbox.append(("progress", {"step": 2, "total_steps": 4, "stage": 1, "eta_s": 3.0}))
        jobs.pump()
        assert (rec.step, rec.stage, rec.applied_version) == (2, 1, 1)
        assert materials.is_wired(obj.material_slots[0].material, img)

        # undo rebuilds IDs: the image and the material vanish; the next preview brings them back
        bpy.data.images.remove(img)
        obj.data.materials.clear()
        rec._put_pixels(0, 8, 8, materials.rgba8_to_pixels(frame.tobytes(), 8, 8))  # stale version: ignored
        jobs.pump()
        assert bpy.data.images.get(rec.image_name) is None
        rec._put_pixels(2, 8, 8, materials.rgba8_to_pixels(frame[::-1].copy().tobytes(), 8, 8))
        jobs.pump()
        again = bpy.data.images[rec.image_name]
        assert materials.is_wired(obj.material_slots[0].material, again)
        got = np.rint(materials.image_pixels(again).reshape(8, 8, 4) * 255).astype(np.uint8)
        np.testing.assert_array_equal(got, frame)  # frame[::-1] top-down == frame bottom-up

        # the object is deleted mid-job: pump carries on without raising, the job still finishes
        bpy.data.objects.remove(obj)
        rec._put_pixels(3, 8, 8, materials.rgba8_to_pixels(frame.tobytes(), 8, 8))
        rec.inbox.append(("succeeded", {}))
        jobs.pump()
        assert rec.state == "succeeded" and rec.error == "" and jobs.last_error == ""
    finally:
        jobs._JOBS.pop(rec.job_id, None)
