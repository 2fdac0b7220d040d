"""The fused steps against the reference in every work split: one block, row blocks, column
blocks, a grid of both. TwoLayerNet's step, then MultiLayerNet's (every optimizer).

The step takes different code paths by shape: layer 1 split by rows only (then
one parallel region runs gather, both layers and the loss per row block) or by
columns too, and layer 2's weight and bias gradients summed over row blocks.
Each shape below reaches one of them, and a test asserts that they do, so that
retuning the partition cannot silently drop a path from these comparisons.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import FLOAT_DTYPES, assert_matches_reference

from fastnet import MultiLayerNet, TwoLayerNet, _cores, kernels, optim, reference
from fastnet.kernels import records, schedule

# (B, D, H, C), named for the split of layer 1 they reach with two or more blocks
SHAPES = {
    "rows1": (20, 30, 7, 3),  # one block
    "rows2": (100, 784, 50, 10),  # row blocks: the book's shape
    "tiny": (5, 30, 40, 4),  # one block, more hidden units than rows
    "cols2": (20, 784, 200, 10),  # column blocks (then layer 2 in row blocks)
    "tiles": (100, 784, 100, 10),  # a grid of row x column blocks, given four blocks or more
}
F32_EPS = np.finfo(np.float32).eps


def split_kind(split):
    row_blocks, col_blocks = split
    if row_blocks * col_blocks == 1:
        return "one block"
    return "row blocks" if col_blocks == 1 else "column blocks" if row_blocks == 1 else "tiles"


def test_the_shapes_reach_every_split():
    kinds = {split_kind(kernels.product_split(B, D, H)) for B, D, H, _ in SHAPES.values()}
    expected = {"one block", "row blocks", "column blocks"} | ({"tiles"} if _cores.BLOCKS >= 4 else set())
    assert kinds >= expected, kinds
    # with column blocks, layer 2 and its gradient sums run in row blocks too
    assert kernels.num_blocks(20) == min(2, _cores.BLOCKS)


@pytest.mark.skipif(os.environ.get("FASTNET_BLOCKS") is not None, reason="this is the run with FASTNET_BLOCKS")
def test_every_split_again_with_four_blocks_on_this_machine():
    """Four blocks on however many cores there are: the tiled split is reached and matches too."""
    env = {**os.environ, "FASTNET_BLOCKS": "4"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
        cwd=Path(__file__).parent,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def problem(shape, dtype, codes, seed=0):
    """A net, pixel data (as floats or as uint8 codes with divisor 255), labels and a batch."""
    B, D, H, C = shape
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (3 * B, D)).astype(np.uint8)
    t = rng.integers(0, C, 3 * B)
    idx = rng.permutation(3 * B)[:B]
    net = TwoLayerNet(D, H, C, weight_init_std=0.1, dtype=dtype, seed=seed)
    net.params["b1"][:] = rng.standard_normal(H) * 0.1  # biases that matter, not the initial zeros
    x = pixels if codes else (pixels.astype(dtype) / dtype(255))
    return net, x, t, idx


def reference_step(params, x, t, kernel_hidden, float32):
    """Loss and float64 gradients by the book's layers. In float32, a hidden unit whose
    pre-activation lies within rounding of 0 may land on either side of the ReLU in the
    kernel: there (only there) the reference follows the kernel's side; everywhere else
    the kernel's ReLU must agree with the reference's."""
    W1, b1, W2, b2 = (params[k].astype(np.float64) for k in ("W1", "b1", "W2", "b2"))
    affine1, relu, affine2, last = (
        reference.Affine(W1, b1),
        reference.Relu(),
        reference.Affine(W2, b2),
        reference.SoftmaxWithLoss(),
    )
    pre = affine1.forward(x)
    hidden = relu.forward(pre)
    if float32:
        near_zero = np.abs(pre) <= 8 * F32_EPS * (np.abs(x) @ np.abs(W1) + np.abs(b1))
        kernel_off = kernel_hidden <= 0
        np.testing.assert_array_equal(kernel_off[~near_zero], relu.mask[~near_zero])
        relu.mask = np.where(near_zero, kernel_off, relu.mask)
        hidden = np.where(relu.mask, 0.0, pre)
    loss = last.forward(affine2.forward(hidden), t)
    dz = last.backward()
    dhidden = relu.backward(affine2.backward(dz))
    affine1.backward(dhidden)
    grads = {"W1": affine1.dW, "b1": affine1.db, "W2": affine2.dW, "b2": affine2.db}
    # the size of the terms each gradient sums: the yardstick for its rounding error
    terms = {
        "W1": np.abs(x).T @ np.abs(dhidden),
        "b1": np.abs(dhidden).sum(axis=0),
        "W2": np.abs(hidden).T @ np.abs(dz),
        "b2": np.abs(dz).sum(axis=0),
    }
    scales = {k: float(np.max(v)) for k, v in terms.items()}
    return loss, grads, scales


# numpy's reference products run between fastnet's calls here, so fastnet's notice that another
# library's threads were busy on the cores is right, and expected (timing is not what this checks)
@pytest.mark.filterwarnings("ignore::fastnet._cores.SharedCoresWarning")
@pytest.mark.parametrize("codes", [False, True], ids=["floats", "pixel-codes"])
@pytest.mark.parametrize("lr", [0.0, 0.5])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_step_matches_reference_in_every_split(shape, dtype, lr, codes):
    net, x, t, idx = problem(shape, dtype, codes)
    before = {k: v.copy() for k, v in net.params.items()}
    x_float = x.astype(dtype) / dtype(255) if codes else x
    loss = net.steps(x, t, idx[None, :], lr, 255.0 if codes else None)[0]

    kernel_hidden = net._workspace(len(idx)).work.hid
    ref_loss, ref_grads, scales = reference_step(
        before, x_float[idx].astype(np.float64), t[idx], kernel_hidden, dtype == np.float32
    )
    assert_matches_reference(loss, ref_loss, dtype)
    if lr == 0:  # gradients only; the weights stay
        for name, grad in zip(net.PARAM_NAMES, net._grads):
            assert_matches_reference(grad, ref_grads[name], dtype, scales[name])
            np.testing.assert_array_equal(net.params[name], before[name])
    else:
        for name in net.PARAM_NAMES:
            expected = before[name].astype(np.float64) - lr * ref_grads[name]
            assert_matches_reference(
                net.params[name], expected, dtype, float(np.abs(before[name]).max()) + lr * scales[name]
            )


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_gradient_matches_reference_in_every_split(shape, dtype):
    """``net.gradient`` (the book's interface, the batch as given) in every split."""
    net, x, t, idx = problem(shape, dtype, codes=False, seed=1)
    before = {k: v.copy() for k, v in net.params.items()}
    grads = net.gradient(x[idx], t[idx])
    kernel_hidden = net._workspace(len(idx)).work.hid
    _, ref_grads, scales = reference_step(before, x[idx].astype(np.float64), t[idx], kernel_hidden, dtype == np.float32)
    for name in net.PARAM_NAMES:
        assert_matches_reference(grads[name], ref_grads[name], dtype, scales[name])


# -- MultiLayerNet ----------------------------------------------------------------------------

# (B, sizes): the weight-gradient products of the layers (out: n_{l-1} × n_l, summed over B rows)
# reach one block, column blocks (10 × 300), row blocks and, given four blocks, tiles (100 × 100)
MULTILAYER_SHAPES = {
    "one-block": (9, (13, 6, 5, 4)),
    "columns-rows": (400, (10, 300, 40, 3)),
    "rows-tiles": (256, (100, 100, 100, 10)),
}
OPTIMIZERS = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]


def test_the_multilayer_shapes_reach_every_split():
    kinds = {
        split_kind(kernels.product_split(n_in, B, n_out))
        for B, sizes in MULTILAYER_SHAPES.values()
        for n_in, n_out in zip(sizes, sizes[1:])
    }
    expected = {"one block", "row blocks", "column blocks"} | ({"tiles"} if _cores.BLOCKS >= 4 else set())
    assert kinds >= expected, kinds


@pytest.mark.parametrize("B,sizes", [*MULTILAYER_SHAPES.values(), (128, (784, 100, 100, 100, 100, 10)), (1, (5, 3, 2))])
def test_gradient_tasks_cover_every_block_and_balance_the_work(B, sizes):
    """The engine's weight-gradient region (``kernels.schedule``): every product block and bias of
    every affine layer is one task, each run by one block, and no block has more than its share
    plus one task (what largest-first to the least loaded gives)."""
    layers = [("affine", n, "relu") for n in sizes[1:-1]] + [("affine", sizes[-1], "identity")]
    rec, *_ = records.layer_records((sizes[0], 1, 1), layers)
    layer, part, owner = schedule.plan_gradient_tasks(rec, B)
    nb = owner.max() + 1
    assert nb <= _cores.BLOCKS and set(owner) == set(range(nb))
    work = []
    for l in range(1, len(sizes)):  # record l - 1
        split = kernels.product_split(sizes[l - 1], B, sizes[l])
        assert sorted(part[layer == l - 1]) == [-1, *range(split[0] * split[1])]
        for k in range(split[0] * split[1]):
            r0, r1, c0, c1 = kernels.product_block(sizes[l - 1], sizes[l], split, k)
            work.append(((l - 1, k), (r1 - r0) * (c1 - c0) * B))
        work.append(((l - 1, -1), B * sizes[l]))
    by_task = dict(work)
    loads = np.zeros(nb)
    for l, k, block in zip(layer, part, owner):
        loads[block] += by_task[(int(l), int(k))]
    assert loads.max() <= sum(by_task.values()) / nb + max(by_task.values())


@pytest.mark.parametrize("batchnorm,name", [(False, name) for name in OPTIMIZERS] + [(True, "SGD"), (True, "Momentum")])
@pytest.mark.parametrize("shape", list(MULTILAYER_SHAPES.values()), ids=list(MULTILAYER_SHAPES))
def test_multilayer_steps_match_reference_in_every_split(shape, name, batchnorm):
    """Three steps with weight decay: each optimizer's update runs inside the weight-gradient
    tasks, on each task's rows and columns of W. (Batch norm only with the optimizers that do not
    divide by the gradient's size: there the biases' gradients are rounding noise, 0 in exact
    arithmetic, which AdaGrad, RMSprop and Adam would scale up to whole steps.)"""
    B, sizes = shape
    rng = np.random.default_rng(4)
    x, t = rng.random((B, sizes[0])), rng.integers(0, sizes[-1], B)
    args = (sizes[0], list(sizes[1:-1]), sizes[-1], "relu", "relu", 0.01)
    net = MultiLayerNet(*args, use_batchnorm=batchnorm, dtype=np.float64, seed=3)
    ref = reference.MultiLayerNet(*args, use_batchnorm=batchnorm, seed=3)
    opt, ref_opt = getattr(optim, name)(lr=0.01), getattr(reference, name)(lr=0.01)
    for _ in range(3):
        grads = ref.gradient(x, t)
        net.step(x, t, opt)
        ref_opt.update(ref.params, grads)
    for key in ref.params:
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-10, atol=1e-13, err_msg=key)
