"""Encoders: permutation and padding invariance, IR safety, representation choice."""

from __future__ import annotations

import pytest
import torch

from distributed_clr.config import ModelConfig
from distributed_clr.models import (
    ContrastiveModel,
    MLPEncoder,
    ReferenceEncoder,
    TransformerEncoder,
)
from distributed_clr.storage.formats import dijet_layout


def _event(b: int = 4, n: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (B, 2, N, 3) as (pT, eta, phi), mask): jets with 5..N real constituents, hardest first."""
    g = torch.Generator().manual_seed(seed)
    pt = torch.rand(b, 2, n, generator=g) * 100 + 1
    pt, _ = pt.sort(dim=-1, descending=True)
    counts = torch.randint(5, n + 1, (b, 2), generator=g)
    mask = torch.arange(n).expand(b, 2, n) < counts.unsqueeze(-1)
    x = torch.stack([pt, torch.randn(b, 2, n, generator=g), torch.randn(b, 2, n, generator=g)], -1)
    return x * mask.unsqueeze(-1), mask


def _features(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.log1p(x[..., 0]), x[..., 1], x[..., 2]], -1) * mask.unsqueeze(-1)


def _transformer(pooling: str = "pt_weighted") -> TransformerEncoder:
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=16, heads=4, depth=2, dropout=0.0, pooling=pooling)
    return TransformerEncoder(config, in_features=3).eval()


@pytest.mark.parametrize("pooling", ["pt_weighted", "mean", "cls"])
def test_transformer_is_permutation_invariant(pooling: str) -> None:
    encoder = _transformer(pooling)
    x, mask = _event()
    perm = torch.randperm(x.shape[2], generator=torch.Generator().manual_seed(1))
    xp, mp = x[:, :, perm], mask[:, :, perm]
    a = encoder(_features(x, mask), mask, x[..., 0])
    b = encoder(_features(xp, mp), mp, xp[..., 0])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["pt_weighted", "mean", "cls"])
def test_transformer_ignores_extra_padding(pooling: str) -> None:
    encoder = _transformer(pooling)
    x, mask = _event()
    pad = torch.zeros(x.shape[0], 2, 7, 3)
    xp = torch.cat([x, pad], dim=2)
    mp = torch.cat([mask, torch.zeros(x.shape[0], 2, 7, dtype=torch.bool)], dim=2)
    a = encoder(_features(x, mask), mask, x[..., 0])
    b = encoder(_features(xp, mp), mp, xp[..., 0])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_pt_weighted_pooling_is_ir_safe() -> None:
    encoder = _transformer("pt_weighted")
    x, mask = _event(b=1, n=10)
    mask[0, :, -1] = False  # a free slot in each jet
    x = x * mask.unsqueeze(-1)
    base = encoder(_features(x, mask), mask, x[..., 0])

    def with_extra(pt: float) -> torch.Tensor:
        xs, ms = x.clone(), mask.clone()
        xs[0, 0, -1] = torch.tensor([pt, 0.3, -0.2])
        ms[0, 0, -1] = pt > 0
        return encoder(_features(xs, ms), ms, xs[..., 0])

    torch.testing.assert_close(with_extra(0.0), base, rtol=0, atol=0)  # zero pT is padding
    soft = (with_extra(1e-4) - base).abs().max()
    softer = (with_extra(1e-7) - base).abs().max()
    hard = (with_extra(50.0) - base).abs().max()
    assert soft < 1e-3 * hard
    assert softer < soft  # the change vanishes in the soft limit


def test_plain_attention_is_not_ir_safe() -> None:
    """The reason for pT-weighted attention: without it a soft particle moves the output."""
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=16, heads=4, depth=2, dropout=0.0, pooling="pt_weighted")
    encoder = TransformerEncoder(config, in_features=3, ir_safe_attention=False).eval()
    x, mask = _event(b=1, n=10)
    mask[0, :, -1] = False
    x = x * mask.unsqueeze(-1)
    xs, ms = x.clone(), mask.clone()
    xs[0, 0, -1] = torch.tensor([1e-7, 0.3, -0.2])
    ms[0, 0, -1] = True
    delta = encoder(_features(xs, ms), ms, xs[..., 0]) - encoder(
        _features(x, mask), mask, x[..., 0]
    )
    assert delta.abs().max() > 1e-4


def test_mlp_encoder_zeroes_padding_and_checks_size() -> None:
    config = ModelConfig(name="mlp", latent_dim=8, mlp_hidden=[32], dropout=0.0)
    encoder = MLPEncoder(config, in_features=3, slots=20).eval()
    x, mask = _event(n=10)
    garbage = x + 5.0 * (~mask).unsqueeze(-1)  # junk in padded slots must not matter
    torch.testing.assert_close(encoder(x, mask), encoder(garbage, mask))
    with pytest.raises(ValueError, match="20 slots"):
        encoder(x[:, :, :5], mask[:, :, :5])


class _LogFeatures:
    num_features = 3
    invariances: frozenset[str] = frozenset()

    def __call__(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _features(x, mask)


@pytest.mark.parametrize(("representation", "dim"), [("encoder", 16), ("head1", 24), ("head", 16)])
def test_representation_choice(representation: str, dim: int) -> None:
    config = ModelConfig(latent_dim=16, head_dim=24, heads=4, representation=representation)
    model = ContrastiveModel(config, _LogFeatures(), dijet_layout(10)).eval()
    x, mask = _event()
    assert model.represent(x, mask).shape == (4, dim)
    assert model(x, mask).shape == (4, 16)
    loss = model(x, mask).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_model_with_the_package_normalizer_and_augmented_views() -> None:
    """The pieces of one training step fit together: views -> normalise -> encode -> loss."""
    from distributed_clr.augment import make_views
    from distributed_clr.augment.normalize import Normalizer
    from distributed_clr.config import AugmentConfig
    from distributed_clr.losses import NTXentLoss

    config = ModelConfig(latent_dim=16, heads=4, dropout=0.0)
    model = ContrastiveModel(config, Normalizer(), dijet_layout(10))
    x, mask = _event(b=8, n=10)
    (x1, m1), (x2, m2) = make_views(x, mask, AugmentConfig(), torch.Generator().manual_seed(0))
    loss = NTXentLoss(temperature=0.2)(model(x1, m1), model(x2, m2))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _reference() -> ReferenceEncoder:
    torch.manual_seed(0)
    config = ModelConfig(name="reference", latent_dim=16, heads=4, depth=2, dropout=0.0)
    return ReferenceEncoder(config, in_features=3).eval()


def test_reference_encoder_is_permutation_and_padding_invariant() -> None:
    encoder = _reference()
    x, mask = _event()
    base = encoder(_features(x, mask), mask, x[..., 0])
    perm = torch.randperm(x.shape[2], generator=torch.Generator().manual_seed(1))
    xp, mp = x[:, :, perm], mask[:, :, perm]
    torch.testing.assert_close(encoder(_features(xp, mp), mp, xp[..., 0]), base)
    xp = torch.cat([x, torch.zeros(x.shape[0], 2, 7, 3)], dim=2)
    mp = torch.cat([mask, torch.zeros(x.shape[0], 2, 7, dtype=torch.bool)], dim=2)
    torch.testing.assert_close(encoder(_features(xp, mp), mp, xp[..., 0]), base)


def test_reference_encoder_soft_mask_and_sum_pooling() -> None:
    """The paper's soft mask: attention to a key falls with exp(-1 / pT_rescaled), so a soft
    constituent barely moves the others; its own pooled term is weighted by its pT."""
    encoder = _reference()
    x, mask = _event(b=1, n=10)
    mask[0, :, -1] = False
    x = x * mask.unsqueeze(-1)
    base = encoder(_features(x, mask), mask, x[..., 0])

    def with_extra(pt: float) -> torch.Tensor:
        xs, ms = x.clone(), mask.clone()
        xs[0, 0, -1] = torch.tensor([pt, 0.3, -0.2])
        ms[0, 0, -1] = True
        return encoder(_features(xs, ms), ms, xs[..., 0])

    soft = (with_extra(1e-3) - base).abs().max()
    hard = (with_extra(80.0) - base).abs().max()
    assert soft < 1e-4 * hard
    # Sum pooling, not a weighted mean: doubling every pT doubles the weights of the sum.
    doubled = x.clone()
    doubled[..., 0] *= 2
    assert not torch.allclose(encoder(_features(x, mask), mask, doubled[..., 0]), base)


def test_reference_model_with_paper_inputs() -> None:
    """The 'paper' inputs: pT / scale, eta, phi from the first jet's axis; a common phi
    rotation of the event changes nothing."""
    from distributed_clr.augment.normalize import Normalizer

    x, mask = _event(b=3, n=12)
    features = Normalizer(frame="paper", pt_scale=100.0)(x, mask)
    torch.testing.assert_close(features[..., 0], x[..., 0] / 100.0)
    torch.testing.assert_close(features[..., 1], x[..., 1])
    turned = x.clone()
    turned[..., 2] = torch.remainder(x[..., 2] + 1.0 + torch.pi, 2 * torch.pi) - torch.pi
    turned = turned * mask.unsqueeze(-1)
    torch.testing.assert_close(Normalizer(frame="paper")(turned, mask), features, atol=1e-5, rtol=0)

    from distributed_clr.models import build_model

    config = ModelConfig(name="reference", inputs="paper", latent_dim=16, heads=4, dropout=0.0)
    model = build_model(config, 12).eval()
    assert isinstance(model.encoder, ReferenceEncoder)
    assert model.represent(x, mask).shape == (3, 16)


def test_reference_encoder_inference_matches_training_mode() -> None:
    """Under no_grad in eval mode PyTorch takes a fused path that returned NaN for the
    per-event soft mask; the encoder must give the same finite output in both modes."""
    encoder = _reference()  # dropout 0
    x, mask = _event(b=6, n=12)
    encoder.train()
    trained_mode = encoder(_features(x, mask), mask, x[..., 0])
    encoder.eval()
    with torch.no_grad():
        inference = encoder(_features(x, mask), mask, x[..., 0])
    assert torch.isfinite(inference).all()
    torch.testing.assert_close(inference, trained_mode)
    assert torch.backends.mha.get_fastpath_enabled()  # the global switch is restored


def _recording_sdpa(
    monkeypatch: pytest.MonkeyPatch, as_float: bool = False
) -> list[tuple[torch.dtype, torch.dtype]]:
    """Record (query dtype, mask dtype) of each attention call; with ``as_float``, hand the
    kernel the additive form (0 / -inf) of any boolean mask instead."""
    from distributed_clr.models import transformer

    calls: list[tuple[torch.dtype, torch.dtype]] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: object) -> torch.Tensor:
        mask = kwargs["attn_mask"]
        assert isinstance(mask, torch.Tensor)
        calls.append((q.dtype, mask.dtype))
        if as_float and mask.dtype == torch.bool:
            kwargs["attn_mask"] = torch.zeros(mask.shape, dtype=q.dtype).masked_fill(
                ~mask, -torch.inf
            )
        return original(q, k, v, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", sdpa)
    return calls


@pytest.mark.parametrize("pooling", ["pt_weighted", "mean", "cls"])
def test_boolean_attention_mask_equals_the_additive_one(
    pooling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without IR-safe weighting the encoder hands attention a boolean mask (the fused
    kernels' form); the output is that of the additive 0 / -inf mask, empty events included."""
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=16, heads=4, depth=2, dropout=0.0, pooling=pooling)
    encoder = TransformerEncoder(config, in_features=3, ir_safe_attention=False).eval()
    x, mask = _event(b=5)
    mask[2] = False  # an event without constituents
    x = x * mask.unsqueeze(-1)
    calls = _recording_sdpa(monkeypatch)
    boolean = encoder(_features(x, mask), mask, x[..., 0])
    assert calls
    assert {m for _, m in calls} == {torch.bool}
    monkeypatch.undo()
    _recording_sdpa(monkeypatch, as_float=True)
    additive = encoder(_features(x, mask), mask, x[..., 0])
    torch.testing.assert_close(boolean, additive, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(boolean).all()


def test_ir_safe_bias_reaches_attention_in_the_compute_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder = _transformer("pt_weighted")
    x, mask = _event(b=6)
    calls = _recording_sdpa(monkeypatch)
    full = encoder(_features(x, mask), mask, x[..., 0])
    assert set(calls) == {(torch.float32, torch.float32)}
    calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = encoder(_features(x, mask), mask, x[..., 0])
    assert set(calls) == {(torch.bfloat16, torch.bfloat16)}
    torch.testing.assert_close(half.float(), full, rtol=5e-2, atol=5e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("ir_safe", [True, False])
def test_attention_runs_in_the_memory_efficient_kernel_on_cuda(ir_safe: bool) -> None:
    """In bf16 on CUDA, forward and backward run with only the memory-efficient kernel allowed
    (SDPA raises otherwise), and agree with the unfused math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    config = ModelConfig(latent_dim=128, heads=4, depth=2, dropout=0.0, pooling="pt_weighted")
    encoder = TransformerEncoder(config, in_features=3, ir_safe_attention=ir_safe).cuda()
    x, mask = _event(b=64, n=50)
    x, mask = x.cuda(), mask.cuda()
    outputs = {}
    for backend in (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        encoder.zero_grad()
        with sdpa_kernel([backend]), torch.autocast("cuda", dtype=torch.bfloat16):
            out = encoder(_features(x, mask), mask, x[..., 0])
        out.float().square().mean().backward()
        grad = encoder.blocks[0].qkv.weight.grad
        assert grad is not None
        outputs[backend] = (out.float(), grad.clone())
    (fused, g_fused), (math_out, g_math) = outputs.values()
    torch.testing.assert_close(fused, math_out, rtol=3e-2, atol=3e-2)
    assert torch.nn.functional.cosine_similarity(g_fused.flatten(), g_math.flatten(), dim=0) > 0.99
