"""``texbridge render MESH --texture PNG --out SHEET.png``: a contact sheet of views of a textured mesh.

Bad arguments exit 2 (``SpecError``), as every command (README, "Exit codes").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from engine.errors import Fix, SpecError
from engine.mesh import MeshConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("render", help="render views of a mesh with a texture into a contact sheet PNG")
    p.add_argument("mesh", help="mesh file: .obj, .glb/.gltf (self-contained), .ply or .npz arrays")
    p.add_argument("--texture", help="texture PNG (row 0 = top = v 1); default: a UV checker")
    p.add_argument("--out", required=True, help="output contact sheet PNG")
    p.add_argument("--views", type=int, default=8, help="number of views (default 8)")
    p.add_argument("--size", type=int, default=256, help="pixels per view (default 256)")
    p.add_argument("--backend", default="auto", choices=["auto", "numba", "nvdiffrast"], help="rasterizer")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--unwrap", action="store_true", help="ignore the mesh's UVs and unwrap with xatlas")
    p.add_argument("--max-triangles", type=int, default=MeshConfig.max_triangles,
                   help=f"refuse larger meshes (default {MeshConfig.max_triangles:,})")
    p.set_defaults(func=run)


def checker_texture(size: int = 512, squares: int = 8) -> np.ndarray:
    """(size,size,3) float32 UV checker: u increases red, v increases green (row 0 = v 1)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    u, v = x / size, 1.0 - y / size
    check = ((np.floor(u * squares) + np.floor(v * squares)) % 2).astype(np.float32)
    return np.stack([0.25 + 0.6 * u, 0.25 + 0.6 * v, 0.3 + 0.5 * check], axis=-1).astype(np.float32)


def run(args: argparse.Namespace) -> int:
    from engine.export import contact_sheet, load_texture_png
    from engine.mesh import load_mesh
    from engine.raster import RasterBackend, RasterContext

    if not (1 <= args.views <= 64):
        raise SpecError(f"views={args.views} is out of range", fix=Fix("views", "allowed: {field} 1..64"))
    if not (16 <= args.size <= 4096):
        raise SpecError(f"size={args.size} is out of range", fix=Fix("size", "allowed: {field} 16..4096"))
    mesh = load_mesh(args.mesh, MeshConfig(max_triangles=args.max_triangles, force_unwrap=args.unwrap))
    texture = load_texture_png(args.texture) if args.texture else checker_texture()
    ctx = RasterContext(RasterBackend(args.backend), device=args.device)
    out = Path(args.out)
    if not out.parent.exists():
        raise SpecError(f"output folder does not exist: {out.parent}; create it first")
    contact_sheet(mesh, texture, out, views=args.views, size=args.size, ctx=ctx)
    notes = []
    if mesh.unwrapped:
        notes.append("UVs generated with xatlas (the mesh had none or --unwrap)")
    if mesh.uv_out_of_range:
        notes.append("some UVs lie outside [0, 1]; the texture repeats there")
    print(f"wrote {out} ({args.views} views, {mesh.num_triangles} triangles, backend {ctx.backend.value})")
    for n in notes:
        print(f"note: {n}")
    return 0
