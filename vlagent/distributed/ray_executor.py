"""Each episode of an evaluation as a Ray task; its run directory comes back through Ray.

A task opens the scenario's device on whichever node Ray picks, records the episode into a
temporary directory there, and returns the result with every file of the run directory as
bytes (no shared file system is assumed). This process writes them under ``--out`` exactly
as a local run does, so ``vlagent report`` and ``show`` read them alike, and streams each
result into results.json and junit.xml as it lands.

Where episodes run:

* a phone scenario on ``adb:SERIAL`` (its own device or ``--device``) asks for one unit of
  the custom resource ``adb:SERIAL``: a node that has the phone advertises it
  (``ray start --resources '{"adb:SERIAL": 1}'``), so the phone's scenarios run there, one
  at a time (the next waits in this process, its deadline counting from its turn); a
  resource no node offers is refused before anything runs, and a phone whose node leaves
  the cluster is taken out: its running and queued scenarios are recorded as ``error``;
* simulated phones and the sample desktop (on a private Xvfb screen) run anywhere.

Faults: a worker process or node that dies mid-episode is retried once (``max_retries=1``;
the episode restarts from its setup); if that dies too, the episode is recorded as
``error`` with whatever of its run directory the node still holds. A task with no answer
within ``timeout_s`` is cancelled and recorded as ``error``. A finished result is written
before the next is awaited, so nothing finished is lost, and Ctrl-C keeps it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from vlagent.agent import EndReason
from vlagent.distributed.model_actor import ActorFactory, ModelServer
from vlagent.errors import ConfigError, MissingExtraError
from vlagent.evaluate import EvalConfig, EvalJob, EvalRunner, ScenarioResult, _display_for
from vlagent.secrets import Secrets

if TYPE_CHECKING:
    from vlagent.scenario import Scenario

__all__ = ["RayExecutor", "device_resource"]

log = logging.getLogger(__name__)

_LOOK_EVERY_S = 5.0
"""How often the driver looks whether the phones its queued and running episodes need are still offered."""
_LOCAL_OBJECT_STORE = 150 * 1024 * 1024
"""Object store of a ``--ray local`` cluster: results pass through it one run directory at a time."""


def device_resource(scenario: Scenario, override: str | None) -> str | None:
    """The Ray custom resource the scenario's device is advertised as (``adb:SERIAL``), None if it runs anywhere."""
    kind = override if override is not None and scenario.device.is_phone else scenario.device.kind
    return kind if kind.startswith("adb:") and len(kind) > 4 else None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray", "ray", "--ray (episodes on a Ray cluster)") from exc
    return ray


# --- on the worker ------------------------------------------------------------------------

_RUNNERS: dict[str, EvalRunner] = {}
"""This worker process's runner of the current evaluation: a model policy is loaded once per process."""


def _work_root(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"vlagent-ray-{run_id}"


def _files(run_dir: Path) -> list[tuple[str, bytes]]:
    """Every regular file under ``run_dir`` as (relative POSIX path, bytes)."""
    if not run_dir.is_dir():
        return []
    found = sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink())
    return [(p.relative_to(run_dir).as_posix(), p.read_bytes()) for p in found]


def _episode(config: EvalConfig, job: EvalJob, run_id: str) -> dict[str, Any]:
    """Run one job here (a Ray task): its result, its run directory's files and where it ran."""
    import ray

    root = _work_root(run_id)
    runner = _RUNNERS.get(run_id)
    if runner is None:
        _RUNNERS.clear()
        runner = _RUNNERS[run_id] = EvalRunner(replace(config, out=root))
    run_dir = root / job.scenario.name
    shutil.rmtree(run_dir, ignore_errors=True)  # an earlier attempt's leftovers on this node
    run_dir.mkdir(parents=True, mode=0o700)
    with _display_for([job.scenario]):
        result = runner.run(job)
    shipped = {
        "result": asdict(result),
        "files": _files(run_dir),
        "node": ray.get_runtime_context().get_node_id(),
        "host": ray.util.get_node_ip_address(),
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    return shipped


def _salvage(run_id: str, name: str) -> dict[str, Any]:
    """What a dead attempt of ``name`` left on this node (a Ray task pinned to the node)."""
    import ray

    run_dir = _work_root(run_id) / name
    files = _files(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"files": files, "node": ray.get_runtime_context().get_node_id(), "host": ray.util.get_node_ip_address()}


def _clean(run_id: str) -> None:
    """Remove this evaluation's temporary directory from this node."""
    _RUNNERS.pop(run_id, None)
    shutil.rmtree(_work_root(run_id), ignore_errors=True)


# --- on the driver ------------------------------------------------------------------------


def _land(out: Path, name: str, files: Sequence[tuple[str, bytes]]) -> Path:
    """Write a shipped run directory under ``out/name``; a path leaving it is refused."""
    run_dir = out / name
    for rel, data in files:
        path = PurePosixPath(rel)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"a shipped file of {name} leaves its run directory: {rel!r}")
        target = run_dir.joinpath(*path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return run_dir


def _steps_in(run_dir: Path) -> int:
    """Steps recorded in a (partial) run directory."""
    from vlagent.trajectory import load_trajectory

    if not (run_dir / "trajectory.jsonl").exists():
        return 0
    try:
        return len(load_trajectory(run_dir).steps)
    except Exception:  # a partial file that cannot be read says nothing about steps
        return 0


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray {address!r}: give local, auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) where nothing answers is one line now, not minutes of Ray retrying."""
    import socket

    if address == "auto":
        return
    host, port = _host_port(address)
    hostport = f"{host}:{port}"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {hostport} ({exc.strerror or exc}); start one with "
            f"'ray start --head --port={port}' or use --ray local"
        ) from exc


@dataclass
class RayExecutor:
    """Run an evaluation's episodes as Ray tasks (see the module docs).

    ``address``: ``local`` starts a Ray cluster on this machine for the run (``workers`` CPUs,
    default the evaluation's ``jobs``); ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` joins a
    running one. At most ``max(jobs, CPUs of the cluster)`` episodes are submitted at once.
    """

    address: str = "local"
    workers: int | None = None
    timeout_s: float = 3600.0
    """An episode with no answer this long after it was submitted is cancelled and recorded as ``error``."""
    max_retries: int = 1
    object_store_bytes: int = _LOCAL_OBJECT_STORE
    model_actors: int = 0
    """Serve a model policy from this many Ray actors (one GPU each where the cluster has that many
    GPUs), batching the steps of the episodes they serve, instead of loading it in every worker."""

    @property
    def serves_policy(self) -> bool:
        """The model is loaded by this executor's actors, not by the evaluating process."""
        return self.model_actors > 0

    def __post_init__(self) -> None:
        if self.address not in ("local", "auto"):
            _host_port(self.address)
        if self.timeout_s <= 0 or self.max_retries < 0 or (self.workers is not None and self.workers < 1):
            raise ConfigError("RayExecutor: timeout_s must be > 0, max_retries >= 0 and workers >= 1")

    def execute(self, jobs: Sequence[EvalJob], runner: EvalRunner, deliver: Callable[[ScenarioResult], None]) -> None:
        ray = _import_ray()
        config = runner.config
        with self._connected(ray, config.jobs):
            resources = ray.cluster_resources()
            for job in jobs:
                wanted = device_resource(job.scenario, config.device)
                if wanted is not None and resources.get(wanted, 0) < 1:
                    raise ConfigError(
                        f"no node of the Ray cluster offers {wanted} (scenario {job.scenario.name}); start the "
                        f"node that has the phone with: ray start --address ... --resources '{{\"{wanted}\": 1}}'"
                    )
            window = max(config.jobs, int(resources.get("CPU", 1)))
            run_id = uuid.uuid4().hex[:12]
            # A scenario's own secrets are read here, from this process's environment, as a local run reads
            # them; a worker runs one episode at a time (no batching of a model it loads itself).
            named = {n for job in jobs for n in job.scenario.secrets if n not in config.secrets.names}
            own = sorted(n for n in named if os.environ.get(n))
            secrets = config.secrets.merged(Secrets.from_env(own))
            shipped = replace(config, out=Path("."), existing="overwrite", jobs=1, secrets=secrets)
            actors: list[Any] = []
            try:
                if self.model_actors and config.policy_factory is None and config.policy != "scripted":
                    actors = self._model_actors(ray, config, window)
                    shipped = replace(shipped, policy_factory=ActorFactory(tuple(actors), config.policy))
                self._stream(ray, jobs, runner, deliver, run_id, window, shipped)
            finally:
                for actor in actors:
                    with contextlib.suppress(Exception):
                        log.info("model actor served %s", ray.get(actor.stats.remote(), timeout=10))
                    ray.kill(actor)
                self._clean_nodes(ray, run_id)

    def _model_actors(self, ray: Any, config: EvalConfig, window: int) -> list[Any]:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= self.model_actors else 0
        server = ray.remote(ModelServer).options(num_cpus=0, num_gpus=gpus, max_concurrency=max(window, 2))
        options = dict(config.policy_options)
        actors = [server.remote(config.policy, options, config.jobs) for _ in range(self.model_actors)]
        try:
            ray.get([actor.ready.remote() for actor in actors], timeout=self.timeout_s)
        except ray.exceptions.RayTaskError as exc:
            for actor in actors:
                ray.kill(actor)
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            raise ConfigError(f"the model actors could not load {config.policy}: {cause}") from None
        except ray.exceptions.GetTimeoutError:
            for actor in actors:
                ray.kill(actor)
            raise ConfigError(f"the model actors did not start within {self.timeout_s:.0f}s") from None
        log.info("%d model actor(s) of %s up (%s GPU each)", len(actors), config.policy, gpus)
        return actors

    @contextlib.contextmanager
    def _connected(self, ray: Any, jobs: int) -> Iterator[None]:
        if ray.is_initialized():  # the caller's own connection
            yield
            return
        common: dict[str, Any] = {"log_to_driver": False, "configure_logging": False, "namespace": "vlagent"}
        temp: str | None = None
        if self.address == "local":
            temp = tempfile.mkdtemp(prefix="vlagent-ray-")
            ray.init(
                address="local",
                num_cpus=self.workers or jobs,
                object_store_memory=self.object_store_bytes,
                include_dashboard=False,
                _temp_dir=temp,
                **common,
            )
        else:
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, **common)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                cause = f"{exc} {exc.__cause__ or ''}".lower()
                hint = (
                    " (the cluster asks for its token: set RAY_AUTH_MODE=token and copy ~/.ray/auth_token from "
                    "the head, as on its other nodes)"
                    if "auth" in cause
                    else ""
                )
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"cannot join the Ray cluster at {self.address}: {first}{hint}") from exc
        try:
            yield
        finally:
            ray.shutdown()
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)

    def _stream(
        self,
        ray: Any,
        jobs: Sequence[EvalJob],
        runner: EvalRunner,
        deliver: Callable[[ScenarioResult], None],
        run_id: str,
        window: int,
        remote_config: EvalConfig,
    ) -> None:
        config = runner.config
        shipped_config = ray.put(remote_config)
        task = ray.remote(_episode)
        queue = list(reversed(jobs))  # next job last
        pending: dict[Any, tuple[EvalJob, float, str | None]] = {}
        busy: dict[str, int] = {}  # running episodes per phone: never more than the phone's node offers
        offered, next_look = ray.cluster_resources(), time.monotonic() + _LOOK_EVERY_S

        def done(ref: Any) -> EvalJob:
            job, _started, wanted = pending.pop(ref)
            if wanted is not None:
                busy[wanted] -= 1
            return job

        try:
            while queue or pending:
                # Submit the earliest jobs that can start now: a phone's next scenario waits here, not in
                # Ray, so its deadline counts from when its phone is free.
                index = len(queue) - 1
                while index >= 0 and len(pending) < window:
                    job = queue[index]
                    wanted = device_resource(job.scenario, config.device)
                    if wanted is None or busy.get(wanted, 0) < offered.get(wanted, 0):
                        queue.pop(index)
                        ref = task.options(
                            num_cpus=1,
                            max_retries=self.max_retries,
                            resources={wanted: 1} if wanted else {},
                            name=f"vlagent episode {job.scenario.name}",
                        ).remote(shipped_config, job, run_id)
                        pending[ref] = (job, time.monotonic(), wanted)
                        if wanted is not None:
                            busy[wanted] = busy.get(wanted, 0) + 1
                    index -= 1
                ready: list[Any] = []
                if pending:
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                    if ready:
                        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for ref in ready:
                    job = done(ref)
                    deliver(self._collect(ray, ref, job, config, run_id))
                now = time.monotonic()
                if now >= next_look:  # a phone whose node left the cluster: its scenarios can run nowhere
                    offered, next_look = ray.cluster_resources(), now + _LOOK_EVERY_S
                gone = "left the Ray cluster (its node is gone): taken out of the pool"
                for ref, (job, started, wanted) in list(pending.items()):
                    why = None
                    if now - started > self.timeout_s:
                        why = f"no answer from the Ray cluster within {self.timeout_s:.0f}s"
                    elif wanted is not None and offered.get(wanted, 0) < 1:
                        why = f"{wanted} {gone}"
                    if why is not None:
                        ray.cancel(ref, force=True)
                        done(ref)
                        log.warning("episode %s: %s", job.scenario.name, why)
                        deliver(self._failed(ray, job, config, run_id, why))
                for job in list(queue):
                    wanted = device_resource(job.scenario, config.device)
                    if wanted is not None and offered.get(wanted, 0) < 1:
                        queue.remove(job)
                        deliver(self._failed(ray, job, config, run_id, f"{wanted} {gone}", salvage=False))
        except KeyboardInterrupt:
            log.warning("interrupted: cancelling %d running episode(s) and writing the results so far", len(pending))
            for ref in pending:
                ray.cancel(ref)  # KeyboardInterrupt inside the task: the phone is handed back
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=5.0) if pending else ([], [])
            for ref in ready:
                job = done(ref)
                with contextlib.suppress(ray.exceptions.RayError):
                    shipped = ray.get(ref, timeout=5.0)
                    deliver(self._landed(shipped, job, config))
            raise

    def _collect(self, ray: Any, ref: Any, job: EvalJob, config: EvalConfig, run_id: str) -> ScenarioResult:
        try:
            shipped = ray.get(ref)
        except ray.exceptions.RayError as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("episode %s failed on the cluster: %s", job.scenario.name, why)
            return self._failed(ray, job, config, run_id, f"{type(exc).__name__}: {why}")
        return self._landed(shipped, job, config)

    def _landed(self, shipped: dict[str, Any], job: EvalJob, config: EvalConfig) -> ScenarioResult:
        run_dir = _land(config.out, job.scenario.name, shipped["files"])
        data = {**shipped["result"], "run_dir": str(run_dir), "node": shipped["node"], "host": shipped["host"]}
        return ScenarioResult(**data)

    def _failed(
        self, ray: Any, job: EvalJob, config: EvalConfig, run_id: str, why: str, *, salvage: bool = True
    ) -> ScenarioResult:
        """An episode whose tasks died or hung: ``error``, with what a node kept of its run directory."""
        scenario = job.scenario
        node = host = None
        partial: list[tuple[str, bytes]] = []
        for salvaged in self._on_every_node(ray, _salvage, run_id, scenario.name) if salvage else []:
            if len(salvaged["files"]) > len(partial):
                partial, node, host = salvaged["files"], salvaged["node"], salvaged["host"]
        run_dir = _land(config.out, scenario.name, partial)
        kind = config.device if config.device is not None and scenario.device.is_phone else scenario.device.kind
        return ScenarioResult(
            scenario.name, scenario.source, scenario.task, kind, False, EndReason.ERROR.value, why,
            _steps_in(run_dir), [], {"duration_s": 0.0}, {}, {}, None, str(run_dir), error=why,
            scenario=job.base, repeat=job.repeat, seed=job.seed, node=node, host=host,
        )  # fmt: skip

    def _on_every_node(self, ray: Any, fn: Callable[..., Any], *args: object) -> list[Any]:
        """``fn(*args)`` once on each live node (pinned there, no CPU asked); answers within 30 s."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        refs = [
            ray.remote(fn)
            .options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], False))
            .remote(*args)
            for n in ray.nodes()
            if n.get("Alive")
        ]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=30.0) if refs else ([], [])
        answers = []
        for ref in ready:
            with contextlib.suppress(ray.exceptions.RayError):
                answers.append(ray.get(ref))
        return answers

    def _clean_nodes(self, ray: Any, run_id: str) -> None:
        with contextlib.suppress(Exception):  # cleaning up must not hide the run's own outcome
            self._on_every_node(ray, _clean, run_id)
