"""The book's six optimizers (Deep Learning from Scratch, ch. 6): SGD, Momentum, Nesterov, AdaGrad,
RMSprop, Adam, with its defaults and exact update rules (g the gradient):

=========  ========================  ===================================================
SGD        lr=0.01                   W -= lr·g
Momentum   lr=0.01, momentum=0.9     v = m·v - lr·g;  W += v
Nesterov   lr=0.01, momentum=0.9     W += m·m·v;  W -= (1+m)·lr·g;  v = m·v - lr·g
AdaGrad    lr=0.01                   h += g²;  W -= lr·g / (√h + 1e-7)
RMSprop    lr=0.01, decay_rate=0.99  h = d·h + (1-d)·g²;  W -= lr·g / (√h + 1e-7)
Adam       lr=0.001, β1=0.9, β2=0.999 t += 1;  lr_t = lr·√(1-β2ᵗ)/(1-β1ᵗ);
                                     m += (1-β1)(g-m);  v += (1-β2)(g²-v);  W -= lr_t·m / (√v + 1e-7)
=========  ========================  ===================================================

(The book's Adam puts ε on the uncorrected √v, PyTorch's on the corrected one: this is the book's.)

Each optimizer has the book's ``update(params, grads)`` for dicts of arrays (so it works with
``fastnet.reference`` networks too), and is handed to ``MultiLayerNet.step`` / ``steps``, where
its update is fused into the compiled step, its state (v, h, m, t) preallocated per network. An
optimizer's state belongs to one network: using it for a network of another shape is an error.
"""

import numpy as np

from .kernels import optimizer as compiled
from .kernels._kinds import learning_rate


def _check_rate(name, what, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: {what} must be a real number, not {type(value).__name__} {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"{name}: {what} must lie in [0, 1), got {value!r}")
    return float(value)


class Optimizer:
    """What the six share: hyperparameters, state bound to one parameter layout, both update paths."""

    KIND = None  # the compiled update's code (fastnet.kernels.optimizer)

    def __init__(self, lr, rate=0.0, beta2=0.0):
        # (lr, rate, beta2, steps taken): what the compiled update reads, and counts the steps in
        self._hyper = np.array([0.0, rate, beta2, 0.0])
        self.lr = lr
        self._rate, self._beta2 = rate, beta2
        self._layout = None  # the shapes of the parameters the state belongs to
        self._state = None  # (s1, s2): flat state arrays, as the compiled update wants them
        self._views = None  # {key: (s1 view, s2 view)} for update()

    # -- state ------------------------------------------------------------------------------

    def _bind(self, params):
        """The state for ``params`` (a dict of arrays): made on first use, checked after."""
        layout = tuple((key, value.shape, value.dtype.str) for key, value in params.items())
        if self._layout is None:
            size = sum(value.size for value in params.values())
            dtype = np.result_type(*[value.dtype for value in params.values()])
            self._state = (np.zeros(size, dtype), np.zeros(size, dtype))
            self._views, offset = {}, 0
            for key, value in params.items():
                self._views[key] = tuple(s[offset : offset + value.size].reshape(value.shape) for s in self._state)
                offset += value.size
            self._layout = layout
        elif layout != self._layout:
            raise ValueError(
                f"{type(self).__name__}: this optimizer's state belongs to parameters "
                f"{[(k, s) for k, s, _ in self._layout]}, not {[(k, s) for k, s, _ in layout]}; "
                "give each network its own optimizer"
            )
        return self._state

    def _move_into(self, params, s1, s2, hyper):
        """Keep the state in the arrays given (a ``NetStack``'s rows), its values carried over: made
        for ``params`` if this optimizer has none yet, else checked against them first."""
        old_s1, old_s2 = self._bind(params)
        s1[...], s2[...], hyper[...] = old_s1, old_s2, self._hyper
        self._state, self._hyper = (s1, s2), hyper
        self._views, offset = {}, 0
        for key, value in params.items():
            self._views[key] = tuple(s[offset : offset + value.size].reshape(value.shape) for s in self._state)
            offset += value.size

    @property
    def lr(self):
        """The learning rate; it may be changed between steps (a schedule), checked as at creation."""
        return self._hyper[0]

    @lr.setter
    def lr(self, value):
        self._hyper[0] = learning_rate(type(self).__name__, value, positive=True)

    @property
    def iter(self):
        """Steps taken (Adam's t)."""
        return int(self._hyper[3])

    def compiled_args(self, params):
        """(kind, hyperparameters, s1, s2) for the compiled update of ``params``' flat vector; the
        state is made, or checked against ``params``' layout."""
        self._bind(params)
        return self.compiled_args_bound()

    def compiled_args_bound(self):
        """``compiled_args`` for the parameters the state is already bound to (no check)."""
        return (self.KIND, self._hyper, *self._state)

    # -- the book's interface -----------------------------------------------------------------

    def update(self, params, grads):
        """Update the arrays of ``params`` in place from ``grads`` (dicts with the same keys)."""
        self._bind(params)
        steps_before = self._hyper[3]
        for key, param in params.items():
            grad = np.ascontiguousarray(grads[key], dtype=param.dtype)
            s1, s2 = self._views[key]
            flat = param.reshape(-1)
            if not np.shares_memory(flat, param):
                raise ValueError(f"{type(self).__name__}.update: params[{key!r}] must be contiguous")
            self._hyper[3] = steps_before  # each call counts the step: every parameter sees the same t
            compiled.update_unchecked(self.KIND, flat, grad.reshape(-1), s1.reshape(-1), s2.reshape(-1), self._hyper)

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr:g})"


class SGD(Optimizer):
    """W -= lr·g."""

    KIND = compiled.SGD

    def __init__(self, lr=0.01):
        super().__init__(lr)


class Momentum(Optimizer):
    """v = momentum·v - lr·g; W += v."""

    KIND = compiled.MOMENTUM

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr, _check_rate("Momentum", "momentum", momentum))
        self.momentum = self._rate


class Nesterov(Optimizer):
    """W += m·m·v; W -= (1+m)·lr·g; v = m·v - lr·g (v from before the step), as the book."""

    KIND = compiled.NESTEROV

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr, _check_rate("Nesterov", "momentum", momentum))
        self.momentum = self._rate


class AdaGrad(Optimizer):
    """h += g²; W -= lr·g / (√h + 1e-7)."""

    KIND = compiled.ADAGRAD

    def __init__(self, lr=0.01):
        super().__init__(lr)


class RMSprop(Optimizer):
    """h = d·h + (1-d)·g²; W -= lr·g / (√h + 1e-7)."""

    KIND = compiled.RMSPROP

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr, _check_rate("RMSprop", "decay_rate", decay_rate))
        self.decay_rate = self._rate


class Adam(Optimizer):
    """The book's Adam (ε on the uncorrected √v; see the module docstring)."""

    KIND = compiled.ADAM

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__(lr, _check_rate("Adam", "beta1", beta1), _check_rate("Adam", "beta2", beta2))
        self.beta1, self.beta2 = self._rate, self._beta2


OPTIMIZERS = {cls.__name__.lower(): cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)}
