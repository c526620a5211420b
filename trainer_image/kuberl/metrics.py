"""Trainer metrics: Prometheus exposition on ``/metrics`` and the JSON progress on ``/status``.

The trainer calls :meth:`TrainerMetrics.update` with each iteration's result dict,
:meth:`TrainerMetrics.record_checkpoint` after each save and :meth:`TrainerMetrics.set_phase` on
phase changes. :class:`MetricsServer` serves the metrics over HTTP from a daemon thread; the operator
polls ``/status`` and Prometheus scrapes ``/metrics`` (through a PodMonitor).

Conventions (see ``docs/metrics.md`` for the reference): prefix ``kuberl_``, base units, ``_total`` on
counters, labels ``job``, ``namespace``, ``algorithm`` on every series, plus ``policy`` on per-policy
series. Results carry lifetime totals; counters are advanced by the delta between results. A value that
is None or NaN leaves its gauge unset (or at its last finite value) rather than exporting NaN.

This module imports neither torch nor ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import selectors
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from kuberl.results import TrainResult

__all__ = ["PHASES", "MetricsServer", "TrainerMetrics", "rfc3339"]

log = logging.getLogger(__name__)

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Stopped")
DEFAULT_POLICY = "default_policy"
ALL_POLICIES = "__all__"  # policy label of a multi-agent result's top-level (summed over agents) stats

_BASE_LABELS = ("job", "namespace", "algorithm")
_POLICY_LABELS = (*_BASE_LABELS, "policy")

ITERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
CHECKPOINT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# Learner stat keys (besides "*_loss") exported as their own gauge; the first matching alias wins.
_LEARNER_GAUGES: dict[str, tuple[str, ...]] = {
    "entropy": ("entropy",),
    "kl": ("kl", "mean_kl"),
    "learning_rate": ("lr", "learning_rate", "cur_lr"),
    "grad_norm": ("grad_norm", "gradient_norm", "global_grad_norm"),
    "policy_lag": ("policy_lag_mean", "policy_lag"),
}

# Custom metrics (config.callbacks) exported as kuberl_custom_metric{name, stat}: at most this many names
# at a time (spec.metrics.maxCustomMetrics), each at most MAX_CUSTOM_NAME characters, so a callback that
# logs a metric per episode id cannot blow up Prometheus' series count. Names beyond are left out with one
# warning per run (result.json and TensorBoard keep them); a name missing from CUSTOM_METRIC_EXPIRY
# consecutive reports (spec.metrics.customMetricExpiryIterations) is removed, freeing its place.
MAX_CUSTOM_METRICS = 32
MAX_CUSTOM_NAME = 64
CUSTOM_METRIC_EXPIRY = 10
_CUSTOM_STATS = ("mean", "min", "max")

# Episode statistics: result key -> gauge attribute.
_EPISODE_KEYS = {
    "episode_return_mean": "episode_return_mean",
    "episode_return_min": "episode_return_min",
    "episode_return_max": "episode_return_max",
    "episode_len_mean": "episode_length_mean",
}


class _Registry(CollectorRegistry):
    """A registry that leaves out prometheus_client's ``*_created`` samples.

    In the text format they appear as extra gauge families (``kuberl_checkpoints_created``) that read like
    metrics of their own; Prometheus does not need them (it detects counter resets itself)."""

    def collect(self) -> Iterator[Metric]:
        for metric in super().collect():
            created = f"{metric.name}_created"
            if not any(s.name == created for s in metric.samples):
                yield metric
                continue
            trimmed = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            trimmed.samples = [s for s in metric.samples if s.name != created]
            yield trimmed


def _main_policy(result: TrainResult) -> str:
    """The policy label of a result's top-level episode stats: the one trained policy, or "__all__"
    for several (and for every multi-agent result, whose top level is over whole env episodes)."""
    learner = result.get("learner")
    policies = list(learner) if isinstance(learner, Mapping) and learner else []
    if isinstance(result.get("policies"), Mapping) or len(policies) > 1:
        return ALL_POLICIES
    return str(policies[0]) if policies else DEFAULT_POLICY


def _num(value: Any) -> float | None:
    """``value`` as a finite float, or None (None, NaN, inf, bools, strings and containers)."""
    if value is None or isinstance(value, bool | str | bytes):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def rfc3339(ts: float | None) -> str | None:
    """A UNIX timestamp as RFC 3339 UTC with second precision (the Kubernetes ``metav1.Time`` form)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CustomMetricNames:
    """Which custom metric names are exported: the names of the last `expire_after` reports (results
    carrying custom metrics), at most `limit` of them, first come first served. The state is bounded by
    `limit`: dropped names are not remembered, only whether each kind of drop was warned about."""

    def __init__(self, *, limit: int = MAX_CUSTOM_METRICS, expire_after: int = CUSTOM_METRIC_EXPIRY) -> None:
        self.limit = limit
        self.expire_after = expire_after
        self.reports = 0
        self.last_seen: dict[str, int] = {}  # exported name -> the report it was last in
        self._warned: set[str] = set()  # "limit", "length": one warning each per run

    def admit(self, names: Collection[str]) -> tuple[list[str], list[str]]:
        """One report's names -> (the names to export now, the names that expired). Expired names go
        first, so a place they free serves a new name of the same report."""
        self.reports += 1
        expired = [
            n
            for n, seen in self.last_seen.items()
            if n not in names and self.reports - seen >= self.expire_after
        ]
        for name in expired:
            del self.last_seen[name]
        exported = []
        for name in names:
            if name not in self.last_seen and not self._room_for(name):
                continue
            self.last_seen[name] = self.reports
            exported.append(name)
        return exported, expired

    def _room_for(self, name: str) -> bool:
        if len(name) > MAX_CUSTOM_NAME:
            reason = f"names longer than {MAX_CUSTOM_NAME} characters are not exported"
            return self._drop("length", name, reason)
        if len(self.last_seen) >= self.limit:
            reason = (
                f"at most {self.limit} names are exported at a time (spec.metrics.maxCustomMetrics), until one "
                f"has been missing from {self.expire_after} reports (spec.metrics.customMetricExpiryIterations)"
            )
            return self._drop("limit", name, reason)
        return True

    def _drop(self, kind: str, name: str, reason: str) -> bool:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(
                "custom metric %r and any others like it are not exported to Prometheus or /status: %s "
                "(result.json and TensorBoard keep every one; this is said once)",
                name[:100],
                reason,
            )
        return False


class TrainerMetrics:
    """Prometheus metrics and ``/status`` progress of one training job, on its own registry."""

    def __init__(
        self,
        *,
        job: str,
        namespace: str,
        algorithm: str,
        registry: CollectorRegistry | None = None,
        max_custom_metrics: int = MAX_CUSTOM_METRICS,
        custom_metric_expiry: int = CUSTOM_METRIC_EXPIRY,
    ) -> None:
        self.job = job
        self.namespace = namespace
        self.algorithm = algorithm
        self.registry = registry if registry is not None else _Registry(auto_describe=True)
        self._labels = {"job": job, "namespace": namespace, "algorithm": algorithm}
        self._lock = threading.Lock()

        r = self.registry

        def gauge(name: str, doc: str, labels: tuple[str, ...] = _BASE_LABELS) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, _BASE_LABELS, registry=r)

        self.training_iteration = gauge("kuberl_training_iteration", "Training iterations completed.")
        self.custom_metric = gauge(
            "kuberl_custom_metric",
            "A custom metric the job's callbacks logged: its mean, min or max over the episodes that ended "
            "in the last iteration.",
            (*_BASE_LABELS, "name", "stat"),
        )
        self.training_start = gauge(
            "kuberl_training_start_timestamp_seconds", "UNIX time at which this trainer started training."
        )
        self.env_steps = counter("kuberl_env_steps_total", "Environment steps sampled by the env runners.")
        self.env_steps_trained = counter(
            "kuberl_env_steps_trained_total", "Environment steps the learners trained on."
        )
        self.episodes = counter("kuberl_episodes_total", "Episodes finished.")
        self.episode_return_mean = gauge(
            "kuberl_episode_return_mean", "Mean return of recent episodes.", _POLICY_LABELS
        )
        self.episode_return_min = gauge(
            "kuberl_episode_return_min", "Minimum return of recent episodes.", _POLICY_LABELS
        )
        self.episode_return_max = gauge(
            "kuberl_episode_return_max", "Maximum return of recent episodes.", _POLICY_LABELS
        )
        self.episode_length_mean = gauge(
            "kuberl_episode_length_mean", "Mean length (env steps) of recent episodes.", _POLICY_LABELS
        )
        self.learner_loss = gauge(
            "kuberl_learner_loss",
            "Last learner update's loss, one series per loss term.",
            (*_POLICY_LABELS, "term"),
        )
        self.learner_entropy = gauge(
            "kuberl_learner_entropy", "Policy entropy at the last update.", _POLICY_LABELS
        )
        self.learner_kl = gauge(
            "kuberl_learner_kl", "KL divergence old to new policy at the last update.", _POLICY_LABELS
        )
        self.learner_learning_rate = gauge(
            "kuberl_learner_learning_rate", "Optimizer learning rate.", _POLICY_LABELS
        )
        self.learner_policy_lag = gauge(
            "kuberl_learner_policy_lag",
            "Mean policy lag of the last iteration's batches, in learner updates (asynchronous algorithms).",
            _POLICY_LABELS,
        )
        self.learner_grad_norm = gauge(
            "kuberl_learner_grad_norm", "Global gradient norm at the last update.", _POLICY_LABELS
        )
        self.iteration_duration = Histogram(
            "kuberl_iteration_duration_seconds",
            "Wall-clock duration of a training iteration.",
            _BASE_LABELS,
            buckets=ITERATION_BUCKETS,
            registry=r,
        )
        self.timer = gauge(
            "kuberl_timer_seconds", "Last iteration's time spent per phase.", (*_BASE_LABELS, "phase")
        )
        self.checkpoint_duration = Histogram(
            "kuberl_checkpoint_duration_seconds",
            "Duration of successful checkpoint saves.",
            _BASE_LABELS,
            buckets=CHECKPOINT_BUCKETS,
            registry=r,
        )
        self.checkpoint_last_success = gauge(
            "kuberl_checkpoint_last_success_timestamp_seconds", "UNIX time of the last successful checkpoint."
        )
        self.checkpoint_in_progress = gauge(
            "kuberl_checkpoint_in_progress_seconds",
            "Seconds the checkpoint save now running has taken so far (0 when none is running).",
        )
        self._checkpoint_clock: Callable[[], float | None] = lambda: None
        self.checkpoint_in_progress.labels(**self._labels).set_function(
            lambda: self._checkpoint_clock() or 0.0
        )
        self.checkpoints = counter("kuberl_checkpoints_total", "Checkpoints saved successfully.")
        self.checkpoint_failures = counter(
            "kuberl_checkpoint_failures_total", "Checkpoint saves that failed."
        )
        self.env_runner_restarts = counter(
            "kuberl_env_runner_restarts_total", "Env runner actors recreated after dying."
        )
        self.env_runners_healthy = gauge("kuberl_env_runners_healthy", "Env runner actors currently healthy.")
        self.env_restarts = counter(
            "kuberl_env_restarts_total", "Crashed sub-environments restarted inside env runners."
        )
        self.evaluation_return_mean = gauge(
            "kuberl_evaluation_return_mean", "Mean episode return of the last evaluation."
        )
        # External simulators (spec.external, docs/external.md).
        self.policy_server_requests = counter(
            "kuberl_policy_server_requests_total", "Requests the policy server answered."
        )
        self.policy_server_abandoned = counter(
            "kuberl_policy_server_abandoned_episodes_total",
            "Episodes closed after their client went silent (their steps are still trained on).",
        )
        self.policy_server_open = gauge(
            "kuberl_policy_server_open_episodes", "Episodes open on the policy server."
        )
        self.off_policy_estimate = gauge(
            "kuberl_off_policy_estimate",
            "Off-policy estimate of the trained policy's discounted return on logged episodes (offline RL).",
            (*_BASE_LABELS, "estimator"),
        )
        # Self-play (multi-agent): rates over the learning policy's last 100 games (docs/multi-agent.md).
        self.selfplay_rates = {
            outcome: gauge(
                f"kuberl_selfplay_{outcome}_rate",
                f"Fraction of the learning policy's recent self-play games that were a {outcome}.",
                _POLICY_LABELS,
            )
            for outcome in ("win", "draw", "loss")
        }
        self.selfplay_pool_size = gauge(
            "kuberl_selfplay_pool_size", "Opponent snapshots in the self-play pool.", _POLICY_LABELS
        )
        self.selfplay_random_win_rate = gauge(
            "kuberl_selfplay_random_win_rate",
            "Win rate of the learning policy against a uniformly random opponent at the last snapshot.",
            _POLICY_LABELS,
        )

        # Ray Tune experiments (spec.tune, docs/tune.md): exported by the experiment driver, not by trials.
        self.tune_trials = gauge(
            "kuberl_tune_trials", "Trials of the Tune experiment by state.", (*_BASE_LABELS, "state")
        )
        self.tune_best_metric = gauge(
            "kuberl_tune_best_metric",
            "Best value of spec.tune.metric over all trials so far.",
            (*_BASE_LABELS, "metric"),
        )

        # Counters start at 0 so that rate() and increase() work from the first scrape.
        for c in (
            self.env_steps,
            self.env_steps_trained,
            self.episodes,
            self.checkpoints,
            self.checkpoint_failures,
            self.env_runner_restarts,
            self.env_restarts,
        ):
            c.labels(**self._labels)

        self._last_totals: dict[str, float] = {}
        self._custom_names = CustomMetricNames(limit=max_custom_metrics, expire_after=custom_metric_expiry)
        self._custom_values: dict[str, dict[str, float]] = {}
        self._last_iteration: float | None = None
        self._started = False
        self._status: dict[str, Any] = {
            "phase": "Pending",
            "iteration": None,
            "timesteps": None,
            "episodeReturnMean": None,
            "lastCheckpoint": None,
            "lastCheckpointTime": None,
            "updatedAt": time.time(),
        }

    # -- helpers --------------------------------------------------------------------------------------

    def _advance(self, counter: Counter, key: str, total: Any) -> None:
        """Advance ``counter`` to follow the lifetime total ``total`` (keyed by ``key``)."""
        value = _num(total)
        if value is None:
            return
        last = self._last_totals.get(key, 0.0)
        # A total that went down means its source restarted from zero: count it from there.
        delta = value - last if value >= last else value
        self._last_totals[key] = value
        if delta > 0:
            counter.labels(**self._labels).inc(delta)

    def _set(self, gauge: Gauge, value: Any, **extra: str) -> None:
        v = _num(value)
        if v is not None:
            gauge.labels(**self._labels, **extra).set(v)

    def _mark_started(self) -> None:
        if not self._started:
            self._started = True
            self.training_start.labels(**self._labels).set(time.time())

    # -- the trainer's calls --------------------------------------------------------------------------

    def update(self, result: TrainResult) -> None:
        """Record one training iteration's result (kuberl.results.TrainResult: the keys and their
        meaning are defined there, once). Each part of the result is recorded by its own method."""
        with self._lock:
            self._mark_started()
            if self._status["phase"] == "Pending":
                self._status["phase"] = "Running"
            iteration = _num(result.get("training_iteration"))
            new_iteration = iteration is None or iteration != self._last_iteration
            self._last_iteration = iteration
            self._set(self.training_iteration, iteration)
            timesteps = result.get("timesteps_total", result.get("num_env_steps_sampled_lifetime"))
            self._record_totals(result, timesteps)
            self._record_episodes(result)
            self._record_learners(result.get("learner"))
            self._record_timing(result, new_iteration=new_iteration)
            self._record_runners(result.get("env_runners"))
            self._record_policy_server(result.get("policy_server"))
            self._record_evaluation(result.get("evaluation"), result.get("off_policy_estimation"))
            self._record_self_play(result.get("self_play"))
            self._record_custom(result.get("custom_metrics"))
            self._record_status(result, iteration, timesteps)

    def _record_totals(self, result: TrainResult, timesteps: Any) -> None:
        """The lifetime counters: env steps sampled and trained, episodes."""
        self._advance(self.env_steps, "env_steps", timesteps)
        self._advance(
            self.env_steps_trained, "env_steps_trained", result.get("num_env_steps_trained_lifetime")
        )
        self._advance(self.episodes, "episodes", result.get("episodes_total"))

    def _record_episodes(self, result: TrainResult) -> None:
        """Episode statistics under the main policy label, and per policy for multi-agent results."""
        main_policy = _main_policy(result)
        for key, attr in _EPISODE_KEYS.items():
            self._set(getattr(self, attr), result.get(key), policy=main_policy)
        per_policy = result.get("policies")
        if isinstance(per_policy, Mapping):
            for pid, stats in per_policy.items():
                if isinstance(stats, Mapping):
                    for key, attr in _EPISODE_KEYS.items():
                        self._set(getattr(self, attr), stats.get(key), policy=str(pid))

    def _record_learners(self, learner: Any) -> None:
        if isinstance(learner, Mapping):
            for pid, stats in learner.items():
                if isinstance(stats, Mapping):
                    self._update_learner(str(pid), stats)

    def _record_timing(self, result: TrainResult, *, new_iteration: bool) -> None:
        """The iteration's duration (once per iteration) and the time of each phase."""
        duration = _num(result.get("time_this_iter_s"))
        if duration is not None and new_iteration:
            self.iteration_duration.labels(**self._labels).observe(duration)
        timers = result.get("timers")
        if isinstance(timers, Mapping):
            for phase, seconds in timers.items():
                self._set(self.timer, seconds, phase=str(phase))

    def _record_runners(self, runners: Any) -> None:
        if isinstance(runners, Mapping):
            self._set(self.env_runners_healthy, runners.get("num_healthy"))
            self._advance(self.env_runner_restarts, "env_runner_restarts", runners.get("restarts_total"))
            self._advance(self.env_restarts, "env_restarts", runners.get("env_restarts_total"))

    def _record_policy_server(self, server: Any) -> None:
        if isinstance(server, Mapping):
            self._advance(self.policy_server_requests, "policy_server_requests", server.get("requests_total"))
            self._advance(
                self.policy_server_abandoned,
                "policy_server_abandoned",
                server.get("abandoned_episodes_total"),
            )
            self._set(self.policy_server_open, server.get("open_episodes"))

    def _record_evaluation(self, evaluation: Any, ope: Any) -> None:
        """The evaluation return, and the offline algorithms' off-policy estimates."""
        if isinstance(evaluation, Mapping):
            self._set(self.evaluation_return_mean, evaluation.get("episode_return_mean"))
        if isinstance(ope, Mapping):
            for estimator in ("is", "wis"):
                self._set(self.off_policy_estimate, ope.get(estimator), estimator=estimator)

    def _record_self_play(self, self_play: Any) -> None:
        if not isinstance(self_play, Mapping):
            return
        learning = str(self_play.get("policy", DEFAULT_POLICY))
        for outcome, g in self.selfplay_rates.items():
            self._set(g, self_play.get(f"{outcome}_rate"), policy=learning)
        self._set(self.selfplay_pool_size, self_play.get("pool_size"), policy=learning)
        vs_random = self_play.get("vs_random")
        if isinstance(vs_random, Mapping):
            self._set(self.selfplay_random_win_rate, vs_random.get("win_rate"), policy=learning)

    def _record_status(self, result: TrainResult, iteration: float | None, timesteps: Any) -> None:
        """The /status fields the operator reads (a missing or non-finite value keeps the last one)."""
        if iteration is not None:
            self._status["iteration"] = int(iteration)
        ts = _num(timesteps)
        if ts is not None:
            self._status["timesteps"] = int(ts)
        ret = _num(result.get("episode_return_mean"))
        if ret is not None:
            self._status["episodeReturnMean"] = ret
        self._status["updatedAt"] = time.time()

    def _record_custom(self, custom: Any) -> None:
        if isinstance(custom, Mapping):
            self._update_custom(custom)

    def _update_custom(self, custom: Mapping[str, Any]) -> None:
        """kuberl_custom_metric{name, stat} from result["custom_metrics"] (`name_mean`, `_min`, `_max`),
        for the names CustomMetricNames admits; the same values go to /status. A result without custom
        metrics (no episode ended) is no report: names do not age while nothing is reported."""
        reported: dict[str, dict[str, float | None]] = {}
        for key, value in custom.items():
            name, _, stat = str(key).rpartition("_")
            if stat in _CUSTOM_STATS and name:
                reported.setdefault(name, {})[stat] = _num(value)
        if not reported:
            return
        exported, expired = self._custom_names.admit(reported)
        for name in expired:
            for stat in _CUSTOM_STATS:
                self.custom_metric.remove(*(self._labels[k] for k in _BASE_LABELS), name, stat)
            self._custom_values.pop(name, None)
        for name in exported:
            for stat, v in reported[name].items():
                if v is not None:  # NaN or missing: the last finite value stays
                    self.custom_metric.labels(**self._labels, name=name, stat=stat).set(v)
                    self._custom_values.setdefault(name, {})[stat] = v

    def _update_learner(self, policy: str, stats: Mapping[str, Any]) -> None:
        for key, value in stats.items():
            if isinstance(key, str) and key.endswith("_loss") and len(key) > len("_loss"):
                self._set(self.learner_loss, value, policy=policy, term=key[: -len("_loss")])
        for name, aliases in _LEARNER_GAUGES.items():
            for alias in aliases:
                if _num(stats.get(alias)) is not None:
                    self._set(getattr(self, f"learner_{name}"), stats[alias], policy=policy)
                    break

    def record_checkpoint(self, *, duration_s: float, success: bool, uri: str | None = None) -> None:
        """Record one checkpoint save: its duration, whether it succeeded, and where it went."""
        with self._lock:
            if success:
                now = time.time()
                self.checkpoints.labels(**self._labels).inc()
                d = _num(duration_s)
                if d is not None and d >= 0:
                    self.checkpoint_duration.labels(**self._labels).observe(d)
                self.checkpoint_last_success.labels(**self._labels).set(now)
                if uri is not None:
                    self._status["lastCheckpoint"] = str(uri)
                self._status["lastCheckpointTime"] = now
                self._status["updatedAt"] = now
            else:
                self.checkpoint_failures.labels(**self._labels).inc()

    def watch_checkpoint(self, in_progress_s: Callable[[], float | None]) -> None:
        """Read the running save's elapsed time from `in_progress_s` (None: no save running) for
        /metrics and /status, so a hung store shows instead of a silent stall."""
        self._checkpoint_clock = in_progress_s

    def note_resumed(self, uri: str, *, created: float | None = None) -> None:
        """Show the checkpoint a run resumed from as its last one, without counting a save."""
        with self._lock:
            self._status["lastCheckpoint"] = str(uri)
            self._status["lastCheckpointTime"] = created
            self._status["updatedAt"] = time.time()

    def set_phase(self, phase: str) -> None:
        """Set the trainer's phase: one of ``PHASES``."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
        with self._lock:
            if phase == "Running":
                self._mark_started()
            self._status["phase"] = phase
            self._status["updatedAt"] = time.time()

    def update_tune(
        self,
        states: Mapping[str, int],
        *,
        metric: str,
        best: float | None,
        best_result: Mapping[str, Any] | None,
    ) -> None:
        """Record a Tune experiment's progress: trials per state, the best metric so far, and the best
        trial's iteration, steps and return as the /status progress the operator mirrors."""
        with self._lock:
            for state, n in states.items():
                self.tune_trials.labels(**self._labels, state=state).set(n)
            if best is not None and math.isfinite(best):
                self.tune_best_metric.labels(**self._labels, metric=metric).set(best)
            if best_result is not None:
                self._mark_started()
                self._status["iteration"] = best_result.get("training_iteration")
                self._status["timesteps"] = best_result.get("timesteps_total")
                self._status["episodeReturnMean"] = _num(best_result.get("episode_return_mean"))
            self._status["updatedAt"] = time.time()

    def status(self) -> dict[str, Any]:
        """The ``/status`` JSON object (camelCase keys; null where unknown; RFC 3339 UTC timestamps)."""
        with self._lock:
            s = dict(self._status)
            custom = {name: dict(stats) for name, stats in self._custom_values.items()}
        return {
            "phase": s["phase"],
            "iteration": s["iteration"],
            "timesteps": s["timesteps"],
            "episodeReturnMean": s["episodeReturnMean"],
            "lastCheckpoint": s["lastCheckpoint"],
            "lastCheckpointTime": rfc3339(s["lastCheckpointTime"]),
            "checkpointInProgressSeconds": _rounded(self._checkpoint_clock()),
            "algorithm": self.algorithm,
            "job": self.job,
            "namespace": self.namespace,
            "updatedAt": rfc3339(s["updatedAt"]),
            "customMetrics": custom,
        }

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this job's registry."""
        return generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    metrics: TrainerMetrics  # set on the per-server subclass
    server_version = "kuberl-metrics"
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds an idle keep-alive connection may hold its thread

    def _send(self, code: int, body: bytes, content_type: str, *, head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, *, head: bool) -> None:
        try:
            path = urlsplit(self.path).path.rstrip("/") or "/"
            if path == "/metrics":
                self._send(200, self.metrics.exposition(), CONTENT_TYPE_LATEST, head=head)
            elif path == "/status":
                body = json.dumps(self.metrics.status(), allow_nan=False).encode()
                self._send(200, body, "application/json", head=head)
            elif path == "/healthz":
                self._send(200, b"ok", "text/plain; charset=utf-8", head=head)
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8", head=head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("metrics server: error serving %s", self.path)
            with contextlib.suppress(OSError):
                self._send(500, b"internal error\n", "text/plain; charset=utf-8", head=head)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics server: " + format, *args)


class MetricsServer:
    """Serves ``/metrics``, ``/status`` and ``/healthz`` for one :class:`TrainerMetrics` from a daemon
    thread. ``port=0`` binds an ephemeral port; :attr:`port` is the bound one after :meth:`start`."""

    def __init__(self, metrics: TrainerMetrics, *, host: str = "0.0.0.0", port: int = 8080) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._wake: socket.socket | None = None  # written by stop(): the serving thread returns at once

    def start(self) -> None:
        if self._server is not None:
            return
        handler = type("MetricsHandler", (_Handler,), {"metrics": self.metrics})
        server = ThreadingHTTPServer((self.host, self.port), handler)
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        wake_read, self._wake = socket.socketpair()
        self._thread = threading.Thread(
            target=_serve, args=(server, wake_read), name="kuberl-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics server listening on %s:%d", self.host, self.port)

    def stop(self) -> None:
        server, thread, wake = self._server, self._thread, self._wake
        self._server = self._thread = self._wake = None
        if server is None:
            return
        if wake is not None:
            wake.close()  # end of file on the thread's end of the pair: it returns from its select
        if thread is not None:
            thread.join(timeout=5)
        server.server_close()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(server: ThreadingHTTPServer, wake: socket.socket) -> None:
    """The server's accept loop until `wake` becomes readable. socketserver's `serve_forever` sees a
    `shutdown()` only at its next poll (up to `poll_interval` later: at every run's end, a fifth of a
    second of doing nothing); waiting on the wake-up socket too makes stopping immediate without a busy
    poll. Each request is handled by `handle_request` (its own thread: ThreadingHTTPServer)."""
    with wake, selectors.DefaultSelector() as selector:
        selector.register(server, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        while all(key.fileobj is not wake for key, _ in selector.select()):
            server.handle_request()
