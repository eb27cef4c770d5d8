"""``dclr generate``, ``dclr import-lhco``, ``dclr import-adc`` and ``dclr prepare``: the data
stages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from distributed_clr.cli.options import add_config_options, config_from, override_flag, storage_path
from distributed_clr.config.schema import SIGNAL_PROCESSES, SM_PROCESSES
from distributed_clr.storage.manifest import DatasetError

__all__ = ["add_parsers"]


def _cmd_generate(args: argparse.Namespace) -> int:
    from distributed_clr.data.generate import generate

    config = config_from(args)
    manifest = generate(config.generate, args.out, config.ray)
    summary = manifest.summary
    sys.stdout.write(
        f"{args.out}: {manifest.rows} {summary['process']} events in {len(manifest.shards)} "
        f"shards; trigger efficiency {summary['trigger_efficiency']:.3f}; "
        f"sigma_gen {summary['sigma_gen_pb']:.4g} +- {summary['sigma_err_pb']:.2g} pb\n"
    )
    return 0


def _cmd_generate_objects(args: argparse.Namespace) -> int:
    from distributed_clr.data.generate_objects import generate_objects

    config = config_from(args)
    manifest = generate_objects(config.objects, args.out, config.ray, config.prepare)
    summary = manifest.summary
    sys.stdout.write(
        f"{args.out}: {manifest.rows} object-level {summary['process']} events in "
        f"{len(manifest.shards)} shards\n"
    )
    for process, entry in summary["processes"].items():
        sys.stdout.write(
            f"  {process}: {entry['events']} events ({entry['fraction']:.1%}), process id "
            f"{entry['process_id']}, preselection efficiency "
            f"{entry['preselection_efficiency']:.3f}, sigma_gen {entry['sigma_gen_pb']:.4g} pb\n"
        )
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    sys.stdout.write(f"  splits: {splits}\n")
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


def _cmd_import_adc(args: argparse.Namespace) -> int:
    from distributed_clr.data.adc import import_adc

    config = config_from(args)
    manifest = import_adc(
        args.file,
        args.out,
        process=args.process,
        label=args.label,
        prepare=config.prepare,
        process_id=args.process_id,
        process_dataset=args.process_dataset,
        events_per_shard=args.events_per_shard,
        chunk_rows=args.chunk_rows,
        max_events=args.max_events,
    )
    splits = ", ".join(f"{k} {v}" for k, v in manifest.summary["splits"].items())
    sys.stdout.write(
        f"{args.out}: {manifest.rows} object-level {args.process} events (label {args.label}) "
        f"in {len(manifest.shards)} shards; {splits}\n"
    )
    return 0


def _cmd_combine(args: argparse.Namespace) -> int:
    from distributed_clr.data.combine import combine

    manifest = combine(args.inputs, args.out)
    splits = ", ".join(f"{k} {v}" for k, v in manifest.summary["splits"].items())
    sys.stdout.write(
        f"{args.out}: {manifest.rows} {manifest.kind} events from {len(args.inputs)} datasets "
        f"in {len(manifest.shards)} shards; {splits}\n"
    )
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from distributed_clr.data.prepare import prepare

    config = config_from(args)
    manifest = prepare(args.raw, args.out, config.prepare, config.ray, verify=config.data.verify)
    sys.stdout.write(f"{args.out}: {manifest.rows} dijet events in {len(manifest.shards)} shards\n")
    for dataset, flow in manifest.summary["cut_flow"].items():
        removed = ", ".join(f"{k} {v}" for k, v in flow["removed"].items())
        sys.stdout.write(
            f"  {dataset}: {flow['events_in']} in, {flow['events_out']} out (removed: {removed})\n"
        )
    splits = ", ".join(f"{k} {v}" for k, v in manifest.summary["splits"].items())
    sys.stdout.write(f"  splits: {splits}\n")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from distributed_clr.storage.verify import check_directory

    failed = 0
    for directory in args.directories:
        manifest, found = check_directory(directory)
        if found:
            failed += 1
            sys.stdout.write(f"{directory}: {len(found)} problem(s)\n")
            sys.stdout.writelines(f"  {problem}\n" for problem in found)
        elif manifest is not None:
            sys.stdout.write(
                f"{directory}: OK ({manifest.kind}, {len(manifest.shards)} shards, "
                f"{manifest.rows} rows, checksums match)\n"
            )
    if failed:
        raise DatasetError(f"{failed} of {len(args.directories)} directories failed verification")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_parsers(commands: Any) -> None:
    """Register ``generate``, ``import-lhco``, ``import-adc``, ``combine``, ``prepare`` and
    ``verify``."""
    gen = commands.add_parser(
        "generate",
        help="generate collision events with Pythia 8 and a detector response",
        description="Generate raw events (Parquet shards + manifest.json) with one Ray task per "
        "shard. Rerunning the same command resumes an interrupted run.",
    )
    override_flag(
        gen, "--process", key="generate.process", choices=["qcd_dijet", "wprime_xy"],
        help="physics process",
    )  # fmt: skip
    override_flag(gen, "--events", key="generate.events", type=int, help="events to write")
    gen.add_argument("--out", type=Path, required=True, help="output dataset directory")
    override_flag(gen, "--shards", key="generate.shards", type=int, help="number of shards")
    override_flag(gen, "--seed", key="generate.seed", type=int, help="master seed")
    add_config_options(gen)
    gen.set_defaults(handler=_cmd_generate)

    objs = commands.add_parser(
        "generate-objects",
        help="generate object-level events (MET, e, mu, jets) with Pythia 8",
        description="Generate an SM process, the SM cocktail (objects.fractions, or by "
        "cross-section with objects.mix=cross_section) or a BSM signal, reconstruct MET, up to "
        "4 electrons, 4 muons and 10 jets (objects.reco), apply the ADC2021 preselection and "
        "write object-level shards (one Ray task each) with splits and folds. Rerunning the "
        "same command resumes an interrupted run.",
    )
    override_flag(
        objs, "--process", key="objects.process",
        choices=["sm_cocktail", *SM_PROCESSES, *SIGNAL_PROCESSES], help="process",
    )  # fmt: skip
    override_flag(objs, "--events", key="objects.events", type=int, help="events to write")
    objs.add_argument("--out", type=Path, required=True, help="output dataset directory")
    override_flag(objs, "--shards", key="objects.shards", type=int, help="number of shards")
    override_flag(objs, "--seed", key="objects.seed", type=int, help="master seed")
    add_config_options(objs)
    objs.set_defaults(handler=_cmd_generate_objects)

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
    lhco.add_argument("--events-per-shard", type=_positive, default=100_000, help="rows per shard")
    lhco.add_argument("--chunk-rows", type=_positive, default=10_000, help="rows read at a time")
    lhco.add_argument("--max-events", type=_positive, help="read at most this many events per file")
    lhco.set_defaults(handler=_cmd_import_lhco)

    adc = commands.add_parser(
        "import-adc",
        help="convert a CMS ADC2021 HDF5 file into an object-level dataset",
        description="Read the 'Particles' dataset (events x 19 slots x [pT, eta, phi, class]: "
        "MET, 4 electrons, 4 muons, 10 jets) in row chunks, check the layout (errors name file, "
        "row and slot) and write object-level Parquet shards with splits and folds (prepare "
        "section) and a manifest. Rerunning resumes.",
    )
    adc.add_argument("file", type=Path, help="the HDF5 file (one process)")
    adc.add_argument("--out", type=Path, required=True, help="output dataset directory")
    adc.add_argument("--process", required=True, help="process name of every event")
    adc.add_argument(
        "--label", type=int, required=True, choices=[0, 1, -1],
        help="0 background, 1 signal, -1 unknown (every event)",
    )  # fmt: skip
    ids = adc.add_mutually_exclusive_group()
    ids.add_argument(
        "--process-id", type=int, default=-1,
        help="SM process id of every event, the positives of SupCon (default -1: unknown)",
    )  # fmt: skip
    ids.add_argument(
        "--process-dataset", metavar="NAME",
        help="a per-event integer dataset of the file holding the SM process ids",
    )  # fmt: skip
    adc.add_argument("--events-per-shard", type=int, default=200_000, help="rows per shard")
    adc.add_argument("--chunk-rows", type=int, default=50_000, help="rows read at a time")
    adc.add_argument("--max-events", type=int, help="read at most this many events")
    add_config_options(adc)
    adc.set_defaults(handler=_cmd_import_adc)

    comb = commands.add_parser(
        "combine",
        help="combine event datasets of one kind (e.g. a background and its signals) into one",
        description="Copy every shard of every input (same bytes, splits and folds) into one "
        "dataset with one manifest. The inputs must be complete datasets of one kind (dijets "
        "of the same prepare settings) with distinct dataset names. Rerunning resumes.",
    )
    comb.add_argument("inputs", nargs="+", type=storage_path, metavar="DIR", help="input datasets")
    comb.add_argument("--out", type=storage_path, required=True, help="output dataset directory")
    comb.set_defaults(handler=_cmd_combine)

    prep = commands.add_parser(
        "prepare",
        help="cluster raw events into dijets (Ray Data): selection, observables, splits",
        description="Cluster every raw dataset given with anti-kT, select two jets, apply the "
        "cuts, keep each jet's hardest constituents, compute observables and assign splits. "
        "Rerunning the same command resumes an interrupted run.",
    )
    prep.add_argument(
        "raw", nargs="+", type=storage_path, metavar="RAW_DIR", help="raw-event datasets"
    )
    prep.add_argument("--out", type=storage_path, required=True, help="output dataset directory")
    add_config_options(prep)
    prep.set_defaults(handler=_cmd_prepare)

    verify = commands.add_parser(
        "verify",
        help="check datasets and stage outputs against their manifests (rows and sha256)",
        description="For each directory: its manifest is readable and complete, every shard it "
        "lists exists with the recorded row count and sha256, and every recorded output file "
        "is unchanged. Exit 0 when all pass, 2 otherwise.",
    )
    verify.add_argument(
        "directories", nargs="+", type=storage_path, metavar="DIR", help="directories"
    )
    verify.set_defaults(handler=_cmd_verify)
