"""Configuration of the engine server (one frozen dataclass per component)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from engine.mesh import MeshConfig

#: Hosts a request may name in its ``Host`` header (with or without the port) when the
#: server listens on loopback. Anything else is refused (DNS-rebinding defence).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
LOOPBACK_BIND = ("127.0.0.1", "localhost", "::1")

API_VERSION = 1


@dataclass(frozen=True)
class Limits:
    """Caps on what a client may send.

    max_body_bytes: request body cap, counted on the streamed bytes (default 256 MB).
    max_vertices / max_triangles: mesh caps (vertices / triangles after triangulation).
    max_image_pixels: cap on width*height of an uploaded image (also Pillow's bomb limit).
    max_npz_uncompressed_bytes: cap on the decompressed size of an ``.npz`` upload (zip-bomb guard).
    max_spec_bytes: cap on the ``spec`` JSON field.
    """

    max_body_bytes: int = 256 * 1024 * 1024
    max_vertices: int = 5_000_000
    max_triangles: int = 2_000_000  # the engine's own MeshConfig default
    max_image_pixels: int = 8192 * 8192
    max_npz_uncompressed_bytes: int = 1024 * 1024 * 1024
    max_spec_bytes: int = 64 * 1024

    def mesh_config(self) -> "MeshConfig":
        """The engine's mesh limits for these caps: the submit checks and the worker's load use it."""
        from engine.mesh import MeshConfig

        return MeshConfig(max_triangles=self.max_triangles, max_vertices=self.max_vertices)


@dataclass(frozen=True)
class Reliability:
    """How the server keeps job state true when the disk or the store misbehaves.

    check_interval_s: seconds between supervisor checks (and one at start-up): jobs marked
        running that no worker runs are requeued or failed; state kept in memory is written.
    write_attempts: tries for a job's state transition before it is kept in memory (and
        written by a later check).
    write_retry_delay_s: pause after the first failed try (doubled after each further one).
    store_busy_timeout_s: how long one store write waits for a lock held by another process.
    store_headroom_bytes: free space a submit needs on the store's filesystem besides its
        uploaded files (room for the store's rows and events).
    """

    check_interval_s: float = 2.0
    write_attempts: int = 3
    write_retry_delay_s: float = 0.25
    store_busy_timeout_s: float = 1.0
    store_headroom_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class WorkerRunner:
    """What the worker calls, as ``module:function`` names (resolved in the worker process).

    run_job: runs one job, with ``run_texture_job``'s signature (``engine.runner``).
    load_prior: loads a model, with ``load_prior``'s signature (``engine.priors.loading``).
    The engine's by default; tests and benchmarks name others (e.g. ``benchmarks/null_engine.py``).
    """

    run_job: str = "engine.runner:run_texture_job"
    load_prior: str = "engine.priors.loading:load_prior"


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``texbridge serve`` was started with.

    host / port: the bound address (port is the real one after binding port 0).
    token: the bearer token every request must carry.
    models: the models jobs may use (ids or paths given with ``--model``); a job's
        ``model`` must be one of these or ``auto`` (= the first; the engine default if none).
    data_dir: holds ``store.sqlite3`` and ``jobs/<id>/``.
    device: ``auto`` | ``cpu`` | ``cuda``: where the worker runs every job.
    allowed_hosts: extra ``Host`` header values accepted (besides loopback names).
    check_host: False only with ``--allow-remote`` on a wildcard address and no ``--allowed-host``.
    allowed_origins: ``Origin`` values accepted; any other ``Origin`` (``null`` included) is refused.
    cancel_grace_s: seconds the worker gets to stop after a cancel before it is killed.
    max_worker_crashes: a job that kills the worker this many times is failed.
    limits: upload caps.
    reliability: state-write retries, the supervisor check and the disk-space headroom.
    runner: what the worker runs jobs and loads models with (the engine's, unless a test or
        benchmark names others).
    """

    host: str
    port: int
    token: str
    data_dir: Path
    models: tuple[str, ...] = ()
    device: str = "auto"
    allowed_hosts: tuple[str, ...] = ()
    check_host: bool = True
    allowed_origins: tuple[str, ...] = ()
    cancel_grace_s: float = 20.0
    max_worker_crashes: int = 3
    limits: Limits = field(default_factory=Limits)
    reliability: Reliability = field(default_factory=Reliability)
    runner: WorkerRunner = field(default_factory=WorkerRunner)

    @property
    def url(self) -> str:
        """The URL local clients use (loopback when bound to a wildcard address)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def host_allow_list(self) -> frozenset[str]:
        """Exact ``Host`` header values accepted (lower-case)."""
        names = set(LOOPBACK_HOSTS) | {h.lower() for h in self.allowed_hosts}
        out: set[str] = set()
        for name in names:
            out.add(name)
            out.add(f"{name}:{self.port}")
        return frozenset(out)
