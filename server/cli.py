"""The ``texbridge`` console script: engine commands plus ``serve``.

Lives in ``server`` so that imports flow one way (server -> engine).
"""

from __future__ import annotations

import argparse
import importlib

from engine.cli import add_engine_commands, run_parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="texbridge", description="Text-to-UV-texture by calibrated score distillation.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_engine_commands(sub)
    try:
        serve = importlib.import_module("server.serve_cmd")
    except ModuleNotFoundError as exc:
        if exc.name != "server.serve_cmd":
            raise
    else:
        serve.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_parsed(args)


if __name__ == "__main__":
    raise SystemExit(main())
