"""CPU z-buffer rasterizer (numba): triangle id, perspective-correct barycentrics, view depth.

Pipeline per view (all in compiled code):
1. setup (parallel over triangles): screen-space edge functions normalized to barycentrics,
   the 1/w plane used for the depth test, pixel bounding box; triangles with a vertex behind
   the near plane (w <= 1e-6 or z_ndc < -1) or with zero screen area are skipped.
2. binning of triangles into horizontal bands of rows (counting sort, triangle order kept).
3. per band, in parallel (bands own disjoint rows, so no races): z-test, where a pixel is
   covered when its centre (x + 0.5, y + 0.5) has all three barycentrics >= 0, the largest 1/w
   wins and on an exact tie the lower triangle id wins (so the draw order does not matter);
   for open meshes (no culling) front faces are drawn first and a back face is skipped when
   its nearest vertex lies behind every pixel of the 16 x 16 tiles it spans; then resolve the band's pixels:
   perspective-correct barycentrics, depth and (optionally) UV, face normal, UV derivatives.

Image rows go top to bottom (row 0 = top = NDC y = +1); see docs/conventions.md.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.raster.kernel_lock import NUMBA_LOCK

BAND_ROWS = 16
TILE_COLS = 16  # early-z tiles: BAND_ROWS x TILE_COLS pixels


NCOEF = 15  # per triangle: l0, l1, l2 planes (A, B, C) | q = 1/w plane (A, B, C) | q0, q1, q2


@njit(cache=True, parallel=True, error_model="numpy")
def _setup(clip, faces, H, W, cull, coef, bbox, back):
    """clip (V,4) f64, faces (F,3) i64 -> coef (F,15) f64 (see NCOEF), bbox (F,4) i32.

    cull: 0 = keep all triangles; +1 / -1 = skip triangles whose screen-space signed area
    (y down) has that sign (+1 skips back faces of counter-clockwise meshes).
    back (F,) int8: 1 where that area is positive (a back face of a counter-clockwise mesh).

    l_i(px, py) = A_i px + B_i py + C_i are the screen-space (linear) barycentrics in pixel units;
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
        xa = min(x0, min(x1, x2))
        xb = max(x0, max(x1, x2))
        ya = min(y0, min(y1, y2))
        yb = max(y0, max(y1, y2))
        px0 = max(0, int(np.ceil(xa - 0.5)))
        px1 = min(W - 1, int(np.floor(xb - 0.5)))
        py0 = max(0, int(np.ceil(ya - 0.5)))
        py1 = min(H - 1, int(np.floor(yb - 0.5)))
        if px0 > px1 or py0 > py1:
            continue  # covers no pixel centre
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12 or cull * area > 0.0:
            continue
        back[t] = 1 if area > 0.0 else 0
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
        coef[t, 12] = q0
        coef[t, 13] = q1
        coef[t, 14] = q2
        bbox[t, 0] = px0
        bbox[t, 1] = px1
        bbox[t, 2] = py0
        bbox[t, 3] = py1


@njit(cache=True)
def _bin(bbox, n_bands, band_rows):
    """Counting sort of triangles into row bands -> (start (n_bands+1,), items), triangle order kept."""
    F = bbox.shape[0]
    count = np.zeros(n_bands + 1, np.int64)
    for t in range(F):
        if bbox[t, 0] > bbox[t, 1]:
            continue
        for b in range(bbox[t, 2] // band_rows, bbox[t, 3] // band_rows + 1):
            count[b + 1] += 1
    for b in range(n_bands):
        count[b + 1] += count[b]
    items = np.empty(count[n_bands], np.int32)
    fill = count[:n_bands].copy()
    for t in range(F):
        if bbox[t, 0] > bbox[t, 1]:
            continue
        for b in range(bbox[t, 2] // band_rows, bbox[t, 3] // band_rows + 1):
            items[fill[b]] = t
            fill[b] += 1
    return count, items


@njit(cache=True, inline="always", error_model="numpy")
def _ztest(t, coef, bbox, r0, r1, zbuf, tri_id):
    """Z-test triangle ``t`` on rows r0..r1 (its band): a pixel takes ``t`` when its centre is
    inside and ``t`` is nearer (larger 1/w), or equally near with a lower id (so the result does
    not depend on the order triangles are drawn in)."""
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
    ia0 = 1.0 / a0 if a0 != 0.0 else 0.0
    ia1 = 1.0 / a1 if a1 != 0.0 else 0.0
    ia2 = 1.0 / a2 if a2 != 0.0 else 0.0
    for y in range(ya, yb + 1):
        py = y + 0.5
        e0 = b0 * py + c0
        e1 = b1 * py + c1
        e2 = b2 * py + c2
        eq = qb * py + qc
        sx = xa
        ex = xb
        if xb - xa >= 8:  # wide triangle: conservative span of this row (one pixel of slack)
            lo = xa - 0.5
            hi = xb + 1.5
            if a0 > 0.0:
                lo = max(lo, -e0 * ia0)
            elif a0 < 0.0:
                hi = min(hi, -e0 * ia0)
            elif e0 < 0.0:
                continue
            if a1 > 0.0:
                lo = max(lo, -e1 * ia1)
            elif a1 < 0.0:
                hi = min(hi, -e1 * ia1)
            elif e1 < 0.0:
                continue
            if a2 > 0.0:
                lo = max(lo, -e2 * ia2)
            elif a2 < 0.0:
                hi = min(hi, -e2 * ia2)
            elif e2 < 0.0:
                continue
            sx = max(xa, int(lo - 0.5) - 1)
            ex = min(xb, int(hi - 0.5) + 1)
        for x in range(sx, ex + 1):  # exact test, written without branches
            px = x + 0.5
            q = qa * px + eq
            zo = zbuf[y, x]
            to = tri_id[y, x]
            take = (a0 * px + e0 >= 0.0) & (a1 * px + e1 >= 0.0) & (a2 * px + e2 >= 0.0) & ((q > zo) | ((q == zo) & (t < to)))
            zbuf[y, x] = q if take else zo
            tri_id[y, x] = t if take else to


@njit(cache=True, parallel=True, error_model="numpy")
def _raster_bands(coef, bbox, back, early_z, start, items, band_rows, uvs, normals, attrs, zbuf, tri_id, bary, depth, uv,
                  normal, uv_da):
    """Per band of rows (parallel; bands own disjoint rows): z-test all its triangles, then resolve
    the band's pixels while they are in cache. ``attrs``: also write uv, normal, uv_da.
    ``early_z``: draw front faces first, then skip back faces hidden behind them (``back`` (F,)
    int8: 1 = back-facing); the G-buffer is the same (``_ztest``'s order-free tie-break)."""
    H, W = tri_id.shape
    n_bands = start.shape[0] - 1
    n_tiles = (W + TILE_COLS - 1) // TILE_COLS
    for band in prange(n_bands):
        tmin = np.empty(n_tiles, np.float64)
        r0 = band * band_rows
        r1 = min(H, r0 + band_rows) - 1
        for y in range(r0, r1 + 1):
            for x in range(W):
                zbuf[y, x] = -1.0
                tri_id[y, x] = -1
        # pass 0: front faces (all triangles without early_z); pass 1: back faces, each skipped
        # when its nearest vertex is farther than everything already drawn in the tiles it spans
        for pss in range(2 if early_z else 1):
            if pss == 1:
                for c in range(n_tiles):
                    tmin[c] = np.inf
                for y in range(r0, r1 + 1):
                    for x in range(W):
                        c = x // TILE_COLS
                        tmin[c] = min(tmin[c], zbuf[y, x])
            for k in range(start[band], start[band + 1]):
                t = items[k]
                if early_z:
                    if back[t] != pss:
                        continue
                    if pss == 1:
                        far = np.inf
                        for c in range(bbox[t, 0] // TILE_COLS, bbox[t, 1] // TILE_COLS + 1):
                            far = min(far, tmin[c])
                        # 1/w is affine in screen space, so its maximum is at a vertex (with a
                        # margin for rounding, so that exact ties are still z-tested)
                        if max(coef[t, 12], max(coef[t, 13], coef[t, 14])) * (1.0 + 1e-9) < far:
                            continue
                _ztest(t, coef, bbox, r0, r1, zbuf, tri_id)
        # resolve: b_i = l_i q_i / s (q = 1/w, s = sum l_j q_j), depth = 1/s,
        # db_i/dx = (A_i q_i - b_i sum_j A_j q_j) / s (and B for y)
        for y in range(r0, r1 + 1):
            py = y + 0.5
            for x in range(W):
                t = tri_id[y, x]
                if t < 0:
                    bary[y, x, 0] = 0.0
                    bary[y, x, 1] = 0.0
                    bary[y, x, 2] = 0.0
                    depth[y, x] = 0.0
                    if attrs:
                        uv[y, x, 0] = 0.0
                        uv[y, x, 1] = 0.0
                        for j in range(3):
                            normal[y, x, j] = 0.0
                        for j in range(4):
                            uv_da[y, x, j] = 0.0
                    continue
                px = x + 0.5
                q0 = coef[t, 12]
                q1 = coef[t, 13]
                q2 = coef[t, 14]
                l0 = (coef[t, 0] * px + coef[t, 1] * py + coef[t, 2]) * q0
                l1 = (coef[t, 3] * px + coef[t, 4] * py + coef[t, 5]) * q1
                l2 = (coef[t, 6] * px + coef[t, 7] * py + coef[t, 8]) * q2
                s = l0 + l1 + l2
                inv_s = 1.0 / s
                w0 = l0 * inv_s
                w1 = l1 * inv_s
                w2 = l2 * inv_s
                bary[y, x, 0] = w0
                bary[y, x, 1] = w1
                bary[y, x, 2] = w2
                depth[y, x] = inv_s
                if attrs:
                    u0 = uvs[t, 0, 0]
                    u1 = uvs[t, 1, 0]
                    u2 = uvs[t, 2, 0]
                    v0 = uvs[t, 0, 1]
                    v1 = uvs[t, 1, 1]
                    v2 = uvs[t, 2, 1]
                    uv[y, x, 0] = w0 * u0 + w1 * u1 + w2 * u2
                    uv[y, x, 1] = w0 * v0 + w1 * v1 + w2 * v2
                    normal[y, x, 0] = normals[t, 0]
                    normal[y, x, 1] = normals[t, 1]
                    normal[y, x, 2] = normals[t, 2]
                    for d in range(2):
                        sa = coef[t, 9 + d]
                        d0 = (coef[t, d] * q0 - w0 * sa) * inv_s
                        d1 = (coef[t, 3 + d] * q1 - w1 * sa) * inv_s
                        d2 = (coef[t, 6 + d] * q2 - w2 * sa) * inv_s
                        uv_da[y, x, 2 * d] = d0 * u0 + d1 * u1 + d2 * u2
                        uv_da[y, x, 2 * d + 1] = d0 * v0 + d1 * v1 + d2 * v2


def rasterize_numba(clip: np.ndarray, faces: np.ndarray, H: int, W: int, uvs: np.ndarray | None = None,
                    normals: np.ndarray | None = None, cull: int = 0, early_z: bool = True) -> dict[str, np.ndarray]:
    """clip (B,V,4) float64 clip-space positions, faces (F,3) int64; uvs (F,3,2), normals (F,3) or None.
    cull: 0 none; +1 skip back faces (counter-clockwise = front); -1 skip front faces.
    early_z: draw front faces first and skip back faces hidden behind them (open meshes, where
        ``cull`` cannot be used); the output is identical either way, only the work differs.

    Returns tri_id (B,H,W) int32 (-1 background), bary (B,H,W,3), depth (B,H,W) (view-space w),
    and, when ``uvs`` is given, uv (B,H,W,2), normal (B,H,W,3), uv_da (B,H,W,4) (float32, see ``GBuffer``).
    """
    B = clip.shape[0]
    F = faces.shape[0]
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    attrs = uvs is not None
    uvs = np.zeros((1, 3, 2), np.float32) if uvs is None else np.ascontiguousarray(uvs, dtype=np.float32)
    normals = np.zeros((F, 3), np.float32) if normals is None else np.ascontiguousarray(normals, dtype=np.float32)
    shapes = {"tri_id": (), "bary": (3,), "depth": (), "uv": (2,), "normal": (3,), "uv_da": (4,)}
    out = {k: np.empty((B, H, W) + s if (attrs or k in ("tri_id", "bary", "depth")) else (1, 1, 1) + s,
                       np.int32 if k == "tri_id" else np.float32) for k, s in shapes.items()}
    zbuf = np.empty((H, W), np.float64)
    coef = np.empty((F, NCOEF), np.float64)
    bbox = np.empty((F, 4), np.int32)
    back = np.zeros(F, np.int8)
    n_bands = (H + BAND_ROWS - 1) // BAND_ROWS
    for b in range(B):
        cl = np.ascontiguousarray(clip[b], dtype=np.float64)
        ab = b if attrs else 0
        with NUMBA_LOCK:
            _setup(cl, faces, H, W, float(cull), coef, bbox, back)
            start, items = _bin(bbox, n_bands, BAND_ROWS)
            _raster_bands(coef, bbox, back, bool(early_z and cull == 0), start, items, BAND_ROWS, uvs, normals, attrs,
                          zbuf, out["tri_id"][b], out["bary"][b], out["depth"][b], out["uv"][ab], out["normal"][ab],
                          out["uv_da"][ab])
    if not attrs:
        for k in ("uv", "normal", "uv_da"):
            del out[k]
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
    with NUMBA_LOCK:
        _uv_coverage(uv, size, float(radius), out)
    return out
