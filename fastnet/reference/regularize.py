"""The book's Dropout and BatchNormalization layers, and the counter-based draws behind fastnet's
dropout masks (so that the reference can draw the masks the compiled step draws)."""

import numpy as np


class Dropout:
    """Training: keep each unit where a uniform draw exceeds the ratio (x·mask, no rescaling);
    test: x·(1 - ratio). ``uniforms(shape)`` gives the draws: the book's ``np.random.rand`` by
    default, or ``counter_uniforms`` for the masks fastnet's compiled step draws."""

    def __init__(self, dropout_ratio=0.5, uniforms=None):
        self.dropout_ratio = dropout_ratio
        self.uniforms = uniforms if uniforms is not None else (lambda shape: np.random.rand(*shape))
        self.mask = None

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = self.uniforms(x.shape) > self.dropout_ratio
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        return dout * self.mask


class BatchNormalization:
    """y = γ·(x - mean)/√(var + 10e-7) + β over the batch (var with 1/N) in training, over the
    running statistics (running = 0.9·running + 0.1·batch) at test time."""

    def __init__(self, gamma, beta, momentum=0.9):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.running_mean = self.running_var = None
        self.xc = self.xn = self.std = self.dgamma = self.dbeta = None

    def forward(self, x, train_flg=True):
        if self.running_mean is None:
            self.running_mean = np.zeros(x.shape[1], x.dtype)
            self.running_var = np.zeros(x.shape[1], x.dtype)
        if train_flg:
            mean = x.mean(axis=0)
            self.xc = x - mean
            var = np.mean(self.xc**2, axis=0)
            self.std = np.sqrt(var + 10e-7)
            self.xn = self.xc / self.std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mean
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
            xn = self.xn
        else:
            xn = (x - self.running_mean) / np.sqrt(self.running_var + 10e-7)
        return self.gamma * xn + self.beta

    def backward(self, dout):
        """Through y = γ·xc/std with xc = x - mean and std = √(mean(xc²) + ε), step by step."""
        n = dout.shape[0]
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum(dxn * self.xc / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc = dxc + (2.0 / n) * self.xc * dvar
        return dxc - np.sum(dxc, axis=0) / n


def _mix(z):
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def counter_uniforms(seed, step, layer, shape):
    """The uniform draws in [0, 1) behind fastnet's dropout masks: for batch row i and unit j of
    hidden layer ``layer`` at training step ``step``, a hash of (seed, step, layer, i, j)."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        key = _mix(np.array([seed], np.uint64) + golden)
        key = _mix(key + np.uint64(step))
        key = _mix(key + np.uint64(layer))
        rows = _mix(key + np.arange(shape[0], dtype=np.uint64))
        units = (np.arange(shape[1], dtype=np.uint64) + np.uint64(1)) * golden
        bits = _mix(rows[:, None] + units[None, :]) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


class CounterMasks:
    """Dropout draws as fastnet makes them, for ``MultiLayerNet(dropout_uniforms=...)``: set ``step``
    to the training step's number (fastnet's ``net.dropout_step``) before each forward pass."""

    def __init__(self, seed):
        self.seed, self.step = seed, 0

    def layer(self, l):
        return lambda shape: counter_uniforms(self.seed, self.step, l, shape)
