"""Bad arguments to the checked kernels raise TypeError/ValueError naming the argument."""

import numpy as np
import pytest
from numba import njit

from fastnet import kernels

f64 = np.float64


def good_affine():
    return [np.ones((4, 3)), np.ones((3, 2)), np.ones(2), np.empty((4, 2))]


def with_arg(args, i, value):
    args = list(args)
    args[i] = value
    return args


AFFINE_CASES = [
    # (replace argument i with value, error, words in the message)
    (1, np.ones((5, 2)), ValueError, "'W' must have x.shape[1] rows"),
    (2, np.ones(3), ValueError, "'b' must have W.shape[1] entries"),
    (3, np.empty((4, 3)), ValueError, "'out' must have shape"),
    (3, np.empty((5, 2)), ValueError, "'out' must have shape"),
    (0, np.ones((4, 3), np.float32), TypeError, "'W' is float64 but the other float arguments are float32"),
    (1, np.ones((3, 2), np.int64), TypeError, "'W' must be float32 or float64"),
    (1, np.ones((3, 2), bool), TypeError, "'W' must be float32 or float64"),
    (1, np.ones((3, 2), complex), TypeError, "'W' must be float32 or float64"),
    (1, np.ones((3, 2), object), TypeError, "'W' must be float32 or float64"),
    (0, np.ones(3), ValueError, "'x' must be 2-D"),
    (0, np.float64(1.0), TypeError, "'x' must be a numpy array"),
    (0, [[1.0]], TypeError, "'x' must be a numpy array"),
    (2, np.ones((1, 2)), ValueError, "'b' must be 1-D"),
    (3, np.empty((2, 4)).T, ValueError, "'out' is an output and must be C-contiguous"),
    (0, np.ones((0, 3)), ValueError, "must not be empty"),
]


@pytest.mark.parametrize("func", [kernels.affine_relu_forward, kernels.affine_forward])
@pytest.mark.parametrize("i,value,error,words", AFFINE_CASES)
def test_affine_bad_arguments(func, i, value, error, words):
    with pytest.raises(error) as info:
        func(*with_arg(good_affine(), i, value))
    assert words in str(info.value)


def test_affine_read_only_output():
    args = good_affine()
    args[3].flags.writeable = False
    with pytest.raises(ValueError, match="'out' is an output and must be writable"):
        kernels.affine_relu_forward(*args)


def test_affine_output_aliasing_input():
    x = np.ones((4, 4))
    with pytest.raises(ValueError, match="overlaps an input"):
        kernels.affine_relu_forward(x, np.ones((4, 4)), np.ones(4), x)
    buf = np.ones(20)
    with pytest.raises(ValueError, match="overlaps an input"):
        kernels.affine_forward(buf[:12].reshape(4, 3), np.ones((3, 2)), np.ones(2), buf[10:18].reshape(4, 2))


@pytest.mark.parametrize(
    "t,error,words",
    [
        (np.array([0, 1, 3]), ValueError, "labels must lie in [0, C)"),
        (np.array([0, -1, 2]), ValueError, "labels must lie in [0, C)"),
        (np.array([0.0, 1.0, 2.0]), TypeError, "'t' holds class labels and must have an integer dtype"),
        (np.array([True, False, True]), TypeError, "integer dtype"),
        (np.array([0, 1]), ValueError, "'t' must have one label per row"),
        (np.array([[0, 1, 0]]), ValueError, "'t' must be 1-D"),
    ],
)
def test_softmax_bad_labels(t, error, words):
    z = np.zeros((3, 3))
    with pytest.raises(error) as info:
        kernels.softmax_cross_entropy(z, t, np.empty_like(z))
    assert words in str(info.value)


def test_softmax_output_aliasing():
    z = np.zeros((3, 3))
    with pytest.raises(ValueError, match="overlaps an input"):
        kernels.softmax_cross_entropy(z, np.array([0, 1, 2]), z)


def test_backward_bad_shapes_and_aliasing():
    dout, h, W = np.ones((4, 3)), np.ones((4, 5)), np.ones((5, 3))
    dW, db, dh = np.empty((5, 3)), np.empty(3), np.empty((4, 5))
    with pytest.raises(ValueError, match="'W' must have shape"):
        kernels.affine_relu_backward(dout, h, np.ones((3, 5)), dW, db, dh)
    with pytest.raises(ValueError, match="'dh' must have the shape of h"):
        kernels.affine_relu_backward(dout, h, W, dW, db, np.empty((4, 4)))
    with pytest.raises(ValueError, match="overlaps an input"):
        kernels.affine_relu_backward(dout, h, W, dW, db, h)
    shared = np.empty((5, 3))
    with pytest.raises(ValueError, match="two output arrays overlap"):
        kernels.affine_relu_backward(dout, h, W, shared, shared[0], dh)
    with pytest.raises(ValueError, match="'dout' must have as many rows as 'x'"):
        kernels.affine_backward_params(np.ones((5, 7)), np.ones((4, 2)), np.empty((7, 2)), np.empty(2))


def test_sgd_bad_arguments():
    p = np.ones((3, 2))
    with pytest.raises(ValueError, match="'grad' must have the shape"):
        kernels.sgd_update(p, np.ones((2, 3)), 0.1)
    with pytest.raises(ValueError, match="overlap"):
        kernels.sgd_update(p, p, 0.1)


LR_ENTRY_POINTS = {
    "sgd_update": lambda net, x, t, lr: kernels.sgd_update(np.ones(3), np.ones(3), lr),
    "TwoLayerNet.step": lambda net, x, t, lr: net.step(x, t, lr),
    "TwoLayerNet.step_indices": lambda net, x, t, lr: net.step_indices(x, t, np.arange(3), lr),
    "TwoLayerNet.steps": lambda net, x, t, lr: net.steps(x, t, np.arange(6).reshape(2, 3), lr),
}


@pytest.mark.parametrize(
    "lr,error,words",
    [
        ("0.1", TypeError, "lr must be a real number"),
        (None, TypeError, "lr must be a real number"),
        (float("nan"), ValueError, "lr must be a finite number >= 0"),
        (float("inf"), ValueError, "lr must be a finite number >= 0"),
        (-0.1, ValueError, "lr must be a finite number >= 0"),
    ],
)
@pytest.mark.parametrize("entry", list(LR_ENTRY_POINTS))
def test_one_learning_rate_check_everywhere(entry, lr, error, words):
    from fastnet import TwoLayerNet

    net = TwoLayerNet(4, 3, 3, seed=0)
    x, t = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(error, match=f"^{entry}: {words}"):
        LR_ENTRY_POINTS[entry](net, x, t, lr)
    for k in before:
        np.testing.assert_array_equal(net.params[k], before[k])


@njit
def _user_sgd(p, g, lr):
    return kernels.sgd_update(p, g, lr)


def test_learning_rate_check_from_njit_code():
    with pytest.raises(ValueError, match="^sgd_update: lr must be a finite number >= 0"):
        _user_sgd(np.ones(3), np.ones(3), -1.0)
