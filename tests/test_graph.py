"""The seeds' first pieces (fastnet.graph): their printed numbers, their traps, central differences."""

import doctest

import numpy as np
import pytest

from fastnet import graph, reference
from fastnet.graph import (
    Addition,
    AddLayer,
    CEE_Softmax,
    Copy,
    Maximum,
    MulLayer,
    Multiplication,
    SimpleNet,
    Step,
    gradient_descent,
    numerical_gradient,
    simpleNet,
)

SEED_W = [[-3.01115348, 0.4640963, -1.85174813], [0.19180367, 0.7046224, -1.30501329]]  # seed 000's printed W


def test_the_modules_examples_run_as_printed():
    failures, tried = doctest.testmod(graph, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 8 and failures == 0


# -- seed 000 ---------------------------------------------------------------------------------------


def test_seed_000_numerical_gradient_of_a_sum_of_squares():
    f = lambda w: w[0] ** 2 + w[1] ** 2  # noqa: E731
    np.testing.assert_allclose(numerical_gradient(f, np.array([3.0, 4.0])), [6.0, 8.0], rtol=1e-9)


def test_seed_000_gradient_descent_and_its_input_is_left_alone():
    init_w = np.array([-3.0, 4.0])
    w = gradient_descent(lambda w: w[0] ** 2 + w[1] ** 2, init_w, lr=0.1, step_num=100)
    assert np.array2string(w, precision=8) == "[-6.11110793e-10  8.14814391e-10]"  # as the seed prints it
    assert init_w.tolist() == [-3.0, 4.0]


def test_seed_000_simple_net_with_the_printed_W():
    net = simpleNet(SEED_W)
    x, t = np.array([0.6, 0.9]), np.array([0, 0, 1])
    assert net.loss(x, t) == pytest.approx(3.3107699086628117, abs=1e-8)  # the printed W has 8 decimals
    dW = net.numerical_gradient(x, t)
    np.testing.assert_allclose(dW, [[0.04199902, 0.53610661, -0.57810563], [0.06299853, 0.80415992, -0.86715845]],
                               atol=1e-8)  # fmt: skip
    assert net.W.tolist() == SEED_W  # every entry restored
    assert net.loss(x, 2) == net.loss(x, t)  # an integer label too
    assert SimpleNet(seed=1).W.shape == (2, 3) and np.array_equal(SimpleNet(seed=1).W, SimpleNet(seed=1).W)


def test_trap_numerical_gradient_takes_any_shape_and_restores_every_entry():
    """Seed 000's version indexes w[i]: on a 2-D W it perturbs whole rows."""
    rng = np.random.default_rng(0)
    for shape in [(5,), (3, 4), (2, 3, 2), ()]:
        w = rng.standard_normal(shape)
        before = w.copy()
        grad = numerical_gradient(lambda v: np.sum(v**3), w)
        np.testing.assert_allclose(grad, 3 * before**2, rtol=1e-6, atol=1e-8)
        assert np.array_equal(w, before)


def test_trap_numerical_gradient_restores_the_entry_when_f_raises_and_refuses_integers():
    w = np.array([1.0, 2.0])

    def f(v):
        if v[0] != 1.0:
            raise RuntimeError("boom")
        return 0.0

    with pytest.raises(RuntimeError):
        numerical_gradient(f, w)
    assert w.tolist() == [1.0, 2.0]
    with pytest.raises(TypeError, match="float array"):
        numerical_gradient(lambda v: 0.0, np.array([1, 2]))  # x + h would be truncated to x


# -- seeds 002, 003, 004: the shop --------------------------------------------------------------------


def test_seeds_002_004_the_apple():
    mul_apple_layer, mul_tax_layer = MulLayer(), MulLayer()
    price = mul_tax_layer.forward(mul_apple_layer.forward(100, 2), 1.1)
    assert price == 220.00000000000003 and str(price) == "220.00000000000003"
    dapple_price, dtax = mul_tax_layer.backward(1)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)
    assert (dapple, dapple_num, dtax) == (2.2, 110.00000000000001, 200)
    assert " ".join(map(str, (dtax, dapple, dapple_num))) == "200 2.2 110.00000000000001"  # seed 002's order


def test_seed_002_the_apple_and_the_orange():
    mul_apple_layer, mul_orange_layer, add_apple_orange_layer, mul_tax_layer = MulLayer(), MulLayer(), AddLayer(), \
        MulLayer()  # fmt: skip
    apple_price = mul_apple_layer.forward(100, 2)
    orange_price = mul_orange_layer.forward(150, 3)
    final = mul_tax_layer.forward(add_apple_orange_layer.forward(apple_price, orange_price), 1.1)
    assert str(final) == "715.0000000000001"
    dsum, dtax = mul_tax_layer.backward(1)
    dapple_price, dorange_price = add_apple_orange_layer.backward(dsum)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)
    dorange, dorange_num = mul_orange_layer.backward(dorange_price)
    assert " ".join(map(str, (dapple, dapple_num, dorange, dorange_num, dtax))) == \
        "2.2 110.00000000000001 3.3000000000000003 165.0 650"  # fmt: skip


# -- seed 001: the graph nodes, against central differences ---------------------------------------------

BINARY_SHAPES = [((4, 3), (4, 3)), ((4, 3), ()), ((), (2, 5)), ((4, 3), (3,)), ((4, 1), (1, 3)), ((1,), (6,))]


def central_differences(node_loss, value):
    value = np.array(value, dtype=np.float64)
    return (
        numerical_gradient(node_loss, value, h=1e-6)
        if value.ndim
        else numerical_gradient(lambda v: node_loss(v), value.reshape(1), h=1e-6).reshape(())
    )


@pytest.mark.parametrize("node", [Multiplication, Addition, Maximum])
@pytest.mark.parametrize("x_shape,y_shape", BINARY_SHAPES)
def test_binary_nodes_backward_equals_central_differences(node, x_shape, y_shape):
    rng = np.random.default_rng(len(x_shape) * 7 + len(y_shape))
    x, y = rng.standard_normal(x_shape), rng.standard_normal(y_shape)
    weights = rng.standard_normal(np.broadcast_shapes(x_shape, y_shape))  # L = Σ weights ⊙ z
    layer = node()
    x_before, y_before = np.copy(x), np.copy(y)
    z = layer.forward(x, y)
    dx, dy = layer.backward(weights)
    assert np.shape(dx) == x_shape and np.shape(dy) == y_shape
    assert np.array_equal(x, x_before) and np.array_equal(y, y_before)  # inputs untouched
    loss_x = lambda v: float(np.sum(weights * node().forward(v.reshape(x_shape), y)))  # noqa: E731
    loss_y = lambda v: float(np.sum(weights * node().forward(x, v.reshape(y_shape))))  # noqa: E731
    np.testing.assert_allclose(dx, central_differences(loss_x, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dy, central_differences(loss_y, y), rtol=1e-6, atol=1e-8)
    assert np.shape(z) == weights.shape


def test_trap_maximum_routes_a_tie_to_one_input():
    """Seed 001's masks (x >= y and x <= y) both fire on a tie: max(x, x) = x would get twice dout."""
    layer = Maximum()
    x = np.array([1.0, 2.0, 3.0])
    layer.forward(x, np.array([1.0, 5.0, 0.0]))
    dx, dy = layer.backward(np.array([10.0, 20.0, 30.0]))
    assert dx.tolist() == [10.0, 0.0, 30.0] and dy.tolist() == [0.0, 20.0, 0.0]  # the tie: all to x
    assert (dx + dy).tolist() == [10.0, 20.0, 30.0]


def test_copy_adds_the_gradients_and_its_outputs_are_independent():
    x = np.arange(6.0).reshape(2, 3)
    a, b = Copy().forward(x)
    a[0, 0] = 99.0
    assert b[0, 0] == 0.0 and x[0, 0] == 0.0
    rng = np.random.default_rng(3)
    w1, w2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    dx = Copy().backward(w1, w2)
    loss = lambda v: float(np.sum(w1 * Copy().forward(v)[0]) + np.sum(w2 * Copy().forward(v)[1]))  # noqa: E731
    np.testing.assert_allclose(dx, central_differences(loss, x), rtol=1e-6)


def test_step_forward_and_its_zero_gradient():
    layer = Step()
    x = np.array([-1.5, 0.0, 0.3, 2.0])
    assert layer.forward(x).tolist() == [0, 0, 1, 1]
    dx = layer.backward(np.ones(4))
    loss = lambda v: float(np.sum(Step().forward(v)))  # noqa: E731
    np.testing.assert_array_equal(dx, central_differences(loss, np.array([-1.5, 0.1, 0.3, 2.0])))
    scalar = Step()
    assert scalar.forward(0.5) == 1 and np.shape(scalar.backward(1.0)) == ()


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("batch", [1, 4])
def test_trap_cee_softmax_subtracts_one_at_the_target(one_hot, batch):
    """Seed 001's integer-label backward sets the target entry to 1; the gradient is y - onehot(t)."""
    rng = np.random.default_rng(batch)
    a, labels = rng.standard_normal((batch, 5)), rng.integers(0, 5, batch)
    t = np.eye(5)[labels] if one_hot else labels
    layer = CEE_Softmax()
    a_before = a.copy()
    loss = layer.forward(a, t)
    assert loss == pytest.approx(reference.cross_entropy_error(reference.softmax(a), labels), rel=1e-5)
    da = layer.backward()
    np.testing.assert_allclose(da, (reference.softmax(a) - np.eye(5)[labels]) / batch, rtol=1e-12)
    np.testing.assert_allclose(da, central_differences(lambda v: CEE_Softmax().forward(v, t), a), rtol=1e-6,
                               atol=1e-9)  # fmt: skip
    assert np.array_equal(a, a_before)
