"""The ``dclr`` command: the only module that parses argv.

Each subcommand resolves a config (preset -> ``--config`` files -> ``--set`` overrides), then calls
one plain Python function of the package with the sub-config it needs. Results go to stdout,
logs to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distributed_clr import __version__
from distributed_clr.config import PRESETS, ConfigError, RunConfig, resolve_config, to_yaml
from distributed_clr.config.schema import Section
from distributed_clr.physics.pythia import GenerationError
from distributed_clr.storage.formats import SchemaError
from distributed_clr.storage.manifest import DatasetError, set_command
from distributed_clr.train.driver import PretrainError

log = logging.getLogger("distributed_clr")

EXIT_USAGE = 2


# ------------------------------------------------------------------------------------------------
# shared options


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="named base configuration (default: demo, or the 'preset:' key of a --config file)",
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        action="append",
        default=[],
        help="YAML file merged over the preset (repeatable; later files win)",
    )
    group.add_argument(
        "--set",
        metavar="KEY=VALUE",
        dest="overrides",
        action="append",
        default=[],
        help="dotted override, e.g. --set train.batch_size=4096 (repeatable; applied last)",
    )


def _config_from(args: argparse.Namespace, extra: Sequence[tuple[str, Any]] = ()) -> RunConfig:
    """The run's config; ``extra`` holds overrides from dedicated flags (they win over --set)."""
    return resolve_config(args.preset, args.config, [*args.overrides, *extra])


# ------------------------------------------------------------------------------------------------
# dclr config ...


def _cmd_config_show(args: argparse.Namespace) -> int:
    config = _config_from(args)
    sys.stdout.write(to_yaml(config))
    return 0


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    # Annotated[int, FieldInfo(...)] prints its metadata; the base type is what a user needs.
    while text.startswith("Annotated["):
        text = _type_name(typing.get_args(annotation)[0])
    return text


def _cmd_config_keys(args: argparse.Namespace) -> int:
    config = _config_from(args)

    def walk(prefix: str, section: Section) -> None:
        for name, field in type(section).model_fields.items():
            value = getattr(section, name)
            key = f"{prefix}.{name}" if prefix else name
            if isinstance(value, Section):
                walk(key, value)
                continue
            if args.section and not key.startswith(args.section):
                continue
            doc = " ".join((field.description or "").split())
            kind = _type_name(field.annotation)
            sys.stdout.write(f"{key} = {value!r}  [{kind}]\n    {doc}\n")

    walk("", config)
    return 0


# ------------------------------------------------------------------------------------------------
# dclr generate / import-lhco


def _cmd_generate(args: argparse.Namespace) -> int:
    from distributed_clr.data.generate import generate

    flags = {
        "generate.process": args.process,
        "generate.events": args.events,
        "generate.shards": args.shards,
        "generate.seed": args.seed,
    }
    config = _config_from(args, [(k, v) for k, v in flags.items() if v is not None])
    manifest = generate(config.generate, args.out, config.ray)
    summary = manifest.summary
    sys.stdout.write(
        f"{args.out}: {manifest.rows} {summary['process']} events in {len(manifest.shards)} "
        f"shards; trigger efficiency {summary['trigger_efficiency']:.3f}; "
        f"sigma_gen {summary['sigma_gen_pb']:.4g} +- {summary['sigma_err_pb']:.2g} pb\n"
    )
    return 0


def _cmd_import_lhco(args: argparse.Namespace) -> int:
    from distributed_clr.data.lhco import import_lhco

    manifest = import_lhco(
        args.files,
        args.out,
        process=args.process,
        label=args.label,
        key=args.key,
        events_per_shard=args.events_per_shard,
        chunk_rows=args.chunk_rows,
        max_events=args.max_events,
    )
    labels = manifest.summary["labels"]
    sys.stdout.write(
        f"{args.out}: {manifest.rows} events in {len(manifest.shards)} shards "
        f"(background {labels['background']}, signal {labels['signal']}, "
        f"unlabelled {labels['unknown']})\n"
    )
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from distributed_clr.data.prepare import prepare

    config = _config_from(args)
    manifest = prepare(args.raw, args.out, config.prepare, config.ray)
    sys.stdout.write(f"{args.out}: {manifest.rows} dijet events in {len(manifest.shards)} shards\n")
    for dataset, flow in manifest.summary["cut_flow"].items():
        removed = ", ".join(f"{k} {v}" for k, v in flow["removed"].items())
        sys.stdout.write(
            f"  {dataset}: {flow['events_in']} in, {flow['events_out']} out (removed: {removed})\n"
        )
    splits = ", ".join(f"{k} {v}" for k, v in manifest.summary["splits"].items())
    sys.stdout.write(f"  splits: {splits}\n")
    return 0


def _scaling_flags(args: argparse.Namespace) -> list[tuple[str, Any]]:
    extra: list[tuple[str, Any]] = []
    if getattr(args, "workers", None) is not None:
        extra.append(("ray.num_workers", args.workers))
    if getattr(args, "gpu", False):
        extra.append(("ray.use_gpu", True))
    return extra


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from distributed_clr.train import pretrain

    config = _config_from(args, _scaling_flags(args))
    result = pretrain(config, args.data, args.run_name)
    best = next((h for h in result.history if int(h["epoch"]) == result.best_epoch), {})
    probe = best.get("val_probe_auc", float("nan"))
    sys.stdout.write(
        f"run {result.run_name}: {result.epochs} epochs"
        f"{' (stopped early)' if result.stopped_early else ''}; best epoch {result.best_epoch}: "
        f"val loss {result.best_val_loss:.4f}, probe AUC {probe:.3f}\n"
        f"  best checkpoint: {result.best_checkpoint}\n"
    )
    if result.mlflow_run_id:
        sys.stdout.write(
            f"  MLflow run {result.mlflow_run_id} at {result.tracking_uri}\n"
            f"  browse: mlflow ui --backend-store-uri {result.tracking_uri}\n"
        )
    return 0


def _checkpoint_from(args: argparse.Namespace, config: RunConfig) -> Path:
    """The checkpoint directory named by --checkpoint, or the one logged to MLflow run --run."""
    if args.checkpoint is not None:
        return Path(args.checkpoint)
    from distributed_clr import tracking

    return tracking.download_checkpoint(tracking.tracking_uri(config.tracking), args.run)


def _cmd_embed(args: argparse.Namespace) -> int:
    from distributed_clr.embed import embed

    config = _config_from(args, _scaling_flags(args))
    checkpoint = _checkpoint_from(args, config)
    manifest = embed(checkpoint, args.data, args.out, config.ray, splits=args.split or None)
    splits = ", ".join(f"{k} {v}" for k, v in manifest.summary["splits"].items())
    sys.stdout.write(
        f"{args.out}: {manifest.rows} embeddings (D = {manifest.summary['dim']}) in "
        f"{len(manifest.shards)} shards; {splits}\n"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from distributed_clr.demo import run_demo

    config = _config_from(args, _scaling_flags(args))
    result = run_demo(config, args.out, scale=args.scale)
    sys.stdout.write(f"\ndemo finished; everything is under {result.directory}/\n\n")
    width = max(len(k) for k in [*result.facts, *result.timings])
    for key, value in result.facts.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        sys.stdout.write(f"  {key:<{width}}  {shown}\n")
    sys.stdout.write("\n  time per stage:\n")
    for key, seconds in result.timings.items():
        sys.stdout.write(f"  {key:<{width}}  {seconds:7.1f} s\n")
    sys.stdout.write(f"  {'total':<{width}}  {sum(result.timings.values()):7.1f} s\n")
    from distributed_clr.demo import summary_lines

    lines = summary_lines(result)
    if lines:
        sys.stdout.write("\n" + "\n".join(lines) + "\n")
    if result.mlflow_run_id:
        sys.stdout.write(
            f"\nMLflow run {result.mlflow_run_id} (and its evaluation child runs); browse with\n"
            f"  mlflow ui --backend-store-uri {result.tracking_uri}\n"
        )
    return 0


# ------------------------------------------------------------------------------------------------
# parser


Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dclr",
        description="Contrastive representations of LHC events at cluster scale.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v: debug)"
    )
    verbosity.add_argument(
        "-q", "--quiet", action="count", default=0, help="less logging (-q: warnings, -qq: errors)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = commands.add_parser("config", help="inspect the resolved configuration")
    config_cmds = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_cmds.add_parser("show", help="print the resolved config as YAML")
    _add_config_options(show)
    show.set_defaults(handler=_cmd_config_show)
    keys = config_cmds.add_parser("keys", help="list every config key with its type and meaning")
    keys.add_argument("section", nargs="?", default="", help="only keys under this prefix")
    _add_config_options(keys)
    keys.set_defaults(handler=_cmd_config_keys)

    gen = commands.add_parser(
        "generate",
        help="generate collision events with Pythia 8 and a detector response",
        description="Generate raw events (Parquet shards + manifest.json) with one Ray task per "
        "shard. Rerunning the same command resumes an interrupted run.",
    )
    gen.add_argument("--process", choices=["qcd_dijet", "wprime_xy"], help="physics process")
    gen.add_argument("--events", type=int, help="events to write (after the trigger)")
    gen.add_argument("--out", type=Path, required=True, help="output dataset directory")
    gen.add_argument("--shards", type=int, help="number of shards (one Ray task each)")
    gen.add_argument("--seed", type=int, help="master seed")
    _add_config_options(gen)
    gen.set_defaults(handler=_cmd_generate)

    lhco = commands.add_parser(
        "import-lhco",
        help="convert LHC Olympics 2020 HDF5 files into raw-event Parquet",
        description="Read LHC Olympics files (events_anomalydetection.h5, the black boxes, the "
        "3-prong signal) in chunks, strip the zero padding and write raw-event shards.",
    )
    lhco.add_argument("files", nargs="+", type=Path, metavar="FILE", help="HDF5 files")
    lhco.add_argument("--out", type=Path, required=True, help="output dataset directory")
    lhco.add_argument("--process", default="lhco_rnd", help="process name stored with the events")
    lhco.add_argument(
        "--label",
        type=int,
        choices=[-1, 0, 1],
        help="label every event (default: the file's label column, or -1 without one)",
    )
    lhco.add_argument("--key", help="HDF5 key of the frame (default: the only one in the file)")
    lhco.add_argument("--events-per-shard", type=int, default=100_000, help="rows per shard")
    lhco.add_argument("--chunk-rows", type=int, default=10_000, help="rows read at a time")
    lhco.add_argument("--max-events", type=int, help="read at most this many events per file")
    lhco.set_defaults(handler=_cmd_import_lhco)

    prep = commands.add_parser(
        "prepare",
        help="cluster raw events into dijets (Ray Data): selection, observables, splits",
        description="Cluster every raw dataset given with anti-kT, select two jets, apply the "
        "cuts, keep each jet's hardest constituents, compute observables and assign splits. "
        "Rerunning the same command resumes an interrupted run.",
    )
    prep.add_argument("raw", nargs="+", type=Path, metavar="RAW_DIR", help="raw-event datasets")
    prep.add_argument("--out", type=Path, required=True, help="output dataset directory")
    _add_config_options(prep)
    prep.set_defaults(handler=_cmd_prepare)

    pre = commands.add_parser(
        "pretrain",
        help="contrastive pretraining on Ray Train (DDP), tracked in MLflow",
        description="Train the encoder on a prepared dataset with a Ray Train TorchTrainer. "
        "Rerunning with the same --run-name continues the run from its latest checkpoint; "
        "worker failures restart from the last checkpoint (train.max_failures).",
    )
    pre.add_argument("--data", type=Path, required=True, help="prepared dijet dataset")
    pre.add_argument("--run-name", help="name of the run (Ray storage and MLflow); default: new")
    pre.add_argument("--workers", type=int, help="training workers (ray.num_workers)")
    pre.add_argument("--gpu", action="store_true", help="one GPU per worker, nccl (ray.use_gpu)")
    _add_config_options(pre)
    pre.set_defaults(handler=_cmd_pretrain)

    emb = commands.add_parser(
        "embed",
        help="embed prepared events with a trained encoder (Ray Data batch inference)",
        description="Write embedding shards (event keys, label, m_jj, embedding) for the "
        "prepared events, with the model of a checkpoint directory or of an MLflow run.",
    )
    source = emb.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="MLflow run id of a pretraining run")
    source.add_argument("--checkpoint", type=Path, help="checkpoint directory")
    emb.add_argument("--data", type=Path, required=True, help="prepared dijet dataset")
    emb.add_argument("--out", type=Path, required=True, help="output embedding dataset directory")
    emb.add_argument(
        "--split", action="append", choices=["train", "val", "test"], help="only these splits"
    )
    emb.add_argument("--gpu", action="store_true", help="run the model on GPUs (ray.use_gpu)")
    _add_config_options(emb)
    emb.set_defaults(handler=_cmd_embed)

    from distributed_clr.evaluate.cli import add_parser as add_evaluate_parser

    add_evaluate_parser(commands)

    from distributed_clr.tune import add_parser as add_tune_parser

    add_tune_parser(commands)

    demo = commands.add_parser(
        "demo",
        help="run the method end to end on generated data",
        description="Generate QCD and W' events, prepare dijets, and run every later stage "
        "that exists, on local Ray (or RAY_ADDRESS). Finished stages are reused on a rerun.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo_data"), help="working directory")
    demo.add_argument("--scale", type=float, default=1.0, help="multiply every stage's size")
    demo.add_argument("--workers", type=int, help="training workers (ray.num_workers)")
    demo.add_argument("--gpu", action="store_true", help="train on GPUs (ray.use_gpu)")
    _add_config_options(demo)
    demo.set_defaults(handler=_cmd_demo)

    return parser


def setup_logging(verbose: int, quiet: int) -> None:
    """INFO by default; -v DEBUG; -q WARNING; -qq ERROR. Logs go to stderr."""
    level = (
        logging.DEBUG
        if verbose
        else {0: logging.INFO, 1: logging.WARNING}.get(quiet, logging.ERROR)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("distributed_clr")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_command(["dclr", *(sys.argv[1:] if argv is None else argv)])
    setup_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as err:
        sys.stderr.write(f"dclr: configuration error: {err}\n")
        return EXIT_USAGE
    except (
        DatasetError,
        SchemaError,
        GenerationError,
        PretrainError,
        ValueError,
        FileNotFoundError,
    ) as err:
        sys.stderr.write(f"dclr: error: {err}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("dclr: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
