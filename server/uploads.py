"""Validation of uploaded meshes and images (the server's hostile-input boundary).

Nothing here trusts the client: ``.npz`` is read with ``allow_pickle=False`` after a
zip-bomb check, GLB is parsed structurally (external URIs refused), OBJ may not
reference other files, images must be PNG within a pixel cap. Every problem raises
``UploadError`` with a one-line message (the API answers 400).
"""

from __future__ import annotations

import io
import json
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np

from server.config import Limits


class UploadError(ValueError):
    """An upload is malformed or over a cap; the message names the problem and the fix."""


MESH_KINDS = ("npz", "glb", "obj")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class MeshInfo:
    kind: str  # npz | glb | obj
    vertices: int
    triangles: int
    has_uvs: bool


def mesh_kind(filename: str | None, head: bytes) -> str:
    """Decide the mesh format from the file name and its first bytes."""
    name = (filename or "").lower()
    if head.startswith(b"PK\x03\x04") and (name.endswith(".npz") or not name):
        return "npz"
    if head.startswith(b"glTF"):
        return "glb"
    if name.endswith(".obj"):
        return "obj"
    if name.endswith(".npz"):
        raise UploadError("mesh .npz is not a zip archive; save it with numpy.savez")
    if name.endswith(".glb"):
        raise UploadError("mesh .glb does not start with the glTF magic; send a binary glTF (.glb)")
    raise UploadError("mesh format not recognised; send .npz arrays, a .glb or an .obj file")


def check_mesh(data: bytes, filename: str | None, limits: Limits) -> MeshInfo:
    kind = mesh_kind(filename, data[:8])
    if kind == "npz":
        return check_npz(data, limits)
    if kind == "glb":
        return check_glb(data, limits)
    return check_obj(data, limits)


# -- npz ---------------------------------------------------------------------------
def check_npz(data: bytes, limits: Limits) -> MeshInfo:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"mesh .npz is not a valid zip archive ({exc}); save it with numpy.savez") from None
    if total > limits.max_npz_uncompressed_bytes:
        raise UploadError(
            f"mesh .npz expands to {total} bytes, over the limit of {limits.max_npz_uncompressed_bytes}; send a smaller mesh"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UploadError("mesh .npz holds object arrays, which need pickle and are refused; save plain numeric arrays") from None
        raise UploadError(f"mesh .npz could not be read ({exc}); save it with numpy.savez") from None
    except Exception as exc:  # malformed .npy headers and the like
        raise UploadError(f"mesh .npz could not be read ({type(exc).__name__}: {exc}); save it with numpy.savez") from None
    allowed = {"positions", "faces", "uvs", "face_mask", "up_axis"}
    unknown = sorted(set(arrays) - allowed)
    if unknown:
        raise UploadError(f"mesh .npz has unknown array(s) {', '.join(unknown)}; allowed: faces, face_mask, positions, up_axis, uvs")
    for name in ("positions", "faces"):
        if name not in arrays:
            raise UploadError(f"mesh .npz has no '{name}' array; it needs positions (V, 3) and faces (F, 3)")
    pos, faces = arrays["positions"], arrays["faces"]
    if pos.dtype.kind != "f" or pos.ndim != 2 or pos.shape[1] != 3:
        raise UploadError(f"positions must be a float (V, 3) array, got {pos.dtype} {pos.shape}")
    if faces.dtype.kind not in "iu" or faces.ndim != 2 or faces.shape[1] < 3:
        raise UploadError(f"faces must be an integer (F, 3) array of triangles, got {faces.dtype} {faces.shape}")
    v, f, k = int(pos.shape[0]), int(faces.shape[0]), int(faces.shape[1])
    _caps(v, f * (k - 2), limits)
    if v == 0 or f == 0:
        raise UploadError("mesh is empty; it needs at least one triangle")
    if not np.isfinite(pos).all():
        raise UploadError("positions contain NaN or infinity; fix the mesh")
    if faces.min() < 0 or faces.max() >= v:
        raise UploadError(f"faces index vertices outside 0..{v - 1}; fix the face indices")
    uvs = arrays.get("uvs")
    if uvs is not None:
        if uvs.dtype.kind != "f" or uvs.shape != (f, k, 2):
            raise UploadError(f"uvs must be a float (F, {k}, 2) per-corner array (F={f}), got {uvs.dtype} {uvs.shape}")
        if not np.isfinite(uvs).all():
            raise UploadError("uvs contain NaN or infinity; fix the UV map")
    mask = arrays.get("face_mask")
    if mask is not None and (mask.dtype != np.bool_ or mask.shape != (f,)):
        raise UploadError(f"face_mask must be a bool (F,) array (F={f}), got {mask.dtype} {mask.shape}")
    up = arrays.get("up_axis")
    if up is not None and (up.dtype.kind != "U" or up.shape != () or str(up) not in ("Y", "Z")):
        raise UploadError("up_axis must be a string array 'Z' (Blender, the default) or 'Y'")
    return MeshInfo("npz", v, f * (k - 2), uvs is not None)


def _caps(vertices: int, triangles: int, limits: Limits) -> None:
    if vertices > limits.max_vertices:
        raise UploadError(f"mesh has {vertices} vertices, over the limit of {limits.max_vertices}; decimate it or raise --max-vertices")
    if triangles > limits.max_triangles:
        raise UploadError(
            f"mesh has {triangles} triangles, over the limit of {limits.max_triangles}; decimate it or raise --max-triangles"
        )


# -- glb ---------------------------------------------------------------------------
def check_glb(data: bytes, limits: Limits) -> MeshInfo:
    if len(data) < 20:
        raise UploadError("mesh .glb is truncated; send a complete binary glTF")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2:
        raise UploadError(f"mesh .glb is not glTF 2.0 (version {version}); export glTF 2.0 binary")
    if length != len(data):
        raise UploadError(f"mesh .glb declares {length} bytes but {len(data)} were sent; send the whole file")
    chunk_len, chunk_type = struct.unpack_from("<I4s", data, 12)
    if chunk_type != b"JSON" or 20 + chunk_len > len(data):
        raise UploadError("mesh .glb has no valid JSON chunk; export glTF 2.0 binary")
    try:
        doc = json.loads(data[20 : 20 + chunk_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UploadError(f"mesh .glb JSON chunk is malformed ({exc})") from None
    if not isinstance(doc, dict):
        raise UploadError("mesh .glb JSON chunk is not an object")
    bin_len = 0
    off = 20 + chunk_len
    if off + 8 <= len(data):
        bin_len, bin_type = struct.unpack_from("<I4s", data, off)
        if bin_type != b"BIN\x00" or off + 8 + bin_len > len(data):
            raise UploadError("mesh .glb binary chunk is malformed")
    for kind in ("buffers", "images"):
        items = doc.get(kind, [])
        if not isinstance(items, list):
            raise UploadError(f"mesh .glb '{kind}' is not a list")
        for item in items:
            uri = item.get("uri") if isinstance(item, dict) else None
            if uri is not None and not (isinstance(uri, str) and uri.startswith("data:")):
                raise UploadError(f"mesh .glb refers to an external file ({kind[:-1]} uri {str(uri)[:60]!r}); send a self-contained .glb")
    accessors = doc.get("accessors", [])
    if not isinstance(accessors, list):
        raise UploadError("mesh .glb 'accessors' is not a list")
    vertices = triangles = 0
    has_uvs = False
    try:
        for mesh in doc.get("meshes", []):
            for prim in mesh.get("primitives", []):
                mode = prim.get("mode", 4)
                if mode != 4:
                    raise UploadError(f"mesh .glb has a primitive with mode {mode}; only triangle lists (mode 4) are supported")
                attrs = prim["attributes"]
                count = int(accessors[attrs["POSITION"]]["count"])
                vertices += count
                has_uvs = has_uvs or "TEXCOORD_0" in attrs
                if "indices" in prim:
                    triangles += int(accessors[prim["indices"]]["count"]) // 3
                else:
                    triangles += count // 3
    except UploadError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise UploadError(f"mesh .glb has malformed meshes/accessors ({type(exc).__name__}: {exc})") from None
    if vertices == 0 or triangles == 0:
        raise UploadError("mesh .glb holds no triangles; export a mesh object")
    _caps(vertices, triangles, limits)
    return MeshInfo("glb", vertices, triangles, has_uvs)


# -- obj ---------------------------------------------------------------------------
_OBJ_EXTERNAL = re.compile(rb"^\s*(mtllib|call|csh|maplib|usemap)\b", re.MULTILINE)


def check_obj(data: bytes, limits: Limits) -> MeshInfo:
    if b"\x00" in data:
        raise UploadError("mesh .obj contains binary data; send a text OBJ")
    match = _OBJ_EXTERNAL.search(data)
    if match:
        raise UploadError(
            f"mesh .obj refers to other files ('{match.group(1).decode()}'); export without materials or send a .glb / .npz"
        )
    vertices = triangles = 0
    has_uvs = False
    for line in data.splitlines():
        s = line.lstrip()
        if s.startswith(b"v "):
            vertices += 1
        elif s.startswith(b"vt "):
            has_uvs = True
        elif s.startswith(b"f "):
            n = len(s.split()) - 1
            if n < 3:
                raise UploadError("mesh .obj has a face with fewer than 3 corners")
            triangles += n - 2
        if vertices > limits.max_vertices or triangles > limits.max_triangles:
            break
    if vertices == 0 or triangles == 0:
        raise UploadError("mesh .obj holds no faces; export a mesh object")
    _caps(vertices, triangles, limits)
    return MeshInfo("obj", vertices, triangles, has_uvs)


# -- images ------------------------------------------------------------------------
def check_png(data: bytes, limits: Limits, what: str = "init_texture") -> tuple[int, int]:
    """A PNG within the pixel cap (fully decoded once to catch truncation); returns (w, h)."""
    from PIL import Image

    if not data.startswith(PNG_SIGNATURE):
        raise UploadError(f"{what} is not a PNG; only PNG images are accepted")
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
                w, h = img.size
                if w * h > limits.max_image_pixels:
                    raise UploadError(f"{what} is {w}x{h}, over the limit of {limits.max_image_pixels} pixels")
                img.load()
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"{what} is over the limit of {limits.max_image_pixels} pixels; send a smaller image") from None
    except Exception as exc:
        raise UploadError(f"{what} could not be decoded as PNG ({type(exc).__name__}); send a valid PNG") from None
    return w, h
