"""Config sections of the data stages (generate, prepare, the loaders) and of the infrastructure
(MLflow tracking, the Ray cluster)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from distributed_clr.config.base import (
    Fraction,
    NonNegFloat,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    PythiaValue,
    Section,
    Seed,
)

# ------------------------------------------------------------------------------------------------
# data


class DataConfig(Section):
    """Where prepared datasets live and how the loaders read them."""

    kind: Literal["dijet", "objects"] = "dijet"
    """The kind of events: prepared dijets or object-level events (``storage/formats.py``).
    Pretraining sets it from the dataset's manifest, so a run's saved config says what its
    encoder reads."""
    train_split: str = "train"
    """Split used for training."""
    val_split: str = "val"
    """Split used for validation (early stopping, checkpoint selection)."""
    test_split: str = "test"
    """Split held out for final evaluation; never used for any choice."""
    max_events: PositiveInt | None = None
    """Read at most this many events per split (quick runs); None reads everything."""
    shuffle_buffer: NonNegInt = 10_000
    """Events in the per-worker local shuffle buffer (0 disables shuffling)."""
    prefetch_batches: NonNegInt = 2
    """Batches fetched ahead of the training step."""
    verify: Literal["sha256", "rows"] = "sha256"
    """How every reader checks a dataset's shards against its manifest before reading: their
    row counts and sha256 checksums ('sha256'), or only their row counts ('rows', for very
    large datasets on storage you trust). ``dclr verify DIR`` always checks checksums."""
    cache: bool = True
    """Keep the selected columns of the train and val splits in Ray's object store after the
    first read, so later epochs do not re-read and re-decode Parquet (Ray spills to disk when
    the store is full, so memory stays bounded)."""


# ------------------------------------------------------------------------------------------------
# generate


class DetectorConfig(Section):
    """Parametric detector response applied to generated final-state particles."""

    enabled: bool = True
    """Apply the detector response; off gives truth-level particles."""
    eta_max: PositiveFloat = 2.5
    """Particles with |eta| above this are outside the acceptance and dropped."""
    pt_min: NonNegFloat = 0.5
    """Particles below this transverse momentum after smearing are dropped [GeV]."""
    stochastic: NonNegFloat = 0.5
    """Stochastic term a of the energy resolution sigma_E/E = a/sqrt(E) (+) b/E (+) c."""
    noise: NonNegFloat = 0.5
    """Noise term b of the energy resolution [GeV]."""
    constant: NonNegFloat = 0.03
    """Constant term c of the energy resolution."""
    cell_eta: PositiveFloat = 0.0174
    """Calorimeter cell size in eta; positions are smeared by cell / sqrt(12)."""
    cell_phi: PositiveFloat = 0.0174
    """Calorimeter cell size in phi [rad]; positions are smeared by cell / sqrt(12)."""


class GenerateConfig(Section):
    """Event generation with Pythia 8 at the LHC."""

    process: Literal["qcd_dijet", "wprime_xy"] = "qcd_dijet"
    """Physics process: QCD dijets or W' -> X(qq) Y(qq)."""
    events: PositiveInt = 10_000
    """Events to write (after the trigger, when it is applied)."""
    shards: PositiveInt = 4
    """Output shards; one Ray task each."""
    seed: Seed = 1
    """Master seed; every shard derives its own independent seed from it (and the process)."""
    sqrt_s: PositiveFloat = 13_000.0
    """Proton-proton centre-of-mass energy [GeV]."""
    pthat_min: PositiveFloat = 800.0
    """Minimum hard-process pT for QCD dijets [GeV]. At 800 GeV, 3.0 +- 0.5% of events passing
    the 1.2 TeV trigger are lost to this cut (15% at 1 TeV); see
    benchmarks/pthat_trigger_study.py."""
    trigger: bool = True
    """Apply the LHC Olympics trigger (leading anti-kT jet pT above trigger_pt)."""
    trigger_pt: PositiveFloat = 1_200.0
    """Trigger threshold on the leading jet pT [GeV]."""
    trigger_radius: PositiveFloat = 1.0
    """Anti-kT radius of the trigger jets."""
    wprime_mass: PositiveFloat = 3_500.0
    """W' pole mass [GeV]."""
    wprime_window: PositiveFloat = 1_000.0
    """Half-width of the generated W' mass window [GeV]."""
    x_mass: PositiveFloat = 500.0
    """Mass of X (the heavier daughter) [GeV]."""
    y_mass: PositiveFloat = 100.0
    """Mass of Y (the lighter daughter) [GeV]."""
    x_width: PositiveFloat = 0.01
    """Width of X [GeV]; narrow, as in the LHC Olympics R&D signal."""
    y_width: PositiveFloat = 0.01
    """Width of Y [GeV]."""
    chunk_events: Annotated[int, Field(ge=16, le=5_000)] = 500
    """Most events Pythia generates per batch (a batch holds ~0.2 MB per event in memory)."""
    mpi: bool = True
    """Multi-parton interactions."""
    isr: bool = True
    """Initial-state radiation."""
    fsr: bool = True
    """Final-state radiation."""
    pythia_settings: dict[str, PythiaValue] = Field(default_factory=dict)
    """Raw Pythia settings, e.g. {'PhaseSpace:pTHatMax': '3000'}; applied last, so they win."""
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    """Detector response."""

    @model_validator(mode="after")
    def _masses_fit(self) -> Self:
        if self.x_mass + self.y_mass >= self.wprime_mass:
            raise ValueError(
                f"x_mass + y_mass ({self.x_mass} + {self.y_mass} GeV) must be below "
                f"wprime_mass ({self.wprime_mass} GeV) for the decay to be allowed"
            )
        if self.wprime_window >= self.wprime_mass:
            raise ValueError("wprime_window must be smaller than wprime_mass")
        return self


# ------------------------------------------------------------------------------------------------
# generate-objects

SM_PROCESSES: tuple[str, ...] = ("w_lnu", "qcd", "z_ll", "ttbar")
"""The SM processes of the object-level cocktail; a process's position is its process_id."""
SIGNAL_PROCESSES: tuple[str, ...] = ("ato4l", "lq_btau", "h0_tautau", "hplus_taunu")
"""The BSM signals of the object-level path (the four ADC2021 signal samples)."""
ObjectProcess = Literal[
    "sm_cocktail", "w_lnu", "qcd", "z_ll", "ttbar", "ato4l", "lq_btau", "h0_tautau", "hplus_taunu"
]


class ObjectRecoConfig(Section):
    """The parametric object reconstruction (``physics/objects.py``): leptons, jets, MET and
    the ADC2021 preselection."""

    lepton_eta_max: PositiveFloat = 2.5
    """Electrons and muons beyond this |eta| are not reconstructed (the tracker's reach)."""
    electron_pt_min: NonNegFloat = 10.0
    """Lowest reconstructed electron pT [GeV]."""
    muon_pt_min: NonNegFloat = 10.0
    """Lowest reconstructed muon pT [GeV]."""
    isolation_radius: PositiveFloat = 0.3
    """Cone of the lepton isolation sum."""
    isolation_max: NonNegFloat | None = None
    """Largest allowed isolation sum / lepton pT; None: no isolation, as the ADC2021 objects,
    which emulate the Level-1 trigger's (its single-lepton trigger has no isolation, which is
    why a third of that background is QCD: leptons from heavy-flavour decays)."""
    electron_efficiency: Fraction = 0.95
    """Probability to reconstruct an isolated electron in the acceptance."""
    muon_efficiency: Fraction = 0.98
    """Probability to reconstruct an isolated muon in the acceptance."""
    electron_resolution: NonNegFloat = 0.02
    """Relative Gaussian pT resolution of electrons."""
    muon_resolution: NonNegFloat = 0.015
    """Relative Gaussian pT resolution of muons."""
    jet_radius: PositiveFloat = 0.4
    """Anti-kT radius of the jets."""
    jet_pt_min: NonNegFloat = 15.0
    """Lowest jet pT [GeV]."""
    jet_eta_max: PositiveFloat = 4.0
    """Jets beyond this |eta| are removed (the ADC2021 preselection)."""
    trigger_lepton_pt: NonNegFloat = 23.0
    """The preselection: the leading electron or muon has at least this pT [GeV]."""
    detector: DetectorConfig = Field(
        default_factory=lambda: DetectorConfig(eta_max=5.0, pt_min=0.5)
    )
    """The calorimeter model of the particles that make jets and MET (|eta| < 5)."""


class ObjectGenerateConfig(Section):
    """Object-level events with Pythia 8 (``dclr generate-objects``): the SM cocktail and the
    BSM signals of the 2025 paper's ADC2021 samples."""

    process: ObjectProcess = "sm_cocktail"
    """An SM process, their cocktail, or a signal."""
    events: PositiveInt = 10_000
    """Events to write (after the preselection)."""
    shards: PositiveInt = 4
    """Output shards; one Ray task each (a cocktail gives each process its share of them)."""
    seed: Seed = 1
    """Master seed; every shard derives its own from it and its process."""
    mix: Literal["fractions", "cross_section"] = "fractions"
    """How the cocktail is mixed: ``fractions``, or in proportion to each process's
    cross-section times its preselection efficiency, measured in a pilot run of
    ``pilot_events`` generated events per process."""
    fractions: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"w_lnu": 0.592, "qcd": 0.338, "z_ll": 0.067, "ttbar": 0.003}
    )
    """Shares of the SM processes in the cocktail (the ADC2021 background: W 59.2%, QCD
    33.8%, Z 6.7%, ttbar 0.3%); normalised to 1."""
    pilot_events: Annotated[int, Field(ge=50)] = 2_000
    """Generated events per process of the pilot run of ``mix=cross_section``."""
    sqrt_s: PositiveFloat = 13_000.0
    """Proton-proton centre-of-mass energy [GeV]."""
    qcd_pthat_min: PositiveFloat = 50.0
    """Minimum hard-process pT of the QCD sample (heavy-flavour pairs, the source of leptons
    in QCD events) [GeV]. Few heavy-flavour leptons reach the 23 GeV preselection from softer
    scatterings: measured preselection efficiency 1.0% at 30 GeV, 5.9% at 60 GeV (1,000
    events each), so lower values cost much more generation."""
    z_mass_min: PositiveFloat = 50.0
    """Lowest Z/gamma* mass generated [GeV]."""
    a_mass: PositiveFloat = 50.0
    """Mass of the neutral scalar A of A -> ZZ* -> 4 leptons [GeV] (ADC2021: 50)."""
    lq_mass: PositiveFloat = 80.0
    """Mass of the leptoquark of LQ -> b tau [GeV] (ADC2021 low-mass sample: 80)."""
    h0_mass: PositiveFloat = 60.0
    """Mass of the neutral scalar of h0 -> tau tau [GeV] (ADC2021: 60)."""
    hplus_mass: PositiveFloat = 60.0
    """Mass of the charged scalar of h+- -> tau nu [GeV] (ADC2021: 60)."""
    chunk_events: Annotated[int, Field(ge=16, le=5_000)] = 500
    """Most events Pythia generates per batch."""
    pythia_settings: dict[str, PythiaValue] = Field(default_factory=dict)
    """Raw Pythia settings, applied last."""
    reco: ObjectRecoConfig = Field(default_factory=ObjectRecoConfig)
    """The object reconstruction and preselection."""

    @model_validator(mode="after")
    def _fractions_known(self) -> Self:
        unknown = sorted(set(self.fractions) - set(SM_PROCESSES))
        if unknown:
            raise ValueError(
                f"fractions name unknown processes {unknown}; SM processes are "
                f"{', '.join(SM_PROCESSES)}"
            )
        if sum(self.fractions.values()) <= 0:
            raise ValueError("fractions must have a positive sum")
        return self


# ------------------------------------------------------------------------------------------------
# prepare


class PrepareConfig(Section):
    """Clustering, dijet selection, observables and split assignment."""

    jet_radius: PositiveFloat = 0.8
    """Anti-kT jet radius."""
    select_by: Literal["mass", "pt"] = "mass"
    """Which two jets: the two heaviest, heavier first (the seed paper's choice), or the two
    hardest, harder first."""
    candidate_pt_min: NonNegFloat = 20.0
    """Jets below this pT are not candidates for selection [GeV]."""
    num_constituents: PositiveInt = 50
    """Constituents kept per jet (hardest first, zero-padded)."""
    jet_pt_min: NonNegFloat = 800.0
    """Both selected jets need pT above this [GeV]."""
    jet_pt_max: PositiveFloat = 3_000.0
    """Both selected jets need pT below this [GeV]."""
    jet_eta_max: PositiveFloat = 3.0
    """Both selected jets need |eta| below this."""
    train_fraction: Fraction = 0.6
    """Fraction of events assigned to the train split."""
    val_fraction: Fraction = 0.2
    """Fraction assigned to the validation split; the rest is test."""
    num_folds: Annotated[int, Field(ge=2, le=100)] = 5
    """Number of cross-validation folds assigned alongside the split."""
    split_salt: str = "dclr-v1"
    """Salt of the split hash; changing it reshuffles every split."""
    batch_events: PositiveInt = 2_048
    """Events clustered at once (one fastjet call) inside a task."""
    events_per_task: PositiveInt = 4_096
    """Raw events per Ray task and output shard (whole Parquet row groups of a raw shard, at
    least this many unless the shard ends): the unit of work, of resuming and of output files,
    so the output is the same bytes however the run was interrupted. The default is one row
    group of the raw writers (4,096 events), so that a shard of 20,000 events keeps five cores
    busy rather than one."""

    @model_validator(mode="after")
    def _fractions(self) -> Self:
        if self.train_fraction + self.val_fraction > 1.0 + 1e-12:
            raise ValueError(
                f"train_fraction + val_fraction = {self.train_fraction + self.val_fraction} "
                "exceeds 1"
            )
        if self.jet_pt_max <= self.jet_pt_min:
            raise ValueError("jet_pt_max must be above jet_pt_min")
        return self


# ------------------------------------------------------------------------------------------------
# tracking and ray


class TrackingConfig(Section):
    """MLflow tracking."""

    enabled: bool = True
    """Log to MLflow at all."""
    uri: str | None = None
    """Tracking URI; None uses MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working dir."""
    experiment: str = "distributed_clr"
    """MLflow experiment name."""
    system_metrics: bool = True
    """Record CPU/GPU/memory system metrics with the run."""


class RayConfig(Section):
    """The Ray cluster and the resources a training run asks for."""

    address: str | None = None
    """Cluster address; None uses RAY_ADDRESS, else starts a local Ray."""
    num_workers: PositiveInt = 2
    """Training workers (DDP ranks)."""
    use_gpu: bool = False
    """One GPU per worker, nccl backend; otherwise CPU with gloo."""
    cpus_per_worker: PositiveFloat = 1.0
    """CPUs reserved per training worker."""
    placement: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = "PACK"
    """How training workers are placed on a cluster's nodes (Ray placement-group strategy):
    PACK fills a node first (fastest all-reduce), SPREAD puts them on different nodes where it
    can, STRICT_SPREAD insists on one worker per node."""
    storage_path: str = "ray_results"
    """Where Ray Train keeps checkpoints and results (local path or URI)."""
    num_cpus: PositiveInt | None = None
    """CPUs of a local Ray session; None lets Ray count them."""
