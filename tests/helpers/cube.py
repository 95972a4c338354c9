"""A small textured cube built from arrays, for distillation tests.

Each of the 6 faces maps to its own cell of a 4 x 4 grid of UV space (cells 0..5 of
the top rows), so 10 of the 16 cells hold texels no view can see.
"""

from __future__ import annotations

import numpy as np

from engine.mesh import Mesh, mesh_from_arrays

GRID = 4
INNER_CELL = 10


def cube_mesh(face_mask: np.ndarray | None = None, inner: bool = False) -> Mesh:
    """Unit cube (side 1, centred), 12 triangles, per-face UV cells; Y-up arrays.

    inner: add a small quad inside the cube, mapped to UV cell 10 (no face's cell borders
    it, so filtered views of the faces do not reach it): its texels are mapped
    but no view can see them (14 triangles then).
    """
    quads = [  # (normal axis, sign) -> 4 corners counter-clockwise seen from outside
        [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],  # +Z (front)
        [(1, -1, -1), (-1, -1, -1), (-1, 1, -1), (1, 1, -1)],  # -Z
        [(1, -1, 1), (1, -1, -1), (1, 1, -1), (1, 1, 1)],  # +X
        [(-1, -1, -1), (-1, -1, 1), (-1, 1, 1), (-1, 1, -1)],  # -X
        [(-1, 1, 1), (1, 1, 1), (1, 1, -1), (-1, 1, -1)],  # +Y (top)
        [(-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)],  # -Y
    ]
    if inner:
        quads.append([(-0.3, -0.3, 0), (0.3, -0.3, 0), (0.3, 0.3, 0), (-0.3, 0.3, 0)])
    pos, faces, uvs = [], [], []
    for q, corners in enumerate(quads):
        q = INNER_CELL if q == 6 else q
        base = len(pos)
        pos.extend(np.array(corners, dtype=np.float32) * 0.5)
        cu, cv = q % GRID, GRID - 1 - q // GRID  # cells in the top rows (v up)
        m = 0.2 / GRID  # island margin inside its cell (3.2 texels at 64^2)
        cell = [(cu / GRID + m, cv / GRID + m), ((cu + 1) / GRID - m, cv / GRID + m),
                ((cu + 1) / GRID - m, (cv + 1) / GRID - m), (cu / GRID + m, (cv + 1) / GRID - m)]
        for tri in ((0, 1, 2), (0, 2, 3)):
            faces.append([base + i for i in tri])
            uvs.append([cell[i] for i in tri])
    return mesh_from_arrays(np.array(pos, np.float32), np.array(faces, np.int64), np.array(uvs, np.float32),
                            face_mask=face_mask, up_axis="Y")


def cell_slice(q: int, size: int) -> tuple[slice, slice]:
    """Texture rows/cols (row 0 = top) of face q's UV cell, shrunk by its margin."""
    cs = size // GRID
    row = q // GRID
    col = q % GRID
    pad = max(1, cs // 4)
    return slice(row * cs + pad, (row + 1) * cs - pad), slice(col * cs + pad, (col + 1) * cs - pad)


def unused_cells(size: int) -> np.ndarray:
    """(size, size) bool: texels in the cells no face uses."""
    m = np.zeros((size, size), bool)
    cs = size // GRID
    for q in set(range(6, GRID * GRID)) - {INNER_CELL}:
        m[(q // GRID) * cs:(q // GRID + 1) * cs, (q % GRID) * cs:(q % GRID + 1) * cs] = True
    return m
