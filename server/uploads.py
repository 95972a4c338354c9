"""Validation of uploaded meshes and images (the server's hostile-input boundary).

Nothing here trusts the client: ``.npz`` gets a zip-bomb check, OBJ may not reference other
files, images must be PNG within a pixel cap; an ``UploadError`` names the problem (400).
Whether the mesh is usable is decided by the engine's one validator (``engine.mesh``,
pickle refused, external glTF files refused, limits from ``texbridge serve --max-*``), at
submit time, with the same ``MeshConfig`` the worker loads it with.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from dataclasses import dataclass

from engine.mesh import check_mesh_data
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
    """The upload's hostile-input checks, then the engine's own mesh checks
    (``engine.mesh.check_mesh_data``) under ``limits.mesh_config()``, the limits the worker
    loads the mesh with. Raises ``UploadError``, or the engine's ``MeshError`` (kind
    ``mesh_too_large`` over a limit: 413)."""
    kind = mesh_kind(filename, data[:8])
    if kind == "npz":
        _check_zip(data, limits)
    elif kind == "obj":
        _check_obj_text(data)
    info = check_mesh_data(data, f".{kind}", limits.mesh_config())
    return MeshInfo(kind, info.vertices, info.triangles, info.has_uvs)


def _check_zip(data: bytes, limits: Limits) -> None:
    """A readable zip that does not expand past the cap (zip-bomb guard)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"mesh .npz is not a valid zip archive ({exc}); save it with numpy.savez") from None
    if total > limits.max_npz_uncompressed_bytes:
        raise UploadError(
            f"mesh .npz expands to {total} bytes, over the limit of {limits.max_npz_uncompressed_bytes}; send a smaller mesh"
        )


_OBJ_EXTERNAL = re.compile(rb"^\s*(mtllib|call|csh|maplib|usemap)\b", re.MULTILINE)


def _check_obj_text(data: bytes) -> None:
    """Text only, and no statement that makes a reader open other files."""
    if b"\x00" in data:
        raise UploadError("mesh .obj contains binary data; send a text OBJ")
    match = _OBJ_EXTERNAL.search(data)
    if match:
        raise UploadError(
            f"mesh .obj refers to other files ('{match.group(1).decode()}'); export without materials or send a .glb / .npz"
        )


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
