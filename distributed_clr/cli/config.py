"""``dclr config show`` and ``dclr config keys``: the resolved configuration and every key."""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Any

from distributed_clr.cli.options import add_config_options, config_from
from distributed_clr.config import to_yaml
from distributed_clr.config.schema import Section

__all__ = ["add_parser"]


def _cmd_config_show(args: argparse.Namespace) -> int:
    sys.stdout.write(to_yaml(config_from(args)))
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
    config = config_from(args)

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


def add_parser(commands: Any) -> None:
    """Register ``config`` (``show``, ``keys``)."""
    config = commands.add_parser("config", help="inspect the resolved configuration")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the resolved config as YAML")
    add_config_options(show)
    show.set_defaults(handler=_cmd_config_show)
    keys = actions.add_parser("keys", help="list every config key with its type and meaning")
    keys.add_argument("section", nargs="?", default="", help="only keys under this prefix")
    add_config_options(keys)
    keys.set_defaults(handler=_cmd_config_keys)
