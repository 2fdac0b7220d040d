"""Weight decay, the book's: ½·λ·Σ‖W‖² added to the loss, λ·W added to each weight gradient
(weights only, never biases or batch norm's γ and β). Reference twin: the book's
``MultiLayerNet.loss`` and ``gradient`` (``fastnet.reference.MultiLayerNet``)."""

from numba import njit


@njit(cache=True)
def sum_of_squares(v):
    """Σ v_i² of a 1-D array in float64, in a fixed order: four running sums (entry i goes to sum
    i mod 4, so that the additions need not wait on each other), then added up."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = v.size - v.size % 4
    for i in range(0, n4, 4):
        s0 += float(v[i]) * float(v[i])
        s1 += float(v[i + 1]) * float(v[i + 1])
        s2 += float(v[i + 2]) * float(v[i + 2])
        s3 += float(v[i + 3]) * float(v[i + 3])
    for i in range(n4, v.size):
        s0 += float(v[i]) * float(v[i])
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def add_decay(dW, W, decay):
    """dW += λ·W, for a 2-D block (views indexed from 0: the inner loop vectorises)."""
    for i in range(W.shape[0]):
        g, w = dW[i], W[i]
        for j in range(w.shape[0]):
            g[j] += decay * w[j]
