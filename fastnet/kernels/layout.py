"""Where a MultiLayerNet's numbers live: its parameters in one flat vector (W1, b1, W2, b2, ...,
then gamma1, beta1, ... with batch norm) and its layers' outputs for B rows in one flat buffer."""

from numba import njit

from .decay import sum_of_squares


def num_params(sizes, batchnorm=False):
    """How many numbers W1, b1, ..., WL, bL (and gamma1, beta1, ... with batch norm) hold."""
    total = int(sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1)))
    return total + (2 * int(sum(sizes[1:-1])) if batchnorm else 0)


@njit(cache=True)
def layer_offset(sizes, l):
    """Where W_l starts in the flat parameter vector (b_l follows it); l = L + 1: where the
    parameters after every W and b start."""
    o = 0
    for j in range(l - 1):
        o += sizes[j] * sizes[j + 1] + sizes[j + 1]
    return o


@njit(cache=True)
def layer_params(flat, sizes, l):
    """W_l (n_{l-1}, n_l) and b_l (n_l,) of layer l = 1..L, as views of the flat vector."""
    o = layer_offset(sizes, l)
    n, m = sizes[l - 1], sizes[l]
    return flat[o : o + n * m].reshape((n, m)), flat[o + n * m : o + n * m + m]


@njit(cache=True)
def hidden_offset(sizes, l):
    """Where hidden layer l's units start in vectors over all hidden units (n_1 + ... + n_{l-1})."""
    o = 0
    for j in range(1, l):
        o += sizes[j]
    return o


@njit(cache=True)
def batchnorm_params(flat, sizes, l):
    """gamma_l and beta_l (n_l,) of hidden layer l, as views of the flat vector (after every W, b)."""
    o = layer_offset(sizes, sizes.shape[0]) + 2 * hidden_offset(sizes, l)
    n = sizes[l]
    return flat[o : o + n], flat[o + n : o + 2 * n]


@njit(cache=True)
def layer_rows(buf, sizes, rows, l):
    """Layer l's outputs (rows, n_l), l = 1..L, as a view of a flat buffer holding all of them."""
    o = 0
    for j in range(1, l):
        o += rows * sizes[j]
    return buf[o : o + rows * sizes[l]].reshape((rows, sizes[l]))


@njit(cache=True)
def weight_decay_loss(flat, sizes, decay):
    """½·λ·Σ‖W_l‖² over the weight matrices (not the biases), summed in a fixed order."""
    total = 0.0
    for l in range(1, sizes.shape[0]):
        W, _ = layer_params(flat, sizes, l)
        total += sum_of_squares(W.reshape(W.size))
    return 0.5 * decay * total
