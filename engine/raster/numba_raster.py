"""CPU z-buffer rasterizer (numba): triangle id, perspective-correct barycentrics, view depth.

Pipeline per view (all in compiled code):
1. setup (parallel over triangles): screen-space edge functions normalized to barycentrics,
   the 1/w plane used for the depth test, pixel bounding box; triangles with a vertex behind
   the near plane (w <= 1e-6 or z_ndc < -1) or with zero screen area are skipped.
2. binning of triangles into horizontal bands of rows (counting sort, triangle order kept).
3. z-test (parallel over bands; bands own disjoint rows, so no races): a pixel is covered when
   its centre (x + 0.5, y + 0.5) has all three barycentrics >= 0; the largest 1/w wins; on an
   exact tie the lower triangle id wins.
4. resolve (parallel over rows): perspective-correct barycentrics and depth for covered pixels.

Image rows go top to bottom (row 0 = top = NDC y = +1); see docs/conventions.md.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BAND_ROWS = 8


@njit(cache=True, parallel=True, fastmath=False)
def _setup(clip, faces, H, W, coef, bbox):
    """clip (V,4) f64, faces (F,3) i64 -> coef (F,12) f64 [l0,l1,l2 planes (A,B,C), q plane], bbox (F,4) i32.

    bbox = (x0, x1, y0, y1) inclusive pixel range; x0 > x1 marks a skipped triangle.
    """
    F = faces.shape[0]
    for t in prange(F):
        bbox[t, 0] = 1
        bbox[t, 1] = 0
        bbox[t, 2] = 1
        bbox[t, 3] = 0
        i0 = faces[t, 0]
        i1 = faces[t, 1]
        i2 = faces[t, 2]
        w0 = clip[i0, 3]
        w1 = clip[i1, 3]
        w2 = clip[i2, 3]
        if w0 <= 1e-6 or w1 <= 1e-6 or w2 <= 1e-6:
            continue
        if clip[i0, 2] < -w0 or clip[i1, 2] < -w1 or clip[i2, 2] < -w2:
            continue
        x0 = (clip[i0, 0] / w0 * 0.5 + 0.5) * W
        y0 = (0.5 - clip[i0, 1] / w0 * 0.5) * H
        x1 = (clip[i1, 0] / w1 * 0.5 + 0.5) * W
        y1 = (0.5 - clip[i1, 1] / w1 * 0.5) * H
        x2 = (clip[i2, 0] / w2 * 0.5 + 0.5) * W
        y2 = (0.5 - clip[i2, 1] / w2 * 0.5) * H
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        inv = 1.0 / area
        # l0 from edge 1->2, l1 from edge 2->0, l2 from edge 0->1
        a0 = -(y2 - y1) * inv
        b0 = (x2 - x1) * inv
        c0 = ((y2 - y1) * x1 - (x2 - x1) * y1) * inv
        a1 = -(y0 - y2) * inv
        b1 = (x0 - x2) * inv
        c1 = ((y0 - y2) * x2 - (x0 - x2) * y2) * inv
        a2 = -(y1 - y0) * inv
        b2 = (x1 - x0) * inv
        c2 = ((y1 - y0) * x0 - (x1 - x0) * y0) * inv
        q0 = 1.0 / w0
        q1 = 1.0 / w1
        q2 = 1.0 / w2
        coef[t, 0] = a0
        coef[t, 1] = b0
        coef[t, 2] = c0
        coef[t, 3] = a1
        coef[t, 4] = b1
        coef[t, 5] = c1
        coef[t, 6] = a2
        coef[t, 7] = b2
        coef[t, 8] = c2
        coef[t, 9] = a0 * q0 + a1 * q1 + a2 * q2
        coef[t, 10] = b0 * q0 + b1 * q1 + b2 * q2
        coef[t, 11] = c0 * q0 + c1 * q1 + c2 * q2
        xa = min(x0, min(x1, x2))
        xb = max(x0, max(x1, x2))
        ya = min(y0, min(y1, y2))
        yb = max(y0, max(y1, y2))
        px0 = max(0, int(np.ceil(xa - 0.5)))
        px1 = min(W - 1, int(np.floor(xb - 0.5)))
        py0 = max(0, int(np.ceil(ya - 0.5)))
        py1 = min(H - 1, int(np.floor(yb - 0.5)))
        if px0 > px1 or py0 > py1:
            continue
        bbox[t, 0] = px0
        bbox[t, 1] = px1
        bbox[t, 2] = py0
        bbox[t, 3] = py1


@njit(cache=True)
def _bin(bbox, n_bands, band_rows):
    """Counting sort of triangles into row bands -> (start (n_bands+1,), items)."""
    F = bbox.shape[0]
    count = np.zeros(n_bands + 1, np.int64)
    for t in range(F):
        if bbox[t, 0] > bbox[t, 1]:
            continue
        b0 = bbox[t, 2] // band_rows
        b1 = bbox[t, 3] // band_rows
        for b in range(b0, b1 + 1):
            count[b + 1] += 1
    for b in range(n_bands):
        count[b + 1] += count[b]
    items = np.empty(count[n_bands], np.int32)
    fill = count[:n_bands].copy()
    for t in range(F):
        if bbox[t, 0] > bbox[t, 1]:
            continue
        b0 = bbox[t, 2] // band_rows
        b1 = bbox[t, 3] // band_rows
        for b in range(b0, b1 + 1):
            items[fill[b]] = t
            fill[b] += 1
    return count, items


@njit(cache=True, parallel=True, fastmath=False)
def _ztest(coef, bbox, start, items, band_rows, H, W, zbuf, tri_id):
    n_bands = start.shape[0] - 1
    for b in prange(n_bands):
        r0 = b * band_rows
        r1 = min(H, r0 + band_rows) - 1
        for y in range(r0, r1 + 1):
            for x in range(W):
                zbuf[y, x] = -1.0
                tri_id[y, x] = -1
        for k in range(start[b], start[b + 1]):
            t = items[k]
            ya = max(bbox[t, 2], r0)
            yb = min(bbox[t, 3], r1)
            xa = bbox[t, 0]
            xb = bbox[t, 1]
            a0 = coef[t, 0]
            b0 = coef[t, 1]
            c0 = coef[t, 2]
            a1 = coef[t, 3]
            b1 = coef[t, 4]
            c1 = coef[t, 5]
            a2 = coef[t, 6]
            b2 = coef[t, 7]
            c2 = coef[t, 8]
            qa = coef[t, 9]
            qb = coef[t, 10]
            qc = coef[t, 11]
            for y in range(ya, yb + 1):
                py = y + 0.5
                e0 = b0 * py + c0
                e1 = b1 * py + c1
                e2 = b2 * py + c2
                eq = qb * py + qc
                for x in range(xa, xb + 1):
                    px = x + 0.5
                    if a0 * px + e0 >= 0.0 and a1 * px + e1 >= 0.0 and a2 * px + e2 >= 0.0:
                        q = qa * px + eq
                        if q > zbuf[y, x]:
                            zbuf[y, x] = q
                            tri_id[y, x] = t


@njit(cache=True, parallel=True, fastmath=False)
def _resolve(coef, clip, faces, uvs, normals, tri_id, bary, depth, uv, normal, uv_da):
    """Per covered pixel: perspective-correct barycentrics b_i = l_i q_i / s (q = 1/w, s = sum l_j q_j),
    depth 1/s, UV, face normal and analytic UV derivatives db_i/dx = (a_i q_i - b_i sum_j a_j q_j) / s."""
    H, W = tri_id.shape
    for y in prange(H):
        py = y + 0.5
        for x in range(W):
            t = tri_id[y, x]
            if t < 0:
                for k in range(3):
                    bary[y, x, k] = 0.0
                    normal[y, x, k] = 0.0
                uv[y, x, 0] = 0.0
                uv[y, x, 1] = 0.0
                for k in range(4):
                    uv_da[y, x, k] = 0.0
                depth[y, x] = 0.0
                continue
            px = x + 0.5
            q0 = 1.0 / clip[faces[t, 0], 3]
            q1 = 1.0 / clip[faces[t, 1], 3]
            q2 = 1.0 / clip[faces[t, 2], 3]
            l0 = (coef[t, 0] * px + coef[t, 1] * py + coef[t, 2]) * q0
            l1 = (coef[t, 3] * px + coef[t, 4] * py + coef[t, 5]) * q1
            l2 = (coef[t, 6] * px + coef[t, 7] * py + coef[t, 8]) * q2
            s = l0 + l1 + l2
            b0 = l0 / s
            b1 = l1 / s
            b2 = l2 / s
            bary[y, x, 0] = b0
            bary[y, x, 1] = b1
            bary[y, x, 2] = b2
            depth[y, x] = 1.0 / s
            u = b0 * uvs[t, 0, 0] + b1 * uvs[t, 1, 0] + b2 * uvs[t, 2, 0]
            v = b0 * uvs[t, 0, 1] + b1 * uvs[t, 1, 1] + b2 * uvs[t, 2, 1]
            uv[y, x, 0] = u
            uv[y, x, 1] = v
            for k in range(3):
                normal[y, x, k] = normals[t, k]
            # d/dx: a_i = coef[t, 3i], sum_j a_j q_j = coef[t, 9]; d/dy: coef[t, 3i+1], coef[t, 10]
            for d in range(2):
                sa = coef[t, 9 + d]
                d0 = (coef[t, d] * q0 - b0 * sa) / s
                d1 = (coef[t, 3 + d] * q1 - b1 * sa) / s
                d2 = (coef[t, 6 + d] * q2 - b2 * sa) / s
                uv_da[y, x, 2 * d] = d0 * uvs[t, 0, 0] + d1 * uvs[t, 1, 0] + d2 * uvs[t, 2, 0]
                uv_da[y, x, 2 * d + 1] = d0 * uvs[t, 0, 1] + d1 * uvs[t, 1, 1] + d2 * uvs[t, 2, 1]


def rasterize_numba(clip: np.ndarray, faces: np.ndarray, H: int, W: int, uvs: np.ndarray | None = None,
                    normals: np.ndarray | None = None):
    """clip (B,V,4) float64 clip-space positions, faces (F,3) int64, uvs (F,3,2), normals (F,3) ->
    dict of tri_id (B,H,W) int32 (-1 background), bary (B,H,W,3), depth (B,H,W) (view-space w),
    uv (B,H,W,2), normal (B,H,W,3), uv_da (B,H,W,4) float32 (see ``GBuffer``)."""
    B = clip.shape[0]
    F = faces.shape[0]
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    uvs = np.zeros((F, 3, 2), np.float32) if uvs is None else np.ascontiguousarray(uvs, dtype=np.float32)
    normals = np.zeros((F, 3), np.float32) if normals is None else np.ascontiguousarray(normals, dtype=np.float32)
    out = {
        "tri_id": np.empty((B, H, W), np.int32),
        "bary": np.empty((B, H, W, 3), np.float32),
        "depth": np.empty((B, H, W), np.float32),
        "uv": np.empty((B, H, W, 2), np.float32),
        "normal": np.empty((B, H, W, 3), np.float32),
        "uv_da": np.empty((B, H, W, 4), np.float32),
    }
    zbuf = np.empty((H, W), np.float64)
    coef = np.empty((F, 12), np.float64)
    bbox = np.empty((F, 4), np.int32)
    n_bands = (H + BAND_ROWS - 1) // BAND_ROWS
    for b in range(B):
        cl = np.ascontiguousarray(clip[b], dtype=np.float64)
        _setup(cl, faces, H, W, coef, bbox)
        start, items = _bin(bbox, n_bands, BAND_ROWS)
        tri = out["tri_id"][b]
        _ztest(coef, bbox, start, items, BAND_ROWS, H, W, zbuf, tri)
        _resolve(coef, cl, faces, uvs, normals, tri, out["bary"][b], out["depth"][b], out["uv"][b],
                 out["normal"][b], out["uv_da"][b])
    return out


@njit(cache=True, parallel=True)
def _uv_coverage(uvs, size, radius, out):
    """Mark texels within ``radius`` texels of any UV triangle (conservative coverage)."""
    F = uvs.shape[0]
    n_bands = (size + 15) // 16
    for band in prange(n_bands):
        r0 = band * 16
        r1 = min(size, r0 + 16) - 1
        for t in range(F):
            # texel space: x = u * size, y = (1 - v) * size (row 0 = top = v = 1)
            x0 = uvs[t, 0, 0] * size
            y0 = (1.0 - uvs[t, 0, 1]) * size
            x1 = uvs[t, 1, 0] * size
            y1 = (1.0 - uvs[t, 1, 1]) * size
            x2 = uvs[t, 2, 0] * size
            y2 = (1.0 - uvs[t, 2, 1]) * size
            ya = max(r0, int(np.floor(min(y0, min(y1, y2)) - radius - 0.5)))
            yb = min(r1, int(np.ceil(max(y0, max(y1, y2)) + radius - 0.5)))
            if ya > yb:
                continue
            xa = max(0, int(np.floor(min(x0, min(x1, x2)) - radius - 0.5)))
            xb = min(size - 1, int(np.ceil(max(x0, max(x1, x2)) + radius - 0.5)))
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            sgn = 1.0 if area >= 0 else -1.0
            # signed distances to the three edges (positive inside)
            ex = (x2 - x1, x0 - x2, x1 - x0)
            ey = (y2 - y1, y0 - y2, y1 - y0)
            ox = (x1, x2, x0)
            oy = (y1, y2, y0)
            for y in range(ya, yb + 1):
                py = y + 0.5
                for x in range(xa, xb + 1):
                    px = x + 0.5
                    inside = True
                    for k in range(3):
                        ln = np.sqrt(ex[k] * ex[k] + ey[k] * ey[k])
                        if ln == 0.0:
                            continue
                        d = sgn * (ex[k] * (py - oy[k]) - ey[k] * (px - ox[k])) / ln
                        if d < -radius:
                            inside = False
                            break
                    if inside:
                        out[y, x] = True


def uv_coverage(uvs: np.ndarray, size: int, radius: float = 0.75) -> np.ndarray:
    """uvs (F,3,2) -> (size,size) bool: texels (row 0 = v = 1) within ``radius`` texels of a UV triangle.

    UVs are wrapped into [0, 1) per triangle only if the whole triangle lies in one tile.
    """
    uv = np.ascontiguousarray(uvs, dtype=np.float64)
    tile = np.floor(uv.min(axis=1, keepdims=True))
    uv = uv - tile
    out = np.zeros((size, size), dtype=np.bool_)
    _uv_coverage(uv, size, float(radius), out)
    return out
