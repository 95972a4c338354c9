"""Rasterizer and texture-lookup speed.

Prints ms per view for a 50,000-triangle mesh at 512 x 512 for each available backend (the
rasterizer core: triangle id, barycentrics, depth, with back-face culling as ``rasterize`` uses it
for closed meshes, and without (open meshes: early-z, and every triangle z-tested); and the full G-buffer with UV, normal and UV derivatives), and the forward+backward cost of a cached-G-buffer texture lookup into a
1024 x 1024 texture (MIP filter, one 512 x 512 view).

Goals on a 2-core CPU: <= 6 ms per view (numba core), <= 25 ms per lookup forward+backward.
Run: python benchmarks/raster.py [--views 8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def grid_sphere(nlat: int = 125, nlon: int = 200):
    """UV sphere with exactly 2 * nlat * nlon triangles (50,000 by default) and a UV seam."""
    th = np.linspace(0, np.pi, nlat + 1)
    ph = np.linspace(0, 2 * np.pi, nlon + 1)
    T, P = np.meshgrid(th, ph, indexing="ij")
    pos = np.stack([np.sin(T) * np.cos(P), np.cos(T), np.sin(T) * np.sin(P)], -1).reshape(-1, 3)
    uv = np.stack([P / (2 * np.pi), 1 - T / np.pi], -1).reshape(-1, 2)
    i = np.arange(nlat)[:, None] * (nlon + 1) + np.arange(nlon)[None]
    a, b, c, d = i, i + 1, i + nlon + 1, i + nlon + 2
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
    return pos, faces, uv[faces]


CPU_MS: list[float] = []  # process CPU time of the last best_ms call (all threads), ms


def cube_sphere(n: int = 64):
    """Uniform 'cube sphere' (each box side an n x n grid pushed onto the sphere): 12 n^2 triangles
    (49,152 for n = 64), no slivers; UVs = a 3 x 2 atlas of the sides (seams)."""
    g = np.linspace(-1.0, 1.0, n + 1)
    pos, uvs, faces = [], [], []
    for k, (ax, sgn) in enumerate([(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]):
        u_ax, v_ax = [a for a in range(3) if a != ax]
        U, V = np.meshgrid(g, g, indexing="xy")
        p = np.zeros((n + 1, n + 1, 3))
        p[..., ax], p[..., u_ax], p[..., v_ax] = sgn, U * sgn, V
        base = len(pos) and sum(len(q) for q in pos)
        pos.append((p / np.linalg.norm(p, axis=-1, keepdims=True)).reshape(-1, 3))
        cu, cv = k % 3, k // 3
        uvs.append(np.stack([(cu + (U + 1) / 2) / 3, (cv + (V + 1) / 2) / 2], -1).reshape(-1, 2))
        i = np.arange(n)[:, None] * (n + 1) + np.arange(n)[None] + base
        a, b, c, d = i, i + 1, i + n + 1, i + n + 2
        fk = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
        allp = np.concatenate(pos)
        tri = allp[fk[0]]
        if np.dot(np.cross(tri[1] - tri[0], tri[2] - tri[0]), tri.mean(0)) < 0:
            fk = fk[:, ::-1]  # wind every side counter-clockwise seen from outside
        faces.append(fk)
    pos, uv, f = np.concatenate(pos), np.concatenate(uvs), np.concatenate(faces)
    return pos, f, uv[f]


def best_ms(fn, repeat: int, sync=lambda: None) -> float:
    """Best wall-clock ms over ``repeat`` runs (after one warm-up); CPU ms go to CPU_MS."""
    fn()
    sync()
    times, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        sync()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU_MS[:] = [min(cpu) * 1000]
    return min(times) * 1000


def cpu_note(per: int = 1) -> str:
    """CPU time (summed over threads): on a loaded machine wall time overstates the cost."""
    return f"[cpu {CPU_MS[0] / per:.2f} ms]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from engine.cameras import fixed_views
    from engine.mesh import mesh_from_arrays
    from engine.raster import RasterBackend, RasterContext, rasterize
    from engine.raster.nvdiffrast_raster import nvdiffrast_status
    from engine.raster.numba_raster import rasterize_numba
    from engine.render import RenderConfig, ViewCache

    pos, faces, uvs = grid_sphere()
    mesh = mesh_from_arrays(pos, faces, uvs, up_axis="Y")
    cams = fixed_views(args.views)
    res = 512
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"mesh: {mesh.num_triangles}-triangle UV sphere (slivers at the poles); {args.views} views at {res}x{res}; "
          f"torch threads {torch.get_num_threads()}; cpus {os.cpu_count()}; load average {load:.1f}")

    ctx = RasterContext(RasterBackend.NUMBA, device="cpu")
    t = ctx._mesh_tensors(mesh)
    clip = ctx.clip_positions(mesh, cams)
    core = best_ms(lambda: rasterize_numba(clip, t["faces_np"], res, res, cull=t["cull"]), args.repeat) / args.views
    print(f"numba      raster core (tri id, bary, depth): {core:7.2f} ms/view {cpu_note(args.views)}  (goal <= 6)")
    nocull = best_ms(lambda: rasterize_numba(clip, t["faces_np"], res, res), args.repeat) / args.views
    print(f"numba      raster core without back-face culling (open meshes; early-z): {nocull:7.2f} ms/view "
          f"{cpu_note(args.views)}  (goal <= 6)")
    plain = best_ms(lambda: rasterize_numba(clip, t["faces_np"], res, res, early_z=False), args.repeat) / args.views
    print(f"numba      same, every triangle z-tested (no early-z): {plain:7.2f} ms/view {cpu_note(args.views)}")
    full = best_ms(lambda: rasterize(ctx, mesh, cams, res), args.repeat) / args.views
    print(f"numba      full G-buffer (+uv, normal, uv_da): {full:7.2f} ms/view {cpu_note(args.views)}")
    cpos, cfaces, cuvs = cube_sphere()
    cmesh = mesh_from_arrays(cpos, cfaces, cuvs, up_axis="Y")
    cctx = RasterContext(RasterBackend.NUMBA, device="cpu")
    cclip = cctx.clip_positions(cmesh, cams)
    ct = cctx._mesh_tensors(cmesh)
    core2 = best_ms(lambda: rasterize_numba(cclip, ct["faces_np"], res, res, cull=ct["cull"]), args.repeat) / args.views
    print(f"numba      raster core, {cmesh.num_triangles}-triangle cube sphere (no slivers): "
          f"{core2:7.2f} ms/view {cpu_note(args.views)}")

    ok, reason = nvdiffrast_status()
    if ok:
        nv = RasterContext(RasterBackend.NVDIFFRAST, device="cuda")
        sync = torch.cuda.synchronize
        clip_t = torch.from_numpy(clip).cuda()
        ms = best_ms(lambda: nv._nv(clip_t, t["faces"].cuda(), res, res), args.repeat, sync) / args.views
        full = best_ms(lambda: rasterize(nv, mesh, cams, res), args.repeat, sync) / args.views
        print(f"nvdiffrast raster core:                       {ms:7.2f} ms/view")
        print(f"nvdiffrast full G-buffer:                     {full:7.2f} ms/view")
    else:
        print(f"nvdiffrast: skipped ({reason})")

    cache = ViewCache.build(ctx, mesh, cams.select([0]), res)
    cfg = RenderConfig()
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        c = cache if dev == "cpu" else ViewCache(cache.gbuffer([0]).to(dev), cache.cameras)
        tex = torch.rand(1024, 1024, 3, device=dev, requires_grad=True)
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

        def step():
            tex.grad = None
            img = c.render(tex, [0], cfg)
            img.mean().backward()

        ms = best_ms(step, max(args.repeat, 10), sync)
        cov = float(c.gbuffer([0]).mask.float().mean())
        note = cpu_note() if dev == "cpu" else ""
        print(f"lookup fwd+bwd ({dev}, 1024^2 texture, 512^2 view, {cov:.0%} covered, mip): {ms:7.2f} ms {note}  (goal <= 25 on CPU)")


if __name__ == "__main__":
    main()
