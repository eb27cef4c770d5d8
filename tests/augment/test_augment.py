"""Physics and contract checks of the batched augmentations (distributed_clr.augment)."""

from __future__ import annotations

import math
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
import pytest
import torch
from scipy.stats import ks_2samp

from distributed_clr.augment import (
    AUGMENTATIONS,
    NUM_FEATURES,
    PLANES_FUNCTIONS,
    Augmenter,
    collinear_split,
    distort,
    drop,
    eta_shift,
    get_augmentation,
    jet_axis,
    make_views,
    mask_objects,
    normalize,
    phi_shift,
    rotate,
    sort_constituents,
    wrap_phi,
)
from distributed_clr.augment.geometry import is_compact
from distributed_clr.config import AugmentConfig
from distributed_clr.config.schema import AugmentationName

Array = npt.NDArray[Any]


# ----------------------------------------------------------------------------------------------
# toy dijets and kinematics


def toy_dijets(events: int, slots: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-to-back ~1 TeV jets with 2-3 prongs each and 20..slots constituents (mean ~30).

    x (events, 2, slots, 3) float32 (pT [GeV], eta, phi), pT-descending, zero-padded; mask bool.
    """
    rng = np.random.default_rng(seed)
    shape = (events, 2)
    jet_pt = 1000.0 * (1.0 + 0.1 * rng.standard_normal(shape))
    jet_eta = rng.normal(0.0, 1.0, shape)
    phi1 = rng.uniform(-np.pi, np.pi, events)
    jet_phi = np.stack([phi1, phi1 + np.pi + rng.normal(0.0, 0.1, events)], axis=1)

    n_prongs = rng.integers(2, 4, shape)  # 2 or 3
    prong = (rng.random((*shape, slots)) * n_prongs[..., None]).astype(np.int64)
    prong_frac = rng.dirichlet(np.ones(3), shape)  # (events, 2, 3)
    prong_offset = np.clip(rng.normal(0.0, 0.15, (*shape, 3, 2)), -0.5, 0.5)
    prong_offset[..., 0, :] = 0.0

    n_real = rng.integers(20, slots + 1, shape)
    real = np.arange(slots) < n_real[..., None]
    weight = (0.01 + rng.exponential(size=(*shape, slots))) * np.take_along_axis(
        prong_frac, prong, -1
    )
    weight = np.where(real, weight, 0.0)
    pt = jet_pt[..., None] * weight / weight.sum(-1, keepdims=True)
    offset = np.take_along_axis(prong_offset, prong[..., None], 2)  # (events, 2, slots, 2)
    eta = jet_eta[..., None] + offset[..., 0] + rng.normal(0.0, 0.04, pt.shape)
    phi = jet_phi[..., None] + offset[..., 1] + rng.normal(0.0, 0.04, pt.shape)
    phi = np.mod(phi + np.pi, 2 * np.pi) - np.pi

    order = np.argsort(-pt, axis=-1, kind="stable")
    x = np.stack([np.take_along_axis(a, order, -1) for a in (pt, eta, phi)], axis=-1)
    mask = np.take_along_axis(real, order, -1)
    x = np.where(mask[..., None], x, 0.0)
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(mask)


def four_momentum(x: torch.Tensor, mask: torch.Tensor) -> Array:
    """(B, 2, 4) float64 (px, py, pz, E) [GeV] of each jet, from massless constituents."""
    a = x.double().numpy()
    pt = np.where(mask.numpy(), a[..., 0], 0.0)
    eta, phi = a[..., 1], a[..., 2]
    p = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)
    return np.asarray(p.sum(axis=2))


def mass(p: Array) -> Array:
    """Invariant mass [GeV] of four-momenta (..., 4)."""
    return np.asarray(np.sqrt(np.maximum(p[..., 3] ** 2 - (p[..., :3] ** 2).sum(-1), 0.0)))


def masses(x: torch.Tensor, mask: torch.Tensor) -> tuple[Array, Array]:
    """(m_J (B, 2), m_jj (B,)) in GeV."""
    p = four_momentum(x, mask)
    return mass(p), mass(p.sum(axis=1))


def generator(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.fixture(scope="module")
def events() -> tuple[torch.Tensor, torch.Tensor]:
    return toy_dijets(3000, seed=1)


def check_contract(x: torch.Tensor, mask: torch.Tensor) -> None:
    """Padding exactly zero and masked, real pT > 0, phi in (-pi, pi], all finite."""
    assert torch.isfinite(x).all()
    assert (x[~mask] == 0).all()
    assert (x[..., 0][mask] > 0).all()
    assert torch.equal(x[..., 0] > 0, mask)
    phi = x[..., 2]
    assert (phi > -math.pi).all()
    assert (phi <= math.pi).all()


# ----------------------------------------------------------------------------------------------
# collinear splitting


@pytest.mark.parametrize("choice", ["leading", "random"])
def test_collinear_split_conserves_jet_four_momentum(
    events: tuple[torch.Tensor, torch.Tensor], choice: str
) -> None:
    x, mask = events
    k = 10
    y, m = collinear_split(x, mask, generator(3), max_splits=k, choice=choice)  # type: ignore[arg-type]
    check_contract(y, m)
    slots = x.shape[2]
    n_before, n_after = mask.sum(-1), m.sum(-1)
    n_split = torch.clamp(n_before, max=min(k, slots // 2))
    assert torch.equal(n_after, torch.clamp(n_before + n_split, max=slots))
    roomy = n_before + n_split <= slots  # every daughter found a free slot
    assert roomy.any()
    assert (~roomy).any()

    # Jets with room conserve pT and four-momentum; full jets lose only their softest.
    pt_before = x[..., 0].double().sum(-1)
    pt_after = y[..., 0].double().sum(-1)
    np.testing.assert_allclose(pt_after[roomy].numpy(), pt_before[roomy].numpy(), rtol=2e-6)
    assert (pt_after[~roomy] < pt_before[~roomy] * (1 + 2e-6)).all()
    p_before, p_after = four_momentum(x, mask), four_momentum(y, m)
    energy = p_before[..., 3:]
    err = np.abs(p_after - p_before)[roomy.numpy()]
    assert (err <= 2e-6 * energy[roomy.numpy()]).all()
    # daughters are collinear: every (eta, phi) after the split existed before
    for jet in range(2):
        before = {tuple(v) for v in x[0, jet][mask[0, jet], 1:].tolist()}
        assert {tuple(v) for v in y[0, jet][m[0, jet], 1:].tolist()} <= before
    # real constituents stay in front of the padding; sort_constituents restores pT order
    assert is_compact(m.float())
    z, zm = sort_constituents(y, m)
    assert torch.equal(zm, m)
    assert (z[..., 1:, 0] <= z[..., :-1, 0]).all()
    if choice == "leading":  # the k hardest were split: the leading pT dropped by a factor r
        assert (y[..., 0, 0] < x[..., 0, 0])[n_split > 0].all()


def test_collinear_split_acts_on_full_jets() -> None:
    """At 30 constituents per jet most generated jets are full; splitting must still act."""
    x, mask = toy_dijets(2000, slots=40, seed=5)
    x, mask = x[:, :, :30].contiguous(), mask[:, :, :30].contiguous()  # keep the 30 hardest
    full = mask.all(-1)
    assert full.float().mean() > 0.3
    for choice in ("leading", "random"):
        y, m = collinear_split(x, mask, generator(1), max_splits=10, choice=choice)  # type: ignore[arg-type]
        changed = (y != x).flatten(start_dim=2).any(-1)  # (B, 2) per jet
        assert changed.float().mean() >= 0.9
        assert changed[full].all()
        assert torch.equal(m[full], mask[full])  # still full: the softest made room


def test_collinear_split_limits() -> None:
    x, mask = toy_dijets(200, slots=40, seed=4)
    y, m = collinear_split(x, mask, generator(0), max_splits=0)
    assert torch.equal(y, x)
    assert torch.equal(m, mask)
    y, m = collinear_split(x, mask, generator(0), max_splits=100)
    n = mask.sum(-1)
    assert torch.equal(m.sum(-1), torch.clamp(n + torch.clamp(n, max=20), max=40))


# ----------------------------------------------------------------------------------------------
# rotation and event-wide shifts


def test_rotation_preserves_pt_and_distances_to_axis(
    events: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, mask = events
    y, m = rotate(x, mask, generator(5))
    check_contract(y, m)
    assert torch.equal(m, mask)
    assert torch.equal(y[..., 0], x[..., 0])  # every constituent's pT, hence the jet's pT sum

    def offsets(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        eta_axis, phi_axis = jet_axis(z, mask)
        d_eta = z[..., 1] - eta_axis[..., None]
        d_phi = wrap_phi(z[..., 2] - phi_axis[..., None])
        return eta_axis, phi_axis, torch.where(mask, torch.hypot(d_eta, d_phi), 0.0)

    eta0, phi0, r0 = offsets(x)
    eta1, phi1, r1 = offsets(y)
    torch.testing.assert_close(r1, r0, atol=2e-5, rtol=0)
    torch.testing.assert_close(eta1, eta0, atol=2e-5, rtol=0)
    torch.testing.assert_close(wrap_phi(phi1 - phi0), torch.zeros_like(phi0), atol=2e-5, rtol=0)
    assert (r0 > 0.1).any()
    moved = torch.where(mask, (y[..., 1] - x[..., 1]).abs(), 0.0)
    assert moved.max() > 0.1  # it really rotated

    # (eta, phi) rotation is not a Lorentz transformation: the jet's vector pT moves, but only
    # at second order in the jet's angular size
    pt_jet = np.hypot(*four_momentum(x, mask)[..., :2].transpose(2, 0, 1))
    pt_rot = np.hypot(*four_momentum(y, m)[..., :2].transpose(2, 0, 1))
    change = np.abs(pt_rot / pt_jet - 1)
    assert np.median(change) < 0.005
    assert change.max() < 0.1


def test_jet_axis_across_phi_wrap() -> None:
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, :2] = torch.tensor([[100.0, 0.5, 3.1], [100.0, 0.3, -3.1]])
    x[0, 1, :1] = torch.tensor([[50.0, -1.0, 0.2]])
    mask = x[..., 0] > 0
    eta_axis, phi_axis = jet_axis(x, mask)
    torch.testing.assert_close(eta_axis, torch.tensor([[0.4, -1.0]]))
    assert abs(abs(phi_axis[0, 0].item()) - math.pi) < 1e-5  # not 0: the wrap is handled
    assert phi_axis[0, 1].item() == pytest.approx(0.2)


def test_shifts_preserve_masses_per_event(events: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, mask = events
    mj0, mjj0 = masses(x, mask)
    for name, step in (
        ("eta", lambda: eta_shift(x, mask, generator(6), max_shift=2.0)),
        ("phi", lambda: phi_shift(x, mask, generator(7))),
    ):
        y, m = step()
        check_contract(y, m)
        assert torch.equal(y[..., 0], x[..., 0]), name
        mj1, mjj1 = masses(y, m)
        np.testing.assert_allclose(mjj1, mjj0, rtol=1e-4, err_msg=name)  # a boost / rotation
        np.testing.assert_allclose(mj1, mj0, rtol=1e-3, err_msg=name)
    y, _ = eta_shift(x, mask, generator(6), max_shift=2.0)
    shift = torch.where(mask, y[..., 1] - x[..., 1], torch.nan)
    first = shift[:, 0, 0]
    torch.testing.assert_close(shift[mask], first[:, None, None].expand_as(shift)[mask])
    assert first.abs().max() <= 2.0
    assert first.std() > 0.8  # U(-2, 2) has std 1.15
    y, _ = phi_shift(x, mask, generator(7))
    turn = wrap_phi(y[..., 2] - x[..., 2])
    first = turn[:, 0, 0]
    spread = wrap_phi(turn - first[:, None, None])[mask]  # one rotation per event
    torch.testing.assert_close(spread, torch.zeros_like(spread), atol=2e-6, rtol=0)
    assert first.std() > 1.5  # U(-pi, pi] has std 1.81


def test_mass_distributions_compatible_after_symmetries(
    events: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, mask = events
    config = AugmentConfig(pipeline=["rotate", "eta_shift", "phi_shift"])
    y, m = Augmenter(config)(x, mask, generator(8))
    check_contract(y, m)
    mj0, mjj0 = masses(x, mask)
    mj1, mjj1 = masses(y, m)
    assert 50 < np.median(mj0) < 400  # realistic multi-prong TeV jets
    assert ks_2samp(mj0.ravel(), mj1.ravel(), method="asymp").pvalue > 0.01
    assert ks_2samp(mjj0, mjj1, method="asymp").pvalue > 0.01

    # the test has power: stretching every jet by 10% about its axis is detected
    eta_axis, phi_axis = jet_axis(x, mask)
    stretched = x.clone()
    stretched[..., 1] = eta_axis[..., None] + 1.1 * (x[..., 1] - eta_axis[..., None])
    stretched[..., 2] = phi_axis[..., None] + 1.1 * wrap_phi(x[..., 2] - phi_axis[..., None])
    mj2, _ = masses(stretched, mask)
    assert ks_2samp(mj0.ravel(), mj2.ravel(), method="asymp").pvalue < 0.01


# ----------------------------------------------------------------------------------------------
# distortion


def test_distortion_width_scales_as_inverse_pt() -> None:
    events, strength, pt_min = 20_000, 0.1, 1.0
    x = torch.zeros(events, 2, 5, 3)
    x[..., :4, 0] = torch.tensor([20.0, 2.0, 0.5, 0.2])
    x[..., :4, 1] = 1.3
    x[..., :4, 2] = 3.1  # near the wrap
    mask = x[..., 0] > 0
    y, m = distort(x, mask, generator(9), strength=strength, pt_min=pt_min)
    check_contract(y, m)
    d_eta = (y[..., 1] - x[..., 1]).flatten(0, 1)
    d_phi = wrap_phi(y[..., 2] - x[..., 2]).flatten(0, 1)
    for d in (d_eta, d_phi):
        std = d.std(dim=0)
        assert std[0].item() == pytest.approx(strength / 20.0, rel=0.03)
        assert std[1].item() == pytest.approx(strength / 2.0, rel=0.03)
        assert (std[1] / std[0]).item() == pytest.approx(10.0, rel=0.05)
        # below pt_min the width stops growing: sigma = strength / pt_min
        assert std[2].item() == pytest.approx(strength / pt_min, rel=0.03)
        assert std[3].item() == pytest.approx(strength / pt_min, rel=0.03)
        assert d.mean(dim=0)[:4].abs().max() < 3e-3
    assert torch.equal(y[..., 0], x[..., 0])


# ----------------------------------------------------------------------------------------------
# contract of every augmentation


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_padding_and_phi_range_after_every_augmentation(name: str) -> None:
    x, mask = toy_dijets(500, slots=40, seed=10)
    x[:5, 1] = 0.0  # a few events with an empty second jet
    mask[:5, 1] = False
    config = AugmentConfig(
        pipeline=[name],
        eta_shift_max=3.0,
        translate_width=2.0,
        distort_strength=5.0,
        drop_probability=0.5,
        mask_probability=0.5,
        pt_smear=0.5,
    )
    x_before, mask_before = x.clone(), mask.clone()
    y, m = Augmenter(config)(x, mask, generator(11))
    assert torch.equal(x, x_before)  # inputs are never modified (the anchor view relies on it)
    assert torch.equal(mask, mask_before)
    y1, m1 = get_augmentation(name)(x[:1, :1, :1], mask[:1, :1, :1], generator(0))
    assert torch.equal(x, x_before)
    assert y1.shape == (1, 1, 1, 3)
    assert m1.shape == (1, 1, 1)
    assert y.shape == x.shape
    assert m.shape == mask.shape
    assert y.dtype == x.dtype
    check_contract(y, m)
    assert (m.sum(-1) >= (mask.sum(-1) > 0).long()).all()  # no non-empty jet is emptied
    assert not m[:5, 1].any()  # and no empty jet gains constituents


@pytest.mark.parametrize("fn", [drop, mask_objects])
def test_drop_and_mask_keep_the_leading_constituent(fn: Any) -> None:
    x, mask = toy_dijets(300, seed=12)
    y, m = fn(x, mask, generator(13), probability=1.0)
    check_contract(y, m)
    assert torch.equal(m.sum(-1), torch.ones_like(m.sum(-1)))
    lead = x[..., 0].amax(-1)
    torch.testing.assert_close(y[..., 0].amax(-1), lead, atol=0, rtol=0)
    y, m = fn(x, mask, generator(13), probability=0.0)
    assert torch.equal(m, mask)
    assert torch.equal(y, x)
    y, m = fn(x, mask, generator(13), probability=0.3)
    frac = 1 - m.sum() / mask.sum()
    assert 0.25 < frac.item() < 0.32
    if fn is drop:  # survivors move to the front, in their order
        assert is_compact(m.float())
        assert (y[..., 1:, 0] <= y[..., :-1, 0]).all()
    else:  # objects stay in their slots
        assert torch.equal(y[m], x[m])


def test_wrap_phi_edges() -> None:
    for dtype in (torch.float32, torch.float64):
        pi = torch.tensor(math.pi, dtype=dtype)
        phi = torch.tensor(
            [0.0, 1.0, -1.0, math.pi, -math.pi, 3 * math.pi, -3 * math.pi, 7.0, -7.0, 100.0],
            dtype=dtype,
        )
        phi = torch.cat([phi, pi.unsqueeze(0), -pi.unsqueeze(0), torch.linspace(-50, 50, 10001)])
        wrapped = wrap_phi(phi.to(dtype))
        assert (wrapped > -pi).all()
        assert (wrapped <= pi).all()
        turns = (phi.double() - wrapped.double()) / (2 * math.pi)
        torch.testing.assert_close(turns, turns.round(), atol=1e-5, rtol=0)
        assert wrap_phi(torch.zeros(3, dtype=dtype)).eq(0).all()
        assert wrap_phi(pi.unsqueeze(0)).item() == pi.item()


# ----------------------------------------------------------------------------------------------
# reproducibility, views, registry


def full_config(**kwargs: Any) -> AugmentConfig:
    return AugmentConfig(pipeline=list(get_args(AugmentationName)), **kwargs)


def test_same_seed_same_output_different_seed_differs() -> None:
    x, mask = toy_dijets(256, seed=14)
    augmenter = Augmenter(full_config())
    a = augmenter(x, mask, generator(42))
    b = augmenter(x, mask, generator(42))
    c = augmenter(x, mask, generator(43))
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_reproducible_and_contract() -> None:
    x, mask = toy_dijets(256, seed=15)
    x, mask = x.cuda(), mask.cuda()
    augmenter = Augmenter(full_config())
    a = augmenter(x, mask, generator(42, "cuda"))
    b = augmenter(x, mask, generator(42, "cuda"))
    c = augmenter(x, mask, generator(43, "cuda"))
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], c[0])
    check_contract(a[0].cpu(), a[1].cpu())
    features = normalize(*a)
    assert features.device.type == "cuda"


def test_pipeline_equals_sequential_public_functions() -> None:
    x, mask = toy_dijets(128, seed=21)
    config = full_config()
    a = Augmenter(config)(x, mask, generator(5))
    g = generator(5)
    y, m = x, mask
    for name in config.pipeline:
        y, m = Augmenter(AugmentConfig(pipeline=[name]))(y, m, g)
    torch.testing.assert_close(a[0], y, atol=1e-6, rtol=0)
    assert torch.equal(a[1], m)
    g = generator(5)
    y, m = rotate(x, mask, g)
    y, m = distort(y, m, g, strength=config.distort_strength, pt_min=config.distort_pt_min)
    y, m = collinear_split(y, m, g, max_splits=config.split_max)
    b = Augmenter(AugmentConfig(pipeline=["rotate", "distort", "collinear_split"]))(
        x, mask, generator(5)
    )
    torch.testing.assert_close(b[0], y, atol=1e-6, rtol=0)
    assert set(PLANES_FUNCTIONS) == set(AUGMENTATIONS)


def test_make_views_anchor_and_both() -> None:
    x, mask = toy_dijets(64, seed=16)
    (x1, m1), (x2, m2) = make_views(x, mask, AugmentConfig(views="anchor"), generator(1))
    assert x1 is x
    assert m1 is mask
    assert not torch.equal(x2, x)
    check_contract(x2, m2)
    (x1, m1), (x2, m2) = make_views(x, mask, AugmentConfig(views="both"), generator(1))
    check_contract(x1, m1)
    assert not torch.equal(x1, x)
    assert not torch.equal(x2, x)
    assert not torch.equal(x1, x2)  # independent draws
    # with the same seed, 'both' view 1 is what 'anchor' view 2 was (first draws)
    (_, _), (xa, _) = make_views(x, mask, AugmentConfig(views="anchor"), generator(1))
    (xb, _), (_, _) = make_views(x, mask, Augmenter(AugmentConfig(views="both")), generator(1))
    assert torch.equal(xa, xb)


def test_registry_names_and_unknown_name() -> None:
    assert set(AUGMENTATIONS) == set(get_args(AugmentationName))
    with pytest.raises(ValueError, match="unknown augmentation 'flip'; allowed: rotate, distort"):
        get_augmentation("flip")
    bad = AugmentConfig.model_construct(pipeline=["rotate", "flip"])
    with pytest.raises(ValueError, match="collinear_split"):
        Augmenter(bad)
    x, mask = toy_dijets(4)
    y, m = Augmenter(AugmentConfig(pipeline=[]))(x, mask, generator(0))
    assert y is x
    assert m is mask


# ----------------------------------------------------------------------------------------------
# normalisation


def test_normalisation_uses_no_batch_statistics() -> None:
    x, mask = toy_dijets(200, seed=17)
    features = normalize(x, mask)
    assert features.shape == (*mask.shape, NUM_FEATURES)
    assert torch.isfinite(features).all()
    assert (features[~mask] == 0).all()
    one_by_one = torch.cat([normalize(x[i : i + 1], mask[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(features, one_by_one, atol=1e-6, rtol=0)
    # a batch of very different events does not change an event's features
    mixed = torch.cat([x[:1], 100 * x[1:]])
    torch.testing.assert_close(normalize(mixed, mask)[:1], features[:1], atol=1e-6, rtol=0)
    assert features[mask].abs().max() < 6  # the fixed constants keep features O(1)


def test_normalised_features_are_phi_invariant() -> None:
    x, mask = toy_dijets(200, seed=18)
    y, m = phi_shift(x, mask, generator(19))
    torch.testing.assert_close(normalize(y, m), normalize(x, mask), atol=1e-4, rtol=0)
    y, m = eta_shift(x, mask, generator(20))
    changed = (normalize(y, m) - normalize(x, mask)).abs().amax(dim=(0, 1, 2))
    assert (changed[:5] < 1e-4).all()  # only the jet's own eta feature moves
    assert changed[5] > 0.1


# ----------------------------------------------------------------------------------------------
# measured effects


def test_effects_measure_each_augmentation_and_match_the_declared_invariances() -> None:
    from distributed_clr.augment import Normalizer, effects
    from distributed_clr.augment.normalize import FEATURES, INVARIANT

    x, mask = toy_dijets(256, slots=40, seed=5)
    names = list(get_args(AugmentationName))
    config = AugmentConfig(pipeline=names, eta_shift_max=1.0)
    for frame in FEATURES:
        measured = effects(
            Augmenter(config), Normalizer(frame=frame), x, mask, torch.Generator().manual_seed(1)
        )
        assert [e.name for e in measured] == names
        for effect in measured:
            assert effect.events_changed > 0.95, effect.describe()  # every one acts
            # what the encoder sees changes unless the frame is invariant by construction
            if effect.name in INVARIANT[frame]:
                assert effect.invariant, effect.describe()
                assert effect.features_changed == 0.0, effect.describe()
            else:
                assert not effect.invariant, effect.describe()
                assert effect.features_changed > 0.95, effect.describe()
    # a no-op is visible: a zero-width shift and smear change nothing
    idle = AugmentConfig(pipeline=["eta_shift", "pt_smear"], eta_shift_max=0.0, pt_smear=0.0)
    for effect in effects(Augmenter(idle), Normalizer(), x, mask, torch.Generator().manual_seed(1)):
        assert effect.events_changed == 0.0
        assert effect.features_changed == 0.0
