"""``Sequential``: a network as a list of layers on the layer engine, and the base of every network
class that runs on it (``MultiLayerNet``, ``SimpleConvNet``, ``DeepConvNet``).

    from fastnet import Sequential, layers as L
    net = Sequential((1, 28, 28), [L.Conv(32, 3, pad=1), L.BatchNorm(), L.ReLU(), L.MaxPool(2),
                                   L.Affine(128), L.ReLU(), L.Dropout(0.3), L.Affine(10)], seed=0)
    print(net)                                   # each layer, its output shape and parameters

A layer list (``kernels.records.LAYER_FORMS``) becomes the engine's records; every parameter
lives in one flat vector (``params`` holds live views: W1, b1, W2, ... over the conv and affine
layers in order, a convolution's W shaped (FN, C, FH, FW), then gamma1, beta1, ... over the
batch-norm layers), batch norm's running statistics in ``running``. One compiled call runs a
training step (forward, softmax-with-cross-entropy, backward, the optimizer's update) and
allocates nothing. What the book's classes share is written here once: ``predict``, ``loss``,
``accuracy``, ``gradient``, ``numerical_gradient``, ``step``, ``step_indices`` (in ``base``),
``steps``, the workspaces, saving and loading. A subclass builds its layer list and draws its
initial weights the book's way.
"""

import math
from pathlib import Path

import numpy as np

from . import _cores
from . import layers as L
from .base import Network, check_steps_inputs, named_errors, writable
from .gradcheck import network_numerical_gradient
from .kernels import engine as compiled
from .kernels import records, softmax_cross_entropy
from .kernels.checks import check_engine_batches, require_finite, require_labels
from .weights import load_weights, network_class, save_weights

PREDICT_VALUES = 1 << 23  # layer outputs per compiled forward call in predict/accuracy: bounds the buffer
PREDICT_ROWS = (500, 10_000)  # the fewest and the most rows per such call
FORWARD_SIZES_KEPT = 3  # forward buffers kept per net, by row count (training rows, test rows, a last chunk)


def positive_int(func, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{func}: {name} must be a positive integer, got {value!r}")
    return int(value)


@network_class
class Sequential(Network):
    """A network of ``layers`` on inputs of ``input_dim``: (C, H, W) for images, an int D for rows;
    softmax-with-cross-entropy follows the last layer, an ``Affine``. ``layers``: objects of
    ``fastnet.layers`` (``Conv``, ``MaxPool``, ``Affine``, ``ReLU``, ``Sigmoid``, ``BatchNorm``,
    ``Dropout``), whose weights are drawn from ``seed`` as each layer's ``weight_init`` says; or the
    engine's layer tuples (``kernels.records.LAYER_FORMS``), whose weights start at zero, gamma at
    one: a subclass (or the caller) draws them. The book's methods (``predict``, ``loss``,
    ``accuracy``, ``gradient``, ``numerical_gradient``) and fastnet's fused ``step``,
    ``step_indices``, ``steps`` with any of the six optimizers; ``params`` W1, b1, ... over the
    Conv and Affine layers in order, gamma1, beta1, ... over the BatchNorm layers; ``running``
    their running statistics. ``dropout_keys``: the numbers the dropout layers' masks are drawn
    under (``layer_records``). Thread-safe: calls on one network run one at a time."""

    ARCHITECTURE = ()  # the constructor's arguments that fix the layers, compared by NetStack's checks

    def __init__(self, input_dim, layers, dtype=np.float32, seed=None, *, dropout_keys=None):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{type(self).__name__}: dtype must be float32 or float64, not {self.dtype}")
        if isinstance(input_dim, (int, np.integer)) and not isinstance(input_dim, bool):
            input_dim = (int(input_dim), 1, 1)
        if not isinstance(input_dim, (tuple, list)) or len(input_dim) != 3 or \
                not all(isinstance(n, (int, np.integer)) and n >= 1 for n in input_dim):  # fmt: skip
            raise ValueError(f"{type(self).__name__}: input_dim must be (C, H, W) or an int, got {input_dim!r}")
        self.input_dim = tuple(int(n) for n in input_dim)
        layers = list(layers)
        self.layers = layers if layers and any(isinstance(layer, L.Layer) for layer in layers) else None
        try:
            self.layer_specs = L.engine_layers(layers) if self.layers is not None else layers
        except (TypeError, ValueError) as e:
            raise type(e)(f"{type(self).__name__}: {e}") from None
        try:
            self.net, total = records.new_engine_network(self.input_dim, self.layer_specs, self.dtype, dropout_keys)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None
        self.records = self.net.rec
        self._net_args = tuple(self.net)  # compiled calls take plain tuples: a named tuple is typed anew each call
        self.input_size = int(self.records[0, records.IN_SIZE])
        self.output_size = int(self.records[-1, records.OUT_SIZE])
        self._flat, self._grad = np.zeros(total, self.dtype), np.zeros(total, self.dtype)
        self._views, self._grad_views = self._param_views(self._flat), self._param_views(self._grad)
        for key, gamma in self._views.items():
            if key.startswith("gamma"):
                gamma[...] = 1  # the book's initial γ; β starts at 0
        self.params = dict(self._views)
        self.PARAM_NAMES = tuple(self._views)
        self.running = self._running_views()
        self._workspaces = {}  # batch rows -> (work tuple, the batch's own rows as one batch)
        self._forward_work = {}  # rows -> work for a forward pass (a few sizes)
        self._sgd = None
        self._bound_optimizer = None
        self._lock = _cores.CallLock()
        kinds = self.records[:, records.KIND]
        self.use_dropout = bool((kinds == records.DROPOUT).any())
        self.use_batchnorm = bool((kinds == records.BATCHNORM).any())
        outputs = int(self.records[:, records.OUT_SIZE].sum())  # per row, every layer's
        self._predict_rows = min(max(PREDICT_VALUES // outputs, PREDICT_ROWS[0]), PREDICT_ROWS[1])
        self.dropout_seed = 0  # drawn by a subclass after its weights, as MultiLayerNet's
        self.dropout_step = 0  # training passes taken: numbers the next one's dropout masks
        if self.layers is not None:
            self._draw_weights(seed)

    def _draw_weights(self, seed):
        """Each Conv's and Affine's W from N(0, std²), std by its ``weight_init`` ("he": √(2/fan-in),
        "xavier": √(1/fan-in), or the number), biases 0; then the dropout masks' seed."""
        rng = np.random.default_rng(seed)
        weighted = [layer for layer in self.layers if isinstance(layer, (L.Conv, L.Affine))]
        for i, layer in enumerate(weighted, start=1):
            W = self._views[f"W{i}"]
            fan_in = W[0].size if isinstance(layer, L.Conv) else W.shape[0]
            init = layer.args["weight_init"]
            std = math.sqrt(2 / fan_in) if init == "he" else math.sqrt(1 / fan_in) if init == "xavier" else init
            W[...] = rng.standard_normal(W.shape) * std
        self.dropout_seed = int(rng.integers(2**63))

    # -- what it is: a table, and what a weights file records ---------------------------------

    def summary(self):
        """The layers as a table, as Keras' ``summary()``: each layer, its output shape, its
        parameter count, and the total."""
        objects = self.layers if self.layers is not None else self.layer_specs
        rows, l, shape = [], -1, self.input_dim
        for layer in objects:
            count = 0  # an activation: the shape of the layer before it, no parameters
            if type(layer) not in L.ACTIVATIONS:
                l += 1
                r = self.records[l]
                shape = (int(r[records.OC]), int(r[records.OH]), int(r[records.OW]))
                if r[records.KIND] in (records.CONV, records.AFFINE, records.BATCHNORM):
                    count = int(r[records.B_OFF] - r[records.W_OFF] + r[records.OC])
            shown = (shape[0],) if shape[1:] == (1, 1) else shape
            rows.append((repr(layer), str(shown), f"{count:,}"))
        width = max(len(name) for name, _, _ in rows + [("layer", "", "")])
        lines = [f"{type(self).__name__} on {self.input_dim if self.input_dim[1:] != (1, 1) else self.input_dim[0]} "
                 f"({self.dtype.name})", f"  {'layer':<{width}}  {'output':<14} {'parameters':>12}"]  # fmt: skip
        lines += [f"  {name:<{width}}  {out:<14} {count:>12}" for name, out, count in rows]
        lines.append(f"  {'total':<{width}}  {'':<14} {self._flat.size:>12,}")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return f"<{type(self).__name__} {self.describe()}>"  # describe() leaves the class out

    def architecture(self):
        """What rebuilds this network (a weights file records it): its layers and input."""
        meta = {"network": "Sequential", "input_dim": list(self.input_dim), "dtype": self.dtype.name,
                "dropout_seed": self.dropout_seed, "dropout_step": self.dropout_step}  # fmt: skip
        if self.layers is not None:
            return {**meta, "layers": [layer.to_dict() for layer in self.layers]}
        return {**meta, "layer_specs": [list(spec) for spec in self.layer_specs]}

    @property
    def spec(self):
        """This network as text, its input shape first: '1x28x28:conv32x3p1,bn,relu,pool2,affine10'
        (``from_spec`` rebuilds it: the same layers, parameter names and shapes; weight_init and
        weight_decay are not in the text). None for a network built from the engine's tuples."""
        if self.layers is None:
            return None
        shape = "x".join(map(str, self.input_dim)) if self.input_dim[1:] != (1, 1) else str(self.input_dim[0])
        return f"{shape}:" + ",".join(L.layer_word(layer) for layer in self.layers)

    @classmethod
    def from_spec(cls, text, dtype=np.float32, seed=None):
        """The network ``spec`` describes ('1x28x28:conv32x3p1,...', or 'D:affine100,relu,affine10')."""
        head, sep, body = str(text).partition(":")
        try:
            shape = tuple(int(n) for n in head.split("x"))
        except ValueError:
            shape = ()
        if not sep or len(shape) not in (1, 3):
            raise ValueError(f"Sequential.from_spec: {text!r} must start with the input shape, 'CxHxW:' or 'D:'")
        return cls(shape if len(shape) == 3 else shape[0], L.parse_layers(body), dtype=dtype, seed=seed)

    def describe(self):
        layers = self.layers if self.layers is not None else self.layer_specs
        return f"{self.input_dim} [{', '.join(repr(layer) for layer in layers)}]"

    @classmethod
    def from_architecture(cls, meta):
        if "layers" in meta:
            layers = [L.from_dict(entry) for entry in meta["layers"]]
        else:
            layers = [tuple(spec) for spec in meta["layer_specs"]]
        net = cls(tuple(int(n) for n in meta["input_dim"]), layers, dtype=np.dtype(meta["dtype"]))
        net.dropout_seed = int(meta.get("dropout_seed", 0))
        net.dropout_step = int(meta.get("dropout_step", 0))
        return net

    def _param_views(self, flat):
        """W1, b1, W2, ... over the conv and affine layers in order, then gamma1, beta1, ... over
        the batch-norm layers: views of ``flat``."""
        views, norms, i = {}, {}, 1
        for rec in self.records:
            kind, w0, b0, n = (
                rec[records.KIND],
                int(rec[records.W_OFF]),
                int(rec[records.B_OFF]),
                int(rec[records.OC]),
            )
            if kind == records.CONV:
                shape = (n, int(rec[records.C]), int(rec[records.FH]), int(rec[records.FW]))
            elif kind == records.AFFINE:
                shape = (int(rec[records.IN_SIZE]), n)
            elif kind == records.BATCHNORM:
                j = len(norms) // 2 + 1
                norms[f"gamma{j}"], norms[f"beta{j}"] = flat[w0:b0], flat[b0 : b0 + n]
                continue
            else:
                continue
            views[f"W{i}"] = flat[w0:b0].reshape(shape)
            views[f"b{i}"] = flat[b0 : b0 + n]
            i += 1
        return {**views, **norms}

    def _running_views(self):
        """{'running_mean1': ..., 'running_var1': ..., ...}: each batch-norm layer's running statistics."""
        views, j = {}, 1
        for rec in self.records:
            if rec[records.KIND] == records.BATCHNORM:
                o, n = int(rec[records.RUN_OFF]), int(rec[records.C])
                views[f"running_mean{j}"] = self.net.running_mean[o : o + n]
                views[f"running_var{j}"] = self.net.running_var[o : o + n]
                j += 1
        return views

    def _move_into(self, flat, grad, running_mean, running_var):
        """Keep the parameters, gradient and running statistics in the arrays given (a ``NetStack``'s
        rows; a ``TwoLayerNet``'s own vector), their values carried over; ``params`` and ``running``
        become views of them."""
        with self._lock:
            self._sync_params()
            flat[...], grad[...] = self._flat, self._grad
            running_mean[...], running_var[...] = self.net.running_mean, self.net.running_var
            self._flat, self._grad = flat, grad
            self.net = self.net._replace(running_mean=running_mean, running_var=running_var)
            self._net_args = tuple(self.net)
            self._views, self._grad_views = self._param_views(flat), self._param_views(grad)
            self.params = dict(self._views)
            self.running = self._running_views()

    @property
    def multiply_adds(self):
        """Multiply-adds of one image's forward pass (a training step does about three times as many)."""
        total = 0
        for rec in self.records:
            if rec[records.KIND] == records.CONV:
                total += int(rec[records.OUT_SIZE] * rec[records.C] * rec[records.FH] * rec[records.FW])
            elif rec[records.KIND] == records.AFFINE:
                total += int(rec[records.IN_SIZE] * rec[records.OUT_SIZE])
        return total

    def _new_work(self, rows):
        return tuple(compiled.new_engine_work(rows, self.net, self.dtype, _cores.BLOCKS))

    def _workspace(self, batch):
        ws = self._workspaces.get(batch)
        if ws is None:
            ws = self._workspaces[batch] = (self._new_work(batch), np.arange(batch)[None, :])
        return ws

    def _forward_buffers(self, rows):
        """Buffers for a forward pass over ``rows`` rows, without what only a training step uses (the
        gathered inputs: x is read in place; the layers' gradients). A few sizes are kept: a training
        loop evaluates on its training and its test rows in turn."""
        work = self._forward_work.get(rows)
        if work is None:
            if len(self._forward_work) == FORWARD_SIZES_KEPT:
                del self._forward_work[next(iter(self._forward_work))]
            work = tuple(compiled.new_engine_work(rows, self.net, self.dtype, _cores.BLOCKS, training=False))
            self._forward_work[rows] = work
        return work

    # -- the book's interface -----------------------------------------------------------------

    def predict(self, x, train_flg=False, advance=True):
        """Logits (N, output_size) for images x, (N, C, H, W) or rows (N, C·H·W). ``train_flg`` as
        the book: dropout draws this training pass's masks (numbered ``dropout_step``) instead of
        scaling by (1 − ratio), and, as the book's layer, a training-mode pass advances
        ``dropout_step`` (the next draws fresh masks); ``advance=False``: no side effect."""
        x = self.prepare_inputs(x)
        train = bool(train_flg) and (self.use_dropout or self.use_batchnorm)
        if train:
            self._check_batch(x.shape[0], f"{type(self).__name__}.predict")
        z = np.empty((x.shape[0], self.output_size), self.dtype)
        with self._lock:
            self._sync_params()
            masks = (self.dropout_seed, self.dropout_step, train)
            chunk = x.shape[0] if train else self._predict_rows  # masks and batch statistics are the batch's
            for r0 in range(0, x.shape[0], chunk):
                r1 = min(r0 + chunk, x.shape[0])
                work = self._forward_buffers(r1 - r0)
                z[r0:r1] = compiled.engine_forward(x[r0:r1], self._flat, self._net_args, work, masks)
            finite = bool(np.isfinite(z).all())
            if train_flg and advance and finite:
                self._advance(self._forward_buffers(x.shape[0]) if train else None)
        if not finite:
            self._explain_non_finite(x)
        return z

    def _check_batch(self, rows, func):
        if self.use_batchnorm and rows < 2:
            raise ValueError(f"{func}: batch normalization in training needs a batch of at least 2 rows, got {rows}")

    def _advance(self, work):
        """What a training pass over a batch leaves behind, as the book's layers: batch norm's running
        statistics move toward the batch's (from ``work``, just written; None: no batch statistics),
        and the mask counter counts the pass."""
        if work is not None and self.use_batchnorm:
            compiled.engine_move_running(self._net_args, work)
        self.dropout_step += 1

    def _explain_non_finite(self, x):
        rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
        name = type(self).__name__
        if rows.size:
            raise ValueError(f"{name}: x contains NaN or infinity (row {rows[0]})")
        for key, value in self.params.items():
            require_finite(name, f"params[{key!r}]", np.ascontiguousarray(value))
        raise ValueError(f"{name}: the logits overflowed (finite inputs and weights: has training diverged?)")

    def loss(self, x, t, train_flg=False, advance=True):
        """Mean cross-entropy of softmax(predict(x)) against t (integer or one-hot), plus weight decay's
        ½·Σ λ·‖W‖², a float (``train_flg`` and ``advance`` as ``predict``)."""
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        require_labels(f"{type(self).__name__}.loss", t, self.output_size)
        z = self.predict(x, train_flg, advance)
        return softmax_cross_entropy(z, t, np.empty_like(z)) + compiled.engine_decay_loss(
            self._flat, self.records, self.net.coef
        )

    def accuracy(self, x, t, batch_size=100):
        """Fraction of images whose largest logit is at the label t. ``batch_size`` is the book's
        argument (its loop's chunk); the result does not depend on it."""
        positive_int(f"{type(self).__name__}.accuracy", "batch_size", batch_size)
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        require_labels(f"{type(self).__name__}.accuracy", t, self.output_size)
        correct = 0
        with self._lock:
            self._sync_params()
            for r0 in range(0, x.shape[0], self._predict_rows):
                r1 = min(r0 + self._predict_rows, x.shape[0])
                work = records.EngineWork(*self._forward_buffers(r1 - r0))
                count = compiled.engine_correct_count_unchecked(x[r0:r1], t[r0:r1], self._flat, self._net_args, work)
                if count < 0:
                    self._explain_non_finite(x[r0:r1])
                correct += count
        return correct / x.shape[0]

    def gradient(self, x, t, advance=True):
        """Backprop gradients of the training-mode loss, as new arrays keyed like ``params``: one
        training step's forward and backward, with the book's side effect: ``dropout_step``
        advances (the next call draws fresh masks), as ``step`` does before its update, so the
        book's loop (``gradient`` then ``optimizer.update``) ends bit for bit where ``steps`` ends.
        ``advance=False``: the same gradients, nothing changed."""
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        with self._lock:
            loss = self._run(x, t, self._workspace(x.shape[0])[1], None, None, f"{type(self).__name__}.gradient",
                             update=False)  # fmt: skip
            finite = bool(np.isfinite(loss[0]))
            if finite and advance:
                self._advance(self._workspace(x.shape[0])[0])
            grads = {key: g.copy() for key, g in self._grad_views.items()}
        if not finite:
            self._explain_non_finite(x)
        return grads

    def numerical_gradient(self, x, t):
        """Central-difference gradients of the training-mode loss (slow: for checking ``gradient`` on
        small nets), on the masks the next ``gradient`` call uses; changes nothing (compare with
        ``gradient`` called after it, or ``gradient(x, t, advance=False)``)."""
        return network_numerical_gradient(self, x, t, train_flg=True, advance=False)

    # -- weights ------------------------------------------------------------------------------

    def save_params(self, path="params.pkl"):
        """Write the weights atomically: a ``.pkl`` path in the book's format (its ``load_params``
        reads it), any other path as a fastnet weights file (``.npz``, with the architecture)."""
        from .bookfiles import write_book_params

        with self._lock:
            self._sync_params()
            if Path(path).suffix == ".pkl":
                write_book_params(path, self.params)
            else:
                save_weights(path, self)

    def load_params(self, path="params.pkl"):
        """Read weights into this network, checked for names, shapes and finiteness: the book's
        ``.pkl`` (read without running arbitrary pickles) or a fastnet weights file."""
        from .bookfiles import BookFileError, read_book_params

        if Path(path).suffix != ".pkl":
            load_weights(path, self)
            return
        params = read_book_params(path)
        if set(params) != set(self.params):
            raise BookFileError(f"{path}: holds {sorted(params)}, this network needs {sorted(self.params)}")
        for key, value in params.items():
            if value.shape != self.params[key].shape:
                raise BookFileError(f"{path}: {key} has shape {value.shape}, this network's is "
                                    f"{self.params[key].shape}")  # fmt: skip
            if not np.isfinite(value).all():
                raise BookFileError(f"{path}: {key} contains NaN or infinity")
        with self._lock:
            self._sync_params()
            for key, value in params.items():
                self._views[key][...] = value

    # -- training -----------------------------------------------------------------------------

    def step(self, x, t, optimizer):
        """One update on the batch (x, t) with ``optimizer`` (or a learning rate); returns the loss before it."""
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        with self._lock:
            rows = self._workspace(x.shape[0])[1]
        return self._run(x, t, rows, optimizer, None, f"{type(self).__name__}.step")[0]

    def steps(self, x, t, batches, optimizer, x_divisor=None):
        """One update per row of ``batches`` (S, B), in one compiled call; returns the losses (fewer
        if a step's loss is not finite: that step changed nothing). x: rows (N, C·H·W) in the net's
        dtype and t int64 (``prepare_inputs``/``prepare_labels``), or x uint8 pixel codes with
        ``x_divisor``."""
        func = f"{type(self).__name__}.steps"
        if isinstance(x, np.ndarray) and x.ndim == 4:
            x = x.reshape(x.shape[0], -1)
        check_steps_inputs(func, x, batches, x_divisor, self.dtype)
        return self._run(x, t, batches, optimizer, x_divisor, func)

    def _run(self, x, t, batches, optimizer, x_divisor, func, update=True):
        batches = np.ascontiguousarray(batches, np.int64)
        if not isinstance(t, np.ndarray) or t.dtype != np.int64 or t.ndim != 1:
            raise TypeError(f"{func}: t must be int64 class indices (see prepare_labels)")
        x = writable(np.ascontiguousarray(x))
        divisor = 1.0 if x_divisor is None else float(x_divisor)
        if not (math.isfinite(divisor) and divisor > 0):
            raise ValueError(f"{func}: x_divisor must be finite and positive")
        with self._lock:
            self._sync_params()
            opt_args = self._optimizer_args(optimizer, func) if update else (0, np.zeros(4), self._grad, self._grad)
            self._check_batch(batches.shape[1], func)
            work, _ = self._workspace(batches.shape[1])
            losses = np.empty(batches.shape[0])
            seed, step = self.dropout_seed, self.dropout_step
            flat, grad, net = self._flat, self._grad, self._net_args
            with named_errors(func):
                if update:
                    taken = compiled.engine_steps(x, t, batches, flat, grad, net, work, seed, step, opt_args, losses,
                                                  divisor)  # fmt: skip
                    self.dropout_step += taken
                    return losses[:taken]
                check_engine_batches(x, t, batches, net, work)
                losses[0] = compiled.engine_step_unchecked(x, t, batches[0], flat, grad, net, work, seed, step,
                                                           opt_args, False, divisor)  # fmt: skip
            return losses[:1]
