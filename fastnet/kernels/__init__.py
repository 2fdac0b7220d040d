"""Fused Numba kernels for the book's networks, and their checked entry points.

Every kernel takes its inputs and its output buffers, writes the outputs and
returns them (or the scalar loss). Shapes: ``B`` batch rows, ``D`` inputs, ``H``
hidden units, ``C`` classes. All float arrays of one call share one dtype,
float32 or float64; labels are integer class indices.

Two names per kernel:

* ``affine_relu_forward`` etc. are **checked**: from Python or from your own
  ``@njit`` functions, they check kinds (dtype, ndim, layout) and values
  (shapes, label range, aliasing, NaN) before touching any data, and raise
  ``TypeError`` / ``ValueError`` naming the argument.
* ``affine_relu_forward_unchecked`` etc. are the raw ``@njit(parallel=True)``
  kernels. They trust their arguments: a wrong shape or label reads or writes
  outside the arrays. Use them from compiled code that has already checked.
  If you cache (``cache=True``) your own function that calls them, give it
  ``parallel=True`` too (numba#8578).

Where things are (one module per concern)::

    _blas.py      gemm on blocks of arrays read in place (MKL or OpenBLAS), prefetch hint
    _simd.py      micro-kernels in LLVM vector instructions: the direct convolution's tile (filters ×
                  pixels in registers), the weight gradient's tile (filters × taps), the 2×2 pool's
                  rows and their backward, Winograd's transforms, row copies and sums
    partition.py  how each parallel loop splits its work: blocks by shape, never by thread count
    checks.py     value checks in compiled code (shapes, labels, NaN, overlap, lr)
    _kinds.py     kind checks (dtype, ndim, layout) in Python and at typing time
    api.py        the checked entry points (api_conv.py: those of conv and pool)
    _cache.py     Numba's on-disk cache, invalidated when any module here changes
    codes.py      8-bit pixel codes, the batch gather
    forward.py    the two-layer net's forward pass for predict and accuracy
    step.py       the two-layer net's fused training step, many steps per call, their named buffers
    optimizer.py  the six optimizers' updates on a flat parameter vector

  the layer engine (every other network):
    records.py    a network as layer records (kind, activation, geometry, offsets), built and checked
    engine.py     one forward, one fused training step for any sequence of records
    schedule.py   its parallel regions where a layer-by-layer loop is slower: row blocks through
                  affine/dropout networks (at test time through every network, in turns of 16
                  images to whichever core is free, an image at a time through the image layers:
                  batch norm folded into the convolution below it, the pool above it fused in,
                  each output written already padded for the convolution above), every weight
                  gradient in one balanced region
    stack.py      K networks at once (NetStack): a parallel loop over the members, each member's
                  step serial, through the engine's layer blocks
    layers.py     affine (forward beside backward) and softmax-CE
    conv.py       convolution (ch. 7): forward (+ bias, activation) next to its backward (dW, db, dx);
                  direct and weight tiles at stride 1, BLAS for thin layers and strided convolutions;
                  in training, a 2×2 pool above it run in the same pass (the pool's gradient sent to
                  its winners by the convolution's backward); the forward, dx and dW of 3×3 layers
                  of 16+ channels by Winograd's F(2×2, 3×3)
    pool.py       max pooling: forward (recording the winners; at test time none) next to its backward
    batchnorm.py  batch norm: per feature after affine, per channel after conv
    dropout.py    dropout: counter-based masks, forward beside backward
    activations.py identity, ReLU, sigmoid: forward, and the one derivative rule every backward ends with
    decay.py      weight decay: ½λ‖W‖² in the loss, λW in the gradient

Results are bitwise identical with 1 thread or many: each parallel loop splits
its work into blocks by the shapes only (``partition``), each block owns the
rows it writes, and scalar sums run in a fixed order.
"""

import warnings

# Wrappers that call a parallel kernel are parallel=True without a prange, on purpose
# (see above); silence Numba's note about them, and only about them.
warnings.filterwarnings(
    "ignore",
    message=r"(?s).*no transformation for parallel execution was possible"
    r".*fastnet[/\\]kernels[/\\]",
)

from . import _cache  # noqa: E402, F401  first: every cached kernel below is stamped with the package's hash
from ._blas import AS_IS, TRANSPOSED, blas_gemm, gemm, prefetch_row  # noqa: E402
from .api import (  # noqa: E402
    affine_backward_params,
    affine_forward,
    affine_relu_backward,
    affine_relu_forward,
    sgd_update,
    softmax_cross_entropy,
    train_step,
    train_steps,
)
from .api_conv import conv_backward, conv_forward, pool_backward, pool_forward  # noqa: E402
from .checks import require, require_disjoint, require_finite, require_labels, require_lr, span  # noqa: E402
from .codes import gather_unchecked, input_value, pixel_codes_unchecked  # noqa: E402
from .conv import conv_backward_unchecked, conv_blocks, conv_forward_unchecked, conv_scratch_size  # noqa: E402
from .forward import correct_count_unchecked, forward_unchecked  # noqa: E402
from .layers import (  # noqa: E402
    affine_backward_params_unchecked,
    affine_forward_unchecked,
    affine_relu_backward_unchecked,
    affine_relu_forward_unchecked,
    sgd_update_unchecked,
    softmax_cross_entropy_unchecked,
)
from .partition import block_bounds, max_blocks, num_blocks, product_block, product_split  # noqa: E402
from .pool import pool_backward_unchecked, pool_forward_unchecked  # noqa: E402
from .step import Grads, Params, StepWork, new_step_work, train_step_unchecked, train_steps_unchecked  # noqa: E402

__all__ = [
    "affine_relu_forward",
    "affine_forward",
    "affine_relu_backward",
    "affine_backward_params",
    "softmax_cross_entropy",
    "sgd_update",
    "train_step",
    "train_steps",
    "conv_forward",
    "conv_backward",
    "pool_forward",
    "pool_backward",
    "conv_forward_unchecked",
    "conv_backward_unchecked",
    "conv_blocks",
    "conv_scratch_size",
    "pool_forward_unchecked",
    "pool_backward_unchecked",
    "affine_relu_forward_unchecked",
    "affine_forward_unchecked",
    "affine_relu_backward_unchecked",
    "affine_backward_params_unchecked",
    "softmax_cross_entropy_unchecked",
    "sgd_update_unchecked",
    "train_step_unchecked",
    "train_steps_unchecked",
    "forward_unchecked",
    "correct_count_unchecked",
    "gather_unchecked",
    "pixel_codes_unchecked",
    "input_value",
    "Params",
    "Grads",
    "StepWork",
    "new_step_work",
    "gemm",
    "blas_gemm",
    "prefetch_row",
    "AS_IS",
    "TRANSPOSED",
    "num_blocks",
    "block_bounds",
    "product_split",
    "product_block",
    "max_blocks",
    "require",
    "require_finite",
    "require_labels",
    "require_disjoint",
    "require_lr",
    "span",
]
