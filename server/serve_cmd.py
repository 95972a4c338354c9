"""``texbridge serve``: start the local engine process.

Binds loopback only (another address needs ``--allow-remote`` and ``--token``), makes a
random token per launch, writes the discovery file once listening and removes it on a
clean exit. See docs/api.md and the README's server section.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import signal
import socket
import sys
from pathlib import Path

from server.config import LOOPBACK_BIND, Limits, ServerConfig, WorkerRunner
from server.discovery import user_dir


def default_data_dir() -> Path:
    """``texbridge serve``'s default ``--data-dir`` (the per-user data folder)."""
    return user_dir("data") / "texbridge" / "server"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_BIND:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the local engine process (HTTP API for the Blender add-on)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --allow-remote)")
    p.add_argument("--port", type=int, default=0, help="port (0 = a free port; the discovery file names it)")
    p.add_argument("--model", action="append", default=[], metavar="ID|PATH", help="a model jobs may use (repeatable); the first is 'auto'")
    p.add_argument("--data-dir", type=Path, default=None, help=f"job store and job folders (default {default_data_dir()})")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device the worker runs jobs on")
    p.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address (needs --token)")
    p.add_argument("--token", default=None, help="use this token instead of a random one (required with --allow-remote)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="HOST", help="extra Host header value to accept")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN", help="an Origin to accept (default: none)")
    p.add_argument("--max-body-mb", type=float, default=256.0, help="request body cap in MB (default 256)")
    p.add_argument("--max-vertices", type=int, default=Limits.max_vertices, help="mesh vertex cap")
    p.add_argument("--max-triangles", type=int, default=Limits.max_triangles, help="mesh triangle cap")
    p.add_argument("--cancel-grace", type=float, default=20.0, help="seconds a cancelled job gets before its worker is killed")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str], runner: WorkerRunner = WorkerRunner()) -> int:
    """``texbridge serve ARGV`` whose worker runs ``runner`` (tests and benchmarks name their own)."""
    parser = argparse.ArgumentParser(prog="texbridge")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["serve", *argv]), runner)


def run(args: argparse.Namespace, runner: WorkerRunner = WorkerRunner()) -> int:
    host = args.host.strip("[]")
    if not is_loopback(host):
        if not args.allow_remote:
            return _fail(
                f"refusing to listen on {host}: the engine binds loopback only; "
                "pass --allow-remote --token T to expose it on the network (anyone who can reach it and knows T controls it)"
            )
        if not args.token:
            return _fail(f"--allow-remote on {host} needs --token T (a long random secret shared with the client)")
        print(
            f"warning: the engine listens on {host}, reachable from other machines; traffic is plain HTTP, "
            "anyone with the token can run jobs",
            file=sys.stderr,
        )
    if args.token is not None and len(args.token) < 16:
        return _fail("--token must be at least 16 characters")
    if not (0 <= args.port <= 65535):
        return _fail(f"--port {args.port} is out of range; allowed: 0..65535 (0 = a free port)")
    if args.max_body_mb <= 0:
        return _fail("--max-body-mb must be positive")
    token = args.token or secrets.token_urlsafe(32)
    models = tuple(str(Path(m).resolve()) if os.path.exists(m) else m for m in args.model)
    data_dir = (args.data_dir or default_data_dir()).resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, args.port))
    except OSError as exc:
        sock.close()
        return _fail(f"cannot listen on {host}:{args.port} ({exc.strerror}); pick another --port or 0 for a free one")
    sock.listen(128)
    port = sock.getsockname()[1]

    wildcard = host in ("0.0.0.0", "::")
    allowed_hosts = tuple(args.allowed_host) + (() if is_loopback(host) or wildcard else (f"[{host}]" if ":" in host else host,))
    config = ServerConfig(
        host=host,
        port=port,
        token=token,
        data_dir=data_dir,
        models=models,
        device=args.device,
        allowed_hosts=allowed_hosts,
        check_host=not (wildcard and args.allow_remote and not args.allowed_host),
        allowed_origins=tuple(args.allow_origin),
        cancel_grace_s=args.cancel_grace,
        runner=runner,
        limits=Limits(
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            max_vertices=args.max_vertices,
            max_triangles=args.max_triangles,
        ),
    )
    return serve(config, sock, log_level=args.log_level)


def serve(config: ServerConfig, sock: socket.socket, log_level: str = "warning") -> int:
    import uvicorn

    from engine.environment import package_version
    from server.app import create_app
    from server.discovery import remove_discovery, write_discovery
    from server.events import EventHub
    from server.store import JobStore
    from server.supervisor import JobManager

    _log_to_stderr()
    store = JobStore(config.data_dir / "store.sqlite3", busy_timeout_s=config.reliability.store_busy_timeout_s)
    hub = EventHub()
    manager = JobManager(config, store, hub.notify)
    pid = os.getpid()

    def on_ready() -> None:
        path = write_discovery(
            {"url": config.url, "port": config.port, "pid": pid, "token": config.token, "version": package_version("texbridge")}
        )
        print(f"texbridge engine listening on {config.url} (discovery file {path})", file=sys.stderr, flush=True)

    def on_stop() -> None:
        remove_discovery(pid)

    app = create_app(config, store, manager, hub, on_ready=on_ready, on_stop=on_stop)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False, timeout_graceful_shutdown=5, server_header=False)
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal; this
    # handler turns that into a normal exit (code 0, discovery file removed).
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        remove_discovery(pid)
        store.close()
    return 0


def _log_to_stderr() -> None:
    """The server's own log (failed state writes, recovered jobs) on stderr, with times."""
    import logging

    logger = logging.getLogger("texbridge.server")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s texbridge %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


class _Stopped(Exception):
    pass


def _raise_stop(signum, frame) -> None:
    raise _Stopped()
