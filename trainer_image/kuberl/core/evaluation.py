"""Evaluation: whole episodes played with a fixed policy on fresh, seeded environments.

One episode loop (`play`) over an `act` callable serves both places an evaluation runs: the driver
(Algorithm.evaluate acts through compute_actions) and the evaluation actors (`EvaluationRunner`, built
by `kuberl.core.runner_group.EvaluationRunnerGroup`), which act through the same RunnerPolicy with the
weights, observation filter and options the driver sends them. `policy_input` / `policy_output` are
the observation and action conversions of that one inference path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kuberl.core.action_spaces import is_structured, to_env, to_env_single
from kuberl.core.env_factory import make_vector_env, seeds_for
from kuberl.core.env_runner import RunnerConfig
from kuberl.core.models import flatten_obs, load_numpy_weights
from kuberl.core.normalizer import RunningStats, obs_filter_from
from kuberl.core.policy import RunnerPolicy
from kuberl.core.preprocess import batch_of_one, is_single
from kuberl.core.recurrent import RecurrentActorCritic, RecurrentActorCriticPolicy, RecurrentState
from kuberl.core.sample_batch import Columns

# (observations of every sub-env, recurrent state or None) -> (env actions, next state)
Act = Callable[[Any, Any], tuple[Any, Any]]
# Evaluation envs draw seeds from their own stream, apart from the training envs'.
EVALUATION_SEED_OFFSET = 1_000_003


@dataclass
class EpisodeStats:
    """What an evaluation played: the returns and lengths of its complete episodes, its env steps."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    steps: int = 0

    def merge(self, other: EpisodeStats) -> None:
        self.returns += other.returns
        self.lengths += other.lengths
        self.steps += other.steps

    def summary(self) -> dict[str, Any]:
        """The evaluation keys of a result dict (result["evaluation"])."""
        r = self.returns
        return {
            "episode_return_mean": float(np.mean(r)) if r else None,
            "episode_return_min": float(np.min(r)) if r else None,
            "episode_return_max": float(np.max(r)) if r else None,
            "episode_len_mean": float(np.mean(self.lengths)) if r else None,
            "episodes": len(r),
            "num_env_steps_sampled": self.steps,
        }


def evaluation_seed(seed: int | None) -> int | None:
    return None if seed is None else seed + EVALUATION_SEED_OFFSET


def num_envs_for(n: int | None, timesteps: int | None) -> int:
    """Sub-envs of an evaluation: by steps alone one env, so the steps go to as few (and as complete)
    episodes as possible; else up to 8 episodes at a time."""
    return 1 if n is None else min(8, n, timesteps or 8)


def play(
    env_id: str,
    env_config: dict[str, Any],
    *,
    act: Act,
    initial_state: Callable[[int], Any],
    n: int | None,
    timesteps: int | None = None,
    seed: int | None = None,
    worker_index: int = 0,
) -> EpisodeStats:
    """The episodes played with `act` on fresh environments until `n` episodes are complete or
    `timesteps` env steps are taken, whichever comes first (None: no such limit; one must be given).
    Sub-env seeds come from (`seed`, `worker_index`), so each evaluation actor plays its own episodes.
    `initial_state(num_envs)`: a recurrent policy's state (None for feed-forward ones); the loop calls
    `state.after_step(rewards, dones)` after every step."""
    if n is None and timesteps is None:
        raise ValueError("an evaluation needs a number of episodes or of timesteps")
    num_envs = num_envs_for(n, timesteps)
    env = make_vector_env(env_id, env_config, num_envs)
    obs, _ = env.reset(seed=seeds_for(seed, worker_index, num_envs))
    ep_ret = np.zeros(num_envs)
    ep_len = np.zeros(num_envs, dtype=np.int64)
    stats = EpisodeStats()
    # Only count episodes that started before we had enough, so short episodes do not bias the mean.
    started = num_envs
    active = np.ones(num_envs, dtype=bool)
    state = initial_state(num_envs)
    try:
        while active.any() and (timesteps is None or stats.steps < timesteps):
            actions, state = act(obs, state)
            obs, reward, terminated, truncated, _ = env.step(actions)
            stats.steps += num_envs
            if state is not None:
                state = state.after_step(reward, np.logical_or(terminated, truncated))
            ep_ret += reward
            ep_len += 1
            for i in np.flatnonzero(np.logical_or(terminated, truncated)):
                if active[i]:
                    stats.returns.append(float(ep_ret[i]))
                    stats.lengths.append(int(ep_len[i]))
                    if n is None or started < n:
                        started += 1
                    else:
                        active[i] = False
                ep_ret[i] = 0.0
                ep_len[i] = 0
    finally:
        env.close()
    return stats


def policy_input(
    obs_space: gym.Space[Any], obs: Any, obs_filter: RunningStats | None
) -> tuple[bool, np.ndarray]:
    """(whether `obs` is one observation, the policy's flat [B, D] input, filtered)."""
    single = is_single(obs_space, obs)
    flat = flatten_obs(obs_space, batch_of_one(obs_space, obs) if single else obs)
    if obs_filter is not None:
        flat = obs_filter.normalize(flat)
    return single, flat


def policy_output(action_space: gym.Space[Any], actions: torch.Tensor, single: bool) -> Any:
    """Actions in the env's own structure (kuberl.core.action_spaces.to_env): an array for Discrete,
    Box, MultiDiscrete and MultiBinary; a tuple or dict of (batched) components for Tuple/Dict."""
    out = actions.cpu().numpy()
    if is_structured(action_space):
        return to_env_single(action_space, out[0]) if single else to_env(action_space, out)
    if isinstance(action_space, gym.spaces.Box):
        out = np.clip(out, action_space.low, action_space.high)
    return out[0] if single else out


def act_with(
    policy: RunnerPolicy,
    obs_space: gym.Space[Any],
    action_space: gym.Space[Any],
    obs_filter: RunningStats | None,
    *,
    explore: bool,
    generator: torch.Generator,
) -> tuple[Act, Callable[[int], RecurrentState | None]]:
    """The `act` and `initial_state` of `play` for a RunnerPolicy: its act() (act_from() for recurrent
    policies, from the loop's state), as the runners and compute_actions call it."""
    recurrent = isinstance(policy, RecurrentActorCriticPolicy)

    def act(obs: Any, state: Any) -> tuple[Any, Any]:
        single, flat = policy_input(obs_space, obs, obs_filter)
        with torch.inference_mode():
            if recurrent:
                assert isinstance(policy, RecurrentActorCriticPolicy)
                out, state = policy.act_from(
                    torch.as_tensor(flat), state, explore=explore, generator=generator
                )
            else:
                out = policy.act(torch.as_tensor(flat), explore=explore, generator=generator)
        return policy_output(action_space, out[Columns.ACTIONS], single), state

    def initial_state(batch_size: int) -> RecurrentState | None:
        module = policy.module
        return module.initial_state(batch_size) if isinstance(module, RecurrentActorCritic) else None

    return act, initial_state


class EvaluationRunner:
    """An evaluation actor (evaluation.numEnvRunners): the algorithm's inference RunnerPolicy (the
    config's `policy` and `policy_options`; `env_config` already holds evaluation.envConfig), given the
    driver's weights, filter and options before each evaluation, and `play` on fresh envs."""

    def __init__(self, config: RunnerConfig) -> None:
        torch.set_num_threads(1)  # the forward pass is tiny, and several actors share the cores
        self.config = config
        probe = make_vector_env(config.env, config.env_config, 1)
        self.obs_space: gym.Space[Any] = probe.single_observation_space
        self.action_space: gym.Space[Any] = probe.single_action_space
        probe.close()
        self.policy: RunnerPolicy = config.policy(
            self.obs_space, self.action_space, config.model, dict(config.policy_options)
        )
        self.policy.module.eval()
        self.filter: RunningStats | None = None
        self.gen = torch.Generator()
        if config.seed is not None:
            self.gen.manual_seed(config.seed * 7919 + config.worker_index)
        else:
            self.gen.seed()

    def ping(self) -> int:
        return self.config.worker_index

    def set_state(
        self,
        weights: dict[str, np.ndarray],
        filter_state: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        load_numpy_weights(self.policy.module, weights)
        self.filter = obs_filter_from(filter_state)  # (reward statistics, if any, are not needed here)
        if options:
            self.policy.set_options(options)

    def evaluate(self, episodes: int | None, timesteps: int | None, explore: bool) -> dict[str, Any]:
        """This actor's share of an evaluation, with the pid that played it (for the driver's log)."""
        act, initial_state = act_with(
            self.policy, self.obs_space, self.action_space, self.filter, explore=explore, generator=self.gen
        )
        stats = play(
            self.config.env,
            self.config.env_config,
            act=act,
            initial_state=initial_state,
            n=episodes,
            timesteps=timesteps,
            seed=evaluation_seed(self.config.seed),
            worker_index=self.config.worker_index,
        )
        return {"stats": stats, "pid": os.getpid()}

    def close(self) -> None:
        """Each evaluation closes its envs when it ends: nothing is left open."""


def shares(total: int, parts: int) -> list[int]:
    """`total` split over at most `parts` actors, none of them empty (the first ones take the rest)."""
    k = max(1, min(parts, total))
    return [total // k + (1 if i < total % k else 0) for i in range(k)]
