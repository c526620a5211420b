"""Every algorithm `spec.multiAgent` accepts trains through the multi-agent runner: A2C, PG (discrete
actions) and TD3, DDPG (continuous actions) on the cooperative `coop_match` env with two policies, one
per agent. A couple of iterations each (not a learning test): per-policy results and learner stats
appear, both policies' weights change, and a checkpoint round trip restores them. PPO, DQN and SAC are
covered by tests/unit/test_multi_agent_algorithm.py, tests/unit/test_masked_q.py and the learning tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kuberl.build import build_algorithm
from kuberl.multi_agent.algorithm import MultiAgentAlgorithm
from kuberl.spec.algorithms.base import supporting
from tests.fixtures.jobs import job_doc

OFF_POLICY = {
    "train_batch_size": 32,
    "rollout_fragment_length": 4,
    "num_steps_sampled_before_learning_starts": 32,
    "model": {"fcnet_hiddens": [16, 16]},
}
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "A2C": ({"train_batch_size": 80, "model": {"fcnet_hiddens": [16]}}, False),
    "PG": ({"train_batch_size": 80, "model": {"fcnet_hiddens": [16]}}, False),
    "TD3": (OFF_POLICY, True),
    "DDPG": (OFF_POLICY, True),
}
POLICIES = ("left", "right")


def two_policy_doc(
    tmp_path: Path, algorithm: str, config: dict[str, Any], *, continuous: bool
) -> dict[str, Any]:
    return job_doc(
        algorithm,
        "kuberl.multi_agent.envs:coop_match",
        seed=0,
        name=f"ma-{algorithm.lower()}",
        run_dir=tmp_path,
        config=config,
        envConfig={"agents": 2, "max_steps": 5, "continuous": continuous},
        metrics={"enabled": False},
        multiAgent={
            "policies": {p: {} for p in POLICIES},
            "policyMapping": [
                {"agentPattern": "agent_0", "policy": "left"},
                {"agentPattern": "agent_1", "policy": "right"},
            ],
        },
    )


def copy(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in weights.items()}


def changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> bool:
    assert before.keys() == after.keys()
    return any(not np.array_equal(before[k], after[k]) for k in before)


def test_every_accepted_algorithm_is_covered() -> None:
    covered = set(CASES) | {"PPO", "DQN", "SAC"}
    assert covered == set(supporting("multi_agent"))


@pytest.mark.parametrize("algorithm", sorted(CASES))
def test_two_policies_train_through_the_multi_agent_runner(tmp_path: Path, algorithm: str) -> None:
    config, continuous = CASES[algorithm]
    algo = build_algorithm(two_policy_doc(tmp_path, algorithm, config, continuous=continuous))
    assert isinstance(algo, MultiAgentAlgorithm)
    try:
        before = {p: copy(algo.subs[p].get_weights()) for p in POLICIES}
        for _ in range(3):
            result = algo.train()
        assert result["training_iteration"] == 3
        assert result["timesteps_total"] > 0
        assert result["num_env_steps_trained_lifetime"] > 0
        for p in POLICIES:
            stats = result["policies"][p]
            assert stats["trained"] is True
            assert stats["agent_steps_total"] > 0
            assert stats["episodes_total"] > 0
            assert stats["episode_return_mean"] is not None
            assert result["learner"][p], f"no learner stats for {p}"
            assert all(np.isfinite(v) for v in result["learner"][p].values() if isinstance(v, float))
            assert changed(before[p], algo.subs[p].get_weights()), f"{algorithm}: {p} did not learn"
        # Each agent's policy acts on its own; the one action space (Box or Discrete) comes back.
        obs_space, action_space = algo.policy_spaces["right"]
        actions = algo.compute_actions(np.stack([obs_space.sample() for _ in range(3)]), policy_id="right")
        assert all(action_space.contains(np.asarray(a, dtype=action_space.dtype)) for a in actions)

        checkpoint = algo.save()
        trained = {p: copy(algo.subs[p].get_weights()) for p in POLICIES}
    finally:
        algo.stop()
    restored = build_algorithm(two_policy_doc(tmp_path / "again", algorithm, config, continuous=continuous))
    assert isinstance(restored, MultiAgentAlgorithm)
    try:
        restored.restore(checkpoint)
        assert restored.iteration == 3
        for p in POLICIES:
            assert not changed(trained[p], restored.subs[p].get_weights())
    finally:
        restored.stop()
