"""Backprop against central differences, float64: the reference and fastnet's net."""

import numpy as np
import pytest

from fastnet import TwoLayerNet, gradcheck, reference


def _nets(D, H, C, seed):
    return [reference.TwoLayerNet(D, H, C, seed=seed), TwoLayerNet(D, H, C, dtype=np.float64, seed=seed)]


@pytest.mark.parametrize("which", [0, 1], ids=["reference", "fastnet"])
def test_gradcheck_book_shapes(which):
    rng = np.random.default_rng(0)
    x = rng.random((3, 784))
    t = rng.integers(0, 10, 3)
    report = gradcheck.check_network(_nets(784, 50, 10, seed=1)[which], x, t)
    assert report.passed, str(report)
    assert all(r.max_rel_error < 1e-6 for r in report.rows)


@pytest.mark.parametrize("which", [0, 1], ids=["reference", "fastnet"])
@pytest.mark.parametrize("D,H,C,B", [(1, 1, 2, 1), (5, 3, 4, 1), (13, 7, 3, 6), (30, 17, 10, 9)])
def test_gradcheck_small_random_shapes(which, D, H, C, B):
    rng = np.random.default_rng(D * 1000 + H)
    x = rng.standard_normal((B, D))
    t = rng.integers(0, C, B)
    net = _nets(D, H, C, seed=D + B)[which]
    for key in net.params:  # larger weights: gradients well above the rounding floor
        net.params[key][...] = 0.3 * rng.standard_normal(net.params[key].shape)
    report = gradcheck.check_network(net, x, t)
    assert all(r.max_rel_error < 1e-6 for r in report.rows), str(report)


def test_gradcheck_catches_the_set_to_one_trap():
    """A seed's integer-label backward sets the target entry to 1 instead of subtracting 1."""

    class Broken(reference.SoftmaxWithLoss):
        def backward(self, dout=1):
            dx = self.y.copy()
            dx[np.arange(self.y.shape[0]), self.t] = 1
            return dx / self.y.shape[0]

    net = reference.TwoLayerNet(8, 5, 3, weight_init_std=1.0, seed=2)
    net.last_layer = Broken()
    rng = np.random.default_rng(1)
    report = gradcheck.check_network(net, rng.random((4, 8)), rng.integers(0, 3, 4))
    assert not report.passed
    assert "FAIL" in str(report)


def test_numerical_gradient_restores_every_entry():
    x = np.arange(6.0).reshape(2, 3)
    before = x.copy()
    grad = gradcheck.numerical_gradient(lambda a: float(np.sum(a**2)), x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(grad, 2 * before, rtol=1e-8)


def test_numerical_gradient_restores_when_f_raises():
    x = np.ones(3)

    def f(a):
        if a[0] > 1:
            raise RuntimeError("boom")
        return 0.0

    with pytest.raises(RuntimeError):
        gradcheck.numerical_gradient(f, x)
    np.testing.assert_array_equal(x, np.ones(3))
