"""``NetClassifier``: fastnet's fused training as a scikit-learn classifier.

    from fastnet.sklearn import NetClassifier
    from sklearn.model_selection import cross_val_score
    cross_val_score(NetClassifier(layers="100,100", epochs=30), X, y)

A ``Sequential`` network of the hidden sizes (or layers) given, trained on minibatches with one of
the six optimizers by the fused ``steps``; any array-like X of numbers, any labels (``classes_``).
Passes scikit-learn's own estimator checks (``tests/test_sklearn.py``). Needs scikit-learn
(``pip install -e ".[sklearn]"``).
"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import layers as L
from . import optim
from .sequential import Sequential


def _layers(spec, weight_decay):
    """The layer objects for ``layers``: hidden sizes ("100,100" or [100, 100]; ReLU after each),
    a ``fastnet.layers`` text ("affine100,relu,dropout0.2"), or a list of layer objects; the
    output layer is added."""
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(layer, L.Layer) for layer in spec):
        return list(spec)
    if isinstance(spec, str) and any(c.isalpha() for c in spec):
        return L.parse_layers(spec)
    sizes = [int(n) for n in (spec.split(",") if isinstance(spec, str) else spec)] if spec not in ("", None) else []
    layers = []
    for n in sizes:
        layers += [L.Affine(n, weight_decay=weight_decay), L.ReLU()]
    return layers


class NetClassifier(ClassifierMixin, BaseEstimator):
    """A fastnet network as a scikit-learn classifier.

    layers: hidden sizes ("100" or (100, 100): affine + ReLU each), a ``fastnet.layers`` text
        ("affine128,bn,relu,dropout0.2") or a list of layer objects; the output affine layer (one
        unit per class) is added.
    optimizer: "sgd", "momentum", "nesterov", "adagrad", "rmsprop" or "adam"; lr its rate.
    batch_size, epochs: minibatches (of min(batch_size, samples) rows) drawn without replacement,
        ``epochs`` passes over the data per ``fit``; ``partial_fit`` runs one pass.
    weight_decay: λ of ½λ‖W‖² on every hidden affine layer given by sizes, and on the output layer.
    validation_fraction, n_iter_no_change: with n_iter_no_change, hold out that share of the data
        and stop when the held-out accuracy has not improved for that many epochs (the best weights
        kept); ``validation_scores_`` records it.
    random_state: seeds the weights, the dropout masks and the batches. dtype: "float64" or "float32".
    """

    def __init__(self, layers="100", optimizer="adam", lr=1e-3, batch_size=100, epochs=200, weight_decay=0.0,
                 validation_fraction=0.1, n_iter_no_change=None, random_state=None, dtype="float64"):  # fmt: skip
        self.layers = layers
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    # -- fitting -------------------------------------------------------------------------------

    def _check_parameters(self):
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(
                f"NetClassifier: optimizer must be one of {sorted(optim.OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if np.dtype(self.dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"NetClassifier: dtype must be float32 or float64, got {self.dtype!r}")
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"NetClassifier: {name} must be a positive integer, got {value!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"NetClassifier: validation_fraction must lie in [0, 1), got {self.validation_fraction!r}")

    def _prepare(self, X, y, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=np.dtype(self.dtype), order="C")
        check_classification_targets(y)
        return X, y

    def _initialise(self, classes):
        self.classes_ = np.asarray(classes)
        if len(self.classes_) < 2:
            raise ValueError(f"NetClassifier: needs at least 2 classes to tell apart; got {len(self.classes_)} class")
        self._rng = np.random.default_rng(self.random_state)
        seed = int(self._rng.integers(2**63))
        layers = _layers(self.layers, self.weight_decay) + [L.Affine(len(self.classes_),
                                                                    weight_decay=self.weight_decay)]  # fmt: skip
        self.net_ = Sequential(self.n_features_in_, layers, dtype=np.dtype(self.dtype), seed=seed)
        rate = {} if self.lr is None else {"lr": self.lr}
        self._optimizer = optim.OPTIMIZERS[self.optimizer](**rate)
        self.n_iter_, self.loss_curve_ = 0, []

    def _labels(self, y):
        index = np.searchsorted(self.classes_, y)
        index = np.clip(index, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[index], y):
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            raise ValueError(f"NetClassifier: labels {unknown[:5].tolist()} are not among classes_ "
                             f"{self.classes_.tolist()}")  # fmt: skip
        return index.astype(np.int64)

    def _epoch(self, X, t):
        n = X.shape[0]
        batch = min(self.batch_size, n)
        order = self._rng.permutation(n)
        batches = order[: (n // batch) * batch].reshape(-1, batch)
        losses = self.net_.steps(X, t, batches, self._optimizer)
        self.n_iter_ += 1
        self.loss_curve_.append(float(np.mean(losses)) if len(losses) else float("nan"))

    def fit(self, X, y):
        """Train a new network on (X, y) for ``epochs`` passes; returns self."""
        self._check_parameters()
        X, y = self._prepare(X, y, reset=True)
        self._initialise(np.unique(y))
        t = self._labels(y)
        held = None
        if self.n_iter_no_change is not None and self.validation_fraction > 0:
            order = self._rng.permutation(len(X))
            cut = max(1, int(round(len(X) * self.validation_fraction)))
            held, train = order[:cut], order[cut:]
            X, t, X_val, t_val = X[train], t[train], X[held], t[held]
            self.validation_scores_, best, since = [], -1.0, 0
        for _ in range(self.epochs):
            self._epoch(X, t)
            if held is None:
                continue
            score = self.net_.accuracy(X_val, t_val)
            self.validation_scores_.append(score)
            if score > best:
                best, since, kept = score, 0, self.net_._flat.copy()
            else:
                since += 1
                if since >= self.n_iter_no_change:
                    self.net_._flat[...] = kept
                    break
        return self

    def partial_fit(self, X, y, classes=None):
        """One pass over (X, y); the first call needs ``classes`` (every label there will be) unless
        the network was fitted already."""
        first = not hasattr(self, "net_")
        if first:
            self._check_parameters()
            if classes is None:
                raise ValueError("NetClassifier.partial_fit: the first call needs classes=, every label there will be")
        X, y = self._prepare(X, y, reset=first)
        if first:
            self._initialise(np.unique(np.asarray(classes)))
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError("NetClassifier.partial_fit: classes differ from those of the first call")
        self._epoch(X, self._labels(y))
        return self

    # -- predicting ----------------------------------------------------------------------------

    def predict_proba(self, X):
        """Each row's class probabilities (softmax of the logits), columns in ``classes_`` order."""
        check_is_fitted(self, "net_")
        X = validate_data(self, X, reset=False, dtype=np.dtype(self.dtype), order="C")
        z = self.net_.predict(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Each row's most likely class."""
        check_is_fitted(self, "net_")
        X = validate_data(self, X, reset=False, dtype=np.dtype(self.dtype), order="C")
        return self.classes_[np.argmax(self.net_.predict(X), axis=1)]

    # -- pickling: the network as its architecture and arrays, rebuilt without unpickling code ----

    def __getstate__(self):
        state = dict(self.__dict__)
        if "net_" in state:
            net = state.pop("net_")
            state["_net_state"] = (net.architecture(), {key: value.copy() for key, value in net.params.items()},
                                   {key: value.copy() for key, value in net.running.items()})  # fmt: skip
        return state

    def __setstate__(self, state):
        saved = state.pop("_net_state", None)
        self.__dict__.update(state)
        if saved is not None:
            meta, params, running = saved
            net = Sequential.from_architecture(meta)
            for key, value in params.items():
                net.params[key][...] = value
            for key, value in running.items():
                net.running[key][...] = value
            self.net_ = net
