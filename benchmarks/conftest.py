import numpy as np
import pytest
from bench_support import N_TRAIN, PREDICT_ROWS, C, D


@pytest.fixture(scope="session")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((max(N_TRAIN, PREDICT_ROWS), D)).astype(np.float32)
    t = rng.integers(0, C, len(x))
    return x, t
