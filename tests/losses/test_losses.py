"""The losses and metrics: naive references, closed forms, validation, and two gloo processes."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distributed_clr.config.schema import LossConfig
from distributed_clr.losses import (
    NTXentLoss,
    SupConLoss,
    VICRegLoss,
    alignment,
    build_loss,
    uniformity,
)
from tests.multiproc import run_on_ranks

DT = torch.float64

# ------------------------------------------------------------------------------------------------
# naive references: plain loops, written from the papers' equations. `ops` is `math` (floats, for
# values) or `torch` (0-d tensors, so that autograd gives reference gradients).


def _rows(z: torch.Tensor, ops: ModuleType) -> list[list[Any]]:
    return z.tolist() if ops is math else [list(row.unbind()) for row in z]


def _cos(u: list[Any], v: list[Any], ops: ModuleType) -> Any:
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    return dot / (ops.sqrt(sum(a * a for a in u)) * ops.sqrt(sum(b * b for b in v)))


def naive_ntxent(
    z_i: torch.Tensor,
    z_j: torch.Tensor,
    temperature: float,
    positive_in_denominator: bool,
    ops: Any,
) -> Any:
    """SimCLR Eq. (1) anchor by anchor: embeddings 0..B-1 are view i, B..2B-1 view j."""
    z = _rows(z_i, ops) + _rows(z_j, ops)
    n = len(z)
    half = n // 2
    total: Any = 0.0
    for a in range(n):
        p = (a + half) % n
        denominator: Any = 0.0
        for k in range(n):
            if k == a or (k == p and not positive_in_denominator):
                continue
            denominator = denominator + ops.exp(_cos(z[a], z[k], ops) / temperature)
        total = total - ops.log(ops.exp(_cos(z[a], z[p], ops) / temperature) / denominator)
    return total / n


def naive_supcon(z: torch.Tensor, labels: list[int], temperature: float, ops: Any) -> Any:
    """Khosla et al. Eq. (2), L_out; z (B, V, D); anchors without positives are skipped."""
    B, V, _ = z.shape
    flat = _rows(z.reshape(B * V, -1), ops)
    label = [labels[idx // V] for idx in range(B * V)]
    total: Any = 0.0
    anchors = 0
    for a in range(B * V):
        positives = [p for p in range(B * V) if p != a and label[p] == label[a]]
        if not positives:
            continue
        denominator: Any = 0.0
        for k in range(B * V):
            if k != a:
                denominator = denominator + ops.exp(_cos(flat[a], flat[k], ops) / temperature)
        term: Any = 0.0
        for p in positives:
            term = term + ops.log(ops.exp(_cos(flat[a], flat[p], ops) / temperature) / denominator)
        total = total - term / len(positives)
        anchors += 1
    return total / max(anchors, 1)


def naive_vicreg_terms(z_i: torch.Tensor, z_j: torch.Tensor, gamma: float, eps: float) -> Any:
    """Bardes et al. Eqs. (1)-(5) with loops over events and dimensions (floats)."""
    a, b = z_i.tolist(), z_j.tolist()
    n, d = len(a), len(a[0])
    invariance = sum((a[e][k] - b[e][k]) ** 2 for e in range(n) for k in range(d)) / (n * d)

    def var_cov(z: list[list[float]]) -> tuple[float, float]:
        mean = [sum(z[e][k] for e in range(n)) / n for k in range(d)]
        cov = [
            [
                sum((z[e][k] - mean[k]) * (z[e][m] - mean[m]) for e in range(n)) / (n - 1)
                for m in range(d)
            ]
            for k in range(d)
        ]
        variance = sum(max(0.0, gamma - math.sqrt(cov[k][k] + eps)) for k in range(d)) / d
        covariance = sum(cov[k][m] ** 2 for k in range(d) for m in range(d) if k != m) / d
        return variance, covariance

    (v_i, c_i), (v_j, c_j) = var_cov(a), var_cov(b)
    return invariance, v_i + v_j, c_i + c_j


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


# ------------------------------------------------------------------------------------------------
# NT-Xent


@pytest.mark.parametrize("positive_in_denominator", [True, False])
@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_ntxent_matches_naive_loops(positive_in_denominator: bool, temperature: float) -> None:
    z_i, z_j = _randn(5, 3, seed=1), _randn(5, 3, seed=2)
    loss = NTXentLoss(temperature, positive_in_denominator)(z_i, z_j)
    expected = naive_ntxent(z_i, z_j, temperature, positive_in_denominator, math)
    assert loss.dtype == DT
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # float32 agrees to float32 precision
    loss32 = NTXentLoss(temperature, positive_in_denominator)(z_i.float(), z_j.float())
    assert loss32.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("positive_in_denominator", [True, False])
def test_ntxent_gradients_match_naive_autograd(positive_in_denominator: bool) -> None:
    z_i = _randn(4, 3, seed=3).requires_grad_(True)
    z_j = _randn(4, 3, seed=4).requires_grad_(True)
    loss = NTXentLoss(0.3, positive_in_denominator)(z_i, z_j)
    got = torch.autograd.grad(loss, (z_i, z_j))
    reference = naive_ntxent(z_i, z_j, 0.3, positive_in_denominator, torch)
    expected = torch.autograd.grad(reference, (z_i, z_j))
    torch.testing.assert_close(loss, reference)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
    assert torch.autograd.gradcheck(
        lambda a, b: NTXentLoss(0.3, positive_in_denominator)(a, b), (z_i, z_j)
    )


@pytest.mark.parametrize("events", [1, 2, 3, 8])
@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_ntxent_identical_embeddings_closed_form(events: int, temperature: float) -> None:
    B = events
    # Every cosine is 1, every logit 1/T: l = -1/T + log(n e^{1/T}) = log n, with n candidates in
    # the denominator: n = 2B - 1 (all but the anchor) or 2B - 2 (all but anchor and positive).
    z = torch.ones(B, 4, dtype=DT) * torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=DT)
    assert NTXentLoss(temperature, True)(z, z.clone()).item() == pytest.approx(
        math.log(2 * B - 1), abs=1e-12
    )
    if B >= 2:
        assert NTXentLoss(temperature, False)(z, z.clone()).item() == pytest.approx(
            math.log(2 * B - 2), abs=1e-12
        )


@pytest.mark.parametrize("events", [2, 4, 16, 64])
def test_ntxent_aligned_orthogonal_events_closed_form(events: int) -> None:
    B = events
    # z_i[b] = z_j[b] = e_b: the positive has cosine 1, the 2B - 2 negatives cosine 0, so
    # l = -1/T + log(e^{1/T} + 2B - 2) = log(1 + (2B - 2) e^{-1/T}), or log(2B - 2) - 1/T
    # without the positive in the denominator. Both grow like log B at fixed T.
    T = 0.2
    z = torch.eye(B, dtype=DT) * 3.0
    with_positive = NTXentLoss(T, True)(z, z.clone()).item()
    without_positive = NTXentLoss(T, False)(z, z.clone()).item()
    assert with_positive == pytest.approx(math.log1p((2 * B - 2) * math.exp(-1 / T)), rel=1e-12)
    assert without_positive == pytest.approx(math.log(2 * B - 2) - 1 / T, rel=1e-12)


def test_ntxent_invariances_and_reduction() -> None:
    z_i, z_j = _randn(6, 4, seed=5), _randn(6, 4, seed=6)
    loss = NTXentLoss(0.2)
    torch.testing.assert_close(loss(z_i, z_j), loss(z_j, z_i))  # symmetric in the views
    torch.testing.assert_close(loss(z_i, z_j), loss(3.0 * z_i, 0.1 * z_j))  # normalised inside
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss(z_i, z_j), loss(z_i[perm], z_j[perm]))  # event order
    summed = NTXentLoss(0.2, reduction="sum")(z_i, z_j)
    torch.testing.assert_close(summed, loss(z_i, z_j) * 12)
    # stable where a naive exp would overflow: T = 1e-3 gives logits up to 1000
    tiny = NTXentLoss(1e-3)(z_i.float(), z_j.float())
    assert torch.isfinite(tiny)
    assert tiny.item() == pytest.approx(naive_ntxent_logsumexp(z_i, z_j, 1e-3), rel=1e-5)


def naive_ntxent_logsumexp(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> float:
    """Loop reference with the maximum subtracted (for temperatures where exp overflows)."""
    z = F.normalize(torch.cat([z_i, z_j]), dim=1).tolist()
    n, half, total = len(z), len(z) // 2, 0.0
    for a in range(n):
        logits = [
            sum(x * y for x, y in zip(z[a], z[k], strict=True)) / temperature for k in range(n)
        ]
        others = [logits[k] for k in range(n) if k != a]
        top = max(others)
        total += top + math.log(sum(math.exp(v - top) for v in others)) - logits[(a + half) % n]
    return total / n


# ------------------------------------------------------------------------------------------------
# SupCon


@pytest.mark.parametrize(
    ("views", "labels"),
    [(1, [0, 1, 0, 2, 1, 3]), (2, [0, 1, 0, 2, 1, 3]), (3, [4, 4, 4, 1, 2, 2])],
)
def test_supcon_matches_naive_loops_and_gradients(views: int, labels: list[int]) -> None:
    z = _randn(len(labels), views, 3, seed=7).requires_grad_(True)
    target = torch.tensor(labels)
    loss = SupConLoss(0.4)(z if views > 1 else z[:, 0], target)
    assert loss.item() == pytest.approx(naive_supcon(z.detach(), labels, 0.4, math), rel=1e-12)
    reference = naive_supcon(z, labels, 0.4, torch)
    (got,) = torch.autograd.grad(loss, z)
    (expected,) = torch.autograd.grad(reference, z)
    torch.testing.assert_close(got, expected)


def test_supcon_with_distinct_labels_and_two_views_is_ntxent() -> None:
    z_i, z_j = _randn(7, 5, seed=8), _randn(7, 5, seed=9)
    supcon = SupConLoss(0.25)(torch.stack([z_i, z_j], dim=1), torch.arange(7) * 3)
    torch.testing.assert_close(supcon, NTXentLoss(0.25, positive_in_denominator=True)(z_i, z_j))


def test_supcon_closed_forms_and_no_positives() -> None:
    # One label, identical embeddings: every log-probability is -log(BV - 1), so l = log(BV - 1).
    z = torch.ones(4, 2, 3, dtype=DT)
    assert SupConLoss(0.1)(z, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(
        math.log(7), abs=1e-12
    )
    # A single view and distinct labels: no anchor has a positive -> zero, still differentiable.
    single = _randn(5, 3, seed=10).requires_grad_(True)
    loss = SupConLoss()(single, torch.arange(5))
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, single)
    assert torch.equal(grad, torch.zeros_like(single))
    assert SupConLoss(reduction="sum")(single, torch.arange(5)).item() == 0.0


# ------------------------------------------------------------------------------------------------
# VICReg


def _whitened(n: int, d: int, seed: int) -> torch.Tensor:
    """(n, d) features with zero mean and identity (unbiased) covariance."""
    x = _randn(n, d, seed=seed)
    q, _ = torch.linalg.qr(x - x.mean(dim=0))  # orthonormal columns, orthogonal to ones
    white: torch.Tensor = q * math.sqrt(n - 1)
    return white


def test_vicreg_matches_naive_loops() -> None:
    z_i, z_j = _randn(6, 4, seed=11) * 0.5, _randn(6, 4, seed=12) * 2.0
    vicreg = VICRegLoss(invariance=3.0, variance=5.0, covariance=7.0, gamma=1.2, eps=1e-3)
    terms = vicreg.terms(z_i, z_j)
    expected = naive_vicreg_terms(z_i, z_j, gamma=1.2, eps=1e-3)
    for got, want in zip(terms, expected, strict=True):
        assert got.item() == pytest.approx(want, rel=1e-12)
    assert expected[1] > 0  # every term is exercised
    assert expected[2] > 0
    total = 3.0 * expected[0] + 5.0 * expected[1] + 7.0 * expected[2]
    assert vicreg(z_i, z_j).item() == pytest.approx(total, rel=1e-12)


def test_vicreg_terms_vanish_where_they_should() -> None:
    vicreg = VICRegLoss()
    z = _randn(8, 3, seed=13)
    assert vicreg.terms(z, z.clone()).invariance.item() == 0.0  # identical views
    spread = torch.tensor([[2.0, -3.0], [-2.0, 3.0]], dtype=DT).repeat(4, 1)  # std >= 2 > gamma
    assert vicreg.terms(spread, spread).variance.item() == 0.0
    white = _whitened(10, 4, seed=14)  # decorrelated, unit variance
    terms = vicreg.terms(white, _whitened(10, 4, seed=15))
    assert terms.covariance.item() == pytest.approx(0.0, abs=1e-24)
    assert terms.variance.item() == 0.0  # sqrt(1 + eps) >= gamma = 1
    # A collapsed batch: std = sqrt(eps) in every dimension of both views.
    collapsed = torch.ones(5, 3, dtype=DT)
    assert vicreg.terms(collapsed, collapsed).variance.item() == pytest.approx(
        2 * (1 - math.sqrt(1e-4)), rel=1e-12
    )
    # Perfectly correlated dimensions: C = [[v, v], [v, v]], c = 2 v^2 / 2 per view.
    x = _randn(6, 1, seed=16)
    correlated = x.repeat(1, 2)
    variance = x.var().item()
    assert vicreg.terms(correlated, correlated).covariance.item() == pytest.approx(
        2 * variance**2, rel=1e-12
    )


# ------------------------------------------------------------------------------------------------
# alignment and uniformity


def test_alignment_known_configurations() -> None:
    z = _randn(5, 3, seed=17)
    assert alignment(z, z * 4.0).item() == pytest.approx(0.0, abs=1e-14)  # identical directions
    assert alignment(z, -z).item() == pytest.approx(4.0, rel=1e-12)  # antipodal: ||2u||^2
    assert alignment(z, -z, alpha=1).item() == pytest.approx(2.0, rel=1e-12)
    e = torch.eye(2, dtype=DT)
    assert alignment(e, e.flip(0)).item() == pytest.approx(2.0, rel=1e-12)  # orthogonal pairs


def test_uniformity_known_configurations() -> None:
    assert uniformity(torch.ones(4, 3, dtype=DT)).item() == pytest.approx(0.0, abs=1e-14)
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=DT)
    assert uniformity(antipodal).item() == pytest.approx(-8.0, rel=1e-12)  # -t * 4
    assert uniformity(antipodal, t=0.5).item() == pytest.approx(-2.0, rel=1e-12)
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=DT)
    triangle = torch.stack([angles.cos(), angles.sin()], dim=1)  # all pairs at distance^2 3
    assert uniformity(triangle).item() == pytest.approx(-6.0, rel=1e-12)
    z = _randn(9, 4, seed=18)  # the authors' one-liner
    reference = torch.pdist(F.normalize(z, dim=1), p=2).pow(2).mul(-2).exp().mean().log()
    torch.testing.assert_close(uniformity(z), reference)


# ------------------------------------------------------------------------------------------------
# validation and the factory


def test_invalid_arguments_raise_clear_errors() -> None:
    for bad in (0.0, -0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            NTXentLoss(temperature=bad)
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            SupConLoss(temperature=bad)
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        NTXentLoss(reduction="none")  # type: ignore[arg-type]
    z = torch.randn(4, 3)
    ntxent = NTXentLoss()
    with pytest.raises(ValueError, match="same shape"):
        ntxent(z, torch.randn(4, 2))
    with pytest.raises(ValueError, match="same shape"):
        ntxent(z, torch.randn(3, 3))
    with pytest.raises(ValueError, match="2-D"):
        ntxent(z[0], z[1])
    with pytest.raises(ValueError, match="2-D"):
        ntxent(z[None], z[None])
    with pytest.raises(ValueError, match="B >= 1"):
        ntxent(z[:0], z[:0])
    with pytest.raises(ValueError, match="at least 2 events"):
        NTXentLoss(positive_in_denominator=False)(z[:1], z[1:2])
    supcon = SupConLoss()
    with pytest.raises(ValueError, match=r"labels must have shape \(B,\)"):
        supcon(z, torch.arange(3))
    with pytest.raises(ValueError, match="integer"):
        supcon(z, torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(B, V, D\) or \(B, D\)"):
        supcon(z[0], torch.arange(4))
    with pytest.raises(ValueError, match="at least 2 events"):
        VICRegLoss()(z[:1], z[:1])
    with pytest.raises(ValueError, match="same shape"):
        VICRegLoss()(z, z[:, :2])
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        VICRegLoss(gamma=0.0)
    with pytest.raises(ValueError, match="covariance must be a finite number >= 0"):
        VICRegLoss(covariance=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        alignment(z, z, alpha=0)
    with pytest.raises(ValueError, match="N >= 2"):
        uniformity(z[:1])


def test_build_loss_maps_config_to_module() -> None:
    ntxent = build_loss(
        LossConfig(
            name="ntxent", temperature=0.5, positive_in_denominator=False, gather_distributed=False
        )
    )
    assert isinstance(ntxent, NTXentLoss)
    assert (ntxent.temperature, ntxent.positive_in_denominator) == (0.5, False)
    assert not ntxent.gather_distributed
    supcon = build_loss(LossConfig(name="supcon", temperature=0.2))
    assert isinstance(supcon, SupConLoss)
    assert (supcon.temperature, supcon.gather_distributed) == (0.2, True)
    vicreg = build_loss(
        LossConfig(name="vicreg", vicreg_invariance=1.0, vicreg_variance=2.0, vicreg_covariance=3.0)
    )
    assert isinstance(vicreg, VICRegLoss)
    assert (vicreg.invariance, vicreg.variance, vicreg.covariance) == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="unknown loss 'barlow'"):
        build_loss(LossConfig.model_construct(name="barlow"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# two real gloo processes against one process on the concatenated batch
#
# Each case runs a small linear model shared by both ranks (same seed), wrapped in
# DistributedDataParallel, on each rank's own events; the reference runs the same model in one
# process on the concatenation (rank 0's events first). What is compared:
#   * reduction='mean' with EQUAL local batches: mean over ranks of the rank losses == reference
#     loss, and the DDP (averaged) gradients == reference gradients;
#   * reduction='sum' with UNEQUAL local batches (3 and 5 events): each rank's per-anchor mean
#     would weigh a short rank's anchors more, so compare sums instead: the sum over ranks of the
#     rank losses == the reference sum over all anchors, and world * DDP gradient (DDP divides
#     the summed gradient by the world size) == the reference gradient;
#   * VICReg with unequal batches: every rank returns the global loss itself, and the DDP
#     gradient equals the reference gradient;
#   * gather_distributed=False: each rank's loss is the single-process loss of its local batch.

FEATURES, EMBEDDING, VIEWS = 4, 3, 2
CASES: dict[str, tuple[str, tuple[int, int], dict[str, Any]]] = {
    "ntxent_mean": ("ntxent", (4, 4), {"temperature": 0.3}),
    "ntxent_mean_no_positive": (
        "ntxent",
        (4, 4),
        {"temperature": 0.3, "positive_in_denominator": False},
    ),
    "ntxent_sum_unequal": ("ntxent", (3, 5), {"temperature": 0.3, "reduction": "sum"}),
    "ntxent_sum_unequal_no_positive": (
        "ntxent",
        (3, 5),
        {"temperature": 0.5, "positive_in_denominator": False, "reduction": "sum"},
    ),
    "ntxent_local": ("ntxent", (4, 4), {"gather_distributed": False}),
    "supcon_mean": ("supcon", (4, 4), {"temperature": 0.3}),
    "supcon_sum_unequal": ("supcon", (3, 5), {"temperature": 0.3, "reduction": "sum"}),
    "supcon_single_view_sum_unequal": ("supcon1", (3, 5), {"reduction": "sum"}),
    "vicreg_unequal": ("vicreg", (3, 5), {}),
}


def _model() -> nn.Linear:
    torch.manual_seed(1234)
    return nn.Linear(FEATURES, EMBEDDING, dtype=DT)


def _events(rank: int, sizes: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(500 + rank)
    x = torch.randn(sizes[rank], VIEWS, FEATURES, generator=gen, dtype=DT)
    labels = torch.randint(0, 3, (sizes[rank],), generator=gen)
    return x, labels


def _case_loss(
    kind: str, options: dict[str, Any], model: nn.Module, x: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    z: torch.Tensor = model(x)  # (B, V, E)
    loss: torch.Tensor
    if kind == "ntxent":
        loss = NTXentLoss(**options)(z[:, 0], z[:, 1])
    elif kind == "supcon":
        loss = SupConLoss(**options)(z, labels)
    elif kind == "supcon1":
        loss = SupConLoss(**options)(z[:, 0], labels)
    else:
        loss = VICRegLoss(**options)(z[:, 0], z[:, 1])
    return loss


def _ddp_worker(rank: int, world: int) -> dict[str, tuple[torch.Tensor, list[torch.Tensor]]]:
    results = {}
    for name, (kind, sizes, options) in CASES.items():
        model = nn.parallel.DistributedDataParallel(_model())
        x, labels = _events(rank, sizes)
        loss = _case_loss(kind, options, model, x, labels)
        loss.backward()  # type: ignore[no-untyped-call]
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        assert len(grads) == 2  # weight and bias
        results[name] = (loss.detach(), grads)
    return results


def _reference(name: str, ranks: range) -> tuple[torch.Tensor, list[torch.Tensor]]:
    kind, sizes, options = CASES[name]
    batches = [_events(r, sizes) for r in ranks]
    x, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    model = _model()
    loss = _case_loss(kind, options, model, x, labels)
    return loss.detach(), list(torch.autograd.grad(loss, list(model.parameters())))


@pytest.fixture(scope="module")
def two_ranks() -> list[dict[str, tuple[torch.Tensor, list[torch.Tensor]]]]:
    return run_on_ranks(_ddp_worker, 2)  # one spawn for every case: keeps the suite fast


@pytest.mark.parametrize("name", ["ntxent_mean", "ntxent_mean_no_positive", "supcon_mean"])
def test_ddp_mean_loss_and_gradients_equal_single_process(
    two_ranks: list[dict[str, Any]], name: str
) -> None:
    losses = [r[name][0] for r in two_ranks]
    assert not torch.allclose(losses[0], losses[1])  # the ranks do compute different things
    loss, grads = _reference(name, range(2))
    torch.testing.assert_close(sum(losses) / 2, loss)
    for r in two_ranks:
        for got, want in zip(r[name][1], grads, strict=True):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    "name",
    [
        "ntxent_sum_unequal",
        "ntxent_sum_unequal_no_positive",
        "supcon_sum_unequal",
        "supcon_single_view_sum_unequal",
    ],
)
def test_ddp_summed_loss_and_gradients_equal_single_process_with_unequal_batches(
    two_ranks: list[dict[str, Any]], name: str
) -> None:
    loss, grads = _reference(name, range(2))
    torch.testing.assert_close(two_ranks[0][name][0] + two_ranks[1][name][0], loss)
    for r in two_ranks:
        for got, want in zip(r[name][1], grads, strict=True):
            torch.testing.assert_close(got * 2, want)


def test_ddp_vicreg_is_the_global_loss_on_every_rank(two_ranks: list[dict[str, Any]]) -> None:
    loss, grads = _reference("vicreg_unequal", range(2))
    for r in two_ranks:
        torch.testing.assert_close(r["vicreg_unequal"][0], loss)
        for got, want in zip(r["vicreg_unequal"][1], grads, strict=True):
            torch.testing.assert_close(got, want)


def test_ddp_without_gathering_uses_the_local_batch(two_ranks: list[dict[str, Any]]) -> None:
    for rank, r in enumerate(two_ranks):
        loss, _ = _reference("ntxent_local", range(rank, rank + 1))
        torch.testing.assert_close(r["ntxent_local"][0], loss)
