"""The experiment driver behind `kuberl run` for a job with `spec.tune`: builds the Tuner from the spec,
runs it (or resumes it, with `resume: auto`), exports experiment-level metrics and writes
`tune_results.json`.

Trials run as Ray actors, each in a placement group sized from `spec.resources`, so the same job fits the
embedded Ray of a laptop and a KubeRay cluster. The experiment lives under `<runDir>/tune/<name>/`, or
under `<checkpoint.uri>/tune/<name>/` when that is an s3:// URI (Tune writes it through pyarrow's S3
filesystem, so every node of a cluster reads the checkpoints PBT exploits).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from kuberl.spec import RLTrainingJob, SpecError
from kuberl.trainer import preflight, run_dir_for, start_metrics
from kuberl.tune.report import TrialRow, pick_best, trial_rows, write_results

log = logging.getLogger(__name__)

RESULTS_FILE = "tune_results.json"
SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"
TRIAL_STATES = ("pending", "running", "paused", "terminated", "error")  # Tune's Trial.status, lowercased


@dataclass
class TuneOutcome:
    run_dir: Path
    experiment_path: str
    metric: str
    mode: str
    trials: list[TrialRow]
    best: TrialRow | None
    interrupted: bool
    results_file: Path
    errors: list[str] = field(default_factory=list)


def storage_path(job: RLTrainingJob) -> str:
    """Where Tune keeps the experiment: beside the job's S3 checkpoints, else in the run directory."""
    uri = job.spec.checkpoint.uri
    if uri and uri.startswith("s3://"):
        return uri.rstrip("/") + "/tune"
    return str((run_dir_for(job) / "tune").resolve())


class ExperimentMetrics(Callback):
    """A Tune callback that mirrors trial states and the best metric into the driver's TrainerMetrics
    (and so into /metrics and /status). Tune pickles its callbacks with the experiment; the live metrics
    object is left out and set again when the experiment is resumed."""

    def __init__(self, metrics: Any, *, metric: str, mode: str) -> None:
        self.metrics = metrics
        self.metric = metric
        self.mode = mode
        self.best: float | None = None
        self.best_result: dict[str, Any] | None = None
        self.states: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "metrics": None}

    def _better(self, value: float) -> bool:
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[Any, Any], **info: Any
    ) -> None:
        value = result.get(self.metric)
        if isinstance(value, int | float) and self._better(float(value)):
            self.best, self.best_result = float(value), dict(result)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self.states = {t.trial_id: str(t.status) for t in trials}
        if self.metrics is not None:
            counts = Counter(s.lower() for s in self.states.values())
            self.metrics.update_tune(
                {s: counts.get(s, 0) for s in TRIAL_STATES},
                metric=self.metric,
                best=self.best,
                best_result=self.best_result,
            )

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.on_step_end(0, trials)


class StopSignals:
    """First SIGINT/SIGTERM: Tune ends the experiment gracefully (running trials checkpointed, experiment
    state written, so `resume: auto` continues it). Tune does that on SIGUSR1, so both are passed on as
    SIGUSR1; Tune's own SIGINT handler is turned off, so that the first signal of either kind is recorded
    here. A second SIGINT aborts at once, as in `kuberl run` without tune."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}
        self._env: str | None = None

    @property
    def received(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signal is None:
            self.signal = signum
            log.warning(
                "received %s: stopping the experiment (trials are checkpointed)", signal.Signals(signum).name
            )
            signal.raise_signal(signal.SIGUSR1)

    def __enter__(self) -> StopSignals:
        self._env = os.environ.get(SIGINT_ENV)
        os.environ[SIGINT_ENV] = "1"
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._previous.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._env is None:
            os.environ.pop(SIGINT_ENV, None)
        else:
            os.environ[SIGINT_ENV] = self._env


def build_tuner(job: RLTrainingJob, *, callbacks: list[Any]) -> Any:
    """The Tuner of a fresh experiment, or the restored one (`resume: auto` and an experiment there)."""
    from ray import tune

    from kuberl.tune import space
    from kuberl.tune.trainable import KuberlTrainable

    spec = job.spec
    t = spec.tune
    assert t is not None
    job_doc = job.model_dump(mode="json", by_alias=True, exclude_unset=True)
    job_doc.pop("status", None)
    trainable = tune.with_resources(
        tune.with_parameters(KuberlTrainable, job_doc=job_doc, run_dir=str(run_dir_for(job).resolve())),
        tune.PlacementGroupFactory(space.trial_bundles(spec.resources)),
    )
    storage = storage_path(job)
    path = f"{storage}/{job.metadata.name}"
    if tune.Tuner.can_restore(path):
        if spec.resume == "never":
            raise SpecError(
                [("spec.resume", f"never, but an experiment exists at {path}: delete it, or resume: auto")]
            )
        log.info("resuming the experiment at %s", path)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
        # Tune restores the run config it pickled, without the live metrics object: give it back. The
        # stop criteria are restored with the experiment's own state (a changed spec.stop does not apply).
        assert tuner._local_tuner is not None
        tuner._local_tuner.get_run_config().callbacks = callbacks
        return tuner
    from ray.tune.search import BasicVariantGenerator

    ckpt = spec.checkpoint
    return tune.Tuner(
        trainable,
        param_space=space.param_space(t),
        tune_config=tune.TuneConfig(
            metric=t.metric,
            mode=t.mode,
            num_samples=t.num_samples,
            scheduler=space.scheduler(t),
            # The generator limits concurrency itself (TuneConfig.max_concurrent_trials ignores it).
            search_alg=BasicVariantGenerator(
                random_state=t.search_seed, max_concurrent=t.max_concurrent_trials
            ),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=job.metadata.name,
            storage_path=storage,
            stop=space.SpecStopper(spec.stop),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=ckpt.keep,
                checkpoint_frequency=ckpt.every_iterations,
                checkpoint_at_end=ckpt.at_end,
            ),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def run_tune(job: RLTrainingJob) -> TuneOutcome:
    """Run the job's sweep to the end (or a stop signal) and summarise it."""
    from kuberl.core.ray_init import ensure_ray
    from kuberl.spec.tune import trial_cpus

    spec = job.spec
    t = spec.tune
    assert t is not None, "run_tune needs spec.tune"
    preflight(job)  # the env builds and the checkpoint store is reachable, before any trial starts
    run_dir = run_dir_for(job)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "params.json").write_text(json.dumps(job.to_wire(), indent=2))
    metrics, server = start_metrics(job)
    # Room for maxConcurrentTrials trials at once (an embedded Ray oversubscribes a small machine).
    ensure_ray(t.max_concurrent_trials * trial_cpus(spec.resources))
    # kuberl.spec.tune validated the metric; an iteration without a finished episode omits it on purpose.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    callback = ExperimentMetrics(metrics, metric=t.metric, mode=t.mode)
    try:
        tuner = build_tuner(job, callbacks=[callback])
        metrics.set_phase("Running")
        with StopSignals() as stop_signals:
            results = tuner.fit()
        rows = trial_rows(results, metric=t.metric, mode=t.mode, states=callback.states)
        best = pick_best(rows, mode=t.mode)
        outcome = TuneOutcome(
            run_dir=run_dir,
            experiment_path=str(results.experiment_path),
            metric=t.metric,
            mode=t.mode,
            trials=rows,
            best=best,
            interrupted=stop_signals.received,
            results_file=run_dir / RESULTS_FILE,
            errors=[f"{r.trial_id}: {r.error}" for r in rows if r.error],
        )
        write_results(outcome.results_file, outcome)
        failed = bool(rows) and all(r.error for r in rows)  # some failed trials still make a sweep
        metrics.set_phase("Stopped" if outcome.interrupted else ("Failed" if failed else "Succeeded"))
        return outcome
    except BaseException:
        metrics.set_phase("Failed")
        raise
    finally:
        if server is not None:
            server.stop()
