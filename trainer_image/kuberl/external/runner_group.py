"""The runner group of a job with `spec.external.enabled`: the policy server stands in for the env runners.

`sample()` blocks until clients have logged a train batch's worth of steps, then returns one Rollout
whose SampleBatch has the columns an env runner gives an actor-critic algorithm: time-major [T, 1]
(episode fragments end to end in one lane), `terminateds`/`truncateds` apart, `action_logp`,
`action_dist_inputs`, `vf_preds` and `next_vf_preds` (V of the observation each step led to, the
bootstrap at cuts and time limits). Values come from one batched forward pass with the current
weights, which are the weights the remote-mode actions were taken with.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from kuberl.core.env_factory import check_env
from kuberl.core.env_runner import Rollout, RunnerConfig
from kuberl.core.runner_group import EnvRunnerGroup
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.external.episodes import fragments_to_columns
from kuberl.external.recording import ExternalRollout, episode_parts
from kuberl.external.server import PolicyServer, resolve_token
from kuberl.external.service import PolicyService
from kuberl.results import TrainResult
from kuberl.spec.external import ExternalSpec

if TYPE_CHECKING:
    from kuberl.algorithms.base import Algorithm

log = logging.getLogger(__name__)


class ExternalRunnerGroup(EnvRunnerGroup):
    """Serves the policy over HTTP and turns what clients log into Rollouts. A subclass of
    EnvRunnerGroup by interface only: it starts no env runners (its __init__ replaces the base's)."""

    def __init__(
        self, base: RunnerConfig, external: ExternalSpec, *, batch_steps: int, record: bool = False
    ) -> None:
        """record: each batch also carries its steps per episode, for spec.output (EpisodeRecorder)."""
        self.base = base
        self.record = record
        self.num_runners = 0
        self.restarts = 0
        self.local = None
        self.actors = []
        self.batch_steps = batch_steps
        # The spaces come from spec.env; the env is built once to read them and never stepped.
        self.obs_space, self.action_space = check_env(base.env, base.env_config)
        token = resolve_token(external)
        self.service = PolicyService(
            self.obs_space,
            self.action_space,
            base.model,
            max_open_episodes=external.max_open_episodes,
            idle_timeout=external.idle_timeout_seconds,
            seed=base.seed,
        )
        self.server = PolicyServer(self.service, host=external.host, port=external.port, token=token)
        self.server.start()
        log.info(
            "policy server listening on %s (%s)", self.server.url, "no token" if token is None else "token"
        )

    @property
    def url(self) -> str:
        return self.server.url

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        return self.obs_space, self.action_space

    def sync(
        self,
        weights: dict[str, np.ndarray],
        filter_state: dict[str, Any] | None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.service.set_weights(weights)

    def sample(self) -> list[Rollout]:
        taken = self.service.wait_and_take(self.batch_steps)
        cols = fragments_to_columns(taken.fragments, dist_dim=self.service.dist_dim)
        parts = episode_parts(taken.fragments, cols) if self.record else []
        obs, next_obs = cols[Columns.OBS][:, 0], cols.pop(Columns.NEXT_OBS)[:, 0]
        needs = cols.pop("needs_logp")[:, 0]
        dist_in, values, next_values = self.service.evaluate_batch(obs, next_obs)
        if needs.any():  # actions the clients chose themselves: their log-probs under the current policy
            cols[Columns.ACTION_DIST_INPUTS][needs, 0] = dist_in[needs]
            cols[Columns.ACTION_LOGP][needs, 0] = self.service.logp(
                dist_in[needs], cols[Columns.ACTIONS][needs, 0]
            )
        cols[Columns.VF_PREDS] = values[:, None].astype(np.float32)
        cols[Columns.NEXT_VF_PREDS] = next_values[:, None].astype(np.float32)
        return [
            ExternalRollout(
                batch=SampleBatch(cols),
                episode_returns=taken.episode_returns,
                episode_lengths=taken.episode_lengths,
                episodes=parts,
            )
        ]

    def report(self) -> TrainResult:
        return {"policy_server": self.stats()}

    def stats(self) -> dict[str, Any]:
        """The policy server's counters for the result dict (`policy_server`) and Prometheus."""
        with self.service.cond:
            return {
                "requests_total": self.service.requests_total,
                "open_episodes": len(self.service.book.open),
                "abandoned_episodes_total": self.service.book.abandoned_total,
                "policy_version": self.service.version,
            }

    @property
    def num_healthy(self) -> int:
        return 1

    def interrupt(self) -> None:
        """The trainer got a stop signal: a sample() waiting for clients raises SampleInterrupted now."""
        self.service.interrupt()

    def kill_runner_for_test(self, i: int) -> None:
        raise NotImplementedError("an external runner group has no runner actors")

    def stop(self) -> None:
        self.server.stop()


def external_runner_group(algo: Algorithm) -> ExternalRunnerGroup:
    res = algo.spec.resources
    # The algorithm's train batch: its rollout length times the lanes an env-runner job would have.
    batch_steps = algo.runner_config.rollout_length * max(res.env_runners, 1) * res.envs_per_runner
    return ExternalRunnerGroup(
        algo.runner_config, algo.spec.external, batch_steps=batch_steps, record=algo.spec.output is not None
    )
