"""The seeds' first pieces, before the two-layer network: gradient descent on a function, the
book's ``simpleNet``, and the nodes of a computational graph, each forward beside its backward.

=====================  =========================================================================
seed 000               ``numerical_gradient(f, w)`` (any shape), ``gradient_descent``, ``SimpleNet``
seeds 002, 003, 004    ``MulLayer``, ``AddLayer`` (the apple and apple-and-orange examples)
seed 001               ``Addition`` (gradient distributor), ``Multiplication`` (swap multiplier),
                       ``Maximum`` (gradient router), ``Copy`` (gradient adder), ``Step``,
                       ``CEE_Softmax`` (softmax with cross-entropy)
=====================  =========================================================================

Plain numpy, written for reading. Nodes take arrays or scalars and broadcast as numpy does; a
backward pass sums a gradient over the axes its input was broadcast along, so that each input
gets a gradient of its own shape (a scalar tax gets a scalar). No node changes the arrays it is
given. Traps of the seeds that are avoided here (each has a test): seed 000's
``numerical_gradient`` indexes ``w[i]`` and so breaks on a 2-D ``W``; seed 001's ``Maximum``
sends the whole gradient down both inputs on a tie; seed 001's ``CEE_Softmax`` sets the target
entry to 1 instead of subtracting 1 for integer labels.
"""

import numpy as np

from .reference import SoftmaxWithLoss, cross_entropy_error, numerical_gradient, softmax

__all__ = [
    "numerical_gradient", "gradient_descent", "SimpleNet", "simpleNet", "MulLayer", "AddLayer", "Multiplication",
    "Addition", "Maximum", "Copy", "Step", "CEE_Softmax",
]  # fmt: skip


def gradient_descent(f, init_w, lr=0.1, step_num=100):
    """``step_num`` steps of w -= lr·∇f(w) from ``init_w``, the gradient by central differences;
    returns the last w (a new float array: ``init_w`` is not changed, as the book's is).

    >>> gradient_descent(lambda w: w[0] ** 2 + w[1] ** 2, np.array([-3.0, 4.0]))
    array([-6.11110793e-10,  8.14814391e-10])
    """
    w = np.array(init_w, dtype=np.float64)
    for _ in range(step_num):
        w -= lr * numerical_gradient(f, w)
    return w


class SimpleNet:
    """The book's ``simpleNet``: one weight matrix W (2, 3) and no bias; ``predict(x) = x·W``,
    ``loss(x, t)`` = cross-entropy of softmax(x·W) against t (one-hot or an integer label).
    ``W`` defaults to standard normal draws (seeded by ``seed``); give the seed's printed W to
    reproduce its numbers.

    >>> net = SimpleNet([[-3.01115348, 0.4640963, -1.85174813], [0.19180367, 0.7046224, -1.30501329]])
    >>> x, t = np.array([0.6, 0.9]), np.array([0, 0, 1])
    >>> print(f"{net.loss(x, t):.8f}")
    3.31076991
    >>> net.numerical_gradient(x, t).round(8)
    array([[ 0.04199902,  0.53610661, -0.57810563],
           [ 0.06299853,  0.80415992, -0.86715845]])
    """

    def __init__(self, W=None, seed=None):
        if W is None:
            W = np.random.default_rng(seed).standard_normal((2, 3))
        self.W = np.array(W, dtype=np.float64)  # our own copy: the gradient perturbs it in place

    def predict(self, x):
        return np.dot(x, self.W)

    def loss(self, x, t):
        return cross_entropy_error(softmax(self.predict(x)), t)

    def numerical_gradient(self, x, t):
        """dW, as the seed computes it: ``numerical_gradient(lambda W: net.loss(x, t), net.W)``."""
        return numerical_gradient(lambda _: self.loss(x, t), self.W)


simpleNet = SimpleNet  # the book's spelling


def _unbroadcast(grad, shape):
    """``grad`` summed down to ``shape``: over the leading axes numpy added and the axes of length 1
    it stretched (the gradient of a broadcast input adds up every use of it)."""
    grad = np.asarray(grad)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad[()] if grad.ndim == 0 else grad


class MulLayer:
    """z = x·y. Backward: the swap multiplier, dx = dout·y, dy = dout·x.

    >>> apple, tax = MulLayer(), MulLayer()
    >>> price = tax.forward(apple.forward(100, 2), 1.1)
    >>> print(price)
    220.00000000000003
    >>> dapple_price, dtax = tax.backward(1)
    >>> print(*apple.backward(dapple_price), dtax)
    2.2 110.00000000000001 200
    """

    def __init__(self):
        self.x = self.y = None

    def forward(self, x, y):
        self.x, self.y = x, y
        return np.multiply(x, y)[()]

    def backward(self, dout):
        return _unbroadcast(np.multiply(dout, self.y), np.shape(self.x)), _unbroadcast(
            np.multiply(dout, self.x), np.shape(self.y)
        )


class AddLayer:
    """z = x + y. Backward: the gradient distributor, dx = dy = dout."""

    def __init__(self):
        self.x_shape = self.y_shape = None

    def forward(self, x, y):
        self.x_shape, self.y_shape = np.shape(x), np.shape(y)
        return np.add(x, y)[()]

    def backward(self, dout):
        return _unbroadcast(dout, self.x_shape), _unbroadcast(dout, self.y_shape)


Multiplication = MulLayer  # seed 001's names for the same nodes
Addition = AddLayer


class Maximum:
    """z = max(x, y) elementwise. Backward: the gradient router, all of dout to the larger input.
    On a tie (x == y) it goes to x only: max is not differentiable there, and sending it down
    both (as seed 001 does) would double the gradient of max(x, x) = x."""

    def __init__(self):
        self.to_x = None
        self.x_shape = self.y_shape = None

    def forward(self, x, y):
        self.x_shape, self.y_shape = np.shape(x), np.shape(y)
        self.to_x = np.greater_equal(x, y)
        return np.maximum(x, y)[()]

    def backward(self, dout):
        dout = np.asarray(dout)
        return (_unbroadcast(np.where(self.to_x, dout, 0.0), self.x_shape),
                _unbroadcast(np.where(self.to_x, 0.0, dout), self.y_shape))  # fmt: skip


class Copy:
    """One input used twice: (x, x) forward (two copies, so that no consumer can change the
    other's); backward: the gradient adder, dx = dout1 + dout2."""

    def forward(self, x):
        return np.copy(x)[()], np.copy(x)[()]

    def backward(self, dout1, dout2):
        return np.add(dout1, dout2)[()]


class Step:
    """The step function, [x > 0] as integers. Its derivative is 0 wherever it exists (everywhere
    but x = 0): backward passes zeros, which is why the step function cannot be trained by backprop."""

    def __init__(self):
        self.x_shape = None

    def forward(self, x):
        self.x_shape = np.shape(x)
        return np.asarray(np.greater(x, 0), dtype=np.int64)[()]

    def backward(self, dout):
        return np.zeros(self.x_shape)[()]


CEE_Softmax = SoftmaxWithLoss  # seed 001's name for it (integer labels subtract 1 at the target)
