"""What does contrastive pretraining add? The representation benchmark.

One test set, scored with the linear classifier (LCT) and the FCN on

* ``trained``: the latent space of the pretrained encoder (the checkpoint the run keeps);
* ``untrained``: the same architecture with the weights the run started from
  (``dclr pretrain --untrained``), i.e. what the architecture gives for free;
* ``event``: the flattened constituents (the event space);
* ``highlevel``: jet masses, N-subjettiness ratios (what a physicist would cut on);

with the 68% bootstrap interval of AUC and max SIC over the test events next to the spread
over the classifier seeds. Two curves follow:

* **epochs**: the latent space of the checkpoint after each of ``--curve-epochs`` epochs (every
  epoch by default), the untrained encoder at 0;
* **events**: pretraining on a fraction of the train split (``--fractions``; signal and
  background scaled together through ``sample.pretrain``), the learning curve that shows
  whether more data helps;
* **latent**: the trained and the untrained latent space at other latent sizes
  (``--latent-dims``, ``model.latent_dim``; the main run is the config's size).

The figure of merit printed last is the gap trained minus untrained in the latent FCN AUC
(and whether their bootstrap intervals overlap), and the latent LCT against the event LCT (the
seed paper's ordering).

Every stage goes through the package (``generate``, ``prepare``, ``pretrain``, ``embed``,
``evaluate.classify``) and records itself in ``--out``: a rerun reuses what is finished. The
pretraining runs and the evaluations are logged to MLflow (``tracking`` section).

Run (default size: 24,000 QCD and 16,000 W' generated, about 20,000 and 11,000 dijets, the
``demo`` preset; the train split, about 60%, is the pretraining sample, S/B about 0.55, nearer
the paper's S/B = 1 than a rare signal)::

    .venv/bin/python benchmarks/representation.py --out rep_bench
    .venv/bin/python benchmarks/representation.py --out rep_bench --preset paper_lhco \\
        --set train.epochs=10 --set train.batch_size=256 --name paper
    .venv/bin/python benchmarks/representation.py --out rep_bench --data prepared_dijets

Writes ``<out>/<name>/results.json``, ``results.csv`` and ``plots/{epochs,events,latent}.png``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from distributed_clr.checkpoint import load_checkpoint
from distributed_clr.config import RunConfig, apply_overrides, config_digest, get_preset
from distributed_clr.config.schema import Representation
from distributed_clr.data.generate import generate
from distributed_clr.data.prepare import prepare
from distributed_clr.embed import embed
from distributed_clr.evaluate import classify
from distributed_clr.runtime import init_ray
from distributed_clr.storage.files import atomic_write_text
from distributed_clr.train import pretrain, untrained

log = logging.getLogger("representation")

PROCESSES = (("qcd_dijet", "qcd_events", 0), ("wprime_xy", "signal_events", 1))
METRICS = ("auc", "auc_low", "auc_high", "max_sic", "max_sic_low", "max_sic_high")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="working directory")
    parser.add_argument("--name", default="default", help="name of this configuration's results")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run nothing: print one row per configuration already measured under --out",
    )
    parser.add_argument("--preset", default="demo", help="the run configuration to start from")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    parser.add_argument(
        "--data", type=Path, help="a prepared dijet dataset (default: generate one in --out)"
    )
    parser.add_argument("--qcd-events", type=int, default=24_000, help="QCD events to generate")
    parser.add_argument("--signal-events", type=int, default=16_000, help="W' events to generate")
    parser.add_argument("--seed", type=int, default=31, help="generation seed (signal: seed+1)")
    parser.add_argument(
        "--representation",
        choices=["encoder", "head1", "head"],
        help="the layer embedded for the latent rows (default: the config's model.representation)",
    )
    parser.add_argument(
        "--curve-epochs",
        default="all",
        help="epochs (1-based, comma separated) of the epochs curve; 'all' or 'none'",
    )
    parser.add_argument(
        "--fractions",
        default="0.25,0.5",
        help="fractions of the pretraining sample for the events curve ('none' to skip); "
        "the full sample is the main run",
    )
    parser.add_argument(
        "--latent-dims",
        default="8,128",
        help="other latent sizes for the latent curve, comma separated ('none' to skip); "
        "each is pretrained and also scored untrained",
    )
    return parser.parse_args(argv)


def _dataset(args: argparse.Namespace, config: RunConfig) -> Path:
    """The prepared dijets: ``--data``, or generated and prepared under ``--out`` (the raw
    events are shared by every configuration, the dijets by those with the same ``prepare``
    section; pass ``--data`` to compare presets with different jets on the same dijets)."""
    if args.data is not None:
        return Path(args.data)
    raw = []
    for process, count, offset in PROCESSES:
        gen = apply_overrides(
            config,
            [
                ("generate.process", process),
                ("generate.events", getattr(args, count)),
                ("generate.seed", args.seed + offset),
                ("generate.shards", 8 if offset == 0 else 4),
            ],
        )
        generate(gen.generate, args.out / "data" / process, config.ray)
        raw.append(args.out / "data" / process)
    # One prepared dataset per prepare setting (a preset with other jets gets its own).
    settings = json.dumps(config.prepare.model_dump(mode="json"), sort_keys=True)
    dijets: Path = args.out / "data" / f"dijets-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"
    prepare(raw, dijets, config.prepare, config.ray)
    return dijets


def _scores(summary: dict[str, Any], feature_set: str) -> dict[str, dict[str, float]]:
    """{classifier: {metric: value}} of one feature set in a classify summary."""
    out: dict[str, dict[str, float]] = {}
    for key, entry in summary.get("results", {}).items():
        features, _, classifier = key.partition("/")
        if features != feature_set:
            continue
        aggregate = entry["aggregate"]
        row = {m: float(aggregate[m]["mean"]) for m in METRICS if m in aggregate}
        row.update(
            {f"{m}_std": float(aggregate[m]["std"]) for m in ("auc", "max_sic") if m in aggregate}
        )
        out[classifier] = row
    return out


class Bench:
    """One configuration's benchmark under ``<out>/<name>``."""

    def __init__(
        self, config: RunConfig, data: Path, out: Path, representation: Representation | None
    ) -> None:
        self.config, self.data, self.out = config, data, out
        self.representation = representation
        self.timings: dict[str, float] = {}

    def _timed(self, label: str, start: float) -> None:
        self.timings[label] = self.timings.get(label, 0.0) + time.perf_counter() - start

    def latent(
        self,
        checkpoint: Path,
        where: Path,
        feature_sets: list[str],
        run_id: str | None,
        config: RunConfig | None = None,
    ) -> dict[str, Any]:
        """Embed the train and test splits with ``checkpoint`` and classify them (with the
        benchmark's config, or ``config`` for a variant such as another latent size)."""
        config = config or self.config
        start = time.perf_counter()
        embed(
            checkpoint,
            self.data,
            where / "embeddings",
            config.ray,
            splits=["train", "test"],
            representation=self.representation,
        )
        self._timed("embed", start)
        start = time.perf_counter()
        evaluate = config.evaluate.model_copy(update={"feature_sets": feature_sets})
        summary = classify(
            evaluate,
            where / "embeddings",
            self.data,
            where / "classify",
            model=config.model,
            mlflow_run_id=run_id,
            tracking=config.tracking,
            sample=config.sample,
        )
        self._timed("classify", start)
        return summary

    def pretrain(self, config: RunConfig, label: str) -> Any:
        start = time.perf_counter()
        result = pretrain(config, self.data, f"repbench-{label}-{config_digest(config)}")
        self._timed("pretrain", start)
        return result


def _epoch_checkpoints(storage: str) -> dict[int, Path]:
    """{epoch (1-based): checkpoint directory} of every checkpoint a run kept."""
    found = {}
    for state in sorted(Path(storage).glob("*/state.pt")):
        found[int(load_checkpoint(state.parent)["train_state"].epoch) + 1] = state.parent
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = apply_overrides(get_preset(args.preset), args.set)
    # Keep every epoch's checkpoint (the epochs curve); the Trans+BC baseline is not part of
    # this benchmark.
    config = apply_overrides(
        config,
        [
            ("train.checkpoint.keep", config.train.epochs),
            ("evaluate.trans_bc.enabled", False),
            ("evaluate.classifiers", ["lct", "fcn"]),
            ("ray.storage_path", str((args.out / "ray_results").resolve())),
        ],
    )
    init_ray(
        config.ray, min_cpus=math.ceil(config.ray.num_workers * config.ray.cpus_per_worker) + 1
    )
    start = time.perf_counter()
    data = _dataset(args, config)
    data_seconds = time.perf_counter() - start
    out = args.out / args.name
    bench = Bench(config, data, out, args.representation)

    trained = bench.pretrain(config, "full")
    run_id = trained.mlflow_run_id
    results: dict[str, Any] = {
        "config_digest": config_digest(config),
        "preset": args.preset,
        "overrides": args.set,
        "representation": args.representation or config.model.representation,
        "data": str(data),
        "composition": trained.composition,
        "kept_epoch": trained.best_epoch + 1,
        "selection_metric": trained.selection_metric,
        "history": trained.history,
        "mlflow_run_id": run_id,
    }
    summary = bench.latent(
        Path(trained.best_checkpoint), out / "trained", ["latent", "event", "highlevel"], run_id
    )
    initial = untrained(config, data, out / "untrained" / "checkpoint")
    base = bench.latent(initial, out / "untrained", ["latent"], run_id)
    results["table"] = {
        "trained": _scores(summary, "latent"),
        "untrained": _scores(base, "latent"),
        "event": _scores(summary, "event"),
        "highlevel": _scores(summary, "highlevel"),
    }
    results["test_events"] = summary.get("test_events", summary.get("splits"))

    results["epochs"] = {0: results["table"]["untrained"]}
    if args.curve_epochs != "none":
        kept = _epoch_checkpoints(trained.storage)
        wanted = sorted(kept) if args.curve_epochs == "all" else _ints(args.curve_epochs)
        for epoch in wanted:
            if epoch not in kept:
                log.warning("no checkpoint of epoch %d (kept: %s)", epoch, sorted(kept))
                continue
            if kept[epoch] == Path(trained.best_checkpoint):
                results["epochs"][epoch] = results["table"]["trained"]
                continue
            scored = bench.latent(kept[epoch], out / "epochs" / str(epoch), ["latent"], run_id)
            results["epochs"][epoch] = _scores(scored, "latent")

    full = trained.composition["train"]
    results["events"] = {int(full["events"]): results["table"]["trained"]}
    if args.fractions != "none":
        for fraction in (float(f) for f in args.fractions.split(",")):
            background = round(fraction * full["background"])
            signal = round(fraction * full["signal"])
            smaller = apply_overrides(
                config,
                [("sample.pretrain.background", background), ("sample.pretrain.signal", signal)],
            )
            result = bench.pretrain(smaller, f"f{fraction:g}")
            scored = bench.latent(
                Path(result.best_checkpoint),
                out / "events" / f"{fraction:g}",
                ["latent"],
                result.mlflow_run_id,
            )
            results["events"][int(result.composition["train"]["events"])] = _scores(
                scored, "latent"
            )
    dim = config.model.latent_dim
    results["latent"] = {
        dim: {"trained": results["table"]["trained"], "untrained": results["table"]["untrained"]}
    }
    if args.latent_dims != "none":
        for size in _ints(args.latent_dims):
            if size == dim:
                continue
            sized = apply_overrides(config, [("model.latent_dim", size)])
            result = bench.pretrain(sized, f"d{size}")
            where = out / "latent" / str(size)
            scored = bench.latent(
                Path(result.best_checkpoint), where / "trained", ["latent"], result.mlflow_run_id,
                sized,
            )  # fmt: skip
            initial_sized = untrained(sized, data, where / "untrained" / "checkpoint")
            scored_base = bench.latent(
                initial_sized, where / "untrained", ["latent"], result.mlflow_run_id, sized
            )
            results["latent"][size] = {
                "trained": _scores(scored, "latent"),
                "untrained": _scores(scored_base, "latent"),
            }
    results["timings"] = {"data": data_seconds, **bench.timings}
    _write(out, results)
    return results


def _ints(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def _cell(row: dict[str, float], metric: str, digits: int = 3) -> str:
    if metric not in row:
        return "-"
    return (
        f"{row[metric]:.{digits}f} +- {row.get(metric + '_std', 0.0):.{digits}f} "
        f"[{row.get(metric + '_low', math.nan):.{digits}f}, "
        f"{row.get(metric + '_high', math.nan):.{digits}f}]"
    )


def report(results: dict[str, Any]) -> str:
    """The table, the curves and the figures of merit as text."""
    lines = [
        (
            f"pretraining sample: {results['composition'].get('train')}; kept epoch "
            f"{results['kept_epoch']} by {results['selection_metric']}"
        ),
        "",
        f"{'features / classifier':24s} {'AUC (mean +- std [68% bootstrap])':36s} max SIC",
    ]
    for features, scores in results["table"].items():
        for classifier, row in scores.items():
            lines.append(
                f"{features + '/' + classifier:24s} {_cell(row, 'auc'):36s} "
                f"{_cell(row, 'max_sic', 2)}"
            )
    for curve, label in (("epochs", "epoch"), ("events", "pretraining events")):
        lines += ["", f"latent AUC against {label} (LCT, FCN):"]
        for key in sorted(results[curve], key=int):
            row = results[curve][key]
            lines.append(
                f"  {label} {key:>6}: LCT {row.get('lct', {}).get('auc', math.nan):.3f}  "
                f"FCN {row.get('fcn', {}).get('auc', math.nan):.3f}"
            )
    lines += ["", "latent AUC against latent size (trained / untrained; LCT, FCN):"]
    for key in sorted(results.get("latent", {}), key=int):
        pair = results["latent"][key]
        cells = [
            f"{pair[which].get(c, {}).get('auc', math.nan):.3f}"
            for c in ("lct", "fcn")
            for which in ("trained", "untrained")
        ]
        lines.append(f"  latent {key:>4}: LCT {cells[0]} / {cells[1]}  FCN {cells[2]} / {cells[3]}")
    table = results["table"]
    trained, base = table["trained"]["fcn"], table["untrained"]["fcn"]
    overlap = trained["auc_low"] <= base["auc_high"] and base["auc_low"] <= trained["auc_high"]
    lines += [
        "",
        (
            f"trained - untrained latent FCN AUC: {trained['auc'] - base['auc']:+.3f} "
            f"(ratio {trained['auc'] / base['auc']:.3f}; bootstrap intervals "
            f"{'overlap' if overlap else 'do not overlap'})"
        ),
        (
            "latent LCT - event LCT AUC: "
            f"{table['trained']['lct']['auc'] - table['event']['lct']['auc']:+.3f}"
        ),
        "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["timings"].items()),
    ]
    return "\n".join(lines) + "\n"


def _write(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=str))
    rows = []
    for section in ("table", "epochs", "events"):
        for key, scores in results[section].items():
            for classifier, row in scores.items():
                rows.append({"section": section, "key": key, "classifier": classifier, **row})
    for size, pair in results.get("latent", {}).items():
        for which, scores in pair.items():
            for classifier, row in scores.items():
                rows.append(
                    {"section": f"latent_{which}", "key": size, "classifier": classifier, **row}
                )
    fields = sorted(
        {k for row in rows for k in row},
        key=lambda k: (k not in ("section", "key", "classifier"), k),
    )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", text.getvalue())
    _plots(out / "plots", results)


def _plots(where: Path, results: dict[str, Any]) -> None:
    from matplotlib.figure import Figure

    from distributed_clr.plotting import save_figure

    where.mkdir(parents=True, exist_ok=True)
    table = results["table"]
    for curve, xlabel, log_x in (
        ("epochs", "epochs trained (0: untrained)", False),
        ("events", "pretraining events", True),
    ):
        fig = Figure(figsize=(10, 4))
        axes = fig.subplots(1, 2)
        keys = sorted(results[curve], key=int)
        xs = [int(k) for k in keys]
        for ax, classifier in zip(axes, ("lct", "fcn"), strict=True):
            rows = [results[curve][k].get(classifier, {}) for k in keys]
            mean = [r.get("auc", math.nan) for r in rows]
            low = [r.get("auc", math.nan) - r.get("auc_low", math.nan) for r in rows]
            high = [r.get("auc_high", math.nan) - r.get("auc", math.nan) for r in rows]
            ax.errorbar(xs, mean, yerr=[low, high], marker="o", capsize=3, label="latent")
            for name, style in (("untrained", ":"), ("event", "--"), ("highlevel", "-.")):
                value = table.get(name, {}).get(classifier, {}).get("auc")
                if value is not None:
                    ax.axhline(value, linestyle=style, color="gray", label=name)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"test AUC ({classifier.upper()})")
            if log_x:
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"latent AUC against {curve} (68% bootstrap intervals)")
        fig.tight_layout()
        save_figure(fig, where / f"{curve}.png")
    _latent_plot(where, results)


def _latent_plot(where: Path, results: dict[str, Any]) -> None:
    """Trained and untrained latent AUC against the latent size."""
    from matplotlib.figure import Figure

    from distributed_clr.plotting import save_figure

    sizes = sorted(results.get("latent", {}), key=int)
    if len(sizes) < 2:
        return
    table = results["table"]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, classifier in zip(axes, ("lct", "fcn"), strict=True):
        for which, marker in (("trained", "o"), ("untrained", "s")):
            rows = [results["latent"][k][which].get(classifier, {}) for k in sizes]
            mean = [r.get("auc", math.nan) for r in rows]
            low = [r.get("auc", math.nan) - r.get("auc_low", math.nan) for r in rows]
            high = [r.get("auc_high", math.nan) - r.get("auc", math.nan) for r in rows]
            ax.errorbar(
                [int(k) for k in sizes],
                mean,
                yerr=[low, high],
                marker=marker,
                capsize=3,
                label=which,
            )
        for name, style in (("event", "--"), ("highlevel", "-.")):
            value = table.get(name, {}).get(classifier, {}).get("auc")
            if value is not None:
                ax.axhline(value, linestyle=style, color="gray", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("latent size")
        ax.set_ylabel(f"test AUC ({classifier.upper()})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("latent AUC against latent size (68% bootstrap intervals)")
    fig.tight_layout()
    save_figure(fig, where / "latent.png")


def compare(out: Path) -> str:
    """One row per configuration measured under ``out``: latent AUCs trained and untrained,
    their gap, and the event-space and high-level references."""
    header = (
        f"{'name':14s} {'epochs':>6s} {'lat LCT':>8s} {'lat FCN':>8s} {'untr LCT':>8s} "
        f"{'untr FCN':>8s} {'FCN gap':>8s} {'evt LCT':>8s} {'evt FCN':>8s} {'HL FCN':>8s}  settings"
    )
    lines = [header]
    for path in sorted(out.glob("*/results.json"), key=lambda p: p.stat().st_mtime):
        results = json.loads(path.read_text())
        table = results["table"]

        def auc(features: str, classifier: str, table: dict[str, Any] = table) -> float:
            return float(table.get(features, {}).get(classifier, {}).get("auc", math.nan))

        settings = " ".join(results.get("overrides", []))
        if results.get("preset") != "demo":
            settings = f"--preset {results.get('preset')} {settings}"
        if results.get("representation") not in (None, "head1"):
            settings += f" representation={results['representation']}"
        lines.append(
            f"{path.parent.name:14s} {len(results['history']):>6d} {auc('trained', 'lct'):8.3f} "
            f"{auc('trained', 'fcn'):8.3f} {auc('untrained', 'lct'):8.3f} "
            f"{auc('untrained', 'fcn'):8.3f} "
            f"{auc('trained', 'fcn') - auc('untrained', 'fcn'):+8.3f} {auc('event', 'lct'):8.3f} "
            f"{auc('event', 'fcn'):8.3f} {auc('highlevel', 'fcn'):8.3f}  {settings}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    args = _parse(argv)
    if args.compare:
        sys.stdout.write(compare(args.out))
        return 0
    results = run(args)
    sys.stdout.write(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
