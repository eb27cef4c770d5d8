"""A study's report: ``report.md``, ``report.html`` (plots inline), ``results.csv`` (every
number) and ``plots/``, in ``<study directory>/report``.

Every table puts the published number (``published.yaml``) next to ours where the paper has
one, and says where each comes from; the report states that our events are generated, so the
comparison is of shape and ordering. It also lists the setup (scale, data, samples, config
digest), the pretraining runs, every piece with its run time and the exact command that
reproduces it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from distributed_clr.config.load import config_digest
from distributed_clr.storage.files import atomic_write_text
from distributed_clr.studies.plan import Cell, ReportTable, StudyDef, StudyResults

__all__ = ["Report", "format_cell", "layout", "published", "write_report"]

CAVEAT = (
    "Our events are generated with Pythia 8 and a parametric detector, not the papers' samples, "
    "and the scale sets their number: compare the shape and ordering of the results with the "
    "published ones (which representation wins, how a metric moves along a scan), not their "
    "absolute values."
)


@dataclass
class Report:
    directory: Path
    markdown: Path
    html: Path
    csv: Path
    plots: list[Path] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)


@cache
def published() -> dict[str, Any]:
    """The published numbers (``published.yaml``)."""
    text = resources.files("distributed_clr.studies").joinpath("published.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _published_table(key: str | None) -> dict[str, Any] | None:
    if key is None:
        return None
    entry: dict[str, Any] | None = published()["tables"].get(key)
    return entry


def _lookup(entry: Mapping[str, Any] | None, row: str, column: str) -> Mapping[str, Any] | None:
    if entry is None:
        return None
    for value in entry.get("values") or []:
        if str(value["row"]) == row and str(value["column"]) == column:
            return value  # type: ignore[no-any-return]
    return None


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "nan"
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-2 or magnitude >= 1e4):
        return f"{value:.2g}"
    return f"{value:.3f}" if magnitude < 10 else f"{value:.1f}"


def format_cell(cell: Cell | str) -> str:
    """'0.912 [0.905, 0.919]', '< 0.001', 'n/a' or the text."""
    if isinstance(cell, str):
        return cell
    if not math.isfinite(cell.value):
        return cell.note or "nan"
    text = _number(cell.value)
    if cell.note in ("<", ">"):
        text = f"{cell.note} {text}"
    if math.isfinite(cell.low) and math.isfinite(cell.high) and cell.note not in ("<", ">"):
        text += f" [{_number(cell.low)}, {_number(cell.high)}]"
    elif cell.note and cell.note not in ("<", ">"):
        text += f" ({cell.note})"
    return text


def layout(table: ReportTable) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows and footnotes of a table with published columns inserted."""
    entry = _published_table(table.published)
    published_columns = {
        column
        for column in table.columns
        for row in table.rows
        if _lookup(entry, row, column) is not None
    }
    header = [""]
    for column in table.columns:
        header.append(column)
        if column in published_columns:
            header.append(f"{column} (paper)")
    rows = []
    sources: dict[str, int] = {}
    for row_label, row in table.rows.items():
        cells = [row_label]
        for column in table.columns:
            cells.append(format_cell(row.get(column, Cell(math.nan, note="missing"))))
            if column in published_columns:
                value = _lookup(entry, row_label, column)
                if value is None:
                    cells.append("")
                    continue
                source = f"{value.get('where')}; {value.get('source')}"
                if value.get("file"):
                    source += f" ({value['file']})"
                if value.get("note"):
                    source += f", {value['note']}"
                if not value.get("checked", True):
                    source += "; not yet checked against the paper"
                mark = sources.setdefault(source, len(sources) + 1)
                # As published: the paper's (or the authors' code's) own precision.
                cells.append(f"{float(value['value']):g} [{mark}]")
        rows.append(cells)
    notes = [f"[{n}] {source}" for source, n in sources.items()]
    if (entry is not None and entry.get("status") and not entry.get("values")) or (
        entry is not None and entry.get("status")
    ):
        notes.append(f"Published numbers: {entry['status'].strip()}.")
    return header, rows, notes


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _csv_rows(study: str, tables: Sequence[ReportTable]) -> list[dict[str, Any]]:
    out = []
    for table in tables:
        entry = _published_table(table.published)
        for row_label, row in table.rows.items():
            for column in table.columns:
                cell = row.get(column, Cell(math.nan, note="missing"))
                value = _lookup(entry, row_label, column)
                if isinstance(cell, str):
                    cell = Cell(math.nan, note=cell)
                out.append(
                    {
                        "study": study,
                        "table": table.key,
                        "row": row_label,
                        "column": column,
                        "value": cell.value,
                        "low": cell.low,
                        "high": cell.high,
                        "std": cell.std,
                        "note": cell.note,
                        "published": "" if value is None else value["value"],
                        "published_where": "" if value is None else value.get("where", ""),
                        "published_source": "" if value is None else value.get("source", ""),
                    }
                )
    return out


def _setup_lines(
    results: StudyResults, pieces: Mapping[str, Any], digest: str | None
) -> list[tuple[str, str]]:
    context, config = results.context, results.context.config
    splits = ", ".join(
        f"{split}: {c['background']} background + {c['signal']} signal"
        for split, c in sorted(context.counts.items())
    )
    training = (
        f"{config.train.epochs} epochs, batch {config.train.batch_size} x "
        f"{config.ray.num_workers} worker(s), {config.train.optimizer.name} lr "
        f"{config.train.optimizer.lr:g}, loss {config.loss.name} at T {config.loss.temperature:g}"
    )
    classifiers = (
        f"{config.evaluate.repeats} repeats, FCN {config.evaluate.fcn.hidden} up to "
        f"{config.evaluate.fcn.epochs} epochs, {config.evaluate.bootstrap} bootstrap replicates"
    )
    lines = [
        ("scale", context.scale),
        ("data", f"{context.data} ({context.kind}; {splits})"),
        ("signal processes", ", ".join(context.processes) or "none"),
        (
            "study digest (its config apart from ray and tracking, and the data's shards)",
            digest or config_digest(config),
        ),
        ("encoder", _encoder_text(config)),
        ("training", training),
        ("classifiers", classifiers),
    ]
    return lines


def _encoder_text(config: Any) -> str:
    model = config.model
    if model.name == "mlp":
        return f"MLP {model.mlp_hidden} -> latent (varied where the study varies it)"
    return (
        f"{model.name}, depth {model.depth}, {model.heads} heads, inputs {model.inputs}, "
        f"latent {model.latent_dim} (unless the study varies it)"
    )


def _samples(results: StudyResults) -> list[list[str]]:
    """Per evaluation: the events each role drew (from its summary)."""
    rows = []
    for name, summary in results.evaluations.items():
        composition = summary.get("composition") or {}
        parts = []
        for role, drawn in composition.items():
            if isinstance(drawn, Mapping) and "background" in drawn:
                parts.append(f"{role}: {drawn.get('background', 0)} b + {drawn.get('signal', 0)} s")
        pools = summary.get("pools")
        if isinstance(pools, Mapping):
            parts.append(
                ", ".join(f"{k}: {v}" for k, v in pools.items() if isinstance(v, int | float))
            )
        rows.append([name, "; ".join(parts) or "-"])
    return rows


def _pretraining(results: StudyResults) -> list[list[str]]:
    rows = []
    for label, facts in results.encoders.items():
        rows.append(
            [
                label,
                str(facts.get("epochs", "")),
                str(facts.get("best_epoch", "")),
                (
                    f"{facts.get('selection_metric', '')} "
                    f"{_number(float(facts.get('best_value', math.nan)))}"
                ),
                str(facts.get("mlflow_run_id") or "-"),
            ]
        )
    return rows


def _commands(
    results: StudyResults, pieces: Mapping[str, Any], command: str, directory: Path
) -> list[str]:
    lines = [f"# the study\n{command}" if command else "# the study: run through the Python API"]
    data = results.context.data
    sweep = next((p.get("run_name") for p in pieces.values() if p.get("kind") == "pretrain"), "")
    if sweep:
        lines.append(
            f"# the pretraining grid alone (Ray Tune; the same name resumes the study's sweep)\n"
            f"dclr tune --space {directory / 'pretrain_space.yaml'} --data {data} --name "
            f"{str(sweep).rsplit('-', 1)[0]} --config {directory / 'config.yaml'}"
        )
    for name, piece in pieces.items():
        if piece.get("kind") == "embed":
            continue
        if piece.get("kind") == "evaluate":
            stage = piece.get("stage")
            action = {
                "classify": "classify",
                "cwola": "cwola",
                "bumphunt": "cwola --mode bumphunt",
                "nplm": "nplm",
            }.get(str(stage), str(stage))
            lines.append(
                f"# {name}\ndclr evaluate {action} --embeddings {piece['embeddings']} "
                f"--data {data} --out {piece['output']} --config {piece['config']}"
            )
    return lines


def _pieces(pieces: Mapping[str, Any]) -> list[list[str]]:
    return [
        [
            name,
            str(piece.get("kind", "")),
            _number(float(piece.get("seconds") or 0.0)),
            str(piece.get("finished", "")),
        ]
        for name, piece in pieces.items()
    ]


def write_report(
    study: StudyDef,
    results: StudyResults,
    directory: Path,
    pieces: Mapping[str, Any],
    *,
    command: str = "",
    seconds: float = math.nan,
    digest: str | None = None,
) -> Report:
    """Write the report of a finished study into ``directory / 'report'``."""
    out = directory / "report"
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    tables = study.tables(results)
    plots = study.plots(results, plots_dir)
    paper = published()["papers"][study.paper]
    name = results.context.config.tracking.experiment
    title = f"{study.title}: study `{study.name}` ({results.context.scale} scale)"
    intro = [
        f"Reproduces {study.reproduces} of {paper['citation'].strip()}.",
        f"What it runs: {study.description}.",
        CAVEAT,
    ]
    total = sum(float(p.get("seconds") or 0.0) for p in pieces.values())
    md: list[str] = [f"# {title}", "", *[f"{p}\n" for p in intro]]
    body_html: list[str] = [
        f"<h1>{html.escape(title)}</h1>",
        *(f"<p>{html.escape(p)}</p>" for p in intro),
    ]
    for table in tables:
        header, rows, notes = layout(table)
        md += [f"## {table.title}", "", table.caption, "", _markdown_table(header, rows), ""]
        md += [f"{note}  " for note in notes] + [""]
        body_html += [
            f"<h2>{html.escape(table.title)}</h2>",
            f"<p>{html.escape(table.caption)}</p>",
            _html_table(header, rows),
        ]
        body_html += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    md += ["## Plots", ""]
    body_html.append("<h2>Plots</h2>")
    for plot in plots:
        md += [f"![{plot.stem}](plots/{plot.name})", ""]
        encoded = base64.b64encode(plot.read_bytes()).decode()
        body_html.append(f"<img alt='{plot.stem}' src='data:image/png;base64,{encoded}'>")
    setup = _setup_lines(results, pieces, digest)
    md += ["## Setup", "", *[f"- **{k}**: {v}" for k, v in setup], ""]
    body_html += [
        "<h2>Setup</h2>",
        "<ul>",
        *(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in setup),
        "</ul>",
    ]
    pieces_heading = (
        f"Pieces and run times (sum {_number(total)} s; this invocation {_number(seconds)} s; "
        "a pretraining piece shows its share of the sweep's wall time)"
    )
    sections = [
        (
            "Pretraining runs",
            ["encoder", "epochs", "kept epoch", "selection metric", "MLflow run"],
            _pretraining(results),
        ),
        ("Samples of each evaluation", ["evaluation", "events drawn"], _samples(results)),
        (
            pieces_heading,
            ["piece", "kind", "seconds", "finished"],
            _pieces(pieces),
        ),
    ]
    for heading, header, rows in sections:
        md += [f"## {heading}", "", _markdown_table(header, rows), ""]
        body_html += [f"<h2>{html.escape(heading)}</h2>", _html_table(header, rows)]
    commands = _commands(results, pieces, command, directory)
    md += ["## Commands", "", "```bash", *commands, "```", ""]
    body_html += ["<h2>Commands</h2>", f"<pre>{html.escape(chr(10).join(commands))}</pre>"]
    md.append(f"MLflow experiment: {name}.")

    markdown = out / "report.md"
    atomic_write_text(markdown, "\n".join(md) + "\n")
    page = out / "report.html"
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
        ".note{font-size:85%;color:#444}"
    )
    document = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(body_html)}</body></html>\n"
    )
    atomic_write_text(page, document)
    table_csv = out / "results.csv"
    buffer = io.StringIO()
    rows_out = _csv_rows(study.name, tables)
    writer = csv.DictWriter(buffer, fieldnames=list(rows_out[0]) if rows_out else ["study"])
    writer.writeheader()
    writer.writerows(rows_out)
    atomic_write_text(table_csv, buffer.getvalue())
    return Report(out, markdown, page, table_csv, plots, tables)
