"""Scoring against the matrix of item vectors, float32 or float16 (SHOPLM_VECTOR_MATRIX).

    scores = matvec(vectors, query)       # float32 (rows,): one pass, by chunks for float16
    some = rows_at(vectors, rows)          # float32 (m, dim): the rows gathered, then cast

numpy has no BLAS for float16: `float16 @ float32` copies the whole matrix to float32 first
(1.5 GB at a million items) and `float16 @ float16` runs a slow loop accumulating in float16.
Both search (re-scoring, result-set cosines) and recommendation (text scores, complements)
score with the same matrix, hence a helper in lm/, which both may import.
"""

from __future__ import annotations

import numpy as np

MATRIX = {"float32": np.float32, "float16": np.float16}  # SHOPLM_VECTOR_MATRIX -> the in-memory dtype
CHUNK_ROWS = 65_536  # rows `matvec` converts to float32 at once: 96 MiB at 384 dimensions


def matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """float32 `matrix @ vector` (rows,) for a float32 or float16 matrix. numpy has no BLAS for
    float16, and `float16 @ float32` would first copy the whole matrix to float32."""
    vector = np.asarray(vector, dtype=np.float32)
    if matrix.dtype == np.float32:
        return matrix @ vector
    out = np.empty(len(matrix), dtype=np.float32)
    for start in range(0, len(matrix), CHUNK_ROWS):
        out[start:start + CHUNK_ROWS] = matrix[start:start + CHUNK_ROWS].astype(np.float32) @ vector
    return out


def rows_at(matrix: np.ndarray, rows) -> np.ndarray:
    """float32 rows of `matrix` (a gather, then the cast of what was gathered)."""
    return np.asarray(matrix[rows], dtype=np.float32)
