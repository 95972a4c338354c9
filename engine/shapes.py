"""Procedural meshes with UVs (Y-up arrays, counter-clockwise = front), for benchmarks and tests.

- ``quad``: a flat square facing +Z, UVs = the unit square.
- ``uv_sphere``: a lat-long sphere with a seam; u around (azimuth), v up.
- ``island_cube``: a cube whose six faces are separate UV islands in a 3 x 2 grid.
"""

from __future__ import annotations

import numpy as np

from engine.mesh import Mesh, mesh_from_arrays


def quad(size: float = 1.0) -> Mesh:
    """Square of side ``size`` in the z = 0 plane facing +Z; 2 triangles; UV (0,0) bottom-left."""
    h = size / 2
    pos = np.array([[-h, -h, 0], [h, -h, 0], [h, h, 0], [-h, h, 0]], np.float32)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return mesh_from_arrays(pos, faces, uv[faces], up_axis="Y", source="quad")


def uv_sphere(n_lat: int = 32, n_lon: int = 64, radius: float = 0.5) -> Mesh:
    """Lat-long sphere (Y up) with a seam, outward-facing; 2 * n_lat * n_lon triangles."""
    i, j = np.meshgrid(np.arange(n_lat + 1), np.arange(n_lon + 1), indexing="ij")
    th, ph = np.pi * i / n_lat, 2 * np.pi * j / n_lon
    pos = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3) * radius
    uv = np.stack([j / n_lon, 1 - i / n_lat], -1).reshape(-1, 2)
    vid = lambda a, b: a * (n_lon + 1) + b  # noqa: E731
    ii, jj = np.meshgrid(np.arange(n_lat), np.arange(n_lon), indexing="ij")
    a, b, c, d = vid(ii, jj), vid(ii + 1, jj), vid(ii + 1, jj + 1), vid(ii, jj + 1)
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return mesh_from_arrays(pos.astype(np.float32), faces, uv[faces].astype(np.float32), up_axis="Y", source="uv_sphere")


def island_cube(margin: float = 0.02) -> Mesh:
    """Unit cube, 12 triangles; face k (+Z, -Z, +X, -X, +Y, -Y) is UV island k of a 3 x 2 grid
    (column k % 3, row k // 3 from the top), each shrunk by ``margin``."""
    quads = [
        [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)], [(1, -1, -1), (-1, -1, -1), (-1, 1, -1), (1, 1, -1)],
        [(1, -1, 1), (1, -1, -1), (1, 1, -1), (1, 1, 1)], [(-1, -1, -1), (-1, -1, 1), (-1, 1, 1), (-1, 1, -1)],
        [(-1, 1, 1), (1, 1, 1), (1, 1, -1), (-1, 1, -1)], [(-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)],
    ]
    pos, faces, uvs = [], [], []
    for k, corners in enumerate(quads):
        u0, v0 = (k % 3) / 3 + margin, 1 - (k // 3 + 1) / 2 + margin
        u1, v1 = (k % 3 + 1) / 3 - margin, 1 - (k // 3) / 2 - margin
        cell = [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]
        base = len(pos)
        pos.extend(np.array(corners, np.float32) * 0.5)
        for tri in ((0, 1, 2), (0, 2, 3)):
            faces.append([base + t for t in tri])
            uvs.append([cell[t] for t in tri])
    return mesh_from_arrays(np.array(pos, np.float32), np.array(faces), np.array(uvs, np.float32), up_axis="Y",
                            source="island_cube")
