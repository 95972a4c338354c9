"""A real ``texbridge serve`` for the add-on tests: subprocess on a free loopback port.

The discovery file goes to a temp ``TEXBRIDGE_RUNTIME_DIR``; the add-on finds port and
token there exactly as in use. The real engine runs with the tiny random SD folder.
Starting and stopping is the server tests' ``EngineServer``; the engine must not see the
add-on tests' temporary Blender resources folder.
"""

from __future__ import annotations

from pathlib import Path

from tests.server.conftest import EngineServer


class EngineProcess(EngineServer):
    def __init__(self, root: Path, model: str) -> None:
        super().__init__(root, model, ["--cancel-grace", "10"])

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("BLENDER_USER_RESOURCES", None)
        return env

    def start(self, timeout: float = 90.0) -> "EngineProcess":
        self.root.mkdir(parents=True, exist_ok=True)
        super().start(timeout)
        return self
