"""The ``texbridge`` console script: the engine commands plus ``serve``.

Lives in ``server`` so that imports flow one way (server -> engine).
"""

from __future__ import annotations

from engine import cli as engine_cli
from server import serve_cmd


def main(argv: list[str] | None = None) -> int:
    return engine_cli.main(argv, extra=(serve_cmd,))


if __name__ == "__main__":
    raise SystemExit(main())
