"""Export a Blender object's evaluated mesh as the engine's ``.npz`` arrays (docs/api.md).

Arrays (shapes):
    positions (V, 3) float32: vertex positions in Blender's world axes (Z-up; the
        object's rotation and scale applied, not its location). The engine reads
        ``.npz`` arrays as Z-up and normalizes them to its own frame.
    faces (F, 3) int32: triangles from ``mesh.loop_triangles`` (modifiers applied).
    uvs (F, 3, 2) float32: per-corner UVs of the active UV map (absent if the mesh has none).
    face_mask (F,) bool: only with ``selected_only``: triangles whose polygon is selected.
    up_axis () str: ``"Z"`` (Blender's axes; the engine's default for ``.npz``, stated explicitly).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import bpy
import numpy as np


class MeshExportError(Exception):
    """The object cannot be exported; the message says why and how to fix it."""


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Fields:
        selected_only: add ``face_mask`` from the selected faces (refine "selected faces only").
        apply_transform: apply the object's rotation and scale (not its location), so
            the engine sees the object as it stands in the scene ("front" = -Y).
    """

    selected_only: bool = False
    apply_transform: bool = True


def has_uv_map(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph | None = None) -> bool:
    """True if the object's evaluated mesh has an active UV map."""
    if obj is None or obj.type != "MESH":
        return False
    if depsgraph is None:
        return obj.data.uv_layers.active is not None
    ev = obj.evaluated_get(depsgraph)
    return ev.data.uv_layers.active is not None


def export_arrays(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph,
                  options: ExportOptions = ExportOptions()) -> dict[str, np.ndarray]:
    """The evaluated, triangulated mesh of ``obj`` as engine arrays (see module docstring)."""
    if obj is None or obj.type != "MESH":
        raise MeshExportError("select a mesh object: texbridge textures meshes only")
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    ev = obj.evaluated_get(depsgraph)
    mesh = ev.to_mesh()
    try:
        return _arrays_from_mesh(mesh, ev.matrix_world, options, obj.name)
    finally:
        ev.to_mesh_clear()


def _arrays_from_mesh(mesh: bpy.types.Mesh, matrix_world, options: ExportOptions, name: str) -> dict[str, np.ndarray]:
    mesh.calc_loop_triangles()
    n_v, n_t = len(mesh.vertices), len(mesh.loop_triangles)
    if n_v == 0 or n_t == 0:
        raise MeshExportError(f"object {name!r} has no faces after modifiers; add geometry or disable the modifiers")

    co = np.empty(n_v * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    positions = co.reshape(n_v, 3)
    if options.apply_transform:
        m3 = np.array([[matrix_world[r][c] for c in range(3)] for r in range(3)], dtype=np.float64)
        positions = (positions.astype(np.float64) @ m3.T).astype(np.float32)

    tri_verts = np.empty(n_t * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", tri_verts)
    out: dict[str, np.ndarray] = {
        "positions": np.ascontiguousarray(positions, dtype=np.float32),
        "faces": tri_verts.reshape(n_t, 3),
        "up_axis": np.array("Z"),
    }

    uv_layer = mesh.uv_layers.active
    if uv_layer is not None:
        tri_loops = np.empty(n_t * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("loops", tri_loops)
        loop_uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
        uv_layer.uv.foreach_get("vector", loop_uv)
        out["uvs"] = loop_uv.reshape(-1, 2)[tri_loops].reshape(n_t, 3, 2)

    if options.selected_only:
        poly_sel = np.zeros(len(mesh.polygons), dtype=bool)
        mesh.polygons.foreach_get("select", poly_sel)
        tri_poly = np.empty(n_t, dtype=np.int32)
        mesh.loop_triangles.foreach_get("polygon_index", tri_poly)
        mask = poly_sel[tri_poly]
        if not mask.any():
            raise MeshExportError(
                f"no faces of {name!r} are selected; select faces in Edit Mode or untick 'Selected faces only'"
            )
        out["face_mask"] = mask
    return out


def to_npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialize arrays to ``.npz`` bytes (no pickles; the engine loads with ``allow_pickle=False``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def smart_uv_project(obj: bpy.types.Object, angle_limit_deg: float = 66.0, island_margin: float = 0.02) -> None:
    """Give ``obj`` a UV map with Smart UV Project (all faces), leaving it in Object Mode.

    Works headless: the operator runs with a context override on ``obj``.
    """
    import math

    if obj is None or obj.type != "MESH":
        raise MeshExportError("select a mesh object to unwrap")
    view_layer = bpy.context.view_layer
    prev_active = view_layer.objects.active
    prev_mode = obj.mode
    if not obj.data.uv_layers:
        obj.data.uv_layers.new(name="UVMap")
    with bpy.context.temp_override(active_object=obj, object=obj, selected_objects=[obj],
                                   selected_editable_objects=[obj]):
        view_layer.objects.active = obj
        if prev_mode != "EDIT":
            bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.reveal()
        bpy.ops.mesh.select_all(action="SELECT")
        bpy.ops.uv.smart_project(angle_limit=math.radians(angle_limit_deg), island_margin=island_margin)
        bpy.ops.object.mode_set(mode="OBJECT")
    if prev_active is not None and prev_active.name in bpy.data.objects:
        view_layer.objects.active = prev_active
