"""CPU kernels (numba) for the texture lookup of ``engine.render``.

The lookup table is the texture (level 0, rows 0..n0-1, read in place, never copied) followed
by its mip levels 1.. stored in ``lo`` (row r >= n0 lives at ``lo[r - n0]``). Forward: build
``lo``, gather K weighted taps per pixel. Backward: scatter-add in pixel order (deterministic),
then push level gradients down to level 0. All on one thread by default (see ``PARALLEL``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, error_model="numpy", inline="always")
def _down_row(src, s0, dst, d0, y, x0, x1, w, pw):
    """Row y, columns x0..x1-1, of ``_down``."""
    for x in range(x0, x1):
        a = s0 + (2 * y) * pw + 2 * x
        for ch in range(src.shape[1]):
            dst[d0 + y * w + x, ch] = 0.25 * (src[a, ch] + src[a + 1, ch] + src[a + pw, ch] + src[a + pw + 1, ch])


@njit(cache=True, error_model="numpy", inline="always")
def _up_row(src, s0, dst, d0, y, x0, x1, w, pw):
    """Row y, columns x0..x1-1, of ``_up``."""
    for x in range(x0, x1):
        a = d0 + (2 * y) * pw + 2 * x
        for ch in range(src.shape[1]):
            g = 0.25 * src[s0 + y * w + x, ch]
            dst[a, ch] += g
            dst[a + 1, ch] += g
            dst[a + pw, ch] += g
            dst[a + pw + 1, ch] += g


@njit(cache=True, parallel=True, error_model="numpy")
def _down(src, s0, dst, d0, y0, y1, x0, x1, w, pw):
    """dst[d0 + y*w + x] = mean of the 2x2 block of src (row width pw) starting at s0, for
    rows y0..y1-1 and columns x0..x1-1 of the level (row width w)."""
    for y in prange(y0, y1):
        _down_row(src, s0, dst, d0, y, x0, x1, w, pw)


@njit(cache=True, error_model="numpy")
def _down_serial(src, s0, dst, d0, y0, y1, x0, x1, w, pw):
    """``_down`` on one thread (small levels: a parallel launch costs more than the work)."""
    for y in range(y0, y1):
        _down_row(src, s0, dst, d0, y, x0, x1, w, pw)


@njit(cache=True, parallel=True, error_model="numpy")
def _up(src, s0, dst, d0, y0, y1, x0, x1, w, pw):
    """Adjoint of ``_down``: dst 2x2 blocks += src / 4."""
    for y in prange(y0, y1):
        _up_row(src, s0, dst, d0, y, x0, x1, w, pw)


@njit(cache=True, error_model="numpy")
def _up_serial(src, s0, dst, d0, y0, y1, x0, x1, w, pw):
    """``_up`` on one thread."""
    for y in range(y0, y1):
        _up_row(src, s0, dst, d0, y, x0, x1, w, pw)


#: Only the finest derived level (level 1, a quarter of the texture) runs in parallel, if it has at
#: least this many texels; the others (a twelfth of the texture together) run on one thread, so a
#: lookup makes few parallel launches (each can stall when the machine is oversubscribed).
PARALLEL_MIN_TEXELS = 128 * 128

#: The lookup runs between torch ops every step (torch keeps its own OpenMP pool busy); on the
#: shared 2-core test machine parallel launches here were slower than one thread, and a quiet
#: machine would gain at most about a third of the lookup. Off by default (the gather and the
#: deterministic scatter are always serial); set True to build/collapse level 1 in parallel.
PARALLEL = False


@njit(cache=True, error_model="numpy")
def level_regions(index, sizes, offsets):
    """(L, 4) int64 rows [y0, y1, x0, x1) per level: the texels of level l a lookup needs built.

    That is the bounding box of the taps (``index`` (N, K) table rows) that fall in level l,
    united with the 2x2 parents of level l + 1's region (needed to build it). A level no tap
    reaches, with nothing above it, is empty (y1 <= y0). Row 0 (the texture) is unused. The
    gradient of level l is zero outside its region, so ``collapse_levels`` works there only,
    with bit-identical results. The sample mesh's close-ups read 36% of the pyramid on average
    (median 31%; views spanning distant UV islands read nearly all of it).
    """
    nl = sizes.shape[0]
    reg = np.empty((nl, 4), np.int64)
    for lv in range(nl):
        reg[lv, 0], reg[lv, 1], reg[lv, 2], reg[lv, 3] = sizes[lv, 0], 0, sizes[lv, 1], 0
    n, k = index.shape
    for i in range(n):
        for j in range(k):
            r = index[i, j]
            lv = nl - 1
            while offsets[lv] > r:
                lv -= 1
            q = r - offsets[lv]
            y = q // sizes[lv, 1]
            x = q - y * sizes[lv, 1]
            reg[lv, 0] = min(reg[lv, 0], y)
            reg[lv, 1] = max(reg[lv, 1], y + 1)
            reg[lv, 2] = min(reg[lv, 2], x)
            reg[lv, 3] = max(reg[lv, 3], x + 1)
    for lv in range(nl - 2, 0, -1):
        if reg[lv + 1, 1] > reg[lv + 1, 0]:
            reg[lv, 0] = min(reg[lv, 0], 2 * reg[lv + 1, 0])
            reg[lv, 1] = max(reg[lv, 1], 2 * reg[lv + 1, 1])
            reg[lv, 2] = min(reg[lv, 2], 2 * reg[lv + 1, 2])
            reg[lv, 3] = max(reg[lv, 3], 2 * reg[lv + 1, 3])
    return reg


def build_levels(tex, sizes, offsets, lo, regions):
    """tex (n0,C) level 0 -> lo (T-n0,C): level l = 2x2 box average of level l-1, inside
    ``regions`` (L, 4) from ``level_regions`` (rows of ``lo`` outside them are left unset).

    sizes (L,2) int64 (h, w) per level; offsets (L,) int64 first table row of each level.
    """
    n0 = int(offsets[1])
    for lv in range(1, sizes.shape[0]):
        y0, y1, x0, x1 = (int(v) for v in regions[lv])
        if y1 <= y0:
            continue
        h, w, pw = int(sizes[lv, 0]), int(sizes[lv, 1]), int(sizes[lv - 1, 1])
        down = _down if PARALLEL and lv == 1 and h * w >= PARALLEL_MIN_TEXELS else _down_serial
        if lv == 1:
            down(tex, 0, lo, int(offsets[1]) - n0, y0, y1, x0, x1, w, pw)
        else:
            down(lo, int(offsets[lv - 1]) - n0, lo, int(offsets[lv]) - n0, y0, y1, x0, x1, w, pw)


def collapse_levels(sizes, offsets, g0, glo, regions):
    """Adjoint of ``build_levels``: push each level's gradient (zero outside its region) down,
    finally into g0 (in place)."""
    n0 = int(offsets[1])
    for lv in range(sizes.shape[0] - 1, 0, -1):
        y0, y1, x0, x1 = (int(v) for v in regions[lv])
        if y1 <= y0:
            continue
        h, w, pw = int(sizes[lv, 0]), int(sizes[lv, 1]), int(sizes[lv - 1, 1])
        up = _up if PARALLEL and lv == 1 and h * w >= PARALLEL_MIN_TEXELS else _up_serial
        if lv == 1:
            up(glo, int(offsets[1]) - n0, g0, 0, y0, y1, x0, x1, w, pw)
        else:
            up(glo, int(offsets[lv]) - n0, glo, int(offsets[lv - 1]) - n0, y0, y1, x0, x1, w, pw)


@njit(cache=True, error_model="numpy")
def gather_forward(tex, lo, pixels, index, weight, out):
    """out[pixels[i]] (rows of a (B*H*W, C) image) = sum_k weight[i,k] * table[index[i,k]],
    table = tex (rows < n0) then lo. Rows of ``out`` not in ``pixels`` are left as they are."""
    n, k = index.shape
    c = tex.shape[1]
    n0 = tex.shape[0]
    if c == 3:  # the common case: accumulate in registers
        for i in range(n):
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            for j in range(k):
                wt = weight[i, j]
                r = index[i, j]
                if r < n0:
                    a0 += wt * tex[r, 0]
                    a1 += wt * tex[r, 1]
                    a2 += wt * tex[r, 2]
                else:
                    r -= n0
                    a0 += wt * lo[r, 0]
                    a1 += wt * lo[r, 1]
                    a2 += wt * lo[r, 2]
            p = pixels[i]
            out[p, 0] = a0
            out[p, 1] = a1
            out[p, 2] = a2
        return
    for i in range(n):
        p = pixels[i]
        for ch in range(c):
            out[p, ch] = 0.0
        for j in range(k):
            wt = weight[i, j]
            r = index[i, j]
            if r < n0:
                for ch in range(c):
                    out[p, ch] += wt * tex[r, ch]
            else:
                for ch in range(c):
                    out[p, ch] += wt * lo[r - n0, ch]


@njit(cache=True, error_model="numpy")
def gather_backward(grad, pixels, index, weight, g0, glo):
    """Adjoint of ``gather_forward``: g0 (n0,C), glo (T-n0,C) += weight * grad[pixels] scattered."""
    n, k = index.shape
    c = grad.shape[1]
    n0 = g0.shape[0]
    if c == 3:
        for i in range(n):
            p = pixels[i]
            d0 = grad[p, 0]
            d1 = grad[p, 1]
            d2 = grad[p, 2]
            for j in range(k):
                wt = weight[i, j]
                r = index[i, j]
                if r < n0:
                    g0[r, 0] += wt * d0
                    g0[r, 1] += wt * d1
                    g0[r, 2] += wt * d2
                else:
                    r -= n0
                    glo[r, 0] += wt * d0
                    glo[r, 1] += wt * d1
                    glo[r, 2] += wt * d2
        return
    for i in range(n):
        p = pixels[i]
        for j in range(k):
            wt = weight[i, j]
            r = index[i, j]
            if r < n0:
                for ch in range(c):
                    g0[r, ch] += wt * grad[p, ch]
            else:
                for ch in range(c):
                    glo[r - n0, ch] += wt * grad[p, ch]
