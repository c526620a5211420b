"""config.normalizeRewards: the statistics against reference computations (SB3's VecNormalize rule written
out in numpy, and Gymnasium's own NormalizeReward wrapper), merged across runners, and in the env runner
(scaled rewards to the learner, raw episode returns reported)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from kuberl.core.env_runner import EnvRunner, RunnerConfig
from kuberl.core.normalizer import (
    RewardNormalizer,
    RunningStats,
    filters_state,
    obs_filter_from,
    reward_scale,
)
from kuberl.spec.algorithms import ModelConfig


def _stream(seed: int, steps: int, n: int, p_done: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rewards = rng.normal(1.0, 3.0, size=(steps, n))
    dones = rng.random((steps, n)) < p_done
    return rewards, dones


def _reference(rewards: np.ndarray, dones: np.ndarray, gamma: float, clip: float) -> np.ndarray:
    """SB3 VecNormalize(norm_reward=True): R ← γR + r; the running variance of every R so far (population
    variance, as its RunningMeanStd); r / sqrt(var + 1e-8) clipped; R ← 0 where the episode ended."""
    seen: list[float] = []
    ret = np.zeros(rewards.shape[1])
    out = np.empty_like(rewards)
    for t in range(len(rewards)):
        ret = ret * gamma + rewards[t]
        seen.extend(ret)
        out[t] = np.clip(rewards[t] / np.sqrt(np.var(seen) + 1e-8), -clip, clip)
        ret[dones[t]] = 0.0
    return out


@pytest.mark.parametrize("clip", [10.0, 0.5])
def test_scaled_rewards_match_the_reference_rule(clip: float) -> None:
    rewards, dones = _stream(0, 300, 3, p_done=0.05)
    norm = RewardNormalizer(3, gamma=0.97, clip=clip)
    got = np.stack([norm(rewards[t], dones[t]) for t in range(len(rewards))])
    np.testing.assert_allclose(got, _reference(rewards, dones, 0.97, clip), rtol=1e-9, atol=1e-12)
    if clip == 0.5:
        assert np.abs(got).max() == 0.5  # the clip bites


def test_matches_gymnasiums_normalize_reward_wrapper() -> None:
    """Gymnasium's vector NormalizeReward on the same sub-envs (episodes ending by truncation, where its
    rule and SB3's agree); its RunningMeanStd starts from a prior of weight 1e-4, hence the tolerance."""

    class Noise(gym.Env[np.ndarray, int]):
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
            super().reset(seed=seed)
            self.t = 0
            return np.zeros(1, np.float32), {}

        def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
            self.t += 1
            return np.zeros(1, np.float32), float(self.np_random.normal(2.0, 5.0)), False, self.t >= 9, {}

    def vector() -> gym.vector.SyncVectorEnv:
        return gym.vector.SyncVectorEnv(
            [Noise for _ in range(4)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )

    raw_env, wrapped = vector(), gym.wrappers.vector.NormalizeReward(vector(), gamma=0.95, epsilon=1e-8)
    raw_env.reset(seed=3)
    wrapped.reset(seed=3)
    norm = RewardNormalizer(4, gamma=0.95, clip=np.inf)
    actions = np.zeros(4, dtype=np.int64)
    for _ in range(200):
        _, reward, terminated, truncated, _ = raw_env.step(actions)
        _, expected, *_ = wrapped.step(actions)
        np.testing.assert_allclose(norm(reward, terminated | truncated), expected, rtol=1e-3)


def test_runner_deltas_merge_into_the_statistics_of_every_return() -> None:
    """Two runners' deltas merged in the driver (as the MeanStdFilter's) give the variance of all their
    returns together; the merged state travels back with the observation filter's."""
    driver = RunningStats(shape=(1,))
    every: list[np.ndarray] = []
    for seed in (1, 2):
        rewards, dones = _stream(seed, 120, 2, p_done=0.1)
        norm = RewardNormalizer(2, gamma=0.9, clip=10.0)
        ret = np.zeros(2)
        for t in range(len(rewards)):
            norm(rewards[t], dones[t])
            ret = ret * 0.9 + rewards[t]
            every.append(ret.copy())
            ret[dones[t]] = 0.0
        driver.merge(norm.take_delta())
        assert norm.take_delta().count == 0  # a delta is handed over once
    assert driver.count == 480
    np.testing.assert_allclose(reward_scale(driver), np.sqrt(np.var(np.concatenate(every)) + 1e-8))

    obs = RunningStats.from_batch(np.arange(6.0).reshape(3, 2))
    state = filters_state(obs, driver)
    assert state is not None
    restored = obs_filter_from(state)
    assert restored is not None
    assert restored.count == 3
    runner = RewardNormalizer(2, gamma=0.9, clip=10.0)
    runner.set_stats(state["reward"])
    assert runner.stats.count == 480
    reward_only = filters_state(None, driver)
    assert reward_only is not None
    assert obs_filter_from(reward_only) is None
    assert filters_state(None, None) is None


def _runner(normalize: bool) -> EnvRunner:
    return EnvRunner(
        RunnerConfig(
            env="CartPole-v1",
            env_config={},
            num_envs=2,
            rollout_length=200,
            model=ModelConfig(),
            seed=0,
            reward_norm_gamma=0.99 if normalize else None,
        )
    )


def test_the_runner_scales_the_learners_rewards_and_reports_raw_returns() -> None:
    plain, scaled = _runner(False), _runner(True)
    a, b = plain.sample(), scaled.sample()
    # Same seeds, same weights: the same episodes, whose reported returns are CartPole's own (+1 a step).
    assert a.episode_returns == b.episode_returns
    assert a.episode_lengths == b.episode_lengths
    assert all(r == length for r, length in zip(b.episode_returns, b.episode_lengths, strict=True))
    assert np.all(a.batch["rewards"] == 1.0)
    assert b.reward_delta is not None
    assert b.reward_delta.count == 400
    assert a.reward_delta is None
    # The learner's rewards are 1 / scale, the scale growing with the returns seen.
    r = b.batch["rewards"]
    assert np.all(r > 0)
    assert np.all(r[-1] < r[1])
    # A broadcast replaces the runner's statistics: with none, the scale starts again from 1.
    scaled.set_state(_numpy_weights(scaled), None)
    assert scaled.reward_norm is not None
    assert scaled.reward_norm.stats.count == 0


def _numpy_weights(runner: EnvRunner) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in runner.module.state_dict().items()}
