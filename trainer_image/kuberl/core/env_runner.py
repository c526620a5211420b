"""EnvRunner: owns a vector env and a CPU copy of the policy; samples fixed-length rollouts.

The same class runs in the driver (`envRunners: 0`) or as a Ray actor (see runner_group.py).
Inference is batched across the sub-environments: one forward pass per vector step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kuberl.core.env_factory import make_vector_env, seeds_for, sub_env_restarts
from kuberl.core.models import action_distribution, build_model, flatten_obs, load_numpy_weights
from kuberl.core.normalizer import RunningStats
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec.algorithms import ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerConfig:
    """Everything a runner needs, small and picklable (the env itself is built inside the runner)."""

    env: str
    env_config: dict[str, Any]
    num_envs: int
    rollout_length: int
    model: ModelConfig
    seed: int | None = None
    worker_index: int = 0
    use_filter: bool = False


@dataclass
class Rollout:
    batch: SampleBatch
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    filter_delta: RunningStats | None = None
    env_restarts: int = 0
    worker_index: int = 0


class EnvRunner:
    def __init__(self, config: RunnerConfig) -> None:
        # One thread per runner: the forward pass is tiny, and several runners share the cores.
        torch.set_num_threads(1)
        self.config = config
        self.env = make_vector_env(config.env, config.env_config, config.num_envs)
        self.obs_space: gym.Space[Any] = self.env.single_observation_space
        self.action_space: gym.Space[Any] = self.env.single_action_space
        # Each runner owns its action-sampling stream, so runners sharing a process stay reproducible.
        self.gen = torch.Generator()
        if config.seed is not None:
            self.gen.manual_seed(config.seed * 7919 + config.worker_index)
        else:
            self.gen.seed()
        self.module = build_model(self.obs_space, self.action_space, config.model)
        self.module.eval()
        self.dist = action_distribution(self.action_space)
        self.continuous = isinstance(self.action_space, gym.spaces.Box)
        self.filter: RunningStats | None = None
        obs, _ = self.env.reset(seed=seeds_for(config.seed, config.worker_index, config.num_envs))
        self._obs = obs
        self._ep_return = np.zeros(config.num_envs, dtype=np.float64)
        self._ep_len = np.zeros(config.num_envs, dtype=np.int64)

    # -- state -----------------------------------------------------------------------------------
    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        return self.obs_space, self.action_space

    def set_state(self, weights: dict[str, np.ndarray], filter_state: dict[str, Any] | None = None) -> None:
        load_numpy_weights(self.module, weights)
        self.filter = RunningStats.from_state(filter_state) if filter_state is not None else None

    def ping(self) -> int:
        return self.config.worker_index

    def _prep(self, raw: np.ndarray) -> np.ndarray:
        flat = flatten_obs(self.obs_space, raw)
        return self.filter.normalize(flat) if self.filter is not None else flat

    # -- sampling --------------------------------------------------------------------------------
    def sample(self, *, explore: bool = True) -> Rollout:
        """One rollout of `rollout_length` vector steps, with V(s') for every step (bootstrap-ready)."""
        T, N = self.config.rollout_length, self.config.num_envs
        first = self._prep(self._obs)
        obs_buf = np.empty((T, N, first.shape[-1]), dtype=np.float32)
        raw_buf = np.empty((T, N, first.shape[-1]), dtype=np.float32) if self.config.use_filter else None
        act_shape = self.action_space.shape or ()
        act_buf = np.empty((T, N, *act_shape), dtype=np.float32 if self.continuous else np.int64)
        rew_buf = np.empty((T, N), dtype=np.float32)
        term_buf = np.empty((T, N), dtype=bool)
        trunc_buf = np.empty((T, N), dtype=bool)
        logp_buf = np.empty((T, N), dtype=np.float32)
        vf_buf = np.empty((T, N), dtype=np.float32)
        dist_buf: np.ndarray | None = None
        pending_final: list[tuple[int, int, np.ndarray]] = []
        rollout = Rollout(batch=SampleBatch(), worker_index=self.config.worker_index)
        restarts_before = sub_env_restarts(self.env)
        low = high = None
        if self.continuous:
            assert isinstance(self.action_space, gym.spaces.Box)
            low, high = self.action_space.low, self.action_space.high

        obs = first
        for t in range(T):
            if raw_buf is not None:
                raw_buf[t] = flatten_obs(self.obs_space, self._obs)
            obs_buf[t] = obs
            with torch.inference_mode():
                dist_in, value = self.module(torch.from_numpy(obs))
                action = self.dist.sample(dist_in, self.gen) if explore else self.dist.deterministic(dist_in)
                logp = self.dist.logp(dist_in, action)
            if dist_buf is None:
                dist_buf = np.empty((T, N, dist_in.shape[-1]), dtype=np.float32)
            dist_buf[t] = dist_in.numpy()
            a = action.numpy()
            act_buf[t] = a
            logp_buf[t] = logp.numpy()
            vf_buf[t] = value.numpy()
            env_action = np.clip(a, low, high) if self.continuous else a
            next_obs, reward, terminated, truncated, info = self.env.step(env_action)
            rew_buf[t] = reward
            term_buf[t] = terminated
            trunc_buf[t] = truncated
            self._ep_return += reward
            self._ep_len += 1
            done = np.logical_or(terminated, truncated)
            if done.any():
                for i in np.flatnonzero(done):
                    rollout.episode_returns.append(float(self._ep_return[i]))
                    rollout.episode_lengths.append(int(self._ep_len[i]))
                self._ep_return[done] = 0.0
                self._ep_len[done] = 0
                cut = np.logical_and(truncated, np.logical_not(terminated))
                if cut.any():
                    final_obs = info["final_obs"]
                    for i in np.flatnonzero(cut):
                        pending_final.append((t, int(i), np.asarray(final_obs[i])[None]))
            self._obs = next_obs
            obs = self._prep(next_obs)

        # V(s') in one batched pass: the state after the last step plus every truncation's final obs.
        tail = [obs] + [self._prep(o) for _, _, o in pending_final]
        with torch.inference_mode():
            _, boot = self.module(torch.from_numpy(np.concatenate(tail, axis=0)))
        boot_np = boot.numpy()
        next_vf = np.empty_like(vf_buf)
        next_vf[:-1] = vf_buf[1:]
        next_vf[-1] = boot_np[:N]
        for k, (t, i, _) in enumerate(pending_final):
            next_vf[t, i] = boot_np[N + k]

        assert dist_buf is not None
        rollout.batch = SampleBatch(
            {
                Columns.OBS: obs_buf,
                Columns.ACTIONS: act_buf,
                Columns.REWARDS: rew_buf,
                Columns.TERMINATEDS: term_buf,
                Columns.TRUNCATEDS: trunc_buf,
                Columns.ACTION_LOGP: logp_buf,
                Columns.ACTION_DIST_INPUTS: dist_buf,
                Columns.VF_PREDS: vf_buf,
                Columns.NEXT_VF_PREDS: next_vf,
            }
        )
        if raw_buf is not None:
            rollout.filter_delta = RunningStats.from_batch(raw_buf)
        rollout.env_restarts = sub_env_restarts(self.env) - restarts_before
        return rollout

    def close(self) -> None:
        self.env.close()
