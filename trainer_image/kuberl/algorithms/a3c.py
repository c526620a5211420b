"""Asynchronous Advantage Actor-Critic (A3C; Mnih et al. 2016, https://arxiv.org/abs/1602.01783).

The paper's Algorithm S3, with Ray actors in place of threads: every env runner repeatedly takes the
newest weights, samples a fragment of t_max steps, computes the actor-critic gradient on it and sends
the gradient (not the samples) to the learner, which applies gradients one by one as they arrive.
A gradient may have been computed with weights a few updates old; that lag is measured and reported.

  config   → `A3CConfig` (kuberl.spec.algorithms.a3c; every field documented there, RLlib names accepted)
  network  → `ActorCritic` (kuberl.core.models)
  loss     → `actor_critic_loss` (kuberl.algorithms.families.actor_critic), evaluated in the runner by `A3CWorker`
  runners  → `A3CWorkerGroup`: one request in flight per runner, `ray.wait` for whichever finishes first;
             a dead runner is recreated and given the current weights (as EnvRunnerGroup does)
  step     → `A3C.training_step`: apply each gradient as it arrives, send that runner the fresh weights

With `envRunners: 0` there is no one to be asynchronous with: the driver's own worker samples, computes
a gradient and applies it in turn (synchronous, policy lag always 0). That is A2C with one optimizer
step per fragment, kept so the same YAML runs on a laptop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kuberl.algorithms.base import Algorithm, StepOutcome
from kuberl.algorithms.families.actor_critic import (
    ActorCriticLearner,
    actor_critic_loss,
    explained_variance,
    gradients_to_numpy,
    loss_batch,
)
from kuberl.core.env_runner import EnvRunner, Rollout, RunnerConfig
from kuberl.core.models import action_distribution
from kuberl.core.normalizer import RunningStats
from kuberl.core.runner_group import EnvRunnerGroup
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms.a3c import A3CConfig

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------
# Runner side: sample a fragment, return its gradient
# ---------------------------------------------------------------------------------------------------


@dataclass
class Gradient:
    """What a runner sends back: the gradient of one fragment and what the driver counts."""

    grads: dict[str, np.ndarray]
    version: int  # learner updates the weights had when this gradient was computed
    env_steps: int
    stats: dict[str, float] = field(default_factory=dict)
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    filter_delta: RunningStats | None = None
    env_restarts: int = 0
    worker_index: int = 0


class A3CWorker:
    """An EnvRunner (composed, not subclassed) plus the loss: runs as a Ray actor, or in the driver."""

    def __init__(
        self, runner_config: RunnerConfig, config: A3CConfig, runner: EnvRunner | None = None
    ) -> None:
        self.runner = runner if runner is not None else EnvRunner(runner_config)
        self.config = config
        self.dist = action_distribution(self.runner.action_space)
        self.module = self.runner.module  # the runner's CPU copy of the policy is the local model

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        return self.runner.spaces()

    def ping(self) -> int:
        return self.runner.ping()

    def set_state(
        self,
        weights: dict[str, np.ndarray],
        filter_state: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.runner.set_state(weights, filter_state, options)

    def sample(self, *, explore: bool = True) -> Rollout:
        return self.runner.sample(explore=explore)

    def compute_gradients(
        self, weights: dict[str, np.ndarray] | None, filter_state: dict[str, Any] | None, version: int
    ) -> Gradient:
        """Load `weights` (when given), sample one fragment, return ∇ of the actor-critic loss on it."""
        cfg = self.config
        if weights is not None:
            self.runner.set_state(weights, filter_state)
        rollout = self.runner.sample()
        flat = loss_batch(rollout.batch, gamma=cfg.gamma, lambda_=cfg.lambda_, use_gae=cfg.use_gae)
        self.module.zero_grad(set_to_none=True)
        terms = actor_critic_loss(
            self.module,
            self.dist,
            {k: torch.as_tensor(v) for k, v in flat.items()},
            vf_loss_coeff=cfg.vf_loss_coeff,
            entropy_coeff=cfg.entropy_coeff,
            normalize_advantages=cfg.normalize_advantages,
        )
        terms["total_loss"].backward()
        stats = {k: float(v.detach()) for k, v in terms.items()}
        stats["explained_variance"] = explained_variance(flat[Columns.VF_PREDS], flat[Columns.VALUE_TARGETS])
        return Gradient(
            grads=gradients_to_numpy(self.module),
            version=version,
            env_steps=rollout.batch.env_steps,
            stats=stats,
            episode_returns=rollout.episode_returns,
            episode_lengths=rollout.episode_lengths,
            filter_delta=rollout.filter_delta,
            env_restarts=rollout.env_restarts,
            worker_index=rollout.worker_index,
        )

    def close(self) -> None:
        self.runner.close()


# ---------------------------------------------------------------------------------------------------
# Driver side: one request in flight per runner, whichever finishes first is served first
# ---------------------------------------------------------------------------------------------------


class A3CWorkerGroup(EnvRunnerGroup):
    """EnvRunnerGroup whose actors are A3CWorkers; adds asynchronous gradient requests.

    Recreating a dead actor with the current weights is inherited (`_replace`)."""

    def __init__(
        self, base: RunnerConfig, *, num_runners: int, cpus_per_runner: float, config: A3CConfig
    ) -> None:
        self.a3c_config = config  # before super().__init__, which calls _make_actor
        super().__init__(base, num_runners=num_runners, cpus_per_runner=cpus_per_runner)
        self.local_worker = A3CWorker(base, config, runner=self.local) if self.local is not None else None
        self.in_flight: dict[Any, int] = {}  # object ref → runner index
        self._local_request: tuple[dict[str, np.ndarray], dict[str, Any] | None, int] | None = None

    def _make_actor(self, index: int) -> Any:
        ray = self._ray()
        remote_cls = ray.remote(num_cpus=self.cpus_per_runner, max_restarts=0)(A3CWorker)
        return remote_cls.remote(self._config(index), self.a3c_config)

    @property
    def size(self) -> int:
        return 1 if self.local_worker is not None else len(self.actors)

    def idle(self) -> list[int]:
        """Runners with no request in flight."""
        if self.local_worker is not None:
            return [] if self._local_request is not None else [0]
        busy = set(self.in_flight.values())
        return [i for i in range(len(self.actors)) if i not in busy]

    def submit(
        self, i: int, weights: dict[str, np.ndarray], filter_state: dict[str, Any] | None, version: int
    ) -> None:
        """Ask runner i for a gradient computed with these weights (version = updates applied so far)."""
        self._state = (weights, filter_state, None)  # what a recreated runner starts from
        if self.local_worker is not None:
            self._local_request = (weights, filter_state, version)
            return
        ref = self.actors[i].compute_gradients.remote(self._ray().put(weights), filter_state, version)
        self.in_flight[ref] = i

    def wait_one(self) -> tuple[int, Gradient | None]:
        """The next finished request: (runner index, its gradient), or (index, None) when that runner
        died; it has then been recreated and is idle."""
        if self.local_worker is not None:
            assert self._local_request is not None, "submit() before wait_one()"
            request, self._local_request = self._local_request, None
            return 0, self.local_worker.compute_gradients(*request)
        ray = self._ray()
        ready, _ = ray.wait(list(self.in_flight), num_returns=1)
        i = self.in_flight.pop(ready[0])
        try:
            return i, ray.get(ready[0])
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            log.warning("A3C runner %d died (%s); recreating it", i + 1, type(exc).__name__)
            self._replace(i)
            return i, None

    def cancel_all(self) -> None:
        """Forget the requests in flight (after a restore their weights are from another run)."""
        self.in_flight.clear()
        self._local_request = None


# ---------------------------------------------------------------------------------------------------
# Training step: apply gradients as they arrive
# ---------------------------------------------------------------------------------------------------


class A3C(Algorithm[A3CConfig]):
    name = "A3C"
    runners: A3CWorkerGroup
    learner: ActorCriticLearner

    def rollout_length(self) -> int:
        return self.config.rollout_fragment_length

    def make_runner_group(self) -> A3CWorkerGroup:
        res = self.spec.resources
        return A3CWorkerGroup(
            self.runner_config,
            num_runners=res.env_runners,
            cpus_per_runner=res.cpus_per_runner,
            config=self.config,
        )

    def setup(self) -> None:
        cfg = self.config
        res = self.spec.resources
        self.learner = ActorCriticLearner.from_config(self.obs_space, self.action_space, cfg, res)
        self.version = 0  # gradients applied so far: the "policy version" lag is measured in
        self.pool = self.runners

    def _request(self, i: int) -> None:
        filter_state = self.obs_filter.state() if self.obs_filter is not None else None
        self.pool.submit(i, self.get_weights(), filter_state, self.version)

    def _count(self, g: Gradient) -> None:
        self.record_experience(
            episode_returns=g.episode_returns,
            episode_lengths=g.episode_lengths,
            env_steps=g.env_steps,
            env_restarts=g.env_restarts,
            filter_delta=g.filter_delta,
        )

    def training_step(self) -> StepOutcome:
        cfg = self.config
        t_start = time.perf_counter()
        wait_s = apply_s = 0.0
        for i in self.pool.idle():  # first iteration, or runners whose request was dropped by a restore
            self._request(i)
        sampled = trained = applied = dropped = 0
        lags: list[int] = []
        sums: dict[str, float] = {}
        while sampled < cfg.min_sample_timesteps_per_iteration:
            t0 = time.perf_counter()
            i, g = self.pool.wait_one()
            t1 = time.perf_counter()
            wait_s += t1 - t0
            if g is not None:
                self._count(g)
                sampled += g.env_steps
                lag = self.version - g.version
                lags.append(lag)
                if cfg.max_policy_lag is not None and lag > cfg.max_policy_lag:
                    dropped += 1
                else:
                    grad_norm = self.learner.apply_numpy_gradients(g.grads, timesteps=self.timesteps)
                    self.version += 1
                    applied += 1
                    trained += g.env_steps
                    for k, v in {**g.stats, "grad_norm": grad_norm}.items():
                        sums[k] = sums.get(k, 0.0) + v
            self._request(i)  # the fresh weights travel with this runner's next request
            apply_s += time.perf_counter() - t1
        stats = {k: v / max(applied, 1) for k, v in sums.items()}
        stats.update(
            lr=self.learner.lr,
            gradients_applied=float(applied),
            gradients_dropped=float(dropped),
            policy_lag_mean=float(np.mean(lags)) if lags else 0.0,
            policy_lag_max=float(max(lags, default=0)),
            policy_version=float(self.version),
        )
        total = time.perf_counter() - t_start
        return StepOutcome(
            rollouts=[],
            env_steps_trained=trained,
            learner_stats=stats,
            # "sample" is the time spent waiting for runners: env_steps_per_s is then the whole loop's rate.
            timers={"sample": total, "wait": wait_s, "apply_and_request": apply_s},
        )

    def policy_module(self) -> torch.nn.Module:
        return self.learner.module

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.learner.get_weights()

    def algorithm_state(self) -> dict[str, Any]:
        return {"learner": self.learner.get_state(), "version": self.version}

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state["learner"])
        self.version = int(state["version"])
        self.pool.cancel_all()
