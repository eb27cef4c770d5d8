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
from typing import Any

from distributed_clr import __version__
from distributed_clr.config import PRESETS, ConfigError, RunConfig, resolve_config, to_yaml
from distributed_clr.config.schema import Section

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
    setup_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as err:
        sys.stderr.write(f"dclr: configuration error: {err}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("dclr: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
