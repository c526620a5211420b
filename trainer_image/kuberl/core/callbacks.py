"""User callbacks (`config.callbacks: my_pkg.cb:MyCallbacks`) with the hook names RLlib users know, and
the custom metrics their episodes log.

The class is named by import path and built inside every runner (a Ray env-runner actor or the driver)
and once in the driver, like custom envs: nothing has to be pickled. Runner-side hooks see episodes;
driver-side hooks see the algorithm. What episodes log travels back with each sample as plain floats
and is summarised per iteration by `summarize` (docs/callbacks.md says exactly which episodes each
statistic and each hist_stats list holds).
"""

from __future__ import annotations

import math
import traceback
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Reduce = Literal["mean", "min", "max", "sum"]
REDUCES: tuple[str, ...] = ("mean", "min", "max", "sum")

# Exit status of a run a callback failed: EX_SOFTWARE (sysexits.h), the user's code is at fault.
CALLBACK_EXIT_STATUS = 70


class CallbackError(Exception):
    """A user callback raised. The message names the class, the hook and the line it raised at; it
    pickles (it crosses from Ray env-runner actors to the driver) because it holds one string."""

    exit_status = CALLBACK_EXIT_STATUS

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def callback_error_of(exc: BaseException) -> CallbackError | None:
    """The CallbackError behind `exc`: itself, or the cause Ray wrapped when an actor's hook raised."""
    for candidate in (exc, getattr(exc, "cause", None), exc.__cause__):
        if isinstance(candidate, CallbackError):
            # Ray's wrapper subclasses the cause's class but carries its own message: use the cause's.
            cause = getattr(candidate, "cause", None)
            return cause if isinstance(cause, CallbackError) else candidate
    return None


@dataclass
class Episode:
    """One episode of one sub-environment, as runner-side hooks see it.

    `custom_metrics[name] = value` (or `log_value`) records one number per episode; `hist_data[name]`
    collects values for that iteration's `hist_stats/name` list; `user_data` is the callbacks' scratch
    space and never leaves the runner. Multi-agent episodes also fill `agent_rewards` and `policy_for`.
    """

    env_index: int
    worker_index: int
    id: int = 0
    length: int = 0
    total_reward: float = 0.0
    last_reward: float = 0.0
    last_info: Any = None
    custom_metrics: dict[str, float] = field(default_factory=dict)
    hist_data: dict[str, list[float]] = field(default_factory=dict)
    user_data: dict[str, Any] = field(default_factory=dict)
    # Multi-agent: each agent's summed reward, keyed (agent_id, policy_id) as in RLlib; its policy.
    agent_rewards: dict[tuple[str, str], float] = field(default_factory=dict)
    policy_of: dict[str, str] = field(default_factory=dict)
    _logged: dict[str, tuple[str, float, int]] = field(default_factory=dict, repr=False)

    @property
    def agent_ids(self) -> list[str]:
        """Multi-agent: the agents that have acted in this episode so far."""
        return list(self.policy_of)

    def policy_for(self, agent_id: str) -> str:
        """Multi-agent: the policy id the mapping gave `agent_id` in this episode."""
        return self.policy_of[agent_id]

    def log_value(self, name: str, value: float, *, reduce: Reduce = "mean") -> None:
        """Log `value` under `name` any number of times during the episode; at its end they are reduced
        (mean, min, max or sum) into the episode's one `custom_metrics[name]`."""
        if reduce not in REDUCES:
            raise ValueError(
                f"log_value({name!r}): reduce must be one of {', '.join(REDUCES)}, not {reduce!r}"
            )
        v = float(value)
        if name not in self._logged:
            self._logged[name] = (reduce, v, 1)
            return
        kind, acc, n = self._logged[name]
        if kind != reduce:
            raise ValueError(f"log_value({name!r}): logged with reduce={kind!r} before, now {reduce!r}")
        acc = {"mean": acc + v, "sum": acc + v, "min": min(acc, v), "max": max(acc, v)}[kind]
        self._logged[name] = (kind, acc, n + 1)

    def finish(self) -> dict[str, float]:
        """The episode's custom metrics (logged values reduced), as plain floats."""
        out = {k: float(v) for k, v in self.custom_metrics.items()}
        for name, (kind, acc, n) in self._logged.items():
            out[name] = acc / n if kind == "mean" else acc
        return out


class DefaultCallbacks:
    """Subclass this and override the hooks you need; every hook is a no-op here. All arguments are
    keyword-only (add `**kwargs` to stay compatible with arguments added later).

    Runner side (in every env runner — Ray actor or driver — with the env runner as `env_runner`):
    `on_episode_start`, `on_episode_step`, `on_episode_end`, `on_sample_end`.
    Driver side (`algorithm` is the Algorithm): `on_algorithm_init`, `on_learn_on_batch` (kuberl's
    equivalent: after each training step, with the samples it used and the learner's statistics, which
    the hook may extend), `on_train_result` (may add keys to `result`), `on_save`, `on_checkpoint_loaded`.
    """

    def on_algorithm_init(self, *, algorithm: Any, **kwargs: Any) -> None:
        """The algorithm is built (runners started, weights synced), before any training."""

    def on_episode_start(self, *, episode: Episode, env_runner: Any, env_index: int, **kwargs: Any) -> None:
        """A sub-environment was reset (`episode.last_info` is the reset's info)."""

    def on_episode_step(self, *, episode: Episode, env_runner: Any, env_index: int, **kwargs: Any) -> None:
        """After each env step of the episode (`last_reward`, `last_info`, `length` are updated)."""

    def on_episode_end(self, *, episode: Episode, env_runner: Any, env_index: int, **kwargs: Any) -> None:
        """The episode terminated or was truncated; set `episode.custom_metrics` here."""

    def on_sample_end(self, *, env_runner: Any, samples: Any, **kwargs: Any) -> None:
        """A runner finished one sample() call (`samples`: its Rollout, or a multi-agent sample)."""

    def on_learn_on_batch(
        self, *, algorithm: Any, samples: list[Any], result: dict[str, float], **kwargs: Any
    ) -> None:
        """After a training step's learner updates: `samples` as sampled this step, `result` the
        learner's statistics (added keys appear under result.json's learner/<policy>)."""

    def on_train_result(self, *, algorithm: Any, result: dict[str, Any], **kwargs: Any) -> None:
        """An iteration's result dict, before it is logged and exported; keys added here are kept."""

    def on_save(self, *, algorithm: Any, checkpoint_name: str, **kwargs: Any) -> None:
        """A checkpoint of the algorithm's state is about to be written."""

    def on_checkpoint_loaded(self, *, algorithm: Any, **kwargs: Any) -> None:
        """A checkpoint was restored into the algorithm."""


def load_callbacks(path: str) -> DefaultCallbacks:
    """Import `module:Class` and build it with no arguments; errors say which and why."""
    from kuberl.core.env_factory import import_object

    cls = import_object(path)
    if not (isinstance(cls, type) and issubclass(cls, DefaultCallbacks)):
        raise TypeError(f"{path!r} is not a subclass of kuberl.DefaultCallbacks (it is {type(cls).__name__})")
    return cls()


class Hooks:
    """Calls one callbacks object's hooks; a hook that raises becomes a CallbackError naming it and the
    line it raised at (no traceback beyond that frame). With no callbacks configured every call is a
    cheap no-op, so the runners' hot loop only checks `active`."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.callbacks: DefaultCallbacks | None = load_callbacks(path) if path else None
        self.active = self.callbacks is not None

    def __call__(self, hook: str, **kwargs: Any) -> None:
        if self.callbacks is None:
            return
        try:
            getattr(self.callbacks, hook)(**kwargs)
        except Exception as exc:
            raise CallbackError(describe_failure(self.path or "", hook, exc)) from None


def describe_failure(path: str, hook: str, exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    line = f" (`{frames[-1].line}`)" if frames and frames[-1].line else ""
    return (
        f"spec.config.callbacks: {path}.{hook} raised {type(exc).__name__}: {exc}{where}{line}. "
        f"The run failed with exit status {CALLBACK_EXIT_STATUS}"
    )


# -- per-iteration summary (driver) -------------------------------------------------------------------
HIST_RETURNS = "episode_return"
HIST_LENGTHS = "episode_lengths"


@dataclass
class EpisodeMetrics:
    """What one runner's ended episodes logged: one dict of custom metrics per episode and the
    hist_data lists, in the order the episodes ended. Travels back with each sample."""

    custom_metrics: list[dict[str, float]] = field(default_factory=list)
    hist_data: dict[str, list[float]] = field(default_factory=dict)

    def add(self, episode: Episode) -> None:
        self.custom_metrics.append(episode.finish())
        for name, values in episode.hist_data.items():
            self.hist_data.setdefault(name, []).extend(float(v) for v in values)

    def extend(self, other: EpisodeMetrics) -> None:
        self.custom_metrics.extend(other.custom_metrics)
        for name, values in other.hist_data.items():
            self.hist_data.setdefault(name, []).extend(values)


def summarize(custom: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """`{name_mean, name_min, name_max}` over the episodes that logged `name` (non-finite values
    skipped); RLlib's custom_metrics keys."""
    values: dict[str, list[float]] = defaultdict(list)
    for episode in custom:
        for name, v in episode.items():
            if math.isfinite(v):
                values[name].append(v)
    out: dict[str, float] = {}
    for name in sorted(values):
        vs = values[name]
        out[f"{name}_mean"] = sum(vs) / len(vs)
        out[f"{name}_min"] = min(vs)
        out[f"{name}_max"] = max(vs)
    return out


def hist_stats(
    returns: list[float], lengths: list[int], hist_data: Mapping[str, list[float]]
) -> dict[str, list[float]]:
    """This iteration's hist_stats: the returns and lengths of the episodes that ended during it (not
    the 100-episode window of episode_return_mean), and every hist_data list the callbacks filled."""
    out: dict[str, list[float]] = {HIST_RETURNS: list(returns), HIST_LENGTHS: [float(n) for n in lengths]}
    for name, values in hist_data.items():
        if name not in out:
            out[name] = list(values)
    return out
