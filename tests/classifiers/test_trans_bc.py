"""Trans+BC: it learns a toy, is seeded, predicts in eval mode, and checks its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from distributed_clr.classifiers import TransBC, fit_predict_trans_bc, resolve_device
from distributed_clr.config.schema import ModelConfig, TransBCConfig

MODEL = ModelConfig(latent_dim=8, depth=1, heads=2, dropout=0.0)
# The width difference only shows in |d_eta|, |d_phi| (their pT-weighted means vanish around
# the jet axis), so training starts on a plateau; a large step leaves it within a few epochs.
CONFIG = TransBCConfig(epochs=30, patience=8, batch_size=64, lr=1e-2)
CONSTITUENTS = 8


def toy_events(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, 2, C, 3), labels): signal jets are wide (constituents spread by 0.3 around the
    axis), background jets narrow (0.05); pT spectra and jet directions are the same."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    pt = np.sort(rng.exponential(100.0, size=(n, 2, CONSTITUENTS)), axis=-1)[..., ::-1] + 1.0
    width = np.where(labels == 1, 0.3, 0.05)[:, None, None]
    axis_eta = rng.uniform(-1.0, 1.0, size=(n, 2, 1))
    axis_phi = rng.uniform(-np.pi, np.pi, size=(n, 2, 1))
    eta = axis_eta + width * rng.normal(size=pt.shape)
    phi = axis_phi + width * rng.normal(size=pt.shape)
    x = np.stack([pt, eta, phi], axis=-1).astype(np.float32)
    x[:, :, -2:] = 0.0  # two padding slots per jet
    return x, labels


def test_trans_bc_learns_a_toy() -> None:
    x_train, y_train = toy_events(400, seed=0)
    x_test, y_test = toy_events(300, seed=1)
    result = fit_predict_trans_bc(x_train, y_train, x_test, MODEL, CONFIG, seed=0)
    assert result.scores.shape == (300,)
    assert result.scores.dtype == np.float64
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    assert roc_auc_score(y_test, result.scores) > 0.9
    # Early-stopping bookkeeping: one history entry per epoch run, the best one kept.
    assert len(result.history) == result.epochs <= CONFIG.epochs
    val_losses = [h["val_loss"] for h in result.history]
    assert result.best_val_loss == min(val_losses)
    assert result.best_epoch == int(np.argmin(val_losses))
    assert val_losses[result.best_epoch] < val_losses[0] or result.best_epoch == 0


def test_early_stopping_ends_training() -> None:
    x, y = toy_events(200, seed=2)
    patient = CONFIG.model_copy(update={"epochs": 200, "patience": 1})
    result = fit_predict_trans_bc(x, y, x[:10], MODEL, patient, seed=0)
    assert result.epochs < 200
    assert result.epochs == result.best_epoch + 2  # stopped one epoch after the best


def test_same_seed_same_scores_and_global_rng_untouched() -> None:
    x, y = toy_events(120, seed=3)
    quick = CONFIG.model_copy(update={"epochs": 2})
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = fit_predict_trans_bc(x, y, x, MODEL, quick, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    second = fit_predict_trans_bc(x, y, x, MODEL, quick, seed=7)
    np.testing.assert_array_equal(first.scores, second.scores)
    other = fit_predict_trans_bc(x, y, x, MODEL, quick, seed=8)
    assert not np.array_equal(first.scores, other.scores)


def test_dropout_is_off_at_prediction() -> None:
    x, y = toy_events(100, seed=4)
    dropout = MODEL.model_copy(update={"dropout": 0.5})
    quick = CONFIG.model_copy(update={"epochs": 1})
    test = np.concatenate([x[:5], x[:5]])  # each event twice
    result = fit_predict_trans_bc(x, y, test, dropout, quick, seed=0)
    # Equal up to float rounding (vectorised kernels may sum in another order by row); dropout
    # at p = 0.5 would move them by far more.
    np.testing.assert_allclose(result.scores[:5], result.scores[5:], rtol=1e-6)


def test_model_shapes_and_padding() -> None:
    model = TransBC(MODEL, CONSTITUENTS).eval()
    x, _ = toy_events(4, seed=5)
    xt = torch.from_numpy(x)
    logits = model(xt, xt[..., 0] > 0)
    assert logits.shape == (4,)
    # Extra zero padding changes nothing.
    padded = torch.cat([xt, torch.zeros(4, 2, 3, 3)], dim=2)
    torch.testing.assert_close(model(padded, padded[..., 0] > 0), logits)


@pytest.mark.parametrize(
    ("x_shape", "labels", "match"),
    [
        ((10, 2, 8), [0, 1] * 5, r"\(B, 2, N, 3\)"),
        ((10, 3, 8, 3), [0, 1] * 5, r"\(B, 2, N, 3\)"),
        ((10, 2, 8, 3), [0, 2] * 5, "labels 0/1"),
        ((10, 2, 8, 3), [0] * 9 + [1], "at least 2 training events of class 1"),
    ],
)
def test_bad_input_raises(x_shape: tuple[int, ...], labels: list[int], match: str) -> None:
    x = np.ones(x_shape, dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        fit_predict_trans_bc(x, labels, x, MODEL, CONFIG, seed=0)


def test_nan_input_and_test_shape_are_refused() -> None:
    x, y = toy_events(20, seed=6)
    bad = x.copy()
    bad[3, 0, 0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_predict_trans_bc(bad, y, x, MODEL, CONFIG, seed=0)
    with pytest.raises(ValueError, match="differ per event"):
        fit_predict_trans_bc(x, y, x[:, :, :4], MODEL, CONFIG, seed=0)


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_seeded_and_leaves_the_rng_alone() -> None:
    x, y = toy_events(120, seed=7)
    on_gpu = CONFIG.model_copy(update={"epochs": 2, "device": "cuda"})
    torch.manual_seed(5)
    torch.cuda.manual_seed_all(5)
    before, before_cuda = torch.get_rng_state(), torch.cuda.get_rng_state()
    first = fit_predict_trans_bc(x, y, x, MODEL, on_gpu, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.cuda.get_rng_state(), before_cuda)
    assert first.scores.dtype == np.float64
    assert np.isfinite(first.scores).all()
    assert len(first.history) == first.epochs
    second = fit_predict_trans_bc(x, y, x, MODEL, on_gpu, seed=3)
    np.testing.assert_allclose(second.scores, first.scores, rtol=1e-5, atol=1e-7)
