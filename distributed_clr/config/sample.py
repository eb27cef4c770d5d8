"""The ``sample`` section: which events each stage sees (sample composition)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from distributed_clr.config.base import NonNegFloat, NonNegInt, Section, Seed


class RoleSample(Section):
    """How many background and signal events one role draws from its split.

    Events with label 1 are signal (optionally only those of ``signal_processes``); every
    other event (label 0, or -1 for unlabelled data) counts as background. Events are drawn in
    a fixed order given by a hash of (dataset, event_id) and ``sample.seed``, so the same
    settings always give the same events, whatever the files or the machine.
    """

    background: NonNegInt | None = None
    """Background events to draw; None takes every one, or with ``signal_to_background`` as
    many as the available signal allows (signal_to_background 1: the largest balanced set)."""
    signal: NonNegInt | None = None
    """Signal events to draw; None takes every one (unless ``signal_to_background`` is set)."""
    signal_to_background: NonNegFloat | None = None
    """Signal events per drawn background event (instead of ``signal``)."""
    signal_processes: list[str] | None = None
    """Processes that count as signal (e.g. ['wprime_xy']); None: every label-1 event.
    Label-1 events of other processes are left out."""

    @model_validator(mode="after")
    def _one_signal_rule(self) -> Self:
        if self.signal is not None and self.signal_to_background is not None:
            raise ValueError("set signal or signal_to_background, not both")
        return self

    @property
    def everything(self) -> bool:
        """True when the role takes every event (no selection at all)."""
        return (
            self.background is None
            and self.signal is None
            and self.signal_to_background is None
            and self.signal_processes is None
        )


class BumpHuntSample(Section):
    """The bump hunt's events: background, and signal injected at several amounts."""

    background: NonNegInt | None = None
    """Background events to draw; None takes every one."""
    signal: list[NonNegInt] | None = None
    """Signal events to inject, one bump hunt per entry (and per seed); the rest of the signal
    is held out. None keeps every signal event (one bump hunt)."""
    signal_processes: list[str] | None = None
    """Processes that count as signal; None: every label-1 event."""


class SampleConfig(Section):
    """Sample composition: which events each stage draws from the prepared splits.

    ``pretrain`` applies to the train split (and, with the same composition, to the events of
    the val split that the validation loss uses); ``classify_train`` and ``classify_test`` to
    the classifier tests' train and test splits (the idealised CWoLa scan is measured on
    ``classify_test`` too); ``cwola`` to the idealised scan's training pools; ``bumphunt`` to
    every split of the bump hunt. The defaults take every event, as a plain run expects.
    """

    seed: Seed = 0
    """Seed of the hash order in which events are drawn."""
    pretrain: RoleSample = Field(default_factory=RoleSample)
    """Contrastive pretraining (train split; the val loss follows the same composition)."""
    classify_train: RoleSample = Field(default_factory=RoleSample)
    """The classifiers' training events (train split)."""
    classify_test: RoleSample = Field(default_factory=RoleSample)
    """The classifiers' test events (test split); the paper's standard test set is balanced
    (signal_to_background: 1)."""
    cwola: RoleSample = Field(default_factory=RoleSample)
    """The idealised CWoLa scan's pools (train split)."""
    bumphunt: BumpHuntSample = Field(default_factory=BumpHuntSample)
    """The bump hunt's events (every split)."""
