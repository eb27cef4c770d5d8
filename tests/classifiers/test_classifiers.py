"""LCT and FCN: separation, no signal in random labels, determinism, training-only statistics,
class balancing, k-fold bookkeeping, and the one interface of all classifiers."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from sklearn.metrics import roc_auc_score

from distributed_clr import classifiers
from distributed_clr.classifiers import (
    ClassifierError,
    fit_predict,
    fit_predict_folds,
    make_classifier,
    stratified_holdout,
)
from distributed_clr.classifiers.checks import standardise
from distributed_clr.config.schema import EvaluateConfig, FCNConfig
from distributed_clr.errors import UserError

CONFIG = FCNConfig(hidden=[32, 16], epochs=25, patience=5, batch_size=256)
NAMES = ["lct", "fcn"]


def gaussian_toy(
    n: int, seed: int, shift: float = 2.0, dims: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """n background N(0, 1) and n signal events shifted by ``shift`` in the first two dims."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2 * n, dims)).astype(np.float32)
    y = np.r_[np.zeros(n), np.ones(n)].astype(np.int64)
    x[n:, :2] += shift
    return x, y


@pytest.mark.parametrize("name", NAMES)
def test_separable_toy_is_separated(name: str) -> None:
    x, y = gaussian_toy(1500, seed=0)
    x_test, y_test = gaussian_toy(1500, seed=1)
    scores = fit_predict(name, x, y, x_test, CONFIG, seed=0)  # type: ignore[arg-type]
    assert scores.shape == (3000,)
    assert scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all()
    assert roc_auc_score(y_test, scores) > 0.9


@pytest.mark.parametrize("name", NAMES)
def test_random_labels_give_auc_one_half(name: str) -> None:
    rng = np.random.default_rng(5)
    x, x_test = rng.normal(size=(3000, 4)), rng.normal(size=(6000, 4))
    y, y_test = rng.integers(0, 2, 3000), rng.integers(0, 2, 6000)
    scores = fit_predict(name, x, y, x_test, CONFIG, seed=0)  # type: ignore[arg-type]
    assert abs(roc_auc_score(y_test, scores) - 0.5) < 0.04


def test_fcn_same_seed_same_scores_and_global_rng_untouched() -> None:
    x, y = gaussian_toy(500, seed=2)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = fit_predict("fcn", x, y, x, CONFIG, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(fit_predict("fcn", x, y, x, CONFIG, seed=7), first)
    assert not np.array_equal(fit_predict("fcn", x, y, x, CONFIG, seed=8), first)


@pytest.mark.parametrize("name", NAMES)
def test_scores_use_training_statistics_only(name: str) -> None:
    """A test event's score must not depend on which other events are in the test set (as it
    would if the test set were standardised with its own statistics, or if dropout were left
    on at prediction), and a test set far from the training data is not pulled back onto it."""
    x, y = gaussian_toy(600, seed=3)
    x_test, _ = gaussian_toy(200, seed=4)
    alone = fit_predict(name, x, y, x_test, CONFIG, seed=1)  # type: ignore[arg-type]
    far = x_test + 50.0  # far along the signal direction (and the others)
    mixed = fit_predict(name, x, y, np.r_[x_test, far], CONFIG, seed=1)  # type: ignore[arg-type]
    np.testing.assert_allclose(mixed[:400], alone, rtol=1e-6, atol=1e-9)
    assert (mixed[400:] > 0.99).all()  # beyond the signal, as the training scale says


def test_standardise_with_training_mean_and_std() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, size=(1000, 3))
    train[:, 2] = 7.0  # a constant feature is left unscaled
    test = rng.normal(100.0, 10.0, size=(10, 3))
    scaled_train, scaled_test = standardise(train, test)
    np.testing.assert_allclose(scaled_train[:, :2].mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(scaled_train[:, :2].std(axis=0), 1.0, atol=1e-6)
    std = train.std(axis=0)
    std[2] = 1.0
    np.testing.assert_allclose(scaled_test, (test - train.mean(axis=0)) / std, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_classes_are_balanced(name: str) -> None:
    """Background N(0, 1) x 10 the signal N(2, 1): balanced, the midpoint scores 1/2 (an
    unweighted fit would give the prior, 1/11)."""
    rng = np.random.default_rng(6)
    x = np.r_[rng.normal(0.0, 1.0, (5000, 1)), rng.normal(2.0, 1.0, (500, 1))]
    y = np.r_[np.zeros(5000), np.ones(500)]
    score = fit_predict(name, x, y, np.array([[1.0]]), CONFIG, seed=0)  # type: ignore[arg-type]
    assert score[0] == pytest.approx(0.5, abs=0.06)


def test_sample_weight_enters_the_fit_and_is_validated() -> None:
    """Zero weight on the less signal-like half of class 1 changes the fitted scores."""
    x, y = gaussian_toy(400, seed=8)
    plain = fit_predict("lct", x, y, x, CONFIG, seed=0)
    weights = np.ones(len(y))
    weights[(y == 1) & (x[:, 0] < 2.0)] = 0.0  # keep only the most signal-like signal
    weighted = fit_predict("lct", x, y, x, CONFIG, seed=0, sample_weight=weights)
    assert not np.allclose(plain, weighted)
    with pytest.raises(ValueError, match="non-negative"):
        fit_predict("lct", x, y, x, CONFIG, seed=0, sample_weight=-weights)
    with pytest.raises(ValueError, match="positive total"):
        fit_predict("lct", x, y, x, CONFIG, seed=0, sample_weight=np.where(y == 1, 0.0, 1.0))


def _with_nan(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    bad = x.copy()
    bad[5, 2] = np.nan
    return bad


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "bdt"}, "unknown classifier"),
        ({"x_train": "nan"}, r"x_train contains 1 NaN/inf values \(first at row 5, column 2\)"),
        ({"x_test": "inf"}, "x_test contains 1 NaN/inf"),
        ({"x_test": "narrow"}, "x_train has 4 features but x_test has 3"),
        ({"x_train": "1d"}, "2-D"),
        ({"y_train": "short"}, "y_train must be 1-D with 40 entries"),
        ({"y_train": "three"}, r"y_train must be 0 or 1; found \[2\]"),
        ({"y_train": "one_class"}, "only one class"),
    ],
)
def test_bad_input_raises(kwargs: dict[str, str], match: str) -> None:
    x, y = gaussian_toy(20, seed=0)
    args: dict[str, Any] = {"name": "lct", "x_train": x, "y_train": y, "x_test": x}
    variants: dict[str, Any] = {
        "nan": _with_nan(x),
        "inf": np.where(np.arange(x.size).reshape(x.shape) == 7, np.inf, x),
        "narrow": x[:, :3],
        "1d": x[:, 0],
        "short": y[:-1],
        "three": np.where(y == 1, 2, y),
        "one_class": np.zeros_like(y),
    }
    for key, value in kwargs.items():
        args[key] = variants.get(value, value)
    with pytest.raises(ValueError, match=match):
        fit_predict(fcn=CONFIG, seed=0, **args)


def test_fcn_holdout_is_stratified_and_seeded() -> None:
    y = np.r_[np.zeros(900), np.ones(100)].astype(np.int64)
    mask = stratified_holdout(y, 0.2, np.random.default_rng(0))
    assert mask[y == 0].sum() == 180
    assert mask[y == 1].sum() == 20
    np.testing.assert_array_equal(mask, stratified_holdout(y, 0.2, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="at least 2 training events of class 1"):
        stratified_holdout(
            np.r_[np.zeros(10), np.ones(1)].astype(np.int64), 0.2, np.random.default_rng(0)
        )


def test_folds_score_each_event_with_a_model_that_never_saw_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recording stand-in classifier: column 0 of x is an event id."""
    rng = np.random.default_rng(0)
    n = 500
    ids = np.arange(n, dtype=np.float64)
    x = np.c_[ids, rng.normal(size=n)]
    y = rng.integers(0, 2, n)
    folds = rng.integers(0, 5, n)
    calls: list[tuple[set[float], np.ndarray, int]] = []

    def recorder(
        name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *a: Any, **k: Any
    ) -> np.ndarray:
        train_ids = set(x_train[:, 0].tolist())
        np.testing.assert_array_equal(y_train, y[x_train[:, 0].astype(int)])
        calls.append((train_ids, x_test[:, 0].copy(), int(a[1])))
        return np.asarray(x_test[:, 0], dtype=np.float64)  # "score" = the id it was given

    monkeypatch.setattr(classifiers, "fit_predict", recorder)
    scores = fit_predict_folds("lct", x, y, folds, CONFIG, seed=3)
    assert len(calls) == 5
    np.testing.assert_array_equal(scores, ids)  # every event got back its own score
    scored = np.concatenate([test for _, test, _ in calls])
    assert sorted(scored.tolist()) == ids.tolist()  # each event scored exactly once
    for train_ids, test_ids, _ in calls:
        assert train_ids.isdisjoint(test_ids.tolist())
        assert len(train_ids) + len(test_ids) == n  # trained on all the other folds
    assert len({seed for _, _, seed in calls}) == 5  # an independent seed per fold


def test_folds_with_a_real_classifier() -> None:
    x, y = gaussian_toy(1000, seed=9)
    folds = np.random.default_rng(0).integers(0, 4, len(y))
    scores = fit_predict_folds("lct", x, y, folds, CONFIG, seed=0)
    assert np.isfinite(scores).all()
    assert roc_auc_score(y, scores) > 0.9
    np.testing.assert_array_equal(scores, fit_predict_folds("lct", x, y, folds, CONFIG, seed=0))
    with pytest.raises(ValueError, match="at least 2 folds"):
        fit_predict_folds("lct", x, y, np.zeros(len(y), dtype=int), CONFIG, seed=0)
    with pytest.raises(ValueError, match="folds must be integers"):
        fit_predict_folds("lct", x, y, folds.astype(float), CONFIG, seed=0)


def test_bad_data_is_a_user_error() -> None:
    x, y = gaussian_toy(20, seed=0)
    with pytest.raises(UserError, match="only one class"):
        fit_predict("lct", x, np.zeros_like(y), x, None, seed=0)
    with pytest.raises(ClassifierError, match="NaN/inf"):
        fit_predict("fcn", _with_nan(x), y, x, CONFIG, seed=0)
    with pytest.raises(UserError, match="at least 2 training events of class 1"):
        fit_predict("fcn", x[:21], y[:21], x, CONFIG, seed=0)


def test_one_interface_for_every_classifier() -> None:
    """``make_classifier`` gives the LCT and the FCN with their sections: the same scores as
    ``fit_predict``, and no training record to report."""
    x, y = gaussian_toy(300, seed=10)
    config = EvaluateConfig(fcn=CONFIG)
    for name, fcn in (("lct", None), ("fcn", CONFIG)):
        classifier = make_classifier(name, config)
        assert classifier.name == name
        assert classifier.display_name == name.upper()
        scores, record = classifier.fit_predict(x, y, x[:50], 3)
        assert record is None
        np.testing.assert_array_equal(scores, fit_predict(name, x, y, x[:50], fcn, 3))  # type: ignore[arg-type]
    with pytest.raises(ClassifierError, match="unknown classifier"):
        make_classifier("bdt", config)
    with pytest.raises(ValueError, match="architecture"):
        make_classifier("trans_bc", config)
