"""The reference must not have the traps the seeds show."""

import numpy as np

from fastnet import reference


def test_softmax_does_not_overflow():
    y = reference.softmax(np.array([[1000.0, 1001.0, 999.0]]))
    assert np.all(np.isfinite(y)) and abs(y.sum() - 1) < 1e-12


def test_integer_label_backward_subtracts_one():
    layer = reference.SoftmaxWithLoss()
    z = np.array([[1.0, 2.0, 3.0]])
    layer.forward(z, np.array([2]))
    dz = layer.backward()
    np.testing.assert_allclose(dz, reference.softmax(z) - np.eye(3)[[2]])
    assert dz[0, 2] < 0  # the "set it to 1" trap would make this positive


def test_nothing_mutates_the_callers_arrays():
    rng = np.random.default_rng(0)
    net = reference.TwoLayerNet(6, 4, 3, weight_init_std=1.0, seed=0)
    x, t = rng.standard_normal((5, 6)), rng.integers(0, 3, 5)
    x0, t0 = x.copy(), t.copy()
    net.gradient(x, t)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)
    relu = reference.Relu()
    relu.forward(np.array([-1.0, 2.0]))
    dout = np.array([5.0, 5.0])
    relu.backward(dout)
    np.testing.assert_array_equal(dout, [5.0, 5.0])  # the book's Relu zeroes dout in place


def test_one_hot_and_integer_labels_agree():
    rng = np.random.default_rng(1)
    net = reference.TwoLayerNet(6, 4, 3, weight_init_std=1.0, seed=0)
    x, t = rng.standard_normal((5, 6)), rng.integers(0, 3, 5)
    assert net.loss(x, t) == net.loss(x, np.eye(3)[t])
    g_int, g_hot = net.gradient(x, t), net.gradient(x, np.eye(3)[t])
    for key in g_int:
        np.testing.assert_allclose(g_int[key], g_hot[key], rtol=1e-14, atol=1e-17)
