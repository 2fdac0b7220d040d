"""NetClassifier passes scikit-learn's own estimator checks, and works where scikit-learn users put it."""

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastnet.sklearn import NetClassifier  # noqa: E402


@parametrize_with_checks([NetClassifier(epochs=60, random_state=0)])
def test_scikit_learns_estimator_checks(estimator, check):
    check(estimator)


def blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [3, 3, 0, 0], [0, 3, 3, 3]])
    labels = rng.integers(0, 3, n)
    return centres[labels] + rng.normal(size=(n, 4)), np.array(["cat", "dog", "eel"])[labels]


def test_string_labels_pipelines_grid_search_and_pickles():
    X, y = blobs()
    clf = make_pipeline(StandardScaler(), NetClassifier(layers="16", epochs=40, batch_size=20, random_state=1))
    assert cross_val_score(clf, X, y, cv=3).mean() > 0.9
    grid = {"lr": [1e-3, 1e-2], "layers": ["8", (16, 8)]}
    search = GridSearchCV(NetClassifier(epochs=30, batch_size=20, random_state=0), grid, cv=2).fit(X, y)
    assert search.best_score_ > 0.8
    fitted = NetClassifier(layers="affine16,bn,relu,dropout0.1", epochs=20, batch_size=20, random_state=2).fit(X, y)
    assert set(fitted.classes_) == {"cat", "dog", "eel"} and fitted.n_features_in_ == 4
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
    again.partial_fit(X, y)  # training goes on after a pickle
    assert again.n_iter_ == fitted.n_iter_ + 1


def test_partial_fit_early_stopping_and_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = blobs()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = NetClassifier(layers="8", batch_size=20, random_state=0)
    for _ in range(5):
        clf.partial_fit(frame, y, classes=["cat", "dog", "eel"])
    assert clf.n_iter_ == 5 and list(clf.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="not among classes_"), pytest.warns(UserWarning, match="feature names"):
        clf.partial_fit(X, np.full(len(X), "fox"))  # an array after a DataFrame: scikit-learn's warning
    stopped = NetClassifier(epochs=500, batch_size=20, n_iter_no_change=3, validation_fraction=0.2, random_state=0).fit(
        X, y
    )
    assert stopped.n_iter_ < 500 and max(stopped.validation_scores_) > 0.8  # stopped, the best weights kept
    with pytest.raises(ValueError, match="optimizer must be one of"):
        NetClassifier(optimizer="lbfgs").fit(X, y)
