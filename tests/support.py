"""Shared test helpers (imported by name; conftest.py keeps only fixtures)."""

import numpy as np

FLOAT_DTYPES = [np.float32, np.float64]

# (B, D, H, C): B=1, H=1, sizes that are not multiples of the SIMD width, the book's shape
SHAPES = [
    (1, 1, 1, 2),
    (1, 784, 50, 10),
    (2, 3, 1, 2),
    (7, 13, 5, 3),
    (17, 33, 19, 10),
    (64, 31, 16, 7),
    (100, 784, 50, 10),
    (129, 65, 33, 11),
]


def assert_matches_reference(actual, expected, dtype, scale=None):
    """float32 to rtol 1e-5, float64 to 1e-12, relative to the size of the terms (``scale``)."""
    tol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    expected = np.asarray(expected, dtype=np.float64)
    if scale is None:
        scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=tol, atol=tol * scale)
