"""The studies: the seed papers' tables and figures, each as a ``StudyDef``.

Every study pretrains a grid of encoders (one Ray Tune sweep), embeds the data with each and
with the untrained encoder of each architecture (the baseline that shows what contrastive
training adds), runs its evaluations, and reports tables next to the published numbers
(``published.yaml``) and plots. Which paper table or figure each follows is in its
``reproduces``; the README's "Studies" section lists them with their laptop-scale results.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distributed_clr.config.base import JET_AUGMENTATIONS
from distributed_clr.errors import UserError
from distributed_clr.stats.falloff import falloff_fraction
from distributed_clr.studies.plan import (
    RAW,
    Cell,
    Encoder,
    Evaluation,
    ReportTable,
    StudyContext,
    StudyDef,
    StudyPlan,
    StudyResults,
    untrained_label,
)
from distributed_clr.studies.readers import (
    NOT_APPLICABLE,
    classify_cell,
    cwola_matrix,
    errorbar,
    hunt_cell,
    new_figure,
    nplm_cell,
    nplm_median_z,
    save,
    slug,
)

__all__ = ["STUDIES", "get_study"]

UNTRAINED_ROW = "untrained encoder"


def _classify(
    feature_sets: Sequence[str],
    classifiers: Sequence[str] = ("lct", "fcn"),
    trans_bc: bool = False,
    *extra: tuple[str, Any],
) -> tuple[tuple[str, Any], ...]:
    return (
        ("evaluate.feature_sets", list(feature_sets)),
        ("evaluate.classifiers", list(classifiers)),
        ("evaluate.trans_bc.enabled", trans_bc),
        *extra,
    )


def _grid_encoders(grid: dict[str, list[Any]], label: Any) -> list[Encoder]:
    """Every combination of ``grid`` (first key slowest) labelled by ``label(values)``."""
    keys = list(grid)
    encoders = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        encoders.append(Encoder(label(values), values))
    return encoders


def _by_scale(ctx: StudyContext, ci: list[Any], laptop: list[Any], paper: list[Any]) -> list[Any]:
    return ci if ctx.scale == "ci" else laptop if ctx.scale == "laptop" else paper


def _untrained_evals(
    encoders: Sequence[Encoder], key: str, stage: Any, overrides: Any, prefix: str
) -> list[Evaluation]:
    """One evaluation per distinct value of ``key`` (the architectures), on its untrained
    encoder."""
    seen: dict[Any, Encoder] = {}
    for encoder in encoders:
        seen.setdefault(repr(encoder.values.get(key)), encoder)
    return [
        Evaluation(
            f"{prefix}/untrained-{slug(e.label)}", stage, untrained_label(e.label), overrides
        )
        for e in seen.values()
    ]


# ------------------------------------------------------------------------------------------------
# augmentation-ablation: Dillon et al. Table I, Fig. 6


def _ablation_build(ctx: StudyContext) -> StudyPlan:
    full = list(JET_AUGMENTATIONS)
    pipelines = [full, *([a for a in full if a != left] for left in full)]
    labels = ["all augmentations", *(f"without {left}" for left in full)]
    encoders = [
        Encoder(label, {"augment.pipeline": p}) for label, p in zip(labels, pipelines, strict=True)
    ]
    overrides = _classify(["latent"])
    evaluations = [
        Evaluation(f"classify/{slug(e.label)}", "classify", e.label, overrides) for e in encoders
    ]
    evaluations.append(
        Evaluation("classify/untrained", "classify", untrained_label(encoders[0].label), overrides)
    )
    return StudyPlan(
        grid={"augment.pipeline": pipelines},
        encoders=encoders,
        evaluations=evaluations,
        fixed=(("model.latent_dim", 128),),
    )


def _ablation_tables(results: StudyResults) -> list[ReportTable]:
    from distributed_clr.augment.normalize import INVARIANT

    invariant = INVARIANT.get(results.context.config.model.inputs, frozenset())
    table = ReportTable(
        "table1",
        "Augmentation ablation (latent 128): classifier tests on the latent space",
        ["FCN AUC", "FCN max SIC", "LCT AUC", "note"],
        caption="Each row leaves one augmentation out of pretraining. A left-out augmentation "
        "the encoder's inputs are invariant to by construction changes nothing but the noise. "
        "Intervals: 68% bootstrap over the balanced test set, averaged over the classifier "
        "repeats.",
        published="augmentation-ablation/table1",
    )
    for encoder in results.plan.encoders:
        summary = results.summary(f"classify/{slug(encoder.label)}")
        left = encoder.label.removeprefix("without ")
        note = ""
        if encoder.label.startswith("without "):
            note = "no-op: inputs invariant to it" if left in invariant else ""
        table.rows[encoder.label] = {
            "FCN AUC": classify_cell(summary, "latent", "fcn"),
            "FCN max SIC": classify_cell(summary, "latent", "fcn", "max_sic"),
            "LCT AUC": classify_cell(summary, "latent", "lct"),
            "note": note or "-",
        }
    untrained = results.summary("classify/untrained")
    table.rows[UNTRAINED_ROW] = {
        "FCN AUC": classify_cell(untrained, "latent", "fcn"),
        "FCN max SIC": classify_cell(untrained, "latent", "fcn", "max_sic"),
        "LCT AUC": classify_cell(untrained, "latent", "lct"),
        "note": "same architecture, initial weights",
    }
    return [table]


def _bars(results: StudyResults, tables: list[ReportTable], directory: Path, name: str) -> Path:
    (table,) = tables[:1]
    figure, (auc_ax, sic_ax) = new_figure(2)
    rows = list(table.rows)
    x = list(range(len(rows)))
    for ax, column in ((auc_ax, "FCN AUC"), (sic_ax, "FCN max SIC")):
        cells = [table.rows[r][column] for r in rows]
        errorbar(ax, x, [c for c in cells if isinstance(c, Cell)], fmt="o", capsize=3)
        ax.set_xticks(x, rows, rotation=35, ha="right", fontsize="small")
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
    figure.suptitle(table.title)
    return save(figure, directory / name)


def _ablation_plots(results: StudyResults, directory: Path) -> list[Path]:
    return [_bars(results, _ablation_tables(results), directory, "ablation.png")]


# ------------------------------------------------------------------------------------------------
# latent-dim: Table II, Figs. 7 and 10

LATENT_DIMS = [8, 16, 32, 64, 128, 256, 512]


def _latent_dims(ctx: StudyContext) -> list[int]:
    # ci keeps both ends and the middle of the range (three encoders instead of seven), the
    # laptop every other size (four: the hour of a 2-core machine).
    return _by_scale(ctx, [8, 64, 512], [8, 32, 128, 512], list(LATENT_DIMS))


def _latent_build(ctx: StudyContext) -> StudyPlan:
    grid = {"model.latent_dim": _latent_dims(ctx)}
    encoders = _grid_encoders(grid, lambda v: f"latent {v['model.latent_dim']}")
    evaluations = [
        Evaluation(f"classify/{slug(e.label)}", "classify", e.label, _classify(["latent"]))
        for e in encoders
    ]
    # The untrained encoder of each size, and Trans+BC of each size (the supervised
    # reference with the same architecture).
    evaluations += _untrained_evals(
        encoders, "model.latent_dim", "classify", _classify(["latent"], trans_bc=True), "classify"
    )
    evaluations.append(
        Evaluation(
            "classify/raw", "classify", untrained_label(encoders[0].label), _classify(["event"])
        )
    )
    return StudyPlan(grid=grid, encoders=encoders, evaluations=evaluations)


LATENT_COLUMNS = [
    "LCT AUC",
    "FCN AUC",
    "FCN max SIC",
    "untrained LCT AUC",
    "untrained FCN AUC",
    "Trans+BC AUC",
    "Trans+BC max SIC",
]


def _latent_tables(results: StudyResults) -> list[ReportTable]:
    table = ReportTable(
        "table2",
        "Latent size: classifier tests on the latent space, the event space and Trans+BC",
        LATENT_COLUMNS,
        caption="Trans+BC is the encoder architecture of each size trained end to end on the "
        "labelled constituents; the untrained columns use the same architecture's initial "
        "weights. The event space is the encoder's input.",
        published="latent-dim/table2",
    )
    for encoder in results.plan.encoders:
        trained = results.summary(f"classify/{slug(encoder.label)}")
        untrained = results.summary(f"classify/untrained-{slug(encoder.label)}")
        table.rows[encoder.label] = {
            "LCT AUC": classify_cell(trained, "latent", "lct"),
            "FCN AUC": classify_cell(trained, "latent", "fcn"),
            "FCN max SIC": classify_cell(trained, "latent", "fcn", "max_sic"),
            "untrained LCT AUC": classify_cell(untrained, "latent", "lct"),
            "untrained FCN AUC": classify_cell(untrained, "latent", "fcn"),
            "Trans+BC AUC": classify_cell(untrained, "constituents", "trans_bc"),
            "Trans+BC max SIC": classify_cell(untrained, "constituents", "trans_bc", "max_sic"),
        }
    raw = results.summary("classify/raw")
    row: dict[str, Cell | str] = dict.fromkeys(LATENT_COLUMNS, NOT_APPLICABLE)
    row.update(
        {
            "LCT AUC": classify_cell(raw, "event", "lct"),
            "FCN AUC": classify_cell(raw, "event", "fcn"),
            "FCN max SIC": classify_cell(raw, "event", "fcn", "max_sic"),
        }
    )
    table.rows[f"event space ({RAW})"] = row
    return [table]


def _latent_plots(results: StudyResults, directory: Path) -> list[Path]:
    (table,) = _latent_tables(results)
    dims = [int(e.values["model.latent_dim"]) for e in results.plan.encoders]
    rows = [e.label for e in results.plan.encoders]
    raw = table.rows[f"event space ({RAW})"]
    figure, axes = new_figure(2)
    for ax, metric in zip(axes, ("AUC", "max SIC"), strict=True):
        lines = (
            [
                ("LCT AUC", "latent, LCT"),
                ("FCN AUC", "latent, FCN"),
                ("untrained LCT AUC", "untrained, LCT"),
                ("untrained FCN AUC", "untrained, FCN"),
                ("Trans+BC AUC", "Trans+BC"),
            ]
            if metric == "AUC"
            else [("FCN max SIC", "latent, FCN"), ("Trans+BC max SIC", "Trans+BC")]
        )
        for column, label in lines:
            cells = [table.rows[r][column] for r in rows]
            style = "--" if column.startswith("untrained") else "-"
            errorbar(
                ax,
                dims,
                [c for c in cells if isinstance(c, Cell)],
                fmt="o" + style,
                capsize=3,
                label=label,
            )
        for column, label in (("FCN AUC", "event space, FCN"), ("LCT AUC", "event space, LCT")):
            cell = raw[column if metric == "AUC" else "FCN max SIC"]
            if isinstance(cell, Cell) and math.isfinite(cell.value):
                ax.axhline(
                    cell.value, color="grey", ls=":" if "LCT" in label else "-.", label=label
                )
            if metric != "AUC":
                break
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.set_xlabel("latent size")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize="small")
    figure.suptitle(table.title)
    return [save(figure, directory / "latent_dim.png")]


# ------------------------------------------------------------------------------------------------
# pretrain-signal-fraction: Figs. 8 and 11


def _sb_values(ctx: StudyContext) -> list[float]:
    return _by_scale(
        ctx,
        [1.0, 0.0],
        [1.0, 0.4, 0.1, 0.01, 0.0],
        [1.0, 0.6, 0.4, 0.2, 0.1, 0.04, 0.01, 1e-3, 1e-4, 0.0],
    )


def _signal_fraction_build(ctx: StudyContext) -> StudyPlan:
    ratios = _sb_values(ctx)
    train = ctx.counts.get("train", {})
    available_b, available_s = train.get("background", 0), train.get("signal", 0)
    wanted = ctx.config.sample.pretrain.background
    background = min(available_b, wanted if wanted is not None else available_b)
    top = max(ratios)
    if top > 0:
        background = min(background, math.floor(available_s / top))
    if background < 10:
        raise UserError(
            f"pretrain-signal-fraction needs signal in the train split for S/B up to {top:g}: "
            f"it holds {available_b} background and {available_s} signal events; give data "
            "with more signal (dclr combine a signal dataset in) or a smaller scale"
        )
    grid: dict[str, list[Any]] = {
        "sample.pretrain.signal_to_background": list(ratios),
        "model.latent_dim": [128, 48],
    }
    encoders = _grid_encoders(
        grid,
        lambda v: (
            f"S/B {v['sample.pretrain.signal_to_background']:g}, latent {v['model.latent_dim']}"
        ),
    )
    overrides = _classify(["latent"])
    evaluations = [
        Evaluation(f"classify/{slug(e.label)}", "classify", e.label, overrides) for e in encoders
    ]
    evaluations += _untrained_evals(encoders, "model.latent_dim", "classify", overrides, "classify")
    return StudyPlan(
        grid=grid,
        encoders=encoders,
        evaluations=evaluations,
        fixed=(("sample.pretrain.background", background),),
    )


def _signal_fraction_tables(results: StudyResults) -> list[ReportTable]:
    dims = sorted({int(e.values["model.latent_dim"]) for e in results.plan.encoders}, reverse=True)
    columns = [f"{m} ({d})" for d in dims for m in ("FCN AUC", "FCN max SIC", "LCT AUC")]
    background = dict(results.plan.fixed).get("sample.pretrain.background")
    table = ReportTable(
        "fig8",
        "Signal in pretraining: classifier tests on the latent space against S/B",
        columns,
        caption=f"Every encoder trains on the same {background} background events of the train "
        "split plus S/B times as many signal events. Column headers name the latent size.",
        published="pretrain-signal-fraction/fig8",
    )
    for encoder in results.plan.encoders:
        ratio = encoder.values["sample.pretrain.signal_to_background"]
        dim = int(encoder.values["model.latent_dim"])
        row = table.rows.setdefault(f"S/B {ratio:g}", {})
        summary = results.summary(f"classify/{slug(encoder.label)}")
        row[f"FCN AUC ({dim})"] = classify_cell(summary, "latent", "fcn")
        row[f"FCN max SIC ({dim})"] = classify_cell(summary, "latent", "fcn", "max_sic")
        row[f"LCT AUC ({dim})"] = classify_cell(summary, "latent", "lct")
    row = table.rows.setdefault(UNTRAINED_ROW, {})
    for encoder in results.plan.encoders:
        name = f"classify/untrained-{slug(encoder.label)}"
        if name in results.evaluations:
            dim = int(encoder.values["model.latent_dim"])
            summary = results.summary(name)
            row[f"FCN AUC ({dim})"] = classify_cell(summary, "latent", "fcn")
            row[f"FCN max SIC ({dim})"] = classify_cell(summary, "latent", "fcn", "max_sic")
            row[f"LCT AUC ({dim})"] = classify_cell(summary, "latent", "lct")
    return [table]


def _signal_fraction_plots(results: StudyResults, directory: Path) -> list[Path]:
    (table,) = _signal_fraction_tables(results)
    ratios = list(
        dict.fromkeys(
            e.values["sample.pretrain.signal_to_background"] for e in results.plan.encoders
        )
    )
    dims = sorted({int(e.values["model.latent_dim"]) for e in results.plan.encoders}, reverse=True)
    # Log x with S/B = 0 drawn at a tenth of the smallest nonzero ratio.
    nonzero = [r for r in ratios if r > 0]
    floor = min(nonzero) / 10 if nonzero else 1e-4
    x = [r if r > 0 else floor for r in ratios]
    figure, axes = new_figure(2)
    for ax, metric in zip(axes, ("FCN AUC", "FCN max SIC"), strict=True):
        for index, dim in enumerate(dims):
            cells = [table.rows[f"S/B {r:g}"][f"{metric} ({dim})"] for r in ratios]
            errorbar(
                ax,
                x,
                [c for c in cells if isinstance(c, Cell)],
                fmt="o-",
                capsize=3,
                color=f"C{index}",
                label=f"latent {dim}",
            )
            base = table.rows[UNTRAINED_ROW].get(f"{metric} ({dim})")
            if isinstance(base, Cell) and math.isfinite(base.value):
                ax.axhline(base.value, color=f"C{index}", ls="--", label=f"untrained {dim}")
        ax.set_xscale("log")
        ax.set_xlabel(f"S/B in pretraining (0 drawn at {floor:g})")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize="small")
    figure.suptitle(table.title)
    return [save(figure, directory / "signal_fraction.png")]


# ------------------------------------------------------------------------------------------------
# cwola-scan: Fig. 9

CWOLA_FRACTIONS = [0.0, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 1.0]
"""The paper's scan from 1e-3 (``published.yaml``, cwola-scan/fig9)."""
CWOLA_METRICS = (
    ("auc", "AUC", True),
    ("max_sic", "max SIC", True),
    ("fpr_at_tpr_0.5", "FPR at TPR 0.5", False),
)


def _cwola_build(ctx: StudyContext) -> StudyPlan:
    grid = {"model.latent_dim": [128, 48]}
    encoders = _grid_encoders(grid, lambda v: f"latent {v['model.latent_dim']}")
    overrides = (("evaluate.feature_sets", ["latent"]),)
    evaluations = [
        Evaluation(f"cwola/{slug(e.label)}", "cwola", e.label, overrides) for e in encoders
    ]
    evaluations += _untrained_evals(encoders, "model.latent_dim", "cwola", overrides, "cwola")
    evaluations.append(
        Evaluation(
            "cwola/raw",
            "cwola",
            untrained_label(encoders[0].label),
            (("evaluate.feature_sets", ["event"]),),
        )
    )
    fixed: list[tuple[str, Any]] = [("sample.pretrain.signal_to_background", 0.0)]
    if ctx.scale != "ci":
        fixed.append(("evaluate.cwola.fractions", CWOLA_FRACTIONS))
    return StudyPlan(grid=grid, encoders=encoders, evaluations=evaluations, fixed=tuple(fixed))


def _cwola_sources(results: StudyResults) -> list[tuple[str, str, str]]:
    """(row label, evaluation, feature set) of every scanned representation."""
    rows = [
        (f"{e.label} (background-only)", f"cwola/{slug(e.label)}", "latent")
        for e in results.plan.encoders
    ]
    rows += [
        (f"untrained {e.label}", f"cwola/untrained-{slug(e.label)}", "latent")
        for e in results.plan.encoders
        if f"cwola/untrained-{slug(e.label)}" in results.evaluations
    ]
    rows.append((f"event space ({RAW})", "cwola/raw", "event"))
    return rows


def _cwola_tables(results: StudyResults) -> list[ReportTable]:
    sources = _cwola_sources(results)
    fractions, _ = cwola_matrix(results.summary(sources[0][1]), sources[0][2], "auc")
    columns = [f"f={f:g}" for f in fractions]
    scan = ReportTable(
        "fig9",
        "Idealised CWoLa: AUC against the signal fraction f of the mixed sample",
        columns,
        caption="Mean over seeds of the FCN's test AUC, with the 68% bootstrap interval of the "
        "test events; encoders pretrained on background only.",
        published="cwola-scan/fig9",
    )
    falloff = ReportTable(
        "fstar",
        "Where each representation falls to random: f* per metric",
        [label for _, label, _ in CWOLA_METRICS],
        caption="f*: the fraction below which the seed-mean metric is no better than the f=0 "
        "(no signal) points, or a random classifier where those are worse, by two combined "
        "standard errors; interpolated in log f; 68% interval from resampling the seeds. '<' "
        "and '>': f* lies beyond the scanned range.",
    )
    for label, name, feature_set in sources:
        summary = results.summary(name)
        fractions, values = cwola_matrix(summary, feature_set, "auc")
        _, low = cwola_matrix(summary, feature_set, "auc_low")
        _, high = cwola_matrix(summary, feature_set, "auc_high")
        scan.rows[label] = {
            f"f={f:g}": Cell(
                float(_nanmean(values[i])),
                float(_nanmean(low[i])),
                float(_nanmean(high[i])),
                std=float(_nanstd(values[i])),
            )
            for i, f in enumerate(fractions)
        }
        row: dict[str, Cell | str] = {}
        for metric, title, higher in CWOLA_METRICS:
            f, v = cwola_matrix(summary, feature_set, metric)
            result = falloff_fraction(f, v, metric=metric, higher_is_better=higher)
            note = {"below": "<", "above": ">"}.get(result.bound, "")
            row[title] = Cell(result.fraction, result.low, result.high, note=note)
        falloff.rows[label] = row
    return [scan, falloff]


def _nanmean(values: Any) -> float:
    import numpy as np

    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else math.nan


def _nanstd(values: Any) -> float:
    import numpy as np

    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.std(ddof=1)) if finite.size > 1 else math.nan


def _cwola_plots(results: StudyResults, directory: Path) -> list[Path]:
    sources = _cwola_sources(results)
    (_, falloff) = _cwola_tables(results)
    figure, axes = new_figure(3, width=5.0)
    for ax, (metric, title, _) in zip(axes, CWOLA_METRICS, strict=True):
        for index, (label, name, feature_set) in enumerate(sources):
            fractions, values = cwola_matrix(results.summary(name), feature_set, metric)
            nonzero = fractions > 0
            means = [_nanmean(v) for v in values[nonzero]]
            errors = [_nanstd(v) for v in values[nonzero]]
            style = "--" if label.startswith("untrained") else "-"
            ax.errorbar(
                fractions[nonzero],
                means,
                yerr=[0 if math.isnan(e) else e for e in errors],
                fmt="o" + style,
                capsize=2,
                color=f"C{index}",
                label=label,
            )
            cell = falloff.rows[label][title]
            if isinstance(cell, Cell) and not cell.note and math.isfinite(cell.value):
                ax.axvline(cell.value, color=f"C{index}", alpha=0.4, lw=1)
        ax.set_xscale("log")
        if metric == "fpr_at_tpr_0.5":
            ax.set_yscale("log")
        ax.set_xlabel("signal fraction f")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize="small")
    figure.suptitle("Idealised CWoLa scan (vertical lines: f*)")
    return [save(figure, directory / "cwola_scan.png")]


# ------------------------------------------------------------------------------------------------
# training-fraction: App. B, Fig. 12


def _training_fractions(ctx: StudyContext) -> list[float]:
    return _by_scale(ctx, [1.0, 0.5], [1.0, 0.5, 0.25, 0.1], [1.0, 0.75, 0.5, 0.25, 0.1, 0.05])


def _labelled(ctx: StudyContext) -> tuple[int, int]:
    """Background and signal events the classifiers train on at fraction 1."""
    train = ctx.counts.get("train", {})
    role = ctx.config.sample.classify_train
    b = (
        train.get("background", 0)
        if role.background is None
        else min(role.background, train.get("background", 0))
    )
    s = train.get("signal", 0) if role.signal is None else min(role.signal, train.get("signal", 0))
    return b, s


def _training_fraction_build(ctx: StudyContext) -> StudyPlan:
    b, s = _labelled(ctx)
    if min(b, s) < 20:
        raise UserError(
            f"training-fraction needs labelled signal and background in the train split; it "
            f"holds {b} background and {s} signal events"
        )
    grid = {"model.latent_dim": [128]}
    encoders = _grid_encoders(grid, lambda v: f"latent {v['model.latent_dim']}")
    evaluations = []
    for fraction in _training_fractions(ctx):
        sample = (
            ("sample.classify_train.background", max(1, round(fraction * b))),
            ("sample.classify_train.signal", max(1, round(fraction * s))),
        )
        name = f"{fraction:g}"
        evaluations.append(
            Evaluation(
                f"classify/trained-{name}",
                "classify",
                encoders[0].label,
                _classify(["latent", "event"], ["fcn"], True, *sample),
            )
        )
        evaluations.append(
            Evaluation(
                f"classify/untrained-{name}",
                "classify",
                untrained_label(encoders[0].label),
                _classify(["latent"], ["fcn"], False, *sample),
            )
        )
    return StudyPlan(grid=grid, encoders=encoders, evaluations=evaluations)


TRAINING_COLUMNS = [
    "labelled events",
    "FCN latent AUC",
    "FCN latent max SIC",
    "untrained FCN latent AUC",
    "FCN event AUC",
    "Trans+BC AUC",
    "Trans+BC max SIC",
]


def _training_fraction_tables(results: StudyResults) -> list[ReportTable]:
    table = ReportTable(
        "fig12",
        "Labelled training data: FCN and Trans+BC against the fraction used",
        TRAINING_COLUMNS,
        caption="Each row trains the classifiers on this fraction of the labelled train events "
        "(drawn in hash order, so a smaller set is a subset of a larger one); the test set is "
        "the same for every row.",
        published="training-fraction/fig12",
    )
    for fraction in _training_fractions(results.context):
        name = f"{fraction:g}"
        trained = results.summary(f"classify/trained-{name}")
        untrained = results.summary(f"classify/untrained-{name}")
        composition = trained.get("composition", {}).get("classify_train", {})
        events = composition.get("background", 0) + composition.get("signal", 0)
        table.rows[f"{fraction:g}"] = {
            "labelled events": Cell(float(events)) if events else NOT_APPLICABLE,
            "FCN latent AUC": classify_cell(trained, "latent", "fcn"),
            "FCN latent max SIC": classify_cell(trained, "latent", "fcn", "max_sic"),
            "untrained FCN latent AUC": classify_cell(untrained, "latent", "fcn"),
            "FCN event AUC": classify_cell(trained, "event", "fcn"),
            "Trans+BC AUC": classify_cell(trained, "constituents", "trans_bc"),
            "Trans+BC max SIC": classify_cell(trained, "constituents", "trans_bc", "max_sic"),
        }
    return [table]


def _training_fraction_plots(results: StudyResults, directory: Path) -> list[Path]:
    (table,) = _training_fraction_tables(results)
    rows = list(table.rows)
    x = [float(r) for r in rows]
    figure, axes = new_figure(1)
    for column in ("FCN latent AUC", "untrained FCN latent AUC", "FCN event AUC", "Trans+BC AUC"):
        cells = [table.rows[r][column] for r in rows]
        errorbar(
            axes[0],
            x,
            [c for c in cells if isinstance(c, Cell)],
            fmt="o-",
            capsize=3,
            label=column.removesuffix(" AUC"),
        )
    axes[0].set_xscale("log")
    axes[0].set_xlabel("fraction of the labelled training events")
    axes[0].set_ylabel("AUC")
    axes[0].grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize="small")
    figure.suptitle(table.title)
    return [save(figure, directory / "training_fraction.png")]


# ------------------------------------------------------------------------------------------------
# nplm-power: Metzger, Grosso, Harris et al. 2025


def _injection_fractions(ctx: StudyContext) -> list[float]:
    # ci's toys are a few dozen events: it injects more to put events into them at all.
    return [0.2, 0.1] if ctx.scale == "ci" else [0.01, 0.005, 0.001]


def _injections(ctx: StudyContext) -> list[int]:
    data_events = ctx.config.nplm.data_events
    return list(dict.fromkeys(max(1, round(f * data_events)) for f in _injection_fractions(ctx)))


def _nplm_build(ctx: StudyContext) -> StudyPlan:
    if not ctx.processes:
        raise UserError(
            "nplm-power needs signal events (label 1) in the data to inject; combine the "
            "background with signal datasets (dclr combine, or several --data directories)"
        )
    if ctx.kind == "objects":
        grid: dict[str, list[Any]] = {
            "loss.name": ["ntxent", "supcon"],
            "model.latent_dim": _by_scale(ctx, [4], [4, 8], [4, 8, 16]),
        }
        fixed: list[tuple[str, Any]] = [("loss.supcon_label", "process_id")]
    else:  # dijets have no SM process labels: SimCLR only
        grid = {
            "loss.name": ["ntxent"],
            "model.latent_dim": _by_scale(ctx, [8], [8, 32], [8, 32, 128]),
        }
        fixed = []
    names = {"ntxent": "SimCLR", "supcon": "SupCon"}
    encoders = _grid_encoders(
        grid,
        lambda v: f"{names.get(v['loss.name'], v['loss.name'])}, latent {v['model.latent_dim']}",
    )
    overrides = (("nplm.feature_sets", ["latent"]), ("nplm.signal_events", _injections(ctx)))
    evaluations = [
        Evaluation(f"nplm/{slug(e.label)}", "nplm", e.label, overrides) for e in encoders
    ]
    evaluations += _untrained_evals(encoders, "model.latent_dim", "nplm", overrides, "nplm")
    evaluations.append(
        Evaluation(
            "nplm/raw",
            "nplm",
            untrained_label(encoders[0].label),
            (("nplm.feature_sets", ["event"]), overrides[1]),
        )
    )
    fixed.append(("sample.pretrain.signal_to_background", 0.0))
    return StudyPlan(grid=grid, encoders=encoders, evaluations=evaluations, fixed=tuple(fixed))


def _nplm_sources(results: StudyResults) -> list[tuple[str, str, str]]:
    rows = [(e.label, f"nplm/{slug(e.label)}", "latent") for e in results.plan.encoders]
    rows += [
        (
            f"untrained, latent {e.values['model.latent_dim']}",
            f"nplm/untrained-{slug(e.label)}",
            "latent",
        )
        for e in results.plan.encoders
        if f"nplm/untrained-{slug(e.label)}" in results.evaluations
    ]
    rows.append((RAW, "nplm/raw", "event"))
    return rows


def _nplm_tables(results: StudyResults) -> list[ReportTable]:
    sources = _nplm_sources(results)
    first = results.summary(sources[0][1])
    processes = sorted(first["results"]["latent"]["signals"])
    injections = _injections(results.context)
    data_events = results.context.config.nplm.data_events
    tables = []
    for process in processes:
        columns = [f"P(Z>3) at {n} ({n / data_events:.2%})" for n in injections]
        columns += [f"median Z at {n}" for n in injections]
        table = ReportTable(
            f"power-{process}",
            f"NPLM discovery power, signal {process}",
            columns,
            caption=f"Toys of Poisson({data_events}) background events with n signal events "
            f"injected, against a reference of {results.context.config.nplm.reference_events}; "
            "power with its 68% Clopper-Pearson interval.",
            published=f"nplm-power/{process}",
        )
        for label, name, feature_set in sources:
            summary = results.summary(name)
            row: dict[str, Cell | str] = {}
            for n in injections:
                row[f"P(Z>3) at {n} ({n / data_events:.2%})"] = nplm_cell(
                    summary, feature_set, process, n
                )
                row[f"median Z at {n}"] = nplm_median_z(summary, feature_set, process, n)
            table.rows[label] = row
        tables.append(table)
    return tables


def _nplm_plots(results: StudyResults, directory: Path) -> list[Path]:
    sources = _nplm_sources(results)
    injections = _injections(results.context)
    tables = _nplm_tables(results)
    figure, axes = new_figure(len(tables), width=5.0)
    for ax, table in zip(axes, tables, strict=True):
        process = table.key.removeprefix("power-")
        for index, (label, name, feature_set) in enumerate(sources):
            cells = [nplm_cell(results.summary(name), feature_set, process, n) for n in injections]
            style = "--" if label.startswith("untrained") else ":" if label == RAW else "-"
            errorbar(
                ax, injections, cells, fmt="o" + style, capsize=2, color=f"C{index}", label=label
            )
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("signal events injected")
        ax.set_ylabel("P(Z > 3)")
        ax.set_title(process)
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize="small")
    return [save(figure, directory / "nplm_power.png")]


# ------------------------------------------------------------------------------------------------
# bumphunt: the closure and the injections


def _hunt_amounts(ctx: StudyContext) -> list[int]:
    signal = sum(split.get("signal", 0) for split in ctx.counts.values())
    if signal < 2:
        raise UserError("bumphunt needs signal events in the data to inject")
    wanted = _by_scale(ctx, [0, signal // 2], [0, 100, 300, 1000], [0, 300, 1000, 3000])
    return sorted({min(n, signal) for n in wanted})


def _hunt_build(ctx: StudyContext) -> StudyPlan:
    grid = {"model.latent_dim": [ctx.config.model.latent_dim]}
    encoders = _grid_encoders(grid, lambda v: f"latent {v['model.latent_dim']}")
    latent = (("evaluate.feature_sets", ["latent"]),)
    evaluations = [
        Evaluation("bumphunt/latent", "bumphunt", encoders[0].label, latent),
        Evaluation("bumphunt/untrained", "bumphunt", untrained_label(encoders[0].label), latent),
        Evaluation(
            "bumphunt/raw",
            "bumphunt",
            untrained_label(encoders[0].label),
            (("evaluate.feature_sets", ["event_frame", "highlevel"]),),
        ),
    ]
    fixed = (
        ("sample.pretrain.signal_to_background", 0.0),
        ("model.inputs", "jet_frame"),
        ("sample.bumphunt.signal", _hunt_amounts(ctx)),
    )
    return StudyPlan(grid=grid, encoders=encoders, evaluations=evaluations, fixed=fixed)


def _hunt_sources(results: StudyResults) -> list[tuple[str, str, str]]:
    label = results.plan.encoders[0].label
    return [
        (f"{label} (background-only)", "bumphunt/latent", "latent"),
        (f"untrained {label}", "bumphunt/untrained", "latent"),
        ("event frame", "bumphunt/raw", "event_frame"),
        ("high-level (m_J, tau21)", "bumphunt/raw", "highlevel"),
    ]


def _hunt_tables(results: StudyResults) -> list[ReportTable]:
    config = results.context.config
    efficiencies = config.evaluate.bumphunt.efficiencies
    amounts = list(dict(results.plan.fixed)["sample.bumphunt.signal"])
    columns = [f"Z, eff {e:g}" for e in efficiencies] + [
        f"true S/sqrt(B), eff {min(efficiencies):g}"
    ]
    table = ReportTable(
        "zvsn",
        "CWoLa bump hunt: Z against injected signal (0: the closure test)",
        columns,
        caption="Z: the local significance of the signal-region excess over the sideband fit "
        "with the fit's uncertainty profiled, mean over seeds (band: +- the spread). With no "
        "signal injected no cut may show |Z| >= 2. Encoder inputs in the jet frame (m_jj-blind).",
    )
    for label, name, feature_set in _hunt_sources(results):
        summary = results.summary(name)
        for n in amounts:
            row: dict[str, Cell | str] = {}
            for e in efficiencies:
                row[f"Z, eff {e:g}"] = hunt_cell(
                    summary, feature_set, e, n, "significance_with_uncertainty"
                )
            row[columns[-1]] = hunt_cell(
                summary, feature_set, min(efficiencies), n, "s_over_sqrt_b"
            )
            table.rows[f"{label}, N={n}"] = row
    return [table]


def _hunt_plots(results: StudyResults, directory: Path) -> list[Path]:
    config = results.context.config
    efficiencies = config.evaluate.bumphunt.efficiencies
    amounts = list(dict(results.plan.fixed)["sample.bumphunt.signal"])
    figure, axes = new_figure(len(efficiencies), width=4.5)
    for ax, e in zip(axes, efficiencies, strict=True):
        for index, (label, name, feature_set) in enumerate(_hunt_sources(results)):
            cells = [
                hunt_cell(results.summary(name), feature_set, e, n, "significance_with_uncertainty")
                for n in amounts
            ]
            errorbar(ax, amounts, cells, fmt="o-", capsize=2, color=f"C{index}", label=label)
        ax.axhspan(-2, 2, color="grey", alpha=0.15)
        ax.set_xlabel("signal events injected")
        ax.set_ylabel("Z")
        ax.set_title(f"cut keeping {e:g}")
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize="small")
    return [save(figure, directory / "bumphunt.png")]


# ------------------------------------------------------------------------------------------------

STUDIES: dict[str, StudyDef] = {
    study.name: study
    for study in (
        StudyDef(
            "augmentation-ablation",
            "Augmentation ablation",
            "dillon2023",
            "Table I, Fig. 6",
            ("dijet",),
            _ablation_build,
            _ablation_tables,
            _ablation_plots,
            "all five augmentations and each one left out, latent 128; FCN AUC and max SIC "
            "on the balanced test set",
        ),
        StudyDef(
            "latent-dim",
            "Latent size",
            "dillon2023",
            "Table II, Figs. 7 and 10",
            ("dijet",),
            _latent_build,
            _latent_tables,
            _latent_plots,
            "latent 8 to 512; LCT and FCN on the latent and the event space, Trans+BC",
        ),
        StudyDef(
            "pretrain-signal-fraction",
            "Signal in pretraining",
            "dillon2023",
            "Figs. 8 and 11",
            ("dijet",),
            _signal_fraction_build,
            _signal_fraction_tables,
            _signal_fraction_plots,
            "S/B in pretraining from 1 to 0, latent 128 and 48",
        ),
        StudyDef(
            "cwola-scan",
            "Idealised CWoLa scan",
            "dillon2023",
            "Fig. 9",
            ("dijet",),
            _cwola_build,
            _cwola_tables,
            _cwola_plots,
            "background-only encoders (latent 128, 48) and the event space; signal "
            "fraction 1e-3 to 1; AUC, max SIC, FPR at TPR 0.5 and f*",
        ),
        StudyDef(
            "training-fraction",
            "Labelled training data",
            "dillon2023",
            "App. B, Fig. 12",
            ("dijet",),
            _training_fraction_build,
            _training_fraction_tables,
            _training_fraction_plots,
            "FCN and Trans+BC against the amount of labelled data",
        ),
        StudyDef(
            "nplm-power",
            "NPLM discovery power",
            "metzger2025",
            "the NPLM power results",
            ("objects", "dijet"),
            _nplm_build,
            _nplm_tables,
            _nplm_plots,
            "raw inputs vs SimCLR vs SupCon at several latent sizes; P(Z>3) at 1%, 0.5% "
            "and 0.1% injection per signal",
        ),
        StudyDef(
            "bumphunt",
            "CWoLa bump hunt",
            "dillon2023",
            "Sec. V (the bump hunt)",
            ("dijet",),
            _hunt_build,
            _hunt_tables,
            _hunt_plots,
            "closure on background only and Z against injected signal, per feature set",
        ),
    )
}
"""Every study, by its command-line name."""


def get_study(name: str) -> StudyDef:
    try:
        return STUDIES[name]
    except KeyError:
        raise UserError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}") from None
