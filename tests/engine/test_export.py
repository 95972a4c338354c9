"""Export: GLB round trip, PNG encoding, UV-island padding, contact sheet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.assets import SAMPLE_MESH
from engine.cameras import fixed_views
from engine.export import (
    contact_sheet,
    export_glb,
    load_texture_png,
    pad_texture,
    save_texture_png,
    split_corners,
    uv_coverage_mask,
)
from engine.mesh import load_mesh, mesh_from_arrays
from engine.raster import RasterBackend, RasterContext, rasterize
from engine.render import FilterMode, RenderConfig, render_texture

MAGENTA = np.array([1.0, 0.0, 1.0], np.float32)


@pytest.fixture(scope="module")
def ctx():
    return RasterContext(RasterBackend.NUMBA, device="cpu")


@pytest.fixture(scope="module")
def sample():
    return load_mesh(SAMPLE_MESH)


@pytest.mark.parametrize("source", ["obj", "arrays"])
def test_glb_round_trip(tmp_path, sample, source):
    import trimesh

    mesh = sample if source == "obj" else mesh_from_arrays(sample.positions, sample.faces, sample.uvs, up_axis="Z")
    tex = np.random.default_rng(1).random((64, 32, 3)).astype(np.float32)
    export_glb(mesh, tex, tmp_path / "m.glb")
    r = trimesh.load(tmp_path / "m.glb", process=False, force="mesh")
    assert len(r.faces) == mesh.num_triangles
    assert np.abs(r.visual.uv[r.faces] - mesh.uvs).max() < 1e-6  # per-corner UVs, seams kept
    img = np.asarray(r.visual.material.baseColorTexture.convert("RGB"))
    assert img.shape == (64, 32, 3)
    assert np.array_equal(img, np.round(tex * 255).astype(np.uint8))  # row 0 = top, exact 8-bit values
    pos = np.asarray(r.vertices)[r.faces]
    orig = mesh.positions[mesh.faces].astype(np.float64)
    if mesh.up_axis == "Z":  # glTF is Y-up: (x, y, z) -> (x, z, -y), what Blender's glTF I/O undoes
        orig = np.stack([orig[..., 0], orig[..., 2], -orig[..., 1]], -1)
    assert np.abs(pos - orig).max() < 1e-6
    assert len(r.vertices) < 3 * mesh.num_triangles  # vertices split only where needed
    back = load_mesh(tmp_path / "m.glb")
    assert np.abs(back.uvs - mesh.uvs).max() < 1e-6


def test_split_corners_only_at_seams(sample):
    pos, faces, uv = split_corners(sample)
    assert np.array_equal(uv[faces], sample.uvs)
    assert np.array_equal(pos[faces], sample.positions[sample.faces])
    assert sample.num_vertices < len(pos) < sample.num_vertices * 2


def test_png_8_and_16_bit(tmp_path):
    from PIL import Image

    tex = np.random.default_rng(2).random((5, 7, 3)).astype(np.float32)
    tex[0] = [1.0, 0.0, 0.0]  # top row red
    p8 = save_texture_png(tex, tmp_path / "t8.png")
    with Image.open(p8) as im:
        a = np.asarray(im)
        assert im.mode == "RGB" and a.shape == (5, 7, 3)
    assert np.array_equal(a, np.round(tex * 255).astype(np.uint8))
    assert (a[0] == [255, 0, 0]).all()
    raw = p8.read_bytes()
    assert b"sRGB" in raw[:64]
    p16 = save_texture_png(tex, tmp_path / "t16.png", bit_depth=16)
    assert p16.read_bytes()[24] == 16  # IHDR bit depth
    back = load_texture_png(p16)
    assert np.abs(back - tex).max() <= 0.5 / 65535 + 1e-7
    assert np.abs(load_texture_png(p8) - tex).max() <= 0.5 / 255 + 1e-6


def test_padding_keeps_background_out_of_every_view(tmp_path, ctx):
    """Many UV islands (xatlas on a sphere); texels painted only where their centre is inside a
    UV triangle; after padding, bilinear sampling at every visible pixel of 8 views never sees the
    texture's background colour. Without padding it does (the check is sensitive)."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=3)
    mesh = mesh_from_arrays(s.vertices, s.faces, None, up_axis="Y")
    size = 128
    strict = uv_coverage_mask(mesh, size, radius=0.0)
    rng = np.random.default_rng(3)
    tex = np.where(strict[..., None], rng.uniform([0, 0.5, 0], [0.4, 1, 0.4], (size, size, 3)), MAGENTA).astype(np.float32)
    gb = rasterize(ctx, mesh, fixed_views(8), 128)
    cfg = RenderConfig(filter=FilterMode.BILINEAR)

    def worst_red(texture: np.ndarray) -> float:
        path = save_texture_png(texture, tmp_path / "t.png")
        t = torch.from_numpy(load_texture_png(path))
        img = render_texture(t, gb, cfg)
        return float(img[:, 0][gb.mask].max())

    assert worst_red(tex) > 0.45  # unpadded: magenta bleeds in at island borders
    padded = pad_texture(tex, strict, min_pixels=8, fill=False)
    assert np.array_equal(padded[strict], tex[strict])  # painted texels untouched
    assert worst_red(padded) < 0.41
    ring = uv_coverage_mask(mesh, size, radius=8.0) & ~strict
    assert (padded[ring] != MAGENTA).any(axis=1).all()  # >= 8 px of dilation around islands
    filled = pad_texture(tex, strict, min_pixels=8, fill=True)
    assert not (filled == MAGENTA).all(axis=2).any()  # fill: no background texel left
    assert np.array_equal(filled[strict], tex[strict])


def test_contact_sheet(tmp_path, ctx, sample):
    from PIL import Image

    tex = np.zeros((64, 64, 3), np.float32)
    tex[..., 1] = 1.0  # green everywhere
    out = contact_sheet(sample, tex, tmp_path / "sheet.png", views=8, size=64, ctx=ctx)
    with Image.open(out) as im:
        a = np.asarray(im)
    assert a.shape == (128, 256, 3)
    for r in range(2):
        for c in range(4):
            tile = a[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64]
            assert (tile[32, 32] == [0, 255, 0]).all()  # the object in the middle of every view
            assert (tile[0, 0] == [255, 255, 255]).all()  # white background in the corners
