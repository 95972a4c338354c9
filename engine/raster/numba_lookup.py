"""CPU kernels (numba) for the texture gather of ``engine.render``: forward gather, backward scatter.

Forward is parallel over pixels; the backward scatter-add runs in pixel order on one thread
(deterministic, no write races).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def gather_forward(table, index, weight, out):
    """table (T,C) f32, index (N,K) i64, weight (N,K) f32 -> out (N,C) = sum_k w * table[idx]."""
    n, k = index.shape
    c = table.shape[1]
    for i in prange(n):
        for ch in range(c):
            out[i, ch] = 0.0
        for j in range(k):
            wt = weight[i, j]
            r = index[i, j]
            for ch in range(c):
                out[i, ch] += wt * table[r, ch]


@njit(cache=True)
def gather_backward(grad, index, weight, out):
    """grad (N,C), index (N,K), weight (N,K) -> out (T,C) += scatter of w * grad (out zeroed by caller)."""
    n, k = index.shape
    c = grad.shape[1]
    for i in range(n):
        for j in range(k):
            wt = weight[i, j]
            r = index[i, j]
            for ch in range(c):
                out[r, ch] += wt * grad[i, ch]


def numba_gather_forward(table: np.ndarray, index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    out = np.empty((index.shape[0], table.shape[1]), dtype=np.float32)
    gather_forward(table, index, weight, out)
    return out


def numba_gather_backward(grad: np.ndarray, index: np.ndarray, weight: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, grad.shape[1]), dtype=np.float32)
    gather_backward(grad, index, weight, out)
    return out


@njit(cache=True, parallel=True)
def build_pyramid(texture, sizes, offsets, table):
    """texture (H,W,C) f32 -> table (T,C): level 0 = texture, level l = 2x2 box average of level l-1.

    sizes (L,2) i64 level (h, w); offsets (L,) i64 first row of each level in ``table``.
    """
    h0, w0, c = texture.shape
    for y in prange(h0):
        base = y * w0
        for x in range(w0):
            for ch in range(c):
                table[base + x, ch] = texture[y, x, ch]
    for lv in range(1, sizes.shape[0]):
        h, w = sizes[lv, 0], sizes[lv, 1]
        pw = sizes[lv - 1, 1]
        src = offsets[lv - 1]
        dst = offsets[lv]
        for y in prange(h):
            for x in range(w):
                a = src + (2 * y) * pw + 2 * x
                b = a + pw
                for ch in range(c):
                    table[dst + y * w + x, ch] = 0.25 * (table[a, ch] + table[a + 1, ch] + table[b, ch] + table[b + 1, ch])


@njit(cache=True, parallel=True)
def collapse_pyramid(sizes, offsets, gtable):
    """Adjoint of ``build_pyramid``: push each level's gradient down to level 0 (in place)."""
    c = gtable.shape[1]
    for lv in range(sizes.shape[0] - 1, 0, -1):
        h, w = sizes[lv, 0], sizes[lv, 1]
        pw = sizes[lv - 1, 1]
        src = offsets[lv]
        dst = offsets[lv - 1]
        for y in prange(h):
            for x in range(w):
                a = dst + (2 * y) * pw + 2 * x
                b = a + pw
                for ch in range(c):
                    g = 0.25 * gtable[src + y * w + x, ch]
                    gtable[a, ch] += g
                    gtable[a + 1, ch] += g
                    gtable[b, ch] += g
                    gtable[b + 1, ch] += g
