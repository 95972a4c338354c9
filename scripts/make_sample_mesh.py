"""Build engine/assets/sample_mesh.obj: a rounded box with a 3x2 cube-map UV layout.

Six UV islands (one per box side, with a gap between islands) give real seams: vertices on
box edges are shared in 3D but carry different UVs per side. Faces are written as quads, so
loading also exercises triangulation. Run: python scripts/make_sample_mesh.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N = 16  # quads per side edge -> 6 * 16 * 16 * 2 = 3072 triangles
ROUND = 0.25  # corner radius (box half-size 1)
OUT = Path(__file__).resolve().parents[1] / "engine" / "assets" / "sample_mesh.obj"

# (normal axis, sign, u axis, v axis) for the six sides; u x v = outward normal (CCW front)
SIDES = [
    (0, +1, (2, -1), (1, +1)),  # +X
    (0, -1, (2, +1), (1, +1)),  # -X
    (1, +1, (0, +1), (2, -1)),  # +Y
    (1, -1, (0, +1), (2, +1)),  # -Y
    (2, +1, (0, +1), (1, +1)),  # +Z
    (2, -1, (0, -1), (1, +1)),  # -Z
]


def build():
    pts, uvs, quads = [], [], []
    g = np.linspace(-1.0, 1.0, N + 1)
    for k, (ax, sgn, (ua, us), (va, vs)) in enumerate(SIDES):
        col, row = k % 3, k // 3
        for j in range(N + 1):
            for i in range(N + 1):
                p = np.zeros(3)
                p[ax] = sgn
                p[ua] = us * g[i]
                p[va] = vs * g[j]
                pts.append(p)
                # island of 0.3 x 0.45 inside a 1/3 x 1/2 cell (gaps between islands)
                uvs.append(((col + 0.5) / 3 + (g[i] * 0.15), (row + 0.5) / 2 + (g[j] * 0.225)))
        base = k * (N + 1) ** 2
        for j in range(N):
            for i in range(N):
                a = base + j * (N + 1) + i
                quads.append((a, a + 1, a + N + 2, a + N + 1))
    pts = np.array(pts)
    # round the box: clamp to the inner box, push out by ROUND along the offset direction
    inner = np.clip(pts, -(1 - ROUND), 1 - ROUND)
    off = pts - inner
    ln = np.linalg.norm(off, axis=1, keepdims=True)
    pos = inner + ROUND * off / np.where(ln > 0, ln, 1)
    # share positions between sides (same 3D point) so only the UVs are split at seams
    key = np.round(pts * 1e6).astype(np.int64)
    uniq, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return pos[first], inverse.reshape(-1), np.array(uvs), np.array(quads)


def main() -> None:
    pos, vmap, uvs, quads = build()
    lines = ["# texbridge sample mesh: rounded box, 6 UV islands (seams), quads", "o rounded_box"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in pos]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uvs]
    for q in quads:
        lines.append("f " + " ".join(f"{vmap[c] + 1}/{c + 1}" for c in q))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT} ({len(pos)} vertices, {len(quads) * 2} triangles, {OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
