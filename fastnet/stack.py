"""NetStack: K networks of one architecture, trained together on the same minibatches.

Each network keeps its own seed, weights, weight decay and optimizer (any
class, own hyperparameters); ``stack.step``/``stack.steps`` train all K in
one compiled call (``kernels.stack``), and each follows the trajectory it
would follow alone. The networks stay usable on their own: their ``params``
become live views into the stack's arrays, their optimizers' state too.
"""

import contextlib

import numpy as np

from . import _cores, optim
from .base import check_steps_inputs, named_errors, writable
from .kernels import stack as compiled
from .kernels.checks import check_batches, require_labels
from .sequential import Sequential

ACCURACY_CHUNK = 2000  # rows per member per forward in accuracy(); bounds its buffers


def _same(nets, attribute, key=None):
    values = [getattr(net, attribute) if key is None else key(net) for net in nets]
    if any(v != values[0] for v in values):
        raise ValueError(f"NetStack: the networks differ in {attribute} ({values}); a stack needs one architecture")


class NetStack:
    """``NetStack(nets, optimizers)``: K networks of one class and architecture (``MultiLayerNet``,
    ``SimpleConvNet``, ``DeepConvNet``, any ``Sequential``), each with its own optimizer (any of
    ``fastnet.optim``, own hyperparameters), weight decay, dropout ratio and seed. Networks of
    affine, batch-norm and dropout layers (``MultiLayerNet``) train side by side in one compiled
    call, each member on one core; convnets one after another, each on every core.

    ``step(x, t)`` trains all on one batch and returns their K losses; ``steps(x, t, batches)``
    one step per row of ``batches`` (an (S, K) array of losses); ``accuracy``/``loss`` give K
    values. A member whose loss stops being finite is left with its last finite weights and
    frozen: ``diverged`` lists them, their losses read NaN from then on.
    """

    def __init__(self, nets, optimizers):
        nets, optimizers = list(nets), list(optimizers)
        if not nets:
            raise ValueError("NetStack: give at least one network")
        if len(optimizers) != len(nets):
            raise ValueError(f"NetStack: {len(nets)} networks but {len(optimizers)} optimizers; give one each")
        for net in nets:
            if not isinstance(net, Sequential):
                raise TypeError(f"NetStack: stacks MultiLayerNet networks, not {type(net).__name__} (or "
                                "SimpleConvNet, DeepConvNet, any Sequential: the networks of the layer engine; "
                                "MultiLayerNet(D, [H], C) is the book's two-layer network)")  # fmt: skip
        if len({id(net) for net in nets}) != len(nets):
            raise ValueError("NetStack: a network appears twice")
        _same(nets, "class", lambda net: type(net).__name__)
        _same(nets, "dtype")
        for attribute in type(nets[0]).ARCHITECTURE:  # the constructor's words first
            _same(nets, attribute)
        if any(not np.array_equal(net.records, nets[0].records) or net.input_dim != nets[0].input_dim for net in nets):
            _same(nets, "layers", lambda net: (net.input_dim, net.layer_specs))  # λ and dropout ratios may differ
        for opt in optimizers:
            if not isinstance(opt, optim.Optimizer):
                raise TypeError(f"NetStack: optimizers must be of fastnet.optim, not {opt!r}")
        if len({id(opt) for opt in optimizers}) != len(optimizers):
            raise ValueError("NetStack: an optimizer appears twice; give each network its own")
        self.nets, self.optimizers = nets, optimizers
        self._active = np.ones(len(nets), np.bool_)
        self._lock = _cores.CallLock()  # watches the cores as calls begin
        self._kernel = compiled.stackable(nets[0].records)
        if not self._kernel:
            return
        first = nets[0]
        K, P, R = len(nets), first._flat.size, first.net.running_mean.size
        self._flats, self._grads = np.zeros((K, P), first.dtype), np.zeros((K, P), first.dtype)
        self._running_means, self._running_vars = np.zeros((K, R), first.dtype), np.zeros((K, R), first.dtype)
        self._coefs = np.stack([net.net.coef for net in nets])
        self._s1, self._s2 = np.zeros((K, P), first.dtype), np.zeros((K, P), first.dtype)
        self._hypers = np.zeros((K, 4))
        for k, (net, opt) in enumerate(zip(nets, optimizers)):
            net._move_into(self._flats[k], self._grads[k], self._running_means[k], self._running_vars[k])
            opt._move_into(net.params, self._s1[k], self._s2[k], self._hypers[k])
            net._bound_optimizer = opt  # the state was checked against the net's parameters just now
        self._seeds = np.zeros(K, np.int64)
        self._kinds = np.array([opt.KIND for opt in optimizers], np.int64)
        self._workspaces = {}
        self._test_work = None  # accuracy's buffers, for chunks of ACCURACY_CHUNK rows at most

    def __len__(self):
        return len(self.nets)

    @property
    def diverged(self):
        """Indices of the members frozen because their loss stopped being finite."""
        return [int(k) for k in np.flatnonzero(~self._active)]

    @contextlib.contextmanager
    def _members(self):
        """Hold the stack's and every member's lock, the members' params synced into the stack's arrays."""
        with self._lock, contextlib.ExitStack() as held:
            for net in self.nets:
                held.enter_context(net._lock)
            for net in self.nets:
                net._sync_params()
            yield

    def _workspace(self, batch):
        work = self._workspaces.get(batch)
        if work is None:
            first = self.nets[0]
            work = tuple(compiled.new_stack_work(len(self.nets), batch, first.net, first.dtype))
            self._workspaces[batch] = work
        return work

    def step(self, x, t):
        """One update of every member on the batch (x, t); returns the K losses before it."""
        first = self.nets[0]
        x = first.prepare_inputs(x)
        t = first.prepare_labels(t, x.shape[0])
        return self._run(x, t, np.arange(x.shape[0])[None, :], None, "NetStack.step")[0]

    def steps(self, x, t, batches, x_divisor=None):
        """One update of every member per row of ``batches`` (S, B), in one compiled call; returns
        the losses (S, K). x in the nets' dtype and t int64, or uint8 codes with ``x_divisor``."""
        first = self.nets[0]
        if isinstance(x, np.ndarray) and x.ndim == 4:
            x = x.reshape(x.shape[0], -1)
        check_steps_inputs("NetStack.steps", x, batches, x_divisor, first.dtype)
        if not isinstance(t, np.ndarray) or t.dtype != np.int64:
            raise TypeError("NetStack.steps: t must be int64 class indices (see prepare_labels)")
        return self._run(writable(np.ascontiguousarray(x)), t, batches, x_divisor, "NetStack.steps")

    def _run(self, x, t, batches, x_divisor, func):
        first = self.nets[0]
        batches = np.ascontiguousarray(batches, np.int64)
        divisor = 1.0 if x_divisor is None else float(x_divisor)
        if not (np.isfinite(divisor) and divisor > 0):
            raise ValueError(f"{func}: x_divisor must be finite and positive")
        if first.use_batchnorm and batches.shape[1] < 2:
            raise ValueError(f"{func}: batch normalization in training needs a batch of at least 2 rows")
        S, K = batches.shape[0], len(self.nets)
        m = K - self._trained_alone()  # members 0..m-1 train in the stack kernel, the rest alone
        losses = np.full((S, K), np.nan)
        with self._members():
            with named_errors(func):  # every batch checked before any step
                check_batches(x, t, batches, first.records, batches.shape[1])
            if m:
                self._seeds[:m] = [net.dropout_seed for net in self.nets[:m]]  # a member may have loaded weights
                masks = (self._seeds[:m], np.array([net.dropout_step for net in self.nets[:m]], np.int64))
                optimizers = (self._kinds[:m], self._hypers[:m], self._s1[:m], self._s2[:m])
                stacked = losses if m == K else np.empty((S, m))
                with named_errors(func):  # a row of x not finite
                    compiled.stack_steps_unchecked(x, t, batches, self._flats[:m], self._grads[:m], self._nets(m),
                                                   self._workspace(batches.shape[1]), masks, optimizers,
                                                   self._active[:m], stacked, divisor)  # fmt: skip
                losses[:, :m] = stacked
                for net in self.nets[:m]:
                    net.dropout_step += S
            for k in range(m, K):
                if self._active[k]:
                    taken = self.nets[k].steps(x, t, batches, self.optimizers[k], x_divisor)
                    losses[: len(taken), k] = taken
                    self._active[k] = len(taken) == S and bool(np.isfinite(taken).all())
        return losses

    def _nets(self, m):
        """The first m members as the stack kernels take them."""
        return self.nets[0].records, self._coefs[:m], self._running_means[:m], self._running_vars[:m]

    def _trained_alone(self):
        """How many members (the last ones) train alone, one after another, each on every core.

        The stack kernel runs each member's step on one core. With K members on T cores (the block
        count: results must not depend on the thread count) the last K mod T would take a round of
        their own with cores idle; alone, each uses all T, which pays while the remainder r is
        small: a network's step is far from T times faster on T cores, so only for r² ≤ T."""
        if not self._kernel:
            return len(self.nets)
        remainder = len(self.nets) % _cores.BLOCKS
        return remainder if remainder * remainder <= _cores.BLOCKS else 0

    def accuracy(self, x, t):
        """Each member's accuracy on (x, t) at test time: K values (in one compiled call where the
        members train in one)."""
        first = self.nets[0]
        x = first.prepare_inputs(x)
        t = first.prepare_labels(t, x.shape[0])
        require_labels("NetStack.accuracy", t, first.output_size)
        if not self._kernel:
            with self._members():
                return np.array([net.accuracy(x, t) for net in self.nets])
        rows = min(x.shape[0], ACCURACY_CHUNK)
        if self._test_work is None or self._test_work[1].shape[0] != rows:  # (.., tb, ..): the chunk
            work = compiled.new_stack_work(len(self.nets), rows, first.net, first.dtype, training=False)
            self._test_work = tuple(work)
        counts = np.empty(len(self.nets), np.int64)
        with self._members():
            compiled.stack_correct_counts_unchecked(x, t, self._flats, self._nets(len(self.nets)), self._test_work,
                                                    counts)  # fmt: skip
        for k in np.flatnonzero(counts < 0):  # a logit is not finite: the member's own message
            self.nets[k].accuracy(x, t)
        return counts / x.shape[0]

    def loss(self, x, t, train_flg=False):
        """Each member's loss on (x, t): K values."""
        return np.array([net.loss(x, t, train_flg) for net in self.nets])
