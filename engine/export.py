"""Export: texture PNG (8-bit sRGB or 16-bit), UV-island padding, textured GLB, contact sheet.

Texture arrays are (H, W, 3) float32 in [0, 1], sRGB-encoded values (what the diffusion model
sees), row 0 = top of the image = v 1 (docs/conventions.md).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from engine.errors import TexbridgeError
from engine.jobfolder import atomic_write
from engine.mesh import Z_UP_TO_Y_UP, Mesh

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- padding


def uv_coverage_mask(mesh: Mesh, size: int | tuple[int, int], radius: float = 0.75) -> np.ndarray:
    """(size, size) bool (row 0 = v 1): texels whose centre lies within ``radius`` texels of a UV
    triangle. The default 0.75 (> sqrt(2)/2) covers every texel that bilinear sampling inside a
    triangle can read; 0 gives texels whose centre is inside a triangle."""
    from engine.raster.numba_raster import uv_coverage

    s = size if isinstance(size, int) else int(size[0])
    if not isinstance(size, int) and size[0] != size[1]:
        raise ValueError("uv_coverage_mask supports square textures")
    return uv_coverage(mesh.uvs, s, radius)


def _neighbour_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the 8 neighbours with wrap-around (the texture repeats)."""
    out = np.zeros_like(a)
    for dy in (-1, 0, 1):
        rolled = np.roll(a, dy, axis=0)
        for dx in (-1, 0, 1):
            if dy or dx:
                out += np.roll(rolled, dx, axis=1)
    return out


def _push_pull(tex: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Fill texels where ``filled`` is False with smooth values from coarser averages."""
    h, w, c = tex.shape
    if filled.all() or not filled.any():
        return tex if filled.any() else np.full_like(tex, 0.5)
    wgt = filled.astype(np.float32)
    if h % 2 or w % 2 or h < 2 or w < 2:
        mean = (tex * wgt[..., None]).sum((0, 1)) / wgt.sum()
        return np.where(filled[..., None], tex, mean)
    num = (tex * wgt[..., None]).reshape(h // 2, 2, w // 2, 2, c).sum((1, 3))
    den = wgt.reshape(h // 2, 2, w // 2, 2).sum((1, 3))
    coarse_filled = den > 0
    coarse = np.where(coarse_filled[..., None], num / np.maximum(den, 1e-12)[..., None], 0).astype(np.float32)
    coarse = _push_pull(coarse, coarse_filled)
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    return np.where(filled[..., None], tex, up)


def pad_texture(texture_np: np.ndarray, coverage_mask: np.ndarray, min_pixels: int = 8, fill: bool = True) -> np.ndarray:
    """Dilate covered texels into empty space so sampling at seams never shows the background.

    texture_np (H,W,C) float32; coverage_mask (H,W) bool (``uv_coverage_mask``).
    min_pixels rings of exact dilation (each new texel = mean of its filled 8-neighbours), then,
    with ``fill``, every remaining empty texel gets a smooth push-pull value. Covered texels are
    never changed. Returns a new (H,W,C) float32 array.
    """
    tex = np.asarray(texture_np, dtype=np.float32).copy()
    filled = np.asarray(coverage_mask, dtype=bool).copy()
    if tex.shape[:2] != filled.shape:
        raise ValueError(f"coverage mask {filled.shape} does not match texture {tex.shape[:2]}")
    if not filled.any():
        return tex
    tex[~filled] = 0.0
    for _ in range(min_pixels):
        if filled.all():
            break
        wf = filled.astype(np.float32)
        cnt = _neighbour_sum(wf)
        new = (~filled) & (cnt > 0)
        if not new.any():
            break
        acc = _neighbour_sum(tex * wf[..., None])
        tex[new] = acc[new] / cnt[new][:, None]
        filled |= new
    if fill:
        tex = _push_pull(tex, filled)
    return tex


# ---------------------------------------------------------------- PNG


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(texture_np: np.ndarray, bit_depth: int = 8, compress_level: int = 6) -> bytes:
    """(H,W,3|4) float in [0,1] -> PNG bytes (RGB/RGBA, 8 or 16 bit, sRGB chunk, 'Up' row filter).

    compress_level: zlib level (1 is several times faster on busy textures; progress snapshots use it).
    """
    if bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    a = np.asarray(texture_np, dtype=np.float32 if bit_depth == 8 else np.float64)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"texture must be (H, W, 3) or (H, W, 4), got {a.shape}")
    h, w, c = a.shape
    maxv = 255 if bit_depth == 8 else 65535
    q = np.round(np.clip(np.nan_to_num(a), 0.0, 1.0) * maxv).astype(">u2" if bit_depth == 16 else np.uint8)
    rows = q.reshape(h, -1).view(np.uint8).reshape(h, -1)
    up = rows.copy()
    up[1:] = rows[1:] - rows[:-1]  # filter type 2 (Up), modulo 256 via uint8 wrap-around
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1).tobytes()
    colour_type = 2 if c == 3 else 6
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    return PNG_MAGIC + _chunk(b"IHDR", ihdr) + _chunk(b"sRGB", b"\x00") + _chunk(b"IDAT", zlib.compress(raw, compress_level)) + _chunk(b"IEND", b"")


def save_texture_png(texture_np: np.ndarray, path, bit_depth: int = 8, compress_level: int = 6) -> Path:
    """Write (H,W,3) float32 [0,1] sRGB values as a PNG (row 0 = top = v 1); written atomically."""
    path = Path(path)
    return atomic_write(path, encode_png(texture_np, bit_depth, compress_level))


def _decode_png16(data: bytes) -> np.ndarray | None:
    """Exact decoder for 16-bit RGB/RGBA non-interlaced PNGs with filters None/Sub/Up; else None."""
    pos, ihdr, idat = 8, None, []
    while pos + 8 <= len(data):
        ln, tag = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8 : pos + 8 + ln]
        if tag == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        pos += 12 + ln
    if ihdr is None:
        return None
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 16 or ctype not in (2, 6) or interlace:
        return None
    c = 3 if ctype == 2 else 4
    stride = w * c * 2
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, stride + 1)
    out = np.empty((h, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(h):
        f, row = raw[y, 0], raw[y, 1:]
        if f == 0:
            rec = row.copy()
        elif f == 1:
            rec = (np.cumsum(row.reshape(-1, c * 2).astype(np.int64), axis=0) % 256).astype(np.uint8).reshape(-1)
        elif f == 2:
            rec = row + prev
        else:
            return None
        out[y] = rec
        prev = rec
    return out.view(">u2").reshape(h, w, c).astype(np.float32) / 65535.0


def load_texture_png(path) -> np.ndarray:
    """Read a PNG/JPEG texture -> (H,W,3) float32 [0,1] sRGB values, row 0 = top (16-bit kept exact)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise TexbridgeError(f"texture file not found: {path}; check the path")
    data = path.read_bytes()
    if data[:8] == PNG_MAGIC:
        arr = _decode_png16(data)
        if arr is not None:
            return np.ascontiguousarray(arr[..., :3])
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I"):
                g = np.asarray(im, dtype=np.float32) / 65535.0
                return np.repeat(g[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except Exception as exc:
        raise TexbridgeError(f"cannot read texture {path.name} ({type(exc).__name__}); use an RGB PNG") from None


# ---------------------------------------------------------------- GLB


def split_corners(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-corner UVs -> glTF-style vertices: one vertex per distinct (position index, uv).

    Returns positions (V',3) float32 (original units/axes), faces (F,3) int64, uv (V',2) float32.
    """
    f = mesh.faces.reshape(-1)
    uv = mesh.uvs.reshape(-1, 2)
    key = np.concatenate([f[:, None].astype(np.int64), uv.view(np.int32).astype(np.int64)], axis=1)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    first = np.zeros(uniq.shape[0], np.int64)
    first[inverse[::-1]] = np.arange(len(inverse))[::-1]
    return mesh.positions[f[first]], inverse.reshape(-1, 3).astype(np.int64), uv[first]


def export_glb(mesh: Mesh, texture_np: np.ndarray, path) -> Path:
    """Write a textured GLB: the user's UVs (split at seams), original positions, the texture embedded
    as an 8-bit PNG base-colour texture (repeat sampler), double-sided PBR material.

    glTF is Y-up: a Z-up mesh (Blender arrays) is written with (x, y, z) -> (x, z, -y), exactly the
    transform Blender's glTF exporter applies, so Blender's importer restores the original positions.
    """
    import io

    import trimesh
    from PIL import Image

    pos, faces, uv = split_corners(mesh)
    if mesh.up_axis == "Z":
        pos = (pos.astype(np.float64) @ Z_UP_TO_Y_UP[:3, :3].T).astype(np.float32)
    png = encode_png(np.asarray(texture_np, dtype=np.float32)[..., :3], 8)
    image = Image.open(io.BytesIO(png))
    image.load()
    material = trimesh.visual.material.PBRMaterial(
        name="texbridge", baseColorTexture=image, metallicFactor=0.0, roughnessFactor=1.0, doubleSided=True
    )
    visual = trimesh.visual.TextureVisuals(uv=uv.astype(np.float64), material=material)
    tm = trimesh.Trimesh(vertices=pos, faces=faces, visual=visual, process=False)
    path = Path(path)
    return atomic_write(path, tm.export(file_type="glb"))


# ---------------------------------------------------------------- preview


def contact_sheet(mesh: Mesh, texture_np: np.ndarray, path, views: int = 8, size: int = 256, ctx=None,
                  background=(1.0, 1.0, 1.0)) -> Path:
    """Render ``views`` fixed orbit views (azimuth 0 = front) and tile them, 4 per row, into a PNG."""
    import torch

    from engine.cameras import fixed_views
    from engine.raster import RasterContext, rasterize
    from engine.render import RenderConfig, render_texture

    ctx = ctx or RasterContext()
    cams = fixed_views(views)
    gb = rasterize(ctx, mesh, cams, size)
    tex = torch.from_numpy(np.ascontiguousarray(texture_np[..., :3], dtype=np.float32)).to(gb.device)
    with torch.no_grad():
        img = render_texture(tex, gb, RenderConfig(), background=torch.tensor(background, dtype=torch.float32))
    img = img.permute(0, 2, 3, 1).cpu().numpy()  # (B,H,W,3)
    cols = min(4, views)
    rows = (views + cols - 1) // cols
    sheet = np.ones((rows * size, cols * size, 3), np.float32)
    for i in range(views):
        r, c = divmod(i, cols)
        sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = img[i]
    return save_texture_png(sheet, path, 8)
