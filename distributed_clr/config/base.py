"""The base of every config section, and the value types the sections share.

Every field has a type, a default, bounds where physics or arithmetic needs them, and a docstring
(pydantic reads attribute docstrings into the field description). Units: energies and momenta in
GeV, angles in radians.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]


def _pythia_value(value: object) -> object:
    """YAML reads ``on`` as True and ``3000`` as an int; Pythia wants its own spelling."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return repr(value)
    return value


PythiaValue = Annotated[str, BeforeValidator(_pythia_value)]

AugmentationName = Literal[
    "rotate",
    "distort",
    "collinear_split",
    "eta_shift",
    "phi_shift",
    "translate",
    "drop",
    "pt_smear",
    "mask_objects",
    "mask_inputs",
]
FeatureSet = Literal["latent", "event", "event_frame", "highlevel"]
ClassifierName = Literal["lct", "fcn"]

JET_AUGMENTATIONS: tuple[AugmentationName, ...] = (
    "rotate",
    "distort",
    "collinear_split",
    "eta_shift",
    "phi_shift",
)
"""The seed paper's five dijet augmentations (its ablation, Table I, leaves each out in turn)."""
OBJECT_AUGMENTATIONS: tuple[AugmentationName, ...] = (
    "mask_inputs",
    "mask_objects",
    "phi_shift",
    "pt_smear",
)
"""The augmentations that apply to object-level events (the others act on jets' constituents,
move slots that fix the object type, or would give MET an eta)."""
FEATURE_SETS: tuple[FeatureSet, ...] = ("latent", "event", "highlevel")
"""The feature sets evaluated by default."""
ALL_FEATURE_SETS: tuple[FeatureSet, ...] = get_args(FeatureSet)
"""Every feature set (``event_frame`` is the m_jj-blind event space of the bump hunt)."""
CLASSIFIERS: tuple[ClassifierName, ...] = ("lct", "fcn")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )
