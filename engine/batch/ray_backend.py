"""``texbridge batch --ray [ADDRESS]``: the batch's assets as tasks on Ray actors.

- Connecting: no address (or ``auto``) joins the local Ray instance when one runs, else
  starts one with every service bound to 127.0.0.1; an address (``HEAD:6379``) joins that
  cluster. Token authentication stays on (Ray's default): ``RAY_AUTH_MODE=disabled`` is refused.
- Workers: one actor per GPU (``num_gpus=1``) when the cluster has GPUs, else ``actors``
  CPU actors. Each actor keeps its prior loaded (``engine.batch.work.AssetWorker``) and
  textures asset after asset with the same runner as ``texbridge texture``.
- Faults: a task whose actor died (killed, out of memory, node lost) is queued again, up to
  ``retries`` more attempts, on a fresh actor; it resumes from the asset's checkpoint. An
  asset that fails by itself (bad mesh or spec) comes back as a failed record: no retry.
- Ctrl-C: every actor is told to stop after its current step (checkpoint written); those
  assets and the ones not started are recorded as cancelled.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.batch.manifest import AssetSpec
from engine.batch.summary import BatchProgress, BatchSummary
from engine.batch.work import CANCELLED, FAILED, QUEUED, RUNNING, AssetWorker, base_record
from engine.errors import BackendUnavailableError, SpecError

INSTALL = 'pip install "texbridge[ray]"'
#: Environment passed on to the actors (they may run on other machines: no paths here).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY")
#: Ray's single-machine switch: with it off every Ray service listens on 127.0.0.1 only.
_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class RayBatchConfig:
    """How the batch runs on Ray.

    address: None or "auto" = the local instance (joined, or started on 127.0.0.1);
        else a cluster's address, e.g. "10.0.0.5:6379".
    actors: CPU actors to start (None = one per ``cpus_per_actor`` CPUs of the cluster); with
        GPUs, at most this many GPU actors (None = one per GPU). Never more than assets to run.
    cpus_per_actor: CPUs each actor reserves (and torch threads it uses).
    use_gpus: one actor per GPU (num_gpus=1) when the cluster has GPUs; False = CPU actors.
    retries: further attempts for an asset whose actor died; each resumes from its checkpoint.
    stage_inputs: send each mesh file through Ray's object store instead of reading it on the
        worker (for nodes that cannot see the input folder).
    quiet: no progress bar.
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: int = 1
    use_gpus: bool = True
    retries: int = 2
    stage_inputs: bool = False
    quiet: bool = False


def import_ray():
    try:
        import ray
    except ImportError:
        raise SpecError(f"--ray needs the ray package, which is not installed; install it with {INSTALL} "
                        "(or drop --ray to texture the assets here, one after another)") from None
    return ray


class TextureActor:
    """A Ray actor (threaded: ``cancel`` runs while ``texture`` does) around one AssetWorker."""

    def __init__(self, cpus: int) -> None:
        import ray
        import torch

        torch.set_num_threads(max(1, cpus))
        gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        self.worker = AssetWorker(node=ray.util.get_node_ip_address(), gpu=f"GPU {gpus}" if gpus else None)
        self.stop = threading.Event()

    def ready(self) -> int:
        return os.getpid()

    def texture(self, asset: AssetSpec, attempt: int, mesh_bytes: bytes | None = None) -> dict:
        return self.worker.texture(asset, attempt, should_cancel=self.stop.is_set, mesh_bytes=mesh_bytes)

    def cancel(self) -> None:
        self.stop.set()


def connect(ray, cfg: RayBatchConfig) -> dict:
    """ray.init for ``cfg.address``; returns what the summary records about the connection."""
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
        raise SpecError("RAY_AUTH_MODE=disabled is set; texbridge keeps Ray's token authentication on "
                        "(open Ray clusters get taken over); unset RAY_AUTH_MODE and run again")
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    kw = dict(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env} if env else None)
    t0 = time.perf_counter()
    local = cfg.address in (None, "auto")
    started = False
    try:
        if local:
            try:
                ray.init(address="auto", **kw)
            except ConnectionError:  # no local instance: start one, reachable from this machine only
                _local_only(ray, True)
                ray.init(**kw)
                started = True
        else:
            if _is_loopback(cfg.address):  # a cluster on this machine bound to 127.0.0.1 (as we start them)
                _local_only(ray, True)
            _token_auth_for_address()
            ray.init(address=cfg.address, **kw)
    except ray.exceptions.AuthenticationError as exc:
        _local_only(ray, False)
        raise BackendUnavailableError(
            f"Ray at {cfg.address or 'the local instance'} refused the connection ({exc}); give this machine the "
            "cluster's token: copy the head's ~/.ray/auth_token here, or set RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN "
            "(README, Batch)") from None
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        _local_only(ray, False)
        raise BackendUnavailableError(
            f"cannot join the Ray cluster at {cfg.address} ({exc}); start it with `ray start --head` on the head "
            "node, check the address (HEAD:6379) and the firewall, and give this machine the cluster's token "
            "(~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN; README, Batch)") from None
    return {"address": cfg.address or "local", "started_local_instance": started,
            "connect_s": round(time.perf_counter() - t0, 3)}


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _token_auth_for_address() -> None:
    """Ray turns token auth on by itself only for a local instance; for an explicit address do it
    here whenever a token is at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)."""
    try:
        from ray._private.authentication import authentication_token_setup as auth
    except ImportError:  # another Ray version: its own defaults apply
        return
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token":
        auth._enable_token_auth()  # also refreshes Ray's config if it was read before the variable was set
    else:
        auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=True)


def _local_only(ray, on: bool) -> None:
    """Bind a new local instance to 127.0.0.1 (on), or undo that after it stopped (off)."""
    from ray._private import ray_constants

    if on:
        os.environ[_LOCAL_ONLY_ENV] = "0"  # inherited by the instance's processes
        ray_constants.ENABLE_RAY_CLUSTER = False  # read by this process's address lookup
    elif os.environ.get(_LOCAL_ONLY_ENV) == "0":
        del os.environ[_LOCAL_ONLY_ENV]
        ray_constants.ENABLE_RAY_CLUSTER = True


def actor_plan(ray, cfg: RayBatchConfig, n_assets: int) -> tuple[int, dict]:
    """(number of actors, their Ray options) for the cluster's resources."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 0))
    opts = dict(num_cpus=cfg.cpus_per_actor, max_concurrency=2, max_restarts=0, max_task_retries=0)
    if cfg.use_gpus and gpus > 0:
        capacity = gpus
        opts["num_gpus"] = 1
    else:
        capacity = max(1, cpus // cfg.cpus_per_actor)
    n = min(cfg.actors or capacity, capacity, max(1, n_assets))
    return n, opts


def run_ray_batch(todo: list[AssetSpec], summary: BatchSummary, cfg: RayBatchConfig, cancel: Callable[[], bool]) -> None:
    """Texture ``todo`` on Ray, updating ``summary`` as assets finish."""
    ray = import_ray()
    info = connect(ray, cfg)
    try:
        n, opts = actor_plan(ray, cfg, len(todo))
        summary.extra["ray"] = {**info, "actors": n, "gpus_per_actor": opts.get("num_gpus", 0),
                                "cpus_per_actor": cfg.cpus_per_actor, "retries": cfg.retries,
                                "stage_inputs": cfg.stage_inputs}
        summary.write()
        _Scheduler(ray, cfg, summary, n, opts).run(todo, cancel)
    finally:
        ray.shutdown()
        _local_only(ray, False)


class _Scheduler:
    """Assets to idle warm actors; a fresh actor gets work only once it has started (``ready``)."""

    def __init__(self, ray, cfg: RayBatchConfig, summary: BatchSummary, n: int, opts: dict) -> None:
        self.ray, self.cfg, self.summary, self.opts = ray, cfg, summary, opts
        self.actor_class = ray.remote(TextureActor)
        self.actors: list = []
        self.warming: dict = {}  # ready ref -> actor
        self.start_s: list[float] = []  # seconds from creation to ready, per actor
        self.dead_unused = 0  # actors that died before finishing any asset
        for _ in range(n):
            self._new_actor()

    def _new_actor(self) -> None:
        if self.dead_unused > 2 * len(self.actors) + self.cfg.retries + 2:
            raise BackendUnavailableError("the Ray workers keep dying before finishing any asset; check that texbridge "
                                          "and its model are available on every node (see `ray logs`)")
        actor = self.actor_class.options(**self.opts).remote(self.cfg.cpus_per_actor)
        self.actors.append(actor)
        self.warming[actor.ready.remote()] = (actor, time.perf_counter())

    def run(self, todo: list[AssetSpec], cancel: Callable[[], bool]) -> None:
        ray, summary = self.ray, self.summary
        died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError)
        pending = deque((a, 1) for a in todo)
        idle: list = []
        inflight: dict = {}  # ref -> (actor, asset, attempt)
        stopping = False
        bar = BatchProgress(len(todo), self.cfg.quiet)
        try:
            while pending or inflight:
                if cancel() and not stopping:
                    stopping = summary.cancelled = True
                    for actor in self.actors:
                        actor.cancel.remote()
                    while pending:
                        asset, attempt = pending.popleft()
                        summary.update({**summary.get(asset.name), "status": CANCELLED,
                                        "reason": "not started: the batch was cancelled"})
                    continue
                while idle and pending:
                    actor, (asset, attempt) = idle.pop(), pending.popleft()
                    try:
                        mesh = ray.put(Path(asset.mesh).read_bytes()) if self.cfg.stage_inputs else None
                    except OSError as exc:
                        idle.append(actor)
                        summary.update(base_record(asset, FAILED, attempts=attempt, error=f"cannot read {asset.mesh}: {exc}"))
                        continue
                    inflight[actor.texture.remote(asset, attempt, mesh)] = (actor, asset, attempt)
                    summary.update({**summary.get(asset.name), "status": RUNNING, "attempts": attempt})
                if pending and not inflight and not self.warming and not idle:
                    self._new_actor()  # every actor died
                bar.show(summary, len(inflight))
                ready, _ = ray.wait(list(inflight) + list(self.warming), num_returns=1, timeout=0.25)
                for ref in ready:
                    if ref in self.warming:
                        actor, t0 = self.warming.pop(ref)
                        try:
                            ray.get(ref)
                            self.start_s.append(round(time.perf_counter() - t0, 3))
                            idle.append(actor)
                        except died:
                            self.actors.remove(actor)
                            self.dead_unused += 1
                        continue
                    actor, asset, attempt = inflight.pop(ref)
                    try:
                        rec = ray.get(ref)
                        idle.append(actor)
                    except died as exc:
                        rec = self._died(asset, attempt, exc, stopping, pending)
                        self.actors.remove(actor)
                        if pending and not stopping:
                            self._new_actor()
                    except ray.exceptions.RayError as exc:  # e.g. the task could not be sent: not retried
                        idle.append(actor)
                        rec = base_record(asset, FAILED, attempts=attempt, error=f"{type(exc).__name__}: {exc}")
                    summary.update(rec)
                bar.show(summary, len(inflight))
        finally:
            bar.close()
            summary.extra.setdefault("ray", {})["actor_start_s"] = self.start_s
            for actor, asset, attempt in inflight.values():  # a second Ctrl-C: no wait for the checkpoint
                summary.cancelled = True
                summary.update({**summary.get(asset.name), "status": CANCELLED,
                                "error": "interrupted; it resumes from its last checkpoint"})

    def _died(self, asset: AssetSpec, attempt: int, exc: Exception, stopping: bool, pending: deque) -> dict:
        last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        prev = self.summary.get(asset.name)
        if stopping:
            return {**prev, "status": CANCELLED, "error": f"its worker died while the batch was cancelled ({last})"}
        if attempt <= self.cfg.retries:
            pending.appendleft((asset, attempt + 1))
            return {**prev, "status": QUEUED, "error": f"attempt {attempt}: the worker died ({last}); retrying"}
        return {**prev, "status": FAILED, "attempts": attempt,
                "error": f"the worker died on each of {attempt} attempts (last: {last}); see the Ray logs "
                         "(`ray logs`), e.g. for running out of memory; raise --retries or lower texture/render size"}
