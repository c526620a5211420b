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

from kuberl.core.action_spaces import is_structured, to_env
from kuberl.core.callbacks import Episode, EpisodeMetrics, Hooks
from kuberl.core.encoders import CNNEncoder
from kuberl.core.env_factory import make_vector_env, seeds_for, sub_env_restarts
from kuberl.core.models import flatten_obs, load_numpy_weights
from kuberl.core.normalizer import RewardNormalizer, RunningStats, obs_filter_from
from kuberl.core.policy import ActorCriticPolicy, PolicyFactory, RunnerPolicy
from kuberl.core.preprocess import batch_of_one
from kuberl.core.recurrent import RecurrentState
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
    # config.normalizeRewards: the discount of the returns whose std scales the rewards (None: off), and
    # the clip of the scaled rewards.
    reward_norm_gamma: float | None = None
    reward_norm_clip: float = 10.0
    # The RunnerPolicy class (or factory) and its options (see kuberl.core.policy). Classes pickle by
    # reference: a Ray runner imports the module that defines it.
    policy: PolicyFactory = ActorCriticPolicy
    policy_options: dict[str, Any] = field(default_factory=dict)
    # Off-policy learners need s' per transition (the final observation where an episode ended).
    store_next_obs: bool = False
    # `module:Class` of the user's DefaultCallbacks subclass (config.callbacks), built in the runner.
    callbacks: str | None = None


@dataclass
class Rollout:
    batch: SampleBatch
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    filter_delta: RunningStats | None = None
    reward_delta: RunningStats | None = None
    env_restarts: int = 0
    worker_index: int = 0
    # Custom metrics and hist_data of the episodes that ended in this rollout (with config.callbacks).
    episode_metrics: EpisodeMetrics | None = None


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
        self.policy: RunnerPolicy = config.policy(
            self.obs_space, self.action_space, config.model, dict(config.policy_options)
        )
        self.module = self.policy.module
        # Recurrent policies (kuberl.core.recurrent) keep a state per sub-env; the runner tells them
        # about every step's end. Feed-forward policies never see the hook, so their path is unchanged.
        self.recurrent = bool(getattr(self.policy, "recurrent", False))
        self.continuous = isinstance(self.action_space, gym.spaces.Box)
        # MultiDiscrete, MultiBinary, Tuple, Dict: the policy's flat actions go to the env in its structure.
        self.structured = is_structured(self.action_space)
        self.filter: RunningStats | None = None
        self.reward_norm = (
            RewardNormalizer(config.num_envs, config.reward_norm_gamma, config.reward_norm_clip)
            if config.reward_norm_gamma is not None
            else None
        )
        # Pixels stay uint8 from the env to the model's CNN encoder, which scales them to [0, 1] itself
        # (the same float32 values as converting here): a quarter of the bytes to copy into the rollout,
        # ship to the learner and replay, and no per-step float conversion. Only where the CNN is the
        # sole reader of the observation: no filter (it normalises floats), no custom model.
        self.pixels = (
            not config.use_filter
            and isinstance(self.obs_space, gym.spaces.Box)
            and self.obs_space.dtype == np.uint8
            and isinstance(getattr(self.module, "encoder", None), CNNEncoder)
        )
        obs, _ = self.env.reset(seed=seeds_for(config.seed, config.worker_index, config.num_envs))
        self._obs = obs
        self._ep_return = np.zeros(config.num_envs, dtype=np.float64)
        self._ep_len = np.zeros(config.num_envs, dtype=np.int64)
        self.hooks = Hooks(config.callbacks)
        self._episodes: list[Episode] = []
        self._episode_counter = 0
        if self.hooks.active:
            for i in range(config.num_envs):
                self._start_episode(i)

    def _start_episode(self, i: int, info: Any = None) -> None:
        """A new Episode for sub-env `i`, announced to the callbacks."""
        self._episode_counter += 1
        ep = Episode(env_index=i, worker_index=self.config.worker_index, id=self._episode_counter)
        ep.last_info = info
        if i < len(self._episodes):
            self._episodes[i] = ep
        else:
            self._episodes.append(ep)
        self.hooks("on_episode_start", episode=ep, env_runner=self, env_index=i)

    def _step_episodes(
        self, reward: np.ndarray, done: np.ndarray, info: dict[str, Any], rollout: Rollout
    ) -> None:
        """Callback bookkeeping of one vector step: step and end hooks, the next episodes' start."""
        assert rollout.episode_metrics is not None
        for i, ep in enumerate(self._episodes):
            ep.length += 1
            ep.last_reward = float(reward[i])
            ep.total_reward += ep.last_reward
            ep.last_info = _sub_info(info, i)
            self.hooks("on_episode_step", episode=ep, env_runner=self, env_index=i)
        for j in np.flatnonzero(done):
            ended = self._episodes[int(j)]
            self.hooks("on_episode_end", episode=ended, env_runner=self, env_index=int(j))
            rollout.episode_metrics.add(ended)
            self._start_episode(int(j))

    # -- state -----------------------------------------------------------------------------------
    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        return self.obs_space, self.action_space

    def set_state(
        self,
        weights: dict[str, np.ndarray],
        filter_state: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        load_numpy_weights(self.module, weights)
        self.filter = obs_filter_from(filter_state)
        if self.reward_norm is not None:
            self.reward_norm.set_stats(filter_state.get("reward") if filter_state is not None else None)
        if options:
            self.policy.set_options(options)

    def ping(self) -> int:
        return self.config.worker_index

    def _prep(self, raw: np.ndarray) -> np.ndarray:
        if self.pixels:
            arr = np.asarray(raw)
            return arr.reshape(arr.shape[0], -1)
        flat = flatten_obs(self.obs_space, raw)
        return self.filter.normalize(flat) if self.filter is not None else flat

    # -- sampling --------------------------------------------------------------------------------
    def sample(self, *, explore: bool = True) -> Rollout:  # noqa: C901 (the hot loop, kept inline)
        """One rollout of `rollout_length` vector steps. Actor-critic policies also get V(s') for every
        step (bootstrap-ready); `store_next_obs` adds s' (the final observation at episode ends)."""
        T, N = self.config.rollout_length, self.config.num_envs
        first = self._prep(self._obs)
        obs_buf = np.empty((T, N, first.shape[-1]), dtype=first.dtype)
        next_obs_buf = np.empty_like(obs_buf) if self.config.store_next_obs else None
        raw_buf = np.empty_like(obs_buf) if self.config.use_filter else None
        rew_buf = np.empty((T, N), dtype=np.float32)
        term_buf = np.empty((T, N), dtype=bool)
        trunc_buf = np.empty((T, N), dtype=bool)
        extra: dict[str, np.ndarray] = {}
        pending_final: list[tuple[int, int, np.ndarray]] = []
        # Recurrent policies: the LSTM state each pending_final bootstrap continues from.
        pending_states: list[RecurrentState] = []
        rollout = Rollout(batch=SampleBatch(), worker_index=self.config.worker_index)
        if self.hooks.active:
            rollout.episode_metrics = EpisodeMetrics()
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
                out = self.policy.act(torch.from_numpy(obs), explore=explore, generator=self.gen)
            for key, value in out.items():
                arr = value.numpy()
                if key not in extra:
                    extra[key] = np.empty((T, *arr.shape), dtype=arr.dtype)
                extra[key][t] = arr
            a = extra[Columns.ACTIONS][t]
            if self.structured:
                env_action = to_env(self.action_space, a)
            else:
                env_action = np.clip(a, low, high) if self.continuous else a
            next_obs, reward, terminated, truncated, info = self.env.step(env_action)
            done = np.logical_or(terminated, truncated)
            # The learner sees the scaled rewards; the episode returns reported below stay raw.
            rew_buf[t] = reward if self.reward_norm is None else self.reward_norm(reward, done)
            term_buf[t] = terminated
            trunc_buf[t] = truncated
            self._ep_return += reward
            self._ep_len += 1
            self._obs = next_obs
            obs = self._prep(next_obs)
            if next_obs_buf is not None:
                next_obs_buf[t] = obs
            if self.hooks.active:
                self._step_episodes(reward, done, info, rollout)
            if self.recurrent:
                with torch.inference_mode():
                    kept = self.policy.after_step(  # type: ignore[attr-defined]
                        reward if self.reward_norm is None else rew_buf[t],
                        done,
                        np.logical_and(truncated, np.logical_not(terminated)),
                    )
                if kept is not None:
                    pending_states.append(kept)
            if done.any():
                for i in np.flatnonzero(done):
                    rollout.episode_returns.append(float(self._ep_return[i]))
                    rollout.episode_lengths.append(int(self._ep_len[i]))
                self._ep_return[done] = 0.0
                self._ep_len[done] = 0
                final_obs = info["final_obs"]
                for i in np.flatnonzero(done):
                    final = self._prep(batch_of_one(self.obs_space, final_obs[i]))
                    if next_obs_buf is not None:
                        next_obs_buf[t, i] = final[0]
                    if truncated[i] and not terminated[i]:
                        pending_final.append((t, int(i), final))

        batch = SampleBatch(
            {
                Columns.OBS: obs_buf,
                Columns.REWARDS: rew_buf,
                Columns.TERMINATEDS: term_buf,
                Columns.TRUNCATEDS: trunc_buf,
            }
        )
        batch.update(extra)
        if next_obs_buf is not None:
            batch[Columns.NEXT_OBS] = next_obs_buf
        if Columns.VF_PREDS in extra:
            batch[Columns.NEXT_VF_PREDS] = self._next_values(
                extra[Columns.VF_PREDS], obs, pending_final, pending_states
            )
        rollout.batch = batch
        if raw_buf is not None:
            rollout.filter_delta = RunningStats.from_batch(raw_buf)
        if self.reward_norm is not None:
            rollout.reward_delta = self.reward_norm.take_delta()
        rollout.env_restarts = sub_env_restarts(self.env) - restarts_before
        self.hooks("on_sample_end", env_runner=self, samples=rollout)
        return rollout

    def _next_values(
        self,
        vf: np.ndarray,
        last_obs: np.ndarray,
        pending_final: list[tuple[int, int, np.ndarray]],
        pending_states: list[RecurrentState],
    ) -> np.ndarray:
        """V(s') in one batched pass: the state after the last step plus every truncation's final obs
        (a recurrent policy continues each from its own LSTM state: the current one, or the ended
        episode's)."""
        N = vf.shape[1]
        tail = [last_obs] + [o for _, _, o in pending_final]
        tail_obs = torch.from_numpy(np.concatenate(tail, axis=0))
        with torch.inference_mode():
            if self.recurrent:
                policy: Any = self.policy
                state = RecurrentState.cat([policy.current_state(N), *pending_states])
                boot = policy.value_from(tail_obs, state)
            else:
                boot = self.policy.value(tail_obs)
        assert boot is not None, "a policy that records vf_preds must implement value()"
        boot_np = boot.numpy()
        next_vf = np.empty_like(vf)
        next_vf[:-1] = vf[1:]
        next_vf[-1] = boot_np[:N]
        for k, (t, i, _) in enumerate(pending_final):
            next_vf[t, i] = boot_np[N + k]
        return next_vf

    def close(self) -> None:
        self.env.close()


def _sub_info(info: dict[str, Any], i: int) -> dict[str, Any]:
    """Sub-env `i`'s entries of a vector env's info dict (Gymnasium stacks them with `_key` masks)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = info.get(f"_{key}")
        if mask is not None and not mask[i]:
            continue
        try:
            out[key] = value[i]
        except (TypeError, IndexError, KeyError):
            out[key] = value
    return out
