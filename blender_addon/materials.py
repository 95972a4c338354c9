"""Images and materials: apply engine pixels in place, wire them into one object's material.

Main-thread only (bpy), except ``rgba8_to_pixels`` and ``encode_png`` which are
pure numpy/stdlib and run in worker threads.
"""

from __future__ import annotations

import os
import struct
import zlib

import bpy
import numpy as np

TEX_NODE_NAME = "texbridge_texture"
UV_NODE_NAME = "texbridge_uv"
GRAY = 0.5


def rgba8_to_pixels(data: bytes, width: int, height: int) -> np.ndarray:
    """Engine bytes (H, W, 4) uint8 with row 0 = top -> Blender ``pixels`` (H*W*4,) float32, row 0 = bottom."""
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, width * 4)[::-1]
    out = np.empty((height, width * 4), dtype=np.float32)
    np.multiply(rows, np.float32(1.0 / 255.0), out=out, dtype=np.float32)
    return out.reshape(-1)


def new_image(name: str, width: int, height: int) -> bpy.types.Image:
    """A new 8-bit sRGB RGBA image filled with mid-gray (the engine's starting texture)."""
    img = bpy.data.images.new(name, width, height, alpha=True)
    px = np.full(width * height * 4, GRAY, dtype=np.float32)
    px[3::4] = 1.0
    img.pixels.foreach_set(px)
    return img


def apply_pixels(image: bpy.types.Image, pixels: np.ndarray, width: int, height: int) -> None:
    """Write ``pixels`` ((H*W*4,) float32, bottom-up) into ``image`` in place (resizing if needed)."""
    if tuple(image.size) != (width, height):
        image.scale(width, height)
    image.pixels.foreach_set(pixels)
    image.update()


def image_pixels(image: bpy.types.Image) -> np.ndarray:
    """The image's pixels as (H*W*4,) float32, bottom-up."""
    w, h = image.size
    out = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(out)
    return out


def encode_png(image: bpy.types.Image) -> bytes:
    """Encode the image as an 8-bit RGBA PNG (top row first), stdlib zlib only."""
    w, h = image.size
    px = image_pixels(image).reshape(h, w, 4)[::-1]
    rgba = np.clip(np.rint(px * 255.0), 0, 255).astype(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgba.reshape(h, w * 4)], axis=1).tobytes()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


# -- materials ---------------------------------------------------------------------------------
def _objects_using(mat: bpy.types.Material) -> set[str]:
    names = set()
    for ob in bpy.data.objects:
        for slot in ob.material_slots:
            if slot.material == mat:
                names.add(ob.name)
                break
    return names


def _own_material(obj: bpy.types.Object, slot_index: int) -> bpy.types.Material:
    """The material in ``slot_index``, made private to ``obj`` (copied if other objects share it)."""
    slot = obj.material_slots[slot_index]
    mat = slot.material
    if mat is None:
        mat = bpy.data.materials.new(f"texbridge {obj.name}")
    elif _objects_using(mat) - {obj.name}:
        mat = mat.copy()
        mat.name = f"{slot.material.name} texbridge {obj.name}"
    else:
        return mat
    if obj.data.users > 1 and slot.link == "DATA":
        slot.link = "OBJECT"  # the mesh is shared: change this object only
    slot.material = mat
    return mat


def _principled(mat: bpy.types.Material) -> bpy.types.Node:
    if not mat.use_nodes:
        mat.use_nodes = True
    nt = mat.node_tree
    out = next((n for n in nt.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output), None)
    out = out or next((n for n in nt.nodes if n.type == "OUTPUT_MATERIAL"), None)
    if out is None:
        out = nt.nodes.new("ShaderNodeOutputMaterial")
    surf = out.inputs["Surface"]
    if surf.is_linked and surf.links[0].from_node.type == "BSDF_PRINCIPLED":
        return surf.links[0].from_node
    bsdf = next((n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
        bsdf.location = (out.location.x - 300, out.location.y)
    if not surf.is_linked:
        nt.links.new(bsdf.outputs["BSDF"], surf)
    return bsdf


def wire_image(obj: bpy.types.Object, image: bpy.types.Image, uv_map: str = "") -> list[bpy.types.Material]:
    """Show ``image`` as the base colour of ``obj``'s materials, touching no other object.

    Creates a material if the object has none; copies any material shared with other
    objects. Idempotent: cheap to call on every preview (re-wires after undo).
    """
    if not obj.material_slots:
        obj.data.materials.append(None)  # an empty slot; _own_material links it per object if shared
    mats = []
    for i in range(len(obj.material_slots)):
        mat = obj.material_slots[i].material
        if mat is None or not is_wired(mat, image) or _objects_using(mat) - {obj.name}:
            mat = _own_material(obj, i)
            _wire_material(mat, image, uv_map)
        mats.append(mat)
    return mats


def _wire_material(mat: bpy.types.Material, image: bpy.types.Image, uv_map: str) -> None:
    bsdf = _principled(mat)
    nt = mat.node_tree
    tex = nt.nodes.get(TEX_NODE_NAME)
    if tex is None:
        tex = nt.nodes.new("ShaderNodeTexImage")
        tex.name = tex.label = TEX_NODE_NAME
        tex.location = (bsdf.location.x - 320, bsdf.location.y)
    tex.image = image
    base = bsdf.inputs["Base Color"]
    if not (base.is_linked and base.links[0].from_node == tex):
        nt.links.new(tex.outputs["Color"], base)
    if uv_map:
        uv = nt.nodes.get(UV_NODE_NAME)
        if uv is None:
            uv = nt.nodes.new("ShaderNodeUVMap")
            uv.name = uv.label = UV_NODE_NAME
            uv.location = (tex.location.x - 220, tex.location.y)
        uv.uv_map = uv_map
        if not tex.inputs["Vector"].is_linked:
            nt.links.new(uv.outputs["UV"], tex.inputs["Vector"])


def is_wired(mat: bpy.types.Material | None, image: bpy.types.Image) -> bool:
    """True if ``mat``'s base colour comes from an image node showing ``image``."""
    if mat is None or not mat.use_nodes or mat.node_tree is None:
        return False
    for node in mat.node_tree.nodes:
        if node.type == "BSDF_PRINCIPLED":
            base = node.inputs["Base Color"]
            if base.is_linked:
                src = base.links[0].from_node
                if src.type == "TEX_IMAGE" and src.image == image:
                    return True
    return False


def save_or_pack(image: bpy.types.Image, basename: str) -> str:
    """Save ``image`` as PNG next to the .blend (returns the path), or pack it if the file is unsaved ('')."""
    blend = bpy.data.filepath
    if not blend:
        image.pack()
        return ""
    folder = os.path.dirname(bpy.path.abspath(blend))
    safe = bpy.path.clean_name(basename)
    path = os.path.join(folder, safe + ".png")
    image.filepath_raw = path
    image.file_format = "PNG"
    image.save()
    try:
        image.filepath = bpy.path.relpath(path)
    except ValueError:  # other drive on Windows
        image.filepath = path
    return path
