"""The ``dclr`` command: the only package that parses argv.

One module per command group (``config``, ``data``, ``train``, ``tune``, ``evaluate``,
``demo``); ``options`` holds the shared options and the flag-to-override mechanism, ``tables``
the one text-table formatter. Each handler resolves a config (preset -> ``--config`` files ->
``--set`` overrides -> dedicated flags) and calls one plain function of a stage with the
sections it needs. Results go to stdout, logs to stderr.

Exit codes: 0 success; 2 a usage, configuration or input-data error (``errors.UserError``),
printed as one line; 1 a run that could not finish (``errors.RunError``), printed as one line;
130 an interruption. Anything else is a bug, and Python prints its traceback; ``-v`` also shows
the traceback of a user or run error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from distributed_clr import __version__
from distributed_clr.cli import config, data, demo, evaluate, study, train, tune
from distributed_clr.config import ConfigError
from distributed_clr.errors import RunError, UserError
from distributed_clr.storage.manifest import set_command

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "build_parser", "main"]

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

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
    config.add_parser(commands)
    data.add_parsers(commands)
    train.add_parsers(commands)
    evaluate.add_parser(commands)
    tune.add_parser(commands)
    demo.add_parser(commands)
    study.add_parser(commands)
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
        _traceback_if_verbose(args)
        sys.stderr.write(f"dclr: configuration error: {_one_line(err)}\n")
        return EXIT_USAGE
    except UserError as err:
        _traceback_if_verbose(args)
        sys.stderr.write(f"dclr: error: {_one_line(err)}\n")
        return EXIT_USAGE
    except RunError as err:
        _traceback_if_verbose(args)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        sys.stderr.write(f"dclr: failed: {first} (details in the log above)\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("dclr: interrupted\n")
        return EXIT_INTERRUPTED


def _traceback_if_verbose(args: argparse.Namespace) -> None:
    """With -v, where a user error was raised, for reports and debugging."""
    if args.verbose:
        traceback.print_exc(file=sys.stderr)


def _one_line(err: BaseException) -> str:
    """The message, its lines joined: a config error can name several problems."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
