"""Encoder input features from (x, mask), normalised with FIXED constants.

No statistic is ever taken over a batch: every feature of an event depends on that event alone,
so training, evaluation, any batch size and any sharding give the same inputs. The constants
were chosen from the dijet selection of ``PrepareConfig`` (anti-kT R = 0.8 jets with
800 < pT < 3000 GeV, |eta| < 3, constituents from ~0.5 GeV up to ~1 TeV) so that every feature
lies roughly within [-2, 2]:

==================  ===========================================  ========  =======
feature             definition                                   shift     scale
==================  ===========================================  ========  =======
``log_pt``          log(pT / GeV)                                1.5       2.0
``log_pt_frac``     log(pT / pT_jet)                             -4.0      2.0
``d_eta``           eta - eta_axis                               0         0.8 (R)
``d_phi``           wrap(phi - phi_axis)                         0         0.8 (R)
``log_jet_pt``      log(pT_jet / GeV), the jet's own             7.0       0.5
``jet_eta``         eta_axis, the jet's own                      0         1.5
==================  ===========================================  ========  =======

Each feature is (value - shift) / scale. pT_jet is the transverse momentum of the jet's
four-momentum (vector sum of its massless constituents); the axis is the pT-weighted (eta, phi)
centroid of ``geometry.jet_frame``. The jet's absolute phi is left out: it carries no physics
(the event-wide phi shift makes it arbitrary). Padding slots get all-zero features.

**Two input frames** (``model.inputs``):

* ``absolute`` (the table above): the jets' own pT and eta are inputs, so m_jj (about
  2 pT cosh(d_eta_jj / 2)) can be rebuilt from the representation. Fine for classification,
  wrong for a bump hunt in m_jj.
* ``jet_frame``: only what does not fix the jets' momenta: per constituent ``log_pt_frac``,
  ``d_eta`` and ``d_phi`` in its jet's frame, and per jet ``d_phi_jj``, the azimuth to the
  other jet, wrapped and divided by pi. The jets' rapidity gap is left out on purpose: with
  the pT thresholds of the selection it is correlated with m_jj (a bump hunt would see it).

* ``paper``: the seed paper's inputs, for the reference encoder (``models/reference.py``):
  per constituent pT / ``pt_scale`` (100 GeV: a fixed constant where the paper divides by a tenth
  of the batch's largest constituent pT), its absolute eta, and its phi measured from the first
  jet's axis (wrapped). No per-jet quantity is added: a constituent's jet is not an input.

Invariances by construction (an augmentation in ``INVARIANT`` changes the input events but
not the encoder's features, so leaving it out of an ablation changes nothing): every frame is
invariant under ``phi_shift``; ``jet_frame`` also under ``eta_shift``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from distributed_clr.augment.geometry import axis_of, jet_frame, to_planes, wrap_phi

Frame = Literal["absolute", "jet_frame", "paper"]
FEATURES: dict[str, tuple[str, ...]] = {
    "absolute": ("log_pt", "log_pt_frac", "d_eta", "d_phi", "log_jet_pt", "jet_eta"),
    "jet_frame": ("log_pt_frac", "d_eta", "d_phi", "d_phi_jj"),
    "paper": ("pt_scaled", "eta", "phi_from_jet1"),
}
"""The encoder's input features per constituent, in order, for each frame."""
INVARIANT: dict[str, frozenset[str]] = {
    "absolute": frozenset({"phi_shift"}),
    "jet_frame": frozenset({"phi_shift", "eta_shift"}),
    "paper": frozenset({"phi_shift"}),
}
"""Augmentations each frame's features cannot see (module docstring)."""
FEATURE_NAMES = FEATURES["absolute"]
NUM_FEATURES = len(FEATURE_NAMES)

_TINY_PT = 1e-12  # [GeV] guards log(0) for padding (whose features are zeroed anyway)


@dataclass(frozen=True)
class Normalizer:
    """Fixed-constant feature map: ``Normalizer()(x, mask)`` -> (B, 2, N, NUM_FEATURES).

    The defaults are the documented project constants (module docstring); they are fields only
    so that a study can change them explicitly, never fitted to data.
    """

    frame: Frame = "absolute"
    """``absolute`` or ``jet_frame`` (module docstring)."""
    log_pt_shift: float = 1.5
    log_pt_scale: float = 2.0
    log_pt_frac_shift: float = -4.0
    log_pt_frac_scale: float = 2.0
    delta_scale: float = 0.8
    log_jet_pt_shift: float = 7.0
    log_jet_pt_scale: float = 0.5
    jet_eta_scale: float = 1.5
    pt_scale: float = 100.0
    """[GeV] the ``paper`` frame's pT unit (``model.reference_pt_scale``)."""

    @property
    def num_features(self) -> int:
        """Features per constituent (the encoder's input size)."""
        return len(FEATURES[self.frame])

    @property
    def invariances(self) -> frozenset[str]:
        """Augmentations these features are invariant to by construction."""
        return INVARIANT[self.frame]

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        """Features (B, 2, N, F) float in ``FEATURES[frame]`` order; zero at padding.

        Args:
            x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
            mask: (B, 2, N) bool, True for real constituents.
        """
        pt, eta, phi, _, _ = to_planes(x, mask)
        if self.frame == "paper":
            _, phi_axis = axis_of(pt, eta, phi)
            features = torch.stack(
                (pt / self.pt_scale, eta, wrap_phi(phi - phi_axis[:, :1])), dim=-1
            )
            return torch.where(mask.unsqueeze(-1), features, 0.0)
        jet_px = (pt * torch.cos(phi)).sum(dim=-1, keepdim=True)
        jet_py = (pt * torch.sin(phi)).sum(dim=-1, keepdim=True)
        log_jet_pt = torch.log(torch.hypot(jet_px, jet_py).clamp_min(_TINY_PT))  # (B, 2, 1)
        eta_axis, phi_axis, d_eta, d_phi = jet_frame(pt, eta, phi)
        log_pt = torch.log(pt.clamp_min(_TINY_PT))
        log_pt_frac = (log_pt - log_jet_pt - self.log_pt_frac_shift) / self.log_pt_frac_scale
        if self.frame == "jet_frame":
            other = phi_axis.flip(dims=(-2,))  # (B, 2, 1): the other jet's axis
            d_phi_jj = wrap_phi(phi_axis - other) / math.pi
            features = torch.stack(
                (
                    log_pt_frac,
                    d_eta / self.delta_scale,
                    d_phi / self.delta_scale,
                    d_phi_jj.expand_as(pt),
                ),
                dim=-1,
            )
            return torch.where(mask.unsqueeze(-1), features, 0.0)

        features = torch.stack(
            (
                (log_pt - self.log_pt_shift) / self.log_pt_scale,
                log_pt_frac,
                d_eta / self.delta_scale,
                d_phi / self.delta_scale,
                ((log_jet_pt - self.log_jet_pt_shift) / self.log_jet_pt_scale).expand_as(pt),
                (eta_axis / self.jet_eta_scale).expand_as(pt),
            ),
            dim=-1,
        )
        return torch.where(mask.unsqueeze(-1), features, 0.0)


DEFAULT_NORMALIZER = Normalizer()


def normalize(x: Tensor, mask: Tensor, normalizer: Normalizer = DEFAULT_NORMALIZER) -> Tensor:
    """Encoder features (B, 2, N, NUM_FEATURES) of (x, mask) with the fixed project constants."""
    return normalizer(x, mask)


OBJECT_FEATURES = ("log_pt", "eta", "phi")
"""The encoder's input features per object slot (``ObjectNormalizer``)."""


@dataclass(frozen=True)
class ObjectNormalizer:
    """Fixed-constant features of object-level events: ``(x, mask)`` -> (B, 1, 19, 3).

    Per slot: (log(pT / GeV) - ``log_pt_shift``) / ``log_pt_scale``, eta / ``eta_scale`` and
    phi / pi; all-zero at empty slots. Objects in the ADC2021 selection range from ~3 GeV
    (soft jets, small MET) to ~1 TeV, so log pT lies in [1, 7]: the shift 4 (55 GeV) and
    scale 1.5 put it in [-2, 2]. Jets reach |eta| = 4, leptons 2.5, so eta / 2 lies within
    [-2, 2]. Flattened, these are the 57 inputs of the 2025 paper's MLP, on fixed scales
    instead of per-dataset standardisation. The slot position fixes the object type, so no
    type feature is needed (the transformer adds a learned type embedding).

    No augmentation is invariant by construction: an event-wide phi shift moves every phi
    (MET's included), and the features keep absolute phi. MET's eta is always zero, so masking
    or smearing it changes nothing; the effects logged at the start of a run show it.
    """

    log_pt_shift: float = 4.0
    log_pt_scale: float = 1.5
    eta_scale: float = 2.0

    @property
    def num_features(self) -> int:
        return len(OBJECT_FEATURES)

    @property
    def invariances(self) -> frozenset[str]:
        return frozenset()

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        """Features (B, S, N, 3) of x (B, S, N, 3) = (pT [GeV], eta, phi) and mask (B, S, N)."""
        pt, eta, phi = x.unbind(-1)
        log_pt = (torch.log(pt.clamp_min(_TINY_PT)) - self.log_pt_shift) / self.log_pt_scale
        features = torch.stack((log_pt, eta / self.eta_scale, phi / math.pi), dim=-1)
        return torch.where(mask.unsqueeze(-1), features, 0.0)
