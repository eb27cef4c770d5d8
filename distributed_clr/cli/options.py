"""Options shared by the ``dclr`` commands, and the one way a flag becomes a config override.

Every command that runs a stage takes ``--preset``, ``--config FILE`` (repeatable) and
``--set KEY=VALUE`` (repeatable). Dedicated flags (``--workers``, ``--gpu``, ``--events``, ...)
are declared with ``override_flag``: each names the dotted config key it sets, and
``config_from`` applies them after every ``--set``, so a flag always wins.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distributed_clr.config import PRESETS, RunConfig, resolve_config
from distributed_clr.storage.location import StoragePath, as_storage_path

__all__ = [
    "add_config_options",
    "add_scaling_flags",
    "checkpoint_from",
    "config_from",
    "flag_overrides",
    "override_flag",
]

_FLAGS = "_dclr_flag_overrides"
"""The namespace attribute collecting {config key: value} of the flags given."""


class _Override(argparse.Action):
    """Stores the flag's value under its ``dest`` and records it as an override of ``key``."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        key: str,
        transform: Callable[[Any], Any] | None = None,
        append: bool = False,
        **kwargs: Any,
    ) -> None:
        self.key, self.transform, self.append = key, transform, append
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        value = self.const if self.nargs == 0 else values
        if self.append:
            value = [*(getattr(namespace, self.dest, None) or []), value]
        setattr(namespace, self.dest, value)
        overrides = dict(getattr(namespace, _FLAGS, None) or {})
        overrides[self.key] = self.transform(value) if self.transform else value
        setattr(namespace, _FLAGS, overrides)


def override_flag(
    parser: argparse.ArgumentParser | Any,
    *flags: str,
    key: str,
    switch: Any = None,
    append: bool = False,
    transform: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> None:
    """Add a flag that sets config ``key``.

    ``switch``: the flag takes no value and sets ``key`` to ``switch`` (e.g. ``--gpu``).
    ``append``: the flag repeats and collects a list (``transform`` can post-process it).
    Other keyword arguments go to ``add_argument`` (``type``, ``choices``, ``help``, ...).
    """
    if switch is not None:
        kwargs.update(nargs=0, const=switch, default=None)
    kwargs.setdefault("default", None)
    help_text = kwargs.pop("help", "")
    kwargs["help"] = f"{help_text} ({key})" if help_text else f"sets {key}"
    parser.add_argument(
        *flags, action=_Override, key=key, append=append, transform=transform, **kwargs
    )


def flag_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The (key, value) overrides of the dedicated flags given on the command line."""
    return list((getattr(args, _FLAGS, None) or {}).items())


def add_config_options(parser: argparse.ArgumentParser) -> None:
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


def add_scaling_flags(parser: argparse.ArgumentParser, gpu_help: str) -> None:
    """``--workers N`` (ray.num_workers) and ``--gpu`` (ray.use_gpu)."""
    override_flag(parser, "--workers", key="ray.num_workers", type=int, help="training workers")
    override_flag(parser, "--gpu", key="ray.use_gpu", switch=True, help=gpu_help)


def config_from(args: argparse.Namespace, before: Sequence[tuple[str, Any]] = ()) -> RunConfig:
    """The run's config: preset -> ``--config`` files -> ``before`` -> ``--set`` -> flags."""
    return resolve_config(
        args.preset, args.config, [*before, *args.overrides, *flag_overrides(args)]
    )


def checkpoint_from(args: argparse.Namespace, config: RunConfig) -> Path:
    """The checkpoint directory named by --checkpoint, or the one logged to MLflow run --run."""
    if args.checkpoint is not None:
        return Path(args.checkpoint)
    from distributed_clr.tracking import RunHandle, tracking_uri

    run = RunHandle.attach(tracking_uri(config.tracking), args.run)
    return run.download("checkpoint")


def storage_path(text: str) -> StoragePath:
    """An argparse type: a local path, or an object-store URI such as ``s3://bucket/key``
    (``storage.location``); credentials come from the environment."""
    return as_storage_path(text)
