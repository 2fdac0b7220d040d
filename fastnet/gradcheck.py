"""Gradient checking: central differences against backprop, with a per-parameter report.

Use float64: in float32 the difference quotient's rounding error (about
eps * |loss| / h) swamps the comparison.
"""

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 1e-6
# Below TINY an entry is judged by absolute error (|a-b| <= threshold * TINY):
# in float64 the central difference itself carries a rounding error of about
# eps * |loss| / h ~ 1e-12, so relative errors of smaller entries are noise.
TINY = 1e-5
DEFAULT_H = 1e-4  # the book's step; smaller h raises the rounding error and ReLU kinks are rare at it


def numerical_gradient(f, x, h=DEFAULT_H):
    """Central-difference gradient of the scalar ``f(x)`` with respect to the array ``x``.

    Each entry of ``x`` is perturbed in place by ±h and restored, even if ``f``
    raises. ``f`` takes ``x`` (as the book's ``lambda W: net.loss(x, t)`` does)
    and must read it live.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    flat_x = x.reshape(-1)  # a view: x is required to be contiguous
    if not np.shares_memory(flat_x, x):
        raise ValueError("numerical_gradient needs a contiguous array to perturb in place")
    flat_grad = grad.reshape(-1)
    for i in range(flat_x.size):
        saved = flat_x[i]
        try:
            flat_x[i] = saved + h
            f_plus = f(x)
            flat_x[i] = saved - h
            f_minus = f(x)
        finally:
            flat_x[i] = saved
        flat_grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


@dataclass
class ParamError:
    name: str
    max_rel_error: float  # max |a-b| / max(|a|, |b|, tiny)
    mean_abs_diff: float  # the number the book prints: mean |a-b|


@dataclass
class GradcheckReport:
    rows: list
    threshold: float

    @property
    def passed(self):
        return all(r.max_rel_error <= self.threshold for r in self.rows)

    def __str__(self):
        lines = [f"{'param':<6} {'mean |a-b|':>12} {'max rel err':>12}"]
        for r in self.rows:
            flag = "ok" if r.max_rel_error <= self.threshold else "FAIL"
            lines.append(f"{r.name:<6} {r.mean_abs_diff:12.3e} {r.max_rel_error:12.3e}  {flag}")
        lines.append(f"threshold {self.threshold:.0e}: {'passed' if self.passed else 'FAILED'}")
        return "\n".join(lines)


def compare_gradients(analytic, numeric, threshold=DEFAULT_THRESHOLD, tiny=TINY):
    """Compare two dicts of gradients key by key; returns a ``GradcheckReport``.

    Per parameter: max |a-b| / max(|a|, |b|, tiny) and the mean |a-b|.
    """
    rows = []
    for name in analytic:
        a = np.asarray(analytic[name], dtype=np.float64)
        b = np.asarray(numeric[name], dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"gradient {name!r}: shapes differ, {a.shape} vs {b.shape}")
        diff = np.abs(a - b)
        scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), tiny)
        rows.append(ParamError(name, float(np.max(diff / scale)), float(np.mean(diff))))
    return GradcheckReport(rows, threshold)


def network_numerical_gradient(net, x, t, h=DEFAULT_H, **loss_options):
    """Central-difference gradients of ``net.loss(x, t, **loss_options)`` for every parameter in
    ``net.params`` (``train_flg=True`` for a net with dropout or batch norm, as the book)."""
    loss = lambda _: net.loss(x, t, **loss_options)  # noqa: E731  (reads the perturbed params live)
    return {name: numerical_gradient(loss, param, h) for name, param in net.params.items()}


def check_network(net, x, t, threshold=DEFAULT_THRESHOLD, h=DEFAULT_H, **loss_options):
    """Backprop ``net.gradient(x, t)`` against central differences of ``net.loss``, any net with
    the book's interface (fastnet's or the reference)."""
    numerical = network_numerical_gradient(net, x, t, h, **loss_options)
    return compare_gradients(net.gradient(x, t), numerical, threshold)
