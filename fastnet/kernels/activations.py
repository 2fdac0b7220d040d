"""The activations a layer's output passes through, forward beside backward: identity, ReLU and
the sigmoid (reference twins: ``fastnet.reference.Relu``, ``fastnet.reference.Sigmoid``).

Every layer kind's backward pass ends with ``activation_backward``: the gradient it wrote for its
input is multiplied by the derivative of the activation of the layer below, read from that
layer's output y ([y > 0] for ReLU, y·(1 − y) for the sigmoid). One rule for every kind, so an
activation is honoured after any layer. Forward, the products fuse ReLU into their epilogues
where it pays; everything else goes through ``activation_forward``.
"""

import numpy as np
from numba import njit

IDENTITY, RELU, SIGMOID = 0, 1, 2
ACTIVATION_CODES = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID}


@njit(cache=True, error_model="numpy", inline="always")  # the sigmoid's 1 + e^-v is at least 1: no zero check
def activate(act, v):
    """act(v) for one float64 value: for loops that fuse the activation into their own pass."""
    if act == RELU:
        return 0.0 if v < 0 else v  # not "v > 0 else 0": NaN stays NaN
    if act == SIGMOID:
        return 1 / (1 + np.exp(-v))
    return v


@njit(cache=True, error_model="numpy")  # the sigmoid's 1 + e^-v is at least 1: no zero check
def activation_forward(act, row):
    """row = act(row) in place, a 1-D view."""
    if act == RELU:
        for j in range(row.shape[0]):
            if row[j] < 0:  # not "v > 0 else 0": NaN must stay NaN
                row[j] = 0
    elif act == SIGMOID:
        for j in range(row.shape[0]):
            row[j] = 1 / (1 + np.exp(-row[j]))


@njit(cache=True)
def activation_backward(act, d, y):
    """d = d ⊙ act'(·) in place, the derivative read from the activation's output y (1-D views
    of one length): [y > 0] for ReLU, y·(1 − y) for the sigmoid, 1 for the identity."""
    if act == RELU:
        for j in range(d.shape[0]):
            if not y[j] > 0:
                d[j] = 0
    elif act == SIGMOID:
        for j in range(d.shape[0]):
            d[j] *= y[j] * (1 - y[j])
