"""``dclr pretrain`` and ``dclr embed``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from distributed_clr.cli.options import (
    add_config_options,
    add_scaling_flags,
    checkpoint_from,
    config_from,
    override_flag,
    storage_path,
)
from distributed_clr.cli.tables import run_lines
from distributed_clr.config.schema import REPRESENTATIONS

__all__ = ["add_parsers"]


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from distributed_clr.train import pretrain, untrained

    if args.untrained is not None:
        path = untrained(config_from(args), args.data, args.untrained)
        sys.stdout.write(f"untrained encoder (the run's initial weights): {path}\n")
        return 0
    result = pretrain(config_from(args), args.data, args.run_name)
    best = next((h for h in result.history if int(h["epoch"]) == result.best_epoch), {})
    probe = best.get("val_probe_auc", float("nan"))
    sys.stdout.write(
        f"run {result.run_name}: {result.epochs} epochs"
        f"{' (stopped early)' if result.stopped_early else ''}; best epoch {result.best_epoch} "
        f"by {result.selection_metric}: {result.best_value:.4f} (val loss "
        f"{result.best_val_loss:.4f}, probe AUC {probe:.3f})\n"
        f"  best checkpoint (kept and embedded): {result.best_checkpoint}\n"
    )
    for name, counts in result.composition.items():
        unlabelled = f", {counts['unlabelled']} unlabelled" if counts["unlabelled"] else ""
        sys.stdout.write(
            f"  {name} events: {counts['events']} ({counts['background']} background"
            f"{unlabelled}, {counts['signal']} signal)\n"
        )
    if result.mlflow_run_id and result.tracking_uri:
        sys.stdout.write(run_lines("MLflow run", result.mlflow_run_id, result.tracking_uri))
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from distributed_clr.embed import embed

    config = config_from(args)
    checkpoint = checkpoint_from(args, config)
    manifest = embed(
        checkpoint,
        args.data,
        args.out,
        config.ray,
        splits=args.split or None,
        verify=config.data.verify,
        representation=args.representation,
    )
    splits = ", ".join(f"{k} {v}" for k, v in manifest.summary["splits"].items())
    sys.stdout.write(
        f"{args.out}: {manifest.rows} embeddings (D = {manifest.summary['dim']}) in "
        f"{len(manifest.shards)} shards; {splits}\n"
    )
    return 0


def add_parsers(commands: Any) -> None:
    """Register ``pretrain`` and ``embed``."""
    pre = commands.add_parser(
        "pretrain",
        help="contrastive pretraining on Ray Train (DDP), tracked in MLflow",
        description="Train the encoder on a prepared dataset with a Ray Train TorchTrainer. "
        "Rerunning with the same --run-name continues the run from its latest checkpoint; "
        "worker failures restart from the last checkpoint (train.faults.max_failures).",
    )
    pre.add_argument(
        "--data",
        type=storage_path,
        required=True,
        help="event dataset: prepared dijets or object-level events",
    )
    pre.add_argument("--run-name", help="name of the run (Ray storage and MLflow); default: new")
    pre.add_argument(
        "--untrained",
        type=Path,
        metavar="DIR",
        help="train nothing: write the weights this run would start from as a checkpoint in DIR "
        "(the untrained baseline; embed it with dclr embed --checkpoint DIR)",
    )
    add_scaling_flags(pre, "one GPU per worker, nccl")
    add_config_options(pre)
    pre.set_defaults(handler=_cmd_pretrain)

    emb = commands.add_parser(
        "embed",
        help="embed prepared events with a trained encoder (Ray Data batch inference)",
        description="Write embedding shards (event keys, label, m_jj or the SM process id, "
        "embedding) for the events of a dataset of the kind the encoder was trained on, with "
        "the model of a checkpoint directory or of an MLflow run.",
    )
    source = emb.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="MLflow run id of a pretraining run")
    source.add_argument("--checkpoint", type=Path, help="checkpoint directory")
    emb.add_argument(
        "--data",
        type=storage_path,
        required=True,
        help="event dataset: prepared dijets or object-level events",
    )
    emb.add_argument(
        "--out", type=storage_path, required=True, help="output embedding dataset directory"
    )
    emb.add_argument(
        "--split", action="append", choices=["train", "val", "test"], help="only these splits"
    )
    emb.add_argument(
        "--representation",
        choices=REPRESENTATIONS,
        help="which layer's output to embed (default: the checkpoint's model.representation)",
    )
    override_flag(emb, "--gpu", key="ray.use_gpu", switch=True, help="run the model on GPUs")
    add_config_options(emb)
    emb.set_defaults(handler=_cmd_embed)
