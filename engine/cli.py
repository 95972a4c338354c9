"""Engine commands of the ``texbridge`` CLI (no HTTP; the server adds ``serve``).

Each command lives in ``engine/commands/<name>.py`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``. Errors derived from
``TexbridgeError`` print one line (``error: ...``, the fix named as a flag) and exit
with their code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from engine.errors import TexbridgeError, cli_flag

#: Engine subcommands, in help order. Each module is imported lazily.
ENGINE_COMMANDS = ("texture", "batch", "render", "doctor")


def add_engine_commands(subparsers: argparse._SubParsersAction) -> None:
    for name in ENGINE_COMMANDS:
        importlib.import_module(f"engine.commands.{name}").add_parser(subparsers)


def run_parsed(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one line on stderr and an exit code."""
    try:
        return int(args.func(args) or 0)
    except TexbridgeError as exc:
        print(f"error: {exc.worded(cli_flag)}", file=sys.stderr)  # the fix named as a flag
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser(extra: tuple[ModuleType, ...] = ()) -> argparse.ArgumentParser:
    """The engine commands plus ``extra`` command modules (the server adds ``serve``)."""
    parser = argparse.ArgumentParser(prog="texbridge", description="Text-to-UV-texture by calibrated score distillation.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_engine_commands(sub)
    for mod in extra:
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None, extra: tuple[ModuleType, ...] = ()) -> int:
    args = build_parser(extra).parse_args(argv)
    return run_parsed(args)


if __name__ == "__main__":
    raise SystemExit(main())
