"""Mesh file readers: bytes of an OBJ, GLB/glTF, PLY or ``.npz`` file -> ``MeshArrays``.

They only parse (and refuse what no mesh may be: pickled arrays, external glTF files, files
over the vertex/triangle limits as soon as that shows); ``engine.mesh.check_arrays`` is the
validator every front end runs on what they return.
"""

from __future__ import annotations

import io
import json
import struct
from typing import NamedTuple

import numpy as np

from engine.errors import Fix, MeshError

SUPPORTED_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".npz")

#: The arrays a ``.npz`` mesh may hold.
NPZ_ARRAYS = ("positions", "faces", "uvs", "face_mask", "up_axis")


class MeshArrays(NamedTuple):
    """What a reader found in a file, before validation."""

    positions: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None
    face_mask: np.ndarray | None
    up_axis: str


def too_large(name: str, count: int, what: str, limit: int, field_name: str) -> MeshError:
    """The over-limit error (kind ``mesh_too_large``; the server answers 413)."""
    return MeshError(f"{name}: {count:,} {what} is more than the limit of {limit:,}", kind="mesh_too_large",
                     fix=Fix(field_name, "decimate the mesh or raise {field}"))


def read_npz(name: str, data: bytes) -> MeshArrays:
    """``.npz`` arrays (``NPZ_ARRAYS``; docs/api.md), read without pickle."""
    if not data.startswith(b"PK"):
        raise MeshError(f"cannot read {name} as .npz arrays (not a zip archive); save it with numpy.savez")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise MeshError(f"{name} holds object arrays, which need pickle and are refused; save plain numeric arrays") from None
        raise MeshError(f"cannot read {name} as .npz arrays ({exc}); save it with numpy.savez") from None
    except Exception as exc:  # zipfile / format errors
        raise MeshError(f"cannot read {name} as .npz arrays ({type(exc).__name__}); save it with numpy.savez") from None
    unknown = sorted(set(arrays) - set(NPZ_ARRAYS))
    if unknown:
        raise MeshError(f"{name} has unknown array(s) {', '.join(unknown)}; allowed: {', '.join(sorted(NPZ_ARRAYS))}")
    for key in ("positions", "faces"):
        if key not in arrays:
            raise MeshError(f"{name}: missing array {key!r}; the .npz needs positions, faces and optional uvs, face_mask")
    up = "Z"
    if "up_axis" in arrays:
        u = arrays["up_axis"]
        if u.dtype.kind != "U" or u.shape != () or str(u) not in ("Y", "Z"):
            raise MeshError(f"{name}: up_axis must be a string array 'Z' (Blender, the default) or 'Y'")
        up = str(u)
    return MeshArrays(arrays["positions"], arrays["faces"], arrays.get("uvs"), arrays.get("face_mask"), up)


def read_mesh_data(name: str, suffix: str, data: bytes, max_vertices: int, max_triangles: int) -> MeshArrays:
    """The reader for ``suffix`` (one of ``SUPPORTED_SUFFIXES``) applied to the file's bytes."""
    if suffix == ".npz":
        return read_npz(name, data)
    if suffix == ".obj":
        return read_obj(name, data, max_vertices, max_triangles)
    if suffix in (".glb", ".gltf"):
        check_gltf_self_contained(name, data)
        return read_trimesh(name, data, suffix[1:])
    if suffix == ".ply":
        return read_trimesh(name, data, "ply")
    raise MeshError(f"unsupported mesh format {suffix or '(no extension)'!r} for {name}; use one of {', '.join(SUPPORTED_SUFFIXES)}")


def _obj_index(tok: str, n: int, line_no: int, name: str) -> int:
    try:
        i = int(tok)
    except ValueError:
        raise MeshError(f"{name} line {line_no}: bad face index {tok!r}") from None
    return i - 1 if i > 0 else n + i  # OBJ is 1-based; negative = relative to the end


def _obj_counts(text: str) -> tuple[int, int]:
    """(vertices, triangles) of an OBJ text, counted without parsing numbers (for the limit message)."""
    v = t = 0
    for line in text.splitlines():
        if line.startswith("v "):
            v += 1
        elif line.startswith("f "):
            t += max(len(line.split()) - 3, 0)
    return v, t


def read_obj(name: str, data: bytes, max_vertices: int, max_triangles: int) -> MeshArrays:
    """Own OBJ reader: keeps every corner's ``vt`` exactly (trimesh may merge corner UVs) and fans n-gons.
    Stops as soon as the file holds more vertices or triangles than the limits (hostile uploads)."""
    try:
        text = data.decode("utf-8", errors="replace")
    except Exception:
        raise MeshError(f"cannot read {name} as text OBJ") from None
    verts: list[list[float]] = []
    tex: list[list[float]] = []
    tris: list[tuple[int, int, int]] = []
    tri_uv: list[tuple[int, int, int]] = []
    any_missing_uv = False
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line or line[0] not in "vf":
            continue
        parts = line.split()
        tag = parts[0]
        try:
            if tag == "v":
                if len(parts) < 4:
                    raise ValueError
                verts.append([float(x) for x in parts[1:4]])
                if len(verts) > max_vertices:
                    raise too_large(name, _obj_counts(text)[0], "vertices", max_vertices, "max_vertices")
            elif tag == "vt":
                tex.append([float(x) for x in parts[1:3]])
        except ValueError:
            raise MeshError(f"{name} line {line_no}: bad number in {line.strip()[:40]!r}") from None
        if tag == "f":
            corners = []
            for tok in parts[1:]:
                sub = tok.split("/")
                vi = _obj_index(sub[0], len(verts), line_no, name)
                ti = _obj_index(sub[1], len(tex), line_no, name) if len(sub) > 1 and sub[1] else -1
                corners.append((vi, ti))
            if len(corners) < 3:
                continue
            for j in range(1, len(corners) - 1):
                c = (corners[0], corners[j], corners[j + 1])
                tris.append(tuple(x[0] for x in c))
                tri_uv.append(tuple(x[1] for x in c))
                any_missing_uv |= any(x[1] < 0 for x in c)
            if len(tris) > max_triangles:
                raise too_large(name, _obj_counts(text)[1], "triangles", max_triangles, "max_triangles")
    if not verts:
        raise MeshError(f"{name}: no vertices found; is this an OBJ file?")
    positions = np.asarray(verts, dtype=np.float64)
    if positions.shape[1] != 3:
        raise MeshError(f"{name}: vertices need 3 coordinates")
    if not tris:
        raise MeshError(f"{name}: the mesh has no faces; export it with its faces (not a point cloud or edges only)")
    faces = np.asarray(tris, dtype=np.int64)
    uvs = None
    if tex and not any_missing_uv:
        uv_idx = np.asarray(tri_uv, dtype=np.int64)
        if uv_idx.min() < 0 or uv_idx.max() >= len(tex):
            raise MeshError(f"{name}: texture-coordinate indices out of range; the vt list does not match the faces")
        uvs = np.asarray(tex, dtype=np.float64)[uv_idx]
    return MeshArrays(positions, faces, uvs, None, "Y")


def check_gltf_self_contained(name: str, data: bytes) -> None:
    """Refuse glTF files that reference external files (buffers or images by URI)."""
    try:
        if data[:4] == b"glTF":
            magic, _version, _length = struct.unpack_from("<4sII", data, 0)
            if magic != b"glTF":
                raise ValueError("bad magic")
            chunk_len, chunk_type = struct.unpack_from("<II", data, 12)
            if chunk_type != 0x4E4F534A:  # 'JSON'
                raise ValueError("first chunk is not JSON")
            doc = json.loads(data[20 : 20 + chunk_len].decode("utf-8"))
        else:
            doc = json.loads(data.decode("utf-8"))
    except Exception:
        raise MeshError(f"cannot read {name} as glTF (corrupt or truncated file); re-export it as .glb") from None
    for kind in ("buffers", "images"):
        for item in doc.get(kind, []) or []:
            uri = item.get("uri")
            if uri is not None and not str(uri).startswith("data:"):
                raise MeshError(
                    f"{name} references an external file ({uri!r}); export a self-contained .glb "
                    "(glTF Binary) with everything embedded"
                )


def read_trimesh(name: str, data: bytes, file_type: str) -> MeshArrays:
    """GLB/glTF (self-contained) and PLY through trimesh; every node's transform applied."""
    import trimesh

    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=file_type, process=False, force="scene")
    except MeshError:
        raise
    except Exception as exc:
        raise MeshError(f"cannot read {name} as {file_type.upper()} ({type(exc).__name__}); the file is corrupt or not a mesh") from None
    pos_parts, face_parts, uv_parts = [], [], []
    offset = 0
    have_all_uvs = True
    for node in loaded.graph.nodes_geometry:
        transform, geom_name = loaded.graph[node]
        geom = loaded.geometry[geom_name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        verts = np.asarray(geom.vertices, dtype=np.float64)
        verts = verts @ np.asarray(transform)[:3, :3].T + np.asarray(transform)[:3, 3]
        faces = np.asarray(geom.faces, dtype=np.int64)
        uv = getattr(geom.visual, "uv", None)
        if uv is not None and len(uv) == len(verts):
            uv_parts.append(np.asarray(uv, dtype=np.float64)[faces])
        else:
            have_all_uvs = False
        pos_parts.append(verts)
        face_parts.append(faces + offset)
        offset += len(verts)
    if not face_parts:
        raise MeshError(f"{name}: the mesh has no faces; export it with its faces (not a point cloud or edges only)")
    uvs = np.concatenate(uv_parts) if have_all_uvs else None
    return MeshArrays(np.concatenate(pos_parts), np.concatenate(face_parts), uvs, None, "Y")
