"""The training driver behind `kuberl run`: preflight, resume, the iteration loop, stop criteria,
checkpoints, metrics and graceful shutdown.

Preflight checks everything a user can get wrong (env, checkpoint store, resume URI) before the run
directory is created, so a bad job writes nothing.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from kuberl.results import TrainResult
from kuberl.spec import RLTrainingJob, SpecError, StopSpec

if TYPE_CHECKING:  # imported where used: `kuberl --help` must not pay for prometheus/HTTP imports
    from kuberl.algorithms.api import AlgorithmAPI
    from kuberl.checkpoint.writer import CheckpointWriter
    from kuberl.metrics import MetricsServer, TrainerMetrics
    from kuberl.results import ResultLogger
    from kuberl.spec.job import RLTrainingJobSpec

log = logging.getLogger(__name__)

#: A save may take this long (seconds) before it counts as failed and training goes on; see
#: checkpoint/writer.py. KUBERL_CHECKPOINT_DEADLINE_S overrides it (tests, very large states).
CHECKPOINT_DEADLINE_S = float(os.environ.get("KUBERL_CHECKPOINT_DEADLINE_S", "300"))
#: The final checkpoint is tried this many times, with FINAL_BACKOFF_S × attempt between tries.
FINAL_ATTEMPTS = 3
FINAL_BACKOFF_S = 2.0


class TrainingFailedError(Exception):
    """The run cannot end well; `exit_status` tells the operator (and scripts) why (docs/reliability.md)."""

    exit_status = 1


class FinalCheckpointError(TrainingFailedError):
    """Training finished but its final checkpoint could not be written, even after retries. Exit 75
    (EX_TEMPFAIL): a retry (`resume: auto`) continues from the last complete checkpoint."""

    exit_status = 75


class StoreUnreachableError(TrainingFailedError):
    """The checkpoint store (`spec.checkpoint.uri`, or an S3 `spec.resume`) could not be reached when the
    run started: nothing was trained or written. Exit 75 (EX_TEMPFAIL), like a failed final checkpoint:
    an endpoint briefly down must not fail the job for good, so the operator retries; a missing bucket or
    refused credentials stay exit 2."""

    exit_status = 75


class DivergedError(TrainingFailedError):
    """The weights became NaN or infinite; they are never checkpointed. Exit 65 (EX_DATAERR)."""

    exit_status = 65


def stop_reason(stop: StopSpec, result: Mapping[str, Any]) -> str | None:
    """The first stop criterion `result` meets, or None."""
    ret = result.get("episode_return_mean")
    if (
        stop.episode_return_mean is not None
        and ret is not None
        and math.isfinite(ret)
        and ret >= stop.episode_return_mean
    ):
        return f"episodeReturnMean {ret:.1f} ≥ {stop.episode_return_mean:g}"
    if stop.timesteps is not None and result["timesteps_total"] >= stop.timesteps:
        return f"timesteps {result['timesteps_total']} ≥ {stop.timesteps}"
    if stop.iterations is not None and result["training_iteration"] >= stop.iterations:
        return f"iterations {result['training_iteration']} ≥ {stop.iterations}"
    if stop.time_seconds is not None and result["time_total_s"] >= stop.time_seconds:
        return f"timeSeconds {result['time_total_s']:.0f} ≥ {stop.time_seconds:g}"
    return None


@dataclass
class RunOutcome:
    run_dir: Path
    result: TrainResult | None
    stopped_by: str
    last_checkpoint: str | None
    interrupted: bool = False
    resumed_from: str | None = None


class GracefulStop:
    """First SIGINT/SIGTERM: finish the iteration, checkpoint, exit. A second SIGINT aborts at once.
    `on_signal` runs in the handler: it cuts short a wait that could outlast a pod's grace period."""

    def __init__(self, on_signal: Callable[[], None] | None = None) -> None:
        self.signal: int | None = None
        self.on_signal = on_signal
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (e.g. inside Ray Tune): no signal handling
            self._previous.clear()
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        log.warning("received %s: finishing this iteration, then checkpointing", signal.Signals(signum).name)
        if self.on_signal is not None:
            self.on_signal()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self) -> bool:
        return self.signal is not None


def preflight(job: RLTrainingJob) -> tuple[Any, Any]:
    """Validate what the schema cannot: the env builds and its spaces suit the algorithm, a custom model
    imports, the GPUs asked for exist, an explicit resume URI holds a checkpoint, the run directory and
    the checkpoint store are writable. Returns (store, checkpoint to resume from or None).

    Checks that write nothing come first; the run directory is created last, and removed again (with any
    parents created for it) when the checkpoint store then fails, so a bad job leaves nothing behind."""
    from kuberl.checkpoint import CheckpointError, StoreUnavailableError, load_checkpoint, open_store
    from kuberl.core.env_factory import EnvError, check_env
    from kuberl.preflight import (
        check_action_masks,
        check_action_spaces,
        check_callbacks,
        check_custom_model,
        check_devices,
        make_dirs,
        remove_dirs,
    )

    spec = job.spec
    try:
        if spec.config.capabilities.joint_agents:  # QMIX, VDN: a cooperative ParallelEnv, all agents
            from kuberl.core.multi_agent.joint import probe_joint

            agent_spaces = probe_joint(spec.env, spec.env_config)
        elif spec.multi_agent is not None:  # a PettingZoo env (docs/multi-agent.md)
            from kuberl.core.multi_agent.env import probe_spaces

            agent_spaces = list(probe_spaces(spec.env, spec.env_config).values())
        else:
            agent_spaces = [check_env(spec.env, spec.env_config)]
    except EnvError as exc:
        raise SpecError([("spec.env", str(exc))]) from None
    check_action_spaces(job, [action for _, action in agent_spaces])
    check_action_masks(job, agent_spaces)
    check_custom_model(job, agent_spaces[0] if agent_spaces else None)
    check_callbacks(job)
    check_devices(job)
    resume_from = None
    if spec.resume not in ("auto", "never"):
        try:
            resume_from = load_checkpoint(spec.resume)
        except StoreUnavailableError as exc:
            raise StoreUnreachableError(f"spec.resume: {exc} (a later attempt may succeed)") from None
        except CheckpointError as exc:
            raise SpecError([("spec.resume", str(exc))]) from None
    created = make_dirs(run_dir_for(job), field="spec.runDir")
    uri = spec.checkpoint.uri or str(run_dir_for(job) / "checkpoints")
    try:
        store = open_store(uri)
        store.check_access()
        # `resume: auto` restores the newest checkpoint (resume_latest); an edit it cannot take (the
        # algorithm, env, networks) is refused here, before anything else is written.
        latest = next(store.candidates(), None) if spec.resume == "auto" else resume_from
        if latest is not None:
            check_resumable(job, latest)
    except StoreUnavailableError as exc:
        remove_dirs(created)
        raise StoreUnreachableError(f"spec.checkpoint.uri: {exc} (a later attempt may succeed)") from None
    except CheckpointError as exc:
        remove_dirs(created)
        raise SpecError([("spec.checkpoint.uri", str(exc))]) from None
    except SpecError:
        remove_dirs(created)
        raise
    return store, resume_from


def resume_latest(algo: AlgorithmAPI, store: Any) -> Any:
    """`resume: auto`: restore the newest checkpoint the algorithm accepts, and continue its run (same
    run id, so retention and `latest` treat the retry's saves as that run's). A corrupt or refused one
    (e.g. a forged state file) is skipped with a warning, like a partial one. Returns it, or None."""
    from kuberl.checkpoint import CorruptCheckpointError

    for loaded in store.candidates():
        try:
            algo.load_checkpoint_files(loaded.files, where=loaded.info.uri)
        except CorruptCheckpointError as exc:
            log.warning("skipping checkpoint: %s", exc)
            continue
        algo.run_id = loaded.info.run
        return loaded
    return None


def check_resumable(job: RLTrainingJob, loaded: Any) -> None:
    """The checkpoint was written by this algorithm, env and networks (kuberl.spec.resume)."""
    import json

    from kuberl.algorithms.base import SPEC_FILE
    from kuberl.spec.resume import resume_problems

    try:
        saved = json.loads(loaded.files[SPEC_FILE])
    except (KeyError, ValueError):
        raise SpecError([("spec.resume", f"{loaded.info.uri} holds no readable {SPEC_FILE}")]) from None
    problems = resume_problems(saved, job, checkpoint=loaded.info.uri)
    if problems:
        raise SpecError(problems)


def run_dir_for(job: RLTrainingJob) -> Path:
    return Path(job.spec.run_dir or Path("runs") / job.metadata.name)


def start_metrics(job: RLTrainingJob) -> tuple[TrainerMetrics, MetricsServer | None]:
    """The job's metrics, served on `spec.metrics.port` when enabled, in phase Pending. On Kubernetes the
    operator passes the resource's name and namespace (KUBERL_JOB_NAME/KUBERL_NAMESPACE) for the labels."""
    from kuberl.metrics import TrainerMetrics

    metrics = TrainerMetrics(
        job=os.environ.get("KUBERL_JOB_NAME", job.metadata.name),
        namespace=os.environ.get("KUBERL_NAMESPACE", job.metadata.namespace or "default"),
        algorithm=job.spec.algorithm,
        max_custom_metrics=job.spec.metrics.max_custom_metrics,
        custom_metric_expiry=job.spec.metrics.custom_metric_expiry_iterations,
    )
    server = None
    if job.spec.metrics.enabled:
        server = serve_metrics(metrics, port=job.spec.metrics.port, in_cluster=on_kubernetes())
    metrics.set_phase("Pending")
    return metrics, server


def on_kubernetes() -> bool:
    """In a pod (the kubelet sets KUBERNETES_SERVICE_HOST in every container)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def serve_metrics(metrics: TrainerMetrics, *, port: int, in_cluster: bool) -> MetricsServer:
    """Start the metrics server. In a pod it listens on every interface at exactly `port` (Prometheus and
    the operator reach it through the pod IP; a clash is a spec error). Locally it listens on loopback
    only, and a port another run already holds (two local runs with the default 8080) falls back to a
    free one, with a warning naming it, instead of failing the run."""
    from kuberl.metrics import MetricsServer

    host = "0.0.0.0" if in_cluster else "127.0.0.1"
    server = MetricsServer(metrics, host=host, port=port)
    try:
        server.start()
        return server
    except OSError as exc:
        if in_cluster or port == 0:
            raise SpecError(
                [("spec.metrics.port", f"cannot listen on {host}:{port}: {exc.strerror or exc}")]
            ) from None
    server = MetricsServer(metrics, host=host, port=0)
    server.start()
    log.warning(
        "metrics port %d is in use (another run?): serving /metrics and /status on http://%s:%d instead",
        port,
        host,
        server.port,
    )
    return server


@dataclass
class _Run:
    """One training run's parts, shared by the steps of `run_job` below."""

    algo: AlgorithmAPI
    spec: RLTrainingJobSpec
    store: Any
    logger: ResultLogger
    metrics: TrainerMetrics
    outcome: RunOutcome
    writer: CheckpointWriter | None = None
    saved_at: int = -1  # the iteration of this run's newest checkpoint (-1: none yet)

    def resume(self, resume_from: Any) -> None:
        """Load the checkpoint `spec.resume` names (auto: the store's newest), if any, and continue from it."""
        if self.spec.resume == "auto":
            loaded = resume_latest(self.algo, self.store)
        elif resume_from is not None:
            self.algo.load_checkpoint_files(resume_from.files, where=resume_from.info.uri)
            loaded = resume_from  # a fork of that run: this run keeps its own fresh run id
        else:
            loaded = None
            others = self.store.list()
            if others:
                log.warning(
                    "resume: never: %s holds %d checkpoint(s) of earlier runs; this run (%s) neither "
                    "resumes nor prunes them, but replaces any with the same name",
                    self.store.uri,
                    len(others),
                    self.algo.run_id,
                )
        if loaded is not None:
            self._continue_from(loaded)

    def _continue_from(self, loaded: Any) -> None:
        algo, outcome = self.algo, self.outcome
        dropped = self.logger.rewind(iteration=algo.iteration, step=algo.timesteps)
        if dropped:
            log.info("resumed at iteration %d: dropped %d later result lines", algo.iteration, dropped)
        outcome.resumed_from = algo.last_checkpoint = loaded.info.uri
        # The restored progress is checked against the stop criteria before any training: a run
        # resumed from a checkpoint that already meets them (a retry after the final save, or a
        # re-run of a finished job) ends there instead of training past its stop.
        outcome.result = algo.progress()
        self.metrics.note_resumed(loaded.info.uri, created=loaded.info.created)
        log.info("resumed from %s at iteration %d", loaded.info.uri, algo.iteration)

    def start_checkpoints(self) -> None:
        from kuberl.checkpoint.writer import CheckpointWriter

        self.saved_at = self.algo.iteration if self.outcome.resumed_from else -1
        self.writer = CheckpointWriter(self.store, deadline_s=CHECKPOINT_DEADLINE_S)
        self.metrics.watch_checkpoint(self.writer.in_progress_s)

    def checkpoint(self) -> bool:
        """A mid-run save: a failure is logged and counted, and training goes on."""
        from kuberl.checkpoint import CheckpointError

        algo, metrics = self.algo, self.metrics
        assert self.writer is not None
        t = time.perf_counter()
        try:
            files = algo.checkpoint_files()
            info = self.writer.save(
                algo.checkpoint_name(),
                files,
                metadata=algo.checkpoint_metadata(),
                keep=self.spec.checkpoint.keep,
                run=algo.run_id,
            )
        except CheckpointError as exc:
            log.error("checkpoint at iteration %d failed: %s", algo.iteration, exc)
            metrics.record_checkpoint(duration_s=time.perf_counter() - t, success=False)
            return False
        except Exception:
            log.exception("checkpoint at iteration %d failed", algo.iteration)
            metrics.record_checkpoint(duration_s=time.perf_counter() - t, success=False)
            return False
        algo.last_checkpoint = info.uri
        metrics.record_checkpoint(duration_s=time.perf_counter() - t, success=True, uri=info.uri)
        self.outcome.last_checkpoint = info.uri
        self.saved_at = algo.iteration
        return True

    def final_checkpoint(self) -> None:
        """The run's result: retried, and a failure fails the run instead of ending it "done"."""
        assert self.writer is not None
        self.writer.wait(CHECKPOINT_DEADLINE_S)  # a mid-run save still in flight goes first
        for attempt in range(1, FINAL_ATTEMPTS + 1):
            if self.checkpoint():
                return
            if attempt < FINAL_ATTEMPTS:
                log.warning("retrying the final checkpoint (attempt %d of %d)", attempt + 1, FINAL_ATTEMPTS)
                time.sleep(FINAL_BACKOFF_S * attempt)
                self.writer.wait(CHECKPOINT_DEADLINE_S)
        last = self.outcome.last_checkpoint or "none"
        raise FinalCheckpointError(
            f"the final checkpoint (iteration {self.algo.iteration}) to {self.store.uri} failed "
            f"{FINAL_ATTEMPTS} times; the last complete checkpoint is {last}. Exit status "
            f"{FinalCheckpointError.exit_status}: a retry with resume: auto continues from it"
        )

    def train(self, stopper: GracefulStop, on_result: Callable[[TrainResult], None] | None) -> None:
        """Iterations until a stop criterion or a signal, then the final checkpoint (spec.checkpoint.atEnd)."""
        algo, outcome, spec = self.algo, self.outcome, self.spec
        reason = self._iterate(stopper, on_result)
        outcome.interrupted = stopper.requested
        outcome.stopped_by = (
            f"signal {signal.Signals(stopper.signal).name}" if stopper.signal is not None else (reason or "")
        )
        if spec.checkpoint.at_end and algo.iteration > 0 and self.saved_at != algo.iteration:
            self.final_checkpoint()

    def _iterate(self, stopper: GracefulStop, on_result: Callable[[TrainResult], None] | None) -> str | None:
        """The iteration loop; returns the stop criterion met (None: stopped by a signal)."""
        algo, outcome, spec = self.algo, self.outcome, self.spec
        while True:
            reason = stop_reason(spec.stop, outcome.result) if outcome.result else None
            if reason or stopper.requested:
                return reason
            result = _train_once(algo, stopper)
            if result is None:
                return reason
            _check_finite(algo)
            outcome.result = result
            self.logger.log(result)
            self.metrics.update(result)
            if on_result is not None:
                on_result(result)
            every = spec.checkpoint.every_iterations
            if every and algo.iteration % every == 0 and not stop_reason(spec.stop, result):
                self.checkpoint()


def _train_once(algo: AlgorithmAPI, stopper: GracefulStop) -> TrainResult | None:
    """One iteration; None when the stop signal cut it short (any other failure raises)."""
    try:
        return algo.train()
    except Exception as exc:
        if not stopper.requested:
            raise
        # InterruptedError: a wait the signal cut short (algo.interrupt), not a fault.
        log.warning(
            "iteration interrupted by the stop signal", exc_info=not isinstance(exc, InterruptedError)
        )
        return None


def _check_finite(algo: AlgorithmAPI) -> None:
    """NaN or infinite weights end the run before they are logged or checkpointed."""
    from kuberl.core.state_io import non_finite

    bad = non_finite(algo.get_weights())
    if bad:
        raise DivergedError(
            f"iteration {algo.iteration}: the weights became NaN or infinite ({', '.join(bad[:3])}"
            f"{', …' if len(bad) > 3 else ''}); nothing was checkpointed from this iteration on. "
            "Lower config.lr, clip gradients (config.grad_clip) or check the rewards"
        )


def run_job(
    job: RLTrainingJob,
    *,
    on_result: Callable[[TrainResult], None] | None = None,
    on_start: Callable[[AlgorithmAPI], None] | None = None,
) -> RunOutcome:
    """Train `job` until a stop criterion or a signal. `on_result` sees every iteration's result."""
    from kuberl.build import build_algorithm
    from kuberl.results import ResultLogger
    from kuberl.sampling import resolve_sampling

    store, resume_from = preflight(job)
    # Locally, one env runner samples in the driver unless the job says otherwise (kuberl.sampling);
    # params.json keeps the job as written, which a cluster runs with its actors.
    train_job, sampling = resolve_sampling(job)
    log.info("%s", sampling.describe())
    run_dir = run_dir_for(job)
    metrics, server = start_metrics(job)
    logger = ResultLogger(run_dir)
    logger.write_params(job.to_wire())
    algo = None
    outcome = RunOutcome(run_dir=run_dir, result=None, stopped_by="", last_checkpoint=None)
    try:
        algo = build_algorithm(train_job, run_dir=run_dir)
        run = _Run(algo=algo, spec=job.spec, store=store, logger=logger, metrics=metrics, outcome=outcome)
        run.resume(resume_from)
        if on_start is not None:
            on_start(algo)
        metrics.set_phase("Running")
        run.start_checkpoints()
        with GracefulStop(on_signal=algo.interrupt) as stopper:
            run.train(stopper, on_result)
        outcome.last_checkpoint = outcome.last_checkpoint or algo.last_checkpoint
        metrics.set_phase("Stopped" if outcome.interrupted else "Succeeded")
        return outcome
    except BaseException:
        metrics.set_phase("Failed")
        raise
    finally:
        logger.close()
        if algo is not None:
            algo.stop()
        if server is not None:
            server.stop()
